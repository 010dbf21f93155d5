"""Read back the recent notifications of ``<prefix>alerts``: what a new detection owner must not
publish again."""

from __future__ import annotations

import contextlib
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError

from telemetry.settings import Settings

READ_TIMEOUT_S = 30.0


async def published_alert_ids(settings: Settings, since_ms: int) -> set[str]:
    """CloudEvent ids of the committed notifications on the alerts topic at or after
    ``since_ms`` (record time). Raises aiokafka errors (the caller retries transient ones)."""
    topic = settings.alerts_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options())
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [p["partition"] for d in described if d["topic"] == topic and not d["error_code"] for p in d["partitions"]]
    if not partitions:
        return set()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", **settings.kafka_client_options(),
    )  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        todo = {}
        for tp in tps:
            found = starts.get(tp)
            start = found.offset if found is not None else ends[tp]
            if start < ends[tp]:
                consumer.seek(tp, start)
                todo[tp] = ends[tp]
        ids: set[str] = set()
        deadline = time.monotonic() + READ_TIMEOUT_S
        while todo and time.monotonic() < deadline:
            fetched = await consumer.getmany(*todo, timeout_ms=500)
            for tp, records in fetched.items():
                for r in records:
                    with contextlib.suppress(Exception):
                        event = orjson.loads(r.value or b"")
                        if isinstance(event, dict) and isinstance(event.get("id"), str):
                            ids.add(event["id"])
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
        if todo:
            raise KafkaTimeoutError(f"alerts topic not read to its end within {READ_TIMEOUT_S:.0f}s")
        return ids
    finally:
        await consumer.stop()
