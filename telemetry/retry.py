"""Retry infrastructure calls with capped exponential back-off and jitter, until they succeed.

Bad data never comes here: only calls that fail because Kafka or ClickHouse is unavailable.
While a call is retried the stream waits (back-pressure) and no offset is committed past it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetryPolicy:
    """Delays: base * 2**attempt, capped, with +-25% jitter. ``is_transient`` decides what to retry."""

    def __init__(self, *, base_s: float = 0.2, cap_s: float = 10.0, is_transient: Callable[[BaseException], bool]) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.is_transient = is_transient
        self.retries = 0

    def delay(self, attempt: int) -> float:
        raw = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        return float(raw * random.uniform(0.75, 1.25))

    async def run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()`` until it succeeds. Re-raises errors that are not transient (bugs)."""
        attempt = 0
        first_failure = 0.0
        while True:
            try:
                result = await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.is_transient(exc):
                    raise
                if attempt == 0:
                    first_failure = time.monotonic()
                delay = self.delay(attempt)
                if attempt < 3 or attempt % 10 == 0:
                    log.warning(
                        "infrastructure call failed; retrying",
                        extra={"operation": what, "attempt": attempt + 1, "retry_in_s": round(delay, 2),
                               "error": f"{type(exc).__name__}: {str(exc)[:300]}"},
                    )  # fmt: skip
                attempt += 1
                self.retries += 1
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.warning(
                    "infrastructure call recovered",
                    extra={"operation": what, "attempts": attempt + 1,
                           "outage_s": round(time.monotonic() - first_failure, 2)},
                )  # fmt: skip
            return result
