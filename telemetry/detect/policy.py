"""Route policy as the detectors see it: each detector's section of keys, and read-only views.

Every detector owns a :class:`PolicySection`: a frozen pydantic model whose field names are
its keys of the routes file (``cost_fire_ratio``, ``latency_p95_ms``, ...) with their defaults
and bounds, and whose validators check the keys against each other. :mod:`telemetry.routes`
reads one flat table per route, gives every registered detector its section
(:data:`telemetry.detect.registry.DETECTORS`) and keeps the keys that are its own (owner team,
channels, severities, ``for``, ``keep_firing_for``, ``repeat_interval``).

The detection engine reads the parsed configuration through :class:`RoutesView` and
:class:`PolicyView`, which :class:`telemetry.routes.RoutesConfig` and
:class:`telemetry.routes.RoutePolicy` satisfy: the dependency goes one way,
``telemetry.routes`` -> ``telemetry.detect``; nothing in the detection core imports the routes module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Protocol, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
_UNITS = {"ms": 1, "s": 1000, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration_ms(value: object) -> int:
    """``"90s"``, ``"15m"``, ``"4h"``, ``"1h30m"``, ``"90d"`` or a number of seconds -> milliseconds.

    Raises ValueError on anything else (negative numbers included).
    """
    if isinstance(value, bool):
        raise ValueError("a duration is text like '15m' or a number of seconds")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return int(round(value * 1000))
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text in ("0", ""):
            return 0
        pos, total = 0, 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos == len(text) and pos > 0:
            return int(round(total))
    raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '15m', '4h', '7d')")


Duration = Annotated[int, BeforeValidator(parse_duration_ms), Field(ge=0)]
"""A duration in the file (``"15m"`` or seconds), held in milliseconds."""


class PolicySection(BaseModel):
    """Base of a detector's section of the route policy. Frozen; unknown keys are errors.

    Field names are keys of the routes file, the same in ``[defaults]`` and ``[routes."<r>"]``;
    they must not clash with another section's or with :mod:`telemetry.routes`' own keys.
    Durations are milliseconds here (``"15m"`` in the file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def check_windows(self, *names: str) -> None:
        """Raise ValueError unless each named duration is whole minutes between 1m and 60m (a
        window of the per-route minute ring)."""
        for name in names:
            ms = getattr(self, name)
            if ms % MINUTE_MS or not MINUTE_MS <= ms <= 60 * MINUTE_MS:
                raise ValueError(f"{name} must be whole minutes between 1m and 60m")


S = TypeVar("S", bound=PolicySection)


class PolicyView(Protocol):
    """One route's policy, as the engine reads it (:class:`telemetry.routes.RoutePolicy`)."""

    @property
    def repeat_interval(self) -> int: ...

    def section(self, kind: type[S]) -> S:
        """This route's section ``kind`` (a detector's :attr:`~telemetry.detect.detector.Detector.policy`)."""
        ...

    def severity_of(self, alertname: str) -> str: ...

    def for_ms(self, alertname: str) -> int: ...

    def keep_firing_ms(self, alertname: str) -> int: ...


class TeamView(Protocol):
    """``[teams.<name>]`` as the detectors read it."""

    @property
    def monthly_budget_usd(self) -> float | None: ...


class RoutesView(Protocol):
    """The parsed routes file, as the engine reads it (:class:`telemetry.routes.RoutesConfig`)."""

    @property
    def defaults(self) -> PolicyView: ...

    @property
    def routes(self) -> Mapping[str, PolicyView]: ...

    @property
    def teams(self) -> Mapping[str, TeamView]: ...

    def for_route(self, route: str) -> PolicyView: ...

    def team_for(self, route: str, observed: str = "") -> str: ...
