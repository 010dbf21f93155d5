"""Kafka plumbing for the benchmark: topics, fast bulk produce, end and committed offsets.

Every function takes the bootstrap string and the client options of a
:class:`telemetry.settings.Settings` (``settings.kafka_client_options()``), so the benchmark
works against a secured cluster as well as the local broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = [
    "BulkProducer",
    "ProduceStats",
    "committed_offsets",
    "create_topics",
    "delete_topics",
    "end_offsets",
    "partition_of",
]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition a key goes to (CRC-32 of the key; keeps one request id on one partition)."""
    return zlib.crc32(key) % partitions


async def _admin(bootstrap: str, options: dict[str, Any]) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    return admin


async def create_topics(bootstrap: str, options: dict[str, Any], names: Sequence[str], partitions: int) -> None:
    """Create ``names`` (replication factor 1) and wait until their metadata is visible."""
    admin = await _admin(bootstrap, options)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if set(names) <= set(await admin.list_topics()):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topics {names} did not appear within 30 s")
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, options: dict[str, Any], *prefixes: str) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes``; returns their names."""
    admin = await _admin(bootstrap, options)
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, options: dict[str, Any], topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The log-end offset of every partition of ``topics``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if len(tps) < len(topics):
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


class OffsetWatcher:
    """Reads a consumer group's committed offsets with one long-lived admin client."""

    def __init__(self, bootstrap: str, options: dict[str, Any], group: str) -> None:
        self.bootstrap, self.options, self.group = bootstrap, options, group
        self._admin: AIOKafkaAdminClient | None = None

    async def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        if self._admin is None:
            self._admin = await _admin(self.bootstrap, self.options)
        tps = list(partitions)
        got = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
        return {tp: (meta.offset if meta is not None else -1) for tp, meta in got.items()}

    async def close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None


async def committed_offsets(
    bootstrap: str, options: dict[str, Any], group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offset per partition (-1 where nothing is committed)."""
    watcher = OffsetWatcher(bootstrap, options, group)
    try:
        return await watcher.committed(partitions)
    finally:
        await watcher.close()


@dataclass
class ProduceStats:
    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


class BulkProducer:
    """Pre-loading at full speed: records go into one ``BatchBuilder`` per partition, and full
    builders are sent with ``send_batch`` (no per-message future; ~4x ``send()``).

    ``acks=1`` (one broker here), no idempotence (nothing is retried blindly: a failed batch
    raises), ``linger`` irrelevant (batches are sent when full or on :meth:`flush`).
    """

    def __init__(self, bootstrap: str, options: dict[str, Any], *, compression: str | None = None,
                 batch_bytes: int = 1 << 20) -> None:  # fmt: skip
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks=1,
            compression_type=compression,
            max_batch_size=batch_bytes,
            max_request_size=max(4 * batch_bytes, 1 << 22),
            linger_ms=5,
            client_id="llm-telemetry-bench",
            **options,
        )
        self._builders: dict[tuple[str, int], Any] = {}
        self._pending: list[asyncio.Future[Any]] = []
        self._next: dict[str, int] = {}  # the next partition of an unkeyed record, per topic
        self.partitions: dict[str, int] = {}
        self.stats = ProduceStats()
        self.counts: dict[str, int] = {}

    async def start(self, topics: Sequence[str]) -> None:
        await self._producer.start()
        for t in topics:
            parts = await self._producer.partitions_for(t)
            self.partitions[t] = len(parts)
            self.counts[t] = 0

    async def send_all(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Append ``(key, value)`` records; sends builders as they fill. A keyed record goes to
        the partition of its key (:func:`partition_of`); unkeyed ones (the OpenTelemetry
        Collector's Kafka exporter sends its messages unkeyed) go round the partitions."""
        n_parts = self.partitions[topic]
        builders = self._builders
        started = time.perf_counter()
        n = size = 0
        for key, value in records:
            if key is None:
                part = self._next.get(topic, 0)
                self._next[topic] = (part + 1) % n_parts
            else:
                part = zlib.crc32(key) % n_parts
            b = builders.get((topic, part))
            if b is None:
                b = builders[(topic, part)] = self._producer.create_batch()
            if b.append(key=key, value=value, timestamp=None) is None:
                self._pending.append(await self._producer.send_batch(b, topic, partition=part))
                b = builders[(topic, part)] = self._producer.create_batch()
                b.append(key=key, value=value, timestamp=None)
            n += 1
            size += len(value)
        if len(self._pending) > 64:
            await self._drain()
        self.counts[topic] += n
        self.stats.messages += n
        self.stats.bytes += size
        self.stats.seconds += time.perf_counter() - started

    async def flush(self) -> None:
        started = time.perf_counter()
        for (topic, part), b in list(self._builders.items()):
            if b.record_count():
                self._pending.append(await self._producer.send_batch(b, topic, partition=part))
        self._builders.clear()
        await self._drain()
        await self._producer.flush()
        self.stats.seconds += time.perf_counter() - started

    async def _drain(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._producer.stop()
