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
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from telemetry.alerting.delivery import DeliveryPolicy
from telemetry.alerting.outbox import DeliveryOutbox
from telemetry.contracts.alert import Alert
from telemetry.detect.engine import DetectionEngine
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
        self.engine = DetectionEngine(routes, env=settings.env)
        self.dispatcher = DeliveryOutbox(
            routes, policy=DeliveryPolicy(max_age_s=settings.delivery_max_age_hours * 3600), clock=clock
        )
        self.counters = self.dispatcher.counters  # deliveries.*, alerts.publish_failed (stats page)
        self.watermark_ms = 0
        self.sent = 0
        self._store: Store | None = None
        self._producer: AIOKafkaProducer | None = None
        self._last_save = 0.0
        self._dirty = False

    async def start(self, store: Store, producer: AIOKafkaProducer) -> None:
        self._store, self._producer = store, producer
        saved = await self.retry.run("load detector state", lambda: asyncio.to_thread(store.load_state, STATE_KEY))
        if saved:
            self.engine = DetectionEngine.restore(saved.encode("latin-1"), self.routes, env=self.settings.env)
            self.watermark_ms = self.engine.now_ms
            log.info("detector state restored", extra={"watermark_ms": self.watermark_ms})
        await self.dispatcher.start(DeliveryStore(store.client, store.db), self.retry)

    async def stop(self) -> None:
        if self._store is not None and self._dirty:
            await self._save()
        await self.dispatcher.stop(grace_s=5.0)  # unfinished deliveries stay pending: resumed at start

    async def on_batch(self, outcome: JoinOutcome) -> None:
        requests, verdicts = request_facts(outcome), verdict_facts(outcome)
        if not requests and not verdicts:
            return
        if requests:
            self.engine.observe_requests(requests)
            self.watermark_ms = max(self.watermark_ms, max(f.ts_ms for f in requests))
        if verdicts:
            self.engine.observe_verdicts(verdicts)
            self.watermark_ms = max(self.watermark_ms, max(f.ts_ms for f in verdicts))
        self._dirty = True
        alerts = self.engine.evaluate(self.watermark_ms)
        if alerts:
            await self.deliver(alerts)
            await self._save()
        elif self.clock() - self._last_save >= self.save_every_s:
            await self._save()

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
        data = self.engine.snapshot().decode("latin-1")
        now_ms = int(self.clock() * 1000)
        await self.retry.run("save detector state", lambda: asyncio.to_thread(store.save_state, STATE_KEY, data, now_ms))
        self._last_save = self.clock()
        self._dirty = False
