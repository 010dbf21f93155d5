"""One factory for ClickHouse clients: embedded chDB (``chdb:///path``) or a server (``http(s)://``).

chDB lets exactly one process open a data path; within that process many threads may query
through one client. Calls block (and release the GIL): async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from telemetry.errors import ConfigError, InfrastructureError

log = logging.getLogger(__name__)

# Batches are formed by the worker; ClickHouse must not re-batch them behind our back.
WRITE_SETTINGS: dict[str, Any] = {
    "async_insert": 0,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
}

_embedded_lock = threading.Lock()
_embedded_clients: dict[str, Client] = {}


def describe_dsn(dsn: str) -> str:
    """The DSN without credentials, safe for logs."""
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        return dsn
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def connect(dsn: str) -> Client:
    """Return a client for ``dsn``.

    Embedded clients are cached per path (one chDB instance per process). Raises ConfigError for
    an unsupported DSN and InfrastructureError when the engine cannot be reached or opened.
    """
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        path = Path(parsed.path or "/").resolve()
        key = str(path)
        with _embedded_lock:
            client = _embedded_clients.get(key)
            if client is None:
                path.mkdir(parents=True, exist_ok=True)
                try:
                    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
                except Exception as exc:  # chDB raises plain RuntimeError on a locked path
                    raise InfrastructureError(
                        f"cannot open embedded ClickHouse at {path}: {exc} "
                        "(only one process may open a chDB data path; is a worker running?)"
                    ) from exc
                _embedded_clients[key] = client
            return client
    if parsed.scheme in ("http", "https", "clickhouse", "clickhouses"):
        try:
            return clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False)
        except Exception as exc:
            raise InfrastructureError(f"cannot reach ClickHouse at {describe_dsn(dsn)}: {exc}") from exc
    raise ConfigError(f"unsupported ClickHouse DSN scheme {parsed.scheme!r}: use chdb:///path or http(s)://host:port")


def is_transient(exc: BaseException) -> bool:
    """True when an error from the client looks like infrastructure trouble, worth a retry."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    if isinstance(exc, OperationalError | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, DatabaseError):
        text = str(exc)
        # Errors in our own SQL are bugs, not outages; anything else is treated as transient.
        return not any(code in text for code in ("Code: 62.", "Code: 47.", "Code: 60.", "Code: 16."))
    return False
