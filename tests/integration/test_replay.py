"""Replay (and simulate) against the REAL local Kafka broker, then consume the topics back.

The broker must answer at TELEMETRY_KAFKA_BOOTSTRAP (default 127.0.0.1:9092): the test waits
for it for a while and then fails loudly; it is never skipped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from telemetry.settings import Settings, load_settings
from telemetry.simulate.generator import TrafficGenerator
from telemetry.simulate.publisher import simulate
from telemetry.simulate.replay import replay
from telemetry.simulate.scenario import parse_scenario

pytestmark = pytest.mark.integration

BROKER_WAIT_S = float(os.environ.get("TEST_BROKER_WAIT_S", "120"))
START = 1_748_736_000_000

SMALL = """
[scenario]
name = "small"
seed = 5
start = "2025-06-01T00:00:00Z"
duration = "30m"

[noise]
request_duplicate_fraction = 0.02
verdict_duplicate_fraction = 0.02
early_verdict_fraction = 0.1
malformed_fraction = 0.01

[[route]]
name = "support.answer"
team = "customer"
provider = "openai"
model = "gpt-4o-mini"
peak_rps = 1.0
shape = "flat"
judged_fraction = 0.3
judge_delay = { median = "20s", sigma = 0.5, tail_fraction = 0.0, max = "5m" }

[[route]]
name = "search.rerank"
team = "search"
provider = "google"
model = "gemini-2.0-flash"
peak_rps = 0.5
shape = "flat"

