"""JudgeDrift through the real broker, worker and ClickHouse engine.

A week of one route's requests, each judged by two LLM judges and labelled by a human. For five
days both judges agree with the humans; in the last day and a half one of them (helpfulness@v3)
collapses: it says the opposite of the human on most requests. The detection owner reads the (judge, human)
pairs from the verdicts table every 10 s of wall time; JudgeDrift fires for that judge alone,
with ``model = "judge:helpfulness@v3"``, and its evidence states both windows' agreement.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from telemetry.settings import Settings
from tests.integration.harness import Worker, produce

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000
ROUTE = "support.answer"
DRIFTING, STEADY = "helpfulness@v3", "faithfulness@v1"
PER_BATCH = 30
ROUTES = (
    f'[routes."{ROUTE}"]\n'
    'judge_recent_window = "2d"\n'  # the last 48 hours
    'judge_baseline_window = "5d"\n'  # the five days before
    "judge_min_pairs = 20\n"
    "judge_min_class = 3\n"
)


def _traffic(now_ms: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Six batches of 30 requests, a verdict of each judge and a human label on each: five in the
    baseline window (160 .. 50 hours ago), the last in the recent one (30 .. 1 hours ago, the
    drift); unlabelled requests in the last minute bring the detectors' clock to now."""
    requests: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for batch in range(6):
        drifted = batch == 5
        start = now_ms - (30 if drifted else 160 - 25 * batch) * HOUR_MS
        for i in range(PER_BATCH):
            rid = f"jd-{batch}-{i}"
            ts = start + i * HOUR_MS * (29 if drifted else 10) // PER_BATCH
            human = i % 10 < 7  # humans pass 70%
            steady = human if i % 15 else not human  # agrees on 28 of 30
            drifting = steady if not drifted else (not human if i % 5 else human)  # agrees on 6 of 30
            requests.append({"request_id": rid, "ts": ts, "route": ROUTE, "team": "support", "provider": "openai",
                             "model": "gpt-4o-mini", "input_tokens": 400, "output_tokens": 80, "latency_ms": 900.0,
                             "status": "ok"})  # fmt: skip
            verdicts += [
                {"request_id": rid, "ts": ts + 5_000, "evaluator": DRIFTING, "kind": "online", "passed": drifting},
                {"request_id": rid, "ts": ts + 6_000, "evaluator": STEADY, "kind": "online", "passed": steady},
                {"request_id": rid, "ts": min(ts + 7_200_000, now_ms - 300_000), "evaluator": "review-team",
                 "kind": "human", "passed": human},
            ]  # fmt: skip
    for i in range(200):  # on every input partition: the clock is the slowest partition's
        requests.append({"request_id": f"jd-now-{i}", "ts": now_ms - 60_000 + i * 200, "route": ROUTE,
                         "model": "gpt-4o-mini", "input_tokens": 400, "output_tokens": 80, "latency_ms": 900.0,
                         "status": "ok"})  # fmt: skip
    return requests, verdicts


def test_a_judge_that_stops_agreeing_with_humans_raises_judge_drift(test_settings: Settings, tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    settings = test_settings.model_copy(update={"routes_file": routes, "env": "test"})
    requests, verdicts = _traffic(int(time.time() * 1000))
    worker = Worker(settings, tmp_path / "logs").start()
    try:
        produce(settings, settings.requests_topic, requests)
        produce(settings, settings.verdicts_topic, verdicts)
        worker.wait_until("SELECT count() FROM llm_telemetry.verdicts", len(verdicts), timeout=60)
        query = (
            "SELECT alertname, route, model, status, sequence, evidence FROM llm_telemetry.alerts "
            "WHERE alertname = 'JudgeDrift' ORDER BY emitted_at"
        )
        deadline = time.monotonic() + 40  # the inputs are read every 10 s
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not rows:
            rows = worker.sql(query)
            time.sleep(0.5)
        time.sleep(11)  # one more refresh: no second alert, no resolution
        rows = worker.sql(query)
    finally:
        worker.stop()

    assert [(r["route"], r["model"], r["status"], r["sequence"]) for r in rows] == [
        (ROUTE, f"judge:{DRIFTING}", "firing", 1)
    ], rows
    evidence = orjson.loads(rows[0]["evidence"])
    assert evidence["judge"] == DRIFTING and evidence["rule"] in ("drop", "drop+floor", "floor")
    assert evidence["recent_pairs"] == PER_BATCH and evidence["baseline_pairs"] == 5 * PER_BATCH
    assert (evidence["recent_pass_fail"], evidence["recent_fail_pass"]) == (9, 15)  # 24 of 30 flipped
    assert evidence["recent_kappa"] < 0 < 0.8 < evidence["baseline_kappa"]
    assert evidence["recent_agreement"] == pytest.approx(6 / 30, abs=1e-4)
