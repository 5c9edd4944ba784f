"""Typed readers for settings that come from the environment.

Each helper fails loudly on a value it cannot parse: a typo in production
configuration should stop the process at start-up, not surface later.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def data_dir_from_env() -> Path:
    """SUPPORTMEM_DATA_DIR, or `.data` beside the project: the embedded database, static files, the secret key."""
    default = Path(__file__).resolve().parent.parent / ".data"
    return Path(env_str("SUPPORTMEM_DATA_DIR", str(default))).resolve()


def embedded_database_placeholder(data_dir: Path) -> str:
    """Where the embedded PostgreSQL listens once an entry point started it (its socket in its data folder).

    Entry points export the server's real URL before settings are read; this declaration only names it.
    """
    return f"postgresql://postgres:@/postgres?host={data_dir / 'pgdata'}"


def stored_secret_key(path: Path) -> str:
    """The key an entry point keeps at ``path``; without one (mypy, a bare import) a key for this process only."""
    if path.exists():
        return path.read_text().strip()
    return secrets.token_urlsafe(50)


def parse_database_url(url: str) -> dict[str, object]:
    """Turn ``postgresql://user:pass@host:port/name?host=/socket/dir`` into Django's DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgresql:// URL, got scheme {parsed.scheme!r}")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or unquote(parsed.hostname or "")
    name = unquote(parsed.path.lstrip("/")) or "postgres"
    options: dict[str, object] = dict(query)
    return {
        "ENGINE": "support_agent.database",
        "NAME": name,
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def persistent_secret_key(path: Path) -> str:
    """Read the key kept at ``path``, creating it (readable by the owner only) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
