"""Stage 2 of the worker: the join consumer. Reads the shard topics in batches and commits only
what the pipeline made durable.

It consumes ``<prefix>internal.requests`` and ``<prefix>internal.verdicts`` (written by the
repartition stage, ``telemetry.worker.repartition``) in the group ``<TELEMETRY_CONSUMER_GROUP>.join``
with a range assignment: partition ``s`` of both topics (shard ``s``) goes to the same worker,
which owns that shard's join state. On assignment the pipeline loads the shards' states from
ClickHouse; on revocation the batch in flight is finished and committed first, then the states
are dropped, so a shard's next owner starts exactly where this one stopped.

Why a batch consumer and not Faust agents: measured on this machine (BENCHMARKS.md), a Faust
stream spends ~45 us of framework work per event and held the worker near 6,000 events/s.
This consumer takes whole fetches from aiokafka (``getmany``), unpacks the bundles, hands them
to the pipeline and commits after the batch is durable (``telemetry.worker.durability``).

Event-time alignment: when both topics have a backlog (a cold start, a catch-up after an
outage), verdicts would race ahead of their requests and be parked (then looked up and joined
later, at a cost). The consumer pauses the verdict partitions while the verdicts it has read
are more than ``ALIGN_SLACK_MS`` of event time ahead of the requests it has read and the
requests topic still has a backlog, and resumes them once the requests caught up (or have no
backlog). Pausing only delays; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from telemetry.ingest import bundle
from telemetry.ingest.batch import RawMessage
from telemetry.settings import Settings
from telemetry.worker.durability import PreparedBatch
from telemetry.worker.kafka_in import Batch, commit_assigned, fill_batch, group_options
from telemetry.worker.pipeline import Pipeline, die

log = logging.getLogger(__name__)

ALIGN_SLACK_MS = 60_000


MAX_POLL_INTERVAL_MS = 30 * 60 * 1000
"""A batch waiting for ClickHouse (an outage) keeps its shards this long before the group
gives them to another worker: long enough that an outage does not move shards around."""


class _Ownership(ConsumerRebalanceListener):
    """Shard ownership follows the assignment. Runs in aiokafka's coordinator task."""

    def __init__(self, stage: BatchConsumer) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        stage = self.stage
        try:
            async with stage.busy:  # the batch being prepared is completed, then the one in flight
                await stage.drain()
                stage.pipeline.release(stage.pipeline.join.owned)
        except Exception as exc:  # aiokafka would log and go on: the shards' state would be wrong
            die("handing join shards over failed", exc)
        if revoked:
            log.info("shards revoked", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked)})

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        stage = self.stage
        shards = {tp.partition for tp in assigned if tp.topic == stage.settings.shard_requests_topic}
        verdict_shards = {tp.partition for tp in assigned if tp.topic == stage.settings.shard_verdicts_topic}
        if shards != verdict_shards:  # cannot happen with a range assignment over co-partitioned topics
            die(f"join shards not co-assigned: requests {sorted(shards)}, verdicts {sorted(verdict_shards)}")
        try:
            async with stage.busy:  # no batch is prepared while the shards' states load
                await stage.pipeline.adopt(shards)
        except Exception as exc:  # aiokafka would log and go on without the shards' state
            die("taking join shards over failed", exc)
        log.info("shards assigned", extra={"shards": sorted(shards)})


