"""Finding 7 of the attack audit: production settings could not be made safe from the environment, the
widget's same-origin check compared http:// behind a TLS proxy, and /widget/demo/ handed any visitor a valid
user_hash whenever an organisation with slug "demo" existed."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.test import Client

from tests.security.live_stack import gunicorn_serving, live_env
from tests.tickets.live_procs import ROOT
from tickets.auth import user_hash_for
from tickets.models import Organization

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The variables docs/deployment.md tells an operator to set (its `check --deploy` command).
PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "support.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://support.example.com",
    "SUPPORTMEM_HTTPS": "true",
    "SUPPORTMEM_HSTS_PRELOAD": "true",
    "SUPPORTMEM_TRUST_X_FORWARDED_PROTO": "true",
}


def test_check_deploy_has_no_warnings_with_the_documented_variables(tmp_path: Path) -> None:
    env = live_env(tmp_path, SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout
    documented = (ROOT / "docs" / "deployment.md").read_text()
    assert "manage.py check --deploy" in documented
    assert all(f"{name}=" in documented for name in PRODUCTION)


def test_behind_a_tls_proxy_the_widget_sees_https_and_responses_carry_hsts(tmp_path: Path, actors) -> None:
    org = actors.org
    served = {**PRODUCTION, "ALLOWED_HOSTS": "127.0.0.1"}
    with gunicorn_serving(tmp_path, ready_status=301, **served) as url, httpx.Client(timeout=60) as http:
        host = url.removeprefix("http://")
        session = f"{url}/api/widget/{org.widget_publishable_key}/session/"
        # The page is served at https://<host> by the proxy; the widget on it is same-origin.
        preflight = http.options(session, headers={"Origin": f"https://{host}", "X-Forwarded-Proto": "https"})
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == f"https://{host}"
        body = {"user_id": "v-1", "user_hash": user_hash_for(organization=org, user_id="v-1")}
        signed_in = http.post(session, json=body, headers={"Origin": f"https://{host}", "X-Forwarded-Proto": "https"})
        assert signed_in.status_code == 201, signed_in.text
        assert signed_in.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
        # http:// is not the page's origin any more, and a plain-http request is sent to https.
        spoofed = http.options(session, headers={"Origin": f"http://{host}", "X-Forwarded-Proto": "https"})
        assert spoofed.status_code == 403
        plain = http.get(f"{url}/admin/login/")
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
        login = http.get(f"{url}/admin/login/", headers={"X-Forwarded-Proto": "https"})
        assert login.status_code == 200
        assert "secure" in login.headers["set-cookie"].lower()


def test_demo_page_is_off_unless_the_demo_is_enabled(settings) -> None:
    call_command("seed_demo", verbosity=0)
    demo = Organization.objects.get(slug="demo")
    settings.SUPPORTMEM_DEMO = False
    page = Client().get("/widget/demo/")
    assert page.status_code == 404
    leaked = user_hash_for(organization=demo, user_id="user-ferreira")
    assert leaked not in page.content.decode()
    settings.SUPPORTMEM_DEMO = True
    assert leaked in Client().get("/widget/demo/").content.decode()
