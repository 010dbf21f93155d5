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

The detectors are the classes of :data:`telemetry.detect.registry.DETECTORS`, driven through
their common interface (:class:`telemetry.detect.detector.Detector`): one instance of each,
its section of each route's policy, its key in the snapshot. The engine itself owns the
per-route request windows, the label limits, the alert lifecycle and inhibition.

Inhibition: while a route's ErrorStorm holds, and for ``inhibit_hold`` (15 min) after, its
QualityRegression, CostSpike and LatencySLOBreach conditions are symptoms: their alerts stay
pending (or, if already firing, are not repeated) until the storm is over.

A request-side condition is decided at the evaluation that follows its deciding facts; a
quality alarm at the verdict that crosses the CUSUM threshold. Request-side detectors of a route
are re-evaluated when the route got facts or the minute changed.

The routes file is read through :class:`telemetry.detect.policy.RoutesView`
(:class:`telemetry.routes.RoutesConfig` is one): this module does not import the routes module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from telemetry.alerting.lifecycle import ActiveCondition, AlertLifecycle
from telemetry.contracts.alert import Alert
from telemetry.detect.condition import Condition
from telemetry.detect.detector import Context, Detector
from telemetry.detect.facts import RequestFact, VerdictFact
from telemetry.detect.inputs import StoredInputs
from telemetry.detect.latency import LatencyPolicy
from telemetry.detect.limits import CardinalityGuard, LabelLimits
from telemetry.detect.names import ERROR_STORM, INHIBITED_BY_ERROR_STORM
from telemetry.detect.policy import PolicySection, RoutesView
from telemetry.detect.quality import QualityDetector
from telemetry.detect.registry import DETECTORS
from telemetry.detect.storm import StormPolicy
from telemetry.detect.window import HOUR_MS, HOUR_SLOTS, MINUTE_MS, RouteWindow

SNAPSHOT_VERSION = 1
_WINDOW_FORGET_MS = HOUR_SLOTS * HOUR_MS
"""A route with no request for as long as its hour ring reaches back is forgotten (its slot freed)."""

D = TypeVar("D", bound=Detector)


