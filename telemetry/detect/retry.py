"""RetryAmplification: attempts per logical request above the retry budget.

Contract
--------
- Every request fact is one attempt; a fact with ``attempt == 1`` starts a logical request.
  Over the last ``retry_window`` (10 min): ``amplification = attempts / first attempts``.
- Fire at ``amplification >= retry_budget`` (1.5) with at least ``retry_min_requests`` (20)
  logical requests; clear below ``retry_clear`` (1.2) or with too few logical requests.
- Not inhibited by an error storm: retries multiply load and spend whatever caused them.
- One alert per route (``model`` ``""``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from telemetry.detect.condition import Condition, Evidence, clip, rounded
from telemetry.detect.names import RETRY_AMPLIFICATION
from telemetry.detect.window import MINUTE_MS, RouteWindow
from telemetry.routes import RoutePolicy


@dataclass(slots=True)
class RetryState:
    """Per-route state: whether the amplification is above budget."""

    active: bool = False


class RetryAmplificationDetector:
    """One :class:`RetryState` per route."""

    def __init__(self) -> None:
        self.states: dict[str, RetryState] = {}

    def evaluate(self, route: str, w: RouteWindow, policy: RoutePolicy, now_ms: int) -> list[Condition]:
        """The route's RetryAmplification condition, if it holds now."""
        st = self.states.get(route)
        if st is None:
            st = self.states[route] = RetryState()
        if w.cur < 0:
            return []
        window_m = policy.retry_window // MINUTE_MS
        first = w.wsum(w.first, window_m)
        attempts = w.wsum(w.req, window_m)
        if first < policy.retry_min_requests:
            st.active = False
            return []
        ratio = attempts / first
        st.active = ratio >= (policy.retry_clear if st.active else policy.retry_budget)
        if not st.active:
            return []
        errors = w.wsum(w.err, window_m)
        evidence: Evidence = {
            "amplification": rounded(ratio, 4),
            "attempts": int(attempts),
            "logical_requests": int(first),
            "retries": int(attempts - first),
            "error_share": rounded(errors / attempts, 4) if attempts else None,
            "budget": policy.retry_budget,
            "clear_below": policy.retry_clear,
            "window_minutes": window_m,
        }
        summary = (
            f"{route} retry amplification {ratio:.2f} attempts per request (budget {policy.retry_budget:g}): "
            f"{int(attempts)} attempts for {int(first)} requests in {window_m}m"
        )
        description = (
            f"In the last {window_m} min route {route} made {int(attempts)} attempts for {int(first)} logical "
            f"requests ({ratio:.2f} per request; {int(attempts - first)} retries, "
            f"{int(errors)} errors). Fires at {policy.retry_budget:g}, clears below {policy.retry_clear:g}."
        )
        return [
            Condition(
                alertname=RETRY_AMPLIFICATION,
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
    def from_state(cls, data: dict[str, Any]) -> RetryAmplificationDetector:
        det = cls()
        det.states = {route: RetryState(**raw) for route, raw in data.items()}
        return det
