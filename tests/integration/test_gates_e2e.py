"""Through the broker: a gated and an ungated tier-up alert differently, and the gate follows the
traffic. The gate is opened and approved with the CLI against the running worker (which owns
the embedded engine, so the CLI writes through it)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from telemetry.settings import Settings
from telemetry.worker.process import settings_env
from tests.integration.harness import Worker, produce

pytestmark = pytest.mark.integration

MIN = 60_000
ROUTES = ("billing.explain", "search.summarize")  # gated, ungated


def _requests(route: str, model: str, start_ms: int, end_ms: int, every_ms: int = 6_000) -> list[dict[str, Any]]:
    return [
        {"request_id": f"{route}-{model}-{ts}", "ts": ts, "route": route, "team": "core", "provider": "openai",
         "model": model, "input_tokens": 1200, "output_tokens": 300, "latency_ms": 800.0, "status": "ok"}
        for ts in range(start_ms, end_ms, every_ms)
    ]  # fmt: skip


def _cli(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "telemetry", "gate", *argv], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_a_gated_and_an_ungated_tier_up_alert_differently(worker: Worker, test_settings: Settings) -> None:
    s = worker.settings = test_settings.model_copy(update={"event_time_idle_seconds": 3.0})
    now = int(time.time() * 1000)
    switch = now - 30 * MIN
    worker.start()
    baseline = [r for route in ROUTES for r in _requests(route, "gpt-4o-mini", now - 3 * 60 * MIN, switch)]
    produce(s, s.requests_topic, baseline)
    worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(baseline), timeout=90)

    opened = _cli(s, "open", ROUTES[0], "--to", "gpt-4o", "--author", "alice",
                  "--hypothesis", "explanations miss edge cases; gpt-4o should cut escalations by half")
    assert opened.returncode == 0, opened.stderr
    gate_id = opened.stderr.strip().split()[-1]
    assert "Cost projection" in opened.stdout and "p99 request" in opened.stdout
    assert _cli(s, "approve", gate_id, "--reviewer", "alice").returncode == 1  # the author cannot review
    approved = _cli(s, "approve", gate_id, "--reviewer", "bob")
    assert approved.returncode == 0, approved.stderr
    assert worker.scalar(f"SELECT state FROM llm_telemetry.tier_gate_status WHERE id = '{gate_id}'") == "approved"
    time.sleep(12)  # the detection owner reads the gates every 10 s

    switched = [r for route in ROUTES for r in _requests(route, "gpt-4o", switch, now)]
    produce(s, s.requests_topic, switched)
    deadline = time.monotonic() + 90
    alerts: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(alerts) < 2:
        for a in worker.sql("SELECT route, severity, summary, evidence FROM llm_telemetry.alerts "
                            "WHERE alertname = 'TierSwitch' AND status = 'firing' AND sequence = 1"):  # fmt: skip
            alerts[a["route"]] = a
        time.sleep(0.5)
    assert set(alerts) == set(ROUTES), worker.log_tail()

    gated, ungated = alerts[ROUTES[0]], alerts[ROUTES[1]]
    ev = orjson.loads(gated["evidence"])
    assert (gated["severity"], ev["gated"], ev["gate_id"]) == ("info", "yes", gate_id)
    assert ev["gate_projected_monthly_usd"] is not None and gated["summary"].startswith(f"gated tier-up ({gate_id})")
    ev = orjson.loads(ungated["evidence"])
    assert (ungated["severity"], ev["gated"], ev["gate_id"]) == ("warning", "no", None)
    assert ungated["summary"].startswith("UNGATED tier-up")

    # the keeper saw the proposed model take the route: applied, at the switch
    worker.wait_until(f"SELECT state FROM llm_telemetry.tier_gate_status WHERE id = '{gate_id}'", "applied", timeout=30)
    applied = worker.scalar(f"SELECT toUnixTimestamp64Milli(applied_at) FROM llm_telemetry.tier_gate_status WHERE id = '{gate_id}'")
    assert switch <= applied < switch + 6_000
    listed = _cli(s, "list", "--format", "json")
    assert orjson.loads(listed.stdout.splitlines()[0])["state"] == "applied"
