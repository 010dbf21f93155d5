"""Kafka errors classified, and publishing to the dead-letter and alerts topics that no permanent
error can stall.

:func:`kafka_error_kind` sorts an aiokafka exception into one of four kinds:

- ``transient``: the cluster is unavailable or moving (connection errors, timeouts, leader and
  coordinator changes, not enough replicas, a topic not in the metadata yet, rebalances). Retry
  the same call later; it will succeed once the cluster is back. Any Kafka error not named below
  is taken as transient: waiting is safe, skipping is not.
- ``record``: this record can never be accepted as it is (``MessageSizeTooLargeError``,
  ``RecordTooLargeError``, ``RecordListTooLargeError``, a corrupt or invalid record, an invalid
  timestamp, a format the topic does not support). Retrying it unchanged is useless.
- ``producer_state``: the idempotent producer's sequence numbers or epoch no longer match the
  broker's (``OutOfOrderSequenceNumber``, ``UnknownProducerId``, ``InvalidProducerEpoch``,
  ``ProducerFenced``). Every later send on that partition fails the same way until the producer
  takes a new producer id (:func:`reset_producer_id`). aiokafka gets here after the broker
  refused one batch (a record too large for the topic) or after the broker forgot an idle
  producer.
- ``permanent``: configuration, authorization or protocol errors (topic / cluster / group
  authorization, SASL authentication, invalid topic, unsupported version or codec, policy
  violation, invalid configuration, a closed producer, a commit the group no longer accepts).
  Retrying cannot help until an operator changes something.

:func:`is_transient_kafka_error` (``kind == "transient"``) is what the pipeline's retry policy
retries; anything else raised there stops the worker without committing (a restart re-reads the
batch) instead of retrying forever.

Publishing (:func:`publish_records`, :func:`publish_dead_letters`, :func:`publish_alerts`) sends a
set of records and returns when each is either on the topic or given up for good:

- transient errors are retried with back-off (only the records that failed: nothing is sent twice
  by a retry); the stream waits, as for any infrastructure outage;
- after a ``producer_state`` error, or a record refused by the broker (which leaves aiokafka's
  idempotent producer out of step, see above), the producer takes a new producer id and the
  records are sent again;
- a ``record`` error is first retried alone (a broker refuses a whole batch for one large
  record); if the record alone is refused, a dead letter is sent again with its value cut to
  what the topic accepts and the header ``dlq.value_truncated`` = the original size in bytes
  (then with an empty value), an alert is given up;
- ``permanent`` errors give the record up.

A record given up is logged at error level and counted (``dead_letters.publish_failed``,
``alerts.publish_failed``); it is never retried forever. A dead letter given up is still in the
``dead_letters`` table (reason, detail, size, key, source coordinates: the original can be read
again from its source topic); an alert given up is still in the ``alerts`` table and its webhook
deliveries in ``alert_deliveries``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import aiokafka.errors as E
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from telemetry.alerting.payloads import cloudevent_id, kafka_record
from telemetry.contracts.alert import Alert
from telemetry.ingest.deadletter import DeadLetter
from telemetry.retry import RetryPolicy
from telemetry.settings import Settings

__all__ = [
    "TRUNCATED_HEADER",
    "ErrorKind",
    "OutRecord",
    "PublishIncomplete",
    "PublishReport",
    "is_transient_kafka_error",
    "kafka_error_kind",
    "publish_alerts",
    "publish_dead_letters",
    "publish_records",
    "reset_producer_id",
]

log = logging.getLogger(__name__)

ErrorKind = Literal["transient", "record", "producer_state", "permanent"]

TRUNCATED_HEADER = "dlq.value_truncated"
"""Header of a dead letter whose value was cut to fit the topic: the original size in bytes."""

_RECORD: tuple[type[BaseException], ...] = (
    E.MessageSizeTooLargeError, E.RecordTooLargeError, E.RecordListTooLargeError, E.CorruptRecordException,
    E.InvalidMessageError, E.InvalidTimestampError, E.UnsupportedForMessageFormatError,
)  # fmt: skip

_PRODUCER_STATE: tuple[type[BaseException], ...] = (
    E.OutOfOrderSequenceNumber, E.UnknownProducerId, E.InvalidProducerEpoch, E.InvalidProducerIdMapping,
    E.ProducerFenced,
)  # fmt: skip

_PERMANENT: tuple[type[BaseException], ...] = (
    E.TopicAuthorizationFailedError, E.ClusterAuthorizationFailedError, E.GroupAuthorizationFailedError,
    E.TransactionalIdAuthorizationFailed, E.DelegationTokenAuthorizationFailed, E.SaslAuthenticationFailed,
    E.AuthenticationFailedError, E.AuthenticationMethodNotSupported, E.UnsupportedSaslMechanismError,
    E.IllegalSaslStateError, E.SecurityDisabled, E.InvalidTopicError, E.PolicyViolationError,
    E.UnsupportedVersionError, E.IncompatibleBrokerVersion, E.UnrecognizedBrokerVersion, E.UnsupportedCodecError,
    E.InvalidRequiredAcksError, E.InvalidConfigurationError, E.InvalidRequestError, E.KafkaConfigurationError,
    E.IllegalArgumentError, E.IllegalStateError, E.ProducerClosed, E.CommitFailedError,
    E.OffsetMetadataTooLargeError, E.InvalidCommitOffsetSizeError, E.InvalidGroupIdError,
    E.InvalidSessionTimeoutError, E.InconsistentGroupProtocolError,
)  # fmt: skip


class PublishIncomplete(E.KafkaError):
    """Some records of a publish are waiting for a retry (transient); carries the first cause."""

    def __init__(self, waiting: int, cause: BaseException) -> None:
        super().__init__(f"{waiting} record(s) waiting: {type(cause).__name__}: {str(cause)[:200]}")
        self.waiting = waiting
        self.cause = cause


def kafka_error_kind(exc: BaseException) -> ErrorKind:
    """Which kind of trouble an aiokafka exception is (see the module docstring).

    Not for other exceptions: anything that is not a ``KafkaError`` (nor ``IllegalOperation``)
    is ``permanent`` here, i.e. not retried: it is a bug or someone else's to classify."""
    if isinstance(exc, PublishIncomplete):
        return "transient"
    if isinstance(exc, _RECORD):
        return "record"
    if isinstance(exc, _PRODUCER_STATE):
        return "producer_state"
    if isinstance(exc, _PERMANENT) or isinstance(exc, E.IllegalOperation):
        return "permanent"
    if isinstance(exc, E.KafkaError):
        return "transient"
    return "permanent"


