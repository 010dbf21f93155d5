"""ErrorStorm: a burst of errors of one type on a route (e.g. model_not_found after an alias change).

Contract
--------
- Per error type over the last ``storm_window`` (2 min, the current minute included): fire when
  a type has at least ``storm_min_errors`` (5) errors **and** at least ``storm_min_share`` (20%)
  of the route's requests; a storming type stays storming until its share falls below
  ``storm_clear_share`` (10%).
- One alert per route (``model`` ``""``: the fingerprint's identity has no error type); the
  evidence names the largest storming type, its count and share, the requested model most of
  its errors name, and every other storming type.
- While it fires (and for ``inhibit_hold`` after), the route's QualityRegression, CostSpike and
  LatencySLOBreach alerts are symptoms and are inhibited (see the engine).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded
from telemetry.detect.names import ERROR_STORM
from telemetry.detect.window import MINUTE_MS, RouteWindow
from telemetry.routes import RoutePolicy


@dataclass(slots=True)
class StormState:
    """Per-route state: the error types storming now."""

    types: list[str] = field(default_factory=list)


class ErrorStormDetector:
    """One :class:`StormState` per route."""

    def __init__(self) -> None:
        self.states: dict[str, StormState] = {}

    def evaluate(self, route: str, w: RouteWindow, policy: RoutePolicy, now_ms: int) -> list[Condition]:
        """The route's ErrorStorm condition, if an error type storms now."""
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
        by_type: dict[str, int] = {}
        by_type_model: dict[str, dict[str, int]] = {}
        for (etype, model), n in w.error_window(window_m).items():
            by_type[etype] = by_type.get(etype, 0) + n
            models = by_type_model.setdefault(etype, {})
            models[model] = models.get(model, 0) + n
        storming = []
        for etype, n in by_type.items():
            share = n / requests if requests else 0.0
            if n >= policy.storm_min_errors and share >= policy.storm_min_share:
                storming.append(etype)
            elif etype in st.types and share >= policy.storm_clear_share and n > 0:
                storming.append(etype)
        st.types = sorted(storming)
        if not storming:
            return []
        top = max(storming, key=lambda t: (by_type[t], t))
        n_top = by_type[top]
        top_model = max(by_type_model[top].items(), key=lambda kv: (kv[1], kv[0]))[0]
        others = [t for t in st.types if t != top]
        evidence: Evidence = {
            "error_type": top,
            "errors": n_top,
            "requests": int(requests),
            "error_share": rounded(n_top / requests, 4) if requests else None,
            "top_requested_model": top_model,
            "top_requested_model_errors": by_type_model[top][top_model],
            "window_minutes": window_m,
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
            f"requested model {top_model} ({by_type_model[top][top_model]}). Fires at >= "
            f"{policy.storm_min_errors} errors and >= {pct(policy.storm_min_share, 0)} of requests, clears "
            f"below {pct(policy.storm_clear_share, 0)}. While it fires, quality, cost and latency alerts "
            f"of this route are inhibited as symptoms."
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
        det.states = {route: StormState(types=list(raw["types"])) for route, raw in data.items()}
        return det
