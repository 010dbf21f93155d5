"""Decode and price one batch of raw messages. Pure: bytes in, events and dead letters out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from telemetry.contracts.decode import decode_request, decode_verdict
from telemetry.contracts.verdict import VerdictEvent
from telemetry.errors import BadInput
from telemetry.ingest.deadletter import DeadLetter
from telemetry.ingest.join import PricedRequest
from telemetry.pricing import PriceBook


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A Kafka message as consumed: coordinates, key and value bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class DecodedBatch:
    requests: list[PricedRequest] = field(default_factory=list)
    verdicts: list[VerdictEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # Largest accepted event time per source (topic, partition): the detectors' clock input.
    event_times: dict[tuple[str, int], int] = field(default_factory=dict)

    def saw(self, topic: str, partition: int, ts_ms: int) -> None:
        key = (topic, partition)
        if ts_ms > self.event_times.get(key, -1):
            self.event_times[key] = ts_ms


def decode_requests(messages: Sequence[RawMessage], prices: PriceBook, *, max_bytes: int, now_ms: int) -> DecodedBatch:
    """Validate and price request messages; the rest become dead letters."""
    out = DecodedBatch()
    for m in messages:
        try:
            event = decode_request(m.value, max_bytes)
        except BadInput as exc:
            out.dead.append(DeadLetter.of(exc, topic=m.topic, partition=m.partition, offset=m.offset,
                                          key=m.key, value=m.value, received_ms=now_ms))  # fmt: skip
            continue
        cost = prices.cost(
            provider=event.provider or None,
            model=event.served_model,
            ts_ms=event.ts,
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cached_input_tokens=event.cached_input_tokens,
            reasoning_tokens=event.reasoning_tokens,
            producer_cost_usd=event.cost_usd,
        )
        out.requests.append(PricedRequest(event, cost, m.partition, m.offset))
        out.saw(m.topic, m.partition, event.ts)
    return out


def decode_verdicts(messages: Sequence[RawMessage], *, max_bytes: int, now_ms: int) -> DecodedBatch:
    """Validate verdict messages; the rest become dead letters."""
    out = DecodedBatch()
    for m in messages:
        try:
            verdict = decode_verdict(m.value, max_bytes)
        except BadInput as exc:
            out.dead.append(DeadLetter.of(exc, topic=m.topic, partition=m.partition, offset=m.offset,
                                          key=m.key, value=m.value, received_ms=now_ms))  # fmt: skip
            continue
        out.verdicts.append(verdict)
        out.saw(m.topic, m.partition, verdict.ts)
    return out
