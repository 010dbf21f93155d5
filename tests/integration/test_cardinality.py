"""Issue 9, finding 6: hostile cardinality through the real broker and worker.

A producer bug sends thousands of distinct routes and model names. The tables keep every one;
the detectors keep state for at most TELEMETRY_MAX_ROUTES routes and
TELEMETRY_MAX_MODELS_PER_ROUTE models per route, count the rest under ``__overflow__``, and the
saved detector state stays small, so the worker neither slows to a crawl nor restarts slowly.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from telemetry.settings import Settings
from tests.integration.harness import Worker, produce

pytestmark = pytest.mark.integration
N = 3000


def _request(i: int, now_ms: int) -> dict[str, Any]:
    return {
        "request_id": f"card-{i}", "ts": now_ms - 600_000 + i * 100, "route": f"bug.route.{i}",
        "provider": "openai", "model": "gpt-4o-mini" if i % 2 else f"ft:gpt-4o-mini:acme:{i}",
        "input_tokens": 100, "output_tokens": 20, "latency_ms": 300.0, "status": "ok",
    }  # fmt: skip


def test_thousands_of_routes_and_models_are_stored_but_the_detectors_state_stays_bounded(
    test_settings: Settings, tmp_path: Path
) -> None:
    settings = test_settings.model_copy(update={"max_routes": 50, "max_models_per_route": 5})
    worker = Worker(settings, tmp_path).start()
    pid = worker.proc.pid if worker.proc else None
    try:
        now = int(time.time() * 1000)
        produce(settings, settings.requests_topic, [_request(i, now) for i in range(N)])
        produce(settings, settings.requests_topic, [_request(N + i, now) | {"route": "bug.route.1"} for i in range(200)])
        worker.wait_until("SELECT count() FROM llm_telemetry.requests", N + 200)
        # the tables keep every label
        assert worker.scalar("SELECT uniqExact(route) FROM llm_telemetry.requests") == N
        assert worker.scalar("SELECT uniqExact(model) FROM llm_telemetry.requests") == N // 2 + 100 + 1
        worker.wait_for_counter("overflow.routes", N - 50)  # the detection stage observes the stored facts
        counters = worker.stats()["counters"]
        assert counters.get("overflow.routes", 0) >= N - 50
        assert counters.get("overflow.models", 0) >= 1
        assert worker.proc is not None and worker.proc.pid == pid
        worker.stop()  # saves the detectors' state
        worker.start()  # and restores it
        saved = worker.sql("SELECT argMax(value, updated_at) AS v FROM llm_telemetry.worker_state "
                           "WHERE key = 'detection_engine'")[0]["v"]  # fmt: skip
        state = zlib.decompress(saved.encode("latin-1"))
        assert b"__overflow__" in state and b"bug.route.1" in state
        assert len(state) < 1_000_000, len(state)  # 50 routes and the overflow one, not 3,000
    finally:
        worker.stop()
