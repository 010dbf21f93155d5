"""The order in which one batch becomes durable. Written once, here; every shell uses it.

A batch of the join stage is made durable in this order:

1. **dead letters**: published to ``<prefix>deadletter``, then recorded in ``dead_letters``
   (those not recorded yet: a redelivered batch does not repeat them);
2. **rows**: ``requests``, ``verdicts`` and ``verdicts_pending`` (each insert carries a
   deduplication token: a retried insert is stored once);
3. **facts**: the stored events' facts to ``<prefix>internal.facts``, for the detection owner;
4. **offsets**: the batch's input offsets are committed.

Why this order: offsets go last, so a crash anywhere before them redelivers the batch, and
every earlier effect recognises the repeat (dead letters by their original coordinates, rows
by the join, which now finds the requests and verdicts stored). Facts come after the rows,
so a redelivered batch, whose events the join now calls duplicates, produces no facts twice.
The one gap, said in the README: a crash after the rows and before the facts (a few
milliseconds) withholds that batch from the detectors; the tables stay exact.

The detection owner's order (``telemetry.worker.alerting``) is: facts observed, then alerts
(topic, ``alerts`` table, webhook outbox, each skipping what it already holds), then detector
state with the facts position in one insert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import TopicPartition

from telemetry.ingest.deadletter import DeadLetter
from telemetry.ingest.join import JoinOutcome


@dataclass(slots=True)
class PreparedBatch:
    """A decoded and joined batch, not durable yet."""

    outcomes: list[JoinOutcome] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class BatchEffects(Protocol):
    """The ports a batch is made durable through (the pipeline and the consumer implement them)."""

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...
    async def rows(self, outcome: JoinOutcome) -> None: ...
    async def facts(self, outcomes: Sequence[JoinOutcome]) -> None: ...
    async def offsets(self, offsets: Mapping[TopicPartition, int]) -> None: ...


async def make_durable(batch: PreparedBatch, effects: BatchEffects) -> None:
    """Apply ``batch``'s effects in the one order (module docstring). Each port retries
    infrastructure failures itself; an exception escaping here means the batch is not durable
    and its offsets were not committed."""
    if batch.dead:
        await effects.dead_letters(batch.dead)
    for outcome in batch.outcomes:
        await effects.rows(outcome)
    await effects.facts(batch.outcomes)
    if batch.offsets:
        await effects.offsets(batch.offsets)
