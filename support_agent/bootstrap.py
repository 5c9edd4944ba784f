"""What an entry point does before the service runs: the data folder, and the embedded database when
DATABASE_URL is unset.

Settings only declare (importing them starts nothing and writes nothing); the processes that need a
database call `service_prepare()` first: `manage.py`, gunicorn's config (`support_agent/gunicorn_conf.py`),
the Celery worker and beat (`support_agent/celery.py`), `wsgi.py`/`asgi.py` for other servers, and the
pytest session (`tests/conftest.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

from support_agent.env import data_dir_from_env, parse_database_url, persistent_secret_key


def service_prepare(*, cleanup_mode: str | None = "stop") -> None:
    # The local embedder's weights ship in a package: never let Hugging Face reach for the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    data_dir = data_dir_from_env()
    (data_dir / "static").mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request without it
    if not os.environ.get("SECRET_KEY"):
        persistent_secret_key(data_dir / "secret_key")  # settings read it; created once, kept across restarts
    database_start(data_dir, cleanup_mode=cleanup_mode)


def database_start(data_dir: Path, *, cleanup_mode: str | None = "stop") -> None:
    """Start the embedded PostgreSQL unless DATABASE_URL names a database, and export its URL.

    Child processes (the autoreloader, gunicorn workers, Celery's pool) inherit the exported URL. When the
    settings were already read (pytest-django and Celery read them before their entry hooks run), the
    declared embedded entry is pointed at the started server in place; no connection exists yet then.
    """
    if os.environ.get("DATABASE_URL"):
        return
    from support_agent.embedded_pg import embedded_database_url

    url = embedded_database_url(data_dir, cleanup_mode=cleanup_mode)
    os.environ["DATABASE_URL"] = url
    os.environ["SUPPORTMEM_EMBEDDED_PGDATA"] = str(data_dir / "pgdata")  # what `serve` reports; children inherit
    from django.conf import settings

    if settings.configured:
        settings.DATABASES["default"].update(parse_database_url(url))
