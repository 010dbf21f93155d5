"""Background delivery of alerts to webhook channels (Slack, PagerDuty, Alertmanager, generic).

The worker delivers through the durable outbox (:mod:`telemetry.alerting.outbox`: recorded in
``alert_deliveries`` before delivery, resumed after a restart), which uses :func:`render` and
the HTTP conventions of this module. :class:`WebhookDispatcher` below is the in-memory variant
(nothing survives the process), kept for embedding without ClickHouse.

Webhooks are the best-effort leg of alerting: every alert is on the ``<prefix>alerts`` topic and
in the ``alerts`` table whatever happens here. So delivery never blocks or fails the stream:
:meth:`WebhookDispatcher.submit` only renders the payload and appends it to an in-memory queue;
one worker task per channel posts it, retrying transient failures.

Contract of one delivery (one alert to one channel):

- success: any 2xx response. Counted ``delivered``.
- retried (counted ``retried`` per extra attempt): network errors, timeouts, 408, 429 and 5xx.
  Back-off ``min(max_delay_s, base_delay_s * 2**(n-1))`` with equal jitter (half fixed, half
  random); a ``Retry-After`` header (seconds or HTTP date) is honoured when longer.
- failed (counted ``failed``, logged once): any other status (4xx, and 3xx: redirects are not
  followed, a POST body would be lost and headers could leak to another host), an invalid URL,
  a payload that cannot be built (PagerDuty channel without routing key), ``max_attempts``
  used up, or the next attempt would start later than ``max_age_s`` after :meth:`submit`.
- dropped (counted ``dropped``, logged as a warning at most every 10 s per channel): the
  channel's queue already held ``queue_size`` pending deliveries; the oldest pending one goes.

Order: one worker per channel name sends its deliveries one at a time, in submit order, so a
resolve never overtakes its trigger (a retrying delivery holds back the ones behind it on that
channel only; other channels are independent). Queues are bounded per channel, so a dead Slack
webhook cannot push PagerDuty deliveries out.

Logs are structured (``extra``: channel, kind, fingerprint, alert status, attempts, http_status,
error class) and never contain the URL, the routing key, header values, response bodies or
exception messages (aiohttp puts the URL in those).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
import orjson

from telemetry.alerting import payloads
from telemetry.alerting.channels import WebhookChannel
from telemetry.contracts.alert import Alert

__all__ = ["SEVERITY_RANK", "WebhookDispatcher", "render", "severity_allows"]

log = logging.getLogger(__name__)

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
"""Order of the ``severity`` label; an unknown or missing label ranks as critical (it is sent)."""

_USER_AGENT = "llm-telemetry-webhooks/1"
_DROP_LOG_INTERVAL_S = 10.0


def severity_allows(alert: Alert, channel: WebhookChannel) -> bool:
    """True when the alert's ``severity`` label is at least ``channel.min_severity``.

    A missing or unknown severity is sent everywhere: a typo must not silence an alert.
    """
    rank = SEVERITY_RANK.get(alert.labels.get("severity", ""), max(SEVERITY_RANK.values()))
    return rank >= SEVERITY_RANK.get(channel.min_severity, 0)


def render(alert: Alert, channel: WebhookChannel, *, external_url: str = "") -> dict[str, Any]:
    """The payload for ``channel.kind``: slack -> :func:`payloads.slack`, pagerduty ->
    :func:`payloads.pagerduty` (``channel.routing_key``), alertmanager ->
    :func:`payloads.alertmanager` (one alert, receiver = channel name), webhook ->
    :func:`payloads.generic`. Raises ValueError for an unknown kind or a PagerDuty channel
    without a routing key."""
    kind = channel.kind
    if kind == "slack":
        return payloads.slack(alert)
    if kind == "pagerduty":
        return payloads.pagerduty(alert, routing_key=channel.routing_key)
    if kind == "alertmanager":
        return payloads.alertmanager([alert], receiver=channel.name, external_url=external_url)
    if kind == "webhook":
        return payloads.generic(alert)
    raise ValueError(f"unknown channel kind {kind!r}")


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(slots=True)
class _Delivery:
    """One alert rendered for one channel, waiting in that channel's queue."""

    channel: WebhookChannel
    alert: Alert
    body: bytes
    submitted: float  # time.monotonic()


@dataclass(slots=True)
class _Lane:
    """The queue and worker of one channel name."""

    queue: deque[_Delivery]
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    dropped_since_log: int = 0
    last_drop_log: float = float("-inf")


_Outcome = Literal["delivered", "retry", "failed"]


