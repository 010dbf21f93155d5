"""The interface every detector implements, and what the engine lends it at an evaluation.

A detector is a class with five class attributes and a few methods (:class:`Detector`); the
engine (:mod:`telemetry.detect.engine`) holds one instance of each class in
:data:`telemetry.detect.registry.DETECTORS` and drives them all the same way:

- **facts**: request facts go into the per-route :class:`~telemetry.detect.window.RouteWindow`
  that every request-side detector reads; verdict facts go to :meth:`Detector.observe_verdicts`;
- **route phase**: :meth:`Detector.evaluate_route` for each route that got facts or whose
  minute changed (the engine caches a route's conditions until then), detectors in registry order;
- **fleet phase**: :meth:`Detector.evaluate` once per evaluation, after every route, for what
  spans routes (quality CUSUMs, team budgets);
- **state**: :meth:`Detector.to_state` / :meth:`Detector.from_state` under the key
  :attr:`Detector.name` of the engine snapshot (a detector missing from an older snapshot starts
  fresh); :meth:`Detector.drop_route` when the engine forgets a silent route's window,
  :meth:`Detector.repair_clock` when a clock saved ahead of wall time is pulled back.

Each detector owns its keys of the routes file: :attr:`Detector.policy` is its
:class:`~telemetry.detect.policy.PolicySection`, and the engine hands it that section of the
route's policy. Adding a detector is one class (in a module of its own) and one entry in
:data:`~telemetry.detect.registry.DETECTORS`; its alert name, default severity, default
``keep_firing_for`` and its keys are then known to the routes file, the engine and the snapshot.

Explicit subclasses of :class:`Detector` inherit the no-op defaults of the optional hooks;
:class:`PerRouteDetector` adds those of a detector whose state is one entry per route.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition
from telemetry.detect.facts import VerdictFact
from telemetry.detect.inputs import StoredInputs
from telemetry.detect.policy import PolicySection, RoutesView
from telemetry.detect.window import RouteWindow


@dataclass(frozen=True, slots=True)
class PassRates:
    """Pass rates of a route's primary evaluator, for cost per correct answer."""

    baseline: float
    passed_1h: int
    judged_1h: int
    passed_6h: int
    judged_6h: int


class QualityView(Protocol):
    """What request-side detectors may ask the quality detector (read-only)."""

    def model_pass_rate(self, route: str, model: str) -> tuple[float | None, int, str]:
        """``(pass rate or None, judged, evaluator)`` of a served model on a route."""
        ...

    def pass_rates(self, route: str, now_ms: int) -> PassRates | None:
        """The route's primary evaluator's pass rates, None unless its baseline is warm."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """What a detector may read at one evaluation besides its own state and policy section.

    ``now_ms`` is the event-time watermark; ``routes`` the parsed routes file; ``windows`` the
    per-route request aggregates (read-only for detectors); ``quality`` the quality detector's
    lookups.
    """

    now_ms: int
    routes: RoutesView
    windows: Mapping[str, RouteWindow]
    quality: QualityView
    inputs: StoredInputs = field(default_factory=StoredInputs)
    """What the detection owner read from storage (gates, prompt versions, ...): see
    :mod:`telemetry.detect.inputs`."""


class Detector(Protocol):
    """One detector. See the module docstring for when the engine calls what.

    Class attributes: :attr:`name` (stable: the key of its state in the engine snapshot; never
    rename it), :attr:`alertname` (the alert it raises), :attr:`severity` and
    :attr:`keep_firing_ms` (defaults of the routes file's ``severity`` and ``keep_firing_for``
    tables for that alert) and :attr:`policy` (its section of the route policy).

    Detectors are pure: no I/O, no clock, no logging; event time comes in through the context.
    """

    name: ClassVar[str]
    alertname: ClassVar[str]
    severity: ClassVar[Severity]
    keep_firing_ms: ClassVar[int]
    policy: ClassVar[type[PolicySection]]

    def observe_verdicts(self, facts: Sequence[VerdictFact], policy_of: Callable[[str], Any]) -> None:
        """Take verdict facts in the given order; ``policy_of(route)`` is that route's section
        :attr:`policy`. Default: ignore them."""
        return None

    def evaluate_route(self, route: str, window: RouteWindow, policy: Any, ctx: Context) -> list[Condition]:
        """Conditions of ``route`` that hold now; ``policy`` is the route's section :attr:`policy`.

        Called when the route got facts or its minute changed; until then the engine reuses the
        result. Default: none.
        """
        return []

    def evaluate(self, ctx: Context) -> list[Condition]:
        """Conditions that hold now beyond single route windows, once per evaluation after the
        route phase. Default: none."""
        return []

    def forget(self, now_ms: int) -> None:
        """Once per event-time minute: drop state that went stale by itself. Default: nothing."""
        return None

    def drop_route(self, route: str) -> None:
        """The engine forgot ``route``'s window (silent for the whole hour ring, or beyond the
        route limit): drop the state that goes with it. Default: nothing."""
        return None

    def held_routes(self) -> Collection[str]:
        """Routes this detector keeps state for whether or not they have a window (their label
        slots stay admitted). Default: none."""
        return ()

    def release_route(self, route: str) -> None:
        """``route`` got no label slot (a state saved before labels were bounded): drop what
        :meth:`held_routes` keeps for it. Default: nothing."""
        return None

    def repair_clock(self, wall_ms: int) -> None:
        """The engine's clock was saved ahead of wall time and is pulled back to ``wall_ms``:
        the windows restart from the next traffic; drop or clamp the state dated after it."""
        ...

    def to_state(self) -> Any:
        """All state as plain JSON-able data (the snapshot's ``name`` key)."""
        ...

    @classmethod
    def from_state(cls, data: Any) -> Self:
        """The detector back from :meth:`to_state` data."""
        ...


class PerRouteDetector(Detector):
    """Base of a request-side detector whose state is one entry per route in ``states``: it
    goes with the route's window and restarts with the windows."""

    states: dict[str, Any]

    def drop_route(self, route: str) -> None:
        self.states.pop(route, None)

    def repair_clock(self, wall_ms: int) -> None:
        self.states.clear()
