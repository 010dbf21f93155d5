"""The alerting observer: feeds each stored batch to the detection engine and delivers what it
decides to the ``<prefix>alerts`` topic, the ``alerts`` table and the configured webhooks.

Order per batch: rows are stored (by the pipeline) -> facts observed -> notifications published
to Kafka and written to ClickHouse -> engine state saved. A crash between publishing and saving
can repeat a notification (never lose one); every sink can tell a repeat by its id: the
CloudEvent ``id``, the table's deduplication token, PagerDuty's ``dedup_key``, Alertmanager's
fingerprint. Webhook delivery runs in the background and never blocks the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Sequence

import orjson
from aiokafka import AIOKafkaProducer

from telemetry.alerting.delivery import DeliveryPolicy
from telemetry.alerting.outbox import DeliveryOutbox
from telemetry.contracts.alert import Alert
from telemetry.detect.clock import EventClock
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.limits import LabelLimits
from telemetry.detect.facts import RequestFact, VerdictFact
from telemetry.ingest.join import JoinOutcome
from telemetry.retry import RetryPolicy
from telemetry.routes import RoutesConfig
from telemetry.settings import Settings
from telemetry.storage.deliveries import DeliveryStore
from telemetry.storage.store import Store
from telemetry.worker.kafka_errors import publish_alerts

log = logging.getLogger(__name__)

STATE_KEY = "detection_engine"
CLOCK_KEY = "event_clock"
OVERFLOW_WARN_EVERY_S = 60.0
TICK_EVERY_S = 1.0
_SOURCE_FORGET_MS = 3_600_000


def encode_snapshot(data: bytes) -> str:
    """Saved form of an engine snapshot: zlib (level 1), as latin-1 text for the String column."""
    return zlib.compress(data, 1).decode("latin-1")


def decode_snapshot(text: str) -> bytes:
    """Inverse of :func:`encode_snapshot`; also reads the uncompressed JSON saved before."""
    raw = text.encode("latin-1")
    return raw if raw[:1] == b"{" else zlib.decompress(raw)


def request_facts(outcome: JoinOutcome) -> list[RequestFact]:
    return [
        RequestFact(
            ts_ms=e.ts, route=e.route, team=e.team, model=e.model, served_model=e.served_model,
            cost_usd=p.cost.usd, latency_ms=e.latency_ms, status=e.status, error_type=e.error_type,
            finish_reason=e.finish_reason, attempt=e.attempt,
        )  # fmt: skip
        for p in outcome.new_requests
        for e in (p.event,)
    ]


def verdict_facts(outcome: JoinOutcome) -> list[VerdictFact]:
    return [
        VerdictFact(
            ts_ms=j.verdict.ts, request_ts_ms=j.request.ts_ms, route=j.request.route, model=j.request.served_model,
            evaluator=j.verdict.evaluator, kind=j.verdict.kind, passed=bool(j.verdict.passed),
            cost_usd=j.request.cost_usd,
        )  # fmt: skip
        for j in outcome.joined
    ]


class AlertingObserver:
    """Runs the detectors after each stored batch and delivers their notifications."""

    def __init__(
        self,
        settings: Settings,
        routes: RoutesConfig,
        retry: RetryPolicy,
        *,
        save_every_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.retry = retry
        self.save_every_s = save_every_s
        self.clock = clock
        self.limits = LabelLimits(settings.max_routes, settings.max_models_per_route, settings.max_teams)
        self.engine = DetectionEngine(routes, env=settings.env, limits=self.limits)
        self.event_clock = EventClock(
            max_skew_ms=int(settings.max_future_skew * 1000),
            idle_ms=int(settings.event_time_idle_seconds * 1000),
            primary_topic=settings.requests_topic,
        )
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._last_overflow_warning = 0.0
        self._overflow_reported: dict[str, int] = {}
        self.save_seconds = 0.0
        self.dispatcher = DeliveryOutbox(
            routes, policy=DeliveryPolicy(max_age_s=settings.delivery_max_age_hours * 3600), clock=clock
        )
        self.counters = self.dispatcher.counters  # deliveries.*, alerts.publish_failed (stats page)
        self.sent = 0
        self._store: Store | None = None
        self._producer: AIOKafkaProducer | None = None
        self._last_save = 0.0
        self._dirty = False

    async def start(self, store: Store, producer: AIOKafkaProducer) -> None:
        self._store, self._producer = store, producer
        saved = await self.retry.run("load detector state", lambda: asyncio.to_thread(store.load_state, STATE_KEY))
        saved_clock = await self.retry.run("load event clock", lambda: asyncio.to_thread(store.load_state, CLOCK_KEY))
        wall_ms = int(self.clock() * 1000)
        if saved:
            started = time.perf_counter()
            data = decode_snapshot(saved)
            self.engine = await asyncio.to_thread(
                DetectionEngine.restore, data, self.routes, self.settings.env, self.limits
            )
            log.info("detector state restored", extra={"watermark_ms": self.engine.now_ms, "bytes": len(data),
                                                       "seconds": round(time.perf_counter() - started, 3)})  # fmt: skip
        if saved_clock:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.event_clock.restore(orjson.loads(saved_clock))
        self.event_clock.resume(self.engine.now_ms, wall_ms)
        repaired = self.event_clock.repair(wall_ms)
        if self.engine.repair_clock(wall_ms, self.event_clock.max_skew_ms) or repaired:
            self.counters["event_clock_repairs"] += 1
            log.warning("the saved event-time clock was ahead of wall time; pulled back",
                        extra={"wall_ms": wall_ms})  # fmt: skip
            await self._save()
        await self.dispatcher.start(DeliveryStore(store.client, store.db), self.retry)
        self._ticker = asyncio.ensure_future(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._store is not None and self._dirty:
            await self._save()
        await self.dispatcher.stop(grace_s=5.0)  # unfinished deliveries stay pending: resumed at start

    async def on_batch(self, outcome: JoinOutcome) -> None:
        async with self._lock:
            wall_ms = int(self.clock() * 1000)
            self.event_clock.observe(outcome.event_times, wall_ms)
            requests, verdicts = request_facts(outcome), verdict_facts(outcome)
            if not requests and not verdicts:
                return
            if requests:
                self.engine.observe_requests(requests)
            if verdicts:
                self.engine.observe_verdicts(verdicts)
            self._dirty = True
            await self._evaluate(self.event_clock.tick(wall_ms))

    async def tick(self) -> None:
        """Evaluate at the event clock's reading when it moved without traffic (idle advance)."""
        async with self._lock:
            wall_ms = int(self.clock() * 1000)
            now = self.event_clock.tick(wall_ms)
            if now > self.engine.now_ms:
                self._dirty = True
                await self._evaluate(now)
            self.event_clock.forget_idle_sources(wall_ms, _SOURCE_FORGET_MS)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_EVERY_S)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the ticker must outlive a bad evaluation
                self.counters["observer_tick_errors"] += 1
                log.exception("idle evaluation failed")

    async def _evaluate(self, now_ms: int) -> None:
        alerts = self.engine.evaluate(now_ms)
        self._report_overflow()
        if alerts:
            await self.deliver(alerts)
            await self._save()
        elif self.clock() - self._last_save >= max(self.save_every_s, 20 * self.save_seconds):
            await self._save()

    def _report_overflow(self) -> None:
        """Count facts mapped to ``__overflow__``; warn at most once a minute."""
        overflowed = self.engine.guard.overflowed
        for kind, total in overflowed.items():
            new = total - self._overflow_reported.get(kind, 0)
            if new:
                self.counters[f"overflow.{kind}"] += new
                self._overflow_reported[kind] = total
        if overflowed and self.clock() - self._last_overflow_warning >= OVERFLOW_WARN_EVERY_S:
            self._last_overflow_warning = self.clock()
            log.warning("label limits reached: facts beyond them are tracked as __overflow__",
                        extra={"overflowed": dict(overflowed), "max_routes": self.limits.max_routes,
                               "max_models_per_route": self.limits.max_models_per_route,
                               "max_teams": self.limits.max_teams})  # fmt: skip

    async def deliver(self, alerts: Sequence[Alert]) -> None:
        """Topic first (the system of record for consumers), then the table, then the webhook
        outbox: each (alert, channel) is recorded in ``alert_deliveries`` before it is sent in the
        background. A Kafka error the topic will never get over (a record too large, no
        authorization) is logged and counted, not retried forever: the table and the outbox
        still have the alert."""
        producer, store = self._producer, self._store
        assert producer is not None and store is not None
        emitted_ms = int(self.clock() * 1000)
        await publish_alerts(producer, self.settings, alerts, emitted_ms=emitted_ms, retry=self.retry,
                             counters=self.counters)  # fmt: skip
        await self.retry.run("alert record", lambda: asyncio.to_thread(store.write_alerts, alerts, emitted_ms))
        await self.dispatcher.submit(alerts, emitted_ms)
        for alert in alerts:
            log.warning(
                "alert " + alert.status,
                extra={"alertname": alert.alertname, "route": alert.route, "model": alert.labels.get("model", ""),
                       "fingerprint": alert.fingerprint, "sequence": alert.sequence,
                       "summary": alert.annotations.get("summary", "")},
            )  # fmt: skip
        self.sent += len(alerts)

    async def _save(self) -> None:
        store = self._store
        assert store is not None
        started = time.perf_counter()
        snapshot = self.engine.snapshot()  # on the loop: the engine is not thread-safe
        data = await asyncio.to_thread(encode_snapshot, snapshot)
        clock = orjson.dumps(self.event_clock.to_state()).decode()
        now_ms = int(self.clock() * 1000)
        await self.retry.run("save detector state", lambda: asyncio.to_thread(store.save_state, STATE_KEY, data, now_ms))
        await self.retry.run("save event clock", lambda: asyncio.to_thread(store.save_state, CLOCK_KEY, clock, now_ms))
        self.save_seconds = time.perf_counter() - started
        self._last_save = self.clock()
        self._dirty = False