def is_transient_kafka_error(exc: BaseException) -> bool:
    """True when retrying the same Kafka call later can succeed."""
    return kafka_error_kind(exc) == "transient"


# -- the producer --------------------------------------------------------------------------------
_generation: weakref.WeakKeyDictionary[AIOKafkaProducer, int] = weakref.WeakKeyDictionary()


def _generation_of(producer: AIOKafkaProducer) -> int:
    try:
        return _generation.get(producer, 0)
    except TypeError:  # not weak-referenceable (a test double)
        return 0


def reset_producer_id(producer: AIOKafkaProducer) -> bool:
    """Make an idempotent aiokafka producer take a new producer id, so its sequence numbers start
    again at 0 on every partition. Returns False when there is nothing to reset (not idempotent,
    transactional, or an aiokafka without these internals).

    Why: aiokafka numbers a partition's batches when it sends them; when the broker refuses one
    (``MESSAGE_TOO_LARGE``) that number is gone and every later batch on the partition is refused
    with ``OutOfOrderSequenceNumber``, forever (the Java client bumps its epoch; aiokafka 0.14 has
    no such recovery). The sender asks for a new id before its next batch.
    """
    manager = getattr(producer, "_txn_manager", None)
    if manager is None or getattr(manager, "transactional_id", None):
        return False
    try:
        from aiokafka.producer.transaction_manager import (
            NO_PRODUCER_EPOCH,
            NO_PRODUCER_ID,
            PidAndEpoch,
        )

        manager._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        manager._pid_waiter = asyncio.get_running_loop().create_future()
        manager._sequence_numbers.clear()
    except (AttributeError, ImportError) as exc:  # pragma: no cover - depends on aiokafka's internals
        log.error("cannot reset the Kafka producer id (%s)", type(exc).__name__)
        return False
    try:
        _generation[producer] = _generation_of(producer) + 1
    except TypeError:  # pragma: no cover
        pass
    log.warning("Kafka producer takes a new producer id after the broker refused a batch",
                extra={"event": "kafka_producer_reset"})  # fmt: skip
    return True


# -- topic limits --------------------------------------------------------------------------------
_topic_limits: dict[tuple[str, str], int] = {}
_DEFAULT_TOPIC_LIMIT = 1_048_588  # Kafka's default message.max.bytes
_SAFETY_BYTES = 512


