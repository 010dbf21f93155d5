"""Shared fixtures. Integration tests need the real local Kafka broker and the real ClickHouse
engine (chDB); in CI (CI=true) a missing broker fails the run, it is never skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap of a running broker. Outside CI the project's own command starts one if
    none answers (and stops it afterwards); in CI .ci/run must have started it."""
    from telemetry.localkafka import broker_answers, start_broker, stop_broker

    settings = load_settings()
    started = False
    if not broker_answers(settings.kafka_bootstrap):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"no Kafka broker answers at {settings.kafka_bootstrap}; CI must run `telemetry kafka start`")
        start_broker(settings)
        started = True
    yield settings.kafka_bootstrap
    if started:
        stop_broker(settings)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def test_settings(tmp_path: Path, kafka_bootstrap: str, unique: str) -> Settings:
    """Settings isolated per test: own topics, consumer group, data dir and web port."""
    from tests.integration.harness import free_port

    return load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{unique}.",
        otlp_spans_topic=f"t{unique}.otlp_spans",  # the defaults have no prefix: keep tests apart
        otlp_logs_topic=f"t{unique}.otlp_logs",
        consumer_group=f"g{unique}",
        data_dir=tmp_path / "data",
        web_port=free_port(),
        batch_seconds=0.5,
    )
