"""The detection engine: facts in, alert notifications out. Pure: no I/O, no clock, no logging.

The worker calls, from one task (the engine is not thread-safe):

- :meth:`DetectionEngine.observe_requests` / :meth:`DetectionEngine.observe_verdicts` with
  decoded batches, in any order and any size (O(1) amortised per fact, bounded memory per route);
- :meth:`DetectionEngine.evaluate` with the event-time watermark (the largest event time seen)
  after each batch or every second; it returns the notifications to emit *now*: first firings,
  repeats (every ``repeat_interval``) and resolutions (once);
- :meth:`DetectionEngine.snapshot` to persist everything (baselines, CUSUM sums, windows, alert
  states), and :meth:`DetectionEngine.restore` at start-up: a restarted worker neither re-pages
  an alert already firing nor loses a baseline.

Inhibition: while a route's ErrorStorm holds, and for ``inhibit_hold`` (15 min) after, its
QualityRegression, CostSpike and LatencySLOBreach conditions are symptoms: their alerts stay
pending (or, if already firing, are not repeated) until the storm is over.

A request-side condition is decided at the evaluation that follows its deciding facts; a
quality alarm at the verdict that crosses the CUSUM threshold. Request-side detectors of a route
are re-evaluated when the route got facts or the minute changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from telemetry.alerting.lifecycle import ActiveCondition, AlertLifecycle
from telemetry.contracts.alert import Alert
from telemetry.detect.budget import BudgetDetector, Spend
from telemetry.detect.condition import Condition
from telemetry.detect.cost import CostSpikeDetector, PassRates
from telemetry.detect.facts import RequestFact, VerdictFact
from telemetry.detect.limits import CardinalityGuard, LabelLimits
from telemetry.detect.latency import LatencySLODetector
from telemetry.detect.names import BUDGET_OVERRUN, ERROR_STORM, INHIBITED_BY_ERROR_STORM
from telemetry.detect.quality import QualityDetector
from telemetry.detect.retry import RetryAmplificationDetector
from telemetry.detect.silence import TrafficStoppedDetector
from telemetry.detect.storm import ErrorStormDetector
from telemetry.detect.tier import TierSwitchDetector
from telemetry.detect.truncation import TruncationSpikeDetector
from telemetry.detect.window import HOUR_MS, HOUR_SLOTS, MINUTE_MS, RouteWindow
from telemetry.routes import RoutesConfig

SNAPSHOT_VERSION = 1
_BUDGET_SPAN_MS = 24 * HOUR_MS
_WINDOW_FORGET_MS = HOUR_SLOTS * HOUR_MS
"""A route with no request for as long as its hour ring reaches back is forgotten (its slot freed)."""


class DetectionEngine:
    """All detectors of one worker, their state, and the alert lifecycle. See the module docstring."""

    def __init__(self, routes: RoutesConfig, env: str = "local", limits: LabelLimits | None = None) -> None:
        self.config = routes
        self.env = env
        self.limits = limits or LabelLimits()
        self.guard = CardinalityGuard(self.limits)
        self.now_ms = 0
        self.windows: dict[str, RouteWindow] = {}
        self.quality = QualityDetector()
        self._new_request_side()
        self.lifecycle = AlertLifecycle()
        self.storm_seen_ms: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._cache: dict[str, tuple[int, list[Condition], Spend | None]] = {}
        self._last_forget_minute = -1
        self._has_budgets = any(p.monthly_budget_usd for p in routes.routes.values()) or bool(
            routes.defaults.monthly_budget_usd or any(t.monthly_budget_usd for t in routes.teams.values())
        )

    # --- input -----------------------------------------------------------------------------
    def observe_requests(self, facts: Sequence[RequestFact]) -> None:
        """Add request facts (any order). Never raises on data; O(1) per fact."""
        windows = self.windows
        dirty = self._dirty
        guard = self.guard
        admitted, teams = guard.routes, guard.teams
        last_route: str | None = None
        w: RouteWindow | None = None
        for f in facts:
            labels = admitted.get(f.route)
            if labels is None or f.served_model not in labels or f.model not in labels or (f.team and f.team not in teams):
                f = guard.request(f)
            if f.route != last_route:
                last_route = f.route
                w = windows.get(last_route)
                if w is None:
                    policy = self.config.for_route(last_route)
                    w = windows[last_route] = RouteWindow(policy.latency_p95_ms, policy.latency_p99_ms)
                dirty.add(last_route)
            w.add(f)  # type: ignore[union-attr]

    def observe_verdicts(self, facts: Sequence[VerdictFact]) -> None:
        """Step the quality CUSUMs with verdict facts, in the given order. O(1) per verdict."""
        guard = self.guard
        self.quality.observe([guard.verdict(f) for f in facts], self.config.for_route)

    # --- decisions --------------------------------------------------------------------------
    def evaluate(self, now_ms: int) -> list[Alert]:
        """Notifications to emit at event time ``now_ms`` (the watermark; never goes back)."""
        now = max(now_ms, self.now_ms)
        self.now_ms = now
        minute = now // MINUTE_MS
        conditions: list[Condition] = []
        for route, w in self.windows.items():
            w.advance(minute)
            cached = self._cache.get(route)
            if cached is None or cached[0] != minute or route in self._dirty:
                spend = self._spend(w, now) if self._has_budgets else None
                cached = (minute, self._evaluate_route(route, w, now), spend)
                self._cache[route] = cached
            conditions.extend(cached[1])
        self._dirty.clear()

        if minute != self._last_forget_minute:
            self._last_forget_minute = minute
            self.quality.forget(now)
            self._forget_routes(now)
        conditions.extend(self.quality.evaluate(now, self.windows))

        if self._has_budgets:
            spends = {route: c[2] for route, c in self._cache.items() if c[2] is not None}
            teams = {route: self.config.team_for(route, w.team) for route, w in self.windows.items()}
            conditions.extend(self.budget.evaluate(spends, teams, self.config, now))

        for cond in conditions:
            if cond.alertname == ERROR_STORM:
                self.storm_seen_ms[cond.route] = now
        return self.lifecycle.update([self._active(c, now) for c in conditions], now)

    def _new_request_side(self) -> None:
        """Fresh request-side detectors (the per-route windows are kept apart)."""
        self.cost = CostSpikeDetector()
        self.tier = TierSwitchDetector()
        self.latency = LatencySLODetector()
        self.storm = ErrorStormDetector()
        self.retry = RetryAmplificationDetector()
        self.truncation = TruncationSpikeDetector()
        self.silence = TrafficStoppedDetector()
        self.budget = BudgetDetector()

    def _drop_route_states(self, route: str) -> None:
        for detector in (self.cost, self.tier, self.latency, self.storm, self.retry, self.truncation, self.silence):
            detector.states.pop(route, None)

    def _forget_routes(self, now: int) -> None:
        """Drop the request-side state of routes silent for the whole hour ring; free their slots."""
        for route in [r for r, w in self.windows.items() if w.last_ms < now - _WINDOW_FORGET_MS]:
            del self.windows[route]
            self._cache.pop(route, None)
            self._drop_route_states(route)
        self.guard.forget_routes(set(self.windows) | set(self.quality.states))

    def repair_clock(self, wall_ms: int, max_skew_ms: int) -> bool:
        """Undo a clock saved ahead of wall time (an event dated in the future, accepted by an
        older version): the request-side windows and detectors restart from the next traffic,
        quality baselines are kept, and every alert's times are pulled back to ``wall_ms`` so
        firing alerts resolve normally. True when a repair was needed."""
        if self.now_ms <= wall_ms + max_skew_ms:
            return False
        self.now_ms = wall_ms
        self.windows.clear()
        self._cache.clear()
        self._dirty.clear()
        self._new_request_side()
        self.storm_seen_ms = {r: min(t, wall_ms) for r, t in self.storm_seen_ms.items()}
        for st in self.quality.states.values():
            for ev in st.values():
                ev.last_ms = min(ev.last_ms, wall_ms)
                ev.alarm_since_ms = min(ev.alarm_since_ms, wall_ms)
        for state in self.lifecycle.states.values():
            state.active_since_ms = min(state.active_since_ms, wall_ms)
            state.last_active_ms = min(state.last_active_ms, wall_ms)
            state.decided_at_ms = min(state.decided_at_ms, wall_ms)
            if state.fired_at_ms is not None:
                state.fired_at_ms = min(state.fired_at_ms, wall_ms)
            if state.last_sent_ms is not None:
                state.last_sent_ms = min(state.last_sent_ms, wall_ms)
        self._last_forget_minute = -1
        return True

    def _evaluate_route(self, route: str, w: RouteWindow, now: int) -> list[Condition]:
        policy = self.config.for_route(route)
        out: list[Condition] = []
        out += self.storm.evaluate(route, w, policy, now)
        out += self.tier.evaluate(route, w, policy, now, self.quality.model_pass_rate)
        out += self.cost.evaluate(route, w, policy, now, lambda: self._pass_rates(route))
        out += self.latency.evaluate(route, w, policy, now)
        out += self.retry.evaluate(route, w, policy, now)
        out += self.truncation.evaluate(route, w, policy, now)
        out += self.silence.evaluate(route, w, policy, now)
        return out

    def _pass_rates(self, route: str) -> PassRates | None:
        primary = self.quality.primary(route)
        if primary is None or not primary[1].armed:
            return None
        st = primary[1]
        p1, n1 = st.pass_rate_hours(self.now_ms, 2)
        p6, n6 = st.pass_rate_hours(self.now_ms, 7)
        return PassRates(baseline=st.p_hat, passed_1h=p1, judged_1h=n1, passed_6h=p6, judged_6h=n6)

    @staticmethod
    def _spend(w: RouteWindow, now: int) -> Spend:
        """Trailing 24 h spend of a route (hour resolution, current minute included)."""
        hours = _BUDGET_SPAN_MS // HOUR_MS
        cost, span = w.spend(now, _BUDGET_SPAN_MS)
        return Spend(
            cost=cost,
            span_ms=span,
            requests=int(w.hours_total("hreq", hours)),
            priced=int(w.hours_total("hpriced", hours)),
        )

    def _active(self, c: Condition, now: int) -> ActiveCondition:
        if c.team is not None:
            policy = self.config.defaults
            team = c.team
        else:
            policy = self.config.for_route(c.route)
            w = self.windows.get(c.route)
            team = self.config.team_for(c.route, w.team if w else "")
        inhibited = False
        if c.alertname in INHIBITED_BY_ERROR_STORM:
            seen = self.storm_seen_ms.get(c.route)
            inhibited = seen is not None and now - seen <= policy.inhibit_hold
        severity = policy.severity_of(c.alertname)
        if c.alertname == BUDGET_OVERRUN and c.team is not None:
            severity = self.config.defaults.severity_of(BUDGET_OVERRUN)
        return ActiveCondition(
            labels={
                "alertname": c.alertname,
                "route": c.route,
                "model": c.model,
                "team": team,
                "severity": severity,
                "env": self.env,
            },
            annotations={"summary": c.summary, "description": c.description},
            evidence=dict(c.evidence),
            decided_at_ms=c.decided_at_ms,
            for_ms=policy.for_ms(c.alertname),
            keep_firing_for_ms=policy.keep_firing_ms(c.alertname),
            repeat_interval_ms=policy.repeat_interval,
            inhibited=inhibited,
        )

    # --- persistence ------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """All state as JSON bytes (orjson). Pure; call it as often as the worker commits."""
        state: dict[str, Any] = {
            "version": SNAPSHOT_VERSION,
            "now_ms": self.now_ms,
            "windows": {route: w.to_state() for route, w in self.windows.items()},
            "quality": self.quality.to_state(),
            "cost": self.cost.to_state(),
            "tier": self.tier.to_state(),
            "latency": self.latency.to_state(),
            "storm": self.storm.to_state(),
            "retry": self.retry.to_state(),
            "truncation": self.truncation.to_state(),
            "silence": self.silence.to_state(),
            "budget": self.budget.to_state(),
            "lifecycle": self.lifecycle.to_state(),
            "storm_seen_ms": self.storm_seen_ms,
            "guard": self.guard.to_state(),
        }
        return orjson.dumps(state)

    @classmethod
    def restore(
        cls, data: bytes, routes: RoutesConfig, env: str = "local", limits: LabelLimits | None = None
    ) -> DetectionEngine:
        """Rebuild an engine from :meth:`snapshot` bytes with the current config.

        Raises ValueError if the bytes are not a snapshot of this version. Latency targets come
        from ``routes``: slow counts already in the windows keep the targets they were counted with.
        """
        try:
            state = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a detection snapshot: {exc}") from exc
        version = state.get("version") if isinstance(state, dict) else None
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"detection snapshot version {version!r} is not {SNAPSHOT_VERSION}")
        engine = cls(routes, env, limits)
        engine.now_ms = int(state["now_ms"])
        for route, raw in state["windows"].items():
            policy = routes.for_route(route)
            engine.windows[route] = RouteWindow.from_state(raw, policy.latency_p95_ms, policy.latency_p99_ms)
        engine.quality = QualityDetector.from_state(state["quality"])
        engine.cost = CostSpikeDetector.from_state(state["cost"])
        engine.tier = TierSwitchDetector.from_state(state["tier"])
        engine.latency = LatencySLODetector.from_state(state["latency"])
        engine.storm = ErrorStormDetector.from_state(state["storm"])
        engine.retry = RetryAmplificationDetector.from_state(state["retry"])
        engine.truncation = TruncationSpikeDetector.from_state(state["truncation"])
        engine.silence = TrafficStoppedDetector.from_state(state.get("silence", {}))
        engine.budget = BudgetDetector.from_state(state["budget"])
        engine.lifecycle = AlertLifecycle.from_state(state["lifecycle"])
        engine.storm_seen_ms = {k: int(v) for k, v in state["storm_seen_ms"].items()}
        if "guard" in state:
            engine.guard = CardinalityGuard.from_state(state["guard"], engine.limits)
        else:  # saved before labels were bounded: admit what the state holds, newest routes first
            engine._bound_restored_routes()
        engine._dirty = set(engine.windows)
        return engine

    def _bound_restored_routes(self) -> None:
        """Keep the ``max_routes`` most recently active routes of a state saved without limits."""
        newest = sorted(self.windows, key=lambda r: self.windows[r].last_ms, reverse=True)
        keep = set(newest[: self.limits.max_routes])
        for route in newest[self.limits.max_routes :]:
            del self.windows[route]
            self._drop_route_states(route)
        for route in sorted(keep):
            self.guard.admit_route(route)
        for route in sorted(self.quality.states):
            if self.guard.admit_route(route) != route:
                del self.quality.states[route]
