"""``telemetry report <name>``: the analyst reports on the command line.

Wire it with ``register_report`` in the CLI registry (``telemetry.commands.REGISTER``). Every
report is read-only and reaches ClickHouse like ``telemetry sql`` (:func:`query_function`).
``--html FILE`` also writes the report as a self-contained page with the dashboard's charts
(:func:`telemetry.dashboard.report.report_html`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from telemetry.settings import Settings

__all__ = ["register_report"]

_CHECK_CODES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}
FORMATS = ("table", "csv", "json")


def _print(report: Any, args: argparse.Namespace, settings: Settings, query: Any) -> None:
    from telemetry.reports.output import render_report

    print(render_report(report.to_report(), args.format))
    if args.html:
        from telemetry.dashboard.report import report_html

        _write(Path(args.html), report_html(report, query, settings.clickhouse_database))
        print(f"wrote {args.html}", file=sys.stderr)


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def query_function(settings: Settings) -> Any:
    from telemetry.reports.query import query_function as build

    return build(settings)


def cmd_cost_projection(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.pricing import PriceBook
    from telemetry.reports.projection import cost_projection

    query = query_function(settings)
    result = cost_projection(query, settings.clickhouse_database, route=args.route, model=args.model,
                             book=PriceBook(settings.prices_file), days=args.days, provider=args.provider)  # fmt: skip
    _print(result, args, settings, query)
    return 0


def cmd_model_history(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.reports.history import model_history

    query = query_function(settings)
    _print(model_history(query, settings.clickhouse_database, route=args.route, days=args.days), args, settings, query)
    return 0


def cmd_diagnostics(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.reports.diagnostics import diagnostics

    query = query_function(settings)
    result = diagnostics(query, settings.clickhouse_database, route=args.route, model=args.model,
                         days=args.days, target=args.target, min_judged=args.min_judged)  # fmt: skip
    _print(result, args, settings, query)
    return 0


def cmd_tier_down(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.reports.tierdown import tier_down

    query = query_function(settings)
    result = tier_down(query, settings.clickhouse_database, days=args.days, tolerance=args.tolerance,
                       min_judged=args.min_judged, factor=args.cpc_rise)  # fmt: skip
    _print(result, args, settings, query)
    return 0


def cmd_canary(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.reports.canary import Criteria, canary

    criteria = Criteria(args.max_pass_drop, args.max_p95_ratio, args.max_cost_ratio)
    query = query_function(settings)
    result = canary(query, settings.clickhouse_database, route=args.route, control=args.control,
                    canary_arm=args.canary, days=args.days, criteria=criteria)  # fmt: skip
    _print(result, args, settings, query)
    return _CHECK_CODES[result.verdict.status] if args.check else 0


def cmd_prompt_history(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.reports.prompts import prompt_history

    query = query_function(settings)
    _print(prompt_history(query, settings.clickhouse_database, route=args.route, days=args.days), args, settings, query)
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1]")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def register_report(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report`` and its sub-commands to the ``telemetry`` parser's sub-parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--days", type=_positive, default=7.0,
                        help="window in days, ending at the newest request in the data (default 7)")  # fmt: skip
    common.add_argument("--format", choices=FORMATS, default="table")
    common.add_argument("--html", metavar="FILE", default=None,
                        help="also write the report as a self-contained HTML page with the dashboard's charts")  # fmt: skip

    report = sub.add_parser("report", help="analyst reports: cost-projection, model-history, diagnostics, tier-down, canary, "
                                         "prompt-history")
    reports = report.add_subparsers(dest="report", required=True, metavar="REPORT")

    p = reports.add_parser("cost-projection", parents=[common],
                           help="a route's cost now and on a candidate model, per request and per month")  # fmt: skip
    p.add_argument("--route", required=True)
    p.add_argument("--model", required=True, help="the candidate model, as the price book knows it")
    p.add_argument("--provider", default=None, help="the candidate's provider (default: found from the model name)")
    p.set_defaults(func=cmd_cost_projection)

    p = reports.add_parser("model-history", parents=[common],
                           help="per day, the models that served a route; tier changes; TierSwitch alerts (90 d)")  # fmt: skip
    p.add_argument("--route", required=True)
    p.set_defaults(func=cmd_model_history)

    p = reports.add_parser("diagnostics", parents=[common],
                           help="closed-book / gold-context / online pass rates and the tier-up gate's reading")  # fmt: skip
    p.add_argument("--route", required=True)
    p.add_argument("--model", default=None, help="served model (default: the current one; 'all': every model)")
    p.add_argument("--target", type=_fraction, default=0.9, help="pass rate the route must reach (default 0.9)")
    p.add_argument("--min-judged", type=int, default=30, help="fewer verdicts than this are unclear (default 30)")
    p.set_defaults(func=cmd_diagnostics)

    p = reports.add_parser("tier-down", parents=[common],
                           help="routes that could move to a cheaper model; routes whose cost per correct rose")  # fmt: skip
    p.add_argument("--tolerance", type=_fraction, default=0.02,
                   help="largest pass-rate drop still acceptable at the 95%% lower bound (default 0.02)")  # fmt: skip
    p.add_argument("--min-judged", type=int, default=100, help="online verdicts needed per model (default 100)")
    p.add_argument("--cpc-rise", type=_positive, default=1.5,
                   help="list routes whose cost per correct rose more than this factor (default 1.5)")  # fmt: skip
    p.set_defaults(func=cmd_tier_down)

    p = reports.add_parser("canary", parents=[common], help="a canary arm against its control: PASS / FAIL / INCONCLUSIVE")
    p.add_argument("--route", required=True)
    p.add_argument("--control", default=None, help="control arm (requests.experiment; '(none)' for untagged traffic)")
    p.add_argument("--canary", default=None, help="canary arm")
    p.add_argument("--max-pass-drop", type=_fraction, default=0.02, help="allowed pass-rate drop (default 0.02)")
    p.add_argument("--max-p95-ratio", type=_positive, default=1.2, help="allowed p95 latency ratio (default 1.2)")
    p.add_argument("--max-cost-ratio", type=_positive, default=1.5, help="allowed cost per request ratio (default 1.5)")
    p.add_argument("--check", action="store_true", help="exit 1 on FAIL, 3 on INCONCLUSIVE (for CI gates)")
    p.set_defaults(func=cmd_canary)

    p = reports.add_parser("prompt-history", parents=[common],
                           help="each prompt version of a route: when, pass rate, cost per request and per correct answer")  # fmt: skip
    p.add_argument("--route", required=True)
    p.set_defaults(func=cmd_prompt_history)
