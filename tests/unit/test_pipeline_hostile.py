"""The pipeline's shell around the decode, on the real embedded engine (chDB) with a recording
producer: dead letters published once per (topic, partition, offset), also after a restart;
the future-skew setting reaches the decode; cache-write tokens priced and stored."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from genai_prices import Usage, calc_price

from telemetry.ingest.batch import RawMessage
from telemetry.ingest.join import JoinState
from telemetry.pricing import PriceBook
from telemetry.settings import load_settings
from telemetry.storage.migrate import migrate
from telemetry.storage.store import Store
from telemetry.worker.pipeline import Pipeline

NOW = 1_767_225_600_000  # the worker's clock in these tests
REQ: dict[str, Any] = {"request_id": "a", "ts": NOW - 60_000, "route": "docs.summarize", "provider": "anthropic",
                       "model": "claude-3-5-haiku-latest", "input_tokens": 10_000, "output_tokens": 500,
                       "latency_ms": 900.0, "status": "ok"}  # fmt: skip


class RecordingProducer:
    """Stands in for AIOKafkaProducer: records every send, delivers at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, dict[str, bytes]]] = []
        self.facts: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None, **_: Any) -> Any:
        if topic.endswith("internal.facts"):
            self.facts.append(value)
        else:
            self.sent.append((topic, value, key, dict(headers or [])))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.fixture
def database(engine: Client) -> Iterator[str]:
    name = f"p_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    yield name
    engine.command(f"DROP DATABASE IF EXISTS {name}")


def new_pipeline(engine: Client, database: str, tmp_path: Path, **settings: Any) -> tuple[Pipeline, RecordingProducer]:
    """A pipeline as ``Pipeline.start`` leaves it, without Kafka: a fresh process each call."""
    s = load_settings(data_dir=tmp_path, clickhouse_database=database, topic_prefix="h.", **settings)
    pipeline = Pipeline(s, clock=lambda: NOW / 1000)
    producer = RecordingProducer()
    pipeline.store = Store(engine, database)
    pipeline.prices = PriceBook()
    pipeline.join.adopt(0, JoinState(horizon_ms=24 * 3_600_000, capacity=10_000))
    pipeline.producer = producer
    pipeline._ready.set()
    return pipeline, producer


def handle(pipeline: Pipeline, kind: Any, messages: list[RawMessage]) -> None:
    """``Pipeline.handle`` without its exit-on-bug (which would end pytest, not fail a test)."""

    async def run() -> None:
        await pipeline._handle(kind, messages)

    asyncio.run(run())


def batch(*values: bytes | None, topic: str = "h.requests", partition: int = 0) -> list[RawMessage]:
    return [RawMessage(topic, partition, offset, b"k", v) for offset, v in enumerate(values)]


def test_dead_letters_are_published_once_per_coordinates_also_after_a_restart(engine: Client, database: str,
                                                                            tmp_path: Path) -> None:  # fmt: skip
    bad = b'{"request_id":"x","ts":1e999,"route":"r","model":"m","input_tokens":1,"output_tokens":1,"latency_ms":1,"status":"ok"}'
    messages = batch(orjson.dumps(REQ), b"[1]", b"{oops", None, bad)
    pipeline, producer = new_pipeline(engine, database, tmp_path)

    handle(pipeline, "requests", messages)
    handle(pipeline, "requests", messages)  # redelivered: the offsets were not committed
    restarted, after_restart = new_pipeline(engine, database, tmp_path)
    handle(restarted, "requests", messages)

    expected = [(1, "not_an_object"), (2, "invalid_json"), (3, "empty_message"), (4, "non_finite_number")]
    assert [(t, int(h["dlq.source.offset"]), h["dlq.reason"].decode()) for t, _, _, h in producer.sent] == [
        ("h.deadletter", *e) for e in expected]  # fmt: skip
    assert [v for _, v, _, _ in producer.sent] == [b"[1]", b"{oops", b"", bad]  # the original bytes
    assert after_restart.sent == []
    rows = engine.query(f"SELECT source_offset, reason FROM {database}.dead_letters ORDER BY source_offset").result_rows
    assert rows == expected
    assert engine.query(f"SELECT count() FROM {database}.requests").result_rows[0][0] == 1
    assert pipeline.counters["dead_letters"] == 4 and pipeline.counters["dead_letters_already_recorded"] == 4
    assert restarted.counters["dead_letters_already_recorded"] == 4


