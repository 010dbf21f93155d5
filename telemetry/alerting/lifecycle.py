"""Alert lifecycle: pending -> firing -> resolved, with ``for``, ``keep_firing_for``, repeats.

Pure and deterministic: time is the event-time ``now_ms`` passed in; nothing here reads a clock,
logs or does I/O. The detectors say which conditions hold *now* (each already with its own
separate fire and clear levels); this module turns that into notifications:

- a condition seen for the first time is **pending**; it **fires** once it has held for its
  ``for_ms`` (0 = on the same evaluation) — notification ``sequence`` 1;
- a firing alert is not re-sent while it holds, except every ``repeat_interval_ms`` (a repeat,
  ``sequence`` + 1, with fresh evidence);
- once its condition is absent for ``keep_firing_for_ms``, it **resolves**: one notification,
  sent once, and the alert is forgotten (a new episode starts at ``sequence`` 1);
- a pending alert whose condition goes away is dropped silently;
- an *inhibited* condition (a symptom of an error storm on its route) holds its state but sends
  nothing: a pending one does not fire, a firing one is not repeated. Its resolution is sent.

Identity is the fingerprint of the labels (:func:`telemetry.contracts.alert.fingerprint`). The
whole state is a plain dict (:meth:`AlertLifecycle.to_state`) so a restarted worker neither
re-pages an alert already firing nor forgets to resolve it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from telemetry.contracts._time import ms_to_datetime
from telemetry.contracts.alert import ALERT_SCHEMA_VERSION, Alert, fingerprint

EvidenceValue = float | int | str | None


@dataclass(frozen=True, slots=True)
class ActiveCondition:
    """A condition that holds at this evaluation, with its labels and notification policy.

    ``labels`` are the full alert labels (alertname, route, model, team, severity, env);
    ``decided_at_ms`` is the event time of the event that decided it.
    """

    labels: dict[str, str]
    annotations: dict[str, str]
    evidence: dict[str, EvidenceValue]
    decided_at_ms: int
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    repeat_interval_ms: int = 4 * 3_600_000
    inhibited: bool = False


@dataclass(slots=True)
class AlertState:
    """What the lifecycle remembers of one alert (serialisable with :func:`dataclasses.asdict`)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    evidence: dict[str, EvidenceValue]
    status: str  # "pending" | "firing"
    active_since_ms: int
    last_active_ms: int
    decided_at_ms: int
    keep_firing_for_ms: int
    fired_at_ms: int | None = None
    last_sent_ms: int | None = None
    sequence: int = 0


@dataclass
class AlertLifecycle:
    """The state machine of every alert of one engine. Not thread-safe; one owner."""

    states: dict[str, AlertState] = field(default_factory=dict)

    def update(self, conditions: Iterable[ActiveCondition], now_ms: int) -> list[Alert]:
        """Advance every alert to ``now_ms`` given the conditions holding now.

        Returns the notifications to send now, firing ones first in condition order, then
        resolutions. Two conditions with one fingerprint: the first wins. Never raises on data.
        """
        out: list[Alert] = []
        seen: set[str] = set()
        for cond in conditions:
            fp = fingerprint(cond.labels)
            if fp in seen:
                continue
            seen.add(fp)
            state = self.states.get(fp)
            if state is None:
                state = AlertState(
                    labels=dict(cond.labels),
                    annotations=dict(cond.annotations),
                    evidence=dict(cond.evidence),
                    status="pending",
                    active_since_ms=now_ms,
                    last_active_ms=now_ms,
                    decided_at_ms=cond.decided_at_ms,
                    keep_firing_for_ms=cond.keep_firing_for_ms,
                )
                self.states[fp] = state
            state.labels = dict(cond.labels)
            state.annotations = dict(cond.annotations)
            state.evidence = dict(cond.evidence)
            state.last_active_ms = now_ms
            state.keep_firing_for_ms = cond.keep_firing_for_ms
            if cond.inhibited:
                continue
            if state.status == "pending":
                if now_ms - state.active_since_ms >= cond.for_ms:
                    state.status = "firing"
                    state.fired_at_ms = now_ms
                    state.decided_at_ms = cond.decided_at_ms
                    out.append(self._send(fp, state, now_ms, "firing", cond.decided_at_ms))
            elif state.last_sent_ms is None or now_ms - state.last_sent_ms >= cond.repeat_interval_ms:
                out.append(self._send(fp, state, now_ms, "firing", now_ms))
        for fp in [fp for fp in self.states if fp not in seen]:
            state = self.states[fp]
            if state.status == "pending":
                del self.states[fp]
            elif now_ms - state.last_active_ms >= state.keep_firing_for_ms:
                out.append(self._send(fp, state, now_ms, "resolved", now_ms))
                del self.states[fp]
        return out

    def is_firing(self, fp: str) -> bool:
        """True when the alert with fingerprint ``fp`` is firing (sent, not yet resolved)."""
        state = self.states.get(fp)
        return state is not None and state.status == "firing"

    def firing_labels(self) -> list[dict[str, str]]:
        """Labels of every firing alert."""
        return [dict(s.labels) for s in self.states.values() if s.status == "firing"]

    @staticmethod
    def _send(fp: str, state: AlertState, now_ms: int, status: str, decided_ms: int) -> Alert:
        state.sequence += 1
        state.last_sent_ms = now_ms
        fired = state.fired_at_ms if state.fired_at_ms is not None else now_ms
        return Alert(
            schema_version=ALERT_SCHEMA_VERSION,
            fingerprint=fp,
            status="resolved" if status == "resolved" else "firing",
            labels=dict(state.labels),
            annotations=dict(state.annotations),
            evidence=dict(state.evidence),
            starts_at=ms_to_datetime(fired),
            ends_at=ms_to_datetime(now_ms) if status == "resolved" else None,
            decided_at=ms_to_datetime(decided_ms),
            sequence=state.sequence,
        )

    # --- persistence ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {fp: asdict(s) for fp, s in self.states.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> AlertLifecycle:
        """Inverse of :meth:`to_state`."""
        return cls(states={fp: AlertState(**raw) for fp, raw in data.items()})