class BatchConsumer:
    """Consume the shard topics in batches into ``pipeline``."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.consumer: AIOKafkaConsumer | None = None
        self.verdicts_paused_at_ms: int | None = None
        self._stopping = asyncio.Event()
        self._inflight: asyncio.Future[None] | None = None
        self.busy = asyncio.Lock()

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.join_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=64,  # bundles: each holds up to 1 MiB of messages
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=1024 * 1024 + 65536,  # about one bundle per shard per fetch: shards advance together
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            **group_options(s),
            **s.kafka_client_options(),
        )

    async def run(self) -> None:
        """Consume until :meth:`stop`. Infrastructure errors are retried by the pipeline's policy."""
        s = self.settings
        await self.pipeline.wait_ready()
        self.consumer = consumer = self._new_consumer()
        await self.pipeline.retry.run("kafka consumer start", consumer.start)
        consumer.subscribe([s.shard_requests_topic, s.shard_verdicts_topic], listener=_Ownership(self))
        try:
            while not self._stopping.is_set():
                records = await self._fill_batch(consumer)
                async with self.busy:
                    if records:
                        await self._process(consumer, records)
                    else:
                        await self.drain()
                await self._align(consumer)
            await self.drain()
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        self._stopping.set()

    async def _fill_batch(self, consumer: AIOKafkaConsumer) -> Batch:
        """Bundles holding up to about ``batch_size`` messages (~400 bytes each), waiting at most
        ``batch_seconds``."""
        return await fill_batch(consumer, self.settings, self._stopping, max_records=64,
                                weight=lambda r: max(1, len(r.value or b"") // 400))  # fmt: skip

    async def _process(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Prepare one batch (only the shards still owned: a revocation may have come between
        the fetch and here), then hand it to the completion task after the previous one."""
        s = self.settings
        owned = self.pipeline.join.owned
        requests: list[RawMessage] = []
        verdicts: list[RawMessage] = []
        offsets: dict[TopicPartition, int] = {}
        assigned = consumer.assignment()
        for tp, records in batch.items():
            if not records:
                continue
            if tp.partition not in owned:
                # Fetched for a shard whose state is not loaded (yet): an assignment's first fetch
                # can beat its adoption. Read it again later; skipping it would lose it.
                if tp in assigned:
                    consumer.seek(tp, records[0].offset)
                    self.pipeline.counters["refetched_before_adoption"] += 1
                continue
            target = requests if tp.topic == s.shard_requests_topic else verdicts
            for r in records:
                try:
                    target.extend(bundle.decode(r.value, tp.partition))
                except bundle.BundleError as exc:  # not ours: a bug or a foreign writer
                    self.pipeline.counters["foreign_records"] += 1
                    log.error("record of the shard topic is not a bundle; skipped",
                              extra={"topic": tp.topic, "partition": tp.partition, "offset": r.offset,
                                     "error": str(exc)})  # fmt: skip
            offsets[tp] = records[-1].offset + 1
        if not offsets:
            return
        prepared = PreparedBatch(offsets=offsets)
        # Requests first: a verdict and its request in one batch join without parking.
        for kind, messages in (("requests", requests), ("verdicts", verdicts)):
            if messages:
                self.pipeline.add(prepared, *await self.pipeline.prepare(kind, messages))  # type: ignore[arg-type]
        # Two-stage pipeline: this batch was prepared while the previous one was completed; now
        # wait for that one (durable and committed) before this one is completed.
        await self.drain()
        self._inflight = asyncio.ensure_future(self.pipeline.complete(prepared, lambda o: self._commit(consumer, o)))

    async def drain(self) -> None:
        """Wait until the batch in flight is stored and committed. A failure there is a bug:
        the process exits without committing (the batch is redelivered after the restart)."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        try:
            await inflight
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die("storing a batch failed", exc)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
        await commit_assigned(consumer, offsets)

    async def _requests_backlog(self, consumer: AIOKafkaConsumer) -> bool:
        """True when some assigned requests partition has records not yet returned to us."""
        for tp in consumer.assignment():
            if tp.topic != self.settings.shard_requests_topic:
                continue
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) < high:
                return True
        return False

    async def _align(self, consumer: AIOKafkaConsumer) -> None:
        verdict_tps = [tp for tp in consumer.assignment() if tp.topic == self.settings.shard_verdicts_topic]
        if not verdict_tps:
            return
        clocks = self.pipeline
        ahead = clocks.verdicts_clock_ms > clocks.requests_clock_ms + ALIGN_SLACK_MS
        if self.verdicts_paused_at_ms is None:
            if ahead and await self._requests_backlog(consumer):
                consumer.pause(*verdict_tps)
                self.verdicts_paused_at_ms = clocks.requests_clock_ms
                self.pipeline.counters["verdict_pauses"] += 1
        elif not ahead or not await self._requests_backlog(consumer):
            consumer.resume(*verdict_tps)
            self.verdicts_paused_at_ms = None

