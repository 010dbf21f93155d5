"""Issue 9, finding 2: one clock must not silence alerting.

A request dated years ahead used to move the detectors' watermark (the largest event time seen)
into the future, so a clean 404 storm afterwards raised no ErrorStorm, and the bad watermark was
saved and survived restarts. Now such an event is dead-lettered (``ts_in_future``), the
detectors' clock is bounded by wall time, a clock saved ahead is repaired at start, and the clock
follows wall time when traffic stops, so the storm's alert resolves on a silent route.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from telemetry.settings import Settings
from tests.integration.harness import Worker, produce

pytestmark = pytest.mark.integration
YEAR_MS = 365 * 86_400_000
STORM_ROUTES = (
    '[routes."sales.email"]\n'
    'storm_clear_window = "1m"\n'
    'keep_firing_for = { ErrorStorm = "0s" }\n'
)


def _request(rid: str, ts_ms: int, *, error: bool) -> dict[str, Any]:
    return {
        "request_id": rid, "ts": ts_ms, "route": "sales.email", "team": "customer", "provider": "openai",
        "model": "gpt-4o-mini-v2" if error else "gpt-4o-mini", "input_tokens": 0 if error else 500,
        "output_tokens": 0 if error else 100, "latency_ms": 60.0, "status": "error" if error else "ok",
        "error_type": "model_not_found" if error else "", "http_status": 404 if error else 200,
    }  # fmt: skip


def _storm(prefix: str, end_ms: int) -> list[dict[str, Any]]:
    """A minute of healthy traffic, then a minute in which every call is a 404 (event time)."""
    healthy = [_request(f"{prefix}-ok-{i}", end_ms - 120_000 + i * 2000, error=False) for i in range(30)]
    storm = [_request(f"{prefix}-404-{i}", end_ms - 60_000 + i * 2000, error=True) for i in range(30)]
    return healthy + storm


def _alerts(worker: Worker) -> list[tuple[str, str]]:
    rows = worker.sql("SELECT alertname, status FROM llm_telemetry.alerts ORDER BY emitted_at, status")
    return [(r["alertname"], r["status"]) for r in rows]


def _wait_for_alert(worker: Worker, expected: list[tuple[str, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        seen = _alerts(worker)
        if seen == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"alerts {seen}, expected {expected}\n{worker.log_tail()}")


def test_a_request_dated_years_ahead_neither_silences_alerting_nor_outlives_a_restart(
    test_settings: Settings, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(STORM_ROUTES)
    now = int(time.time() * 1000)

    # An older worker accepted events from any future: a lax skew stands in for it here, so the
    # detectors' saved state carries a clock three years ahead.
    lax = test_settings.model_copy(update={"routes_file": routes, "max_future_skew": 10 * YEAR_MS / 1000})
    worker = Worker(lax, tmp_path / "lax").start()
    try:
        produce(lax, lax.requests_topic, [_request("from-the-future", now + 3 * YEAR_MS, error=False)])
        worker.wait_until("SELECT count() FROM llm_telemetry.requests", 1)
    finally:
        worker.stop()  # a clean stop saves the detectors' state

    # Today's worker: the saved clock is repaired at start, a new future event is refused, and a
    # clean 404 storm afterwards pages once; with no traffic after it, it resolves.
    settings = test_settings.model_copy(update={"routes_file": routes, "event_time_idle_seconds": 2.0})
    worker = Worker(settings, tmp_path / "today").start()
    try:
        worker.wait_for_counter("detection_takeovers", 1, timeout=30)  # the repair happens at take-over
        assert worker.stats()["counters"].get("event_clock_repairs") == 1, worker.log_tail()
        produce(settings, settings.requests_topic, [_request("again-from-the-future", now + 2 * YEAR_MS, error=False)])
        worker.wait_until("SELECT count() FROM llm_telemetry.dead_letters WHERE reason = 'ts_in_future'", 1)
        now = int(time.time() * 1000)
        produce(settings, settings.requests_topic, _storm("s", now))
        worker.wait_until("SELECT count() FROM llm_telemetry.requests", 61)
        _wait_for_alert(worker, [("ErrorStorm", "firing")], timeout=30)
        # Silence: the clock follows wall time, the storm's clear window passes, it resolves once.
        _wait_for_alert(worker, [("ErrorStorm", "firing"), ("ErrorStorm", "resolved")], timeout=150)
    finally:
        worker.stop()
