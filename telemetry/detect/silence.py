"""TrafficStopped: a route that was busy has gone silent (a caller stopped, a deploy broke it).

Contract
--------
- Over the last ``silence_window`` (10 min, the current minute included) the route has **no**
  request, while in the ``silence_baseline_window`` (50 min) before it it had ``n`` requests.
  Under the baseline rate the chance of a silent window is ``exp(-n * window / baseline)``
  (Poisson); fire when that is at most ``silence_alpha`` (1e-6): about 69 requests in the 50
  minutes before a 10-minute silence. Quieter routes cannot be told from chance this fast and
  never fire; a route that ramps down slowly (a nightly trough) keeps a low baseline.
- Clears at the first request. The detectors' clock advances with wall time when no traffic
  comes at all (:mod:`telemetry.detect.clock`), so a silent deployment is evaluated too.
- One alert per route (``model`` ``""``); the evidence gives the baseline count and rate and
  the last request's time. ``silence_alpha = 0`` turns it off for a route (batch jobs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pydantic import Field, model_validator

from telemetry.contracts._time import ms_to_datetime
from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, rounded
from telemetry.detect.detector import Context, PerRouteDetector
from telemetry.detect.names import TRAFFIC_STOPPED
from telemetry.detect.policy import Duration, PolicySection
from telemetry.detect.window import MINUTE_MS, MINUTE_SLOTS, RouteWindow


@dataclass(slots=True)
class SilenceState:
    """Per-route state: whether the route is silent now."""

    active: bool = False


class SilencePolicy(PolicySection):
    """TrafficStopped's keys of the route policy."""

    silence_window: Duration = 10 * MINUTE_MS
    silence_baseline_window: Duration = 50 * MINUTE_MS
    silence_alpha: float = Field(1e-6, ge=0, lt=0.5, description="0 turns TrafficStopped off for the route.")

    @model_validator(mode="after")
    def _coherent(self) -> SilencePolicy:
        self.check_windows("silence_window", "silence_baseline_window")
        return self


class TrafficStoppedDetector(PerRouteDetector):
    """One :class:`SilenceState` per route."""

    name: ClassVar[str] = "silence"
    alertname: ClassVar[str] = TRAFFIC_STOPPED
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[type[SilencePolicy]] = SilencePolicy

    def __init__(self) -> None:
        self.states: dict[str, SilenceState] = {}

    def evaluate_route(self, route: str, w: RouteWindow, policy: SilencePolicy, ctx: Context) -> list[Condition]:
        """The route's TrafficStopped condition, if it holds now."""
        now_ms = ctx.now_ms
        st = self.states.get(route)
        if st is None:
            st = self.states[route] = SilenceState()
        st.active = False
        if w.cur < 0 or policy.silence_alpha <= 0:
            return []
        window_m = policy.silence_window // MINUTE_MS
        base_m = min(policy.silence_baseline_window // MINUTE_MS, MINUTE_SLOTS - window_m)
        if w.wsum(w.req, window_m) > 0:
            return []
        baseline = w.wsum(w.req, window_m + base_m) - w.wsum(w.req, window_m)
        expected = baseline * window_m / base_m
        if expected <= 0 or -expected > math.log(policy.silence_alpha):
            return []
        st.active = True
        last = ms_to_datetime(w.last_ms).strftime("%Y-%m-%dT%H:%M:%SZ") if w.last_ms > 0 else None
        evidence: Evidence = {
            "requests_in_window": 0,
            "window_minutes": window_m,
            "baseline_requests": int(baseline),
            "baseline_minutes": base_m,
            "baseline_per_minute": rounded(baseline / base_m, 3),
            "expected_in_window": rounded(expected, 2),
            "p_silent_by_chance": rounded(math.exp(-expected), 12),
            "last_request_at": last,
        }
        summary = (
            f"{route} traffic stopped: no request in {window_m}m after {int(baseline)} in the {base_m}m before "
            f"({baseline / base_m:.1f}/min)"
        )
        description = (
            f"Route {route} sent no request in the last {window_m} minutes; in the {base_m} minutes before it "
            f"sent {int(baseline)} ({baseline / base_m:.2f} per minute), so a silence this long by chance has "
            f"probability {math.exp(-expected):.1e}. Last request at {last}. Clears at the next request."
        )
        return [
            Condition(
                alertname=TRAFFIC_STOPPED,
                route=route,
                model="",
                summary=clip(summary),
                description=description,
                evidence=evidence,
                decided_at_ms=now_ms,
            )
        ]

    def to_state(self) -> dict[str, Any]:
        return {route: asdict(st) for route, st in self.states.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> TrafficStoppedDetector:
        det = cls()
        det.states = {route: SilenceState(**raw) for route, raw in data.items()}
        return det