class WebhookDispatcher:
    """Delivers alerts to configured channels in the background.

    Never blocks the caller (the stream); retries with exponential back-off + jitter on network
    errors / 408 / 429 / 5xx (honours Retry-After); gives up after ``max_attempts`` attempts or
    ``max_age_s`` after submit, and logs (structured, WITHOUT the URL or any secret) and counts
    the failure; 4xx other than 408/429 is not retried. Bounded queue per channel; when full,
    the oldest pending delivery is dropped with a counted warning (the alert is on the Kafka
    topic and in the table regardless).

    Use from one event loop: ``await start()``, then ``submit()`` from coroutines/callbacks on
    that loop, ``await drain(t)`` and ``await stop()`` at shutdown. ``queue_size`` bounds each
    channel's pending deliveries. ``max_age_s`` (default 15 min) bounds how long after
    :meth:`submit` a delivery may still be attempted. ``external_url`` is passed to the
    Alertmanager format. ``stats`` counts ``delivered``, ``retried`` (extra attempts),
    ``failed`` and ``dropped`` (queue full, or still pending at :meth:`stop`).
    """

    def __init__(
        self,
        *,
        max_attempts: int = 8,
        base_delay_s: float = 0.5,
        max_delay_s: float = 60.0,
        queue_size: int = 10_000,
        timeout_s: float = 10.0,
        max_age_s: float = 900.0,
        external_url: str = "",
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if base_delay_s < 0 or max_delay_s < 0 or timeout_s <= 0 or max_age_s <= 0:
            raise ValueError("delays must be >= 0, timeout_s and max_age_s > 0")
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self.external_url = external_url
        self._rng = rng
        self.stats: dict[str, int] = {"delivered": 0, "retried": 0, "failed": 0, "dropped": 0}
        self._lanes: dict[str, _Lane] = {}
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._session: aiohttp.ClientSession | None = None
        self._state: Literal["new", "running", "stopped"] = "new"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session and start a worker for every channel already queued. Idempotent."""
        if self._state == "running":
            return
        if self._state == "stopped":
            raise RuntimeError("a stopped WebhookDispatcher cannot be restarted; build a new one")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": _USER_AGENT},
        )
        self._state = "running"
        for name, lane in self._lanes.items():
            self._ensure_worker(name, lane)

    async def stop(self) -> None:
        """Cancel the workers and close the session. Deliveries still pending (including one
        in flight) are abandoned, counted ``dropped`` and logged. Call :meth:`drain` first to
        give them a chance. Idempotent."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        abandoned = self._unfinished
        if abandoned:
            self.stats["dropped"] += abandoned
            log.warning(
                "webhook dispatcher stopped with %d deliveries pending; they are dropped",
                abandoned,
                extra={"event": "webhook_stop_dropped", "pending": abandoned},
            )
        for lane in self._lanes.values():
            lane.queue.clear()
            lane.task = None
        self._unfinished = 0
        self._idle.set()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self, timeout_s: float) -> None:
        """Wait until every submitted delivery is delivered, failed or dropped, at most
        ``timeout_s``. Returns normally on timeout too (check :attr:`pending`); a dispatcher
        that was never started only drains if nothing is pending."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            log.warning(
                "webhook drain timed out with %d deliveries pending",
                self._unfinished,
                extra={"event": "webhook_drain_timeout", "pending": self._unfinished},
            )

    @property
    def pending(self) -> int:
        """Deliveries submitted and not yet delivered, failed or dropped (in flight included)."""
        return self._unfinished

    # -- submit -------------------------------------------------------------------------------

    def submit(self, alert: Alert, channels: Sequence[WebhookChannel]) -> None:
        """Queue ``alert`` for every channel whose ``min_severity`` it meets; return at once.

        Synchronous, never blocks, never raises for delivery problems: O(1) per channel
        (render + append). Must be called on the dispatcher's event loop thread. A payload
        that cannot be rendered (PagerDuty channel without routing key) is counted ``failed``
        and logged; after :meth:`stop` deliveries are counted ``dropped``.
        """
        for channel in channels:
            if not severity_allows(alert, channel):
                continue
            if self._state == "stopped":
                self.stats["dropped"] += 1
                log.warning(
                    "webhook dispatcher is stopped; delivery to channel %s dropped",
                    channel.name,
                    extra=self._fields(channel, alert, event="webhook_dropped_stopped"),
                )
                continue
            try:
                body = orjson.dumps(render(alert, channel, external_url=self.external_url))
            except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
                self.stats["failed"] += 1
                log.error(
                    "webhook payload for channel %s cannot be built (%s); not sent",
                    channel.name,
                    type(exc).__name__,
                    extra=self._fields(
                        channel, alert, event="webhook_render_failed", error=type(exc).__name__
                    ),
                )
                continue
            self._enqueue(_Delivery(channel=channel, alert=alert, body=body, submitted=time.monotonic()))

    def _enqueue(self, delivery: _Delivery) -> None:
        name = delivery.channel.name
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane(queue=deque())
        if len(lane.queue) >= self.queue_size:
            oldest = lane.queue.popleft()
            self._finish_one()
            self.stats["dropped"] += 1
            lane.dropped_since_log += 1
            now = time.monotonic()
            if now - lane.last_drop_log >= _DROP_LOG_INTERVAL_S:
                log.warning(
                    "webhook queue of channel %s is full (%d); dropped %d oldest pending deliveries",
                    name,
                    self.queue_size,
                    lane.dropped_since_log,
                    extra=self._fields(oldest.channel, oldest.alert, event="webhook_dropped",
                                       dropped=lane.dropped_since_log),
                )
                lane.dropped_since_log = 0
                lane.last_drop_log = now
        lane.queue.append(delivery)
        self._unfinished += 1
        self._idle.clear()
        lane.wakeup.set()
        if self._state == "running":
            self._ensure_worker(name, lane)

    def _ensure_worker(self, name: str, lane: _Lane) -> None:
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(self._worker(lane), name=f"webhook:{name}")

    def _finish_one(self) -> None:
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            self._idle.set()

    # -- delivery -----------------------------------------------------------------------------

    async def _worker(self, lane: _Lane) -> None:
        """Send the lane's deliveries one by one, in order, forever (until cancelled)."""
        while True:
            if not lane.queue:
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            delivery = lane.queue.popleft()
            try:
                await self._deliver(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not kill the channel's worker
                self.stats["failed"] += 1
                log.error(
                    "webhook delivery to channel %s failed unexpectedly (%s)",
                    delivery.channel.name,
                    type(exc).__name__,
                    extra=self._fields(delivery.channel, delivery.alert, event="webhook_failed",
                                       error=type(exc).__name__),
                )
            finally:
                if self._state == "running":
                    self._finish_one()

    async def _deliver(self, d: _Delivery) -> None:
        """Attempt one delivery until it succeeds or fails for good; update stats and log."""
        deadline = d.submitted + self.max_age_s
        attempt = 0
        http_status: int | None = None
        error: str | None = None
        while True:
            if time.monotonic() > deadline:
                self._give_up(d, attempt, http_status, error, reason="max_age")
                return
            attempt += 1
            outcome, http_status, error, retry_after = await self._attempt(d)
            if outcome == "delivered":
                self.stats["delivered"] += 1
                if attempt > 1:
                    log.info(
                        "webhook delivered to channel %s after %d attempts",
                        d.channel.name,
                        attempt,
                        extra=self._fields(d.channel, d.alert, event="webhook_delivered", attempts=attempt),
                    )
                return
            if outcome == "failed":
                self._give_up(d, attempt, http_status, error, reason="rejected")
                return
            if attempt >= self.max_attempts:
                self._give_up(d, attempt, http_status, error, reason="max_attempts")
                return
            delay = self._backoff_s(attempt)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if time.monotonic() + delay > deadline:
                self._give_up(d, attempt, http_status, error, reason="max_age")
                return
            self.stats["retried"] += 1
            log.debug(
                "webhook delivery to channel %s will be retried in %.3fs",
                d.channel.name,
                delay,
                extra=self._fields(d.channel, d.alert, event="webhook_retry", attempts=attempt,
                                   http_status=http_status, error=error, delay_s=round(delay, 3)),
            )
            await asyncio.sleep(delay)

    async def _attempt(self, d: _Delivery) -> tuple[_Outcome, int | None, str | None, float | None]:
        """One POST. Returns (outcome, http status, error class name, Retry-After seconds)."""
        session = self._session
        if session is None:
            raise RuntimeError("dispatcher is not running")
        headers = {"Content-Type": "application/json", **d.channel.headers}
        try:
            async with session.post(
                d.channel.url, data=d.body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                retry_after = _retry_after_s(resp.headers.get("Retry-After"))
                await resp.read()  # release the connection for reuse; the body is never logged
        except asyncio.CancelledError:
            raise
        except aiohttp.InvalidURL as exc:  # a configuration error: retrying cannot help
            return "failed", None, type(exc).__name__, None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return "retry", None, type(exc).__name__, None
        if 200 <= status < 300:
            return "delivered", status, None, None
        if status in (408, 429) or status >= 500:
            return "retry", status, None, retry_after
        return "failed", status, None, None

    def _backoff_s(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based): exponential, capped, equal jitter."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** min(attempt - 1, 62)))
        return float(ceiling / 2 + self._rng() * ceiling / 2)

    def _give_up(
        self, d: _Delivery, attempts: int, http_status: int | None, error: str | None, *, reason: str
    ) -> None:
        self.stats["failed"] += 1
        cause = f"HTTP {http_status}" if http_status is not None else (error or "not attempted")
        log.error(
            "webhook delivery to channel %s failed for good after %d attempts (%s: %s); "
            "the alert remains on the alerts topic and table",
            d.channel.name,
            attempts,
            reason,
            cause,
            extra=self._fields(d.channel, d.alert, event="webhook_failed", reason=reason, attempts=attempts,
                               http_status=http_status, error=error),
        )

    @staticmethod
    def _fields(channel: WebhookChannel, alert: Alert, **more: Any) -> dict[str, Any]:
        """Structured log fields: names and ids only, never the URL, keys or header values."""
        fields: dict[str, Any] = {
            "channel": channel.name,
            "channel_kind": channel.kind,
            "fingerprint": alert.fingerprint,
            "alert_status": alert.status,
            "alertname": alert.alertname,
            "route": alert.route,
        }
        fields.update(more)
        return fields
