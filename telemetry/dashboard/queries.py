"""The dashboard's SQL, written once for the built-in pages and for Grafana.

Each :class:`Template` is one statement with placeholders that :func:`fill` replaces:

- ``@DB@``: the database (a plain identifier);
- ``@T0@``, ``@T1@``: the window ``[T0, T1)`` as ``DateTime`` expressions;
- ``@BUCKET@``: the bucket width in seconds;
- ``@ROUTE@``: the route as a string literal.

:func:`builtin_params` gives concrete values (the pages, the HTML reports); :data:`GRAFANA_PARAMS`
gives Grafana's macros and template variables (``$__fromTime``, ``$__interval_s``,
``${route:sqlstring}``), from which ``tools/grafana.py`` writes the provisioned dashboard.

Every statement reads ``route_minute_state`` (the storage behind ``route_window``) or the
``alerts`` and ``tier_gate_status`` views: the ratios use the formulas of ``route_window``
(migration 0003), recomputed from sums, NULL when the denominator is 0. They are plain SELECTs
that ``telemetry.sql``'s read-only checker accepts (``route_window(bucket_seconds = N)`` itself
is a parameterized view, which the checker refuses as a table function).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from telemetry.reports.query import check_database, sql_string

__all__ = [
    "ALERTS",
    "ANCHOR",
    "GATES",
    "GRAFANA_PARAMS",
    "OVERVIEW",
    "ROUTES",
    "ROUTE_ERRORS",
    "ROUTE_FIRST_SEEN",
    "ROUTE_MODELS",
    "ROUTE_MODEL_HOURS",
    "ROUTE_OVERVIEW",
    "ROUTE_SERIES",
    "SPARKS",
    "TEMPLATES",
    "Template",
    "builtin_params",
    "fill",
]

_TOKEN = re.compile(r"@[A-Z0-9_]+@")
TOKENS = ("@DB@", "@T0@", "@T1@", "@BUCKET@", "@ROUTE@")


@dataclass(frozen=True, slots=True)
class Template:
    """One statement; ``columns`` are the result's columns in order (the pages read them by name)."""

    name: str
    sql: str
    columns: tuple[str, ...]

    def tokens(self) -> set[str]:
        return set(_TOKEN.findall(self.sql))


def fill(template: Template, params: Mapping[str, str]) -> str:
    """``template`` with every placeholder replaced. ValueError when one has no value."""
    missing = template.tokens() - set(params)
    if missing:
        raise ValueError(f"{template.name}: no value for {', '.join(sorted(missing))}")
    return _TOKEN.sub(lambda m: params[m.group(0)], template.sql)


def _datetime(ms: int) -> str:
    return f"toDateTime({int(ms) // 1000}, 'UTC')"


def builtin_params(database: str, *, t0_ms: int = 0, t1_ms: int = 0, bucket_s: int = 60, route: str = "") -> dict[str, str]:
    """Concrete values: the window ``[t0_ms, t1_ms)`` (epoch ms, whole seconds), a bucket and a route."""
    if bucket_s <= 0:
        raise ValueError("bucket must be > 0 seconds")
    return {"@DB@": check_database(database), "@T0@": _datetime(t0_ms), "@T1@": _datetime(t1_ms),
            "@BUCKET@": str(int(bucket_s)), "@ROUTE@": sql_string(route)}  # fmt: skip


GRAFANA_PARAMS: dict[str, str] = {
    "@DB@": "${database}",
    "@T0@": "$__fromTime",
    "@T1@": "$__toTime",
    "@BUCKET@": "greatest(60, $__interval_s)",
    "@ROUTE@": "${route:sqlstring}",
}
"""Grafana's values: the panel's time range and interval (ClickHouse plugin macros) and the
dashboard's ``database`` (constant) and ``route`` template variables (``sqlstring`` escapes quotes)."""

# The ratios of route_window (0003_views.sql), over sums named requests, errors, judged, passed,
# priced_requests and cost_usd.
_RATIOS = """\
    if(judged = 0, NULL, passed / judged) AS pass_rate,
    if(requests = 0, NULL, judged / requests) AS judged_fraction,
    if(priced_requests = 0, NULL, cost_usd / priced_requests) AS cost_per_request,
    if(passed = 0 OR priced_requests = 0, NULL, (cost_usd / priced_requests) / (passed / judged)) AS cost_per_correct,
    if(requests = 0, NULL, errors / requests) AS error_rate"""
