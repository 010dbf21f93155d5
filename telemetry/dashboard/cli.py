"""``telemetry ui``: the dashboard against any DSN, without a worker (registered in
``telemetry.commands``). With the embedded engine and a running worker, its statements go
through the worker's SQL page, like ``telemetry sql``'s."""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys

from telemetry.errors import TelemetryError
from telemetry.settings import Settings

__all__ = ["cmd_ui", "register_ui"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from telemetry.dashboard import views
    from telemetry.dashboard.web import Dashboard, serve
    from telemetry.sql import query_function, worker_base_url
    from telemetry.storage.clickhouse import describe_dsn

    host = args.host if args.host is not None else settings.web_host
    port = args.port if args.port is not None else settings.web_port
    token = settings.web_token.get_secret_value() if settings.web_token else None
    if host not in LOOPBACK and not token:
        print("telemetry ui: warning: serving beyond loopback without TELEMETRY_WEB_TOKEN", file=sys.stderr)
    query = query_function(settings)
    views.load_window(query, settings.clickhouse_database, "day")  # unreachable or unmigrated: one clear line now
    dashboard = Dashboard(query=query, database=settings.clickhouse_database, token=token,
                          executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard"))  # fmt: skip

    def announce(url: str) -> None:
        hint = " (open it once with ?token=<TELEMETRY_WEB_TOKEN>)" if token else ""
        print(f"dashboard: {url}{hint}\ndata: {describe_dsn(settings.resolved_clickhouse_dsn)}, database "
              f"{settings.clickhouse_database}; Ctrl-C stops it", flush=True)  # fmt: skip

    try:
        asyncio.run(serve(dashboard, host, port, announce=announce))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise TelemetryError(f"port {port} is taken (a worker there serves the dashboard itself at "
                                 f"{worker_base_url(settings)}/); choose another with --port") from None  # fmt: skip
        raise
    return 0


def register_ui(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``ui`` to the ``telemetry`` parser's sub-parsers."""
    p = sub.add_parser("ui", help="serve the dashboard against the configured ClickHouse (no worker needed)")
    p.add_argument("--host", default=None, help="address to bind (default: TELEMETRY_WEB_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default: TELEMETRY_WEB_PORT)")
    p.set_defaults(func=cmd_ui)
