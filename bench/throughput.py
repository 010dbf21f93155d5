"""The throughput phase: start the worker cold on pre-loaded topics and time it to the end.

``t0`` is the moment the worker process is spawned. *Ready* is the first time its stats page
says ``ready`` (ClickHouse connected and migrated, join cache loaded, producer started). *Done*
is the first poll at which both hold:

- the counters show every event handled: ``requests_stored == N_requests`` and
  ``verdicts_joined == N_verdicts``;
- the worker's consumer group has committed the log-end offset of every partition of both
  topics (``AIOKafkaAdminClient.list_consumer_group_offsets`` against ``end_offsets``).

A stats page that does not answer within 5 s (the worker's event loop held that long) is counted
(``stats_timeouts``) and asked again; ``longest_stats_wait_s`` is the slowest answer.

Stats are polled once a second until 90% of the events are counted, then every ``poll_s``
(0.1 s), so *done* is late by at most that. (Each poll costs the worker a little: its stats
page sums the parked verdicts, so polling fast all along would slow the run it measures.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.kafkautil import OffsetWatcher, end_offsets
from bench.procstat import (
    cpu_seconds,
    peak_rss_mib,
    rss_mib,
    thread_cpu,
    thread_cpu_groups,
)
from bench.spy import Spy, summarize_spy
from bench.workerproc import new_worker
from telemetry.settings import Settings
from telemetry.worker.process import WorkerProcessError

__all__ = ["FINGERPRINT_SQL", "run_throughput"]

FINGERPRINT_SQL = {
    "requests": "SELECT count() AS rows, uniqExact(request_id) AS ids, sum(input_tokens) AS input_tokens, "
                "sum(output_tokens) AS output_tokens, sum(cached_input_tokens) AS cached_input_tokens, "
                "round(sum(cost_usd), 6) AS cost_usd, countIf(status = 'error') AS errors, "
                "arraySort(groupUniqArray(error_type)) AS error_types, countIf(finish_reason = 'length') AS truncated, "
                "round(sum(latency_ms)) AS latency_ms, round(sum(ttft_ms)) AS ttft_ms, uniqExact(route, team) AS routes, "
                "uniqExact(served_model) AS served_models, sum(toUnixTimestamp64Milli(ts)) AS ts "
                "FROM {db}.requests",
    "verdicts": "SELECT count() AS rows, uniqExact(request_id, evaluator) AS ids, sum(passed) AS passed, "
                "round(sum(score), 3) AS score, sum(toUnixTimestamp64Milli(verdict_ts)) AS verdict_ts, "
                "arraySort(groupUniqArray(kind)) AS kinds, round(sum(cost_usd), 6) AS cost_usd FROM {db}.verdicts",
}  # fmt: skip
"""Sums of the stored facts both JSON and OTLP carry (not ``system_prompt_tokens``, the hashes,
the verdict ``label``): equal sums for the same traffic say the two paths stored the same rows."""


def _counter(stats: dict[str, Any], name: str) -> int:
    return int(stats.get("counters", {}).get(name, 0))


async def run_throughput(
    settings: Settings,
    log_path: Path,
    *,
    n_requests: int,
    n_verdicts: int,
    timeout_s: float = 900.0,
    poll_s: float = 0.1,
    probe_out: Path | None = None,
    spy_rate: int = 100,
    topics: Sequence[str] | None = None,
    fingerprint: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the worker on the pre-loaded topics until done (or ``timeout_s``); return figures.

    ``topics``: the input topics whose end offsets must be committed (default: the requests and
    verdicts topics; the OTLP phase passes the OTLP topics). ``fingerprint``: also sum the stored
    facts (:data:`FINGERPRINT_SQL`), so that two phases fed the same traffic can be compared."""
    bootstrap, options = settings.kafka_bootstrap, settings.kafka_client_options()
    topics = list(topics) if topics is not None else [settings.requests_topic, settings.verdicts_topic]
    ends = await end_offsets(bootstrap, options, topics)
    target_events = n_requests + n_verdicts
    worker = new_worker(settings, log_path, probe_out)
    watcher = OffsetWatcher(bootstrap, options, settings.consumer_group)
    t0 = time.monotonic()
    try:
        await asyncio.to_thread(worker.start, 180.0)
    except WorkerProcessError:
        progress("worker failed to start; log tail:\n" + worker.log_tail())
        raise
    t_ready = time.monotonic()
    assert worker.proc is not None
    pid = worker.proc.pid
    cpu_ready = cpu_seconds(pid) or 0.0
    threads_ready = thread_cpu(pid)
    probe_ready_path = None
    spy: Spy | None = None
    spy_started = time.monotonic()
    if probe_out is not None:
        probe_ready_path = probe_out.with_suffix(".ready.json")
        with contextlib.suppress(OSError):
            probe_ready_path.write_bytes(probe_out.read_bytes())
        if Spy.available():
            spy = Spy(pid, probe_out.with_suffix(".pyspy.txt"), rate=spy_rate)
            spy.start()
            spy_started = time.monotonic()
        else:
            progress("throughput: py-spy not found (pip install py-spy); profiling GC only")
    progress(f"throughput: worker ready in {t_ready - t0:.1f}s (pid {pid})")

    samples: list[tuple[float, int]] = []  # (seconds since ready, requests_stored + verdicts_joined)
    t_first: float | None = None
    t_counted: float | None = None
    t_done: float | None = None
    last_report = t_ready
    stats: dict[str, Any] = {}
    committed: dict[TopicPartition, int] = {}
    offset_checks = 0
    stats_timeouts = 0
    longest_stats_wait = 0.0  # the slowest stats page answer: how long the worker's event loop was held, at least
    try:
        while True:
            now = time.monotonic()
            if now - t0 > timeout_s:
                progress(f"throughput: timed out after {timeout_s:.0f}s")
                break
            if not worker.running:
                raise WorkerProcessError(f"worker exited ({worker.proc.returncode}); log tail:\n{worker.log_tail()}")
            asked = time.monotonic()
            try:
                stats = await asyncio.to_thread(worker.stats)
            except OSError as exc:  # no answer within 5 s: the worker's event loop is held that long
                stats_timeouts += 1
                longest_stats_wait = max(longest_stats_wait, time.monotonic() - asked)
                progress(f"throughput: the stats page did not answer ({exc}); the worker's event loop is busy")
                continue
            longest_stats_wait = max(longest_stats_wait, time.monotonic() - asked)
            stored, joined = _counter(stats, "requests_stored"), _counter(stats, "verdicts_joined")
            now = time.monotonic()
            samples.append((now - t_ready, stored + joined))
            if t_first is None and stored + joined > 0:
                t_first = now
            if stored >= n_requests and joined >= n_verdicts:
                if t_counted is None:
                    t_counted = now
                committed = await watcher.committed(ends)
                offset_checks += 1
                if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
                    t_done = time.monotonic()
                    break

            if now - last_report >= 10:
                last_report = now
                done = stored + joined
                progress(f"throughput: {done:,}/{target_events:,} events ({done / max(1e-9, now - t_ready):,.0f}/s since ready), "
                         f"rss {rss_mib(pid)} MiB")  # fmt: skip
            await asyncio.sleep(poll_s if stored + joined >= 0.9 * target_events else 1.0)
        spy_seconds = time.monotonic() - spy_started
        spy_text = await asyncio.to_thread(spy.stop) if spy is not None else ""
        with contextlib.suppress(OSError):
            stats = await asyncio.to_thread(worker.stats)
        cpu_done = cpu_seconds(pid) or 0.0
        threads_done = thread_cpu(pid)
        probe = None
        if probe_out is not None:
            await asyncio.sleep(1.1)  # let the probe write a dump that covers the end of the run
            probe = probe_delta(_read_probe(probe_ready_path), _read_probe(probe_out))
            if probe is not None and spy_text:
                probe["py_spy"] = summarize_spy(spy_text, rate=spy_rate, seconds=spy_seconds)
        py_threads = {int(k): v for k, v in (probe or {}).get("python_threads", {}).items()} if probe else None
        threads = thread_cpu_groups(pid, threads_ready, threads_done, py_threads)
        peak = peak_rss_mib(pid)
        rows = {}
        try:
            rows = (await asyncio.to_thread(worker.sql, f"SELECT (SELECT count() FROM {settings.clickhouse_database}.requests) AS requests, "
                                                       f"(SELECT count() FROM {settings.clickhouse_database}.verdicts) AS verdicts"))[0]  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a figure, not a failure
            progress(f"throughput: row count query failed: {exc}")
        prints: dict[str, Any] | None = None
        if fingerprint:
            try:
                db = settings.clickhouse_database
                prints = {table: (await asyncio.to_thread(worker.sql, sql.format(db=db)))[0]
                          for table, sql in FINGERPRINT_SQL.items()}  # fmt: skip
            except Exception as exc:  # noqa: BLE001
                progress(f"throughput: fingerprint query failed: {exc}")
    finally:
        if spy is not None:
            await asyncio.to_thread(spy.stop)  # no-op when already stopped
        await watcher.close()
        code = await asyncio.to_thread(worker.stop)
    # A restart on the same data: how long the saved state (join cache, detectors) takes to load.
    restart = new_worker(settings, log_path.with_name(log_path.stem + "-restart.log"), None)
    t_restart = time.monotonic()
    try:
        await asyncio.to_thread(restart.start, 180.0)
        restart_s: float | None = round(time.monotonic() - t_restart, 3)
    except WorkerProcessError:
        restart_s = None
    finally:
        await asyncio.to_thread(restart.stop)
    # every assignment after the first is a rebalance (e.g. the loop blocked past a heartbeat)
    rebalances = max(0, log_path.read_text(errors="replace").count("partitions assigned") - 1) if log_path.exists() else None
    end = t_done if t_done is not None else time.monotonic()
    stored, joined = _counter(stats, "requests_stored"), _counter(stats, "verdicts_joined")
    events_done = stored + joined
    steady = _steady_rate(samples, target_events)
    return {
        "complete": t_done is not None,
        "events": events_done,
        "target_events": target_events,
        "requests": stored,
        "verdicts": joined,
        "startup_s": round(t_ready - t0, 3),
        "restart_s": restart_s,
        "rebalances": rebalances,
        "first_rows_after_ready_s": round(t_first - t_ready, 3) if t_first else None,
        "counters_done_after_ready_s": round(t_counted - t_ready, 3) if t_counted else None,
        "done_after_ready_s": round(end - t_ready, 3),
        "commit_wait_s": round(end - t_counted, 3) if t_counted else None,
        "offset_checks": offset_checks,
        "stats_timeouts": stats_timeouts,
        "longest_stats_wait_s": round(longest_stats_wait, 3),
        "events_per_s": round(events_done / (end - t_ready), 1) if end > t_ready else 0.0,
        "events_per_s_including_startup": round(events_done / (end - t0), 1) if end > t0 else 0.0,
        "steady_events_per_s": steady,
        "cpu_s": round(cpu_done - cpu_ready, 2),
        "cpu_utilisation": round((cpu_done - cpu_ready) / (end - t_ready), 3) if end > t_ready else None,
        "startup_cpu_s": round(cpu_ready, 2),
        "cpu_s_by_thread": threads,
        "peak_rss_mib": peak,
        "rows_in_clickhouse": rows,
        "fingerprint": prints,
        "stats": stats,
        "worker_exit_code": code,
        "probe": probe,
        "committed_offsets": {f"{tp.topic}:{tp.partition}": off for tp, off in sorted(committed.items())},
        "end_offsets": {f"{tp.topic}:{tp.partition}": off for tp, off in sorted(ends.items())},
    }


def _read_probe(path: Path | None) -> dict[str, Any] | None:
    """The probe's latest dump (written every second by the worker child), if any."""
    if path is None:
        return None
    try:
        return dict(orjson.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None


def probe_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """The GC probe's figures between two dumps (ready and done)."""
    if after is None:
        return None
    if before is None:
        return after
    out = dict(after)
    out["gc_seconds"] = [round(a - b, 4) for a, b in zip(after["gc_seconds"], before["gc_seconds"], strict=True)]
    out["gc_collections"] = [a - b for a, b in zip(after["gc_collections"], before["gc_collections"], strict=True)]
    out["gc_collected"] = after.get("gc_collected", 0) - before.get("gc_collected", 0)
    return out


def _steady_rate(samples: list[tuple[float, int]], target: int) -> float | None:
    """Events/s between 10% and 90% of the target (excludes ramp-up and the tail)."""
    lo = hi = None
    for t, n in samples:
        if lo is None and n >= 0.1 * target:
            lo = (t, n)
        if n >= 0.9 * target:
            hi = (t, n)
            break
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return round((hi[1] - lo[1]) / (hi[0] - lo[0]), 1)