def test_the_future_skew_setting_reaches_the_decode(engine: Client, database: str, tmp_path: Path) -> None:
    pipeline, producer = new_pipeline(engine, database, tmp_path, max_future_skew=60)
    requests = batch(orjson.dumps({**REQ, "ts": NOW + 59_000}), orjson.dumps({**REQ, "request_id": "b", "ts": NOW + 61_000}))
    verdicts = batch(orjson.dumps({"request_id": "a", "ts": NOW + 61_000, "evaluator": "j@v1", "passed": True}),
                     topic="h.verdicts")  # fmt: skip
    handle(pipeline, "requests", requests)
    handle(pipeline, "verdicts", verdicts)
    assert [(h["dlq.source.topic"], h["dlq.reason"]) for *_, h in producer.sent] == [
        (b"h.requests", b"ts_in_future"), (b"h.verdicts", b"ts_in_future")]  # fmt: skip
    assert pipeline.requests_clock_ms == NOW + 59_000


def test_cache_write_tokens_are_priced_at_the_cache_write_rate_and_stored(engine: Client, database: str,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    pipeline, _ = new_pipeline(engine, database, tmp_path)
    event = {**REQ, "cached_input_tokens": 2_000, "cache_write_tokens": 4_000}
    otel = {"gen_ai.response.id": "o", "ts": REQ["ts"], "route": "docs.summarize", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-latest", "gen_ai.usage.input_tokens": 10_000,
            "gen_ai.usage.output_tokens": 500, "gen_ai.usage.cache_read.input_tokens": 2_000,
            "gen_ai.usage.cache_creation.input_tokens": 4_000, "latency_ms": 900}  # fmt: skip
    plain = {**REQ, "request_id": "p", "cached_input_tokens": 2_000}
    handle(pipeline, "requests", batch(orjson.dumps(event), orjson.dumps(otel), orjson.dumps(plain)))

    when = datetime.fromtimestamp(REQ["ts"] / 1000, tz=UTC)
    usage = Usage(input_tokens=10_000, cache_read_tokens=2_000, cache_write_tokens=4_000, output_tokens=500)
    expected = float(calc_price(usage, model_ref="claude-3-5-haiku-latest", provider_id="anthropic",
                                genai_request_timestamp=when).total_price)  # fmt: skip
    rows = dict(
        (r[0], r[1:]) for r in engine.query(
            f"SELECT request_id, cache_write_tokens, cached_input_tokens, cost_usd FROM {database}.requests"
        ).result_rows
    )  # fmt: skip
    assert rows["a"][:2] == (4_000, 2_000) and rows["a"][2] == pytest.approx(expected, rel=1e-12)
    assert rows["o"] == rows["a"]
    assert rows["p"][0] == 0 and rows["a"][2] > rows["p"][2]  # cache writes cost more than plain input here


def test_aggregates_rebuild_after_an_unclean_stop(engine: Client, database: str, tmp_path: Path) -> None:
    """A SIGKILL between a table's part and its view's part leaves ``route_minute_state`` behind;
    the start-up rebuild must restore it (it failed on the column count, then crash-looped)."""
    pipeline, _ = new_pipeline(engine, database, tmp_path)
    handle(pipeline, "requests", batch(orjson.dumps(REQ), orjson.dumps({**REQ, "request_id": "b", "status": "error"})))
    handle(pipeline, "verdicts", batch(orjson.dumps({"request_id": "a", "ts": NOW, "evaluator": "j@v1", "passed": True}),
                                       topic="h.verdicts"))  # fmt: skip
    store = Store(engine, database)
    before = engine.query(f"SELECT * FROM {database}.route_hour").result_rows
    engine.command(f"TRUNCATE TABLE {database}.route_minute_state")  # as if the views' parts were lost
    assert not store.check_aggregates().consistent
    store.rebuild_aggregates()
    assert store.check_aggregates().consistent
    assert engine.query(f"SELECT * FROM {database}.route_hour").result_rows == before
