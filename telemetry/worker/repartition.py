"""Stage 1 of the worker: re-key both input topics by request id (the join's co-partitioning).

Consumes ``<prefix>requests`` and ``<prefix>verdicts`` in the group ``TELEMETRY_CONSUMER_GROUP``
and forwards every message, bytes untouched and with its original coordinates, to the shard
that owns its request id (:func:`telemetry.ingest.shard.routing_id`): shard ``s`` is partition
``s`` of ``<prefix>internal.requests`` / ``<prefix>internal.verdicts``. The messages of one batch
for one shard travel as one bundle record (``telemetry.ingest.bundle``), so the extra hop costs
a few produce calls per batch, not one per event.

At least once, by design: the input offsets are committed only after every bundle of the batch
is acknowledged by the broker (acks=all); a crash in between forwards the batch again, and the
join stage recognises every repeated request and verdict by its id (and every repeated dead
letter by its original coordinates). Nothing here decodes beyond finding the id: validation,
dead letters and pricing stay in the join stage, one place.

OTLP (``TELEMETRY_OTLP_SPANS_TOPIC`` / ``TELEMETRY_OTLP_LOGS_TOPIC``): one message carries many
spans with as many request ids, so it is split here (``telemetry.otlp.split``) into one item per
request or verdict, each forwarded to its own shard as contract JSON with the message's
coordinates and its ordinal in the message (a refused item carries its reason to the join stage,
which dead-letters it like any other).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from telemetry.ingest import bundle
from telemetry.ingest.bundle import Forward
from telemetry.ingest.inputs import InputRouter
from telemetry.ingest.shard import Kind
from telemetry.retry import RetryPolicy
from telemetry.settings import Settings
from telemetry.worker.kafka_in import Batch, commit_assigned, fill_batch, group_options
from telemetry.worker.kafka_out import INTERNAL_MAX_BYTES, new_producer, send_and_wait

log = logging.getLogger(__name__)

OTLP_SPAN_BYTES = 400
"""About one span's bytes in an OTLP message: how much of a batch an OTLP message weighs."""

BUNDLE_BYTES = 1024 * 1024
"""Bundles are cut at this size (one larger message travels alone, up to the topic's limit)."""


class _DrainOnRevoke(ConsumerRebalanceListener):
    def __init__(self, stage: Repartitioner) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Let the batch in hand be forwarded and committed: its partitions' new owner then
        # starts after it, so nothing is forwarded twice in a clean rebalance.
        async with self.stage.busy:
            pass

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("input partitions assigned", extra={"stage": "repartition", "partitions": len(assigned)})


class Repartitioner:
    """Forward ``<prefix>requests`` / ``<prefix>verdicts`` to the internal shard topics."""

    def __init__(self, settings: Settings, retry: RetryPolicy, shards: int) -> None:
        self.settings = settings
        self.retry = retry
        self.shards = shards
        self.busy = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.router = InputRouter(settings, shards)
        self.counters = self.router.counters  # repartition.*, otlp.* (the stats page)

    def _topic_of(self, kind: Kind) -> str:
        s = self.settings
        return s.shard_requests_topic if kind == "requests" else s.shard_verdicts_topic

    async def run(self) -> None:
        s = self.settings
        self.producer = producer = new_producer(s, max_request_size=INTERNAL_MAX_BYTES, linger_ms=2)
        await self.retry.run("kafka producer start", producer.start)
        self.consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_size,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=512 * 1024,  # input partitions advance together (event time)
            isolation_level="read_committed",
            **group_options(s),
            **s.kafka_client_options(),
        )
        await self.retry.run("kafka consumer start", consumer.start)
        consumer.subscribe([s.requests_topic, s.verdicts_topic, *s.otlp_topics], listener=_DrainOnRevoke(self))
        try:
            while not self._stopping.is_set():
                batch = await fill_batch(consumer, s, self._stopping, max_records=s.batch_size, weight=self._weight)
                if batch:
                    async with self.busy:
                        await self.forward(consumer, batch)
        finally:
            await consumer.stop()
            await producer.stop()

    async def stop(self) -> None:
        self._stopping.set()

    def _split_all(self, records: list[tuple[ConsumerRecord, Literal["traces", "logs"]]]) -> list[tuple[Kind, Forward]]:
        router = self.router
        return [item for r, signal in records for item in router.otlp_forwards(r, router.split(r.value, signal))]

    def _weight(self, r: ConsumerRecord) -> int:
        """A batch holds about ``batch_size`` events: an OTLP message weighs one per ~400 bytes
        (a span), a JSON event one."""
        if self.router.otlp_kind(r.topic, r.value) is None:
            return 1
        return max(1, len(r.value or b"") // OTLP_SPAN_BYTES)

    async def forward(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Forward one batch and commit its input offsets (only those still assigned)."""
        producer = self.producer
        assert producer is not None
        assigned = consumer.assignment()
        batch = {tp: records for tp, records in batch.items() if tp in assigned and records}
        if not batch:
            return
        by_kind: dict[Kind, list[Forward]] = {"requests": [], "verdicts": []}
        router = self.router
        otlp: list[tuple[ConsumerRecord, Literal["traces", "logs"]]] = []
        for records in batch.values():
            for r in records:
                signal = router.otlp_kind(r.topic, r.value)
                if signal is None:
                    kind, f = router.contract_forward(r)
                    by_kind[kind].append(f)
                else:
                    otlp.append((r, signal))
        if otlp:
            # Reading OTLP costs ~40 us a span: a batch of it is split off the event loop, so the
            # consumer groups' heartbeats go on (a backlog once held the loop for seconds).
            for kind, f in await asyncio.to_thread(self._split_all, otlp):
                by_kind[kind].append(f)
        planned: list[tuple[str, int, bytes]] = []
        for kind, fs in by_kind.items():
            for shard, group in bundle.plan(fs, BUNDLE_BYTES):
                planned.append((self._topic_of(kind), shard, bundle.encode(group)))

        await self.retry.run("forward to shards", lambda: send_and_wait(producer, planned))
        self.counters["repartition.messages"] += sum(len(r) for r in batch.values())
        self.counters["repartition.bundles"] += len(planned)
        await commit_assigned(consumer, {tp: records[-1].offset + 1 for tp, records in batch.items()})
