"""Kafka errors classified; publishing to the dead-letter and alerts topics never stalls on a
permanent error and never sends a record twice because another one was retried.

Fake producers here; the real broker is in tests/integration/test_kafka_permanent_errors.py.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka.errors as E
import pytest
from clickhouse_connect.driver.client import Client

from telemetry.contracts.alert import Alert, fingerprint
from telemetry.ingest.deadletter import DeadLetter
from telemetry.retry import RetryPolicy
from telemetry.routes import RoutesConfig
from telemetry.settings import load_settings
from telemetry.storage.migrate import migrate
from telemetry.storage.store import Store
from telemetry.worker import kafka_errors
from telemetry.worker.alerting import AlertingObserver
from telemetry.worker.kafka_errors import (
    TRUNCATED_HEADER,
    is_transient_kafka_error,
    kafka_error_kind,
    publish_alerts,
    publish_dead_letters,
)
from telemetry.worker.pipeline import _transient

TRANSIENT = [
    E.KafkaConnectionError(), E.KafkaTimeoutError(), E.NotLeaderForPartitionError(), E.RequestTimedOutError(),
    E.UnknownTopicOrPartitionError(), E.NodeNotReadyError(), E.LeaderNotAvailableError(),
    E.NotEnoughReplicasError(), E.NotEnoughReplicasAfterAppendError(), E.BrokerNotAvailableError(),
    E.KafkaUnavailableError(), E.NoBrokersAvailable(), E.CoordinatorNotAvailableError(), E.KafkaError("?"),
]  # fmt: skip
RECORD = [E.MessageSizeTooLargeError(), E.RecordTooLargeError(), E.RecordListTooLargeError(), E.InvalidTimestampError()]
PRODUCER_STATE = [E.OutOfOrderSequenceNumber(), E.UnknownProducerId(), E.ProducerFenced(), E.InvalidProducerEpoch()]
PERMANENT = [
    E.TopicAuthorizationFailedError(), E.ClusterAuthorizationFailedError(), E.GroupAuthorizationFailedError(),
    E.InvalidTopicError(), E.UnsupportedVersionError(), E.SaslAuthenticationFailed(), E.UnsupportedCodecError(),
    E.PolicyViolationError(), E.CommitFailedError(), E.IllegalStateError(), E.ProducerClosed(),
]  # fmt: skip


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_are_retried(exc: Exception) -> None:
    assert kafka_error_kind(exc) == "transient"
    assert is_transient_kafka_error(exc)
    assert _transient(exc)


@pytest.mark.parametrize(("exc", "kind"), [*((e, "record") for e in RECORD), *((e, "producer_state") for e in PRODUCER_STATE),
                                           *((e, "permanent") for e in PERMANENT)], ids=lambda e: type(e).__name__)  # fmt: skip
def test_permanent_errors_are_not_retried_as_they_are(exc: Exception, kind: str) -> None:
    assert kafka_error_kind(exc) == kind
    assert not is_transient_kafka_error(exc)
    assert not _transient(exc), "the pipeline's retry policy would retry it forever"


def test_every_error_aiokafka_calls_retriable_is_transient() -> None:
    for _, cls in inspect.getmembers(E, inspect.isclass):
        if issubclass(cls, E.KafkaError) and cls.retriable:
            assert kafka_error_kind(cls()) == "transient", cls.__name__


def test_the_pipeline_still_retries_clickhouse_outages_and_not_bugs() -> None:
    assert _transient(ConnectionRefusedError())
    assert not _transient(ValueError("bug"))


# -- publishing with a fake producer ----------------------------------------------------------------
Behaviour = Callable[[int, bytes, list[tuple[str, bytes]]], BaseException | None]


class FakeProducer:
    """``behaviour(n, value, headers)`` -> the error of the n-th send (0-based), or None."""

    def __init__(self, behaviour: Behaviour, *, raise_on_send: bool = False) -> None:
        self.behaviour = behaviour
        self.raise_on_send = raise_on_send
        self.sent: list[tuple[bytes, dict[str, bytes]]] = []
        self.calls = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:  # fmt: skip
        n, self.calls = self.calls, self.calls + 1
        exc = self.behaviour(n, value, headers or [])
        if exc is not None and self.raise_on_send:
            raise exc
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if exc is None:
            self.sent.append((value, dict(headers or [])))
            future.set_result(SimpleNamespace(offset=len(self.sent)))
        else:
            future.set_exception(exc)
        return future


def letter(i: int, size: int = 10) -> DeadLetter:
    return DeadLetter("t.requests", 0, i, f"k{i}".encode(), b"v" * size, "invalid_json", "bad", 0)


def fake_pipeline(producer: FakeProducer) -> Any:
    return SimpleNamespace(settings=load_settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t."), producer=producer,
                           retry=RetryPolicy(base_s=0.01, cap_s=0.05, is_transient=_transient), counters=Counter())  # fmt: skip


def run(coro: Any, timeout: float = 10.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def topic_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    async def two_kb(settings: Any, topic: str) -> int:
        return 2000

    monkeypatch.setattr(kafka_errors, "topic_max_bytes", two_kb)


def test_a_dead_letter_too_large_for_the_topic_is_published_truncated_and_does_not_stall() -> None:
    producer = FakeProducer(lambda n, value, headers: E.MessageSizeTooLargeError() if len(value) > 1500 else None)
    pipeline = fake_pipeline(producer)
    run(publish_dead_letters(pipeline, [letter(0), letter(1, size=50_000), letter(2)]))
    values = sorted(len(v) for v, _ in producer.sent)
    assert len(producer.sent) == 3, "each letter once"
    assert values[:2] == [10, 10] and 0 < values[2] <= 1500
    truncated = [h for v, h in producer.sent if TRUNCATED_HEADER in h]
    assert len(truncated) == 1 and truncated[0][TRUNCATED_HEADER] == b"50000"
    assert truncated[0]["dlq.reason"] == b"invalid_json" and truncated[0]["dlq.source.offset"] == b"1"
    assert pipeline.counters["dead_letters.value_truncated"] == 1
    assert pipeline.counters["dead_letters.publish_failed"] == 0


def test_a_letter_the_client_refuses_before_sending_is_truncated_too() -> None:
    producer = FakeProducer(lambda n, value, headers: E.MessageSizeTooLargeError() if len(value) > 1500 else None,
                            raise_on_send=True)  # fmt: skip
    pipeline = fake_pipeline(producer)
    run(publish_dead_letters(pipeline, [letter(0, size=3_000_000)]))
    assert [h.get(TRUNCATED_HEADER) for _, h in producer.sent] == [b"3000000"]


def test_a_letter_refused_even_empty_is_given_up_counted_and_the_rest_published() -> None:
    producer = FakeProducer(
        lambda n, value, headers: E.InvalidTimestampError() if dict(headers)["dlq.source.offset"] == b"1" else None
    )
    pipeline = fake_pipeline(producer)
    run(publish_dead_letters(pipeline, [letter(0), letter(1), letter(2)]))
    assert sorted(h["dlq.source.offset"] for _, h in producer.sent) == [b"0", b"2"]
    assert pipeline.counters["dead_letters.publish_failed"] == 1


def test_topic_authorization_failure_gives_up_instead_of_retrying_forever() -> None:
    producer = FakeProducer(lambda n, value, headers: E.TopicAuthorizationFailedError("t.deadletter"), raise_on_send=True)
    pipeline = fake_pipeline(producer)
    run(publish_dead_letters(pipeline, [letter(0), letter(1)]))
    assert producer.calls == 2
    assert pipeline.counters["dead_letters.publish_failed"] == 2


def test_transient_failures_resend_only_the_records_that_failed() -> None:
    producer = FakeProducer(lambda n, value, headers: E.KafkaConnectionError() if n in (1, 3) else None)
    pipeline = fake_pipeline(producer)
    run(publish_dead_letters(pipeline, [letter(0), letter(1), letter(2), letter(3)]))
    assert sorted(h["dlq.source.offset"] for _, h in producer.sent) == [b"0", b"1", b"2", b"3"]
    assert pipeline.retry.retries >= 1


def test_a_producer_out_of_sequence_is_reset_and_the_record_sent_again() -> None:
    producer = FakeProducer(lambda n, value, headers: E.OutOfOrderSequenceNumber() if n == 0 else None)
    pipeline = fake_pipeline(producer)
    run(publish_dead_letters(pipeline, [letter(0)]))
    assert len(producer.sent) == 1


# -- alerts -------------------------------------------------------------------------------------
def make_alert(route: str = "sales.email") -> Alert:
    labels = {"alertname": "ErrorStorm", "route": route, "model": "m", "team": "t", "severity": "critical", "env": "test"}
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return Alert(fingerprint=fingerprint(labels), status="firing", labels=labels, annotations={"summary": "s"},
                 evidence={"errors": 9}, starts_at=t, decided_at=t)  # fmt: skip


def test_an_alert_the_topic_refuses_is_counted_and_not_retried() -> None:
    producer = FakeProducer(lambda n, value, headers: E.MessageSizeTooLargeError() if n % 2 == 0 else None)
    counters: Counter[str] = Counter()
    settings = load_settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t.")
    retry = RetryPolicy(base_s=0.01, is_transient=_transient)
    published = run(publish_alerts(producer, settings, [make_alert("a"), make_alert("b")], emitted_ms=1,  # type: ignore[arg-type]
                                   retry=retry, counters=counters))  # fmt: skip
    # the first record is refused in its batch, then alone, then given up; the second goes through
    assert published == 1
    assert counters["alerts.publish_failed"] == 1


def test_the_alerting_observer_does_not_stall_on_a_permanent_alerts_topic_error(engine: Client, tmp_path: Path) -> None:
    """On the old code the observer retried MessageSizeTooLargeError forever (and ingest with it)."""
    database = f"ke_{uuid.uuid4().hex[:8]}"
    migrate(engine, database)
    try:
        settings = load_settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="t.", data_dir=tmp_path)
        retry = RetryPolicy(base_s=0.01, cap_s=0.05, is_transient=_transient)
        async def nothing_published(settings: object, since_ms: int) -> set[str]:
            return set()

        observer = AlertingObserver(settings, RoutesConfig(), retry, read_published=nothing_published)
        producer = FakeProducer(lambda n, value, headers: E.MessageSizeTooLargeError(), raise_on_send=True)

        async def scenario() -> None:
            await observer.start(Store(engine, database), producer)  # type: ignore[arg-type]
            await observer.take_over()
            try:
                await asyncio.wait_for(observer.deliver([make_alert()]), timeout=10)
            finally:
                await observer.stop()

        asyncio.run(scenario())
        stored = engine.query(f"SELECT count() FROM {database}.alerts").result_rows[0][0]
        assert stored == 1, "the alert is still recorded in the alerts table"
        assert getattr(observer, "counters", {}).get("alerts.publish_failed") == 1
    finally:
        engine.command(f"DROP DATABASE IF EXISTS {database}")


# -- the consumer's commit ----------------------------------------------------------------------
def test_a_commit_of_partitions_revoked_meanwhile_neither_hangs_nor_raises() -> None:
    """A rebalance while a batch was stored revokes some of its partitions; aiokafka then raises
    IllegalStateError for them on every commit (the old code retried it forever)."""
    from aiokafka import TopicPartition

    from telemetry.worker.consumer import BatchConsumer

    kept, revoked = TopicPartition("t.requests", 0), TopicPartition("t.requests", 1)

    class FakeConsumer:
        committed: list[dict[TopicPartition, int]] = []

        def assignment(self) -> set[TopicPartition]:
            return {kept}

        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            if any(tp != kept for tp in offsets):
                raise E.IllegalStateError(f"Partition {revoked} is not assigned")
            self.committed.append(dict(offsets))

    consumer = FakeConsumer()
    batch = BatchConsumer(load_settings(kafka_bootstrap="127.0.0.1:1"), pipeline=None)  # type: ignore[arg-type]
    run(batch._commit(consumer, {kept: 10, revoked: 20}), timeout=5)  # type: ignore[arg-type]
    assert consumer.committed == [{kept: 10}]
