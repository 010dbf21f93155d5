"""LatencySLOBreach: per-route p95/p99 targets, decided on counts of slow requests.

Contract
--------
- "p95 <= T" means at most 5% of requests are slower than T, so the detector counts ok requests
  slower than ``latency_p95_ms`` (and ``latency_p99_ms``) as they arrive — exact, no sketch —
  over a short (15 min) and a long (1 h) window. Error responses are ErrorStorm's business and
  are not counted. Defaults are generous (p95 10 s, p99 30 s) so that an unconfigured route
  pages only on a gross breach; a target of 0 disables that quantile.
- Fire for a quantile q when, in either window, there are enough requests
  (``latency_min_requests_p95`` = 100, ``latency_min_requests_p99`` = 300; a 95% upper bound on
  p99 needs >= 299), the slow share is at least ``latency_min_ratio`` (1.5) x the allowed share
  (a marginal breach does not page), and the exact one-sided binomial p-value of that many slow
  requests under the allowed share is at most ``latency_alpha`` (1e-4; evaluated every few
  seconds, this keeps false pages rare).
- Firing and holding also need the shortest window with enough requests to be over the allowed
  share *now* (the 1 h window keeps an old breach for an hour). Clear when it is at or below
  the allowed share, or no window has enough requests: **too little data means no page**.
- One alert per route (``model`` ``""``); evidence per quantile: target, counts, slow share,
  p-value, and an approximate observed quantile (±10%, from a coarse histogram).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from pydantic import Field, model_validator

from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded
from telemetry.detect.detector import Context, PerRouteDetector
from telemetry.detect.names import LATENCY_SLO_BREACH
from telemetry.detect.policy import Duration, PolicySection
from telemetry.detect.stats import binom_sf
from telemetry.detect.window import MINUTE_MS, RouteWindow


@dataclass(slots=True)
class LatencyState:
    """Per-route state: which quantiles are breached."""

    active: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    target: float
    allowed: float
    window_m: int
    n: int
    slow: int
    p_value: float


class LatencyPolicy(PolicySection):
    """LatencySLOBreach's keys of the route policy (the targets also set what the route's
    window counts as slow)."""

    latency_p95_ms: float = Field(10_000.0, ge=0, description="p95 target; 0 disables.")
    latency_p99_ms: float = Field(30_000.0, ge=0, description="p99 target; 0 disables.")
    latency_alpha: float = Field(1e-4, gt=0, lt=0.5)
    latency_min_ratio: float = Field(1.5, ge=1)
    latency_min_requests_p95: int = Field(100, ge=59)
    latency_min_requests_p99: int = Field(300, ge=299)
    latency_short_window: Duration = 15 * MINUTE_MS
    latency_long_window: Duration = 60 * MINUTE_MS

    @model_validator(mode="after")
    def _coherent(self) -> LatencyPolicy:
        self.check_windows("latency_short_window", "latency_long_window")
        if self.latency_short_window > self.latency_long_window:
            raise ValueError("latency_short_window must not be longer than latency_long_window")
        if self.latency_p95_ms and self.latency_p99_ms and self.latency_p99_ms < self.latency_p95_ms:
            raise ValueError("latency_p99_ms must not be below latency_p95_ms")
        return self


class LatencySLODetector(PerRouteDetector):
    """One :class:`LatencyState` per route."""

    name: ClassVar[str] = "latency"
    alertname: ClassVar[str] = LATENCY_SLO_BREACH
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 10 * MINUTE_MS
    policy: ClassVar[type[LatencyPolicy]] = LatencyPolicy

    def __init__(self) -> None:
        self.states: dict[str, LatencyState] = {}

    def evaluate_route(self, route: str, w: RouteWindow, policy: LatencyPolicy, ctx: Context) -> list[Condition]:
        """The route's LatencySLOBreach condition, if any quantile is breached now."""
        now_ms = ctx.now_ms
        st = self.states.get(route)
        if st is None:
            st = self.states[route] = LatencyState()
        if w.cur < 0:
            return []
        windows = sorted({policy.latency_short_window // MINUTE_MS, policy.latency_long_window // MINUTE_MS})
        breached: list[_Check] = []
        for name, target, allowed, col, min_n in (
            ("p95", policy.latency_p95_ms, 0.05, w.slow95, policy.latency_min_requests_p95),
            ("p99", policy.latency_p99_ms, 0.01, w.slow99, policy.latency_min_requests_p99),
        ):
            was = st.active.get(name, False)
            if not target:
                st.active[name] = False
                continue
            if not was and w.wsum(col, windows[-1]) < policy.latency_min_ratio * allowed * min_n:
                st.active[name] = False
                continue  # cheap gate: too few slow requests to fire in any window
            fire: _Check | None = None
            holding: bool | None = None
            for window_m in windows:
                n = int(w.wsum(w.ok, window_m))
                if n < min_n:
                    continue
                slow = int(w.wsum(col, window_m))
                if holding is None:
                    holding = slow > allowed * n
                if slow >= policy.latency_min_ratio * allowed * n:
                    p = binom_sf(slow, n, allowed)
                    if p <= policy.latency_alpha and (fire is None or p < fire.p_value):
                        fire = _Check(name, target, allowed, window_m, n, slow, p)
            # the shortest window with enough requests must show a breach now, both to fire and to
            # hold: the long window still holds a breach for an hour after recovery
            now_active = bool(holding) and (was or fire is not None)
            st.active[name] = now_active
            if now_active:
                if fire is None:
                    window_m = next(wm for wm in windows if w.wsum(w.ok, wm) >= min_n)
                    n = int(w.wsum(w.ok, window_m))
                    slow = int(w.wsum(col, window_m))
                    fire = _Check(name, target, allowed, window_m, n, slow, binom_sf(slow, n, allowed))
                breached.append(fire)
        if not breached:
            return []
        return [self._condition(route, w, breached, now_ms)]

    @staticmethod
    def _condition(route: str, w: RouteWindow, checks: list[_Check], now_ms: int) -> Condition:
        evidence: Evidence = {}
        parts = []
        for c in checks:
            q = 0.95 if c.name == "p95" else 0.99
            estimate = w.latency_quantile(c.window_m, q)
            evidence.update(
                {
                    f"{c.name}_target_ms": rounded(c.target),
                    f"{c.name}_window_minutes": c.window_m,
                    f"{c.name}_requests": c.n,
                    f"{c.name}_slow_requests": c.slow,
                    f"{c.name}_slow_share": rounded(c.slow / c.n, 4),
                    f"{c.name}_allowed_share": c.allowed,
                    f"{c.name}_p_value": rounded(c.p_value, 3),
                    f"{c.name}_estimate_ms": rounded(estimate, 4),
                }
            )
            parts.append(
                f"{c.name} ~{estimate or 0:,.0f} ms > SLO {c.target:,.0f} ms: {pct(c.slow / c.n)} of {c.n} "
                f"requests slower (allowed {pct(c.allowed, 0)}) in {c.window_m}m"
            )
        summary = clip(f"{route} " + "; ".join(parts))
        description = f"Route {route} breaches its latency SLO. " + " ".join(
            f"{c.name}: {c.slow} of {c.n} ok requests in the last {c.window_m} min were slower than "
            f"{c.target:,.0f} ms ({pct(c.slow / c.n)}; the SLO allows {pct(c.allowed, 0)}; one-sided "
            f"binomial p={c.p_value:.2g})."
            for c in checks
        )
        return Condition(
            alertname=LATENCY_SLO_BREACH,
            route=route,
            model="",
            summary=summary,
            description=description,
            evidence=evidence,
            decided_at_ms=min(now_ms, w.last_ms) if w.last_ms > 0 else now_ms,
        )

    def to_state(self) -> dict[str, Any]:
        return {route: asdict(st) for route, st in self.states.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> LatencySLODetector:
        det = cls()
        det.states = {route: LatencyState(active=dict(raw["active"])) for route, raw in data.items()}
        return det
