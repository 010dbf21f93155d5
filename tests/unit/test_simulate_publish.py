"""Publishing and replay without a broker: pacing (time compression), batching, cancellation,
the JSONL capture format. The real-broker round trip is tests/integration/test_replay.py."""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from telemetry.settings import load_settings
from telemetry.simulate.generator import SimEvent, TrafficGenerator
from telemetry.simulate.progress import TextProgress
from telemetry.simulate.publisher import Pacer, publish, resolve_start
from telemetry.simulate.replay import ReplaySummary, count_lines, parse_line, read_events
from telemetry.simulate.scenario import load_scenario

START = 1_748_736_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeProducer:
    """Records (wall time, topic, key, value) per send; delivery futures resolve at once."""

    def __init__(self, clock: FakeClock | None = None, fail_on: int | None = None) -> None:
        self.clock = clock
        self.sent: list[tuple[float, str, bytes | None, bytes]] = []
        self.flushes = 0
        self.fail_on = fail_on

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        await asyncio.sleep(0)  # a cancellation here means the message was not handed over
        self.sent.append((self.clock() if self.clock else 0.0, topic, key, value))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_on is not None and len(self.sent) == self.fail_on:
            fut.set_exception(RuntimeError("broker said no"))
        else:
            fut.set_result(len(self.sent))
        return fut

    async def flush(self) -> None:
        self.flushes += 1


SETTINGS = load_settings(topic_prefix="unit.")


def test_pacer_maps_simulated_time_to_wall_time() -> None:
    p = Pacer(360.0, origin_sim_ms=START)
    assert p.delay_s(START + 3_600_000, wall_now=50.0) == pytest.approx(10.0)  # 1 h at x360 = 10 s
    assert p.delay_s(START + 86_400_000, wall_now=50.0) == pytest.approx(240.0)  # a day = 4 minutes
    assert p.delay_s(START + 3_600_000, wall_now=70.0) == pytest.approx(-10.0)  # late
    with pytest.raises(ValueError):
        Pacer(0)


def test_time_compression_is_consistent() -> None:
    """Paced at x360, each event leaves at wall0 + (sim - start)/360; event timestamps are
    simulated times consistent with that schedule."""
    sc = load_scenario("demo")
    events = list(itertools.islice(TrafficGenerator(sc), 4000))
    clock = FakeClock()
    producer = FakeProducer(clock)
    summary = asyncio.run(
        publish(events, SETTINGS, speed=360.0, producer=producer, origin_sim_ms=sc.start_ms,
                clock=clock, sleep=clock.sleep)
    )  # fmt: skip
    assert summary.total == 4000 and not summary.interrupted
    wall0 = 1000.0
    for (wall, topic, key, value), ev in zip(producer.sent, events, strict=True):
        assert wall == pytest.approx(wall0 + (ev.publish_at_sim_ms - sc.start_ms) / 1000 / 360, abs=0.002)
        assert topic == ("unit.requests" if ev.topic_kind == "requests" else "unit.verdicts")
        assert (key, value) == (ev.key, ev.value)
        if ev.note == "original":
            body = orjson.loads(value)
            # the event's own (simulated) time is at or before its publication, in the same clock
            # (events may leave up to 1 ms of wall time early: 360 ms simulated)
            assert body["ts"] <= sc.start_ms + (wall - wall0) * 1000 * 360 + 400
    assert all(s <= 0.5 for s in clock.sleeps)  # sleeps are sliced
    assert summary.max_behind_s < 0.01
    assert summary.duration_s == pytest.approx((events[-1].publish_at_sim_ms - sc.start_ms) / 1000 / 360, abs=0.01)


def test_fast_mode_does_not_wait_and_counts_by_topic_and_note() -> None:
    events = [
        SimEvent(
            START + i * 60_000,
            "requests" if i % 3 else "verdicts",
            b"k%d" % i,
            b"{}",
            "duplicate" if i == 4 else "original",
        )
        for i in range(12)
    ]
    clock = FakeClock()
    producer = FakeProducer(clock)
    calls: list[tuple[int, int]] = []
    summary = asyncio.run(
        publish(events, SETTINGS, speed=None, producer=producer, clock=clock, sleep=clock.sleep,
                progress=lambda d, t: calls.append((d, t)), total=12, chunk=5)
    )  # fmt: skip
    assert clock.sleeps == []
    assert summary.published == {"requests": 8, "verdicts": 4}
    assert summary.by_note == {"original": 11, "duplicate": 1}
    assert producer.flushes == 1
    assert calls[-1] == (12, 12)
    assert "unit.requests: 8" in summary.format()


def test_delivery_failure_is_loud() -> None:
    events = [SimEvent(START, "requests", b"k", b"{}")] * 10
    from telemetry.errors import InfrastructureError

    with pytest.raises(InfrastructureError, match="broker said no"):
        asyncio.run(publish(events, SETTINGS, producer=FakeProducer(fail_on=3)))


def test_cancel_flushes_and_returns_what_was_delivered() -> None:
    async def run() -> tuple[Any, FakeProducer]:
        producer = FakeProducer()

        def endless() -> Iterator[SimEvent]:
            for i in itertools.count():
                if i == 250:
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()
                yield SimEvent(START + i, "requests", b"k", b"{}")

        summary = await publish(endless(), SETTINGS, producer=producer, chunk=100)
        return summary, producer

    summary, producer = asyncio.run(run())
    assert summary.interrupted
    assert producer.flushes == 1
    assert summary.total == len(producer.sent) >= 250

    async def run_raising() -> None:
        async def body() -> None:
            def endless() -> Iterator[SimEvent]:
                for i in itertools.count():
                    if i == 10:
                        asyncio.current_task().cancel()  # type: ignore[union-attr]
                    yield SimEvent(START + i, "requests", b"k", b"{}")

            await publish(endless(), SETTINGS, producer=FakeProducer(), raise_on_cancel=True)

        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(body())

    asyncio.run(run_raising())


