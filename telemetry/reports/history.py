"""``telemetry report model-history``: which models served a route, day by day, and its tier changes.

- Per day (UTC) and served model: requests, share of the day's requests, cost per request
  (priced requests), online pass rate and judged count, cost per correct answer.
- Tier changes (:func:`tier_changes`): a served model whose first request on the route (over all
  stored history) falls inside the window and after the route's own first request. It is compared
  with the *incumbent*: the model with the most requests in the window's hours before the new
  model's first hour. ``direction`` is ``up`` when the new model's cost per request (from its first
  hour on) is higher than the incumbent's (before), ``down`` when lower, ``unknown`` when either is
  unpriced or there is no incumbent in the window. ``share_since`` is the new model's share of the
  route's requests from its first hour on: ~100% is a switch, a few percent a canary.
- TierSwitch alerts raised for the route in the 90 days before the newest data (one row per
  alert episode): "we already tier-upped this route last quarter".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from telemetry.reports.common import ratio, require_route
from telemetry.reports.output import Report, Section
from telemetry.reports.query import (
    DAY_MS,
    Query,
    Window,
    check_database,
    load_window,
    rows_of,
    sql_string,
)
from telemetry.reports.stats import Proportion

__all__ = ["DayModel", "HourBucket", "ModelHistory", "TierChange", "model_history", "tier_changes"]

HOUR_MS = 3_600_000
ALERT_LOOKBACK_DAYS = 90


@dataclass(frozen=True, slots=True)
class HourBucket:
    """Requests of one served model of a route in one hour of request time."""

    start_ms: int
    model: str
    requests: int
    priced_requests: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class TierChange:
    model: str
    first_seen_ms: int
    previous_model: str | None
    previous_cost_per_request: float | None
    cost_per_request: float | None
    share_since: float | None

    @property
    def cost_ratio(self) -> float | None:
        return ratio(self.cost_per_request, self.previous_cost_per_request)

    @property
    def direction(self) -> str:
        r = self.cost_ratio
        return "unknown" if r is None else "up" if r > 1.0 else "down" if r < 1.0 else "same"


def _cpr(buckets: Sequence[HourBucket]) -> float | None:
    priced = sum(b.priced_requests for b in buckets)
    return sum(b.cost_usd for b in buckets) / priced if priced else None


def tier_changes(buckets: Sequence[HourBucket], first_seen: Mapping[str, int], route_first_ms: int) -> list[TierChange]:
    """New served models in ``buckets`` (hourly, one route) and how their cost compares. Pure.

    ``first_seen`` maps each model to its first request on the route over all history;
    ``route_first_ms`` is the route's first request. See the module docstring for the rules."""
    if not buckets:
        return []
    window_start = min(b.start_ms for b in buckets)
    changes: list[TierChange] = []
    for model, seen_ms in sorted(first_seen.items(), key=lambda kv: (kv[1], kv[0])):
        seen_hour = seen_ms - seen_ms % HOUR_MS
        route_first_hour = route_first_ms - route_first_ms % HOUR_MS
        if seen_hour <= route_first_hour or seen_hour < window_start:
            continue
        before = [b for b in buckets if b.start_ms < seen_hour and b.model != model]
        after = [b for b in buckets if b.start_ms >= seen_hour]
        by_model: dict[str, int] = defaultdict(int)
        for b in before:
            by_model[b.model] += b.requests
        previous = max(by_model, key=lambda m: (by_model[m], m)) if by_model else None
        mine = [b for b in after if b.model == model]
        total_after = sum(b.requests for b in after)
        changes.append(TierChange(
            model=model,
            first_seen_ms=seen_ms,
            previous_model=previous,
            previous_cost_per_request=_cpr([b for b in before if b.model == previous]) if previous else None,
            cost_per_request=_cpr(mine),
            share_since=ratio(sum(b.requests for b in mine), total_after),
        ))  # fmt: skip
    return changes


@dataclass(frozen=True, slots=True)
class DayModel:
    day: str
    model: str
    requests: int
    day_requests: int
    priced_requests: int
    cost_usd: float
    quality: Proportion

    @property
    def share(self) -> float | None:
        return ratio(self.requests, self.day_requests)

    @property
    def cost_per_request(self) -> float | None:
        return ratio(self.cost_usd, self.priced_requests) if self.priced_requests else None

    @property
    def cost_per_correct(self) -> float | None:
        return ratio(self.cost_per_request, self.quality.rate) if self.quality.passed else None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class ModelHistory:
    route: str
    window: Window
    days: list[DayModel]
    changes: list[TierChange]
    alerts: list[dict[str, object]]

    def to_report(self) -> Report:
        daily = Section("daily", ["day", "model", "requests", "share", "cost_per_request", "pass_rate", "judged",
                                  "cost_per_correct"],
                        [[d.day, d.model, d.requests, d.share, d.cost_per_request, d.quality.rate, d.quality.judged,
                          d.cost_per_correct] for d in self.days])  # fmt: skip
        changes = Section("tier_changes", ["first_seen", "model", "direction", "previous_model",
                                           "previous_cost_per_request", "cost_per_request", "cost_ratio", "share_since"],
                          [[_iso(c.first_seen_ms), c.model, c.direction, c.previous_model, c.previous_cost_per_request,
                            c.cost_per_request, c.cost_ratio, c.share_since] for c in self.changes])  # fmt: skip
        alert_cols = ["starts_at", "model", "status", "ends_at", "summary"]
        alerts = Section("tier_switch_alerts_90d", alert_cols, [[a.get(c) for c in alert_cols] for a in self.alerts])
        ups = [c for c in self.changes if c.direction == "up"]
        notes: list[str] = []
        if ups:
            notes.append("tier-ups in the window: " + "; ".join(
                f"{_iso(c.first_seen_ms)} {c.previous_model} -> {c.model} (x{c.cost_ratio:.2f} per request, "
                f"{100 * (c.share_since or 0):.0f}% of traffic since)" for c in ups))  # fmt: skip
        if self.alerts:
            notes.append(f"{len(self.alerts)} TierSwitch alert(s) on this route in the last {ALERT_LOOKBACK_DAYS} days: "
                         "a new tier-up here repeats a past one; ask why the last one did not hold.")  # fmt: skip
        title = f"model-history: route {self.route}\nwindow {self.window.describe()}"
        return Report("model-history", title, [daily, changes, alerts], notes)


