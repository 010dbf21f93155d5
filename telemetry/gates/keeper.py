"""The transitions the worker decides for gates from the traffic. Pure.

- An ``approved`` gate is **applied** once the proposed model serves most of the route's recent
  traffic (the last 15 minutes of event time, as TierSwitch's recent window); ``applied_at`` is the first request it served on the route
  (within the lookback of the traffic given). A gate opened after the switch (a paper trail
  written late) is applied at once.
- An ``applied`` gate's postmortem **falls due** 30 days after it was applied (event time).

A served model matches the proposed one when equal, or when it is the proposed name with a
version suffix (:func:`telemetry.detect.inputs.serves`: ``gpt-4o-2024-08-06`` serves ``gpt-4o``,
``gpt-4o-mini`` does not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from telemetry.detect.inputs import serves
from telemetry.gates.model import GateRecord


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model serving a route: its recent requests, and its first request (event time)."""

    recent_requests: int
    first_ms: int


def to_apply(gates: Sequence[GateRecord], traffic: Mapping[str, Mapping[str, ServedModel]]) -> list[tuple[GateRecord, int]]:
    """``(gate, applied_at_ms)`` of approved gates whose proposed model now serves most of the route."""
    out = []
    for g in gates:
        if g.state != "approved":
            continue
        models = traffic.get(g.route, {})
        total = sum(m.recent_requests for m in models.values())
        matching = [m for name, m in models.items() if serves(name, g.proposed_model)]
        if total > 0 and 2 * sum(m.recent_requests for m in matching) > total:
            out.append((g, min(m.first_ms for m in matching)))
    return out


def due_for_postmortem(gates: Sequence[GateRecord], now_ms: int) -> list[GateRecord]:
    """Applied gates whose postmortem date has come (event time ``now_ms``)."""
    return [g for g in gates if g.state == "applied" and g.postmortem_due_at_ms is not None and g.postmortem_due_at_ms <= now_ms]
