"""What each page shows, as data: loaders that run the queries, and pure builders from rows.

A loader (``load_*``) takes a blocking :data:`telemetry.sql.Query` and the database name, runs
the statements of :mod:`telemetry.dashboard.queries` and hands the rows to a builder
(``build_*``), a pure function of rows and explicit times. Loaders block: the web layer calls
them on an executor thread.

Windows end at the newest data, not at the wall clock (:func:`window_for`), like the reports:
a live worker's newest minute is now; a replayed or simulated day shows as it happened.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telemetry.dashboard import queries as q
from telemetry.reports.history import HourBucket, TierChange, tier_changes
from telemetry.reports.query import rows_of
from telemetry.reports.stats import Proportion, wilson
from telemetry.sql import Query, SqlError

__all__ = [
    "RANGES",
    "AlertEpisode",
    "AlertsView",
    "Gate",
    "Marker",
    "ModelRow",
    "Overview",
    "RangeSpec",
    "RouteView",
    "Spark",
    "Window",
    "build_alerts",
    "build_overview",
    "build_route",
    "custom_window",
    "load_alerts",
    "load_overview",
    "load_route",
    "load_window",
    "markers_for",
    "ms_of",
    "window_for",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


# -- windows -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RangeSpec:
    """A range the picker offers: its span, the charts' bucket and the sparklines' bucket."""

    name: str
    span_ms: int
    bucket_s: int
    spark_bucket_s: int


RANGES: dict[str, RangeSpec] = {
    "hour": RangeSpec("hour", HOUR_MS, 60, 300),
    "day": RangeSpec("day", DAY_MS, 900, 3600),
    "week": RangeSpec("week", 7 * DAY_MS, 3600, 6 * 3600),
}
"""hour: 60 one-minute points; day: 96 quarter-hours; week: 168 hours."""


@dataclass(frozen=True, slots=True)
class Window:
    """``[t0_ms, t1_ms)`` of request time; ``newest_ms`` is the newest minute with data (None: no data)."""

    name: str
    t0_ms: int
    t1_ms: int
    bucket_s: int
    spark_bucket_s: int
    newest_ms: int | None

    @property
    def bucket_ms(self) -> int:
        return self.bucket_s * 1000

    def params(self, database: str, *, route: str = "", spark: bool = False) -> dict[str, str]:
        bucket = self.spark_bucket_s if spark else self.bucket_s
        return q.builtin_params(database, t0_ms=self.t0_ms, t1_ms=self.t1_ms, bucket_s=bucket, route=route)


def window_for(range_name: str, newest_ms: int | None) -> Window:
    """The window of ``range_name`` ending after the newest minute with data. Pure.

    The end is the end of that minute; the start is ``end - span`` rounded down to the chart
    bucket, so every bucket but the newest is whole. Without data it ends at the epoch (empty)."""
    spec = RANGES[range_name]
    end = (newest_ms + MINUTE_MS) if newest_ms is not None else 0
    bucket = spec.bucket_s * 1000
    start = ((end - spec.span_ms) // bucket) * bucket
    return Window(spec.name, start, end, spec.bucket_s, spec.spark_bucket_s, newest_ms)


_BUCKETS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400)


def custom_window(t0_ms: int, t1_ms: int, *, max_points: int = 200) -> Window:
    """A window over ``[t0_ms, t1_ms]`` (a report's), with the smallest bucket giving at most
    ``max_points`` points. Pure."""
    end = t1_ms - t1_ms % MINUTE_MS + MINUTE_MS
    span = max(MINUTE_MS, end - t0_ms)
    bucket = next((b for b in _BUCKETS_S if span / (b * 1000) <= max_points), _BUCKETS_S[-1])
    start = (t0_ms // (bucket * 1000)) * bucket * 1000
    spark = next((b for b in _BUCKETS_S if span / (b * 1000) <= 30), _BUCKETS_S[-1])
    return Window("custom", start, end, bucket, spark, t1_ms)


def ms_of(value: Any) -> int | None:
    """Epoch ms of a value as queries return it: ISO text (``telemetry.sql`` makes datetimes
    ISO strings), a datetime, or a number of ms. Naive times are UTC."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if not value:
            return None
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(round(value.timestamp() * 1000))
    raise ValueError(f"not a time: {value!r}")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) or math.isinf(f) else f