def test_resolve_start() -> None:
    assert resolve_start(None) is None
    assert resolve_start("2025-06-01T00:00:00Z") == START
    assert resolve_start(START) == START
    now = resolve_start("now")
    assert now is not None and now % 1000 == 0


def test_text_progress() -> None:
    out = io.StringIO()
    t = [0.0]
    bar = TextProgress("x", stream=out, width=10, clock=lambda: t[0])
    bar(0, 100)
    t[0] = 10.0
    bar(50, 100)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "[#####-----]  50.0%  50/100" in lines[1]
    assert "5 ev/s" in lines[1]
    assert TextProgress(stream=io.StringIO()).render(7, 0, 1.0) == "7 events  7 ev/s  1s"


# --------------------------------------------------------------------------------------
# replay format
# --------------------------------------------------------------------------------------

REQ = {"request_id": "r1", "ts": START, "route": "a", "model": "gpt-4o-mini", "input_tokens": 1,
       "output_tokens": 1, "latency_ms": 5, "status": "ok"}  # fmt: skip
VER = {"request_id": "r1", "ts": START + 2000, "evaluator": "q@1", "passed": True}


def test_parse_envelopes() -> None:
    line = parse_line(orjson.dumps({"topic": "requests", "key": "kk", "value": REQ, "ts": START + 5}))
    assert (line.topic_kind, line.key, line.ts_ms) == ("requests", b"kk", START + 5)
    assert orjson.loads(line.value) == REQ
    # full topic names, RFC 3339 ts, default key from the event, raw string values, null key
    line = parse_line(orjson.dumps({"topic": "llm.verdicts", "value": VER, "ts": "2025-06-01T00:00:01Z"}))
    assert (line.topic_kind, line.key, line.ts_ms) == ("verdicts", b"r1", START + 1000)
    line = parse_line(orjson.dumps({"topic": "requests", "key": None, "value": "{broken"}))
    assert (line.key, line.value, line.ts_ms) == (None, b"{broken", None)
    # ts defaults to the event's own
    assert parse_line(orjson.dumps({"topic": "requests", "value": REQ})).ts_ms == START


def test_parse_bare_events() -> None:
    raw = orjson.dumps(REQ)
    line = parse_line(b"  " + raw + b"\n")
    assert (line.topic_kind, line.key, line.value, line.ts_ms) == ("requests", b"r1", raw, START)
    line = parse_line(orjson.dumps(VER))
    assert (line.topic_kind, line.ts_ms) == ("verdicts", START + 2000)
    otel = {"name": "gen_ai.evaluation.result", "attributes": {"gen_ai.response.id": "r9",
            "gen_ai.evaluation.name": "rel", "gen_ai.evaluation.score.value": 0.9}}  # fmt: skip
    line = parse_line(orjson.dumps(otel))
    assert (line.topic_kind, line.key, line.ts_ms) == ("verdicts", b"r9", None)
    flat = {"route": "a", "gen_ai.request.model": "gpt-4o", "gen_ai.response.id": "r7"}
    assert parse_line(orjson.dumps(flat)).key == b"r7"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"hello": 1}', "neither a request"),
        (b'{"topic": "alerts", "value": {}}', "unknown topic"),
        (b'{"topic": "requests", "value": 5}', "value must be"),
        (b'{"topic": "requests", "value": {}, "ts": "whenever"}', "bad ts"),
        (b'{"topic": "requests", "value": {}, "key": [1]}', "key must be"),
    ],
)
def test_unreadable_lines(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(raw)


def _capture(path: Path, rows: list[Any], compress: bool = False) -> Path:
    data = b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in rows) + b"\n"
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_read_events_paces_by_running_max_and_reports_skips(tmp_path: Path, compress: bool) -> None:
    rows = [
        {"topic": "requests", "value": REQ, "ts": START},
        b"",
        b"garbage",
        {"topic": "verdicts", "value": VER, "ts": START + 3000},
        {**REQ, "request_id": "r2", "ts": START + 1000},  # earlier than already seen: no going back
        {"topic": "requests", "value": "raw-bytes", "key": "r3"},  # no time: right after the previous
        {**REQ, "request_id": "r4", "ts": START + 10_000},
    ]
    path = _capture(tmp_path / ("c.jsonl.gz" if compress else "c.jsonl"), rows, compress)
    summary = ReplaySummary(path=str(path))
    events = list(read_events(path, summary))
    assert [e.publish_at_sim_ms - START for e in events] == [0, 3000, 3000, 3000, 10_000]
    assert [e.topic_kind for e in events] == ["requests", "verdicts", "requests", "requests", "requests"]
    assert summary.lines_read == 7 and summary.blank_lines == 1 and summary.skipped == 1
    assert summary.skipped_lines[0].line_no == 3
    assert count_lines(path) == 7
    # replayed through the publisher at x2: gaps are halved
    clock = FakeClock()
    producer = FakeProducer(clock)
    asyncio.run(publish(iter(events), SETTINGS, speed=2.0, producer=producer, clock=clock, sleep=clock.sleep))
    assert [round(w - 1000.0, 3) for w, *_ in producer.sent] == [0.0, 1.5, 1.5, 1.5, 5.0]
