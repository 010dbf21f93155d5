"""Consuming for the worker's three stages: group timeouts, batch filling, commits that survive
a rebalance. One place, so the stages cannot drift apart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from telemetry.retry import RetryPolicy
from telemetry.settings import Settings
from telemetry.worker.kafka_errors import is_transient_kafka_error

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[ConsumerRecord]]

_COMMIT_RETRY = RetryPolicy(is_transient=is_transient_kafka_error)
"""Only transient errors are retried: CommitFailedError, authorization and the like would fail forever."""


def group_options(settings: Settings) -> dict[str, object]:
    """Session and heartbeat of every stage's group: a dead worker's partitions move after
    ``TELEMETRY_KAFKA_SESSION_TIMEOUT``."""
    session_ms = int(settings.kafka_session_timeout * 1000)
    return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": max(1000, session_ms // 4)}


async def fill_batch(consumer: AIOKafkaConsumer, settings: Settings, stopping: asyncio.Event, *, max_records: int,
                     weight: Callable[[ConsumerRecord], int] = lambda r: 1) -> Batch:  # fmt: skip
    """Records weighing up to ``batch_size`` in all, waiting at most ``batch_seconds`` for them
    (and returning as soon as a fetch comes back empty after some arrived)."""
    deadline = time.monotonic() + settings.batch_seconds
    batch: Batch = {}
    weighed = 0
    while weighed < settings.batch_size and not stopping.is_set():
        left_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
        fetched = await consumer.getmany(timeout_ms=left_ms, max_records=max(1, min(max_records, settings.batch_size - weighed)))
        for tp, records in fetched.items():
            batch.setdefault(tp, []).extend(records)
            weighed += sum(weight(r) for r in records)
        if left_ms == 0 or (not fetched and batch):
            break
    return batch


async def commit_assigned(consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
    """Commit the offsets of the partitions still assigned. A rebalance may have revoked some
    while the batch was processed: their new owner reads them again (committing them would
    raise IllegalStateError forever), and the stages' idempotence makes that harmless."""
    assigned = consumer.assignment()
    kept = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if not kept:
        return
    try:
        await _COMMIT_RETRY.run("kafka commit", lambda: consumer.commit(kept))
    except (CommitFailedError, IllegalStateError):
        log.warning("commit failed after a rebalance; the new owner reads the batch again")
