"""Kafka producing and topic administration for the worker (aiokafka, security options applied)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from telemetry.errors import ConfigError
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


async def send_and_wait(producer: AIOKafkaProducer, records: Sequence[tuple[str, int, bytes]]) -> None:
    """Send ``(topic, partition, value)`` records and wait until the broker has every one
    (acks=all); raises the first send's error (the caller retries the whole list: the readers
    of the internal topics recognise a repeat)."""
    futures = [await producer.send(topic, value, partition=partition) for topic, partition, value in records]
    await asyncio.gather(*futures)


INTERNAL_MAX_BYTES = 8 * 1024 * 1024
"""``max.message.bytes`` of the internal topics: a bundle of input messages (``telemetry.ingest.bundle``)
is cut at 1 MiB, but one input message of the input topics' own limit must always fit."""


class TopologyError(ConfigError):
    """The internal topics exist with a layout the join cannot be exact on."""


def _topics(settings: Settings) -> list[NewTopic]:
    plain = dict(num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication_factor)
    internal = {"max.message.bytes": str(INTERNAL_MAX_BYTES)}
    return [
        NewTopic(name=settings.requests_topic, **plain),
        NewTopic(name=settings.verdicts_topic, **plain),
        NewTopic(name=settings.deadletter_topic, **plain),
        NewTopic(name=settings.alerts_topic, **plain),
        NewTopic(name=settings.shard_requests_topic, **plain, topic_configs=internal),
        NewTopic(name=settings.shard_verdicts_topic, **plain, topic_configs=internal),
        NewTopic(name=settings.facts_topic, num_partitions=1, replication_factor=settings.topic_replication_factor,
                 topic_configs=internal),
        *(NewTopic(name=t, **plain) for t in settings.otlp_topics),
    ]  # fmt: skip


async def ensure_topics(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """Create the product's topics when missing (input, output and internal; or only ``names``);
    return those created. Raises aiokafka errors when the broker cannot be reached."""
    specs = {t.name: t for t in _topics(settings)}
    wanted = list(names or specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        plain = dict(num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication_factor)
        try:
            await admin.create_topics([specs.get(t) or NewTopic(name=t, **plain) for t in missing])
        except TopicAlreadyExistsError:
            pass
        log.info("topics created", extra={"topics": missing})
        return missing
    finally:
        await admin.close()


async def shard_count(settings: Settings) -> int:
    """The number of join shards: the partitions of the internal requests topic. Raises
    TopologyError unless the internal verdicts topic has as many (co-partitioned) and the
    facts topic has exactly one (one detection owner)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options())
    await admin.start()
    try:
        topics = [settings.shard_requests_topic, settings.shard_verdicts_topic, settings.facts_topic]
        described = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(topics)}
    finally:
        await admin.close()
    requests, verdicts, facts = (described.get(t, 0) for t in topics)
    if requests < 1 or requests != verdicts:
        raise TopologyError(
            f"{settings.shard_requests_topic} has {requests} partitions and {settings.shard_verdicts_topic} has "
            f"{verdicts}: they must have the same number (both are keyed by request id and joined shard by shard)"
        )
    if facts != 1:
        raise TopologyError(f"{settings.facts_topic} must have exactly 1 partition (it has {facts}): one worker at a "
                            "time runs the detectors over the facts of the whole group")  # fmt: skip
    return requests
