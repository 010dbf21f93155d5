"""A permanent Kafka error never stalls ingest. Real broker; topics created with a small
``max.message.bytes`` so the broker itself refuses records.

On the old code the worker retried ``MessageSizeTooLargeError`` forever, and after the first
refusal aiokafka's idempotent producer answered ``OutOfOrderSequenceNumber`` to every later send
on that partition: ingest stopped for good."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from telemetry.ingest.deadletter import DeadLetter
from telemetry.retry import RetryPolicy
from telemetry.settings import Settings
from telemetry.simulate import load_scenario, simulate
from telemetry.worker.kafka_errors import TRUNCATED_HEADER, publish_dead_letters
from telemetry.worker.kafka_out import new_producer
from telemetry.worker.pipeline import _transient
from tests.integration.harness import Worker, produce
from tests.integration.traffic import make_traffic

pytestmark = pytest.mark.integration
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "short.toml"


def create_topic(settings: Settings, name: str, max_message_bytes: int, partitions: int = 1) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1,
                                                topic_configs={"max.message.bytes": str(max_message_bytes)})])  # fmt: skip
        finally:
            await admin.close()

    asyncio.run(run())


def read_all(settings: Settings, topic: str) -> list[Any]:
    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            out: list[Any] = []
            while True:
                batch = await consumer.getmany(timeout_ms=2000)
                if not batch:
                    return out
                for records in batch.values():
                    out.extend(records)
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_the_producer_recovers_from_a_record_the_broker_refuses(test_settings: Settings) -> None:
    """The worker's own producer, the real broker: a letter too large is truncated, its batch-mates
    are published once, and the producer keeps working afterwards."""
    settings = test_settings
    create_topic(settings, settings.deadletter_topic, 2000)

    def letter(offset: int, size: int) -> DeadLetter:
        return DeadLetter(settings.requests_topic, 0, offset, f"k{offset}".encode(), bytes([65 + offset]) * size,
                          "invalid_json", "bad", 0)  # fmt: skip

    async def run() -> Counter[str]:
        producer = new_producer(settings)
        await producer.start()
        pipeline = SimpleNamespace(settings=settings, producer=producer, counters=Counter(),
                                   retry=RetryPolicy(base_s=0.05, cap_s=0.5, is_transient=_transient))  # fmt: skip
        try:
            await asyncio.wait_for(publish_dead_letters(pipeline, [letter(0, 10), letter(1, 5000), letter(2, 10)]), 60)  # type: ignore[arg-type]
            await asyncio.wait_for(publish_dead_letters(pipeline, [letter(3, 10)]), 60)  # type: ignore[arg-type]
        finally:
            await producer.stop()
        return pipeline.counters

    counters = asyncio.run(run())
    records = read_all(settings, settings.deadletter_topic)
    by_offset = {dict(r.headers)["dlq.source.offset"]: r for r in records}
    assert sorted(by_offset) == [b"0", b"1", b"2", b"3"] and len(records) == 4, "each letter exactly once"
    big = by_offset[b"1"]
    assert dict(big.headers)[TRUNCATED_HEADER] == b"5000"
    assert 0 < len(big.value) < 2000 and big.value == b"B" * len(big.value)
    assert all(TRUNCATED_HEADER not in dict(by_offset[o].headers) for o in (b"0", b"2", b"3"))
    assert counters["dead_letters.value_truncated"] == 1 and counters["dead_letters.publish_failed"] == 0


def test_a_dead_letter_too_large_for_its_topic_does_not_stall_ingest(test_settings: Settings, tmp_path: Path) -> None:
    settings = test_settings
    create_topic(settings, settings.deadletter_topic, 2000)
    worker = Worker(settings, tmp_path / "logs").start()
    pid = worker.proc.pid if worker.proc else None
    try:
        before, after = make_traffic(300, seed=11), make_traffic(300, seed=12)
        produce(settings, settings.requests_topic, before.requests)
        big = b'{"request_id": "big", "broken": "' + b"x" * 6000  # invalid JSON, 6 kB: larger than the DLQ allows
        produce(settings, settings.requests_topic, [big, b"{not json"])
        produce(settings, settings.requests_topic, after.requests)
        worker.wait_until("SELECT count() FROM llm_telemetry.requests", 600, timeout=60)
        worker.wait_until("SELECT count() FROM llm_telemetry.dead_letters", 2, timeout=30)
        counters = worker.stats()["counters"]
        sizes = worker.sql("SELECT size_bytes FROM llm_telemetry.dead_letters ORDER BY size_bytes")
    finally:
        assert worker.running and worker.proc is not None and worker.proc.pid == pid, "the worker never died"
        worker.stop()
    assert [r["size_bytes"] for r in sizes] == [9, len(big)]
    assert counters.get("dead_letters.value_truncated") == 1
    letters = read_all(settings, settings.deadletter_topic)
    assert len(letters) == 2
    truncated = [r for r in letters if TRUNCATED_HEADER in dict(r.headers)]
    assert len(truncated) == 1 and dict(truncated[0].headers)[TRUNCATED_HEADER] == str(len(big)).encode()
    assert big.startswith(truncated[0].value) and dict(truncated[0].headers)["dlq.reason"] == b"invalid_json"


def test_an_alerts_topic_that_refuses_every_alert_does_not_stall_ingest(test_settings: Settings,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    settings = test_settings.model_copy(update={"env": "test"})
    create_topic(settings, settings.alerts_topic, 1024)  # a CloudEvent alert is larger than this
    worker = Worker(settings, tmp_path / "logs").start()
    try:
        result = asyncio.run(simulate(load_scenario(SCENARIO), settings, speed=2400, progress=False))
        worker.wait_for_counter("requests_messages", result.summary.published["requests"], timeout=60)
        worker.wait_for_counter("verdicts_messages", result.summary.published["verdicts"], timeout=60)
        alerts = worker.scalar("SELECT count() FROM llm_telemetry.alerts")
        counters = worker.stats()["counters"]
    finally:
        worker.stop()
    assert alerts >= 2, "the alerts are in the table"
    assert counters.get("alerts.publish_failed") == alerts
    assert read_all(settings, settings.alerts_topic) == []
    assert orjson.dumps(counters)  # the stats page answers