_SUMS = """\
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(judged) AS judged,
    sum(passed) AS passed,
    sum(priced_requests) AS priced_requests,
    sum(cost_usd) AS cost_usd"""
_RATIO_COLUMNS = ("pass_rate", "judged_fraction", "cost_per_request", "cost_per_correct", "error_rate")
_SUM_COLUMNS = ("requests", "errors", "judged", "passed", "priced_requests", "cost_usd")


def _quantile(state: str, index: int, name: str) -> str:
    q = f"arrayElement(quantilesDDMerge(0.01, 0.5, 0.95, 0.99)({state}), {index})"
    return f"    if(isNaN({q}), NULL, {q}) AS {name}"


ANCHOR = Template("anchor", """\
SELECT count() AS rows, toUnixTimestamp(max(minute)) AS newest
FROM @DB@.route_minute_state
WHERE minute <= now() + INTERVAL 1 HOUR""", ("rows", "newest"))
"""The newest minute with data (rows dated over an hour ahead of the engine's clock left out):
the built-in pages end their window there, so a replayed or simulated day shows as it happened."""

ROUTES = Template("routes", """\
SELECT DISTINCT route
FROM @DB@.route_minute_state
ORDER BY route""", ("route",))

def _overview(name: str, where: str) -> Template:
    return Template(name, f"""\
SELECT
    route,
    model,
    max(team) AS team,
{_SUMS},
{_RATIOS},
{_quantile("latency_state", 2, "latency_p95_ms")}
FROM @DB@.route_minute_state
WHERE {where}minute >= @T0@ AND minute < @T1@
GROUP BY route, model
HAVING requests > 0
ORDER BY route, requests DESC, model""", ("route", "model", "team", *_SUM_COLUMNS, *_RATIO_COLUMNS, "latency_p95_ms"))


OVERVIEW = _overview("overview", "")
"""Per route x served model over the window: traffic, quality, cost, p95 latency."""

ROUTE_OVERVIEW = _overview("route_overview", "route = @ROUTE@ AND ")
"""OVERVIEW for one route (its served models on the route page): reads only that route's rows."""

SPARKS = Template("sparks", f"""\
SELECT
    route,
    model,
    toStartOfInterval(minute, toIntervalSecond(@BUCKET@)) AS time,
{_SUMS},
{_RATIOS}
FROM @DB@.route_minute_state
WHERE minute >= @T0@ AND minute < @T1@
GROUP BY route, model, time
ORDER BY route, model, time""", ("route", "model", "time", *_SUM_COLUMNS, *_RATIO_COLUMNS))
"""Per route x served model and bucket: the sparklines of cost per correct answer and pass rate."""

