"""The batch consumer: reads both topics in batches and commits only what the pipeline stored.

Why not Faust agents for ingest: measured on this machine (BENCHMARKS.md), a Faust stream
spends ~45 us of framework work per event (a Message, an Event, a channel hop and an ack per
record) and held the worker near 6,000 events/s. This consumer takes whole fetches from
aiokafka (``getmany``), hands them to the same pipeline, and commits the batch's next offsets
after the pipeline returned, so the guarantees are unchanged: no offset is committed before
ClickHouse has the rows; a crash or rebalance redelivers at most the uncommitted batch, which
the idempotent writes absorb. It runs as a service of the Faust app (``TELEMETRY_INGEST_MODE``
``batch``, the default); ``agents`` keeps the Faust agents.

Event-time alignment: when both topics have a backlog (a cold start, a catch-up after an
outage), verdicts would race ahead of their requests and be parked (then looked up and joined
later, at a cost). The consumer pauses the verdict partitions while the verdicts it has read
are more than ``ALIGN_SLACK_MS`` of event time ahead of the requests it has read and the
requests topic still has a backlog, and resumes them once the requests caught up (or have no
backlog). Pausing only delays; nothing is skipped. Live traffic never pauses: a verdict's time
is its judging time, which is not ahead of the requests being read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError

from telemetry.ingest.batch import RawMessage
from telemetry.retry import RetryPolicy
from telemetry.settings import Settings
from telemetry.ingest.join import JoinOutcome
from telemetry.worker.kafka_errors import is_transient_kafka_error
from telemetry.worker.pipeline import Pipeline, die

log = logging.getLogger(__name__)

ALIGN_SLACK_MS = 60_000


class _Rebalance(ConsumerRebalanceListener):
    """Logs assignment changes. Called inside ``getmany``, so no batch is in flight then."""

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        if revoked:
            log.info("partitions revoked", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked)})

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)})


class BatchConsumer:
    """Consume ``<prefix>requests`` and ``<prefix>verdicts`` in batches into ``pipeline``."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.consumer: AIOKafkaConsumer | None = None
        self.verdicts_paused_at_ms: int | None = None
        self._stopping = asyncio.Event()
        self._inflight: asyncio.Future[None] | None = None
        # Only transient errors are retried (kafka_errors): CommitFailedError, authorization and
        # the like would fail forever.
        self._commit_retry = RetryPolicy(is_transient=is_transient_kafka_error)

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_size,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=2 * 1024 * 1024,
            isolation_level="read_committed",
            **s.kafka_client_options(),
        )

    async def run(self) -> None:
        """Consume until :meth:`stop`. Infrastructure errors are retried by the pipeline's policy."""
        s = self.settings
        await self.pipeline.wait_ready()
        self.consumer = consumer = self._new_consumer()
        await self.pipeline.retry.run("kafka consumer start", consumer.start)
        consumer.subscribe([s.requests_topic, s.verdicts_topic], listener=_Rebalance())
        try:
            while not self._stopping.is_set():
                records = await self._fill_batch(consumer)
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

    async def _fill_batch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to ``batch_size`` records, waiting at most ``batch_seconds`` for them."""
        s = self.settings
        deadline = time.monotonic() + s.batch_seconds
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        count = 0
        while count < s.batch_size and not self._stopping.is_set():
            left_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            fetched = await consumer.getmany(timeout_ms=left_ms, max_records=s.batch_size - count)
            for tp, records in fetched.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
            if left_ms == 0 or (not fetched and count):
                break
        return batch

    async def _process(self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        s = self.settings
        requests: list[RawMessage] = []
        verdicts: list[RawMessage] = []
        for tp, records in batch.items():
            target = requests if tp.topic == s.requests_topic else verdicts
            target.extend(RawMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records)
        # Requests first: a verdict and its request in one batch join without parking.
        outcomes = []
        for kind, messages in (("requests", requests), ("verdicts", verdicts)):
            if messages:
                outcomes.append(await self.pipeline.prepare(kind, messages))  # type: ignore[arg-type]
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        # Two-stage pipeline: this batch was prepared while the previous one was stored; now
        # wait for that one (stored, observed, committed) before this one is stored.
        await self.drain()
        self._inflight = asyncio.ensure_future(self._store_and_commit(consumer, outcomes, offsets))

    async def _store_and_commit(self, consumer: AIOKafkaConsumer, outcomes: list[JoinOutcome],
                                offsets: dict[TopicPartition, int]) -> None:  # fmt: skip
        for outcome in outcomes:
            await self.pipeline.complete(outcome)
        await self._commit(consumer, offsets)

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

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        # A rebalance while the batch was stored may have revoked some of its partitions: their
        # new owner re-reads them; committing them would raise IllegalStateError forever.
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._commit_retry.run("kafka commit", lambda: consumer.commit(offsets))
        except (CommitFailedError, IllegalStateError):
            # The group rebalanced: these partitions belong to another member now, which will
            # re-read the batch; the idempotent writes make that harmless.
            log.warning("commit failed after a rebalance; the batch will be redelivered")

    async def _requests_backlog(self, consumer: AIOKafkaConsumer) -> bool:
        """True when some assigned requests partition has records not yet returned to us."""
        for tp in consumer.assignment():
            if tp.topic != self.settings.requests_topic:
                continue
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) < high:
                return True
        return False

    async def _align(self, consumer: AIOKafkaConsumer) -> None:
        verdict_tps = [tp for tp in consumer.assignment() if tp.topic == self.settings.verdicts_topic]
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

