"""TruncationSpike: the share of ok responses cut at the token limit (``finish_reason = length``).

Contract
--------
- Baseline: truncated / ok responses of the route over the last 7 days of full hours (the
  current and previous hour left out); it needs ``truncation_min_baseline`` (1000) ok responses.
- Fire when, over ``truncation_window`` (15 min), there are at least ``truncation_min_count``
  (10) truncated responses, the share is at least ``max(truncation_ratio x baseline,
  baseline + truncation_min_increase)`` (2x and +5 points) and the exact one-sided binomial
  p-value against the baseline share is at most ``truncation_alpha`` (1e-6: the test runs at
  every evaluation, against a baseline that is the clean rate itself).
- Clear when the share falls below half-way: ``max(baseline x (1 + (ratio-1)/2), baseline +
  min_increase/2)``, or with fewer ok responses than ``truncation_min_count``.
- One alert per route (``model`` ``""``); evidence names the top served model of the window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pydantic import Field, model_validator

from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded
from telemetry.detect.detector import Context, PerRouteDetector
from telemetry.detect.names import TRUNCATION_SPIKE
from telemetry.detect.policy import Duration, PolicySection
from telemetry.detect.stats import binom_sf
from telemetry.detect.window import MINUTE_MS, RouteWindow


@dataclass(slots=True)
class TruncationState:
    """Per-route state: alarm flag and the cached hourly baseline."""

    active: bool = False
    base_hour: int = -1
    base_ok: int = 0
    base_len: int = 0


class TruncationPolicy(PolicySection):
    """TruncationSpike's keys of the route policy."""

    truncation_ratio: float = Field(2.0, gt=1)
    truncation_min_increase: float = Field(0.05, ge=0, le=1)
    truncation_min_count: int = Field(10, ge=1)
    truncation_window: Duration = 15 * MINUTE_MS
    truncation_alpha: float = Field(1e-6, gt=0, lt=0.5)
    truncation_min_baseline: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _coherent(self) -> TruncationPolicy:
        self.check_windows("truncation_window")
        return self


class TruncationSpikeDetector(PerRouteDetector):
    """One :class:`TruncationState` per route."""

    name: ClassVar[str] = "truncation"
    alertname: ClassVar[str] = TRUNCATION_SPIKE
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 15 * MINUTE_MS
    policy: ClassVar[type[TruncationPolicy]] = TruncationPolicy

    def __init__(self) -> None:
        self.states: dict[str, TruncationState] = {}

    def evaluate_route(self, route: str, w: RouteWindow, policy: TruncationPolicy, ctx: Context) -> list[Condition]:
        """The route's TruncationSpike condition, if it holds now."""
        now_ms = ctx.now_ms
        st = self.states.get(route)
        if st is None:
            st = self.states[route] = TruncationState()
        if w.cur < 0:
            return []
        hour = w.cur // 60
        if st.base_hour != hour:
            st.base_hour = hour
            st.base_ok = int(w.hsum(w.hok, hour - 7 * 24, hour - 2))
            st.base_len = int(w.hsum(w.hlen, hour - 7 * 24, hour - 2))
        window_m = policy.truncation_window // MINUTE_MS
        truncated = int(w.wsum(w.length, window_m))
        if st.base_ok < policy.truncation_min_baseline or (not st.active and truncated < policy.truncation_min_count):
            st.active = False
            return []
        ok = int(w.wsum(w.ok, window_m))
        if ok < policy.truncation_min_count:
            st.active = False
            return []
        base = max(st.base_len, 0.5) / st.base_ok
        share = truncated / ok
        ratio, inc = policy.truncation_ratio, policy.truncation_min_increase
        p_value = binom_sf(truncated, ok, base)
        if st.active:
            st.active = share >= max(base * (1 + (ratio - 1) / 2), base + inc / 2)
        else:
            st.active = share >= max(ratio * base, base + inc) and p_value <= policy.truncation_alpha
        if not st.active:
            return []
        models = w.model_window(window_m)
        top = max(models.items(), key=lambda kv: (kv[1][0], kv[0]))[0] if models else ""
        evidence: Evidence = {
            "truncated": truncated,
            "ok_responses": ok,
            "recent_share": rounded(share, 4),
            "baseline_share": rounded(base, 4),
            "baseline_ok_responses": st.base_ok,
            "p_value_one_sided": rounded(p_value, 3),
            "window_minutes": window_m,
            "top_served_model": top,
        }
        summary = (
            f"{route} truncation spike: {pct(share)} of {ok} ok responses hit the token limit in "
            f"{window_m}m (baseline {pct(base)}), model {top or '?'}"
        )
        description = (
            f"{truncated} of {ok} ok responses of route {route} in the last {window_m} min ended with "
            f"finish_reason=length ({pct(share)}), against {pct(base)} over the last 7 days "
            f"({st.base_ok} responses; one-sided binomial p={p_value:.2g}). Truncated answers are usually "
            f"wrong answers: check max_tokens and prompt growth."
        )
        return [
            Condition(
                alertname=TRUNCATION_SPIKE,
                route=route,
                model="",
                summary=clip(summary),
                description=description,
                evidence=evidence,
                decided_at_ms=min(now_ms, w.last_ms) if w.last_ms > 0 else now_ms,
            )
        ]

    def to_state(self) -> dict[str, Any]:
        return {route: asdict(st) for route, st in self.states.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> TruncationSpikeDetector:
        det = cls()
        det.states = {route: TruncationState(**raw) for route, raw in data.items()}
        return det
