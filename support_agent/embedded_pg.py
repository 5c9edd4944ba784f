"""The embedded PostgreSQL (with pgvector) used when DATABASE_URL is unset.

pgserver ships PostgreSQL 16 and pgvector as Python wheels, so a fresh machine
needs no system database. The cluster lives in a data folder of our own and is
reused on the next start; pgserver stops it when the last process using it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path


def embedded_database_url(data_dir: Path, *, cleanup_mode: str | None = "stop") -> str:
    # platformdirs (used by pgserver) warns when XDG_RUNTIME_DIR is unset, as it is for root here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported lazily: deployments with DATABASE_URL never load it

    # pgserver logs every pg_ctl call at INFO; only its problems interest us.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)
    return str(server.get_uri())
