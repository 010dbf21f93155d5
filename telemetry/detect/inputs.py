"""What the detectors read from storage besides the facts: the inputs. Pure data.

Some decisions rest on records the facts do not carry: the tier-up gates reviewers wrote,
evaluator agreement measured over stored verdicts, canary arms' running totals, a route's
prompt-version history. The detection owner reads them from ClickHouse every few seconds of
wall time (``telemetry.worker.stored_inputs``) and hands them to the engine
(:meth:`telemetry.detect.engine.DetectionEngine.set_inputs`); detectors read them through
:attr:`telemetry.detect.detector.Context.inputs`. They are inputs, not state: never saved in
the snapshot, refreshed at take-over.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GATE_STATES = ("open", "approved", "rejected", "applied", "postmortem_due", "closed")
"""A gate's states, in the order a gate moves through them (``rejected`` ends it)."""

APPROVED_STATES = frozenset({"approved", "applied", "postmortem_due", "closed"})
"""States of a gate that was approved (the tier-up it names is decided, not reflexive)."""


_VERSION_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|v\d+(?:\.\d+)*)")


def serves(served: str, proposed: str) -> bool:
    """Whether a served model is the proposed one: the same name, or the name with a version
    suffix (``gpt-4o-2024-08-06`` and ``gpt-4o-latest`` serve ``gpt-4o``; ``gpt-4o-mini`` does not)."""
    if served == proposed:
        return True
    return served.startswith(proposed) and _VERSION_SUFFIX.fullmatch(served[len(proposed):]) is not None


@dataclass(frozen=True, slots=True)
class Gate:
    """One tier-up gate as the detectors see it (the current version of its ``tier_gates`` row)."""

    id: str
    route: str
    current_model: str
    proposed_model: str
    state: str
    direction: str = "up"
    opened_at_ms: int = 0
    decided_at_ms: int | None = None
    applied_at_ms: int | None = None
    postmortem_due_at_ms: int | None = None
    projected_monthly_usd: float | None = None
    projected_cost_per_request: float | None = None
    realized_monthly_usd: float | None = None
    postmortem: Mapping[str, Any] = field(default_factory=dict)
    """Figures computed when the postmortem fell due (realized cost, pass rate and cost per
    correct answer before and after)."""

    @property
    def approved(self) -> bool:
        return self.state in APPROVED_STATES


@dataclass(frozen=True, slots=True)
class PromptVersion:
    """A prompt version a route started serving: first seen at ``first_ms`` (event time)."""

    version: str
    first_ms: int
    requests: int


@dataclass(frozen=True, slots=True)
class StoredInputs:
    """Everything the detectors read from storage, as of ``as_of_ms`` (event time)."""

    as_of_ms: int = 0
    gates: tuple[Gate, ...] = ()
    prompt_versions: Mapping[str, tuple[PromptVersion, ...]] = field(default_factory=dict)
    """Per route, the prompt versions it served recently, oldest first."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Inputs of other detectors, by the detector's name (each documents its own)."""

    def gates_of(self, route: str) -> list[Gate]:
        return [g for g in self.gates if g.route == route]

    def gate_for(self, route: str, model: str) -> Gate | None:
        """The newest approved gate that moves ``route`` to ``model``, if any."""
        found = [g for g in self.gates if g.route == route and serves(model, g.proposed_model) and g.approved]
        return max(found, key=lambda g: g.opened_at_ms) if found else None

    def prompt_change_near(self, route: str, at_ms: int, within_ms: int) -> PromptVersion | None:
        """The prompt version ``route`` started serving closest to ``at_ms`` within ``within_ms``
        (before or after), if any: a change of prompt near a change point is its likely cause."""
        versions = self.prompt_versions.get(route, ())
        near = [v for i, v in enumerate(versions) if i > 0 and abs(v.first_ms - at_ms) <= within_ms]
        return min(near, key=lambda v: abs(v.first_ms - at_ms)) if near else None


PROMPT_NEAR_MS = 2 * 3_600_000
"""A prompt version first served this close to a change point is named in the alert's evidence."""


def prompt_attribution(inputs: StoredInputs, route: str, at_ms: int, within_ms: int = PROMPT_NEAR_MS) -> tuple[dict[str, Any], str]:
    """Evidence (``prompt_version_change``, ``prompt_version_changed_at``, ``prompt_version_previous``)
    and a sentence naming the prompt version ``route`` started serving near ``at_ms``, if any."""
    near = inputs.prompt_change_near(route, at_ms, within_ms)
    if near is None:
        return {"prompt_version_change": None, "prompt_version_changed_at": None, "prompt_version_previous": None}, ""
    versions = inputs.prompt_versions.get(route, ())
    index = versions.index(near)
    previous = versions[index - 1].version if index > 0 else None
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(near.first_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = (f" Prompt version {near.version} started serving at {when} (after {previous or 'another'}), "
            f"{abs(near.first_ms - at_ms) / 60_000:.0f} min from the change: a likely cause.")  # fmt: skip
    return {"prompt_version_change": near.version, "prompt_version_changed_at": when, "prompt_version_previous": previous}, text
