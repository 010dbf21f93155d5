"""A few thousand hostile messages among valid traffic, through the real broker, the real worker
and the real engine (issue 9): the worker never restarts, valid totals are exact, the
dead-letter topic and ``dead_letters`` agree once per source message, and every message
produced is stored, dead-lettered or counted as a duplicate."""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from telemetry.settings import Settings
from tests.integration.harness import Worker
from tests.integration.traffic import make_traffic

pytestmark = pytest.mark.integration

Message = tuple[bytes | None, bytes | None, str | None]  # key, value, expected dead-letter reason (None: valid)
MAX_BYTES = 4096
REQ = {"ts": 1_767_225_600_000, "route": "hostile.route", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1,
       "latency_ms": 1.0, "status": "ok"}  # fmt: skip
VER = {"ts": 1_767_225_600_000, "evaluator": "judge@v1", "passed": True}


def with_token(base: dict[str, Any], field: str, token: str) -> bytes:
    return orjson.dumps({**base, field: "__X__"}).replace(b'"__X__"', token.encode())


def hostile_requests(n: int, now_ms: int) -> Iterator[Message]:
    """``n`` hostile request messages, cycling through every kind, each with its expected reason."""
    kinds: list[tuple[str | None, Any]] = [
        ("non_finite_number", lambda b: with_token(b, "ts", "Infinity")),
        ("non_finite_number", lambda b: with_token(b, "ts", "-Infinity")),
        ("non_finite_number", lambda b: with_token(b, "ts", "NaN")),
        ("non_finite_number", lambda b: with_token(b, "ts", "1e999")),
        ("non_finite_number", lambda b: with_token(b, "latency_ms", "Infinity")),
        ("out_of_range", lambda b: with_token(b, "ts", "9" * 400)),
        ("out_of_range", lambda b: with_token(b, "input_tokens", "-" + "9" * 400)),
        ("out_of_range", lambda b: with_token(b, "output_tokens", str(2**70))),
        ("out_of_range", lambda b: orjson.dumps({**b, "ts": "2150-01-01T00:00:00Z"})),
        ("schema_violation", lambda b: orjson.dumps({**b, "route": None})),
        ("schema_violation", lambda b: orjson.dumps({**b, "output_tokens": True})),
        ("schema_violation", lambda b: orjson.dumps({**b, "input_tokens": "10"})),
        ("unsupported_schema_version", lambda b: orjson.dumps({**b, "schema_version": 99})),
        ("unsupported_schema_version", lambda b: orjson.dumps({**b, "schema_version": "1"})),
        ("invalid_label", lambda b: orjson.dumps({**b, "route": "pay\x1b[2J\x1b[31mments"})),
        ("invalid_label", lambda b: orjson.dumps({**b, "tags": {"k": "bidi\u202eevil"}})),
        ("too_long", lambda b: orjson.dumps({**b, "model": "m" * 300})),
        ("invalid_json", lambda b: orjson.dumps(b)[:-7]),
        ("invalid_json", lambda b: b"\xde\xad\xbe\xef\x00" + bytes(range(256))),
        ("not_an_object", lambda b: orjson.dumps([b])),
        ("not_an_object", lambda b: b'"a string"'),
        ("oversized", lambda b: orjson.dumps({**b, "pad": "x" * (MAX_BYTES + 100)})),
        ("ts_in_future", lambda b: orjson.dumps({**b, "ts": now_ms + 86_400_000})),
        ("empty_message", lambda b: None),
    ]  # fmt: skip
    for i in range(n):
        reason, make = kinds[i % len(kinds)]
        rid = f"h-{i}"
        yield rid.encode(), make({**REQ, "request_id": rid}), reason


def hostile_verdicts(n: int, now_ms: int) -> Iterator[Message]:
    kinds: list[tuple[str, Any]] = [
        ("non_finite_number", lambda b: with_token(b, "ts", "Infinity")),
        ("non_finite_number", lambda b: with_token(b, "score", "NaN")),
        ("out_of_range", lambda b: with_token(b, "ts", "-" + "9" * 400)),
        ("schema_violation", lambda b: orjson.dumps({**b, "passed": 1})),
        ("schema_violation", lambda b: orjson.dumps({**b, "evaluator": None})),
        ("unsupported_schema_version", lambda b: orjson.dumps({**b, "schema_version": 2})),
        ("invalid_label", lambda b: orjson.dumps({**b, "evaluator": "judge\x9b@v1"})),
        ("invalid_json", lambda b: b"{" + orjson.dumps(b)),
        ("not_an_object", lambda b: b"null"),
        ("ts_in_future", lambda b: orjson.dumps({**b, "ts": now_ms + 3_600_000})),
        ("empty_message", lambda b: None),
    ]  # fmt: skip
    for i in range(n):
        reason, make = kinds[i % len(kinds)]
        rid = f"h-{i}"
        yield rid.encode(), make({**VER, "request_id": rid}), reason


