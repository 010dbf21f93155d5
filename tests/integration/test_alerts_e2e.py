"""Seeded incidents through the real broker and worker: exactly the expected alerts, firing then
resolved, on the alerts topic, in the alerts table and at a local webhook receiver; the clean
route raises none."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from telemetry.settings import Settings
from telemetry.simulate import load_scenario, simulate
from telemetry.simulate.scoring import FiredAlert, score
from tests.integration.harness import Receiver, Worker

pytestmark = pytest.mark.integration
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "short.toml"
ALLOWED = {("ErrorStorm", "sales.email"), ("TierSwitch", "docs.summarize"), ("CostSpike", "docs.summarize")}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def read_topic(settings: Settings) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=3000)
            out = []
            for messages in batches.values():
                for m in messages:
                    assert dict(m.headers)["content-type"] == b"application/cloudevents+json"
                    out.append(orjson.loads(m.value))
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_seeded_incidents_alert_once_and_resolve_everywhere(test_settings: Settings, tmp_path: Path,
                                                          receiver: Receiver) -> None:  # fmt: skip
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[defaults]\nchannels = ["hook", "am"]\n'
        f'[channels.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{receiver.port}/generic"\n'
        f'[channels.am]\nkind = "alertmanager"\nurl = "http://127.0.0.1:{receiver.port}/alertmanager"\n'
    )
    settings = test_settings.model_copy(update={"routes_file": routes, "env": "test"})
    worker = Worker(settings, tmp_path / "logs").start()
    try:
        result = asyncio.run(simulate(load_scenario(SCENARIO), settings, speed=2400, progress=False))
        worker.wait_for_counter("requests_messages", result.summary.published["requests"], timeout=120)
        worker.wait_for_counter("verdicts_messages", result.summary.published["verdicts"], timeout=120)
        rows = worker.sql("SELECT alertname, route, model, status, severity, sequence, "
                          "toUnixTimestamp64Milli(starts_at) AS starts FROM llm_telemetry.alerts ORDER BY starts, status")  # fmt: skip
        events = read_topic(settings)
    finally:
        worker.stop()

    # Every seeded incident is caught by an expected alert; nothing fires elsewhere.
    firings = [FiredAlert(r["alertname"], r["route"], r["model"], int(r["starts"])) for r in rows
               if r["status"] == "firing" and r["sequence"] == 1]  # fmt: skip
    card = score(result.incidents, firings)
    assert card.all_caught, card
    assert not card.unexpected, card.unexpected
    assert {(a.alertname, a.route) for a in firings} <= ALLOWED
    assert not [r for r in rows if r["route"] == "search.query_rewrite"]

    # Fire once, resolve once: per alert one first firing and one resolution, no repeats.
    per_alert = Counter((r["alertname"], r["route"], r["model"], r["status"]) for r in rows)
    for (name, route, model, status), n in per_alert.items():
        assert n == 1, (name, route, model, status, n)
    # (an `info` record, e.g. the tier-down when the silent tier-up ends, resolves after the run)
    paged = [k for k in per_alert if not any(r["severity"] == "info" and (r["alertname"], r["route"], r["model"]) == k[:3]
                                             for r in rows)]  # fmt: skip
    assert {k[:3] for k in paged if k[3] == "firing"} == {k[:3] for k in paged if k[3] == "resolved"}

    # The same notifications on the topic and at both webhooks.
    table = sorted((r["alertname"], r["route"], r["status"]) for r in rows)
    topic = sorted((e["data"]["labels"]["alertname"], e["subject"], e["data"]["status"]) for e in events)
    generic = sorted((b["labels"]["alertname"], b["labels"]["route"], b["status"]) for p, b in receiver.bodies
                     if p == "/generic")  # fmt: skip
    manager = sorted((a["labels"]["alertname"], a["labels"]["route"], a["status"]) for p, b in receiver.bodies
                     if p == "/alertmanager" for a in b["alerts"])  # fmt: skip
    assert topic == table
    assert generic == table
    assert manager == table
    assert all(b["version"] == "4" for p, b in receiver.bodies if p == "/alertmanager")
