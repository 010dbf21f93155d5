"""Pre-loading: generate the throughput traffic in a process pool and bulk-produce it.

JSON (one event per message, :func:`bench.traffic.encode_chunk`) by default; the OTLP phase
passes :func:`bench.otlp.encode_otlp_chunk` (many spans or log records per message)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.kafkautil import BulkProducer
from bench.traffic import TrafficMix, encode_chunk

__all__ = ["PreloadResult", "preload"]


@dataclass
class PreloadResult:
    requests: int = 0
    verdicts: int = 0
    messages: int = 0  # Kafka messages (= events for JSON; OTLP carries many events per message)
    bytes: int = 0
    seconds: float = 0.0  # generate + produce, wall (overlapped)
    produce_busy_seconds: float = 0.0  # time spent inside the producer calls
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.requests + self.verdicts

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def preload(
    bootstrap: str,
    options: dict[str, Any],
    mix: TrafficMix,
    requests_topic: str,
    verdicts_topic: str,
    *,
    chunk: int = 50_000,
    processes: int = 2,
    compression: str | None = None,
    encoder: Callable[..., Any] = encode_chunk,
    encoder_args: tuple[Any, ...] = (),
    progress: Callable[[str], None] = lambda _: None,
) -> PreloadResult:
    """Generate ``mix`` in ``processes`` worker processes (chunks in order) while this process
    produces the previous chunks; return counts and the wall time of the whole thing.

    ``encoder(mix, first, count, *encoder_args)`` (a module-level function, for the pool) returns
    a batch with ``requests`` and ``verdicts`` lists of ``(key, value)`` messages and, when a
    message holds several events, their counts ``n_requests`` / ``n_verdicts``."""
    producer = BulkProducer(bootstrap, options, compression=compression)
    await producer.start([requests_topic, verdicts_topic])
    result = PreloadResult()
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    last_report = started
    try:
        with ProcessPoolExecutor(max_workers=max(1, processes)) as pool:
            ranges = mix.chunks(chunk)
            window = max(2, processes + 1)
            futures = [loop.run_in_executor(pool, encoder, mix, f, c, *encoder_args) for f, c in ranges[:window]]
            nxt = len(futures)
            for i in range(len(ranges)):
                batch = await futures[i]
                futures[i] = None  # type: ignore[call-overload]
                if nxt < len(ranges):
                    f, c = ranges[nxt]
                    futures.append(loop.run_in_executor(pool, encoder, mix, f, c, *encoder_args))
                    nxt += 1
                await producer.send_all(requests_topic, batch.requests)
                await producer.send_all(verdicts_topic, batch.verdicts)
                result.requests += getattr(batch, "n_requests", len(batch.requests))
                result.verdicts += getattr(batch, "n_verdicts", len(batch.verdicts))
                result.messages += len(batch.requests) + len(batch.verdicts)
                now = time.perf_counter()
                if now - last_report >= 5:
                    last_report = now
                    progress(f"preload: {result.events:,} events in {now - started:.1f}s")
        await producer.flush()
    finally:
        await producer.stop()
    result.seconds = time.perf_counter() - started
    result.produce_busy_seconds = producer.stats.seconds
    result.bytes = producer.stats.bytes
    result.counts = dict(producer.counts)
    return result