def with_nulls(event: dict[str, Any], i: int) -> dict[str, Any]:
    """A valid event as Python/Go/Java producers write it: unset optional fields as null."""
    nulls: list[dict[str, Any]] = [{"response_model": None}, {"team": None, "tags": {"a": None}}, {"schema_version": None, "ttft_ms": None},
             {"finish_reason": None, "http_status": None}]  # fmt: skip
    return {**event, **nulls[i % len(nulls)]}


Coordinates = tuple[str, int, int]


def produce_pairs(settings: Settings, topic: str, messages: list[Message]) -> dict[Coordinates, Message]:
    """Publish ``messages`` in order; returns each one by the (topic, partition, offset) it got."""

    async def run() -> dict[Coordinates, Message]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks="all",
                                    max_request_size=4 * MAX_BYTES)  # fmt: skip
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for key, value, _ in messages]
            sent = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return {(topic, md.partition, md.offset): m for md, m in zip(sent, messages, strict=True)}

    return asyncio.run(run())


def read_topic(settings: Settings, topic: str) -> list[tuple[int, int, dict[str, bytes], bytes | None]]:
    """Every record of ``topic`` (partition, offset, headers, value), from the start to the end."""

    async def run() -> list[tuple[int, int, dict[str, bytes], bytes | None]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            parts = sorted(consumer.assignment())
            ends = await consumer.end_offsets(parts)
            out: list[tuple[int, int, dict[str, bytes], bytes | None]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                positions = [await consumer.position(tp) for tp in parts]
                if all(p >= ends[tp] for p, tp in zip(positions, parts, strict=True)):
                    break
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    out.extend((tp.partition, r.offset, dict(r.headers), r.value) for r in records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def end_offsets(settings: Settings, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            return sum((await consumer.end_offsets(sorted(consumer.assignment()))).values())
        finally:
            await consumer.stop()

    return asyncio.run(run())


@pytest.fixture
def worker(test_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(test_settings.model_copy(update={"max_message_bytes": MAX_BYTES, "batch_size": 500}), tmp_path / "logs")
    yield w
    if w.proc is not None:
        w.stop()


def test_thousands_of_hostile_messages_among_valid_traffic(worker: Worker) -> None:
    s = worker.settings
    rnd = random.Random(9)
    now_ms = int(time.time() * 1000)
    traffic = make_traffic(1500, seed=5)
    valid_requests: list[Message] = [
        (r["request_id"].encode(), orjson.dumps(with_nulls(r, i) if i % 3 == 0 else r), None)
        for i, r in enumerate(traffic.requests)
    ]
    valid_verdicts: list[Message] = [
        (v["request_id"].encode(), orjson.dumps({**v, "label": None} if i % 4 == 0 else v), None)
        for i, v in enumerate(traffic.verdicts)
    ]
    dup_requests = rnd.sample(valid_requests, 100)
    dup_verdicts = rnd.sample(valid_verdicts, 40)
    requests = valid_requests + dup_requests + list(hostile_requests(2400, now_ms))
    verdicts = valid_verdicts + dup_verdicts + list(hostile_verdicts(1100, now_ms))
    rnd.shuffle(requests)
    rnd.shuffle(verdicts)

    worker.start()
    pid = worker.proc.pid if worker.proc else None
    half = len(requests) // 2
    produced = produce_pairs(s, s.requests_topic, requests[:half])
    produced |= produce_pairs(s, s.verdicts_topic, verdicts)
    produced |= produce_pairs(s, s.requests_topic, requests[half:])
    # The exact reproduction from the issue, with Debian's kcat (librdkafka).
    repro = b'p|{"request_id":"x","ts":Infinity,"evaluator":"e@v1","passed":true}\n'
    subprocess.run(["kcat", "-b", s.kafka_bootstrap, "-t", s.verdicts_topic, "-P", "-K|"], input=repro, check=True, timeout=60)

    expected_dead = Counter(r for _, _, r in requests + verdicts if r is not None)
    expected_dead["non_finite_number"] += 1  # the kcat message
    total_dead = sum(expected_dead.values())
    worker.wait_until("SELECT count() FROM llm_telemetry.dead_letters", total_dead, timeout=90)
    worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(valid_requests), timeout=60)
    worker.wait_until("SELECT count() FROM llm_telemetry.verdicts", traffic.expected["verdicts"], timeout=60)
    # A view's part is committed just after its table's: wait for the aggregates of the last insert too.
    worker.wait_until("SELECT sum(verdict_rows) FROM llm_telemetry.route_minute_state", traffic.expected["verdicts"], timeout=30)

    # The same process all along.
    assert worker.running and worker.proc is not None and worker.proc.pid == pid, worker.log_tail()
    counters = worker.stats()["counters"]

    # Every reason exactly as expected.
    got = {r["reason"]: r["n"] for r in worker.sql("SELECT reason, count() AS n FROM llm_telemetry.dead_letters GROUP BY reason")}
    assert got == dict(expected_dead)

    # Valid totals are exact (null-bearing events included), per route and model.
    rows = worker.sql("SELECT route, model, sum(requests) AS requests, sum(errors) AS errors, sum(judged) AS judged, "
                      "sum(passed) AS passed, sum(cost_usd) AS cost FROM llm_telemetry.route_hour GROUP BY route, model")  # fmt: skip
    totals = {(r["route"], r["model"]): r for r in rows}
    assert set(totals) == set(traffic.expected["per_route"])
    for key, counts in traffic.expected["per_route"].items():
        row = totals[key]
        assert (row["requests"], row["errors"], row["judged"], row["passed"]) == (
            counts["requests"], counts["errors"], counts["judged"], counts["passed"]), key  # fmt: skip
        assert math.isclose(row["cost"], traffic.expected["cost"][key], rel_tol=1e-9), key
    assert worker.scalar("SELECT count() FROM llm_telemetry.verdicts_unjoined") == 0
    assert worker.scalar("SELECT countIf(response_model != '') FROM llm_telemetry.requests") == 0

    # The dead-letter topic and the table agree: the same source coordinates, once each.
    table = worker.sql("SELECT source_topic AS t, source_partition AS p, source_offset AS o, reason FROM llm_telemetry.dead_letters")
    table_keys = Counter((r["t"], r["p"], r["o"], r["reason"]) for r in table)
    topic = read_topic(s, s.deadletter_topic)
    topic_keys = Counter(
        (h["dlq.source.topic"].decode(), int(h["dlq.source.partition"]), int(h["dlq.source.offset"]), h["dlq.reason"].decode())
        for _, _, h, _ in topic
    )  # fmt: skip
    assert max(table_keys.values()) == 1 and max(topic_keys.values()) == 1
    assert topic_keys == table_keys
    # ... each with the reason its kind was made for, and its original bytes on the topic.
    repro_at = [k for k in table_keys if k[0] == s.verdicts_topic and k[:3] not in produced]
    assert [k[3] for k in repro_at] == ["non_finite_number"]
    assert {k[:3]: k[3] for k in table_keys if k[:3] in produced} == {
        c: m[2] for c, m in produced.items() if m[2] is not None}  # fmt: skip
    for _, _, h, value in topic:
        source = (h["dlq.source.topic"].decode(), int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))
        if source in produced:
            assert value == (produced[source][1] or b"")
    assert counters["dead_letters"] == total_dead

    # Every message produced is accounted for: stored, dead-lettered, or counted as a duplicate.
    produced_requests = end_offsets(s, s.requests_topic)
    produced_verdicts = end_offsets(s, s.verdicts_topic)
    assert (produced_requests, produced_verdicts) == (len(requests), len(verdicts) + 1)
    stored = {(r["p"], r["o"]) for r in worker.sql(
        "SELECT source_partition AS p, source_offset AS o FROM llm_telemetry.requests")}  # fmt: skip
    dead_requests = {(p, o) for t, p, o, _ in table_keys if t == s.requests_topic}
    assert not stored & dead_requests
    assert len(stored) + len(dead_requests) + counters["duplicate_requests"] == produced_requests
    dead_verdicts = sum(1 for t, *_ in table_keys if t == s.verdicts_topic)
    joined = worker.scalar("SELECT count() FROM llm_telemetry.verdicts")
    assert joined + dead_verdicts + counters["duplicate_verdicts"] == produced_verdicts
    assert (counters["duplicate_requests"], counters["duplicate_verdicts"]) == (len(dup_requests), len(dup_verdicts))
