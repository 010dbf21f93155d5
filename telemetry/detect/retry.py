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
from typing import Any, ClassVar

from pydantic import Field, model_validator

from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, rounded
from telemetry.detect.detector import Context, PerRouteDetector
from telemetry.detect.names import RETRY_AMPLIFICATION
from telemetry.detect.policy import Duration, PolicySection
from telemetry.detect.window import MINUTE_MS, RouteWindow


@dataclass(slots=True)
class RetryState:
    """Per-route state: whether the amplification is above budget."""

    active: bool = False


class RetryPolicy(PolicySection):
    """RetryAmplification's keys of the route policy."""

    retry_budget: float = Field(1.5, gt=1)
    retry_clear: float = Field(1.2, ge=1)
    retry_window: Duration = 10 * MINUTE_MS
    retry_min_requests: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _coherent(self) -> RetryPolicy:
        self.check_windows("retry_window")
        if self.retry_clear > self.retry_budget:
            raise ValueError("retry_clear must not exceed retry_budget")
        return self


class RetryAmplificationDetector(PerRouteDetector):
    """One :class:`RetryState` per route."""

    name: ClassVar[str] = "retry"
    alertname: ClassVar[str] = RETRY_AMPLIFICATION
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 10 * MINUTE_MS
    policy: ClassVar[type[RetryPolicy]] = RetryPolicy

    def __init__(self) -> None:
        self.states: dict[str, RetryState] = {}

    def evaluate_route(self, route: str, w: RouteWindow, policy: RetryPolicy, ctx: Context) -> list[Condition]:
        """The route's RetryAmplification condition, if it holds now."""
        now_ms = ctx.now_ms
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
