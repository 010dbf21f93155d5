"""The webhook outbox: every notification to every channel is recorded before it is sent, sent with
retry and back-off, and resumed after a restart.

:meth:`DeliveryOutbox.submit` (called by the alerting observer after the alert is on the topic
and in the ``alerts`` table) writes one ``pending`` row per (notification, channel) to
``alert_deliveries`` and returns once ClickHouse has them; only then are they queued. HTTP happens
in background tasks, so delivery never blocks ingest. Each attempt's outcome is written back
(attempts, last status, next attempt time) before the next one; ``delivered`` and ``failed`` are
final. :meth:`DeliveryOutbox.start` loads every ``pending`` delivery and resumes it where it
stopped: same attempt count, same next attempt time. The decisions (what is retried, when, when to
give up) are the pure :class:`telemetry.alerting.delivery.DeliveryPolicy`.

Order: deliveries of one alert (fingerprint) to one channel are sent one at a time in the order
they were recorded, so a resolve never overtakes its trigger, also across restarts; different
alerts and different channels do not wait for each other. At most ``concurrency`` requests are in
flight per channel.

At least once: a worker killed between a receiver's 2xx and the ``delivered`` row sends that
notification again after the restart (PagerDuty's ``dedup_key``, Alertmanager's fingerprint and
the generic payload's fingerprint + sequence let receivers tell). A delivery recorded twice (a
batch redelivered after a crash decides the same alert again) is not: an existing (alert id,
channel) is never recorded again.

Logs are structured (channel, kind, fingerprint, alert id, status, attempts, HTTP status or error
class) and never contain the URL, the routing key, header values or response bodies.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from telemetry.alerting import payloads
from telemetry.alerting.channels import WebhookChannel
from telemetry.alerting.delivery import AttemptResult, Delivery, DeliveryPolicy
from telemetry.alerting.webhooks import _USER_AGENT, _retry_after_s, render
from telemetry.contracts.alert import Alert
from telemetry.retry import RetryPolicy
from telemetry.routes import RoutesConfig
from telemetry.storage.clickhouse import is_transient
from telemetry.storage.deliveries import DeliveryStore

__all__ = ["DeliveryOutbox"]

log = logging.getLogger(__name__)

_ERROR_PAUSE_S = 5.0


@dataclass(slots=True)
class _Lane:
    """Deliveries of one (channel, fingerprint), oldest first, and the task sending them."""

    queue: deque[Delivery] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class DeliveryOutbox:
    """Durable webhook delivery. ``await start(store, retry)``, ``await submit(alerts)`` from the
    stream, ``await stop()`` at shutdown; ``counters`` for the stats page:
    ``deliveries.recorded``, ``deliveries.resumed`` (loaded at start), ``deliveries.delivered``,
    ``deliveries.failed``, ``deliveries.retried`` (attempts that will be retried) and
    ``deliveries.pending`` (now)."""

    def __init__(
        self,
        routes: RoutesConfig,
        *,
        policy: DeliveryPolicy | None = None,
        timeout_s: float = 10.0,
        concurrency: int = 4,
        external_url: str = "",
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.routes = routes
        self.policy = policy or DeliveryPolicy()
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.external_url = external_url
        self.clock = clock
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._store: DeliveryStore | None = None
        self._retry: RetryPolicy | None = None
        self._state_retry = RetryPolicy(base_s=0.5, cap_s=30.0, is_transient=is_transient)
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, store: DeliveryStore, retry: RetryPolicy) -> None:
        """Open the HTTP session, load the pending deliveries and resume them. After
        :meth:`stop`, starts again (a worker that owns detection again)."""
        self._store, self._retry = store, retry
        self._stopping = False
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers={"User-Agent": _USER_AGENT}
        )
        pending = await retry.run("load pending deliveries", lambda: asyncio.to_thread(store.pending))
        for d in pending:
            self._enqueue(d)
        self.counters["deliveries.resumed"] += len(pending)
        if pending:
            log.info("resuming webhook deliveries", extra={"event": "webhook_resume", "pending": len(pending),
                                                           "channels": sorted({d.channel for d in pending})})  # fmt: skip

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let requests in flight finish (at most ``grace_s``), then stop. Deliveries not finished
        stay ``pending`` in the table and are resumed by the next start."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace_s)
        except TimeoutError:
            pass
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        left = self.pending
        if left:
            log.info("webhook deliveries left pending; the next start resumes them",
                     extra={"event": "webhook_stop_pending", "pending": left})  # fmt: skip
        self._lanes.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def pending(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    # -- submit -------------------------------------------------------------------------------
    def plan(self, alerts: Sequence[Alert], now_ms: int) -> list[Delivery]:
        """One new ``pending`` delivery per (alert, channel the routes file sends it to)."""
        planned: dict[tuple[str, str], Delivery] = {}
        for alert in alerts:
            # A missing severity label is sent everywhere (a typo must not silence an alert).
            channels = self.routes.channels_for(alert.route, alert.labels.get("severity", ""))
            if not channels:
                continue
            alert_id = payloads.cloudevent_id(alert)
            body = orjson.dumps(payloads.generic(alert)).decode()
            for channel in channels:
                d = self.policy.new(
                    alert_id=alert_id, channel=channel.name, channel_kind=channel.kind, fingerprint=alert.fingerprint,
                    alertname=alert.alertname, route=alert.route, status=alert.status, sequence=alert.sequence,
                    payload=body, now_ms=now_ms,
                )  # fmt: skip
                planned.setdefault(d.key, d)
        return list(planned.values())

    async def submit(self, alerts: Sequence[Alert], now_ms: int | None = None) -> int:
        """Record the alerts' deliveries (returns when ClickHouse has them), then queue them.
        Deliveries already recorded (in any state) are not recorded again. Returns how many
        were recorded."""
        store, retry = self._store, self._retry
        assert store is not None and retry is not None, "start() first"
        planned = self.plan(alerts, self._now_ms() if now_ms is None else now_ms)
        if not planned:
            return 0
        queued = {d.key for lane in self._lanes.values() for d in lane.queue}
        ids = {d.alert_id for d in planned}
        recorded = await retry.run("find recorded deliveries", lambda: asyncio.to_thread(store.existing, ids))
        fresh = [d for d in planned if d.key not in queued and d.key not in recorded]
        if not fresh:
            return 0
        await retry.run("record deliveries", lambda: asyncio.to_thread(store.record, fresh))
        for d in fresh:
            self._enqueue(d)
        self.counters["deliveries.recorded"] += len(fresh)
        return len(fresh)

    def _enqueue(self, d: Delivery) -> None:
        key = (d.channel, d.fingerprint)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queue.append(d)
        self.counters["deliveries.pending"] = self.pending
        if not self._stopping and (lane.task is None or lane.task.done()):
            lane.task = asyncio.get_running_loop().create_task(self._run(key, lane), name=f"webhook:{d.channel}")

    # -- delivery -----------------------------------------------------------------------------
    async def _run(self, key: tuple[str, str], lane: _Lane) -> None:
        """Send the lane's deliveries one at a time, in order, until it is empty."""
        while lane.queue and not self._stopping:
            d = lane.queue[0]
            try:
                wait_s = await self._step(lane, d)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the lane: the delivery stays pending
                self.counters["deliveries.errors"] += 1
                log.error("webhook delivery to channel %s hit an unexpected error (%s); will try again",
                          d.channel, type(exc).__name__,
                          extra=self._fields(d, event="webhook_error", error=type(exc).__name__))  # fmt: skip
                wait_s = _ERROR_PAUSE_S
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        if not lane.queue and self._lanes.get(key) is lane:
            del self._lanes[key]

    async def _step(self, lane: _Lane, d: Delivery) -> float:
        """Attempt the lane's head if it is due; return how long to wait before the next step."""
        now = self._now_ms()
        if self.policy.expired(d, now):
            await self._finish(lane, self.policy.expire(d, now), reason="max_age")
            return 0.0
        if d.next_attempt_ms > now:
            return (d.next_attempt_ms - now) / 1000
        channel = self.routes.channels.get(d.channel)
        if channel is None:
            await self._finish(lane, self.policy.give_up(d, now, status="channel_removed",
                                                         reason="the channel is no longer in the routes file"),
                               reason="channel_removed")  # fmt: skip
            return 0.0
        self._busy += 1
        self._idle.clear()
        try:
            result = await self._attempt(channel, d)
            new = self.policy.after_attempt(d, result, self._now_ms(), jitter=self.rng())
            if new.state == "pending":
                await self._save(new)
                lane.queue[0] = new
                self.counters["deliveries.retried"] += 1
                log.info(
                    "webhook delivery to channel %s failed (%s); attempt %d, retrying in %.1fs",
                    d.channel, new.last_status, new.attempts, max(0.0, (new.next_attempt_ms - self._now_ms()) / 1000),
                    extra=self._fields(new, event="webhook_retry", last_status=new.last_status),
                )  # fmt: skip
            else:
                await self._finish(lane, new, reason="rejected" if new.state == "failed" else "")
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()
        return 0.0

    async def _finish(self, lane: _Lane, new: Delivery, *, reason: str) -> None:
        """Store a final state, then take the delivery off its lane, count and log it."""
        await self._save(new)
        lane.queue.popleft()
        self.counters[f"deliveries.{new.state}"] += 1
        self.counters["deliveries.pending"] = self.pending
        if new.state == "delivered":
            if new.attempts > 1:
                log.info("webhook delivered to channel %s after %d attempts", new.channel, new.attempts,
                         extra=self._fields(new, event="webhook_delivered"))  # fmt: skip
            return
        log.error(
            "webhook delivery to channel %s failed for good after %d attempts (%s: %s); "
            "it stays in alert_deliveries, the alert is on the alerts topic and table",
            new.channel, new.attempts, reason, new.last_status,
            extra=self._fields(new, event="webhook_failed", reason=reason, last_status=new.last_status,
                               last_error=new.last_error),
        )  # fmt: skip

    async def _save(self, d: Delivery) -> None:
        store = self._store
        assert store is not None
        await self._state_retry.run("record delivery state", lambda: asyncio.to_thread(store.record, [d]))

    async def _attempt(self, channel: WebhookChannel, d: Delivery) -> AttemptResult:
        """One POST of the delivery's payload, rendered for the channel as configured now."""
        try:
            alert = Alert.model_validate_json(d.payload)
            body = orjson.dumps(render(alert, channel, external_url=self.external_url))
        except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
            return AttemptResult(error=f"render_{type(exc).__name__}", permanent=True)
        session = self._session
        if session is None:
            raise RuntimeError("the outbox is not running")
        limit = self._limits.setdefault(channel.name, asyncio.Semaphore(self.concurrency))
        headers = {"Content-Type": "application/json", **channel.headers}
        async with limit:
            try:
                async with session.post(channel.url, data=body, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    retry_after = _retry_after_s(resp.headers.get("Retry-After"))
                    await resp.read()  # release the connection; the body is never logged or stored
            except asyncio.CancelledError:
                raise
            except aiohttp.InvalidURL as exc:  # a configuration error: retrying cannot help
                return AttemptResult(error=type(exc).__name__, permanent=True)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return AttemptResult(error=type(exc).__name__)
        return AttemptResult(http_status=status, retry_after_s=retry_after)

    @staticmethod
    def _fields(d: Delivery, **more: Any) -> dict[str, Any]:
        """Structured log fields: names and ids only, never the URL, keys or header values."""
        return {
            "channel": d.channel, "channel_kind": d.channel_kind, "alert_id": d.alert_id,
            "fingerprint": d.fingerprint, "alertname": d.alertname, "route": d.route, "alert_status": d.status,
            "attempts": d.attempts, **more,
        }  # fmt: skip
