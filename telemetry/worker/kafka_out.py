"""Kafka producing and topic administration for the worker (aiokafka, security options applied)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from telemetry.settings import Settings

log = logging.getLogger(__name__)


def new_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """An idempotent producer (acks=all) for dead letters and alerts."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_request_size": max(2 * settings.max_message_bytes, 1_048_576),
        **settings.kafka_client_options(),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def ensure_topics(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """Create the product's topics when missing; return those created. Raises aiokafka errors
    when the broker cannot be reached."""
    wanted = list(names or [settings.requests_topic, settings.verdicts_topic,
                            settings.deadletter_topic, settings.alerts_topic])  # fmt: skip
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        try:
            await admin.create_topics(
                [NewTopic(name=t, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication_factor) for t in missing]
            )
        except TopicAlreadyExistsError:
            pass
        log.info("topics created", extra={"topics": missing})
        return missing
    finally:
        await admin.close()
