"""Bounded cardinality of the detectors' state, as metrics systems bound their series.

A producer bug (a request id in the route name) or a model id with a date suffix per deploy
can bring tens of thousands of distinct labels. The tables keep every label; the detectors keep
state for at most ``max_routes`` routes, ``max_models_per_route`` models (requested or served)
and evaluators per route, and ``max_teams`` teams. Labels are admitted first come, first
served; the facts of a label beyond its limit are counted under :data:`OVERFLOW`, so their
traffic still counts (an ``__overflow__`` route can alert like any other) while memory, the
saved state and the per-batch work stay bounded. A route forgotten by the engine (no traffic for
its whole history) frees its slot.

Pure: no I/O, no clock, no logging. ``overflowed`` counts facts mapped per limit, for the
worker's counters and its rate-limited warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from telemetry.detect.facts import RequestFact, VerdictFact

OVERFLOW = "__overflow__"


@dataclass(frozen=True, slots=True)
class LabelLimits:
    """The most distinct labels the detectors keep state for."""

    max_routes: int = 2000
    max_models_per_route: int = 20
    max_teams: int = 500


@dataclass(slots=True)
class CardinalityGuard:
    """Admits labels up to :class:`LabelLimits`; maps the rest to :data:`OVERFLOW`."""

    limits: LabelLimits = field(default_factory=LabelLimits)
    routes: dict[str, set[str]] = field(default_factory=dict)  # admitted route -> admitted models
    evaluators: dict[str, set[str]] = field(default_factory=dict)  # admitted route -> admitted evaluators
    teams: set[str] = field(default_factory=set)
    overflowed: Counter[str] = field(default_factory=Counter)

    def request(self, f: RequestFact) -> RequestFact:
        """``f``, or a copy with the labels beyond the limits replaced by ``__overflow__``."""
        labels = self.routes.get(f.route)
        if labels is not None and f.served_model in labels and f.model in labels and (not f.team or f.team in self.teams):
            return f
        route = self._route(f.route)
        labels = self.routes[route]
        model = self._label(labels, f.model, "models")
        served = model if f.served_model == f.model else self._label(labels, f.served_model, "models")
        team = self._team(f.team) if f.team else f.team
        if route is f.route and model is f.model and served is f.served_model and team is f.team:
            return f
        return replace(f, route=route, model=model, served_model=served, team=team)

    def verdict(self, f: VerdictFact) -> VerdictFact:
        """``f`` with its route, model and evaluator bounded like a request's."""
        labels = self.routes.get(f.route)
        if labels is not None and f.model in labels and f.evaluator in self.evaluators[f.route]:
            return f
        route = self._route(f.route)
        model = self._label(self.routes[route], f.model, "models")
        evaluator = self._label(self.evaluators[route], f.evaluator, "evaluators")
        if route is f.route and model is f.model and evaluator is f.evaluator:
            return f
        return replace(f, route=route, model=model, evaluator=evaluator)

    def admit_route(self, route: str) -> str:
        """``route`` if it has (or gets) a slot, else :data:`OVERFLOW` (counted)."""
        return self._route(route)

    def forget_routes(self, keep: set[str]) -> None:
        """Free the slots of admitted routes not in ``keep`` (the engine forgot them)."""
        for route in [r for r in self.routes if r not in keep and r != OVERFLOW]:
            del self.routes[route]
            del self.evaluators[route]

    # --- internals ------------------------------------------------------------------------
    def _route(self, route: str) -> str:
        if route in self.routes:
            return route
        if len(self.routes) - (OVERFLOW in self.routes) < self.limits.max_routes:
            self.routes[route] = set()
            self.evaluators[route] = set()
            return route
        self.overflowed["routes"] += 1
        self.routes.setdefault(OVERFLOW, set())
        self.evaluators.setdefault(OVERFLOW, set())
        return OVERFLOW

    def _label(self, labels: set[str], value: str, kind: str) -> str:
        if value in labels:
            return value
        if len(labels) - (OVERFLOW in labels) < self.limits.max_models_per_route:
            labels.add(value)
            return value
        self.overflowed[kind] += 1
        labels.add(OVERFLOW)
        return OVERFLOW

    def _team(self, team: str) -> str:
        if team in self.teams:
            return team
        if len(self.teams) - (OVERFLOW in self.teams) < self.limits.max_teams:
            self.teams.add(team)
            return team
        self.overflowed["teams"] += 1
        self.teams.add(OVERFLOW)
        return OVERFLOW

    # --- persistence ----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "routes": {r: sorted(labels) for r, labels in self.routes.items()},
            "evaluators": {r: sorted(labels) for r, labels in self.evaluators.items()},
            "teams": sorted(self.teams),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], limits: LabelLimits) -> CardinalityGuard:
        guard = cls(limits)
        guard.routes = {str(r): {str(x) for x in labels} for r, labels in data.get("routes", {}).items()}
        saved = data.get("evaluators", {})
        guard.evaluators = {r: {str(x) for x in saved.get(r, [])} for r in guard.routes}
        guard.teams = {str(t) for t in data.get("teams", [])}
        return guard
