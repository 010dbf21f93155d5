"""What ``telemetry gate open`` reads to build a gate's evidence. Blocks; a :data:`Query` in.

Reuses the reports: :func:`telemetry.reports.diagnostics.diagnostics` (closed-book / gold-context
reading), :func:`telemetry.reports.projection.cost_projection` (the proposed model priced on the
route's token mix), :func:`telemetry.reports.common.model_stats` (quality per served model).
Report windows end at the newest request, so a replayed or historical store reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from telemetry.gates import evidence as E
from telemetry.gates.store import load
from telemetry.pricing import PriceBook
from telemetry.reports.common import current_model, model_stats
from telemetry.reports.diagnostics import diagnostics
from telemetry.reports.projection import cost_projection
from telemetry.reports.query import (
    DAY_MS,
    MONTH_SECONDS,
    check_database,
    load_window,
    ms_sql,
    rows_of,
    sql_string,
)
from telemetry.reports.stats import Proportion
from telemetry.routes import RoutesConfig
from telemetry.sql import Query

SHAPES = (("p50", 0.5), ("p99", 0.99))


@dataclass(frozen=True, slots=True)
class Opening:
    """Everything ``gate open`` learned about the route, ready for :func:`telemetry.gates.model.open_gate`."""

    current_model: str
    team: str
    direction: str
    proposed_provider: str
    projected_monthly_usd: float | None
    evidence: dict[str, Any]


def _provider_of(query: Query, db: str, route: str, model: str, window_sql: str) -> str:
    rows = rows_of(query(
        f"SELECT provider, count() AS n FROM {db}.requests WHERE route = {sql_string(route)} "
        f"AND served_model = {sql_string(model)} AND {window_sql} GROUP BY provider ORDER BY n DESC LIMIT 1"
    ))  # fmt: skip
    return str(rows[0]["provider"]) if rows else ""


def earlier_tier_ups(query: Query, db: str, route: str, end_ms: int) -> list[E.TierUp]:
    """The route's tier-ups in the :data:`~telemetry.gates.evidence.LOOKBACK_DAYS` before ``end_ms``:
    applied gates, and TierSwitch alerts (a switch nobody gated shows only there)."""
    since = end_ms - E.LOOKBACK_DAYS * DAY_MS
    found = [
        E.TierUp(g.applied_at_ms, g.current_model, g.proposed_model, f"gate {g.id}")
        for g in load(query, db, route=route, states=("applied", "postmortem_due", "closed"))
        if g.direction == "up" and g.applied_at_ms is not None and g.applied_at_ms >= since
    ]
    rows = rows_of(query(
        f"SELECT toUnixTimestamp64Milli(starts_at) AS at_ms, evidence FROM {db}.alerts "
        f"WHERE alertname = 'TierSwitch' AND route = {sql_string(route)} AND status = 'firing' AND sequence = 1 "
        f"AND starts_at >= {ms_sql(since)}"
    ))  # fmt: skip
    for r in rows:
        try:
            ev = orjson.loads(r["evidence"] or "{}")
        except orjson.JSONDecodeError:
            continue
        if not isinstance(ev, dict) or ev.get("direction", "up") != "up":
            continue
        if any(abs(t.at_ms - int(r["at_ms"])) < 3_600_000 and t.to_model == ev.get("new_model") for t in found):
            continue  # the switch an applied gate already names
        gate = ev.get("gate_id")
        source = f"TierSwitch alert ({'gate ' + str(gate) if gate else 'ungated'})"
        found.append(E.TierUp(int(r["at_ms"]), str(ev.get("previous_model") or ""), str(ev.get("new_model") or ""), source))
    return found


def gather(query: Query, database: str, *, route: str, proposed_model: str, book: PriceBook, routes: RoutesConfig,
           now_ms: int, provider: str | None = None, days: float = 7.0, target: float = 0.9,
           min_judged: int = 30) -> Opening:  # fmt: skip
    """The evidence of a gate that moves ``route`` to ``proposed_model``, as of now."""
    db = check_database(database)
    window = load_window(query, db, days)
    current = current_model(query, db, route, window)
    stats = {m.name: m for m in model_stats(query, db, route, window)}
    cur = stats.get(current)
    cost_per_request = cur.cost_per_request if cur else None
    diag = diagnostics(query, db, route=route, model=current, days=days, target=target, min_judged=min_judged)
    online = diag.chosen().get("online")  # one judge version, as the reading uses it
    quality = online.quality if online else Proportion(0, 0)
    projection = cost_projection(query, db, route=route, model=proposed_model, book=book, days=days, provider=provider)

    current_provider = _provider_of(query, db, route, current, window.between("ts"))
    proposed_rates = projection.rates
    current_rates = book.rates(current_provider or None, current, window.end_ms)
    quantiles = ", ".join(
        f"quantileExact({q})(input_tokens) AS in_{label}, quantileExact({q})(output_tokens) AS out_{label}, "
        f"quantileExact({q})(least(cached_input_tokens, input_tokens)) AS cached_{label}"
        for label, q in SHAPES
    )
    row = rows_of(query(
        f"SELECT count() AS n, {quantiles} FROM {db}.requests WHERE route = {sql_string(route)} "
        f"AND served_model = {sql_string(current)} AND status = 'ok' AND {window.between('ts')}"
    ))[0]  # fmt: skip
    shapes = []
    for label, _ in SHAPES:
        inp, out, cached = int(row[f"in_{label}"] or 0), int(row[f"out_{label}"] or 0), int(row[f"cached_{label}"] or 0)
        cached = min(cached, inp)
        shapes.append(E.RequestShape(
            label, inp, out,
            current_rates.usd(inp, out, cached, 0, 0) if current_rates else None,
            proposed_rates.usd(inp, out, cached, 0, 0) if proposed_rates else None,
        ))  # fmt: skip

    team_rows = rows_of(query(
        f"SELECT any(team) AS team FROM {db}.requests WHERE route = {sql_string(route)} AND {window.between('ts')}"
    ))  # fmt: skip
    team = routes.team_for(route, str(team_rows[0]["team"] or "") if team_rows else "")
    spend = None
    if team:
        spent = rows_of(query(
            f"SELECT sum(ifNull(cost_usd, 0)) AS cost FROM {db}.requests WHERE team = {sql_string(team)} "
            f"AND {window.between('ts')}"
        ))  # fmt: skip
        spend = float(spent[0]["cost"] or 0.0) / window.seconds * MONTH_SECONDS if window.seconds > 0 else None
    monthly_delta = projection.projection.monthly_delta
    delta = projection.projection.delta_per_request
    direction = "down" if delta is not None and delta < 0 else "up"

    evidence = E.build(
        now_ms=now_ms,
        quality=E.quality_evidence(quality, cost_per_request, online.evaluator if online else ""),
        diagnostics=E.diagnostics_evidence(diag),
        projection=E.projection_evidence(projection, shapes),
        budget=E.budget_evidence(E.Budget(team, routes.team_budget(team) if team else None, spend), monthly_delta),
        earlier=earlier_tier_ups(query, db, route, window.end_ms),
    )  # fmt: skip
    return Opening(current_model=current, team=team, direction=direction,
                   proposed_provider=proposed_rates.provider if proposed_rates else (provider or ""),
                   projected_monthly_usd=projection.projection.projected_monthly, evidence=evidence)  # fmt: skip