def load_window(query: Query, database: str, range_name: str) -> Window:
    """The window of ``range_name`` on the data in ``database``. Blocks."""
    rows = rows_of(query(q.fill(q.ANCHOR, q.builtin_params(database))))
    newest = int(rows[0]["newest"]) * 1000 if rows and int(rows[0]["rows"] or 0) > 0 else None
    return window_for(range_name, newest)


# -- page models ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelRow:
    """One route x served model over a window (a row of the overview query)."""

    route: str
    model: str
    team: str
    requests: int
    errors: int
    judged: int
    passed: int
    priced_requests: int
    cost_usd: float
    pass_rate: float | None
    judged_fraction: float | None
    cost_per_request: float | None
    cost_per_correct: float | None
    error_rate: float | None
    latency_p95_ms: float | None

    @property
    def quality(self) -> Proportion:
        return Proportion(self.passed, self.judged)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ModelRow:
        return cls(
            route=str(row["route"]), model=str(row["model"]), team=str(row.get("team") or ""),
            requests=int(row["requests"] or 0), errors=int(row["errors"] or 0), judged=int(row["judged"] or 0),
            passed=int(row["passed"] or 0), priced_requests=int(row["priced_requests"] or 0),
            cost_usd=float(row["cost_usd"] or 0.0), pass_rate=_num(row["pass_rate"]),
            judged_fraction=_num(row["judged_fraction"]), cost_per_request=_num(row["cost_per_request"]),
            cost_per_correct=_num(row["cost_per_correct"]), error_rate=_num(row["error_rate"]),
            latency_p95_ms=_num(row.get("latency_p95_ms")),
        )  # fmt: skip


Points = list[tuple[int, float | None]]


@dataclass(frozen=True, slots=True)
class Spark:
    """A route x model's cost per correct answer and pass rate per sparkline bucket."""

    pass_rate: Points
    cost_per_correct: Points


