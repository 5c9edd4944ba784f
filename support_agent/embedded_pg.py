"""The embedded PostgreSQL (with pgvector) used when DATABASE_URL is unset.

pgserver ships PostgreSQL 16 and pgvector as Python wheels, so a fresh machine
needs no system database. The cluster lives in a data folder of our own and is
reused on the next start; pgserver stops it when the last process using it exits.

Its memory settings are sized for the machine at start (``server_settings``; docs/operations.md, "Embedded
PostgreSQL memory"): PostgreSQL's defaults (128 MB of shared buffers, 64 MB of maintenance memory) make a
cold search read scattered pages from disk and an HNSW build at a million passages spill out of memory.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

SETTINGS_FILE = "supportmem.conf"  # in pgdata, included by postgresql.conf; ALTER SYSTEM still overrides it
_INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"
_MB = 1024 * 1024
# Each setting can be overridden by SUPPORTMEM_PG_<NAME> (a PostgreSQL value such as "2GB", "64MB" or "2").
_OVERRIDABLE = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "autovacuum_work_mem",
    "max_parallel_maintenance_workers",
    "max_wal_size",
    "effective_io_concurrency",
)


# Whether PostgreSQL can ask this OS to read pages ahead (posix_fadvise: Linux, not macOS).
CAN_PREFETCH = hasattr(os, "posix_fadvise")


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def server_settings(*, ram_bytes: int, cpus: int, environ: Mapping[str, str]) -> dict[str, str]:
    """PostgreSQL settings for a machine with ``ram_bytes`` of memory and ``cpus`` cores.

    SUPPORTMEM_PG_RAM_MB sizes for less memory than the machine has (a database sharing it with the web
    and Celery processes); SUPPORTMEM_PG_<SETTING> sets one setting outright.
    """
    raw_ram = environ.get("SUPPORTMEM_PG_RAM_MB", "").strip()
    if raw_ram:
        try:
            ram_mb = int(raw_ram)
        except ValueError as exc:
            raise ImproperlyConfigured(f"SUPPORTMEM_PG_RAM_MB={raw_ram!r} is not an integer (megabytes)") from exc
        if ram_mb < 256:
            raise ImproperlyConfigured(f"SUPPORTMEM_PG_RAM_MB={ram_mb} is too small: give at least 256")
    else:
        ram_mb = ram_bytes // _MB
    settings = {
        # A quarter of memory, as PostgreSQL's documentation advises for a dedicated server; beyond 8 GB the
        # OS page cache serves as well. Touched lazily: an idle cluster does not hold it.
        "shared_buffers": f"{_clamp(ram_mb // 4, 128, 8192)}MB",
        # What the planner may assume PostgreSQL and the OS cache hold together: it allocates nothing.
        "effective_cache_size": f"{max(ram_mb * 3 // 4, 512)}MB",
        # Per sort or hash node of each query: BM25 over one customer's rows and RRF fusion sort in memory.
        "work_mem": f"{_clamp(ram_mb // 512, 4, 64)}MB",
        # An HNSW build keeps its graph here; 1,000,000 384-dimensional vectors take about 3 GB, and a build
        # that does not fit writes the graph to disk page by page (pgvector warns) and runs many times slower.
        "maintenance_work_mem": f"{_clamp(ram_mb // 4, 64, 16384)}MB",
        # Autovacuum workers would each take maintenance_work_mem otherwise (vacuum uses at most 1 GB).
        "autovacuum_work_mem": f"{_clamp(ram_mb // 32, 64, 1024)}MB",
        # Index builds (HNSW, B-tree) use the other cores.
        "max_parallel_maintenance_workers": str(_clamp(cpus - 1, 0, 4)),
        # A bulk load (history import, search_benchmark's COPY) should not checkpoint every gigabyte.
        "max_wal_size": "4GB",
        # How many pages a bitmap heap scan asks the OS for ahead of reading them (one customer's passages: see
        # memory.locality.one_customer). The default, 1, suits one spinning disk; SSDs and virtual disks serve many
        # reads at once. Where the OS has no posix_fadvise (macOS), PostgreSQL refuses to start with anything but 0.
        "effective_io_concurrency": "128" if CAN_PREFETCH else "0",
    }
    for name in _OVERRIDABLE:
        override = environ.get(f"SUPPORTMEM_PG_{name.upper()}", "").strip()
        if override:
            if "'" in override or "\n" in override:
                raise ImproperlyConfigured(f"SUPPORTMEM_PG_{name.upper()}={override!r} is not a PostgreSQL value")
            settings[name] = override
    return settings


def machine_settings() -> dict[str, str]:
    """``server_settings`` for this machine (physical memory and the cores this process may use)."""
    ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return server_settings(ram_bytes=ram_bytes, cpus=cpus, environ=os.environ)


def settings_write(pgdata: Path, settings: Mapping[str, str]) -> bool:
    """Write the settings file and include it from postgresql.conf. True when either file changed."""
    text = "# Written by supportmem at each start (support_agent/embedded_pg.py); edits here are overwritten.\n"
    text += "".join(f"{name} = '{value}'\n" for name, value in settings.items())
    target = pgdata / SETTINGS_FILE
    changed = not target.exists() or target.read_text() != text
    if changed:
        target.write_text(text)
        _same_owner(target, pgdata)
    conf = pgdata / "postgresql.conf"
    lines = conf.read_text().splitlines()
    if _INCLUDE_LINE not in lines:
        with conf.open("a") as handle:
            handle.write(f"\n{_INCLUDE_LINE}\n")
        changed = True
    return changed


def _same_owner(path: Path, like: Path) -> None:
    # As root, pgserver runs PostgreSQL as its own user, which owns pgdata.
    if os.geteuid() == 0:
        stat = like.stat()
        os.chown(path, stat.st_uid, stat.st_gid)


def embedded_database_url(data_dir: Path, *, cleanup_mode: str | None = "stop") -> str:
    # platformdirs (used by pgserver) warns when XDG_RUNTIME_DIR is unset, as it is for root here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported lazily: deployments with DATABASE_URL never load it

    from memory.locality import embedded_restart

    # pgserver logs every pg_ctl call at INFO; only its problems interest us.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    settings = machine_settings()
    fresh = not (pgdata / "PG_VERSION").exists()
    changed = False if fresh else settings_write(pgdata, settings)  # read by the start below
    server = pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)
    if fresh:
        # pgserver has just run initdb and started the server with the defaults: restart it once with ours
        # (pg_ctl restart reuses the options pgserver started it with).
        settings_write(pgdata, settings)
        embedded_restart(pgdata)
        # pgserver stops the server at exit only if the postmaster it knows still runs: tell it the new one.
        from pgserver.utils import PostmasterInfo  # type: ignore[import-untyped]

        restarted = PostmasterInfo.read_from_pgdata(pgdata)
        if restarted is not None:
            server._postmaster_info = restarted
    elif changed:
        # Already running for another process: settings that need no restart apply now; shared_buffers at
        # the next start (pgserver stops the server when its last process exits).
        server.psql("SELECT pg_reload_conf();")
        logger.info("embedded PostgreSQL settings changed; shared_buffers applies at its next start")
    return str(server.get_uri())