def model_history(query: Query, database: str, *, route: str, days: float = 7.0) -> ModelHistory:
    """Per-day served models, tier changes and recent TierSwitch alerts of ``route``. Blocks."""
    db = check_database(database)
    window = load_window(query, db, days)
    require_route(query, db, route, window)
    r = sql_string(route)
    hours = [
        HourBucket(int(row["hour_ms"]), str(row["sm"]), int(row["requests"]), int(row["priced"]), float(row["cost"] or 0))
        for row in rows_of(query(
            f"SELECT toInt64(toUnixTimestamp(toStartOfHour(ts))) * 1000 AS hour_ms, served_model AS sm, "
            f"count() AS requests, countIf(cost_usd IS NOT NULL) AS priced, sum(ifNull(cost_usd, 0)) AS cost "
            f"FROM {db}.requests WHERE route = {r} AND {window.between('ts')} GROUP BY hour_ms, sm ORDER BY hour_ms"
        ))
    ]  # fmt: skip
    first_seen = {
        str(row["sm"]): int(row["first_ms"])
        for row in rows_of(query(
            f"SELECT served_model AS sm, toUnixTimestamp64Milli(min(ts)) AS first_ms "
            f"FROM {db}.requests WHERE route = {r} GROUP BY sm"
        ))
    }  # fmt: skip
    per_day = rows_of(query(
        f"SELECT toString(toDate(ts)) AS day, served_model AS sm, count() AS requests, "
        f"countIf(cost_usd IS NOT NULL) AS priced, sum(ifNull(cost_usd, 0)) AS cost "
        f"FROM {db}.requests WHERE route = {r} AND {window.between('ts')} GROUP BY day, sm"
    ))  # fmt: skip
    verdicts = {
        (row["day"], row["sm"]): Proportion(int(row["n_passed"]), int(row["judged"]))
        for row in rows_of(query(
            f"SELECT toString(toDate(request_ts)) AS day, served_model AS sm, count() AS judged, "
            f"countIf(passed = 1) AS n_passed FROM {db}.verdicts "
            f"WHERE route = {r} AND kind = 'online' AND {window.between('request_ts')} GROUP BY day, sm"
        ))
    }  # fmt: skip
    day_totals: dict[str, int] = defaultdict(int)
    for row in per_day:
        day_totals[row["day"]] += int(row["requests"])
    daily = sorted(
        (DayModel(str(row["day"]), str(row["sm"]), int(row["requests"]), day_totals[row["day"]], int(row["priced"]),
                  float(row["cost"] or 0), verdicts.get((row["day"], row["sm"]), Proportion(0, 0)))
         for row in per_day),
        key=lambda d: (d.day, -d.requests, d.model),
    )  # fmt: skip
    since = window.end_ms - ALERT_LOOKBACK_DAYS * DAY_MS
    alerts = [
        {"starts_at": row["started"], "model": row["alert_model"], "status": row["last_status"], "ends_at": row["ended"],
         "summary": row["first_summary"]}
        for row in rows_of(query(
            f"SELECT fingerprint, starts_at AS t0, formatDateTime(t0, '%Y-%m-%d %H:%i:%S') AS started, "
            f"any(model) AS alert_model, argMax(status, sequence) AS last_status, max(ends_at) AS t1, "
            f"if(t1 IS NULL, '', formatDateTime(assumeNotNull(t1), '%Y-%m-%d %H:%i:%S')) AS ended, "
            f"argMin(summary, sequence) AS first_summary "
            f"FROM {db}.alerts WHERE route = {r} AND alertname = 'TierSwitch' "
            f"AND starts_at >= fromUnixTimestamp64Milli(toInt64({since}), 'UTC') "
            f"GROUP BY fingerprint, t0 ORDER BY t0"
        ))
    ]  # fmt: skip
    route_first = min(first_seen.values()) if first_seen else window.start_ms
    return ModelHistory(route, window, daily, tier_changes(hours, first_seen, route_first), alerts)
