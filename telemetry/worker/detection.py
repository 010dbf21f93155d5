"""Stage 3 of the worker: the detection owner. One worker at a time runs the detectors over the
facts of the whole group.

Every worker consumes ``<prefix>internal.facts`` (one partition) in the group
``<TELEMETRY_CONSUMER_GROUP>.detect``; Kafka gives the partition to one member, which takes
detection over (:meth:`AlertingObserver.take_over`: the previous owner's state, event clock
and facts position) and seeks to that position; the others stand by. When the owner stops or
dies, the group gives the partition to another worker within ``TELEMETRY_KAFKA_SESSION_TIMEOUT``
(at once on a clean stop: the owner hands its state over on revocation).

The facts position saved with the state is the source of truth (the group's committed offset
is informational, for lag monitoring): state and position are saved in one insert, so the next
owner observes every facts record exactly once after the last save.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from telemetry.detect import factlog
from telemetry.retry import RetryPolicy
from telemetry.settings import Settings
from telemetry.worker.alerting import AlertingObserver
from telemetry.worker.consumer import MAX_POLL_INTERVAL_MS
from telemetry.worker.kafka_in import group_options
from telemetry.worker.pipeline import die

log = logging.getLogger(__name__)


class _Handover(ConsumerRebalanceListener):
    def __init__(self, stage: DetectionOwner) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        try:
            async with self.stage.busy:
                await self.stage.observer.hand_over()
        except Exception as exc:  # aiokafka would log and go on
            die("handing detection over failed", exc)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        stage = self.stage
        tp = TopicPartition(stage.settings.facts_topic, 0)
        if tp not in assigned:
            return
        try:
            async with stage.busy:
                position = await stage.observer.take_over()
                consumer = stage.consumer
                if position is not None and consumer is not None:
                    consumer.seek(tp, position)
        except Exception as exc:  # aiokafka would log and go on without the detectors' state
            die("taking detection over failed", exc)


class DetectionOwner:
    """Consume the facts topic; observe each record when this worker owns detection."""

    def __init__(self, settings: Settings, observer: AlertingObserver, retry: RetryPolicy) -> None:
        self.settings = settings
        self.observer = observer
        self.retry = retry
        self.busy = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        s = self.settings
        self.consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.detect_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=50,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            isolation_level="read_committed",
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,  # a save waiting out a ClickHouse outage keeps detection here
            **group_options(s),
            **s.kafka_client_options(),
        )
        await self.retry.run("kafka consumer start", consumer.start)
        consumer.subscribe([s.facts_topic], listener=_Handover(self))
        try:
            while not self._stopping.is_set():
                fetched = await consumer.getmany(timeout_ms=500)
                if not fetched:
                    continue
                async with self.busy:
                    await self._observe(consumer, fetched)
        finally:
            async with self.busy:
                await self.observer.hand_over()
            await consumer.stop()

    async def stop(self) -> None:
        self._stopping.set()

    async def _observe(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        counters = self.observer.counters
        for tp, records in fetched.items():
            if tp not in consumer.assignment() or not records:
                continue  # revoked between the fetch and here: the next owner reads it
            if not self.observer.owner:  # fetched before the take-over finished: read it again
                consumer.seek(tp, records[0].offset)
                continue
            for r in records:
                if self.observer.position is not None and r.offset < self.observer.position:
                    counters["facts.already_observed"] += 1
                    continue
                try:
                    batch = factlog.decode(r.value)
                except factlog.FactLogError as exc:
                    counters["facts.unreadable"] += 1
                    log.error("unreadable facts record skipped", extra={"offset": r.offset, "error": str(exc)})
                    continue
                try:
                    await self.observer.on_facts(batch, r.offset + 1)
                except Exception:  # a detector bug must never stop detection (or ingest)
                    counters["observer_errors"] += 1
                    log.exception("detectors failed on a facts record", extra={"offset": r.offset})
                    continue
                counters["facts.observed"] += 1
        # Informational (lag): the position saved with the state is what a new owner resumes from.
        positions = {tp: records[-1].offset + 1 for tp, records in fetched.items() if records and tp in consumer.assignment()}
        if positions and self.observer.owner:
            try:
                await consumer.commit(positions)
            except Exception:  # noqa: BLE001 - a commit racing a rebalance: harmless here
                counters["facts.commit_skipped"] += 1
