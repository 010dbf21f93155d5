"""A tier-up gate and its state machine. Pure: every transition takes the time as an argument.

States: ``open`` -> ``approved`` | ``rejected``; ``approved`` -> ``applied`` (the route's traffic
moved to the proposed model) -> ``postmortem_due`` (30 days later) -> ``closed`` (postmortem
written). A transition not allowed from the current state raises :class:`GateError` with what
to do instead; nothing else changes a gate.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any

from telemetry.errors import TelemetryError

POSTMORTEM_AFTER_MS = 30 * 86_400_000
"""A gate's postmortem falls due this long after it was applied."""

STATES = ("open", "approved", "rejected", "applied", "postmortem_due", "closed")
FINAL = frozenset({"rejected", "closed"})


class GateError(TelemetryError):
    """A gate operation that is not allowed (wrong state, the author reviewing, unknown id)."""


def new_id() -> str:
    return f"gate-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class GateRecord:
    """One version of a gate (a row of ``tier_gates``)."""

    id: str
    route: str
    current_model: str
    proposed_model: str
    hypothesis: str
    author: str
    opened_at_ms: int
    version: int = 1
    state: str = "open"
    team: str = ""
    direction: str = "up"
    proposed_provider: str = ""
    reviewer: str = ""
    review_note: str = ""
    decided_at_ms: int | None = None
    applied_at_ms: int | None = None
    postmortem_due_at_ms: int | None = None
    closed_at_ms: int | None = None
    projected_monthly_usd: float | None = None
    realized_monthly_usd: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: str = ""
    updated_at_ms: int = 0

    def _next(self, now_ms: int, **changes: Any) -> GateRecord:
        return dataclasses.replace(self, version=self.version + 1, updated_at_ms=now_ms, **changes)

    def _require(self, *states: str, action: str) -> None:
        if self.state not in states:
            raise GateError(f"{self.id} is {self.state}: only a gate that is {' or '.join(states)} can be {action}")


def open_gate(*, route: str, current_model: str, proposed_model: str, hypothesis: str, author: str, now_ms: int,
              evidence: dict[str, Any], team: str = "", direction: str = "up", proposed_provider: str = "",
              projected_monthly_usd: float | None = None, gate_id: str | None = None) -> GateRecord:  # fmt: skip
    """A new gate in state ``open``. Raises GateError on an empty hypothesis or author, or when
    the proposed model is the current one."""
    if not hypothesis.strip():
        raise GateError("a gate needs a hypothesis: what should the bigger model fix, and how will you know?")
    if not author.strip():
        raise GateError("a gate needs an author (--author)")
    if proposed_model == current_model:
        raise GateError(f"{route} is already served by {current_model}")
    return GateRecord(id=gate_id or new_id(), route=route, current_model=current_model, proposed_model=proposed_model,
                      hypothesis=hypothesis.strip(), author=author.strip(), opened_at_ms=now_ms, team=team,
                      direction=direction, proposed_provider=proposed_provider,
                      projected_monthly_usd=projected_monthly_usd, evidence=evidence, updated_at_ms=now_ms)  # fmt: skip


def _reviewer(gate: GateRecord, reviewer: str) -> str:
    name = reviewer.strip()
    if not name:
        raise GateError("a review needs a reviewer (--reviewer)")
    if name.casefold() == gate.author.casefold():
        raise GateError(f"{gate.id} was opened by {gate.author}: the reviewer must be someone else")
    return name


def approve(gate: GateRecord, *, reviewer: str, now_ms: int, note: str = "") -> GateRecord:
    gate._require("open", action="approved")
    return gate._next(now_ms, state="approved", reviewer=_reviewer(gate, reviewer), review_note=note.strip(),
                      decided_at_ms=now_ms)  # fmt: skip


def reject(gate: GateRecord, *, reviewer: str, now_ms: int, note: str = "") -> GateRecord:
    gate._require("open", action="rejected")
    return gate._next(now_ms, state="rejected", reviewer=_reviewer(gate, reviewer), review_note=note.strip(),
                      decided_at_ms=now_ms)  # fmt: skip


def mark_applied(gate: GateRecord, *, at_ms: int, now_ms: int) -> GateRecord:
    """The route's traffic moved to the proposed model at event time ``at_ms``."""
    gate._require("approved", action="applied")
    return gate._next(now_ms, state="applied", applied_at_ms=at_ms, postmortem_due_at_ms=at_ms + POSTMORTEM_AFTER_MS)


def mark_postmortem_due(gate: GateRecord, *, figures: dict[str, Any], now_ms: int) -> GateRecord:
    """Thirty days after it was applied: the realized figures are attached for the postmortem."""
    gate._require("applied", action="due for its postmortem")
    realized = figures.get("realized_monthly_usd")
    return gate._next(now_ms, state="postmortem_due", evidence={**gate.evidence, "postmortem": figures},
                      realized_monthly_usd=realized if isinstance(realized, int | float) else None)  # fmt: skip


def close(gate: GateRecord, *, findings: str, now_ms: int) -> GateRecord:
    """The postmortem: what the tier-up bought, against its hypothesis."""
    if not findings.strip():
        raise GateError("a postmortem needs findings (--findings)")
    gate._require("postmortem_due", action="closed by a postmortem")
    return gate._next(now_ms, state="closed", findings=findings.strip(), closed_at_ms=now_ms)
