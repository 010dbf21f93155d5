"""The detection owner's gate source: reads the gates, moves them on, hands them to TierSwitch.

Every input refresh (``telemetry.worker.stored_inputs``): load the current gates, ask the keeper
(:mod:`telemetry.gates.keeper`) which approved gates the traffic applied and which applied ones
are due for their postmortem (computing the realized figures for those), write the new versions,
and return the gates as the detectors' input (:class:`telemetry.detect.inputs.Gate`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from telemetry.detect.inputs import Gate
from telemetry.gates import keeper
from telemetry.gates.model import GateRecord, mark_applied, mark_postmortem_due
from telemetry.gates.store import DirectWriter, load
from telemetry.reports.query import MONTH_SECONDS, ms_sql, rows_of, sql_string
from telemetry.routes import RoutesConfig
from telemetry.settings import Settings
from telemetry.sql import Query, client_query
from telemetry.storage.store import Store

RECENT_MS = 15 * 60_000
"""The recent traffic a gate is applied by (TierSwitch's recent window)."""
LOOKBACK_MS = 7 * 86_400_000
MONTH_MS = 30 * 86_400_000


def traffic(query: Query, db: str, routes: list[str], now_ms: int) -> dict[str, dict[str, keeper.ServedModel]]:
    if not routes:
        return {}
    rows = rows_of(query(
        f"SELECT route, served_model, countIf(ts >= {ms_sql(now_ms - RECENT_MS)}) AS recent, "
        f"toUnixTimestamp64Milli(min(ts)) AS first_ms FROM {db}.requests "
        f"WHERE route IN ({', '.join(sql_string(r) for r in routes)}) AND ts >= {ms_sql(now_ms - LOOKBACK_MS)} "
        f"AND ts <= {ms_sql(now_ms)} GROUP BY route, served_model"
    ))  # fmt: skip
    out: dict[str, dict[str, keeper.ServedModel]] = {}
    for r in rows:
        out.setdefault(str(r["route"]), {})[str(r["served_model"])] = keeper.ServedModel(int(r["recent"]), int(r["first_ms"]))
    return out


def _period(query: Query, db: str, route: str, start_ms: int, end_ms: int, evaluator: str = "") -> dict[str, Any]:
    req = rows_of(query(
        f"SELECT count() AS n, countIf(cost_usd IS NOT NULL) AS priced, sum(ifNull(cost_usd, 0)) AS cost "
        f"FROM {db}.requests WHERE route = {sql_string(route)} AND ts >= {ms_sql(start_ms)} AND ts < {ms_sql(end_ms)}"
    ))[0]  # fmt: skip
    ver = rows_of(query(
        f"SELECT count() AS judged, countIf(passed = 1) AS passed FROM {db}.verdicts WHERE route = {sql_string(route)} "
        f"AND kind = 'online' AND request_ts >= {ms_sql(start_ms)} AND request_ts < {ms_sql(end_ms)}"
        + (f" AND evaluator = {sql_string(evaluator)}" if evaluator else "")
    ))[0]  # fmt: skip
    priced, cost, judged, passed = int(req["priced"]), float(req["cost"] or 0.0), int(ver["judged"]), int(ver["passed"])
    cpr = cost / priced if priced else None
    rate = passed / judged if judged else None
    seconds = (end_ms - start_ms) / 1000
    return {"requests": int(req["n"]), "cost_usd": round(cost, 6), "monthly_usd": round(cost / seconds * MONTH_SECONDS, 6),
            "cost_per_request_usd": cpr, "pass_rate": rate, "judged": judged,
            "cost_per_correct_usd": cpr / rate if cpr is not None and rate else None}  # fmt: skip


def postmortem_figures(query: Query, db: str, gate: GateRecord) -> dict[str, Any]:
    """Realized against projected: the 30 days after it was applied and the 30 days before."""
    applied = gate.applied_at_ms or 0
    quality = gate.evidence.get("quality")
    judge = str(quality.get("evaluator") or "") if isinstance(quality, dict) else ""  # the gate's judge, not a mix
    before = _period(query, db, gate.route, applied - MONTH_MS, applied, judge)
    after = _period(query, db, gate.route, applied, applied + MONTH_MS, judge)
    projected = gate.projected_monthly_usd
    realized = after["monthly_usd"]
    return {
        "evaluator": judge or None, "realized_monthly_usd": realized, "projected_monthly_usd": projected,
        "realized_vs_projected": realized / projected if projected else None,
        "before": before, "after": after,
    }  # fmt: skip


def as_input(g: GateRecord) -> Gate:
    projection = g.evidence.get("projection", {}) if isinstance(g.evidence.get("projection"), dict) else {}
    per_request = projection.get("proposed_cost_per_request_usd")
    postmortem = g.evidence.get("postmortem")
    return Gate(
        id=g.id, route=g.route, current_model=g.current_model, proposed_model=g.proposed_model, state=g.state,
        direction=g.direction, opened_at_ms=g.opened_at_ms, decided_at_ms=g.decided_at_ms, applied_at_ms=g.applied_at_ms,
        postmortem_due_at_ms=g.postmortem_due_at_ms, projected_monthly_usd=g.projected_monthly_usd,
        projected_cost_per_request=per_request if isinstance(per_request, int | float) else None,
        realized_monthly_usd=g.realized_monthly_usd, postmortem=postmortem if isinstance(postmortem, dict) else {},
    )  # fmt: skip


def gates_source(store: Store, settings: Settings, routes: RoutesConfig, now_ms: int) -> Mapping[str, Any]:
    query, db = client_query(store.client), store.db
    gates = load(query, db, states=("open", "approved", "applied", "postmortem_due", "closed"))
    if not now_ms:
        return {"gates": tuple(as_input(g) for g in gates)}
    wall_ms = int(time.time() * 1000)  # when each new version is written (the records' updated_at)
    updates: list[GateRecord] = []
    approved_routes = sorted({g.route for g in gates if g.state == "approved"})
    for gate, at_ms in keeper.to_apply(gates, traffic(query, db, approved_routes, now_ms)):
        updates.append(mark_applied(gate, at_ms=at_ms, now_ms=wall_ms))
    for gate in keeper.due_for_postmortem(gates, now_ms):
        updates.append(mark_postmortem_due(gate, figures=postmortem_figures(query, db, gate), now_ms=wall_ms))
    if updates:
        DirectWriter(store.client, db).write(updates)
        changed = {g.id: g for g in updates}
        gates = [changed.get(g.id, g) for g in gates]
    return {"gates": tuple(as_input(g) for g in gates)}


class TierDownReviewSource:
    """The tier-down review's input: the period (``TELEMETRY_TIER_DOWN_REVIEW_DAYS``) and the
    latest review content (routes that tiered up in the period, ``telemetry report tier-down``'s
    candidates), computed at most once an hour of wall time."""

    EVERY_S = 3600.0

    def __init__(self) -> None:
        self.report: dict[str, Any] | None = None
        self.computed_at = 0.0

    def __call__(self, store: Store, settings: Settings, routes: RoutesConfig, now_ms: int) -> Mapping[str, Any]:
        if now_ms and (self.report is None or time.time() - self.computed_at >= self.EVERY_S):
            self.report = self._report(client_query(store.client), store.db, settings.tier_down_review_days, now_ms)
            self.computed_at = time.time()
        return {"extra": {"tier_down_review": {"every_days": settings.tier_down_review_days, "report": self.report}}}

    @staticmethod
    def _report(query: Query, db: str, days: float, now_ms: int) -> dict[str, Any]:
        from telemetry.reports.query import ReportError
        from telemetry.reports.tierdown import tier_down

        since = now_ms - int(days * 86_400_000)
        tiered = {f"{g.route} ({g.current_model} -> {g.proposed_model}, {g.id})"
                  for g in load(query, db, states=("applied", "postmortem_due", "closed"))
                  if g.direction == "up" and (g.applied_at_ms or 0) >= since}  # fmt: skip
        for r in rows_of(query(
            f"SELECT route, model, evidence FROM {db}.alerts WHERE alertname = 'TierSwitch' AND status = 'firing' "
            f"AND sequence = 1 AND starts_at >= {ms_sql(since)} AND starts_at <= {ms_sql(now_ms)}"
        )):  # fmt: skip
            ev = orjson.loads(r["evidence"] or "{}")
            if isinstance(ev, dict) and ev.get("direction", "up") == "up" and ev.get("gated") != "yes":
                tiered.add(f"{r['route']} ({ev.get('previous_model')} -> {r['model']}, ungated)")
        try:
            td = tier_down(query, db)
            candidates = [{"route": c.route, "current_model": c.current.name, "cheaper_model": c.cheaper.name,
                           "monthly_saving_usd": c.monthly_saving} for c in td.candidates]  # fmt: skip
        except ReportError:  # no data yet
            candidates = []
        return {"period_days": days, "tiered_up": sorted(tiered), "candidates": candidates}
