"""gunicorn as `make run` starts it, against this test run's database, for attacks whose outcome depends on
the real server (how it decodes paths and headers, what reaches Django, which error page answers)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.tickets.live_procs import child_env, free_port, gunicorn_start


def live_env(tmp: Path, **extra: str) -> dict[str, str]:
    # Throttles off: an attack suite sends bursts a real client would not, and counters are per process.
    return child_env(
        redis_url="",
        tmp=tmp,
        SUPPORTMEM_THROTTLE_WIDGET_IP="",
        SUPPORTMEM_THROTTLE_WIDGET_CUSTOMER="",
        SUPPORTMEM_THROTTLE_API_KEY="",
        **extra,
    )


@contextmanager
def gunicorn_serving(tmp: Path, ready_status: int = 405, **extra: str) -> Iterator[str]:
    """The base URL of a gunicorn serving the test database, with ``extra`` environment variables."""
    port = free_port()
    web = gunicorn_start(live_env(tmp, **extra), port, tmp, ready_status=ready_status)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop()
        assert "Traceback" not in web.output(), web.output()


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory, django_db_setup: None) -> Iterator[str]:
    """One gunicorn per test module: it holds no state of its own, every test's rows are in the database."""
    with gunicorn_serving(tmp_path_factory.mktemp("live")) as url:
        yield url


def raw_request(url: str, request_head: bytes, body: bytes = b"") -> int:
    """Send bytes exactly as given (httpx refuses to send what an attacker would); the response's status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request_head + b"\r\n" + body)
        head = sock.recv(4096)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    assert match, head[:200]
    return int(match.group(1))


def admin_login(base: str, username: str, password: str) -> httpx.Client:
    """A browser-like staff session on the admin: CSRF cookie, login form, session cookie."""
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    response = client.post(
        "/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{base}/admin/login/"},
    )
    assert response.status_code == 302 and "sessionid" in client.cookies, response.text[:500]
    return client
