"""Through the broker: a canary declared in the routes file is rolled back live, naming the failing
criterion, in the alerts table and as a CloudEvent on the alerts topic a router can act on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from telemetry.settings import Settings
from tests.integration.harness import Worker, produce

pytestmark = pytest.mark.integration

MIN = 60_000
ROUTE = "support.answer"
ROUTES = f"""
[routes."{ROUTE}".canary]
model = "gpt-4.1-mini"
share = 0.1
criteria = ["p95_latency_ms < 300", "error_rate < 0.01", "pass_rate_delta > -0.02"]
"""


def _requests(start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Every 20 s a control request (fast); every 3rd one also a canary request, 900 ms: slow."""
    out = []
    for i, ts in enumerate(range(start_ms, end_ms, 20_000)):
        out.append({"request_id": f"ctl-{ts}", "ts": ts, "route": ROUTE, "provider": "openai", "model": "gpt-4o-mini",
                    "input_tokens": 800, "output_tokens": 200, "latency_ms": 180.0, "status": "ok"})  # fmt: skip
        if i % 3 == 0:
            out.append({"request_id": f"can-{ts}", "ts": ts + 1, "route": ROUTE, "provider": "openai",
                        "model": "gpt-4.1-mini", "input_tokens": 800, "output_tokens": 200, "latency_ms": 900.0,
                        "status": "ok"})  # fmt: skip
    return out


def _read_alert_events(settings: Settings) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            out = []
            for messages in (await consumer.getmany(timeout_ms=3000)).values():
                for m in messages:
                    assert dict(m.headers)["content-type"] == b"application/cloudevents+json"
                    out.append(orjson.loads(m.value))
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_a_slow_canary_is_rolled_back_live_with_its_failing_criterion(test_settings: Settings, tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    settings = test_settings.model_copy(update={"routes_file": routes, "env": "test", "event_time_idle_seconds": 3.0})
    worker = Worker(settings, tmp_path / "logs").start()
    try:
        now = int(time.time() * 1000)
        traffic = _requests(now - 40 * MIN, now)
        produce(settings, settings.requests_topic, traffic)
        worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(traffic), timeout=60)
        deadline = time.monotonic() + 45  # the detection owner reads the canary's totals every 10 s
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not rows:
            rows = worker.sql("SELECT status, severity, model, summary, evidence FROM llm_telemetry.alerts "
                              "WHERE alertname = 'CanaryVerdict' AND route = 'support.answer'")  # fmt: skip
            time.sleep(0.5)
        assert rows, worker.log_tail()
        events = [e for e in _read_alert_events(settings) if e["data"]["labels"]["alertname"] == "CanaryVerdict"]
    finally:
        worker.stop()

    [row] = rows  # one decision, one notification (it resolves an hour of event time later)
    evidence = orjson.loads(row["evidence"])
    assert (row["status"], row["severity"], row["model"]) == ("firing", "warning", "gpt-4.1-mini")
    assert evidence["action"] == "rollback" and evidence["criterion"] == "p95_latency_ms < 300"
    assert evidence["criterion_estimate"] == 1.0 and evidence["criterion_low"] > 0.05
    assert 5 <= evidence["canary_requests"] < evidence["control_requests"]  # decided at the first look with enough slow requests
    assert row["summary"].startswith("ROLL BACK canary gpt-4.1-mini on support.answer")

    [event] = events
    assert event["type"] == "io.llm-telemetry.alert.firing" and event["subject"] == ROUTE
    assert (event["canaryaction"], event["canarymodel"]) == ("rollback", "gpt-4.1-mini")
    assert "canaryarm" not in event  # the canary is a model, not an experiment arm
    assert event["data"]["evidence"]["criterion"] == "p95_latency_ms < 300"
