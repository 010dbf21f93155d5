"""TierSwitch: a route's served-model mix moves to a pricier model.

Contract
--------
- Reference mix: per served model, request and cost counts decayed with a one-day half-life
  (:class:`telemetry.detect.window.ModelRef`). Recent mix: the last ``tier_window`` (15 min).
- A served model M *switches in* when its recent share exceeds its reference share by at least
  ``tier_min_share`` (20 points) with at least ``tier_min_requests`` (10) recent requests. This
  covers a new ``response_model`` on the route and a served model that differs from the
  requested alias (an alias re-pointed, a silent fallback).
- It is a **tier-up** when M's recent cost per request is at least ``tier_min_ratio`` (1.2) x
  the reference cost per request of the models it displaces. Unpriced models and tier-downs
  are not alerted. The route must have ``tier_warmup`` (1 h) of history first.
- **Gates** (``telemetry gate``, read from ``tier_gates`` as the detectors' input): a tier-up
  to a model an approved gate names for the route is **gated**: the alert names the gate, its
  projected cost per request and month, and the observed cost against the projection; its
  severity is ``tier_gated_severity`` (``info``) and its evidence says ``gated: "yes"``. A
  tier-up no approved gate names is an **ungated tier-up**: the alert's configured severity
  (``warning`` by default) and ``gated: "no"``. A move to the model of the route's declared
  canary (``[routes."<route>".canary]``) is decided too: ``gated: "canary"``, the gated severity,
  and the canary's criteria decide it (CanaryVerdict). Whether a switch is gated is decided when it is detected.
- A **tier-down** (M's cost per request at most the displaced models' / ``tier_min_ratio``)
  needs no gate but is recorded: a TierSwitch notification with ``direction: down`` and
  severity ``info``. Tier-downs do not count as earlier tier-ups.
- A tier switch is an event: the alert fires at once and **auto-resolves after ``tier_hold``**
  (1 h of event time). M is then latched: it cannot fire again until its reference share has
  caught up (recent - reference < half of ``tier_min_share``), so the hold ending does not
  re-page. Tier-ups are remembered for ``tier_history`` (90 days): the evidence says when the
  same route already moved up (``previous_tier_up_within_90d``, the "we tier-upped this route
  last quarter" pattern).
- Evidence: cost per request before/after, per-request and 30-day delta at the current request
  rate of M (``delta x requests/s x 30 x 86400``), quality before/after by the evaluator with
  most verdicts on M (None when unknown), the requested alias, and the share of M's requests
  whose served model differs from the requested one. The alert's ``model`` label is M.
- Only a model first seen on the route within 7 days, or served mostly in place of another
  requested model, can switch in: a long-known model requested by name whose share swings
  (a nightly batch on another model) is a mix change, left to CostSpike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from pydantic import Field, model_validator

from telemetry.contracts._time import ms_to_datetime
from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded, usd
from telemetry.detect.detector import Context, PerRouteDetector
from telemetry.detect.canary import CanaryPolicy
from telemetry.detect.inputs import StoredInputs, serves
from telemetry.detect.names import TIER_SWITCH
from telemetry.detect.policy import DAY_MS, HOUR_MS, Duration, PolicySection
from telemetry.detect.window import MINUTE_MS, RouteWindow

MONTH_S = 30 * 86_400
NEW_MODEL_MS = 7 * 86_400_000
QualityLookup = Callable[[str, str], tuple[float | None, int, str]]
"""``(route, served model) -> (pass rate or None, judged, evaluator)``."""


@dataclass(slots=True)
class TierEvent:
    """One detected tier-up (kept ``tier_history``) and, while held, its alert."""

    model: str
    previous_model: str
    at_ms: int
    cost_before: float
    cost_after: float
    quality_before: float | None = None
    quality_before_judged: int = 0
    previous_tier_up_ms: int | None = None
    previous_tier_up_from: str = ""
    previous_tier_up_to: str = ""
    direction: str = "up"
    gate_id: str = ""
    canary: bool = False
    """The model is the route's declared canary (routes file): decided, with criteria, not reflexive."""


