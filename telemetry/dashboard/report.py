"""``telemetry report ... --html FILE``: a report as one self-contained page with the dashboard's charts.

For a report about one route (cost-projection, model-history, diagnostics, canary) the page holds
the route's dashboard charts over the report's own window (pass rate with its interval band, cost
per correct answer, cost per request, latency, TTFT, errors, model mix, with the tier-up, alert and
gate markers) and its events, then a chart of the report's decision, then its tables and notes.
tier-down, about every route, holds the overview table with its sparklines over its window.
"""

from __future__ import annotations

from typing import Any

from telemetry.dashboard import views
from telemetry.dashboard.charts import bar_chart, interval_chart
from telemetry.dashboard.pages import overview_body, route_charts, route_events, route_summary
from telemetry.reports.output import render_report_html
from telemetry.sql import Query

__all__ = ["decision_chart", "report_html"]


def _interval(label: str, rate: float | None, low: float | None, high: float | None) -> tuple[str, float | None, float | None, float | None]:
    return label, rate, low, high


def decision_chart(result: Any) -> str:
    """The chart of what the report decides on (pure): pass rates with their intervals against the
    target (diagnostics), the two arms (canary), current against candidate cost (cost-projection)."""
    name = result.to_report().report
    if name == "diagnostics":
        rows = [_interval(f"{r.kind} · {r.evaluator}", r.quality.rate, r.quality.low, r.quality.high) for r in result.results]
        return interval_chart("decision", f"Pass rate per evaluator, 95% intervals (target {100 * result.target:g}%)",
                              rows, target=result.target)  # fmt: skip
    if name == "canary":
        arms = [(f"{role}: {a.name}", a) for role, a in (("control", result.control), ("canary", result.canary))]
        quality = interval_chart("decision", "Pass rate per arm, 95% intervals",
                                 [_interval(label, a.quality.rate, a.quality.low, a.quality.high) for label, a in arms])  # fmt: skip
        cost = bar_chart("decision_cost", "Cost per request", [(label, a.cost_per_request, f"c{i}") for i, (label, a) in enumerate(arms)])
        p95 = bar_chart("decision_latency", "p95 latency of ok requests", [(label, a.p95_latency_ms, f"c{i}") for i, (label, a) in enumerate(arms)],
                        fmt="ms")  # fmt: skip
        return quality + cost + p95
    if name == "cost-projection":
        p = result.projection
        per_request = bar_chart("decision", "Cost per request: now and on the candidate", [
            ("now", p.current_cost_per_request, "c0"), (f"on {result.candidate}", p.candidate_cost_per_request, "c1")])  # fmt: skip
        monthly = bar_chart("decision_monthly", "Monthly cost at the current traffic", [
            ("now", p.current_monthly, "c0"), (f"on {result.candidate}", p.projected_monthly, "c1")])  # fmt: skip
        return per_request + monthly
    return ""


def report_html(result: Any, query: Query, database: str) -> str:
    """The HTML page of a report ``result`` (an object with ``to_report()``, a ``window`` and, for a
    route's report, a ``route``). Blocks: loads the dashboard's data for the window."""
    report = result.to_report()
    window = views.custom_window(result.window.start_ms, result.window.end_ms)
    route = getattr(result, "route", None)
    if isinstance(route, str):
        view = views.load_route(query, database, route, window=window)
        charts = route_summary(view) + route_charts(view) + decision_chart(result) + route_events(view)
    else:
        overview = views.load_overview(query, database, window=window)
        charts = overview_body(overview, "", links=False)
    return render_report_html(report, charts)
