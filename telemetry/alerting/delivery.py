"""The webhook outbox's decisions: pure functions of a delivery, an attempt's result and the time.

One *delivery* is one notification (an alert's firing, repeat or resolution, identified by its
CloudEvent id) to one channel. It is recorded ``pending`` in the ``alert_deliveries`` table before
its first attempt, and every attempt writes its new state there, so a restarted worker resumes
each delivery with its attempt count and its next attempt time (see
:mod:`telemetry.alerting.outbox`, the imperative shell, and
:mod:`telemetry.storage.deliveries`).

The rules (:class:`DeliveryPolicy`; time is always an argument, in epoch milliseconds):

- an attempt that got a 2xx response -> ``delivered``;
- a network error, a timeout, HTTP 408, 429 or 5xx -> still ``pending``, next attempt after
  ``base_delay_s * 2**(attempts-1)`` capped at ``max_delay_s``, with equal jitter (half fixed,
  half random), or after ``Retry-After`` when the receiver asks for longer;
- any other status (other 4xx; 3xx, since redirects are not followed), an invalid URL, a payload
  that cannot be built, a channel no longer configured -> ``failed`` at once (retrying cannot help);
- a delivery whose next attempt would start more than ``max_age_s`` after it was recorded
  (``TELEMETRY_DELIVERY_MAX_AGE_HOURS``) -> ``failed``; so is one found older than that.

Nothing here does I/O, reads a clock or draws a random number: ``jitter`` in [0, 1) is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "AttemptResult",
    "Delivery",
    "DeliveryPolicy",
    "DeliveryState",
    "Verdict",
    "judge",
]

DeliveryState = Literal["pending", "delivered", "failed"]
Verdict = Literal["delivered", "retry", "rejected"]

_ERROR_MAX = 200
"""``last_error`` is cut to this many characters (it never holds a URL or a response body)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification to one channel, as stored in one row of ``alert_deliveries``.

    ``payload`` is what is needed to rebuild the request after a restart: the alert as JSON
    (:func:`telemetry.alerting.payloads.generic`). The channel's URL, routing key and headers are
    never stored; they are taken from the routes file at send time.
    """

    alert_id: str
    channel: str
    channel_kind: str
    fingerprint: str
    alertname: str
    route: str
    status: str
    sequence: int
    state: DeliveryState
    attempts: int
    last_status: str
    last_error: str
    next_attempt_ms: int
    created_ms: int
    updated_ms: int
    payload: str

    @property
    def key(self) -> tuple[str, str]:
        return self.alert_id, self.channel

    def due(self, now_ms: int) -> bool:
        return self.state == "pending" and self.next_attempt_ms <= now_ms


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one POST gave: an HTTP status, or the class name of the error that prevented one.

    ``permanent`` marks errors that cannot go away by retrying (an invalid URL, a payload that
    cannot be built). ``retry_after_s``: the receiver's ``Retry-After``, when it sent one.
    """

    http_status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    permanent: bool = False

    @property
    def status_text(self) -> str:
        """``last_status``: the HTTP status as text, else the error class."""
        if self.http_status is not None:
            return str(self.http_status)
        return self.error or "unknown"


def judge(result: AttemptResult) -> Verdict:
    """2xx -> delivered; network errors, timeouts, 408, 429, 5xx -> retry; the rest -> rejected."""
    status = result.http_status
    if status is None:
        return "rejected" if result.permanent else "retry"
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "rejected"


