"""Did the alerts catch the seeded incidents? Pure: incident windows and alerts in, verdicts out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from telemetry.simulate.scenario import IncidentWindow

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class FiredAlert:
    """A first firing (sequence 1), in simulated time."""

    alertname: str
    route: str
    model: str
    starts_at_ms: int


@dataclass(frozen=True, slots=True)
class IncidentResult:
    incident: IncidentWindow
    caught_by: FiredAlert | None

    @property
    def caught(self) -> bool:
        return self.caught_by is not None

    @property
    def delay_ms(self) -> int | None:
        return None if self.caught_by is None else max(0, self.caught_by.starts_at_ms - self.incident.start_ms)


@dataclass(frozen=True, slots=True)
class Scorecard:
    incidents: list[IncidentResult]
    unexpected: list[FiredAlert]

    @property
    def all_caught(self) -> bool:
        return all(r.caught for r in self.incidents)


def score(incidents: Sequence[IncidentWindow], alerts: Sequence[FiredAlert], *,
          grace_ms: int = 60 * MINUTE_MS) -> Scorecard:  # fmt: skip
    """Match each incident to the earliest expected alert on its route that started while it
    was active (or within ``grace_ms`` after it ended). Alerts matched to no incident, on its
    route during its window, are unexpected (false alarms)."""
    results: list[IncidentResult] = []
    explained: set[int] = set()
    for window in incidents:
        candidates = [
            (i, a) for i, a in enumerate(alerts)
            if a.route == window.route and window.start_ms <= a.starts_at_ms <= window.end_ms + grace_ms
        ]  # fmt: skip
        explained.update(i for i, _ in candidates)  # symptoms of the incident are not false alarms
        matching = sorted((a for _, a in candidates if a.alertname in window.expected_alertnames),
                          key=lambda a: a.starts_at_ms)  # fmt: skip
        results.append(IncidentResult(window, matching[0] if matching else None))
    unexpected = [a for i, a in enumerate(alerts) if i not in explained]
    return Scorecard(results, unexpected)
