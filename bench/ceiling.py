"""The ceiling: a bare aiokafka consumer that reads the topics and ``orjson.loads`` each value.

Run as its own process (``python -m bench.ceiling``) so it shares nothing with the benchmark
driver or the worker; it prints one JSON line. Fresh consumer group, ``auto_offset_reset``
earliest, no offset commits, ``getmany`` with a large ``max_records``, and nothing else per
message: no validation, no pricing, no storage. This is what the Python Kafka client itself can
deliver on this machine, the upper bound for any aiokafka-based worker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

__all__ = ["consume"]


async def consume(
    bootstrap: str, topics: list[str], expect: int, group: str, *, timeout_s: float = 300.0, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Read until ``expect`` messages are decoded; return counts and timings (seconds)."""
    t_start = time.perf_counter()
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        **(options or {}),
    )
    await consumer.start()
    t_started = time.perf_counter()
    loads = orjson.loads
    n = 0
    decoded_bytes = 0
    t_first: float | None = None
    deadline = t_start + timeout_s
    try:
        while n < expect and time.perf_counter() < deadline:
            t_call = time.perf_counter()
            batches = await consumer.getmany(timeout_ms=500, max_records=100_000)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                    decoded_bytes += len(record.value)
                n += len(records)
            if t_first is None and n:
                t_first = t_call
    finally:
        t_done = time.perf_counter()
        await consumer.stop()
    consume_s = t_done - (t_first or t_done)
    return {
        "messages": n,
        "complete": n >= expect,
        "bytes": decoded_bytes,
        "startup_s": round(t_started - t_start, 3),
        "first_message_s": round((t_first or t_done) - t_start, 3),
        "total_s": round(t_done - t_start, 3),
        "consume_s": round(consume_s, 3),
        # from the call that returned the first messages to the last message decoded: the
        # read-and-decode rate once the group is joined (startup excluded, like the worker's)
        "events_per_s": round(n / consume_s, 1) if consume_s > 0 else 0.0,
        "events_per_s_including_startup": round(n / (t_done - t_start), 1) if t_done > t_start else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--group", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("topics", nargs="+")
    args = ap.parse_args(argv)
    from telemetry.settings import load_settings

    options = load_settings(kafka_bootstrap=args.bootstrap).kafka_client_options()
    result = asyncio.run(consume(args.bootstrap, args.topics, args.expect, args.group, timeout_s=args.timeout, options=options))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
