"""The several-workers benchmark's pure arithmetic: worker lists, efficiency, the count-based
end-to-end delay and its recovery, log findings, and the human summary lines."""

from __future__ import annotations

import orjson
import pytest

from bench.report import format_failover, format_summary, format_workers, summarize
from bench.workers import (
    _longest_flat,
    delays,
    efficiency,
    log_findings,
    parse_worker_counts,
    recovered_after,
    time_of_count,
)


def test_worker_counts_are_sorted_unique_and_bounded_by_the_shards() -> None:
    assert parse_worker_counts("2,1, 2", partitions=4) == [1, 2]
    assert parse_worker_counts("1,2,3,4", partitions=4) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="between 1 and --partitions"):
        parse_worker_counts("1,5", partitions=4)
    with pytest.raises(ValueError, match="between 1"):
        parse_worker_counts("0", partitions=4)
    with pytest.raises(ValueError, match="comma list"):
        parse_worker_counts("1,two", partitions=4)
    with pytest.raises(ValueError, match="at least one"):
        parse_worker_counts(" , ", partitions=4)


def test_efficiency_is_rate_over_n_times_the_single_worker_rate() -> None:
    assert efficiency({1: 10_000.0, 2: 15_000.0, 4: 20_000.0}) == {1: 1.0, 2: 0.75, 4: 0.5}
    # without N=1 the smallest N is the baseline: rate(N) / (N / N0 * rate(N0))
    assert efficiency({2: 10_000.0, 4: 15_000.0}) == {2: 1.0, 4: 0.75}
    assert efficiency({1: 0.0, 2: 5.0}) == {1: None, 2: None}
    assert efficiency({1: 100.0, 2: None}) == {1: 1.0, 2: None}
    assert efficiency({}) == {}


def test_time_of_count_interpolates_the_producer_timeline() -> None:
    timeline = [(0.0, 0), (1.0, 100), (2.0, 300), (3.0, 300), (4.0, 400)]
    assert time_of_count(timeline, 0) == 0.0
    assert time_of_count(timeline, 50) == 0.5
    assert time_of_count(timeline, 200) == 1.5
    assert time_of_count(timeline, 300) == 2.0  # first reached, not the end of the flat part
    assert time_of_count(timeline, 401) is None
    assert time_of_count([], 1) is None


def test_delay_is_how_long_ago_the_stored_count_was_produced() -> None:
    produced = [(float(t), 100 * t) for t in range(11)]  # 100 requests/s
    stored = [(2.0, 0), (3.0, 150), (5.0, 200), (10.0, 1000)]
    assert delays(produced, stored) == [(2.0, 0.0), (3.0, 1.5), (5.0, 3.0), (10.0, 0.0)]


def test_recovery_is_the_first_sample_back_under_the_threshold_after_the_peak() -> None:
    series = [(0.0, 1.0), (1.0, 3.0), (2.0, 6.0), (3.0, 4.0), (4.0, 1.5), (5.0, 2.5), (6.0, 1.0)]
    # from t=1: peak 6.0 at t=2, back to <= 2 at t=4 (the later 2.5 is the new steady saw-tooth)
    assert recovered_after(series, start=1.0, end=None, threshold=2.0) == 3.0
    assert recovered_after(series, start=0.0, end=None, threshold=10.0) == 0.0  # never above
    assert recovered_after(series, start=0.0, end=3.5, threshold=2.0) is None  # not back in the window
    assert recovered_after(series, start=7.0, end=None, threshold=2.0) is None  # empty window


def test_longest_flat_stretch_of_a_counter() -> None:
    trace = [(0.0, 5), (1.0, 5), (2.0, 5), (3.0, 7), (4.0, 8), (4.5, 8)]
    assert _longest_flat(trace, 0.0, None) == 3.0  # 5 from t=0 until it moved at t=3
    assert _longest_flat(trace, 3.0, 4.5) == 1.0  # 7 from t=3 until t=4
    assert _longest_flat(trace, 4.5, None) is None


def test_log_findings_counts_levels_and_keeps_distinct_messages() -> None:
    lines = [
        {"level": "info", "msg": "pipeline ready"},
        {"level": "warning", "msg": "Heartbeat failed"},
        {"level": "warning", "msg": "Heartbeat failed"},
        {"level": "error", "msg": "insert failed"},
        {"level": "critical", "msg": "worker cannot continue safely"},
    ]
    text = "\n".join(orjson.dumps(x).decode() for x in lines) + "\nTraceback (most recent call last):\n\n[1, 2]\n"
    got = log_findings(text)
    assert got["levels"] == {"info": 1, "warning": 2, "error": 1, "critical": 1}
    assert got["warnings"] == ["Heartbeat failed"]
    assert got["errors"] == ["insert failed", "worker cannot continue safely"]
    assert got["non_json_lines"] == 2


def _case(n: int, engine: str, eps: float, eff: float | None) -> dict:
    return {"workers": n, "engine": engine, "events_per_s": eps, "events_per_s_settled": eps * 1.2,
            "settled_s": 4.0, "efficiency": eff, "efficiency_settled": eff, "exact": True,
            "cpu_cores": {"workers": 1.2, "clickhouse_server": 0.3},
            "per_worker": [{"peak_rss_mib": 500.0}] * n}  # fmt: skip


def test_the_human_summary_prints_workers_and_failover() -> None:
    workers = {"complete": True, "requests": 200_000, "partitions": 4,
               "cases": [_case(1, "server", 10_000.0, 1.0), _case(2, "server", 15_000.0, 0.75),
                         _case(1, "embedded", 11_000.0, None)]}  # fmt: skip
    failover = {"complete": True, "rate": 2000.0, "session_timeout_s": 10.0, "victim_was_detection_owner": True,
                "after_kill": {"shards_all": 11.1, "counters_moving": 12.0, "detection_owner": 12.8,
                               "caught_up": 13.5, "peak_delay_s": 8.7},
                "baseline_delay_s": {"max": 1.4},
                "replacement": {"ready_s": 48.0, "owns_shard_s": 50.1, "peak_delay_s": 2.7,
                                "others_pid_unchanged": True},
                "add_worker": {"ready_s": 5.2, "owns_shard_s": 8.3, "peak_delay_s": 4.8,
                               "others_pid_unchanged": True},
                "exact": True}  # fmt: skip
    text = "\n".join(format_workers(workers) + format_failover(failover))
    assert "N=2 server" in text and "15,000 events/s" in text and "efficiency 0.75" in text
    assert "N=1 embedded" in text and "INCOMPLETE" not in text
    assert "all shards 11.1 s" in text and "detection owner 12.8 s" in text and "caught up 13.5 s" in text
    assert "replacement ready 48.0 s, owns a shard 50.1 s" in text
    assert "scale-up    ready 5.2 s, owns a shard 8.3 s" in text and "others' PIDs unchanged True" in text
    assert format_workers(None) == [] and format_failover({}) == []

    s = summarize(run_id="r", config={}, machine={}, preload=None, throughput=None, ceiling=None,
                  latency=None, micro=None, seconds=1.0)  # fmt: skip
    s["workers"], s["failover"] = workers, failover
    assert "N=2 server" in format_summary(s) and "after kill" in format_summary(s)
