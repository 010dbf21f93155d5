"""Write Grafana's dashboard from the built-in dashboard's queries: ``python -m tools.grafana``.

``deploy/grafana/dashboards/llm-telemetry.json`` is generated, never edited by hand: every panel's
SQL is a template of :mod:`telemetry.dashboard.queries` filled with Grafana's macros and template
variables (:data:`telemetry.dashboard.queries.GRAFANA_PARAMS`), sometimes wrapped in an outer
SELECT that picks the panel's columns. ``tests/unit/test_grafana.py`` fails when the file is not
what this module writes, and runs every query on the real engine.

    python -m tools.grafana            # rewrite the file
    python -m tools.grafana --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from telemetry.dashboard import queries as q
from telemetry.reports.stats import Z95_TWO_SIDED

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "llm-telemetry.json"
DATASOURCE_UID = "llm-telemetry-clickhouse"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID}
TABLE, TIME_SERIES = 1, 0  # the plugin's "format" values (sqlds: table 1, time series 0)


def sql(template: q.Template) -> str:
    """``template`` filled for Grafana."""
    return q.fill(template, q.GRAFANA_PARAMS)


def wilson_sql(passed: str, judged: str, side: int, z: float = Z95_TWO_SIDED) -> str:
    """SQL of the Wilson score bound (``side`` -1: low, +1: high) of ``passed / judged``, exactly as
    :func:`telemetry.detect.stats.wilson` computes it (clamped to [0, p] and [p, 1]); NULL without verdicts."""
    p = f"({passed} / {judged})"
    z2 = f"{z!r} * {z!r}"
    bound = (f"(({p} + {z2} / (2 * {judged})) {'-' if side < 0 else '+'} {z!r} * sqrt({p} * (1 - {p}) / {judged} "
             f"+ {z2} / (4 * {judged} * {judged}))) / (1 + {z2} / {judged})")  # fmt: skip
    if side < 0:
        return f"if({judged} = 0, NULL, if({passed} = 0, 0, greatest(0, least({p}, {bound}))))"
    return f"if({judged} = 0, NULL, if({passed} >= {judged}, 1, least(1, greatest({p}, {bound}))))"


def _wrap(template: q.Template, columns: str, order: str = "time") -> str:
    return f"SELECT {columns}\nFROM (\n{sql(template)}\n)\nORDER BY {order}"


def _target(raw: str, fmt: int) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "editorType": "sql", "format": fmt,
            "queryType": "timeSeries" if fmt == TIME_SERIES else "table", "rawSql": raw, "refId": "A"}  # fmt: skip


def _defaults(unit: str, *, stacked: bool = False, bars: bool = False, minimum: float | None = None,
              maximum: float | None = None, decimals: int | None = None) -> dict[str, Any]:  # fmt: skip
    custom: dict[str, Any] = {"drawStyle": "bars" if bars else "line", "lineWidth": 1 if bars else 2,
                              "fillOpacity": 80 if bars else 0, "showPoints": "never", "spanNulls": False,
                              "stacking": {"group": "A", "mode": "normal" if stacked else "none"}}  # fmt: skip
    defaults: dict[str, Any] = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    return defaults


def _panel(ident: int, title: str, description: str, grid: tuple[int, int, int, int], kind: str, raw: str, fmt: int,
           defaults: dict[str, Any], overrides: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    x, y, w, h = grid
    return {
        "id": ident, "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}} if kind == "timeseries" else {"showHeader": True},
        "targets": [_target(raw, fmt)],
    }  # fmt: skip


def _row(ident: int, title: str, y: int) -> dict[str, Any]:
    return {"id": ident, "type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": []}  # fmt: skip


def _band_overrides() -> list[dict[str, Any]]:
    """Draw the pass rate's interval as a band: the high bound filled down to the low one."""
    return [
        {"matcher": {"id": "byName", "options": "pass_rate_high95"},
         "properties": [{"id": "custom.fillBelowTo", "value": "pass_rate_low95"}, {"id": "custom.lineWidth", "value": 0},
                        {"id": "custom.fillOpacity", "value": 20}, {"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}}]},
        {"matcher": {"id": "byName", "options": "pass_rate_low95"},
         "properties": [{"id": "custom.lineWidth", "value": 0}, {"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}}]},
        {"matcher": {"id": "byName", "options": "pass_rate"},
         "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "dark-green"}}]},
    ]  # fmt: skip


def _annotation(name: str, color: str, raw: str) -> dict[str, Any]:
    return {"name": name, "datasource": DATASOURCE, "enable": True, "iconColor": color, "hide": False,
            "target": _target(raw, TABLE)}  # fmt: skip


def _gate_events(route_filter: str) -> str:
    """Each gate's opening, decision and application as annotations."""
    gates = sql(q.GATES)
    parts = [
        f"SELECT opened_at AS time, concat('gate ', id, ' opened by ', author, ': ', current_model, ' -> ', proposed_model) "
        f"AS text, route\nFROM (\n{gates}\n)",
        f"SELECT assumeNotNull(decided_at) AS time, concat('gate ', id, if(state = 'rejected', ' rejected', ' approved'), "
        f"' by ', reviewer) AS text, route\nFROM (\n{gates}\n)\nWHERE decided_at IS NOT NULL",
        f"SELECT assumeNotNull(applied_at) AS time, concat('gate ', id, ' applied: ', proposed_model, ' serves the route') "
        f"AS text, route\nFROM (\n{gates}\n)\nWHERE applied_at IS NOT NULL",
    ]  # fmt: skip
    return f"SELECT time, text\nFROM (\n" + "\nUNION ALL\n".join(parts) + f"\n)\nWHERE {route_filter} AND $__timeFilter(time)\nORDER BY time"


def dashboard() -> dict[str, Any]:
    """The dashboard document (deterministic)."""
    same = "Same SQL as the built-in dashboard: telemetry.dashboard.queries."
    series_cols = "time, {cols}"
    panels: list[dict[str, Any]] = [_row(1, "Routes", 0)]
    panels.append(_panel(
        2, "Routes x served models", f"Traffic, pass rate, cost per request, cost per correct answer, p95 latency and "
        f"error rate per route and served model over the time range. {same}OVERVIEW", (0, 1, 24, 9), "table",
        sql(q.OVERVIEW), TABLE, {"custom": {"align": "auto"}},
        [{"matcher": {"id": "byRegexp", "options": "^(pass_rate|judged_fraction|error_rate)$"},
          "properties": [{"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 1}]},
         {"matcher": {"id": "byRegexp", "options": "^(cost_usd|cost_per_request|cost_per_correct)$"},
          "properties": [{"id": "unit", "value": "currencyUSD"}, {"id": "decimals", "value": 6}]},
         {"matcher": {"id": "byName", "options": "latency_p95_ms"}, "properties": [{"id": "unit", "value": "ms"}]}],
    ))  # fmt: skip
    panels.append(_panel(
        3, "Cost per correct answer by route and model", f"Cost per request / pass rate, per bucket. {same}SPARKS",
        (0, 10, 12, 8), "timeseries", _wrap(q.SPARKS, "time, concat(route, ' · ', model) AS series, cost_per_correct",
                                            "time, series"),
        TIME_SERIES, _defaults("currencyUSD", minimum=0, decimals=5),
    ))  # fmt: skip
    panels.append(_panel(
        4, "Pass rate by route and model", f"Online judge pass rate per bucket. {same}SPARKS", (12, 10, 12, 8), "timeseries",
        _wrap(q.SPARKS, "time, concat(route, ' · ', model) AS series, pass_rate", "time, series"), TIME_SERIES,
        _defaults("percentunit", maximum=1, decimals=1),
    ))  # fmt: skip
    panels.append(_panel(
        5, "Alerts", f"Alert episodes overlapping the time range, and every one still firing. {same}ALERTS",
        (0, 18, 24, 8), "table", sql(q.ALERTS), TABLE, {"custom": {"align": "auto"}},
    ))  # fmt: skip
    panels.append(_row(6, "Route: $route", 26))
    route = [
        (7, "Pass rate", "Online judge pass rate with its Wilson 95% interval. ",
         series_cols.format(cols=f"pass_rate, {wilson_sql('passed', 'judged', -1)} AS pass_rate_low95, "
                                 f"{wilson_sql('passed', 'judged', 1)} AS pass_rate_high95"),
         _defaults("percentunit", maximum=1, decimals=1), _band_overrides()),
        (8, "Cost per correct answer", "Cost per request / pass rate. ", "time, cost_per_correct",
         _defaults("currencyUSD", minimum=0, decimals=5), None),
        (9, "Cost per request", "Mean cost of a priced request. ", "time, cost_per_request",
         _defaults("currencyUSD", minimum=0, decimals=5), None),
        (10, "Latency", "p50, p95, p99 of end-to-end latency, all models merged. ",
         "time, latency_p50_ms AS p50, latency_p95_ms AS p95, latency_p99_ms AS p99", _defaults("ms", minimum=0), None),
        (11, "Time to first token", "p50, p95, p99 of TTFT over the requests that report it. ",
         "time, ttft_p50_ms AS p50, ttft_p95_ms AS p95, ttft_p99_ms AS p99", _defaults("ms", minimum=0), None),
    ]  # fmt: skip
    for i, (ident, title, text, cols, defaults, overrides) in enumerate(route):
        panels.append(_panel(ident, title, f"{text}{same}ROUTE_SERIES", ((i % 2) * 12, 27 + (i // 2) * 8, 12, 8),
                             "timeseries", _wrap(q.ROUTE_SERIES, cols), TIME_SERIES, defaults, overrides))  # fmt: skip
    panels.append(_panel(
        12, "Errors by type", f"Errors per bucket and error type. {same}ROUTE_ERRORS", (12, 43, 12, 8), "timeseries",
        sql(q.ROUTE_ERRORS), TIME_SERIES, _defaults("short", stacked=True, bars=True, minimum=0, decimals=0),
    ))  # fmt: skip
    panels.append(_panel(
        13, "Model mix", f"Requests per bucket and served model. {same}ROUTE_MODELS", (0, 51, 24, 8), "timeseries",
        sql(q.ROUTE_MODELS), TIME_SERIES, _defaults("short", stacked=True, bars=True, minimum=0, decimals=0),
    ))  # fmt: skip
    route_filter = "route = ${route:sqlstring}"
    annotations = [
        {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
         "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"},
        _annotation("Alerts firing", "red", f"SELECT starts_at AS time, concat(alertname, ' firing: ', first_summary) AS text, "
                    f"alertname AS tags\nFROM (\n{sql(q.ALERTS)}\n)\nWHERE {route_filter} AND $__timeFilter(starts_at)"),
        _annotation("Alerts resolved", "green", f"SELECT ended_at AS time, concat(alertname, ' resolved: ', last_summary) AS text, "
                    f"alertname AS tags\nFROM (\n{sql(q.ALERTS)}\n)\nWHERE {route_filter} AND ended_at IS NOT NULL "
                    f"AND $__timeFilter(ended_at)"),
        _annotation("New served model", "orange", f"SELECT time, concat('first served by ', model) AS text\nFROM (\n"
                    f"{sql(q.ROUTE_FIRST_SEEN)}\n)\nWHERE time > (SELECT min(minute) FROM ${{database}}.route_minute_state "
                    f"WHERE {route_filter}) AND $__timeFilter(time)"),
        _annotation("Tier-up gates", "blue", _gate_events(route_filter)),
    ]  # fmt: skip
    templating = [
        {"name": "database", "type": "constant", "hide": 2, "label": "database", "query": "llm_telemetry",
         "current": {"text": "llm_telemetry", "value": "llm_telemetry"}},
        {"name": "route", "type": "query", "label": "route", "datasource": DATASOURCE, "query": sql(q.ROUTES),
         "definition": sql(q.ROUTES), "refresh": 2, "sort": 1, "multi": False, "includeAll": False,
         "current": {}, "options": []},
    ]  # fmt: skip
    return {
        "uid": "llm-telemetry", "title": "llm-telemetry: cost, quality and latency per route", "tags": ["llm-telemetry"],
        "description": ("Generated by python -m tools.grafana from telemetry/dashboard/queries.py: the same SQL as the "
                        "built-in dashboard (the worker's / page)."),
        "editable": True, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39, "version": 1, "timezone": "utc",
        "time": {"from": "now-24h", "to": "now"}, "fiscalYearStartMonth": 0, "liveNow": False, "links": [],
        "annotations": {"list": annotations}, "templating": {"list": templating}, "panels": panels,
    }  # fmt: skip


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.grafana", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DASHBOARD.read_text() if DASHBOARD.exists() else ""
        if current != text:
            print(f"{DASHBOARD.relative_to(REPO)} is out of date: run python -m tools.grafana", file=sys.stderr)
            return 1
        return 0
    DASHBOARD.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD.write_text(text)
    print(f"wrote {DASHBOARD.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