@dataclass(slots=True)
class TierState:
    """Per-route state: latched models (fired, not yet re-armed) and past tier-ups."""

    latched: dict[str, int] = field(default_factory=dict)
    events: list[TierEvent] = field(default_factory=list)


class TierPolicy(PolicySection):
    """TierSwitch's keys of the route policy."""

    tier_min_ratio: float = Field(1.2, ge=1)
    tier_min_share: float = Field(0.2, gt=0, le=1)
    tier_min_requests: int = Field(10, ge=1)
    tier_window: Duration = 15 * MINUTE_MS
    tier_hold: Duration = HOUR_MS
    tier_history: Duration = 90 * DAY_MS
    tier_warmup: Duration = HOUR_MS
    tier_gated_severity: Severity = "info"

    @model_validator(mode="after")
    def _coherent(self) -> TierPolicy:
        self.check_windows("tier_window")
        return self


class TierSwitchDetector(PerRouteDetector):
    """One :class:`TierState` per route."""

    name: ClassVar[str] = "tier"
    alertname: ClassVar[str] = TIER_SWITCH
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[type[TierPolicy]] = TierPolicy

    def __init__(self) -> None:
        self.states: dict[str, TierState] = {}

    def evaluate_route(self, route: str, w: RouteWindow, policy: TierPolicy, ctx: Context) -> list[Condition]:
        """TierSwitch conditions of the route that hold now (one per model within its hold)."""
        now_ms = ctx.now_ms
        quality: QualityLookup = ctx.quality.model_pass_rate
        st = self.states.get(route)
        if st is None:
            st = self.states[route] = TierState()
        st.events = [e for e in st.events if e.at_ms >= now_ms - policy.tier_history]
        if w.cur >= 0 and now_ms - w.first_ms >= policy.tier_warmup:
            canary = ctx.routes.for_route(route).section(CanaryPolicy).canary.model
            self._detect(route, st, w, policy, now_ms, quality, ctx.inputs, canary)
        return [
            self._condition(route, e, w, policy, now_ms, quality, ctx.inputs)
            for e in st.events
            if now_ms - e.at_ms < policy.tier_hold
        ]

    def _detect(
        self, route: str, st: TierState, w: RouteWindow, policy: TierPolicy, now_ms: int, quality: QualityLookup,
        gates: StoredInputs, canary_model: str = "",
    ) -> None:
        window_m = policy.tier_window // MINUTE_MS
        since = now_ms - policy.tier_window
        for r in w.refs.values():
            r.decay_to(w.cur)
        ref_total = sum(r.n for r in w.refs.values())
        if ref_total <= 0:
            return
        # cheap gate: a model seen recently whose reference share leaves room for a switch
        room = [
            m for m, r in w.refs.items() if r.last_seen_ms >= since and r.n / ref_total <= 1 - policy.tier_min_share
        ]
        if not room and not st.latched:
            return
        recent = w.model_window(window_m)
        total = sum(row[0] for row in recent.values())
        if total <= 0:
            return
        for model, row in recent.items():
            ref = w.refs.get(model)
            ref_share = ref.n / ref_total if ref else 0.0
            gain = row[0] / total - ref_share
            if model in st.latched:
                if gain < 0.5 * policy.tier_min_share:
                    del st.latched[model]
                continue
            if gain < policy.tier_min_share or row[0] < policy.tier_min_requests or row[2] <= 0:
                continue
            is_new = ref is None or ref.first_seen_ms >= now_ms - NEW_MODEL_MS
            if not is_new and row[3] < 0.5 * row[0]:
                continue  # a long-known model asked for by name: a mix change, not a silent switch
            cost_after = row[1] / row[2]
            others = [(m, r) for m, r in w.refs.items() if m != model and r.priced > 0]
            priced_before = sum(r.priced for _, r in others)
            st.latched[model] = now_ms
            if priced_before <= 0:
                continue
            cost_before = sum(r.cost for _, r in others) / priced_before
            if cost_after >= policy.tier_min_ratio * cost_before and cost_after > 0:
                direction = "up"
            elif 0 < cost_after * policy.tier_min_ratio <= cost_before:
                direction = "down"
            else:
                continue
            previous = max(others, key=lambda mr: (mr[1].n, mr[0]))[0]
            q_before, q_before_n, _ = quality(route, previous)
            ups = [e for e in st.events if e.direction == "up"]
            prior = max(ups, key=lambda e: e.at_ms) if ups else None
            gate = gates.gate_for(route, model) if direction == "up" else None
            canary = bool(direction == "up" and gate is None and canary_model and serves(model, canary_model))
            st.events.append(
                TierEvent(
                    model=model,
                    previous_model=previous,
                    at_ms=now_ms,
                    cost_before=cost_before,
                    cost_after=cost_after,
                    quality_before=q_before,
                    quality_before_judged=q_before_n,
                    previous_tier_up_ms=prior.at_ms if prior else None,
                    previous_tier_up_from=prior.previous_model if prior else "",
                    previous_tier_up_to=prior.model if prior else "",
                    direction=direction,
                    gate_id=gate.id if gate else "",
                    canary=canary,
                )
            )

    @staticmethod
    def _condition(
        route: str, e: TierEvent, w: RouteWindow, policy: TierPolicy, now_ms: int, quality: QualityLookup,
        inputs: StoredInputs,
    ) -> Condition:
        window_m = policy.tier_window // MINUTE_MS
        recent = w.model_window(window_m)
        total = sum(row[0] for row in recent.values())
        row = recent.get(e.model, [0.0, 0.0, 0.0, 0.0])
        span_s = min(window_m * 60.0, max(60.0, (now_ms - w.first_ms) / 1000.0))
        rps_route = total / span_s
        rps_model = row[0] / span_s
        delta = e.cost_after - e.cost_before
        monthly = delta * rps_model * MONTH_S
        q_after, q_after_n, q_eval = quality(route, e.model)
        ref = w.refs.get(e.model)
        requested = ref.requested if ref else ""
        prior = (
            ms_to_datetime(e.previous_tier_up_ms).strftime("%Y-%m-%d") if e.previous_tier_up_ms is not None else None
        )
        evidence: Evidence = {
            "previous_model": e.previous_model,
            "new_model": e.model,
            "requested_model": requested,
            "served_differs_from_requested_share": rounded(row[3] / row[0], 4) if row[0] else None,
            "cost_per_request_before": rounded(e.cost_before),
            "cost_per_request_after": rounded(e.cost_after),
            "cost_ratio": rounded(e.cost_after / e.cost_before, 4) if e.cost_before > 0 else None,
            "delta_cost_per_request": rounded(delta),
            "requests_per_second": rounded(rps_route, 4),
            "new_model_requests_per_second": rounded(rps_model, 4),
            "new_model_share": rounded(row[0] / total, 4) if total else None,
            "monthly_delta_usd": rounded(monthly, 6),
            "quality_before": rounded(e.quality_before, 4),
            "quality_before_judged": e.quality_before_judged,
            "quality_after": rounded(q_after, 4),
            "quality_after_judged": q_after_n,
            "quality_evaluator": q_eval or None,
            "detected_at": ms_to_datetime(e.at_ms).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hold_minutes": policy.tier_hold // MINUTE_MS,
            "previous_tier_up_within_90d": prior,
            "previous_tier_up_from": e.previous_tier_up_from or None,
            "previous_tier_up_to": e.previous_tier_up_to or None,
        }
        gate = next((g for g in inputs.gates if g.id == e.gate_id), None) if e.gate_id else None
        observed = e.cost_after if row[2] <= 0 else row[1] / row[2]
        projected = gate.projected_cost_per_request if gate else None
        evidence.update({
            "direction": e.direction,
            "gated": ("yes" if e.gate_id else "canary" if e.canary else "no") if e.direction == "up" else None,
            "gate_id": e.gate_id or None,
            "gate_state": gate.state if gate else None,
            "gate_projected_cost_per_request": rounded(projected),
            "gate_projected_monthly_usd": rounded(gate.projected_monthly_usd) if gate else None,
            "observed_cost_per_request": rounded(observed),
            "observed_requests": int(row[2]),
            "observed_vs_projected": (rounded(observed / projected, 4)
                                      if projected and row[2] >= policy.tier_min_requests else None),
        })  # fmt: skip
        again = f"; tier-up also on {prior}" if prior else ""
        move = f"{route} now served by {e.model} (was {e.previous_model}): {usd(e.cost_after)}/request vs {usd(e.cost_before)}"
        quality_text = (
            f"Quality before {pct(e.quality_before)} (n={e.quality_before_judged}), after {pct(q_after)} "
            f"(n={q_after_n}) by {q_eval or 'no evaluator'}."
        )
        severity: str | None = None
        if e.direction == "down":
            severity = "info"
            summary = f"tier-down recorded: {move}, {usd(monthly)}/month at current rate"
            description = (
                f"Route {route} moved to a cheaper model: {pct(row[0] / total if total else None)} of its last "
                f"{window_m} min of requests are served by {e.model}, {usd(e.cost_after)} per request against "
                f"{usd(e.cost_before)} ({e.previous_model} mostly). A tier-down needs no gate; this records it. "
                f"{quality_text}"
            )
        else:
            if e.canary:
                severity = policy.tier_gated_severity
                head, versus = "canary tier-up (declared canary): ", (
                    " The model is the route's declared canary; its criteria decide it (CanaryVerdict).")
            elif gate is not None:
                severity = policy.tier_gated_severity
                head = f"gated tier-up ({gate.id}): "
                versus = (f" Projected {usd(projected)} per request and {usd(gate.projected_monthly_usd)} per month; "
                          f"observed {usd(observed)} per request over {int(row[2])} requests"
                          + (f" ({observed / projected:.2f}x the projection)." if projected and row[2] >= policy.tier_min_requests
                             else " (too few requests to compare yet)."))  # fmt: skip
            else:
                head, versus = "UNGATED tier-up: ", (
                    " No approved gate names this move: open one with `telemetry gate open` "
                    "(hypothesis, closed-book / gold-context evidence, projection, review)."
                )
            summary = f"{head}{move}, {'+' if monthly >= 0 else ''}{usd(monthly)}/month at current rate{again}"
            description = (
                f"Route {route} moved to a pricier model: {pct(row[0] / total if total else None)} of its last "
                f"{window_m} min of requests are served by {e.model} (requested as {requested or 'n/a'}), "
                f"which costs {usd(e.cost_after)} per request against {usd(e.cost_before)} for the models it "
                f"displaces ({e.previous_model} mostly): {usd(delta)} more per request, {usd(monthly)} per 30 days at "
                f"{rps_model:.3g} requests/s. {quality_text}{versus}"
            )
            if prior:
                description += (
                    f" This route already moved up tiers on {prior} ({e.previous_tier_up_from} -> "
                    f"{e.previous_tier_up_to}), within the last 90 days."
                )
        description += f" The alert resolves by itself {policy.tier_hold // MINUTE_MS} min after detection."
        return Condition(
            alertname=TIER_SWITCH,
            route=route,
            model=e.model,
            summary=clip(summary),
            description=description,
            evidence=evidence,
            decided_at_ms=e.at_ms,
            severity=severity,
        )

    def to_state(self) -> dict[str, Any]:
        return {route: asdict(st) for route, st in self.states.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> TierSwitchDetector:
        det = cls()
        for route, raw in data.items():
            det.states[route] = TierState(latched=dict(raw["latched"]), events=[TierEvent(**e) for e in raw["events"]])
        return det
