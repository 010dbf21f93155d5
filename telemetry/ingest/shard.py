"""Which shard owns a request id: the key both join inputs are repartitioned by. Pure.

The join is exact only if a request and all of its verdicts (and all their duplicates) are
decided by one owner. Producers partition as they like (murmur2 in Java and aiokafka, CRC32 in
librdkafka/kcat, round robin without a key), so the worker re-keys both inputs by request id
with its own function before the join (``telemetry.worker.repartition``); shard ``s`` of the
internal requests topic and shard ``s`` of the internal verdicts topic always go to the same
worker (a range assignment over co-partitioned topics).

``shard_of`` is CRC-32 (IEEE) of the id's UTF-8 bytes modulo the shard count: ClickHouse's
``CRC32(request_id) % shards`` computes the same, so a worker that takes a shard over can load
exactly that shard's requests from storage.
"""

from __future__ import annotations

import zlib
from typing import Any, Literal

import orjson

from telemetry.contracts.otel import normalize_request, normalize_verdict

Kind = Literal["requests", "verdicts"]


def shard_of(request_id: str, shards: int) -> int:
    """The shard of ``request_id`` among ``shards`` (>= 1)."""
    return zlib.crc32(request_id.encode("utf-8", "surrogatepass")) % shards


def shard_sql(column: str, shards: int) -> str:
    """The ClickHouse expression equal to :func:`shard_of` of ``column``."""
    return f"modulo(CRC32({column}), {int(shards)})"


_KEY = b'"request_id":"'


def _top_level_id(value: bytes) -> str | None:
    """The id without parsing, when the bytes make it unambiguous: an object whose only
    ``"request_id":"`` comes before any nested object or array, with no escape in the value and
    no ``gen_ai.`` alias anywhere. Otherwise None (the caller parses)."""
    if value[:1] != b"{" or b"gen_ai." in value:
        return None
    at = value.find(_KEY)
    if at < 0 or value.find(_KEY, at + 1) >= 0 or value.find(b"{", 1, at) >= 0 or value.find(b"[", 1, at) >= 0:
        return None
    start = at + len(_KEY)
    end = value.find(b'"', start)
    if end <= start or value.find(b"\\", start, end) >= 0:
        return None
    try:
        return value[start:end].decode()
    except UnicodeDecodeError:
        return None


SHARD_STRIDE = 4096
"""Channels of the detectors' clock: input partition ``p`` through shard ``s`` is partition number
``p * SHARD_STRIDE + s`` of its topic (at most 4096 shards)."""


def channel(partition: int, shard: int, shards: int) -> int:
    """The clock source of messages of input ``partition`` that went through ``shard``. Each
    (partition, shard) is one ordered stream, so the clock, the slowest stream, waits for a
    shard that lags (a worker taking it over, a backlog) instead of running ahead of its events."""
    return partition if shards == 1 else partition * SHARD_STRIDE + shard


def routing_id(kind: Kind, value: bytes | None) -> str | None:
    """The request id the message will decode to, or None when it has none (such a message
    is dead-lettered downstream, so any shard will do). Uses the decoder's own field mapping
    (contract names, then the OpenTelemetry aliases), so routing and decoding agree; the
    joining stage re-checks that they did (an ambiguous id, e.g. a duplicated key, is refused
    there). Never raises."""
    if not value:
        return None
    fast = _top_level_id(value)
    if fast is not None:
        return fast.strip() or None  # the contract strips text: route by the id it will decode
    try:
        data: Any = orjson.loads(value)
        if not isinstance(data, dict):
            return None
        rid = data.get("request_id")
        if not isinstance(rid, str):
            mapped = normalize_request(data) if kind == "requests" else normalize_verdict(data)
            rid = mapped.get("request_id")
        return rid.strip() or None if isinstance(rid, str) else None
    except Exception:  # noqa: BLE001 - hostile bytes: no id; the decoder gives the reason
        return None
