"""The join stage's pipeline: the imperative shell that runs one batch from Kafka to ClickHouse.

``prepare``: decode and price (pure) -> look up what the join cache cannot decide -> join
(pure, per owned shard). ``complete``: the batch's effects in the one order of
:mod:`telemetry.worker.durability` (dead letters, rows, facts, offsets). The consumer prepares
batch k+1 while batch k is being completed; the Faust agents (``TELEMETRY_INGEST_MODE=agents``)
call :meth:`Pipeline.handle`, which does both and lets Faust commit afterwards.

The join cache is per shard (``telemetry.ingest.join.ShardedJoin``): :meth:`Pipeline.adopt`
loads a shard's state from ClickHouse when the consumer is assigned it, :meth:`Pipeline.release`
drops it when the shard is revoked.

Infrastructure failures are retried with back-off until they succeed (the stream waits);
bad input is dead-lettered; anything else is a bug, and the process exits *without*
committing, so the batch is redelivered after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Literal

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from telemetry.contracts.verdict import VerdictEvent
from telemetry.detect import factlog
from telemetry.ingest.batch import (
    DecodedBatch,
    RawMessage,
    decode_requests,
    decode_verdicts,
)
from telemetry.ingest.deadletter import DeadLetter
from telemetry.ingest.facts import request_facts, verdict_facts
from telemetry.ingest.join import JoinOutcome, ShardedJoin
from telemetry.pricing import PriceBook
from telemetry.retry import RetryPolicy
from telemetry.settings import Settings
from telemetry.storage.clickhouse import connect, is_transient
from telemetry.storage.migrate import migrate
from telemetry.storage.store import Store
from telemetry.worker.durability import PreparedBatch, make_durable
from telemetry.worker.kafka_errors import is_transient_kafka_error, publish_dead_letters
from telemetry.worker.kafka_out import send_and_wait

log = logging.getLogger(__name__)

Kind = Literal["requests", "verdicts"]
EXIT_UNSAFE = 70


Commit = Callable[[Mapping[TopicPartition, int]], Awaitable[None]]


def _transient(exc: BaseException) -> bool:
    """Retry transient Kafka errors (never permanent ones: see kafka_errors) and ClickHouse outages."""
    return is_transient_kafka_error(exc) if isinstance(exc, KafkaError) else is_transient(exc)


def die(reason: str, exc: BaseException | None = None) -> None:
    """Exit at once without committing offsets: the uncommitted batch is redelivered on restart."""
    log.critical("worker cannot continue safely; exiting without committing", extra={"reason": reason},
                 exc_info=exc)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_UNSAFE)


class Pipeline:
    """Owns the ClickHouse store, the per-shard join caches, the price book and the producer
    of dead letters and facts. ``shards``: how many join shards there are (the partitions of
    the internal topics; 1 when one process consumes the input topics directly)."""

    def __init__(self, settings: Settings, *, shards: int = 1, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.shards = shards
        self.clock = clock
        self.retry = RetryPolicy(is_transient=_transient)
        self.counters: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        # Event-time clocks: the newest request / verdict time decoded so far (for alignment).
        self.requests_clock_ms = 0
        self.verdicts_clock_ms = 0
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self.store: Store | None = None
        self.join = ShardedJoin(shards)
        self.prices: PriceBook | None = None
        self.producer: AIOKafkaProducer | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, migrate, start the producer. The join caches are loaded per shard (adopt)."""
        s = self.settings
        self.prices = PriceBook(s.prices_file)
        client = await self.retry.run("clickhouse connect", lambda: asyncio.to_thread(connect, s.resolved_clickhouse_dsn))
        await self.retry.run("clickhouse migrate", lambda: asyncio.to_thread(migrate, client, s.clickhouse_database))
        self.store = Store(client, s.clickhouse_database)
        if s.is_embedded_clickhouse:
            await asyncio.to_thread(self._repair_aggregates)
        self.producer = new_producer_for(s)
        await self.retry.run("kafka producer start", self.producer.start)
        log.info("pipeline ready", extra={"shards": self.shards})
        self._ready.set()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def _repair_aggregates(self) -> None:
        assert self.store is not None
        check = self.store.check_aggregates()
        if not check.consistent:
            log.warning("aggregates disagree with their sources after an unclean stop; rebuilding",
                        extra={"check": repr(check)})  # fmt: skip
            self.store.rebuild_aggregates()
            self.counters["aggregate_rebuilds"] += 1

    # -- shard ownership ----------------------------------------------------------------------
    async def adopt(self, shards: Collection[int]) -> None:
        """Take over ``shards``: load their join caches from ClickHouse (what their previous
        owners stored), then join the parked verdicts whose request is stored by now."""
        new = sorted(set(shards) - self.join.owned)
        if not new:
            return
        await self._ready.wait()
        store, s = self.store, self.settings
        assert store is not None
        started = time.perf_counter()
        horizon_ms = int(s.join_horizon_hours * 3_600_000)
        states, unjoined = await self.retry.run(
            "load join state",
            lambda: asyncio.to_thread(store.load_join_state, horizon_ms=horizon_ms, capacity=s.join_cache_size,
                                      shards=self.shards, owned=new),  # fmt: skip
        )
        for shard, state in states.items():
            self.join.adopt(shard, state)
        self.counters["shards_adopted"] += len(new)
        if unjoined:
            await self._replay_unjoined(unjoined)
        log.info("join shards adopted", extra={"shards": new, "cached_requests": sum(x.cached_requests for x in states.values()),
                                               "seconds": round(time.perf_counter() - started, 3)})  # fmt: skip

    def release(self, shards: Collection[int]) -> None:
        """Forget the caches of revoked shards (their next owner loads them from storage)."""
        for shard in shards:
            self.join.release(shard)
        if shards:
            self.counters["shards_released"] += len(shards)
            log.info("join shards released", extra={"shards": sorted(shards)})

    async def _replay_unjoined(self, unjoined: list[VerdictEvent]) -> None:
        """Verdicts parked before a stop whose request is stored by now are joined here."""
        store = self.store
        assert store is not None
        ids = {v.request_id for v in unjoined}
        found = await self.retry.run("lookup", lambda: asyncio.to_thread(store.lookup, ids))
        outcome = self.join.apply([], unjoined, found)
        outcome.parked.clear()  # already stored as parked
        if outcome.joined:
            await self.complete(PreparedBatch([outcome]))

    # -- the batch ------------------------------------------------------------------------------
    async def handle(self, kind: Kind, messages: Sequence[RawMessage]) -> None:
        """Process one batch to completion (the Faust agents' path). Returns only when its
        effects are durable; Faust commits the offsets afterwards."""
        if not messages:
            return
        await self._ready.wait()
        async with self._lock:
            work = asyncio.ensure_future(self._handle(kind, messages))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                # Faust acks a batch on the way out even when cancelled: finish it first.
                try:
                    await asyncio.wait_for(asyncio.shield(work), timeout=30)
                except BaseException as exc:  # noqa: BLE001 - anything here makes the ack unsafe
                    die("shutdown while a batch was unfinished", exc)
                raise
            except Exception as exc:  # a bug: never let Faust ack what was not stored
                die(f"unexpected error in {kind} batch", exc)

    async def _handle(self, kind: Kind, messages: Sequence[RawMessage]) -> None:
        batch = PreparedBatch()
        self.add(batch, *await self.prepare(kind, messages))
        await self.complete(batch)

    @staticmethod
    def add(batch: PreparedBatch, outcome: JoinOutcome, dead: list[DeadLetter]) -> None:
        batch.outcomes.append(outcome)
        batch.dead += dead

    async def prepare(self, kind: Kind, messages: Sequence[RawMessage]) -> tuple[JoinOutcome, list[DeadLetter]]:
        """Decode, price and join one batch of one kind: its outcome and its dead letters,
        not durable yet.

        Batches must be prepared in consumption order and completed in the same order; a
        batch may be prepared while the previous one is being completed (the join cache already
        holds that batch, and every id it looks up in storage was stored earlier)."""
        assert self.prices is not None and self.store is not None
        now_ms = self.now_ms()
        max_bytes = self.settings.max_message_bytes
        max_future_ms = int(self.settings.max_future_skew * 1000)
        timer = StageTimer(self.seconds)
        if kind == "requests":
            decoded = await asyncio.to_thread(decode_requests, messages, self.prices, max_bytes=max_bytes, now_ms=now_ms,
                                              max_future_ms=max_future_ms, shards=self.shards)  # fmt: skip
        else:
            decoded = await asyncio.to_thread(decode_verdicts, messages, max_bytes=max_bytes, now_ms=now_ms,
                                              max_future_ms=max_future_ms, shards=self.shards)  # fmt: skip
        timer.lap("decode_validate_price")
        self.counters[f"{kind}_messages"] += len(messages)
        newest = max(decoded.event_times.values(), default=0)  # the batch is of one kind
        if kind == "requests":
            self.requests_clock_ms = max(self.requests_clock_ms, newest)
        else:
            self.verdicts_clock_ms = max(self.verdicts_clock_ms, newest)
        outcome = await self._join(decoded, timer)
        outcome.event_times = decoded.event_times
        return outcome, decoded.dead

    async def complete(self, batch: PreparedBatch, commit: Commit | None = None) -> None:
        """Make ``batch`` durable in the one order (``telemetry.worker.durability``); ``commit``
        commits its offsets last (None: the caller commits, as Faust does)."""
        await make_durable(batch, _Effects(self, commit))

    async def _join(self, decoded: DecodedBatch, timer: StageTimer) -> JoinOutcome:
        join, store = self.join, self.store
        assert join is not None and store is not None
        ids = join.ids_to_look_up(decoded.requests, decoded.verdicts)
        found = None
        if ids:
            found = await self.retry.run("lookup", lambda: asyncio.to_thread(store.lookup, ids))
            self.counters["lookups"] += len(ids)
            timer.lap("lookup")
        outcome = join.apply(decoded.requests, decoded.verdicts, found)
        timer.lap("join")
        return outcome

    async def _write(self, outcome: JoinOutcome) -> None:
        store = self.store
        assert store is not None
        now_ms = self.now_ms()
        await self.retry.run("clickhouse insert", lambda: asyncio.to_thread(store.write, outcome, now_ms))

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        """Publish, then record, the dead letters not recorded yet: once per (topic, partition,
        offset), also when a batch is redelivered after a restart. A crash between publish and
        record can repeat one on the topic; its ``dlq.source.*`` headers identify it."""
        producer, store = self.producer, self.store
        assert producer is not None and store is not None
        recorded = await self.retry.run("dead-letter lookup", lambda: asyncio.to_thread(store.recorded_dead_letters, letters))
        fresh = list({d.coordinates: d for d in letters if d.coordinates not in recorded}.values())
        self.counters["dead_letters_already_recorded"] += len(letters) - len(fresh)
        if not fresh:
            return
        letters = fresh

        await publish_dead_letters(self, letters)  # never stalls on a permanent error (kafka_errors)
        await self.retry.run("dead-letter record", lambda: asyncio.to_thread(store.write_dead_letters, letters))
        for d in letters:
            self.counters[f"dead_letters.{d.reason}"] += 1
        self.counters["dead_letters"] += len(letters)
        log.warning("messages dead-lettered", extra={"count": len(letters), "reasons": sorted({d.reason for d in letters}),
                                                     "topic": letters[0].topic})  # fmt: skip

    def _count(self, outcome: JoinOutcome) -> None:
        c = self.counters
        c["requests_stored"] += len(outcome.new_requests)
        c["verdicts_joined"] += len(outcome.joined)
        c["verdicts_parked"] += len(outcome.parked)
        c["duplicate_requests"] += outcome.duplicate_requests
        c["duplicate_verdicts"] += outcome.duplicate_verdicts
        c["batches"] += 1

    async def _publish_facts(self, outcomes: Sequence[JoinOutcome]) -> None:
        """The stored batch's facts to the detection owner (``<prefix>internal.facts``). A
        record the topic refuses for good is logged and counted, never retried forever."""
        producer = self.producer
        assert producer is not None
        times: dict[tuple[str, int], int] = {}
        for outcome in outcomes:
            for source, ts in outcome.event_times.items():
                times[source] = max(ts, times.get(source, ts))
        records = factlog.encode([f for o in outcomes for f in request_facts(o)],
                                 [f for o in outcomes for f in verdict_facts(o)], times)  # fmt: skip
        if not records:
            return
        planned = [(self.settings.facts_topic, 0, record) for record in records]
        try:
            await self.retry.run("publish facts", lambda: send_and_wait(producer, planned))
        except KafkaError as exc:
            self.counters["facts.publish_failed"] += 1
            log.error("facts could not be published; the detectors miss this batch (the tables have it)",
                      extra={"error": type(exc).__name__, "records": len(records)})  # fmt: skip
            return
        self.counters["facts.records"] += len(records)


class _Effects:
    """The pipeline's ports of :class:`telemetry.worker.durability.BatchEffects`."""

    def __init__(self, pipeline: Pipeline, commit: Commit | None) -> None:
        self.pipeline = pipeline
        self.commit = commit

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        await self.pipeline._dead_letter(list(letters))

    async def rows(self, outcome: JoinOutcome) -> None:
        timer = StageTimer(self.pipeline.seconds)
        await self.pipeline._write(outcome)
        self.pipeline._count(outcome)
        timer.lap("insert")

    async def facts(self, outcomes: Sequence[JoinOutcome]) -> None:
        timer = StageTimer(self.pipeline.seconds)
        await self.pipeline._publish_facts(outcomes)
        timer.lap("facts")

    async def offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.commit is not None:
            await self.commit(offsets)


class StageTimer:
    """Adds the wall time of each stage of a batch to ``sink`` (seconds per stage name)."""

    __slots__ = ("_last", "sink")

    def __init__(self, sink: defaultdict[str, float]) -> None:
        self.sink = sink
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.sink[stage] += now - self._last
        self._last = now


def new_producer_for(settings: Settings) -> AIOKafkaProducer:
    from telemetry.worker.kafka_out import new_producer

    return new_producer(settings)