class DetectionEngine:
    """All detectors of one worker, their state, and the alert lifecycle. See the module docstring."""

    def __init__(self, routes: RoutesView, env: str = "local", limits: LabelLimits | None = None) -> None:
        self.config = routes
        self.env = env
        self.limits = limits or LabelLimits()
        self.guard = CardinalityGuard(self.limits)
        self.now_ms = 0
        self.windows: dict[str, RouteWindow] = {}
        self.detectors: dict[str, Detector] = {kind.name: kind() for kind in DETECTORS}
        self.lifecycle = AlertLifecycle()
        self.storm_seen_ms: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._cache: dict[str, tuple[int, list[Condition]]] = {}
        self._last_forget_minute = -1
        self.inputs = StoredInputs()

    def set_inputs(self, inputs: StoredInputs) -> None:
        """Take what the detection owner read from storage (see :mod:`telemetry.detect.inputs`);
        every route is evaluated again at the next evaluation."""
        self.inputs = inputs
        self._dirty.update(self.windows)

    def detector(self, kind: type[D]) -> D:
        """This engine's instance of the registered detector class ``kind``."""
        found = self.detectors[kind.name]
        if not isinstance(found, kind):
            raise TypeError(f"detector {kind.name!r} is a {type(found).__name__}, not a {kind.__name__}")
        return found

    @property
    def quality(self) -> QualityDetector:
        """The quality detector (its baselines; the pass rates other detectors consult)."""
        return self.detector(QualityDetector)

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
                    w = windows[last_route] = self._new_window(last_route)
                dirty.add(last_route)
            w.add(f)  # type: ignore[union-attr]

    def observe_verdicts(self, facts: Sequence[VerdictFact]) -> None:
        """Step the quality CUSUMs with verdict facts, in the given order. O(1) per verdict."""
        guard = self.guard
        verdicts = [guard.verdict(f) for f in facts]
        for d in self.detectors.values():
            d.observe_verdicts(verdicts, self._section_of(d.policy))

    def _new_window(self, route: str) -> RouteWindow:
        latency = self.config.for_route(route).section(LatencyPolicy)
        return RouteWindow(latency.latency_p95_ms, latency.latency_p99_ms)

    def _section_of(self, kind: type[PolicySection]) -> Callable[[str], Any]:
        """``route -> that route's section kind``."""
        for_route = self.config.for_route
        return lambda route: for_route(route).section(kind)

    # --- decisions --------------------------------------------------------------------------
    def evaluate(self, now_ms: int) -> list[Alert]:
        """Notifications to emit at event time ``now_ms`` (the watermark; never goes back)."""
        now = max(now_ms, self.now_ms)
        self.now_ms = now
        minute = now // MINUTE_MS
        detectors = self.detectors.values()
        ctx = Context(now_ms=now, routes=self.config, windows=self.windows, quality=self.quality, inputs=self.inputs)
        conditions: list[Condition] = []
        for route, w in self.windows.items():
            w.advance(minute)
            cached = self._cache.get(route)
            if cached is None or cached[0] != minute or route in self._dirty:
                cached = (minute, self._evaluate_route(route, w, ctx))
                self._cache[route] = cached
            conditions.extend(cached[1])
        self._dirty.clear()

        if minute != self._last_forget_minute:
            self._last_forget_minute = minute
            for d in detectors:
                d.forget(now)
            self._forget_routes(now)
        for d in detectors:
            conditions.extend(d.evaluate(ctx))

        for cond in conditions:
            if cond.alertname == ERROR_STORM:
                self.storm_seen_ms[cond.route] = now
        return self.lifecycle.update([self._active(c, now) for c in conditions], now)

    def _evaluate_route(self, route: str, w: RouteWindow, ctx: Context) -> list[Condition]:
        policy = self.config.for_route(route)
        out: list[Condition] = []
        for d in self.detectors.values():
            out += d.evaluate_route(route, w, policy.section(d.policy), ctx)
        return out

    def _drop_route(self, route: str) -> None:
        del self.windows[route]
        self._cache.pop(route, None)
        for d in self.detectors.values():
            d.drop_route(route)

    def _forget_routes(self, now: int) -> None:
        """Drop the request-side state of routes silent for the whole hour ring; free their slots."""
        for route in [r for r, w in self.windows.items() if w.last_ms < now - _WINDOW_FORGET_MS]:
            self._drop_route(route)
        keep = set(self.windows)
        for d in self.detectors.values():
            keep.update(d.held_routes())
        self.guard.forget_routes(keep)

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
        for d in self.detectors.values():
            d.repair_clock(wall_ms)
        self.storm_seen_ms = {r: min(t, wall_ms) for r, t in self.storm_seen_ms.items()}
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

    def _active(self, c: Condition, now: int) -> ActiveCondition:
        if c.team is not None:  # a team-level condition: the [defaults] policy
            policy = self.config.defaults
            team = c.team
        else:
            policy = self.config.for_route(c.route)
            w = self.windows.get(c.route)
            team = self.config.team_for(c.route, w.team if w else "")
        inhibited = False
        if c.alertname in INHIBITED_BY_ERROR_STORM:
            seen = self.storm_seen_ms.get(c.route)
            inhibited = seen is not None and now - seen <= policy.section(StormPolicy).inhibit_hold
        return ActiveCondition(
            labels={
                "alertname": c.alertname,
                "route": c.route,
                "model": c.model,
                "team": team,
                "severity": c.severity or policy.severity_of(c.alertname),
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
        """All state as JSON bytes (orjson). Pure; call it as often as the worker commits.

        Each detector's state is under its :attr:`~telemetry.detect.detector.Detector.name`.
        """
        state: dict[str, Any] = {
            "version": SNAPSHOT_VERSION,
            "now_ms": self.now_ms,
            "windows": {route: w.to_state() for route, w in self.windows.items()},
        }
        for name, d in self.detectors.items():
            state[name] = d.to_state()
        state["lifecycle"] = self.lifecycle.to_state()
        state["storm_seen_ms"] = self.storm_seen_ms
        state["guard"] = self.guard.to_state()
        return orjson.dumps(state)

    @classmethod
    def restore(
        cls, data: bytes, routes: RoutesView, env: str = "local", limits: LabelLimits | None = None
    ) -> DetectionEngine:
        """Rebuild an engine from :meth:`snapshot` bytes with the current config.

        Raises ValueError if the bytes are not a snapshot of this version. Latency targets come
        from ``routes``: slow counts already in the windows keep the targets they were counted with.
        A detector without state in the snapshot (added since it was taken) starts fresh.
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
            latency = routes.for_route(route).section(LatencyPolicy)
            engine.windows[route] = RouteWindow.from_state(raw, latency.latency_p95_ms, latency.latency_p99_ms)
        for kind in DETECTORS:
            saved = state.get(kind.name)
            if saved is not None:
                engine.detectors[kind.name] = kind.from_state(saved)
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
            self._drop_route(route)
        for route in sorted(keep):
            self.guard.admit_route(route)
        for d in self.detectors.values():
            for route in sorted(d.held_routes()):
                if self.guard.admit_route(route) != route:
                    d.release_route(route)
