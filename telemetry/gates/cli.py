"""``telemetry gate``: open, approve, reject, list, show and close tier-up gates (docs/gates.md).

Reads reach ClickHouse the way ``telemetry sql`` does (the running worker when it owns the
embedded engine); writes go through the worker too in that case (``POST /telemetry/gates/``),
else straight to the DSN.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from telemetry.gates import model
from telemetry.gates.model import GateRecord
from telemetry.gates.render import LIST_COLUMNS, html_page, list_rows, markdown
from telemetry.gates.store import (
    DirectWriter,
    GateWriter,
    WorkerWriter,
    fields_of,
    load,
    load_one,
)
from telemetry.settings import Settings
from telemetry.sql import Query, QueryResult, client_query, render, worker_base_url


def _worker_answers(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"{worker_base_url(settings)}/telemetry/health/", timeout=3):
            return True
    except urllib.error.HTTPError:
        return True  # it answered (503 while starting)
    except (urllib.error.URLError, OSError):
        return False


def connect_io(settings: Settings) -> tuple[Query, GateWriter]:
    """How this command reads and writes gates."""
    if settings.is_embedded_clickhouse and _worker_answers(settings):
        from telemetry.sql import query_function

        return query_function(settings), WorkerWriter(settings)
    from telemetry.storage.clickhouse import connect
    from telemetry.storage.migrate import migrate

    client = connect(settings.resolved_clickhouse_dsn)
    migrate(client, settings.clickhouse_database)
    return client_query(client), DirectWriter(client, settings.clickhouse_database)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _write(writer: GateWriter, gate: GateRecord) -> GateRecord:
    writer.write([gate])
    return gate


def _show(gate: GateRecord, fmt: str, html_file: str | None) -> None:
    if html_file:
        Path(html_file).write_text(html_page(gate))
        print(f"wrote {html_file}", file=sys.stderr)
    if fmt == "json":
        print(orjson.dumps(fields_of(gate), option=orjson.OPT_INDENT_2).decode())
    else:
        print(markdown(gate))


def cmd_open(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.gates.queries import gather
    from telemetry.pricing import PriceBook
    from telemetry.routes import RoutesConfig

    query, writer = connect_io(settings)
    now = _now_ms()
    opening = gather(query, settings.clickhouse_database, route=args.route, proposed_model=args.to,
                     book=PriceBook(settings.prices_file), routes=RoutesConfig.load(settings.routes_file), now_ms=now,
                     provider=args.provider, days=args.days, target=args.target)  # fmt: skip
    gate = model.open_gate(route=args.route, current_model=opening.current_model, proposed_model=args.to,
                           hypothesis=args.hypothesis, author=args.author, now_ms=now, evidence=opening.evidence,
                           team=opening.team, direction=opening.direction, proposed_provider=opening.proposed_provider,
                           projected_monthly_usd=opening.projected_monthly_usd)  # fmt: skip
    _write(writer, gate)
    _show(gate, args.format, args.html)
    print(f"opened {gate.id}", file=sys.stderr)
    return 0


def _transition(args: argparse.Namespace, settings: Settings, change: Any) -> int:
    query, writer = connect_io(settings)
    gate = _write(writer, change(load_one(query, settings.clickhouse_database, args.id)))
    print(f"{gate.id}: {gate.state}")
    return 0


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    return _transition(args, settings, lambda g: model.approve(g, reviewer=args.reviewer, note=args.note, now_ms=_now_ms()))


def cmd_reject(args: argparse.Namespace, settings: Settings) -> int:
    return _transition(args, settings, lambda g: model.reject(g, reviewer=args.reviewer, note=args.note, now_ms=_now_ms()))


def cmd_postmortem(args: argparse.Namespace, settings: Settings) -> int:
    return _transition(args, settings, lambda g: model.close(g, findings=args.findings, now_ms=_now_ms()))


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    query, _ = connect_io(settings)
    gates = load(query, settings.clickhouse_database, route=args.route, states=args.state or ())
    print(render(QueryResult(LIST_COLUMNS, list_rows(gates)), args.format))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    query, _ = connect_io(settings)
    _show(load_one(query, settings.clickhouse_database, args.id), args.format, args.html)
    return 0


def register_gate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gate = sub.add_parser("gate", help="tier-up gates: open, approve, reject, list, show, postmortem (docs/gates.md)")
    gates = gate.add_subparsers(dest="gate_command", required=True)

    p = gates.add_parser("open", help="propose moving a route to another model, with the evidence of now")
    p.add_argument("route")
    p.add_argument("--to", required=True, help="the proposed model, as the price book knows it")
    p.add_argument("--hypothesis", required=True, help="what the bigger model should fix, and how you will know")
    p.add_argument("--author", required=True)
    p.add_argument("--provider", default=None, help="the proposed model's provider (default: from the price book)")
    p.add_argument("--days", type=float, default=7.0, help="days of traffic the evidence covers (default 7)")
    p.add_argument("--target", type=float, default=0.9, help="pass rate the route must reach (default 0.9)")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")
    p.add_argument("--html", default=None, metavar="FILE", help="also write the record as an HTML page")
    p.set_defaults(func=cmd_open)

    for name, func, help_text in (("approve", cmd_approve, "approve an open gate (not its author)"),
                                  ("reject", cmd_reject, "reject an open gate (not its author)")):  # fmt: skip
        p = gates.add_parser(name, help=help_text)
        p.add_argument("id")
        p.add_argument("--reviewer", required=True)
        p.add_argument("--note", default="")
        p.set_defaults(func=func)

    p = gates.add_parser("postmortem", help="close a gate whose postmortem is due, with its findings")
    p.add_argument("id")
    p.add_argument("--findings", required=True)
    p.set_defaults(func=cmd_postmortem)

    p = gates.add_parser("list", help="gates, newest first")
    p.add_argument("--route", default=None)
    p.add_argument("--state", action="append", choices=model.STATES, help="only gates in this state (repeatable)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_list)

    p = gates.add_parser("show", help="one gate: Markdown (default), JSON, and --html FILE")
    p.add_argument("id")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")
    p.add_argument("--html", default=None, metavar="FILE")
    p.set_defaults(func=cmd_show)
