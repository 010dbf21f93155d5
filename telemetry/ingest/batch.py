"""Decode and price one batch of raw messages. Pure: bytes in, events and dead letters out.

Per-message isolation: whatever goes wrong with one message (bad input, or any exception while
decoding, validating or pricing it) makes that message a dead letter; nothing here raises for
one message. Time is an argument (``now_ms``): nothing here reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from telemetry.contracts.decode import decode_request, decode_verdict, unexpected
from telemetry.contracts.verdict import VerdictEvent
from telemetry.errors import BadInput
from telemetry.ingest.deadletter import DeadLetter
from telemetry.ingest.join import PricedRequest
from telemetry.ingest.shard import channel, shard_of
from telemetry.pricing import PriceBook

log = logging.getLogger(__name__)

_NO_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A Kafka message as consumed: its original coordinates (the topic, partition and offset
    the producer wrote to), key and value bytes, and the join shard it was routed to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    shard: int = 0
    item: int = 0
    """0: the message itself; n >= 1: the n-th event of an OTLP message (telemetry.otlp.split)."""
    refusal: BadInput | None = None
    """Set when the message was refused before it got here (an OTLP message or span that could
    not be read or mapped): it becomes a dead letter with this reason."""


@dataclass(slots=True)
class DecodedBatch:
    requests: list[PricedRequest] = field(default_factory=list)
    verdicts: list[VerdictEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # Largest accepted event time per source (topic, channel: the input partition, and with
    # several shards the shard too, see telemetry.ingest.shard.channel): the detectors' clock input.
    event_times: dict[tuple[str, int], int] = field(default_factory=dict)

    def saw(self, topic: str, partition: int, ts_ms: int) -> None:
        key = (topic, partition)
        if ts_ms > self.event_times.get(key, -1):
            self.event_times[key] = ts_ms

    def reject(self, m: RawMessage, error: BadInput, now_ms: int) -> None:
        self.dead.append(DeadLetter.of(error, topic=m.topic, partition=m.partition, offset=m.offset,
                                       key=m.key, value=m.value, received_ms=now_ms, item=m.item))  # fmt: skip


def _latest(now_ms: int, max_future_ms: int | None) -> int:
    return _NO_LIMIT if max_future_ms is None else now_ms + max_future_ms


def _in_future(ts_ms: int, now_ms: int, max_future_ms: int | None) -> BadInput:
    ahead = (ts_ms - now_ms) / 1000.0
    return BadInput("ts_in_future", f"ts {ts_ms} is {ahead:,.0f} s ahead of the worker's clock "
                                    f"(at most {(max_future_ms or 0) / 1000.0:,.0f} s allowed)")  # fmt: skip


def _misrouted(m: RawMessage, request_id: str, shards: int) -> BadInput | None:
    """A message routed by a request id other than the one it decodes to (e.g. ``request_id``
    given twice): joining it here could count it twice, so it is refused."""
    if shards > 1 and shard_of(request_id, shards) != m.shard:
        return BadInput("ambiguous_request_id", "the request id read for routing differs from the decoded one "
                                                "(is a key given twice?)")  # fmt: skip
    return None


def _unexpected(exc: Exception, m: RawMessage, logged: bool) -> BadInput:
    if not logged:  # once per batch: a bug here shows with its traceback, without flooding the log
        log.warning("unexpected error decoding a message; dead-lettered as decode_error",
                    extra={"topic": m.topic, "partition": m.partition, "offset": m.offset}, exc_info=exc)  # fmt: skip
    return unexpected(exc)


def decode_requests(
    messages: Sequence[RawMessage], prices: PriceBook, *, max_bytes: int, now_ms: int, max_future_ms: int | None = None,
    shards: int = 1,
) -> DecodedBatch:
    """Validate and price request messages; the rest become dead letters. Events dated more
    than ``max_future_ms`` after ``now_ms`` are dead letters (``ts_in_future``); ``None``: no
    limit. With ``shards`` > 1, each message must decode to a request id of its ``shard``
    (``ambiguous_request_id`` otherwise). Never raises for a message."""
    out = DecodedBatch()
    latest = _latest(now_ms, max_future_ms)
    cost = prices.cost
    logged = False
    for m in messages:
        if m.refusal is not None:
            out.reject(m, m.refusal, now_ms)
            continue
        try:
            event = decode_request(m.value, max_bytes)
            if event.ts > latest:
                raise _in_future(event.ts, now_ms, max_future_ms)
            misrouted = _misrouted(m, event.request_id, shards)
            if misrouted is not None:
                raise misrouted
            priced = PricedRequest(event, cost(
                provider=event.provider or None,
                model=event.served_model,
                ts_ms=event.ts,
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cached_input_tokens=event.cached_input_tokens,
                cache_write_tokens=event.cache_write_tokens,
                reasoning_tokens=event.reasoning_tokens,
                producer_cost_usd=event.cost_usd,
            ), m.partition, m.offset)  # fmt: skip
        except BadInput as exc:
            out.reject(m, exc, now_ms)
            continue
        except Exception as exc:  # noqa: BLE001 - one message never stops the worker
            out.reject(m, _unexpected(exc, m, logged), now_ms)
            logged = True
            continue
        out.requests.append(priced)
        out.saw(m.topic, channel(m.partition, m.shard, shards), event.ts)
    return out


def decode_verdicts(
    messages: Sequence[RawMessage], *, max_bytes: int, now_ms: int, max_future_ms: int | None = None,
    shards: int = 1,
) -> DecodedBatch:
    """Validate verdict messages; the rest become dead letters (``ts_in_future`` as for
    :func:`decode_requests`). Never raises for a message."""
    out = DecodedBatch()
    latest = _latest(now_ms, max_future_ms)
    logged = False
    for m in messages:
        if m.refusal is not None:
            out.reject(m, m.refusal, now_ms)
            continue
        try:
            verdict = decode_verdict(m.value, max_bytes)
            if verdict.ts > latest:
                raise _in_future(verdict.ts, now_ms, max_future_ms)
            misrouted = _misrouted(m, verdict.request_id, shards)
            if misrouted is not None:
                raise misrouted
        except BadInput as exc:
            out.reject(m, exc, now_ms)
            continue
        except Exception as exc:  # noqa: BLE001 - one message never stops the worker
            out.reject(m, _unexpected(exc, m, logged), now_ms)
            logged = True
            continue
        out.verdicts.append(verdict)
        out.saw(m.topic, channel(m.partition, m.shard, shards), verdict.ts)
    return out
