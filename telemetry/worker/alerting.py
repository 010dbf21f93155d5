"""The detection owner's core shell: runs the detectors over the facts of the whole group and
delivers what they decide to the ``<prefix>alerts`` topic, the ``alerts`` table and the webhooks.

One worker at a time owns detection (the owner of the facts topic's one partition, see
``telemetry.worker.detection``). :meth:`AlertingObserver.take_over` loads the detector state,
the event clock and the facts position saved by the previous owner; :meth:`hand_over` saves
them. Order per facts record: facts observed -> notifications to the topic, the table and the
webhook outbox -> state saved with the position of the next facts record, in one insert.

A crash after delivering and before saving makes the next owner replay those facts and decide
the same notifications again (same CloudEvent ids); each sink skips what it holds: the topic
by the ids read back from its recent records at take-over, the table by the ids stored, the
outbox by its recorded deliveries. Webhook delivery runs in the background and never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiokafka import AIOKafkaProducer

from telemetry.alerting.delivery import DeliveryPolicy
from telemetry.alerting.outbox import DeliveryOutbox
from telemetry.alerting.payloads import cloudevent_id
from telemetry.contracts.alert import Alert
from telemetry.detect.clock import EventClock
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.factlog import FactBatch
from telemetry.detect.limits import LabelLimits
from telemetry.retry import RetryPolicy
from telemetry.routes import RoutesConfig
from telemetry.settings import Settings
from telemetry.storage.deliveries import DeliveryStore
from telemetry.storage.store import Store
from telemetry.worker.alert_log import published_alert_ids
from telemetry.worker.kafka_errors import publish_alerts
from telemetry.worker.stored_inputs import REFRESH_EVERY_S, InputsRefresher

log = logging.getLogger(__name__)

STATE_KEY = "detection_engine"
CLOCK_KEY = "event_clock"
POSITION_KEY = "detection_facts_position"
PUBLISHED_LOOKBACK_MS = 3_600_000
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


class AlertingObserver:
    """Runs the detectors over facts records and delivers their notifications."""

    def __init__(
        self,
        settings: Settings,
        routes: RoutesConfig,
        retry: RetryPolicy,
        *,
        save_every_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        read_published: Callable[[Settings, int], Awaitable[set[str]]] = published_alert_ids,
    ) -> None:
        """``read_published``: reads the alert ids on the topic since a time (at take-over)."""
        self.settings = settings
        self.routes = routes
        self.retry = retry
        self.save_every_s = save_every_s
        self.clock = clock
        self.read_published = read_published
        self.limits = LabelLimits(settings.max_routes, settings.max_models_per_route, settings.max_teams)
        self.engine = DetectionEngine(routes, env=settings.env, limits=self.limits)
        self.event_clock = EventClock(
            max_skew_ms=int(settings.max_future_skew * 1000),
            idle_ms=int(settings.event_time_idle_seconds * 1000),
            primary_topics=settings.request_topics,
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
        self.owner = False
        self.position: int | None = None  # offset of the next facts record to observe
        self._published: set[str] = set()  # alert ids on the topic since take-over
        self._state_time = 0  # updated_at of the newest saved state: saves go after it
        self.inputs = InputsRefresher(settings, routes)
        self._last_refresh = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    async def start(self, store: Store, producer: AIOKafkaProducer) -> None:
        self._store, self._producer = store, producer

    async def take_over(self) -> int | None:
        """Become the detection owner: restore what the previous owner saved. Returns the offset
        of the next facts record to observe (None: nothing saved, start at the committed one)."""
        store = self._store
        assert store is not None, "start() first"
        self.engine = DetectionEngine(self.routes, env=self.settings.env, limits=self.limits)
        self.event_clock = EventClock(max_skew_ms=self.event_clock.max_skew_ms, idle_ms=self.event_clock.idle_ms,
                                      primary_topics=self.settings.request_topics)  # fmt: skip
        saved = await self.retry.run("load detector state", lambda: asyncio.to_thread(store.load_state, STATE_KEY))
        saved_clock = await self.retry.run("load event clock", lambda: asyncio.to_thread(store.load_state, CLOCK_KEY))
        saved_position = await self.retry.run("load facts position",
                                              lambda: asyncio.to_thread(store.load_state, POSITION_KEY))  # fmt: skip
        self._state_time = await self.retry.run(
            "load state time", lambda: asyncio.to_thread(store.state_time, [STATE_KEY, CLOCK_KEY, POSITION_KEY])
        )
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
        self.position = int(saved_position) if saved_position and saved_position.isdigit() else None
        self.event_clock.resume(self.engine.now_ms, wall_ms)
        repaired = self.event_clock.repair(wall_ms)
        self._published = await self.retry.run(
            "read recent alerts", lambda: self.read_published(self.settings, wall_ms - PUBLISHED_LOOKBACK_MS)
        )
        self.owner = True
        if self.engine.repair_clock(wall_ms, self.event_clock.max_skew_ms) or repaired:
            self.counters["event_clock_repairs"] += 1
            log.warning("the saved event-time clock was ahead of wall time; pulled back",
                        extra={"wall_ms": wall_ms})  # fmt: skip
            await self._save()
        await self.dispatcher.start(DeliveryStore(store.client, store.db), self.retry)
        await self._refresh_inputs()  # gates, prompt versions, ...: before the first evaluation
        self._ticker = asyncio.ensure_future(self._tick_forever())
        self.counters["detection_takeovers"] += 1
        log.info("detection owner: took over", extra={"facts_position": self.position,
                                                      "recent_alert_ids": len(self._published)})  # fmt: skip
        return self.position

    async def hand_over(self) -> None:
        """Stop owning detection: save the state (with the facts position) for the next owner."""
        if not self.owner:
            return
        for task in (self._ticker, self._refreshing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._refreshing = None
        async with self._lock:
            if self._store is not None and (self._dirty or self.position is not None):
                await self._save()
            self.owner = False
        await self.dispatcher.stop(grace_s=5.0)  # unfinished deliveries stay pending: the next owner resumes them
        log.info("detection owner: handed over", extra={"facts_position": self.position})

    async def stop(self) -> None:
        await self.hand_over()

    async def on_facts(self, batch: FactBatch, next_position: int) -> None:
        """Observe one facts record; ``next_position``: the offset after it (saved with the state)."""
        async with self._lock:
            if not self.owner:
                return
            wall_ms = int(self.clock() * 1000)
            self.event_clock.observe(batch.event_times, wall_ms)
            self.position = next_position
            self._dirty = True
            if batch.requests:
                self.engine.observe_requests(batch.requests)
            if batch.verdicts:
                self.engine.observe_verdicts(batch.verdicts)
            await self._evaluate(self.event_clock.tick(wall_ms))

    async def tick(self) -> None:
        """Evaluate at the event clock's reading when it moved without traffic (idle advance)."""
        async with self._lock:
            if not self.owner:
                return
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
            except Exception:
                self.counters["observer_tick_errors"] += 1
                log.exception("idle evaluation failed")
            if self.clock() - self._last_refresh >= REFRESH_EVERY_S and (self._refreshing is None or self._refreshing.done()):
                self._refreshing = asyncio.ensure_future(self._refresh_inputs())

    async def _refresh_inputs(self) -> None:
        """Read the detectors' inputs from storage (``telemetry.worker.stored_inputs``) off the
        event loop, then hand them to the engine. A failed read keeps the previous inputs."""
        store = self._store
        if store is None:
            return
        self._last_refresh = self.clock()
        now_ms = self.engine.now_ms
        try:
            inputs = await asyncio.to_thread(self.inputs.refresh, store, now_ms)
        except Exception:  # noqa: BLE001 - the detectors go on with what they had
            self.counters["inputs.refresh_errors"] += 1
            log.exception("reading the detectors' inputs failed")
            return
        for name, failures in self.inputs.failures.items():
            self.counters[f"inputs.{name}.errors"] = failures
        async with self._lock:
            if self.owner:
                self.engine.set_inputs(inputs)
                self._dirty = True

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
        background. Each sink skips the notifications it already holds (a new owner replaying
        the facts after its predecessor's last save decides them again, with the same ids). A
        Kafka error the topic will never get over (a record too large, no authorization) is
        logged and counted, not retried forever: the table and the outbox still have the alert."""
        producer, store = self._producer, self._store
        assert producer is not None and store is not None
        emitted_ms = int(self.clock() * 1000)
        fresh = [a for a in alerts if cloudevent_id(a) not in self._published]
        if len(fresh) < len(alerts):
            self.counters["alerts.already_published"] += len(alerts) - len(fresh)
        if fresh:
            await publish_alerts(producer, self.settings, fresh, emitted_ms=emitted_ms, retry=self.retry,
                                 counters=self.counters)  # fmt: skip
            self._published.update(cloudevent_id(a) for a in fresh)
        ids = [cloudevent_id(a) for a in alerts]
        stored = await self.retry.run("alert lookup", lambda: asyncio.to_thread(store.recorded_alert_ids, ids))
        unstored = [a for a in alerts if cloudevent_id(a) not in stored]
        if unstored:
            await self.retry.run("alert record", lambda: asyncio.to_thread(store.write_alerts, unstored, emitted_ms))
        await self.dispatcher.submit(alerts, emitted_ms)
        for alert in fresh:
            log.warning(
                "alert " + alert.status,
                extra={"alertname": alert.alertname, "route": alert.route, "model": alert.labels.get("model", ""),
                       "fingerprint": alert.fingerprint, "sequence": alert.sequence,
                       "summary": alert.annotations.get("summary", "")},
            )  # fmt: skip
        self.sent += len(fresh)

    async def _save(self) -> None:
        store = self._store
        assert store is not None
        started = time.perf_counter()
        snapshot = self.engine.snapshot()  # on the loop: the engine is not thread-safe
        data = await asyncio.to_thread(encode_snapshot, snapshot)
        clock = orjson.dumps(self.event_clock.to_state()).decode()
        now_ms = self._state_time = max(int(self.clock() * 1000), self._state_time + 1)
        states = {STATE_KEY: data, CLOCK_KEY: clock}
        if self.position is not None:
            states[POSITION_KEY] = str(self.position)
        # One insert: the state and the position it covers are saved together or not at all.
        await self.retry.run("save detector state", lambda: asyncio.to_thread(store.save_states, states, now_ms))
        self.save_seconds = time.perf_counter() - started
        self._last_save = self.clock()
        self._dirty = False