[[incident]]
route = "search.rerank"
kind = "alias_404_storm"
at = "10m"
duration = "5m"
"""


def _answers(bootstrap: str) -> bool:
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
                return True
        except OSError:
            continue
    return False


@pytest.fixture(scope="module")
def bootstrap() -> str:
    """Wait for the real broker; fail (never skip) when it does not come."""
    address = load_settings().kafka_bootstrap
    deadline = time.monotonic() + BROKER_WAIT_S
    while not _answers(address):
        if time.monotonic() > deadline:
            pytest.fail(f"no Kafka broker answers at {address} after {BROKER_WAIT_S:.0f}s; start it first")
        time.sleep(2)
    return address


@pytest.fixture
def settings(bootstrap: str) -> Any:
    prefix = f"test{uuid.uuid4().hex[:10]}."
    s = load_settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=2,
                      otlp_spans_topic=f"{prefix}otlp_spans", otlp_logs_topic=f"{prefix}otlp_logs")  # fmt: skip
    yield s
    asyncio.run(_delete_topics(s))


async def _delete_topics(s: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, **s.kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [t for t in (s.requests_topic, s.verdicts_topic) if t in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def consume(
    s: Settings, expected: dict[str, int], timeout: float = 60.0
) -> dict[str, list[tuple[bytes | None, bytes]]]:
    """Read both topics from the beginning until the expected counts arrive (or time out)."""
    topics = {"requests": s.requests_topic, "verdicts": s.verdicts_topic}
    by_topic = {v: k for k, v in topics.items()}
    got: dict[str, list[tuple[bytes | None, bytes]]] = {"requests": [], "verdicts": []}
    consumer = AIOKafkaConsumer(
        *topics.values(),
        bootstrap_servers=s.kafka_bootstrap,
        **s.kafka_client_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for rec in records:
                    got[by_topic[rec.topic]].append((rec.key, rec.value))
            if all(len(got[k]) >= n for k, n in expected.items()):
                # a little longer: nothing beyond the expected must arrive
                extra = await consumer.getmany(timeout_ms=1000)
                for records in extra.values():
                    for rec in records:
                        got[by_topic[rec.topic]].append((rec.key, rec.value))
                break
    finally:
        await consumer.stop()
    return got


def _write_capture(path: Path) -> tuple[dict[str, Counter[tuple[bytes | None, bytes]]], float]:
    """A capture from a simulated half hour: envelopes and bare events mixed, plus broken lines.
    Returns the expected (key, value) multiset per topic and the simulated span in seconds."""
    sc = parse_scenario(SMALL)
    expected: dict[str, Counter[tuple[bytes | None, bytes]]] = {"requests": Counter(), "verdicts": Counter()}
    lines: list[bytes] = []
    events = list(TrafficGenerator(sc))
    for i, ev in enumerate(events):
        key = ev.key.decode() if ev.key else None
        if ev.note == "malformed":  # raw bytes in an envelope, published as they are
            envelope = {"topic": f"prod.{ev.topic_kind}", "key": key, "value": ev.value.decode(),
                        "ts": ev.publish_at_sim_ms}  # fmt: skip
            lines.append(orjson.dumps(envelope))
            expected[ev.topic_kind][(ev.key, ev.value)] += 1
        elif i % 2:  # envelope, RFC 3339 publish time
            ms = ev.publish_at_sim_ms
            rfc3339 = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
            envelope = {"topic": ev.topic_kind, "key": key, "value": orjson.loads(ev.value), "ts": rfc3339}
            lines.append(orjson.dumps(envelope))
            expected[ev.topic_kind][(ev.key, orjson.dumps(orjson.loads(ev.value)))] += 1
        else:  # bare event as captured
            lines.append(ev.value)
            expected[ev.topic_kind][(ev.key, ev.value)] += 1
        if i == 7:
            lines.append(b"")
            lines.append(b'{"this is": "not an event"}')
        if i == 20:
            lines.append(b"{truncated")
    path.write_bytes(b"\n".join(lines) + b"\n")
    span_s = (events[-1].publish_at_sim_ms - events[0].publish_at_sim_ms) / 1000
    return expected, span_s


def test_replay_original_pace_scaled_round_trip(settings: Settings, tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    expected, span_s = _write_capture(capture)
    want = {k: sum(c.values()) for k, c in expected.items()}
    scale = span_s / 3.0  # the whole capture in about 3 seconds of wall time
    progress: list[tuple[int, int]] = []

    summary = asyncio.run(
        replay(capture, settings, pace="original", scale=scale, progress=lambda d, t: progress.append((d, t)))
    )
    assert not summary.interrupted
    assert dict(summary.published) == want
    assert summary.skipped == 2
    assert [s.line_no for s in summary.skipped_lines] == [10, 24]
    assert summary.blank_lines == 1
    assert summary.lines_read == sum(want.values()) + 3
    assert 2.0 <= summary.duration_s <= 15.0  # paced, not flat out
    assert progress and progress[-1][0] == summary.lines_read
    text = summary.format()
    assert "line 10" in text and settings.requests_topic in text

    got = asyncio.run(consume(settings, want))
    for kind in ("requests", "verdicts"):
        assert Counter(got[kind]) == expected[kind], kind
    # content survived: requests parse, the 404 storm is there, keys are request ids
    storm = [orjson.loads(v) for _, v in got["requests"] if b"model_not_found" in v and v.startswith(b"{")]
    assert storm and all(r["http_status"] == 404 for r in storm if isinstance(r, dict) and "http_status" in r)


def test_replay_fast(settings: Settings, tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    rows = []
    for i in range(3000):
        request = {"request_id": f"r{i}", "ts": START + i * 60_000, "route": "a", "model": "gpt-4o-mini",
                   "input_tokens": 10, "output_tokens": 5, "latency_ms": 100.0, "status": "ok"}  # fmt: skip
        rows.append(orjson.dumps(request))
        if i % 3 == 0:
            rows.append(orjson.dumps({"request_id": f"r{i}", "ts": START + i * 60_000 + 5000,
                                      "evaluator": "q@1", "passed": i % 2 == 0}))  # fmt: skip
    capture.write_bytes(b"\n".join(rows))  # no trailing newline
    summary = asyncio.run(replay(capture, settings, pace="fast", progress=False))
    assert dict(summary.published) == {"requests": 3000, "verdicts": 1000}
    assert summary.duration_s < 30  # 50 simulated hours, not waited for
    got = asyncio.run(consume(settings, {"requests": 3000, "verdicts": 1000}))
    assert len(got["requests"]) == 3000 and len(got["verdicts"]) == 1000
    assert {k for k, _ in got["requests"]} == {f"r{i}".encode() for i in range(3000)}
    assert sorted(orjson.loads(v)["request_id"] for _, v in got["verdicts"]) == sorted(
        f"r{i}" for i in range(0, 3000, 3)
    )


def test_simulate_round_trip(settings: Settings) -> None:
    sc = parse_scenario(SMALL)
    gen = TrafficGenerator(sc)
    expected: Counter[tuple[str, bytes | None, bytes]] = Counter()
    for ev in gen:
        expected[(ev.topic_kind, ev.key, ev.value)] += 1
    result = asyncio.run(simulate(sc, settings, speed=None, progress=False))
    assert result.summary.total == sum(expected.values()) == result.generated.events
    assert [w.kind for w in result.incidents] == ["alias_404_storm"]
    want = {k: sum(n for (t, _, _), n in expected.items() if t == k) for k in ("requests", "verdicts")}
    got = asyncio.run(consume(settings, want))
    received = Counter((kind, k, v) for kind, rows in got.items() for k, v in rows)
    assert received == expected
