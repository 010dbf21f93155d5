"""The ``telemetry`` command: kafka, clickhouse, migrate, worker, sql, schemas, simulate, replay, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from telemetry.errors import TelemetryError
from telemetry.settings import Settings, load_settings


def _fail(message: str, code: int = 1) -> int:
    print(f"telemetry: {message}", file=sys.stderr)
    return code


# -- kafka --------------------------------------------------------------------------------------
def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.localkafka import broker_status, start_broker, stop_broker

    if args.action == "start":
        status = start_broker(settings, log=lambda line: print(line, file=sys.stderr))
        print(status.bootstrap)
        return 0
    if args.action == "stop":
        status = stop_broker(settings)
        print(status.detail)
        return 0
    status = broker_status(settings)
    print(status.detail)
    return 0 if status.running else 3


# -- clickhouse -----------------------------------------------------------------------------------
def cmd_clickhouse(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.localclickhouse import server_status, start_server, stop_server

    if args.action == "start":
        status = start_server(
            settings, http_port=args.http_port, tcp_port=args.tcp_port, log=lambda line: print(line, file=sys.stderr)
        )
        print(status.dsn)
        return 0
    if args.action == "stop":
        print(stop_server(settings).detail)
        return 0
    status = server_status(settings, http_port=args.http_port, tcp_port=args.tcp_port)
    if status.running:
        print(status.dsn)
    print(status.detail)
    return 0 if status.running else 1


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.storage.clickhouse import connect, describe_dsn
    from telemetry.storage.migrate import migrate

    client = connect(settings.resolved_clickhouse_dsn)
    applied = migrate(client, settings.clickhouse_database)
    where = describe_dsn(settings.resolved_clickhouse_dsn)
    if applied:
        for m in applied:
            print(f"applied {m.version:04d}_{m.name}")
    print(f"{settings.clickhouse_database} on {where} is up to date")
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.sql import WriteRefused, query_function, render

    sql = args.query if args.query != "-" else sys.stdin.read()
    try:
        result = query_function(settings)(sql)
    except WriteRefused as exc:
        return _fail(f"refused: {exc}", 2)
    print(render(result, args.format))
    return 0


# -- worker ---------------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.worker.main import run_worker

    return run_worker(settings, loglevel=args.loglevel)


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.schemas import stale_schemas, write_schemas

    directory = Path(args.dir)
    if args.write:
        for path in write_schemas(directory):
            print(f"wrote {path}")
        return 0
    stale = stale_schemas(directory)
    if stale:
        return _fail(f"schemas out of date: {', '.join(stale)} (run: telemetry schemas --write)")
    print("schemas are up to date")
    return 0


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemetry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="run a local single-node Kafka broker (from Maven Central)")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.set_defaults(func=cmd_kafka)

    clickhouse = sub.add_parser(
        "clickhouse", help="serve the embedded ClickHouse data over HTTP/TCP on 127.0.0.1 for several processes"
    )
    clickhouse.add_argument("action", choices=["start", "stop", "status"])
    clickhouse.add_argument("--http-port", type=int, default=None, help="HTTP port (default: the DSN's, else 8123)")
    clickhouse.add_argument("--tcp-port", type=int, default=None, help="native TCP port (default 9000)")
    clickhouse.set_defaults(func=cmd_clickhouse)

    migrate = sub.add_parser("migrate", help="apply ClickHouse migrations (idempotent)")
    migrate.set_defaults(func=cmd_migrate)

    worker = sub.add_parser("worker", help="run the stream processor (Faust worker)")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(func=cmd_worker)

    sql = sub.add_parser("sql", help="run read-only SQL against the live tables")
    sql.add_argument("query", help="the SQL statement, or - to read it from stdin")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=cmd_sql)

    schemas = sub.add_parser("schemas", help="check (default) or --write the JSON Schemas in schemas/")
    schemas.add_argument("--write", action="store_true")
    schemas.add_argument("--dir", default="schemas")
    schemas.set_defaults(func=cmd_schemas)

    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands() -> list:  # type: ignore[type-arg]
    from telemetry import commands

    return commands.REGISTER


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"TELEMETRY_{str(e['loc'][0]).upper() if e['loc'] else '?'}: {e['msg']}" for e in exc.errors()
        )
        return _fail(f"invalid configuration: {problems}")
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except TelemetryError as exc:
        return _fail(str(exc))
    except Exception as exc:  # one clear line, not a traceback, for infrastructure trouble
        if getattr(args, "debug", False):
            raise
        return _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


if __name__ == "__main__":
    sys.exit(main())
