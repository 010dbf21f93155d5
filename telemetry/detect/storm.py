"""ErrorStorm: a burst of errors of one type on a route (e.g. model_not_found after an alias change).

Contract
--------
- Per error type over the last ``storm_window`` (2 min, the current minute included): fire when
  a type has at least ``storm_min_errors`` (5) errors, at least ``storm_min_share`` (20%) of the
  route's requests, **and** more than the route's usual error rate explains: the exact binomial
  p-value of that count under the route's 7-day error share (at least 1%; 5% before there is a
  baseline of 100 requests) is at most ``storm_alpha`` (1e-6). Without that last test a route
  with 3% rate limiting at 10 requests/minute "storms" about once a day. A storming type stays
  storming until its share over the last ``storm_clear_window`` (10 min) falls below
  ``storm_clear_share`` (10%): a longer clear window keeps a low-volume storm from flapping.
- One alert per route (``model`` ``""``: the fingerprint's identity has no error type); the
  evidence names the largest storming type, its count and share, the requested model most of
  its errors name, and every other storming type.
- While it fires (and for ``inhibit_hold`` after), the route's QualityRegression, CostSpike and
  LatencySLOBreach alerts are symptoms and are inhibited (see the engine).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from pydantic import Field, model_validator

from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded
from telemetry.detect.detector import Context, PerRouteDetector
from telemetry.detect.names import ERROR_STORM
from telemetry.detect.policy import Duration, PolicySection
from telemetry.detect.stats import binom_sf
from telemetry.detect.window import MINUTE_MS, RouteWindow


@dataclass(slots=True)
class StormState:
    """Per-route state: the error types storming now."""

    types: list[str] = field(default_factory=list)
    base_hour: int = -1
    base_share: float = 0.05


class StormPolicy(PolicySection):
    """ErrorStorm's keys of the route policy, ``inhibit_hold`` included (the engine inhibits)."""

    storm_min_errors: int = Field(5, ge=1)
    storm_min_share: float = Field(0.2, gt=0, le=1)
    storm_clear_share: float = Field(0.1, ge=0, le=1)
    storm_alpha: float = Field(1e-6, gt=0, lt=0.5)
    storm_clear_window: Duration = 10 * MINUTE_MS
    storm_window: Duration = 2 * MINUTE_MS
    inhibit_hold: Duration = 15 * MINUTE_MS

    @model_validator(mode="after")
    def _coherent(self) -> StormPolicy:
        self.check_windows("storm_window", "storm_clear_window")
        if self.storm_clear_share > self.storm_min_share:
            raise ValueError("storm_clear_share must not exceed storm_min_share")
        return self


class ErrorStormDetector(PerRouteDetector):
    """One :class:`StormState` per route."""

    name: ClassVar[str] = "storm"
    alertname: ClassVar[str] = ERROR_STORM
    severity: ClassVar[Severity] = "critical"
    keep_firing_ms: ClassVar[int] = 5 * MINUTE_MS
    policy: ClassVar[type[StormPolicy]] = StormPolicy

    def __init__(self) -> None:
        self.states: dict[str, StormState] = {}

    def evaluate_route(self, route: str, w: RouteWindow, policy: StormPolicy, ctx: Context) -> list[Condition]:
        """The route's ErrorStorm condition, if an error type storms now."""
        now_ms = ctx.now_ms
        st = self.states.get(route)
        if st is None:
            st = self.states[route] = StormState()
        if w.cur < 0:
            return []
        window_m = policy.storm_window // MINUTE_MS
        errors = w.wsum(w.err, window_m)
        if not st.types and errors < policy.storm_min_errors:
            return []
        requests = w.wsum(w.req, window_m)
        hour = w.cur // 60
        if st.base_hour != hour:
            st.base_hour = hour
            base_req = w.hsum(w.hreq, hour - 7 * 24, hour - 1)
            base_err = w.hsum(w.herr, hour - 7 * 24, hour - 1)
            st.base_share = max(0.01, base_err / base_req) if base_req >= 100 else 0.05
        by_type: dict[str, int] = {}
        by_type_model: dict[str, dict[str, int]] = {}
        for (etype, model), n in w.error_window(window_m).items():
            by_type[etype] = by_type.get(etype, 0) + n
            models = by_type_model.setdefault(etype, {})
            models[model] = models.get(model, 0) + n
        storming = []
        for etype, n in by_type.items():
            share = n / requests if requests else 0.0
            if (
                n >= policy.storm_min_errors
                and share >= policy.storm_min_share
                and binom_sf(n, int(requests), st.base_share) <= policy.storm_alpha
            ):
                storming.append(etype)
        if st.types:
            clear_m = max(window_m, policy.storm_clear_window // MINUTE_MS)
            clear_requests = w.wsum(w.req, clear_m)
            clear_counts: dict[str, int] = {}
            for (etype, _), n in w.error_window(clear_m).items():
                clear_counts[etype] = clear_counts.get(etype, 0) + n
            for etype in st.types:
                n = clear_counts.get(etype, 0)
                if etype not in storming and clear_requests and n / clear_requests >= policy.storm_clear_share:
                    storming.append(etype)
        st.types = sorted(storming)
        if not storming:
            return []
        top = max(storming, key=lambda t: (by_type.get(t, 0), t))
        n_top = by_type.get(top, 0)
        top_models = by_type_model.get(top) or {"": 0}
        top_model = max(top_models.items(), key=lambda kv: (kv[1], kv[0]))[0]
        others = [t for t in st.types if t != top]
        evidence: Evidence = {
            "error_type": top,
            "errors": n_top,
            "requests": int(requests),
            "error_share": rounded(n_top / requests, 4) if requests else None,
            "top_requested_model": top_model,
            "top_requested_model_errors": top_models[top_model],
            "window_minutes": window_m,
            "baseline_error_share": rounded(st.base_share, 4),
            "p_value_one_sided": rounded(binom_sf(n_top, int(requests), st.base_share), 3),
            "all_errors": int(errors),
            "other_storming_types": ", ".join(others) or None,
            "error_counts": ", ".join(f"{t}={n}" for t, n in sorted(by_type.items(), key=lambda kv: -kv[1])[:8]),
        }
        summary = (
            f"{route} error storm: {n_top} {top} errors = {pct(n_top / requests if requests else None)} "
            f"of {int(requests)} requests in {window_m}m (model {top_model})"
        )
        if others:
            summary += f"; also {', '.join(others)}"
        description = (
            f"In the last {window_m} min route {route} returned {n_top} errors of type {top} out of "
            f"{int(requests)} requests ({pct(n_top / requests if requests else None)}); most name the "
            f"requested model {top_model or 'n/a'} ({top_models[top_model]}). Fires at >= "
            f"{policy.storm_min_errors} errors and >= {pct(policy.storm_min_share, 0)} of requests (baseline "
            f"error share {pct(st.base_share)}), clears below {pct(policy.storm_clear_share, 0)} over "
            f"{max(window_m, policy.storm_clear_window // MINUTE_MS)} min. While it fires, quality, cost and "
            f"latency alerts of this route are inhibited as symptoms."
        )
        return [
            Condition(
                alertname=ERROR_STORM,
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
    def from_state(cls, data: dict[str, Any]) -> ErrorStormDetector:
        det = cls()
        det.states = {route: StormState(**raw) for route, raw in data.items()}
        return det