async def topic_max_bytes(settings: Settings, topic: str) -> int:
    """The topic's ``max.message.bytes`` (asked once per process, then cached); Kafka's default
    when the broker cannot tell."""
    key = (settings.kafka_bootstrap, topic)
    if key in _topic_limits:
        return _topic_limits[key]
    limit = _DEFAULT_TOPIC_LIMIT
    try:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options())
        await admin.start()
        try:
            responses = await asyncio.wait_for(
                admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})]),
                timeout=15,
            )
        finally:
            await admin.close()
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    if entry[0] == "max.message.bytes" and entry[1]:
                        limit = int(entry[1])
    except Exception as exc:  # noqa: BLE001 - a best-effort lookup: fall back to Kafka's default
        log.warning("cannot read max.message.bytes of a topic; assuming Kafka's default",
                    extra={"topic": topic, "error": type(exc).__name__, "assumed": limit})  # fmt: skip
        return limit
    _topic_limits[key] = limit
    return limit


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """Upper bound of the bytes a record takes alone in a batch (what the broker compares with
    ``max.message.bytes``)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


# -- publishing ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to publish, with log fields that identify it (never its value)."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    fields: dict[str, Any] = field(default_factory=dict)


Shrink = Callable[[OutRecord, int], Awaitable[OutRecord | None]]
"""``shrink(original, step)``: the step-th smaller version of a refused record (step 1, 2, ...),
or None when there is none left."""


@dataclass(slots=True)
class PublishReport:
    published: int = 0
    shrunk: list[OutRecord] = field(default_factory=list)
    failed: list[tuple[OutRecord, BaseException]] = field(default_factory=list)


@dataclass(slots=True)
class _Item:
    original: OutRecord
    current: OutRecord
    step: int = 0
    alone: bool = False


async def _send(producer: AIOKafkaProducer, topic: str, r: OutRecord) -> asyncio.Future[Any]:
    """``producer.send``; an error it raises (the client's own checks, metadata) comes back as a
    failed future marked ``_client_side``."""
    try:
        sent: asyncio.Future[Any] = await producer.send(topic, value=r.value, key=r.key, headers=r.headers)
        return sent
    except E.KafkaError as exc:
        exc._client_side = True
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
        return future


async def _results(futures: Sequence[asyncio.Future[Any]]) -> list[BaseException | None]:
    done = await asyncio.gather(*futures, return_exceptions=True)
    out: list[BaseException | None] = []
    for result in done:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # CancelledError and friends
        out.append(result if isinstance(result, Exception) else None)
    return out


async def publish_records(
    producer: AIOKafkaProducer,
    topic: str,
    records: Sequence[OutRecord],
    *,
    retry: RetryPolicy,
    what: str,
    shrink: Shrink | None = None,
    known_limit: int | None = None,
) -> PublishReport:
    """Publish ``records`` to ``topic``; return when each is on the topic or given up (see the
    module docstring). Raises only for bugs (non-Kafka exceptions) and cancellation.

    ``known_limit``: the topic's size limit when known; a larger record goes straight to
    ``shrink`` (or is given up) instead of being refused by the broker."""
    report = PublishReport()
    items = [_Item(r, r) for r in records]
    if known_limit is not None:
        for item in items:
            if record_size(item.current.key, item.current.value, item.current.headers) > known_limit:
                await _next_version(item, shrink, report, E.MessageSizeTooLargeError("larger than the topic allows"))
        items = [i for i in items if i.step >= 0]
    policy = RetryPolicy(base_s=retry.base_s, cap_s=retry.cap_s, is_transient=lambda e: isinstance(e, PublishIncomplete))

    async def attempt() -> None:
        nonlocal items
        generation = _generation_of(producer)
        together = [i for i in items if not i.alone]
        futures = [await _send(producer, topic, i.current) for i in together]
        results = await _results(futures)
        for item in (i for i in items if i.alone):  # one at a time: nothing else in its batch
            together.append(item)
            results.extend(await _results([await _send(producer, topic, item.current)]))
        waiting: list[_Item] = []
        cause: BaseException | None = None
        for item, exc in zip(together, results, strict=True):
            if exc is None:
                report.published += 1
                if item.step:
                    report.shrunk.append(item.current)
                continue
            kind = kafka_error_kind(exc)
            client_side = bool(getattr(exc, "_client_side", False))
            if kind in ("producer_state", "record") and not client_side and _generation_of(producer) == generation:
                reset_producer_id(producer)
            if kind in ("transient", "producer_state"):
                waiting.append(item)
                cause = cause or exc
            elif kind == "record":
                if not item.alone and not client_side:
                    item.alone = True  # refused with its batch: try it alone first
                    waiting.append(item)
                    continue
                await _next_version(item, shrink, report, exc)
                if item.step >= 0:
                    waiting.append(item)
            else:
                report.failed.append((item.original, exc))
        items = waiting
        if items:
            if all(i.alone for i in items) and cause is None:
                await attempt()  # only resends of refused records: no reason to wait
                return
            raise PublishIncomplete(len(items), cause or E.KafkaError("retry"))

    await policy.run(what, attempt)
    retry.retries += policy.retries
    return report


async def _next_version(item: _Item, shrink: Shrink | None, report: PublishReport, exc: BaseException) -> None:
    """Move a refused record to its next smaller version; ``step = -1`` when there is none."""
    smaller = await shrink(item.original, item.step + 1) if shrink is not None else None
    if smaller is None:
        report.failed.append((item.original, exc))
        item.step = -1
        return
    item.step += 1
    item.current = smaller
    item.alone = True


# -- dead letters --------------------------------------------------------------------------------
class _Publisher(Protocol):
    settings: Settings
    producer: AIOKafkaProducer | None
    retry: RetryPolicy
    counters: Counter[str]


def dead_letter_record(d: DeadLetter) -> OutRecord:
    return OutRecord(
        key=d.key, value=d.value or b"", headers=d.headers(),
        fields={"source_topic": d.topic, "source_partition": d.partition, "source_offset": d.offset,
                "reason": d.reason, "size_bytes": d.size},
    )  # fmt: skip


def dead_letter_shrinker(settings: Settings, topic: str) -> Shrink:
    """Step 1: the value cut to fit ``topic``; step 2: an empty value and a key of at most 256
    bytes. Both carry ``dlq.value_truncated`` = the original value's size."""

    async def shrink(r: OutRecord, step: int) -> OutRecord | None:
        headers = [(k, v) for k, v in r.headers if k != TRUNCATED_HEADER]
        headers.append((TRUNCATED_HEADER, str(len(r.value)).encode()))
        if step == 1:
            limit = await topic_max_bytes(settings, topic)
            keep = limit - record_size(r.key, b"", headers) - _SAFETY_BYTES
            if 0 < keep < len(r.value):
                return replace(r, value=r.value[:keep], headers=headers)
            step = 2
        if step == 2:
            return replace(r, key=r.key[:256] if r.key else r.key, value=b"", headers=headers)
        return None

    return shrink


async def publish_dead_letters(pipeline: _Publisher, letters: Sequence[DeadLetter]) -> None:
    """Publish dead letters to ``<prefix>deadletter`` (the pipeline's producer, retry policy and
    counters). A letter too large for the topic is published with its value truncated and the
    header ``dlq.value_truncated``; one that cannot be published at all is logged and counted
    ``dead_letters.publish_failed`` (it stays in the ``dead_letters`` table). Never stalls on a
    permanent error; waits (retries) while Kafka is unavailable."""
    producer = pipeline.producer
    assert producer is not None
    if not letters:
        return
    settings = pipeline.settings
    topic = settings.deadletter_topic
    known = _topic_limits.get((settings.kafka_bootstrap, topic))
    report = await publish_records(
        producer, topic, [dead_letter_record(d) for d in letters], retry=pipeline.retry,
        what="dead-letter publish", shrink=dead_letter_shrinker(settings, topic), known_limit=known,
    )  # fmt: skip
    for r in report.shrunk:
        pipeline.counters["dead_letters.value_truncated"] += 1
        log.warning("dead letter too large for its topic: published with its value truncated",
                    extra={"event": "dead_letter_truncated", "topic": topic, "kept_bytes": len(r.value), **r.fields})  # fmt: skip
    for r, exc in report.failed:
        pipeline.counters["dead_letters.publish_failed"] += 1
        log.error("dead letter could not be published (%s); it stays in the dead_letters table",
                  type(exc).__name__,
                  extra={"event": "dead_letter_publish_failed", "topic": topic, "error": type(exc).__name__,
                         "error_kind": kafka_error_kind(exc), **r.fields})  # fmt: skip


# -- alerts --------------------------------------------------------------------------------------
async def publish_alerts(
    producer: AIOKafkaProducer, settings: Settings, alerts: Sequence[Alert], *, emitted_ms: int,
    retry: RetryPolicy, counters: Counter[str],
) -> int:  # fmt: skip
    """Publish alerts to ``<prefix>alerts`` as CloudEvents; return how many are on the topic.
    An alert the topic refuses for good is logged and counted ``alerts.publish_failed`` (it
    is still written to the ``alerts`` table and its webhook deliveries to the outbox)."""
    topic = settings.alerts_topic
    records = []
    for alert in alerts:
        record = kafka_record(alert, emitted_at_ms=emitted_ms)
        records.append(OutRecord(
            key=record.key, value=record.value, headers=list(record.headers),
            fields={"alert_id": cloudevent_id(alert), "alertname": alert.alertname, "route": alert.route,
                    "fingerprint": alert.fingerprint, "alert_status": alert.status},
        ))  # fmt: skip
    report = await publish_records(producer, topic, records, retry=retry, what="alert publish",
                                   known_limit=_topic_limits.get((settings.kafka_bootstrap, topic)))  # fmt: skip
    for r, exc in report.failed:
        counters["alerts.publish_failed"] += 1
        log.error("alert could not be published to the alerts topic (%s); it is in the alerts table and "
                  "its webhooks are delivered", type(exc).__name__,
                  extra={"event": "alert_publish_failed", "topic": topic, "error": type(exc).__name__,
                         "error_kind": kafka_error_kind(exc), **r.fields})  # fmt: skip
    return report.published