def _short(text: str) -> str:
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 3] + "..."


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Retry, back-off and give-up rules of the outbox (see the module docstring)."""

    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_age_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if not (self.base_delay_s >= 0 and self.max_delay_s >= 0 and self.max_age_s > 0):
            raise ValueError("delays must be >= 0 and max_age_s > 0")

    # -- creation -----------------------------------------------------------------------------
    @staticmethod
    def new(
        *, alert_id: str, channel: str, channel_kind: str, fingerprint: str, alertname: str, route: str,
        status: str, sequence: int, payload: str, now_ms: int,
    ) -> Delivery:  # fmt: skip
        """A delivery recorded now, due at once, never attempted."""
        return Delivery(
            alert_id=alert_id, channel=channel, channel_kind=channel_kind, fingerprint=fingerprint,
            alertname=alertname, route=route, status=status, sequence=sequence, state="pending", attempts=0,
            last_status="", last_error="", next_attempt_ms=now_ms, created_ms=now_ms, updated_ms=now_ms,
            payload=payload,
        )  # fmt: skip

    # -- timing -------------------------------------------------------------------------------
    def backoff_s(self, attempts: int, jitter: float) -> float:
        """Delay after the ``attempts``-th failed attempt (1-based): exponential, capped, equal jitter."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0 ** min(max(attempts, 1) - 1, 62)))
        return ceiling / 2 + min(max(jitter, 0.0), 1.0) * ceiling / 2

    def deadline_ms(self, d: Delivery) -> int:
        """No attempt starts after this: ``created + max_age``."""
        return d.created_ms + int(self.max_age_s * 1000)

    def expired(self, d: Delivery, now_ms: int) -> bool:
        return d.state == "pending" and now_ms > self.deadline_ms(d)

    # -- transitions --------------------------------------------------------------------------
    @staticmethod
    def _stamp(d: Delivery, now_ms: int) -> int:
        """``updated_at`` of the next version: strictly after the previous one (the table keeps
        the row with the largest ``updated_at``)."""
        return max(now_ms, d.updated_ms + 1)

    def after_attempt(self, d: Delivery, result: AttemptResult, now_ms: int, *, jitter: float) -> Delivery:
        """The delivery's next version after one attempt that ended at ``now_ms``."""
        if d.state != "pending":
            raise ValueError(f"delivery {d.key} is {d.state}, not pending")
        attempts = d.attempts + 1
        verdict = judge(result)
        status_text = result.status_text
        updated = self._stamp(d, now_ms)
        if verdict == "delivered":
            return replace(d, state="delivered", attempts=attempts, last_status=status_text, last_error="",
                           next_attempt_ms=now_ms, updated_ms=updated)  # fmt: skip
        if verdict == "rejected":
            cause = f"HTTP {result.http_status}" if result.http_status is not None else status_text
            return replace(d, state="failed", attempts=attempts, last_status=status_text,
                           last_error=_short(f"rejected: {cause}; not retried"), next_attempt_ms=now_ms,
                           updated_ms=updated)  # fmt: skip
        delay_s = self.backoff_s(attempts, jitter)
        if result.retry_after_s is not None and math.isfinite(result.retry_after_s):
            delay_s = max(delay_s, result.retry_after_s)
        next_ms = now_ms + int(math.ceil(delay_s * 1000))
        cause = f"HTTP {result.http_status}" if result.http_status is not None else status_text
        if next_ms > self.deadline_ms(d):
            return replace(d, state="failed", attempts=attempts, last_status=status_text,
                           last_error=_short(f"gave up: {cause}, next attempt would be later than "
                                             f"{self.max_age_s / 3600:g} h after the alert"),
                           next_attempt_ms=now_ms, updated_ms=updated)  # fmt: skip
        return replace(d, attempts=attempts, last_status=status_text, last_error=_short(cause),
                       next_attempt_ms=next_ms, updated_ms=updated)  # fmt: skip

    def give_up(self, d: Delivery, now_ms: int, *, status: str, reason: str) -> Delivery:
        """``failed`` without an attempt: too old, channel removed, payload cannot be built."""
        return replace(d, state="failed", last_status=status, last_error=_short(reason), next_attempt_ms=now_ms,
                       updated_ms=self._stamp(d, now_ms))  # fmt: skip

    def expire(self, d: Delivery, now_ms: int) -> Delivery:
        """``failed``: older than ``max_age_s`` and still not delivered."""
        last = d.last_status or "never_attempted"
        return self.give_up(d, now_ms, status=last if d.attempts else "expired",
                            reason=f"gave up: not delivered within {self.max_age_s / 3600:g} h"
                                   + (f" (last: {d.last_error})" if d.last_error else ""))  # fmt: skip
