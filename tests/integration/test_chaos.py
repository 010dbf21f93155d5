"""Chaos: three workers over one local ClickHouse server and the real broker, killed and restarted
while traffic flows. At the end every table equals an independent computation from the published
events, and each seeded incident produced exactly one firing and one resolved notification on
the alerts topic, in the ``alerts`` table and at a webhook receiver.

Traffic is the ``short`` scenario (an error storm, a silent tier-up, a clean route; producer
duplicates, verdicts before and after their requests, malformed messages), published in chunks
alternately by aiokafka (murmur2 partitioner, keyed) and kcat (librdkafka's consistent_random),
so a request and its duplicates and verdicts land on different input partitions. Between chunks
a worker is SIGKILLed (the detection owner first) and restarted, and once the broker itself is
stopped and started again.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from genai_prices import Usage, calc_price

from telemetry.settings import Settings
from telemetry.simulate import load_scenario
from telemetry.simulate.generator import SimEvent, TrafficGenerator
from telemetry.simulate.scoring import FiredAlert
from tests.integration.harness import Receiver, Worker, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "short.toml"
ALLOWED = {("ErrorStorm", "sales.email"), ("TierSwitch", "docs.summarize"), ("CostSpike", "docs.summarize")}
WORKERS = 3
CHUNKS = 8


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def clickhouse_server(tmp_path: Path) -> Iterator[str]:
    """``telemetry clickhouse start`` on free ports in its own data dir; its DSN."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATA_DIR"] = str(tmp_path / "clickhouse-server")
    http_port = free_port()
    tcp_port = next(p for p in iter(free_port, None) if p != http_port)
    ports = ["--http-port", str(http_port), "--tcp-port", str(tcp_port)]
    cli = [sys.executable, "-m", "telemetry", "clickhouse"]
    started = subprocess.run([*cli, "start", *ports], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([*cli, "stop"], env=env, capture_output=True, timeout=120, check=False)


# -- the independent computation -------------------------------------------------------------
def expected_tables(events: list[SimEvent]) -> dict[str, Any]:
    """What the tables must hold, computed from the published bytes with plain JSON and
    genai-prices, not with the worker's code."""
    requests: dict[str, dict[str, Any]] = {}
    verdicts: dict[tuple[str, str], dict[str, Any]] = {}
    malformed = 0
    for e in events:
        if e.note == "malformed":
            malformed += 1
            continue
        body = orjson.loads(e.value)
        if e.topic_kind == "requests":
            requests.setdefault(body["request_id"], body)
        else:
            verdicts.setdefault((body["request_id"], body["evaluator"]), body)
    per_route: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    cost: dict[tuple[str, str], float] = defaultdict(float)
    for r in requests.values():
        key = (r["route"], r.get("response_model") or r["model"])
        per_route[key]["requests"] += 1
        per_route[key]["errors"] += r["status"] == "error"
        try:
            usage = Usage(input_tokens=r["input_tokens"], output_tokens=r["output_tokens"],
                          cache_read_tokens=r.get("cached_input_tokens", 0))  # fmt: skip
            when = datetime.fromtimestamp(r["ts"] / 1000, tz=UTC)
            cost[key] += float(calc_price(usage, model_ref=key[1], provider_id=r["provider"],
                                          genai_request_timestamp=when).total_price)  # fmt: skip
        except LookupError:
            per_route[key]["unpriced"] += 1
    for (rid, _), v in verdicts.items():
        r = requests[rid]
        key = (r["route"], r.get("response_model") or r["model"])
        per_route[key]["judged"] += 1
        per_route[key]["passed"] += bool(v["passed"])
    return {"requests": len(requests), "verdicts": len(verdicts), "dead_letters": malformed,
            "per_route": per_route, "cost": cost}  # fmt: skip


# -- producers -------------------------------------------------------------------------------
def produce_aiokafka(settings: Settings, events: list[SimEvent]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            for e in events:
                topic = settings.requests_topic if e.topic_kind == "requests" else settings.verdicts_topic
                await producer.send(topic, e.value, key=e.key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def produce_kcat(settings: Settings, events: list[SimEvent]) -> None:
    for kind, topic in (("requests", settings.requests_topic), ("verdicts", settings.verdicts_topic)):
        lines = [(e.key or b"-") + b"\t" + e.value for e in events if e.topic_kind == kind]
        if lines:
            subprocess.run(["kcat", "-P", "-b", settings.kafka_bootstrap, "-t", topic, "-K", "\t",
                            "-X", "partitioner=consistent_random"],
                           input=b"\n".join(lines), check=True, timeout=120)  # fmt: skip


def read_alerts_topic(settings: Settings) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            out = []
            while True:
                batches = await consumer.getmany(timeout_ms=3000)
                if not batches:
                    return out
                out += [orjson.loads(m.value) for messages in batches.values() for m in messages]
        finally:
            await consumer.stop()

    return asyncio.run(run())


def restart_broker() -> None:
    """Stop the session's broker (SIGTERM) and start it again on the same data: the workers must
    ride it out (their Kafka calls are retried) without losing or repeating anything."""
    from telemetry.localkafka import broker_status, start_broker, stop_broker
    from telemetry.settings import load_settings

    settings = load_settings()
    assert broker_status(settings).managed, "the test broker must be the project's own (telemetry kafka start)"
    stop_broker(settings)
    start_broker(settings)


def owner(workers: list[Worker]) -> Worker | None:
    for w in workers:
        try:
            if w.running and w.stats().get("detection_owner"):
                return w
        except OSError:
            continue
    return None


def test_three_workers_killed_and_restarted_keep_every_table_exact_and_page_once(
    test_settings: Settings, tmp_path: Path, receiver: Receiver, clickhouse_server: str
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text('[defaults]\nchannels = ["hook"]\nsilence_alpha = 0\n'  # the clock idles to wall time at the end
                      f'[channels.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{receiver.port}/generic"\n')  # fmt: skip
    base = test_settings.model_copy(update={
        "routes_file": routes, "env": "test", "clickhouse_dsn": clickhouse_server, "topic_partitions": 4,
        "kafka_session_timeout": 6.0, "batch_size": 2000,
    })  # fmt: skip
    workers = [
        Worker(base.model_copy(update={"web_port": free_port()}), tmp_path / f"worker-{i}") for i in range(WORKERS)
    ]
    generator = TrafficGenerator(load_scenario(SCENARIO))
    events = list(generator)
    expected = expected_tables(events)
    rnd = random.Random(10)
    kills: list[str] = []
    for w in workers:
        w.start()
    try:
        size = len(events) // CHUNKS + 1
        for i in range(CHUNKS):
            chunk = events[i * size : (i + 1) * size]
            (produce_aiokafka if i % 2 == 0 else produce_kcat)(base, chunk)
            time.sleep(rnd.uniform(0.5, 2.0))
            if i in (1, 3, 5, 6):
                victim = owner(workers) if i == 1 else rnd.choice(workers)
                victim = victim or rnd.choice(workers)
                kills.append(f"chunk {i}: worker {workers.index(victim)} (owner: {bool(victim.stats().get('detection_owner'))})")
                victim.kill()
                if i != 5:  # after chunk 5 it stays down for a while: two workers carry the load
                    victim.start()
            if i == 4:  # the broker restarts under the workers (the same broker every test uses)
                restart_broker()
                kills.append("chunk 4: broker restarted")
            if i == 7:
                for w in workers:
                    if not w.running:
                        w.start()

        reader = workers[0]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            got = reader.sql("SELECT (SELECT count() FROM llm_telemetry.requests) AS r, "
                             "(SELECT count() FROM llm_telemetry.verdicts) AS v, "
                             "(SELECT countIf(status = 'resolved' AND severity != 'info') FROM llm_telemetry.alerts) AS resolved, "
                             "(SELECT countIf(status = 'firing' AND severity != 'info') FROM llm_telemetry.alerts) AS firing")[0]  # fmt: skip
            if (got["r"], got["v"]) == (expected["requests"], expected["verdicts"]) and got["firing"] and \
                    got["firing"] == got["resolved"]:  # fmt: skip
                break
            time.sleep(1)
        time.sleep(5)  # anything still in flight (a repeat would show now)

        q = reader.scalar
        requests = q("SELECT count() FROM llm_telemetry.requests")
        distinct = q("SELECT uniqExact(request_id) FROM llm_telemetry.requests")
        verdicts = q("SELECT count() FROM llm_telemetry.verdicts")
        distinct_verdicts = q("SELECT uniqExact(request_id, evaluator) FROM llm_telemetry.verdicts")
        unjoined = q("SELECT count() FROM llm_telemetry.verdicts_unjoined")
        dead = q("SELECT count() FROM llm_telemetry.dead_letters")
        dead_distinct = q("SELECT uniqExact(source_topic, source_partition, source_offset) FROM llm_telemetry.dead_letters")
        rows = reader.sql("SELECT route, model, sum(requests) AS requests, sum(errors) AS errors, sum(judged) AS judged, "
                          "sum(passed) AS passed, sum(cost_usd) AS cost FROM llm_telemetry.route_hour GROUP BY route, model")
        alerts = reader.sql("SELECT id, alertname, route, model, status, severity, sequence, "
                            "toUnixTimestamp64Milli(starts_at) AS starts FROM llm_telemetry.alerts")  # fmt: skip
        logs = {i: w.log_tail(5) for i, w in enumerate(workers)}
    finally:
        for w in workers:
            w.stop()

    context = f"kills: {kills}\nlogs: {logs}"
    # Every table equals the independent computation.
    assert (requests, distinct) == (expected["requests"], expected["requests"]), context
    assert (verdicts, distinct_verdicts, unjoined) == (expected["verdicts"], expected["verdicts"], 0), context
    assert (dead, dead_distinct) == (expected["dead_letters"], expected["dead_letters"]), context
    got = {(r["route"], r["model"]): r for r in rows}
    assert set(got) == set(expected["per_route"]), context
    for key, counts in expected["per_route"].items():
        row = got[key]
        assert (row["requests"], row["errors"], row["judged"], row["passed"]) == (
            counts["requests"], counts["errors"], counts["judged"], counts["passed"]), (key, context)  # fmt: skip
        assert row["cost"] == pytest.approx(expected["cost"].get(key, 0.0), rel=1e-9, abs=1e-9), key

    # Each seeded incident: caught, one firing and one resolved, everywhere.
    firings = [FiredAlert(a["alertname"], a["route"], a["model"], int(a["starts"])) for a in alerts
               if a["status"] == "firing" and a["sequence"] == 1]  # fmt: skip
    # Caught: each incident raised an expected alert on its route. (Not matched by time: traffic
    # is replayed ~700x faster than real time, so a worker killed for 6 s holds one input
    # partition ~70 event-minutes behind the others, and the event clock, the slowest
    # partition's, reads that far behind the newest events when the alert is decided.)
    fired = {(a.alertname, a.route) for a in firings}
    caught = {w.name: bool(fired & {(n, w.route) for n in w.expected_alertnames}) for w in generator.windows}
    assert all(caught.values()) and fired <= ALLOWED, (caught, firings, context)
    table = Counter((a["alertname"], a["route"], a["model"], a["status"]) for a in alerts)
    assert table and max(table.values()) == 1, (table, context)
    # Incidents resolve once. (When the silent tier-up ends, the route going back to the cheaper
    # model is a tier-down: an `info` record that resolves an hour of event time later, after
    # the test's traffic; it is sent once like everything else.)
    paged = Counter((a["alertname"], a["route"], a["model"], a["status"]) for a in alerts if a["severity"] != "info")
    assert {k[:3] for k in paged if k[3] == "firing"} == {k[:3] for k in paged if k[3] == "resolved"}, table
    topic_events = read_alerts_topic(base)
    topic = Counter((e["data"]["labels"]["alertname"], e["subject"], e["data"]["labels"].get("model", ""),
                     e["data"]["status"]) for e in topic_events)  # fmt: skip
    assert topic == table, (topic, table, context)
    assert sorted(e["id"] for e in topic_events) == sorted(a["id"] for a in alerts)
    # The receiver deduplicates by notification id (as PagerDuty does by dedup_key): one per key.
    hook = defaultdict(set)
    for _, b in receiver.bodies:
        hook[(b["labels"]["alertname"], b["labels"]["route"], b["labels"].get("model", ""), b["status"])].add(
            f"{b['fingerprint']}-{b['sequence']}-{b['starts_at']}")
    assert {k: len(v) for k, v in hook.items()} == dict.fromkeys(table, 1), (hook, context)