ROUTE_SERIES = Template("route_series", f"""\
SELECT
    toStartOfInterval(minute, toIntervalSecond(@BUCKET@)) AS time,
{_SUMS},
{_RATIOS},
{_quantile("latency_state", 1, "latency_p50_ms")},
{_quantile("latency_state", 2, "latency_p95_ms")},
{_quantile("latency_state", 3, "latency_p99_ms")},
{_quantile("ttft_state", 1, "ttft_p50_ms")},
{_quantile("ttft_state", 2, "ttft_p95_ms")},
{_quantile("ttft_state", 3, "ttft_p99_ms")}
FROM @DB@.route_minute_state
WHERE route = @ROUTE@ AND minute >= @T0@ AND minute < @T1@
GROUP BY time
ORDER BY time""", ("time", *_SUM_COLUMNS, *_RATIO_COLUMNS, "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                   "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms"))  # fmt: skip
"""One route, all served models together, per bucket: quality, cost, latency and TTFT quantiles
(the DDSketch states of every model merged, so the quantiles are the route's own)."""

ROUTE_ERRORS = Template("route_errors", """\
SELECT
    toStartOfInterval(minute, toIntervalSecond(@BUCKET@)) AS time,
    error_type,
    sum(n) AS errors
FROM @DB@.route_minute_state
ARRAY JOIN mapKeys(errors_by_type) AS error_type, mapValues(errors_by_type) AS n
WHERE route = @ROUTE@ AND minute >= @T0@ AND minute < @T1@
GROUP BY time, error_type
HAVING errors > 0
ORDER BY time, error_type""", ("time", "error_type", "errors"))
"""Errors per type and bucket (long format: one row per type)."""

ROUTE_MODELS = Template("route_models", """\
SELECT
    toStartOfInterval(minute, toIntervalSecond(@BUCKET@)) AS time,
    model,
    sum(requests) AS requests
FROM @DB@.route_minute_state
WHERE route = @ROUTE@ AND minute >= @T0@ AND minute < @T1@
GROUP BY time, model
HAVING requests > 0
ORDER BY time, model""", ("time", "model", "requests"))
"""Requests per served model and bucket: the model mix."""

ROUTE_MODEL_HOURS = Template("route_model_hours", """\
SELECT
    toStartOfHour(minute) AS time,
    model,
    sum(requests) AS requests,
    sum(priced_requests) AS priced_requests,
    sum(cost_usd) AS cost_usd
FROM @DB@.route_minute_state
WHERE route = @ROUTE@ AND minute >= @T0@ AND minute < @T1@
GROUP BY time, model
HAVING requests > 0
ORDER BY time, model""", ("time", "model", "requests", "priced_requests", "cost_usd"))
"""Hourly requests and cost per served model: the input of ``reports.history.tier_changes``."""

ROUTE_FIRST_SEEN = Template("route_first_seen", """\
SELECT model, min(minute) AS time
FROM @DB@.route_minute_state
WHERE route = @ROUTE@ AND requests > 0
GROUP BY model
ORDER BY time, model""", ("model", "time"))
"""When each served model first served the route, over all stored history (minute precision)."""

ALERTS = Template("alerts", """\
SELECT
    fingerprint,
    alertname,
    route,
    model,
    starts_at,
    any(severity) AS severity,
    any(team) AS team,
    max(ends_at) AS ended_at,
    argMax(status, sequence) AS last_status,
    argMin(summary, sequence) AS first_summary,
    argMax(summary, sequence) AS last_summary,
    argMin(evidence, sequence) AS fired_evidence,
    count() AS notifications,
    max(decided_at) AS last_decided_at
FROM @DB@.alerts
GROUP BY fingerprint, alertname, route, model, starts_at
HAVING last_status = 'firing' OR (starts_at < @T1@ AND (ended_at IS NULL OR ended_at >= @T0@))
ORDER BY starts_at DESC, alertname, route
LIMIT 1000""", ("fingerprint", "alertname", "route", "model", "starts_at", "severity", "team", "ended_at", "last_status",
                "first_summary", "last_summary", "fired_evidence", "notifications", "last_decided_at"))  # fmt: skip
"""Alert episodes (one per fingerprint and start) that overlap the window, and every one still
firing: a firing notification without its resolution yet."""

GATES = Template("gates", """\
SELECT
    id,
    route,
    current_model,
    proposed_model,
    state,
    opened_at,
    decided_at,
    applied_at,
    author,
    reviewer,
    hypothesis
FROM @DB@.tier_gate_status
WHERE opened_at < @T1@ AND greatest(opened_at, ifNull(decided_at, opened_at), ifNull(applied_at, opened_at)) >= @T0@
ORDER BY opened_at, id
LIMIT 1000""", ("id", "route", "current_model", "proposed_model", "state", "opened_at", "decided_at", "applied_at",
                "author", "reviewer", "hypothesis"))  # fmt: skip
"""Tier-up gates with a record (opened, decided, applied) inside the window."""

TEMPLATES: tuple[Template, ...] = (
    ANCHOR, ROUTES, OVERVIEW, SPARKS, ROUTE_OVERVIEW, ROUTE_SERIES, ROUTE_ERRORS, ROUTE_MODELS, ROUTE_MODEL_HOURS, ROUTE_FIRST_SEEN,
    ALERTS, GATES,
)  # fmt: skip