@dataclass(frozen=True, slots=True)
class AlertEpisode:
    """One alert from its first firing to its resolution (or still firing)."""

    fingerprint: str
    alertname: str
    route: str
    model: str
    severity: str
    team: str
    starts_ms: int
    ended_ms: int | None
    status: str
    first_summary: str
    last_summary: str
    evidence: str
    notifications: int

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AlertEpisode:
        return cls(
            fingerprint=str(row["fingerprint"]), alertname=str(row["alertname"]), route=str(row["route"]),
            model=str(row["model"]), severity=str(row["severity"]), team=str(row["team"]),
            starts_ms=ms_of(row["starts_at"]) or 0, ended_ms=ms_of(row["ended_at"]), status=str(row["last_status"]),
            first_summary=str(row["first_summary"]), last_summary=str(row["last_summary"]),
            evidence=str(row["fired_evidence"]), notifications=int(row["notifications"]),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Gate:
    """A tier-up gate's record (``tier_gate_status``)."""

    id: str
    route: str
    current_model: str
    proposed_model: str
    state: str
    opened_ms: int
    decided_ms: int | None
    applied_ms: int | None
    author: str
    reviewer: str
    hypothesis: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Gate:
        return cls(
            id=str(row["id"]), route=str(row["route"]), current_model=str(row["current_model"]),
            proposed_model=str(row["proposed_model"]), state=str(row["state"]), opened_ms=ms_of(row["opened_at"]) or 0,
            decided_ms=ms_of(row["decided_at"]), applied_ms=ms_of(row["applied_at"]), author=str(row["author"]),
            reviewer=str(row["reviewer"]), hypothesis=str(row["hypothesis"]),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Marker:
    """A moment on a route's charts. ``kind``: ``firing``, ``resolved`` (alerts), ``model``
    (a new served model; ``tier-up`` when it costs more per request), ``gate``."""

    t_ms: int
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Overview:
    window: Window
    rows: list[ModelRow]
    sparks: dict[tuple[str, str], Spark]
    alerts: list[AlertEpisode]

    @property
    def firing(self) -> list[AlertEpisode]:
        return [a for a in self.alerts if a.firing]

    def routes(self) -> list[str]:
        """Routes by requests in the window, busiest first."""
        totals: dict[str, int] = defaultdict(int)
        for r in self.rows:
            totals[r.route] += r.requests
        return sorted(totals, key=lambda route: (-totals[route], route))


@dataclass(frozen=True, slots=True)
class RouteView:
    route: str
    window: Window
    models: list[ModelRow]
    series: list[dict[str, Any]]
    errors: dict[str, Points]
    mix: dict[str, Points]
    changes: list[TierChange]
    alerts: list[AlertEpisode]
    gates: list[Gate]
    markers: list[Marker]
    notes: list[str] = field(default_factory=list)

    def line(self, column: str) -> Points:
        """``column`` of the route series per bucket (None where it is NULL)."""
        return [(int(row["t_ms"]), _num(row.get(column))) for row in self.series]

    def band(self) -> list[tuple[int, float, float]]:
        """The pass rate's Wilson 95% interval per bucket with verdicts (reports.stats.wilson)."""
        out = []
        for row in self.series:
            judged = int(row.get("judged") or 0)
            if judged > 0:
                low, high = wilson(int(row.get("passed") or 0), judged)
                out.append((int(row["t_ms"]), low, high))
        return out

    @property
    def total(self) -> ModelRow | None:
        """All models of the route together over the window (None without traffic)."""
        if not self.models:
            return None
        m = self.models
        req, err = sum(r.requests for r in m), sum(r.errors for r in m)
        judged, passed = sum(r.judged for r in m), sum(r.passed for r in m)
        priced, cost = sum(r.priced_requests for r in m), sum(r.cost_usd for r in m)
        cpr = cost / priced if priced else None
        rate = passed / judged if judged else None
        return ModelRow(self.route, "all models", m[0].team, req, err, judged, passed, priced, cost, rate,
                        judged / req if req else None, cpr, cpr / rate if cpr is not None and rate else None,
                        err / req if req else None, None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AlertsView:
    window: Window
    episodes: list[AlertEpisode]

    @property
    def firing(self) -> list[AlertEpisode]:
        return [a for a in self.episodes if a.firing]


# -- builders (pure) --------------------------------------------------------------------------------------
def _episodes(rows: Iterable[Mapping[str, Any]]) -> list[AlertEpisode]:
    return sorted((AlertEpisode.of(r) for r in rows), key=lambda a: (-a.starts_ms, a.alertname, a.route, a.model))


def build_overview(window: Window, overview_rows: Sequence[Mapping[str, Any]], spark_rows: Sequence[Mapping[str, Any]],
                   alert_rows: Sequence[Mapping[str, Any]]) -> Overview:  # fmt: skip
    """The overview from the rows of OVERVIEW, SPARKS and ALERTS. Pure."""
    sparks: dict[tuple[str, str], tuple[Points, Points]] = defaultdict(lambda: ([], []))
    for row in spark_rows:
        t = ms_of(row["time"]) or 0
        rates, cpcs = sparks[(str(row["route"]), str(row["model"]))]
        rates.append((t, _num(row["pass_rate"])))
        cpcs.append((t, _num(row["cost_per_correct"])))
    return Overview(window, [ModelRow.of(r) for r in overview_rows],
                    {k: Spark(v[0], v[1]) for k, v in sparks.items()}, _episodes(alert_rows))  # fmt: skip


def _long(rows: Iterable[Mapping[str, Any]], key: str, value: str) -> dict[str, Points]:
    out: dict[str, Points] = defaultdict(list)
    for row in rows:
        out[str(row[key])].append((ms_of(row["time"]) or 0, _num(row[value])))
    return dict(sorted(out.items(), key=lambda kv: (-sum(v or 0 for _, v in kv[1]), kv[0])))


def markers_for(window: Window, changes: Sequence[TierChange], alerts: Sequence[AlertEpisode],
                gates: Sequence[Gate]) -> list[Marker]:  # fmt: skip
    """Every marker of a route inside the window, in time order. Pure.

    - a new served model (``tier-up`` when it costs more per request than the incumbent);
    - each alert's firing (``starts_at``) and resolution (``ends_at``);
    - each gate's opening, decision (approved or rejected) and application."""
    found: list[Marker] = []
    for c in changes:
        ratio = c.cost_ratio
        kind = "tier-up" if c.direction == "up" else "model"
        what = f"{c.previous_model or '?'} -> {c.model}"
        cost = f" (x{ratio:.2f} per request)" if ratio is not None else " (cost unknown)"
        found.append(Marker(c.first_seen_ms, kind, f"{'tier-up' if kind == 'tier-up' else 'model change'}: {what}{cost}"))
    for a in alerts:
        model = f" ({a.model})" if a.model else ""
        found.append(Marker(a.starts_ms, "firing", f"{a.alertname} firing{model}: {a.first_summary}"))
        if a.ended_ms is not None:
            found.append(Marker(a.ended_ms, "resolved", f"{a.alertname} resolved{model}: {a.last_summary}"))
    for g in gates:
        what = f"{g.current_model} -> {g.proposed_model}"
        found.append(Marker(g.opened_ms, "gate", f"gate {g.id} opened by {g.author}: {what}"))
        if g.decided_ms is not None:
            verdict = "rejected" if g.state == "rejected" else "approved"
            by = f" by {g.reviewer}" if g.reviewer else ""
            found.append(Marker(g.decided_ms, "gate", f"gate {g.id} {verdict}{by}: {what}"))
        if g.applied_ms is not None:
            found.append(Marker(g.applied_ms, "gate", f"gate {g.id} applied: {g.proposed_model} serves the route"))
    inside = [m for m in found if window.t0_ms <= m.t_ms < window.t1_ms]
    return sorted(inside, key=lambda m: (m.t_ms, m.kind, m.label))


def build_route(route: str, window: Window, *, overview_rows: Sequence[Mapping[str, Any]],
                series_rows: Sequence[Mapping[str, Any]], error_rows: Sequence[Mapping[str, Any]],
                model_rows: Sequence[Mapping[str, Any]], hour_rows: Sequence[Mapping[str, Any]],
                first_seen_rows: Sequence[Mapping[str, Any]], alert_rows: Sequence[Mapping[str, Any]],
                gate_rows: Sequence[Mapping[str, Any]], notes: Sequence[str] = ()) -> RouteView:  # fmt: skip
    """A route's page from the rows of its queries. Pure. Tier changes are
    :func:`telemetry.reports.history.tier_changes` over the window's hourly buckets."""
    series = [{**row, "t_ms": ms_of(row["time"]) or 0} for row in series_rows]
    hours = [HourBucket(ms_of(r["time"]) or 0, str(r["model"]), int(r["requests"]), int(r["priced_requests"] or 0),
                        float(r["cost_usd"] or 0.0)) for r in hour_rows]  # fmt: skip
    first_seen = {str(r["model"]): ms_of(r["time"]) or 0 for r in first_seen_rows}
    route_first = min(first_seen.values()) if first_seen else window.t0_ms
    changes = [c for c in tier_changes(hours, first_seen, route_first) if window.t0_ms <= c.first_seen_ms < window.t1_ms]
    alerts = [a for a in _episodes(alert_rows) if a.route == route]
    gates = [Gate.of(r) for r in gate_rows if str(r["route"]) == route]
    return RouteView(
        route=route, window=window, models=[ModelRow.of(r) for r in overview_rows if str(r["route"]) == route],
        series=series, errors=_long(error_rows, "error_type", "errors"), mix=_long(model_rows, "model", "requests"),
        changes=changes, alerts=alerts, gates=gates, markers=markers_for(window, changes, alerts, gates),
        notes=list(notes),
    )  # fmt: skip


def build_alerts(window: Window, alert_rows: Sequence[Mapping[str, Any]]) -> AlertsView:
    """The alerts page from the rows of ALERTS. Pure."""
    return AlertsView(window, _episodes(alert_rows))


# -- loaders (block) -----------------------------------------------------------------------------------------
PARALLEL = 1
"""Statements of one page run this many at a time. One: on the embedded engine two at a time were
not faster (measured on a week of the demo's data: 0.31-0.52 s against 0.36-0.39 s for a route page)."""


def _rows(query: Query, template: q.Template, params: Mapping[str, str]) -> list[dict[str, Any]]:
    return rows_of(query(q.fill(template, params)))


def _all(query: Query, jobs: Sequence[tuple[q.Template, Mapping[str, str]]]) -> list[list[dict[str, Any]] | Exception]:
    """The rows of each ``(template, params)``, run :data:`PARALLEL` at a time; a failed one gives its exception."""

    def one(job: tuple[q.Template, Mapping[str, str]]) -> list[dict[str, Any]] | Exception:
        try:
            return _rows(query, *job)
        except Exception as exc:  # noqa: BLE001 - handed back to the loader, which decides
            return exc

    if PARALLEL <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="dashboard-query") as pool:
        return list(pool.map(one, jobs))


def _ok(result: list[dict[str, Any]] | Exception) -> list[dict[str, Any]]:
    if isinstance(result, Exception):
        raise result
    return result


def load_overview(query: Query, database: str, range_name: str = "day", window: Window | None = None) -> Overview:
    """Every route x served model over the window, with sparklines and alerts. Blocks."""
    w = window or load_window(query, database, range_name)
    params = w.params(database)
    overview, sparks, alerts = _all(query, [(q.OVERVIEW, params), (q.SPARKS, w.params(database, spark=True)),
                                            (q.ALERTS, params)])  # fmt: skip
    return build_overview(w, _ok(overview), _ok(sparks), _ok(alerts))


def load_route(query: Query, database: str, route: str, range_name: str = "day", window: Window | None = None) -> RouteView:
    """One route's series, errors, model mix and markers over the window. Blocks.

    A store without ``tier_gate_status`` (migrated before 0008) shows no gate markers and says so."""
    w = window or load_window(query, database, range_name)
    params = w.params(database, route=route)
    templates = (q.ROUTE_SERIES, q.ROUTE_OVERVIEW, q.ROUTE_ERRORS, q.ROUTE_MODELS, q.ROUTE_MODEL_HOURS,
                 q.ROUTE_FIRST_SEEN, q.ALERTS, q.GATES)  # fmt: skip
    series, models, errors, mix, hours, first_seen, alerts, gates = _all(query, [(t, params) for t in templates])
    notes: list[str] = []
    if isinstance(gates, SqlError):
        notes.append(f"tier-up gates could not be read: {str(gates)[:200]}")
        gates = []
    return build_route(
        route, w, overview_rows=_ok(models), series_rows=_ok(series), error_rows=_ok(errors), model_rows=_ok(mix),
        hour_rows=_ok(hours), first_seen_rows=_ok(first_seen), alert_rows=_ok(alerts), gate_rows=_ok(gates), notes=notes,
    )  # fmt: skip


def load_alerts(query: Query, database: str, range_name: str = "day", window: Window | None = None) -> AlertsView:
    """Alert episodes overlapping the window, and every one still firing. Blocks."""
    w = window or load_window(query, database, range_name)
    return build_alerts(w, _rows(query, q.ALERTS, w.params(database)))
