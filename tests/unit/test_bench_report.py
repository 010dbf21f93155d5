"""The benchmark's pure result assembly: the per-event profile and the final JSON object.

No timing assertions: every figure here is an input, and the tests check the arithmetic.
"""

from __future__ import annotations

import orjson
import pytest

from bench.latency import percentile
from bench.report import REQUIRED_KEYS, format_summary, stage_profile, summarize
from bench.spy import classify_stack, parse_raw, summarize_spy


def _throughput() -> dict:
    return {
        "complete": True,
        "events": 1200,
        "requests": 1000,
        "verdicts": 200,
        "events_per_s": 600.0,
        "events_per_s_including_startup": 400.0,
        "startup_s": 1.0,
        "done_after_ready_s": 2.0,
        "peak_rss_mib": 512.0,
        "stats": {"counters": {"requests_stored": 1000}, "stage_seconds": {"decode_validate_price": 0.6, "insert": 0.6}},
    }


def test_stage_profile_splits_wall_time_into_stages_and_overhead() -> None:
    prof = stage_profile({"decode_validate_price": 0.5, "insert": 0.25, "join": 0.25}, events=1000, wall_s=2.0)
    assert prof["us_per_event"]["decode_validate_price"] == 500.0
    assert prof["us_per_event"]["insert"] == 250.0
    assert prof["us_per_event"]["lookup"] == 0.0  # a stage that never ran is still listed
    assert prof["framework_overhead_s"] == 1.0
    assert prof["us_per_event"]["framework_overhead"] == 1000.0
    assert prof["us_per_event"]["total"] == 2000.0
    assert prof["share_of_wall"]["framework_overhead"] == 0.5


def test_stage_profile_keeps_unknown_stages_and_never_goes_negative() -> None:
    prof = stage_profile({"insert": 3.0, "new_stage": 1.0}, events=10, wall_s=2.0)
    assert prof["stage_seconds"]["new_stage"] == 1.0
    assert prof["framework_overhead_s"] == 0.0
    assert prof["stages_overlap"] is True
    assert stage_profile({"insert": 1.0}, events=10, wall_s=2.0)["stages_overlap"] is False


def test_summary_has_the_required_keys_and_the_ratio() -> None:
    s = summarize(
        run_id="r", config={"requests": 1000}, machine={"nproc": 2},
        preload={"events_per_s": 1234.5}, throughput=_throughput(),
        ceiling={"events_per_s": 6000.0, "events_per_s_including_startup": 5000.0},
        latency={"p50_s": 0.2, "p99_s": 0.9, "peak_rss_mib": 700.0, "detected": 3, "incidents_planned": 4},
        micro={"validate": {"events": 10, "seconds": 0.1, "us_per_event": 10.0}, "requests": 10},
        seconds=12.34,
    )  # fmt: skip
    for key in REQUIRED_KEYS:
        assert key in s
    assert s["events"] == 1200
    assert s["ratio"] == 0.1
    assert s["peak_rss_mib"] == 700.0  # the larger of the two phases
    assert s["alert_latency_p99_s"] == 0.9
    assert s["micro_us_per_event"] == {"validate": {"us_per_event": 10.0}}
    assert s["profile"]["us_per_event"]["framework_overhead"] == pytest.approx(666.67, abs=0.01)
    line = orjson.dumps(s).decode()
    assert "\n" not in line and orjson.loads(line) == s
    assert "600 events/s" in format_summary(s)


def test_summary_of_skipped_phases_is_null_not_missing() -> None:
    s = summarize(run_id="r", config={}, machine={}, preload=None, throughput=None, ceiling=None,
                  latency=None, micro=None, seconds=1.0)  # fmt: skip
    for key in REQUIRED_KEYS:
        assert key in s
    assert s["events"] == 0 and s["ratio"] is None and s["alert_latency_p50_s"] is None and s["peak_rss_mib"] is None
    format_summary(s)  # renders n/a without raising


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0


def test_py_spy_stacks_are_filed_under_pipeline_stages_or_framework_packages() -> None:
    sp = "/usr/lib/python3.11/site-packages"
    raw = "\n".join([
        f"thread (1): MainThread;Service.wait_first ({sp}/mode/services.py:10);_wait (/usr/lib/python3.11/asyncio/tasks.py:5) 6",
        ("thread (2): asyncio_0;Thread.run (/usr/lib/python3.11/threading.py:1);"
        f"decode_requests (/w/telemetry/ingest/batch.py:3);BaseModel.model_validate ({sp}/pydantic/main.py:9) 3"),
        "thread (1): MainThread;create_app.<locals>.StatsPage.get (/w/telemetry/worker/app.py:1) 1",
        "not a stack line",
    ])  # fmt: skip
    parsed = parse_raw(raw)
    assert [count for _, _, count in parsed] == [6, 3, 1]
    assert classify_stack(parsed[0][1]) == ("framework: mode", "mode")
    assert classify_stack(parsed[1][1]) == ("decode_validate_price", "pydantic")
    assert classify_stack([]) == ("framework: (no Python frame)", "?")
    summary = summarize_spy(raw, rate=10, seconds=2.0)
    assert summary["samples"] == 10
    assert summary["gil_busy_share"] == 0.5
    assert summary["share"] == {"framework: mode": 0.6, "decode_validate_price": 0.3, "stats_page": 0.1}
    assert summary["share_main_thread"]["framework: mode"] == 0.6
    assert summary["share_other_threads"] == {"decode_validate_price": 0.3}
