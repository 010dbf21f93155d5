"""Several workers: scale-out over one ClickHouse server (``--workers``) and failover (``--failover``).

Scaling (``--workers 1,2``): for each N, fresh topics and consumer groups, ``--workers-requests``
requests (and their sampled verdicts) pre-loaded with the throughput phase's machinery, a fresh
database (``TELEMETRY_CLICKHOUSE_DATABASE=bench_workers_<N>``) on the **one** local ClickHouse
server started for the run (``telemetry clickhouse start``), migrated before the clock starts.
``t0`` = the N worker processes are spawned (at once); *done* = the first poll at which
``count()`` of ``requests`` and of ``verdicts`` reach the pre-loaded numbers (polled straight from
the server, once a second, every 0.2 s after 90%). ``events_per_s`` = events / (done - t0);
efficiency = events_per_s(N) / (N x events_per_s(N0)) with N0 the smallest N of the list (1).
With 1 in the list, N = 1 also runs on the embedded chDB engine (no server), for comparison.

Failover (``--failover``): 2 workers on the server (database ``bench_failover``) under a paced
load (``--failover-rate`` events/s with ``ts`` = the wall clock, for ``--failover-seconds``).
After ``--failover-kill-after`` seconds the detection owner is SIGKILLed; the bench polls the
survivor's stats page and the server every 0.25 s and records, from the kill:

- ``shards_all``: the survivor owns every join shard;
- ``counters_moving``: after that, its ``requests_stored`` counter moved again;
- ``detection_owner``: the survivor is the detection owner;
- ``caught_up``: past its peak (``peak_delay_s``), the end-to-end delay is back to normal. The
  *delay* at a poll is how long ago the producer had handed over as many requests as are stored
  now (``count()`` of ``requests``): a count-based end-to-end lag in seconds. *Normal* is the
  largest delay seen before the kill (after a 5 s ramp-up) plus ``CATCH_UP_MARGIN_S`` (1 s).

Once caught up (+ 5 s), a *replacement* worker is started next to the survivor, and once that one
owns a join shard (+ 10 s), with 3 or more shards, one more (the *scale-up*, with no dead member
left in any consumer group). For each: ``ready_s`` and ``owns_shard_s`` from its spawn, the peak
delay while it joins, and whether the others kept running with their PIDs. The load runs at least
``--failover-seconds``, longer when these steps need it. After the load, every produced request
and verdict must be stored exactly once (``count() == uniqExact()``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson

from bench.procstat import cpu_seconds, peak_rss_mib
from telemetry.settings import Settings
from telemetry.worker.process import WorkerProcess, WorkerProcessError

__all__ = [
    "ClickHouseServer",
    "PacedLoad",
    "delays",
    "efficiency",
    "log_findings",
    "parse_worker_counts",
    "recovered_after",
    "run_failover",
    "run_scaling",
    "time_of_count",
]

Progress = Callable[[str], None]

AFTER_ADD_S = 10.0
"""After a new worker owns a join shard, the failover phase watches this long before the next step."""

CATCH_UP_MARGIN_S = 1.0
"""Caught up = the delay is back within this much of the worst delay seen before the kill (one
batch window: with one worker fewer, each carries larger batches and its delay saw-tooths higher)."""


# -- pure arithmetic (unit-tested) -------------------------------------------------------------
def parse_worker_counts(text: str, partitions: int) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (sorted, deduplicated). Each N must be 1..``partitions``: a
    worker beyond the number of join shards would own none."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--workers wants a comma list of integers, got {text!r}") from None
    if not counts:
        raise ValueError("--workers wants at least one number")
    bad = [n for n in counts if n < 1 or n > partitions]
    if bad:
        raise ValueError(f"--workers {bad}: each N must be between 1 and --partitions ({partitions}): "
                         "the join shards are the partitions, a worker beyond them has nothing to do")  # fmt: skip
    return counts


def efficiency(rates: Mapping[int, float | None]) -> dict[int, float | None]:
    """Per-worker efficiency of each N: ``rate(N) / (N / N0 * rate(N0))``, N0 the smallest N
    (with N0 = 1: ``rate(N) / (N * rate(1))``). 1.0 is perfect scaling."""
    if not rates:
        return {}
    n0 = min(rates)
    base = rates[n0]
    out: dict[int, float | None] = {}
    for n, rate in sorted(rates.items()):
        out[n] = round(rate * n0 / (n * base), 3) if rate is not None and base else None
    return out


def time_of_count(timeline: Sequence[tuple[float, int]], count: int) -> float | None:
    """When the cumulative count in ``timeline`` (``(t, count)``, both non-decreasing) first
    reached ``count``, interpolated linearly between samples; None if it never did."""
    if not timeline or count > timeline[-1][1]:
        return None
    if count <= timeline[0][1]:
        return timeline[0][0]
    i = bisect.bisect_left([c for _, c in timeline], count)
    (t0, c0), (t1, c1) = timeline[i - 1], timeline[i]
    return t0 + (t1 - t0) * (count - c0) / (c1 - c0) if c1 > c0 else t1


def delays(produced: Sequence[tuple[float, int]], stored: Sequence[tuple[float, int]]) -> list[tuple[float, float]]:
    """``(t, delay)`` for every ``(t, stored count)`` sample: ``t`` minus the time the producer had
    handed over that many events (0 when none is stored yet or the count is ahead of the
    producer's samples)."""
    out = []
    for t, n in stored:
        when = time_of_count(produced, n) if n > 0 else None
        out.append((t, max(0.0, t - when) if when is not None else 0.0))
    return out


def recovered_after(series: Sequence[tuple[float, float]], start: float, end: float | None,
                    threshold: float) -> float | None:  # fmt: skip
    """Seconds from ``start`` until the delay, past its peak in ``[start, end)``, is first back at
    or below ``threshold`` (the backlog drained); 0.0 if it never rose above it; None if it never
    came back within the window."""
    window = [(t, d) for t, d in series if t >= start and (end is None or t < end)]
    if not window:
        return None
    peak = max(range(len(window)), key=lambda i: window[i][1])
    if window[peak][1] <= threshold:
        return 0.0
    back = next((t for t, d in window[peak + 1 :] if d <= threshold), None)
    return round(back - start, 3) if back is not None else None


def log_findings(text: str, keep: int = 5) -> dict[str, Any]:
    """Counts of a worker log's JSON lines by level, the first ``keep`` distinct error and warning
    messages, and the number of lines that are not JSON (tracebacks, stray prints)."""
    levels: dict[str, int] = {}
    errors: list[str] = []
    warnings: list[str] = []
    other = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            other += 1
            continue
        if not isinstance(rec, dict):
            other += 1
            continue
        level = str(rec.get("level", "?")).lower()
        levels[level] = levels.get(level, 0) + 1
        msg = str(rec.get("message", rec.get("msg", "")))[:200]
        bucket = errors if level in ("error", "critical") else warnings if level == "warning" else None
        if bucket is not None and msg not in bucket and len(bucket) < keep:
            bucket.append(msg)
    return {"levels": levels, "errors": errors, "warnings": warnings, "non_json_lines": other}


# -- processes ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ClickHouseServer:
    """``telemetry clickhouse start`` / ``stop`` for one data directory, on free ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.dsn: str | None = None
        self.pid: int | None = None

    def _env(self) -> dict[str, str]:
        from bench.workerproc import bench_env

        env = {k: v for k, v in bench_env().items() if not k.startswith("TELEMETRY_")}
        env["TELEMETRY_DATA_DIR"] = str(self.data_dir)
        return env

    def start(self) -> str:
        http_port = free_port()
        tcp_port = next(p for p in iter(free_port, None) if p != http_port)
        cmd = [sys.executable, "-m", "telemetry", "clickhouse", "start", "--http-port", str(http_port),
               "--tcp-port", str(tcp_port)]  # fmt: skip
        done = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"telemetry clickhouse start failed ({done.returncode}): {done.stderr[-2000:]}")
        self.dsn = done.stdout.strip().splitlines()[-1]
        with contextlib.suppress(OSError, ValueError):
            self.pid = int((self.data_dir / "clickhouse-server" / "server.pid").read_text().split()[0])
        return self.dsn

    def stop(self) -> None:
        subprocess.run([sys.executable, "-m", "telemetry", "clickhouse", "stop"], env=self._env(),
                       capture_output=True, timeout=120, check=False)  # fmt: skip


def _migrate(dsn: str, database: str) -> None:
    """Create and migrate ``database`` before the workers start (what ``telemetry migrate`` does),
    so N workers do not race to apply the same migrations and the clock measures the work."""
    from telemetry.storage.clickhouse import connect
    from telemetry.storage.migrate import migrate

    migrate(connect(dsn), database)


class _Counts:
    """``count()`` of ``requests`` and ``verdicts``: straight from the server, or (embedded
    engine) through a worker's SQL page."""

    def __init__(self, database: str, dsn: str | None, via: WorkerProcess | None = None) -> None:
        self.database = database
        self.via = via
        self.client: Any = None
        if dsn is not None:
            from telemetry.storage.clickhouse import connect

            self.client = connect(dsn)

    def _query(self, sql: str) -> dict[str, Any]:
        if self.client is not None:
            result = self.client.query(sql)
            return dict(zip(result.column_names, result.result_rows[0], strict=True))
        assert self.via is not None
        return self.via.sql(sql)[0]

    def counts(self) -> tuple[int, int]:
        db = self.database
        row = self._query(f"SELECT (SELECT count() FROM {db}.requests) AS r, (SELECT count() FROM {db}.verdicts) AS v")
        return int(row["r"]), int(row["v"])

    def requests(self) -> int:
        return int(self._query(f"SELECT count() AS r FROM {self.database}.requests")["r"])

    def exactness(self) -> dict[str, int]:
        db = self.database
        row = self._query(
            f"SELECT (SELECT count() FROM {db}.requests) AS requests, "
            f"(SELECT uniqExact(request_id) FROM {db}.requests) AS requests_distinct, "
            f"(SELECT count() FROM {db}.verdicts) AS verdicts, "
            f"(SELECT uniqExact(request_id, evaluator) FROM {db}.verdicts) AS verdicts_distinct, "
            f"(SELECT count() FROM {db}.verdicts_unjoined) AS verdicts_unjoined, "
            f"(SELECT count() FROM {db}.dead_letters) AS dead_letters"
        )  # fmt: skip
        return {k: int(v) for k, v in row.items()}


def _worker_settings(base: Settings, i: int, **update: Any) -> Settings:
    return base.model_copy(update={"web_port": free_port(), "data_dir": base.data_dir / f"worker-{i}", **update})


def _pid(worker: WorkerProcess) -> int | None:
    return worker.proc.pid if worker.proc is not None else None


def _safe_stats(worker: WorkerProcess) -> dict[str, Any] | None:
    if not worker.running:
        return None
    try:
        return worker.stats()
    except (OSError, ValueError):
        return None


def _counter(stats: Mapping[str, Any] | None, name: str) -> int:
    return int(((stats or {}).get("counters") or {}).get(name, 0))


def _log_text(worker: WorkerProcess) -> str:
    try:
        return worker.log_path.read_text(errors="replace")
    except OSError:
        return ""


def _worker_figures(worker: WorkerProcess, stats: Mapping[str, Any] | None, t0: float,
                    ready_at: float | None) -> dict[str, Any]:  # fmt: skip
    pid = worker.proc.pid if worker.proc is not None else None
    text = _log_text(worker)
    return {
        "pid": pid,
        "ready_s": round(ready_at - t0, 3) if ready_at is not None else None,
        "peak_rss_mib": peak_rss_mib(pid) if pid else None,
        "cpu_s": cpu_seconds(pid) if pid else None,
        "shards": (stats or {}).get("shards"),
        "detection_owner": (stats or {}).get("detection_owner"),
        "requests_stored": _counter(stats, "requests_stored"),
        "verdicts_joined": _counter(stats, "verdicts_joined"),
        "repartition_messages": _counter(stats, "repartition.messages"),
        "duplicate_requests": _counter(stats, "duplicate_requests"),
        "shard_assignments": text.count("shards assigned"),
        "log": log_findings(text),
    }


async def _start_all(workers: Sequence[WorkerProcess], timeout_s: float = 180.0) -> list[float]:
    """Spawn every worker at once; the monotonic time each became ready."""

    def start(w: WorkerProcess) -> float:
        w.start(timeout_s)
        return time.monotonic()

    return list(await asyncio.gather(*(asyncio.to_thread(start, w) for w in workers)))


async def _stop_all(workers: Sequence[WorkerProcess]) -> list[int | None]:
    return list(await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers)))


# -- scaling -----------------------------------------------------------------------------------
async def run_scale_case(
    settings: Settings,
    n: int,
    *,
    n_requests: int,
    n_verdicts: int,
    dsn: str | None,
    server_pid: int | None = None,
    broker_pid: int | None = None,
    timeout_s: float = 900.0,
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """N workers on ``settings`` (its topics pre-loaded) until every event is stored; figures."""
    label = f"workers N={n} ({'server' if dsn else 'embedded'})"
    if dsn is not None:
        await asyncio.to_thread(_migrate, dsn, settings.clickhouse_database)
    logs = settings.data_dir / "logs"
    workers = [WorkerProcess(_worker_settings(settings, i), logs / f"worker-{i}.log") for i in range(n)]
    target = n_requests + n_verdicts
    infra_cpu0 = {k: cpu_seconds(p) for k, p in (("clickhouse_server", server_pid), ("broker", broker_pid)) if p}
    t0 = time.monotonic()
    ready_at: list[float] = []
    t_done: float | None = None
    t_settled: float | None = None
    settled_events: int | None = None
    counts: tuple[int, int] = (0, 0)
    stats: list[dict[str, Any] | None] = [None] * n
    exact: dict[str, int] = {}
    infra_cpu: dict[str, float | None] = {}
    try:
        try:
            ready_at = await _start_all(workers)
        except WorkerProcessError:
            progress(f"{label}: a worker failed to start; log tails:\n" + "\n".join(w.log_tail(10) for w in workers))
            raise
        progress(f"{label}: all ready in {max(ready_at) - t0:.1f}s")
        counter = _Counts(settings.clickhouse_database, dsn, via=workers[0])
        last_report = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            dead = [i for i, w in enumerate(workers) if not w.running]
            if dead:
                raise WorkerProcessError(f"{label}: worker {dead[0]} exited; log tail:\n{workers[dead[0]].log_tail()}")
            if t_settled is None:  # every worker has join shards: the N-worker steady state begins
                polled = await asyncio.gather(*(asyncio.to_thread(_safe_stats, w) for w in workers))
                if all((x or {}).get("shards") for x in polled):
                    t_settled = time.monotonic()
            counts = await asyncio.to_thread(counter.counts)
            now = time.monotonic()
            if t_settled is not None and settled_events is None:
                settled_events = sum(counts)
            if counts[0] >= n_requests and counts[1] >= n_verdicts:
                t_done = now
                break
            if now - last_report >= 10:
                last_report = now
                progress(f"{label}: {sum(counts):,}/{target:,} events stored ({sum(counts) / (now - t0):,.0f}/s)")
            await asyncio.sleep(0.2 if sum(counts) >= 0.9 * target else 1.0 if t_settled is not None else 0.5)
        else:
            progress(f"{label}: timed out after {timeout_s:.0f}s")
        for k, p in (("clickhouse_server", server_pid), ("broker", broker_pid)):
            if p and infra_cpu0.get(k) is not None:
                infra_cpu[k] = round((cpu_seconds(p) or 0.0) - (infra_cpu0[k] or 0.0), 2)
        stats = list(await asyncio.gather(*(asyncio.to_thread(_safe_stats, w) for w in workers)))
        exact = await asyncio.to_thread(counter.exactness)
        figures = [_worker_figures(w, s, t0, r) for w, s, r in zip(workers, stats, ready_at, strict=True)]
    finally:
        codes = await _stop_all(workers)
    for i, code in enumerate(codes):
        figures[i]["exit_code"] = code
        figures[i]["log"] = log_findings(_log_text(workers[i]))  # again: now with the shutdown
    end = t_done if t_done is not None else time.monotonic()
    wall = end - t0
    after_ready = end - max(ready_at) if ready_at else None
    events = sum(counts)
    cpu_workers = sum(f["cpu_s"] or 0.0 for f in figures)
    settled_rate = None
    if t_done is not None and t_settled is not None and settled_events is not None and t_done - t_settled >= 1.0:
        settled_rate = round((events - settled_events) / (t_done - t_settled), 1)
    return {
        "engine": "server" if dsn else "embedded",
        "workers": n,
        "complete": t_done is not None,
        "requests": n_requests,
        "verdicts": n_verdicts,
        "events": events,
        "seconds": round(wall, 3),
        "ready_s": round(max(ready_at) - t0, 3) if ready_at else None,
        "events_per_s": round(events / wall, 1) if wall > 0 else None,
        "events_per_s_after_ready": round(events / after_ready, 1) if after_ready else None,
        "settled_s": round(t_settled - t0, 3) if t_settled is not None else None,
        "events_at_settled": settled_events,
        "events_per_s_settled": settled_rate,
        "exact": bool(exact) and exact.get("requests") == exact.get("requests_distinct") == n_requests
        and exact.get("verdicts") == exact.get("verdicts_distinct") == n_verdicts,
        "rows": exact,
        "peak_rss_mib_max": max((f["peak_rss_mib"] or 0.0 for f in figures), default=None),
        "cpu_s": {"workers": round(cpu_workers, 2), **infra_cpu},
        "cpu_cores": {"workers": round(cpu_workers / wall, 2) if wall > 0 else None,
                      **{k: round(v / wall, 2) for k, v in infra_cpu.items() if v is not None and wall > 0}},
        "per_worker": figures,
    }  # fmt: skip


async def run_scaling(
    args: Any,
    settings_for: Callable[[str], Settings],
    *,
    dsn: str,
    server_pid: int | None,
    broker_pid: int | None,
    counts: Sequence[int],
    embedded: bool,
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Every N of ``counts`` on the server (fresh topics, group and database each), then N = 1 on
    the embedded engine when asked; events/s and efficiency."""
    from bench.kafkautil import create_topics
    from bench.preload import preload
    from bench.traffic import TrafficMix

    cases: list[tuple[str, int, str | None]] = [(f"workers-{n}", n, dsn) for n in counts]
    if embedded:
        cases.append(("workers-1-embedded", 1, None))
    results: list[dict[str, Any]] = []
    for phase, n, case_dsn in cases:
        s = settings_for(phase)
        update: dict[str, Any] = {"clickhouse_dsn": case_dsn}
        if case_dsn is not None:
            update["clickhouse_database"] = phase.replace("-", "_").replace("workers", "bench_workers")
        s = s.model_copy(update=update)
        opts = s.kafka_client_options()
        await create_topics(s.kafka_bootstrap, opts, [s.requests_topic, s.verdicts_topic], args.partitions)
        now_ms = int(time.time() * 1000)
        mix = TrafficMix(args.workers_requests, start_ms=now_ms - 28 * 3_600_000, end_ms=now_ms - 4 * 3_600_000,
                         verdict_sample=args.verdict_sample, seed=args.seed)  # fmt: skip
        pre = await preload(s.kafka_bootstrap, opts, mix, s.requests_topic, s.verdicts_topic,
                            compression=args.compression, progress=progress)  # fmt: skip
        progress(f"{phase}: pre-loaded {pre.events:,} events; starting {n} worker(s) on "
                 f"{case_dsn or 'the embedded engine'} (database {s.clickhouse_database})")  # fmt: skip
        res = await run_scale_case(s, n, n_requests=pre.requests, n_verdicts=pre.verdicts, dsn=case_dsn,
                                   server_pid=server_pid if case_dsn else None, broker_pid=broker_pid,
                                   timeout_s=args.timeout, progress=progress)  # fmt: skip
        res["database"] = s.clickhouse_database if case_dsn else None
        results.append(res)
        progress(f"{phase}: {res['events']:,} events in {res['seconds']:.1f}s = {res['events_per_s']:,.0f} events/s "
                 f"({res['events_per_s_after_ready']:,.0f}/s after ready; {res['events_per_s_settled']}/s once every "
                 f"worker had shards, at {res['settled_s']} s), exact {res['exact']}, "
                 f"peak RSS {[f['peak_rss_mib'] for f in res['per_worker']]} MiB, cpu {res['cpu_cores']} cores")  # fmt: skip
    server = [r for r in results if r["engine"] == "server"]
    rates = {r["workers"]: r["events_per_s"] for r in server if r["complete"]}
    settled = {r["workers"]: r["events_per_s_settled"] for r in server if r["complete"]}
    eff = efficiency(rates)
    eff_settled = efficiency(settled)
    for r in server:
        r["efficiency"] = eff.get(r["workers"])
        r["efficiency_settled"] = eff_settled.get(r["workers"])
    emb = next((r for r in results if r["engine"] == "embedded"), None)
    one = rates.get(1)
    return {
        "complete": all(r["complete"] and r["exact"] for r in results),
        "partitions": args.partitions,
        "requests": args.workers_requests,
        "clickhouse": "one local server for the run (telemetry clickhouse start), a fresh database per N",
        "events_per_s": {str(k): v for k, v in rates.items()},
        "efficiency": {str(k): v for k, v in eff.items()},
        "events_per_s_settled": {str(k): v for k, v in settled.items()},
        "efficiency_settled": {str(k): v for k, v in eff_settled.items()},
        "embedded_n1_events_per_s": emb["events_per_s"] if emb else None,
        "server_vs_embedded_n1": round(one / emb["events_per_s"], 3) if emb and one and emb["events_per_s"] else None,
        "cases": results,
    }


# -- failover ----------------------------------------------------------------------------------
class PacedLoad:
    """Steady traffic at ``rate`` events/s (requests on the throughput mix's routes, a verdict
    for ``verdict_sample`` of them ~1 s later), ``ts`` = the wall clock, sent with ``send()``."""

    def __init__(self, settings: Settings, rate: float, verdict_sample: float, seed: int) -> None:
        from bench.traffic import ROUTES

        self.settings = settings
        self.requests_rate = rate / (1.0 + verdict_sample)
        self.sample = verdict_sample
        self.rng = random.Random(seed)
        self.routes = ROUTES
        self.cum = list(accumulate(r.weight for r in ROUTES))
        self.sent_requests = 0
        self.sent_verdicts = 0
        self.producer: Any = None
        self._due: list[tuple[float, Any, str]] = []
        self._pending: list[asyncio.Future[Any]] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        from aiokafka import AIOKafkaProducer

        from bench.traffic import request_body, verdict_body

        s = self.settings
        self.producer = producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks=1, linger_ms=5,
                                                    client_id="llm-telemetry-bench-failover", **s.kafka_client_options())  # fmt: skip
        await producer.start()
        rng, cum, routes = self.rng, self.cum, self.routes
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.requests_rate) - self.sent_requests
                for _ in range(max(0, due)):
                    route = routes[min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(routes) - 1)]
                    rid = f"fo_{rng.getrandbits(64):016x}"
                    body = request_body(rng, route, rid, int(time.time() * 1000))
                    self._pending.append(await producer.send(s.requests_topic, orjson.dumps(body), key=rid.encode()))
                    self.sent_requests += 1
                    if body["status"] == "ok" and rng.random() < self.sample:
                        self._due.append((time.monotonic() + 1.0, route, rid))
                await self._send_verdicts(verdict_body, time.monotonic())
                if len(self._pending) > 2000:
                    pending, self._pending = self._pending, []
                    await asyncio.gather(*pending)
                await asyncio.sleep(0.01)
            await self._send_verdicts(verdict_body, float("inf"))  # the rest, now
            await asyncio.gather(*self._pending)
            await producer.flush()
        finally:
            await producer.stop()

    async def _send_verdicts(self, verdict_body: Callable[..., dict[str, Any]], until: float) -> None:
        while self._due and self._due[0][0] <= until:
            _, route, rid = self._due.pop(0)
            body = verdict_body(self.rng, route, rid, int(time.time() * 1000))
            self._pending.append(await self.producer.send(self.settings.verdicts_topic, orjson.dumps(body),
                                                          key=rid.encode()))  # fmt: skip
            self.sent_verdicts += 1

    def stop(self) -> None:
        self._stop.set()


@dataclass
class _Sample:
    t: float  # seconds since the load started
    produced: int  # requests handed to the producer
    stored: int  # count() of requests
    stats: dict[int, dict[str, Any] | None]  # worker index -> its stats page (None: down or no answer)


async def run_failover(
    settings: Settings,
    *,
    dsn: str,
    partitions: int,
    rate: float,
    seconds: float,
    kill_after_s: float,
    verdict_sample: float,
    seed: int,
    poll_s: float = 0.25,
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Two workers under load; SIGKILL the detection owner; add a third; see the module docstring."""
    from bench.kafkautil import create_topics

    s = settings.model_copy(update={"clickhouse_dsn": dsn, "clickhouse_database": "bench_failover"})
    await create_topics(s.kafka_bootstrap, s.kafka_client_options(), [s.requests_topic, s.verdicts_topic], partitions)
    await asyncio.to_thread(_migrate, dsn, s.clickhouse_database)
    logs = s.data_dir / "logs"
    workers = [WorkerProcess(_worker_settings(s, i), logs / f"worker-{i}.log") for i in range(4)]
    all_shards = list(range(partitions))
    counter = _Counts(s.clickhouse_database, dsn)
    load = PacedLoad(s, rate, verdict_sample, seed)
    samples: list[_Sample] = []
    result: dict[str, Any] = {"rate": rate, "seconds": seconds, "kill_after_s": kill_after_s, "partitions": partitions,
                              "session_timeout_s": s.kafka_session_timeout, "complete": False}  # fmt: skip
    load_task: asyncio.Task[None] | None = None
    t_load = 0.0
    peak_rss: list[float | None] = [None] * len(workers)

    async def sample(active: Sequence[int]) -> _Sample:
        stats, stored = await asyncio.gather(
            asyncio.gather(*(asyncio.to_thread(_safe_stats, workers[i]) for i in active)),
            asyncio.to_thread(counter.requests),
        )  # fmt: skip
        smp = _Sample(time.monotonic() - t_load, load.sent_requests, stored, dict(zip(active, stats, strict=True)))
        samples.append(smp)
        return smp

    try:
        # 1. two workers, settled: every shard owned, a detection owner
        t0 = time.monotonic()
        await _start_all(workers[:2])
        settle_deadline = time.monotonic() + 120
        while time.monotonic() < settle_deadline:
            settle = [await asyncio.to_thread(_safe_stats, w) for w in workers[:2]]
            owned = sorted(sh for x in settle for sh in (x or {}).get("shards", []))
            each = all((x or {}).get("shards") for x in settle)
            if owned == all_shards and each and any((x or {}).get("detection_owner") for x in settle):
                break
            await asyncio.sleep(0.2)
        else:
            raise WorkerProcessError("two workers did not settle (each with shards, all owned, one detection owner) in 120 s")
        result["two_workers_settled_s"] = round(time.monotonic() - t0, 3)
        progress(f"failover: 2 workers settled in {result['two_workers_settled_s']:.1f}s "
                 f"(shards {[x.get('shards') for x in settle if x]}); load {rate:,.0f} events/s for {seconds:.0f}s")  # fmt: skip

        # 2. load; warm up
        t_load = time.monotonic()
        load_task = asyncio.create_task(load.run())
        while time.monotonic() - t_load < kill_after_s:
            await sample([0, 1])
            await asyncio.sleep(poll_s)
        last = await sample([0, 1])
        owners = [i for i in (0, 1) if (last.stats.get(i) or {}).get("detection_owner")]
        victim = owners[0] if owners else 0
        survivor = 1 - victim
        survivor_pid = _pid(workers[survivor])
        baseline = [d for t, d in delays([(x.t, x.produced) for x in samples], [(x.t, x.stored) for x in samples]) if t >= 5.0]
        threshold = (max(baseline) if baseline else 2.0) + CATCH_UP_MARGIN_S
        result["baseline_delay_s"] = {"p50": _median(baseline), "max": round(max(baseline), 3) if baseline else None}
        result["catch_up_threshold_s"] = round(threshold, 3)

        # 3. SIGKILL the detection owner
        victim_pid = _pid(workers[victim])
        peak_rss[victim] = peak_rss_mib(victim_pid) if victim_pid else None
        progress(f"failover: SIGKILL worker {victim} (detection owner: {bool(owners)}), pid "
                 f"{_pid(workers[victim])}")  # fmt: skip
        t_kill = time.monotonic() - t_load
        await asyncio.to_thread(workers[victim].stop, signal.SIGKILL)
        result["victim_was_detection_owner"] = bool(owners)
        result["produced_at_kill"] = load.sent_requests
        marks: dict[str, float | None] = {"shards_all": None, "counters_moving": None, "detection_owner": None}
        stored_at_shards = 0
        counter_trace: list[tuple[float, int]] = []
        deadline = t_kill + max(120.0, 6 * s.kafka_session_timeout)
        caught_at: float | None = None
        while True:
            smp = await sample([survivor])
            st = smp.stats.get(survivor)
            if not workers[survivor].running:
                raise WorkerProcessError(f"the survivor exited; log tail:\n{workers[survivor].log_tail()}")
            if st is not None:
                counter_trace.append((smp.t, _counter(st, "requests_stored")))
                if marks["shards_all"] is None and sorted(st.get("shards", [])) == all_shards:
                    marks["shards_all"] = smp.t
                    stored_at_shards = _counter(st, "requests_stored")
                elif marks["shards_all"] is not None and marks["counters_moving"] is None and \
                        _counter(st, "requests_stored") > stored_at_shards:  # fmt: skip
                    marks["counters_moving"] = smp.t
                if marks["detection_owner"] is None and st.get("detection_owner"):
                    marks["detection_owner"] = smp.t
            d = delays([(x.t, x.produced) for x in samples], [(smp.t, smp.stored)])[0][1]
            if all(marks[k] is not None for k in ("shards_all", "counters_moving", "detection_owner")) and d <= threshold:
                if caught_at is None:
                    caught_at = smp.t
                if smp.t >= caught_at + 5.0:
                    break  # taken over and caught up (the exact figures come from the whole series below)
            if smp.t > deadline:
                progress("failover: survivor did not take everything over / catch up in time")
                break
            await asyncio.sleep(poll_s)
        result["after_kill"] = {k: round(v - t_kill, 3) if v is not None else None for k, v in marks.items()}
        # the survivor's longest stretch without a stored request, from the kill to all shards
        result["survivor_longest_pause_s"] = _longest_flat(counter_trace, t_kill, marks["shards_all"])
        progress(f"failover: after the kill: {result['after_kill']}")

        # 4. a replacement for the killed worker, once caught up; then (with >= 3 shards) one more
        #    worker next to the two: the clean scale-up (no dead member left in any group)
        async def add_worker(idx: int, others: list[int]) -> dict[str, Any]:
            pids = {i: _pid(workers[i]) for i in others}
            t_add = time.monotonic() - t_load
            progress(f"failover: starting worker {idx} next to {others}")
            start_task = asyncio.create_task(asyncio.to_thread(workers[idx].start, 180.0))
            t_ready: float | None = None
            t_shard: float | None = None
            try:
                while True:
                    if start_task.done() and t_ready is None:
                        start_task.result()  # raises if it did not start
                        t_ready = time.monotonic() - t_load
                    smp = await sample(others + [idx] if t_ready is not None else others)
                    gone = [i for i in others if not workers[i].running]
                    if gone:
                        raise WorkerProcessError(f"worker {gone[0]} exited; log tail:\n{workers[gone[0]].log_tail()}")
                    if t_shard is None and (smp.stats.get(idx) or {}).get("shards"):
                        t_shard = smp.t
                    if t_shard is not None and smp.t >= t_shard + AFTER_ADD_S:
                        break
                    if t_shard is None and smp.t > t_add + 180:
                        progress(f"failover: worker {idx} owns no shard 180 s after its start")
                        break
                    await asyncio.sleep(poll_s)
            finally:
                if not start_task.done():
                    with contextlib.suppress(Exception):
                        await start_task
            last_stats = samples[-1].stats
            return {
                "at_s": round(t_add, 3),
                "ready_s": round(t_ready - t_add, 3) if t_ready is not None else None,
                "owns_shard_s": round(t_shard - t_add, 3) if t_shard is not None else None,
                "owns_shard_after_ready_s": round(t_shard - t_ready, 3) if t_shard is not None and t_ready else None,
                "shards": {str(i): (last_stats.get(i) or {}).get("shards") for i in [*others, idx]},
                "others_pid_unchanged": all(_pid(workers[i]) == pid and workers[i].running for i, pid in pids.items()),
            }  # fmt: skip

        result["replacement"] = await add_worker(2, [survivor])
        progress(f"failover: replacement {result['replacement']}")
        if partitions >= 3:
            result["add_worker"] = await add_worker(3, [survivor, 2])
            progress(f"failover: scale-up {result['add_worker']}")
        while time.monotonic() - t_load < seconds:  # the load runs at least its length
            await sample([i for i in (survivor, 2, 3) if workers[i].running])
            await asyncio.sleep(poll_s)
        result["survivor_shard_assignments"] = _log_text(workers[survivor]).count("shards assigned")
        result["survivor_pid_unchanged"] = _pid(workers[survivor]) == survivor_pid and workers[survivor].running

        # 5. stop the load; everything produced must be stored, once
        load.stop()
        await load_task
        load_task = None
        t_stop = time.monotonic() - t_load
        result["produced"] = {"requests": load.sent_requests, "verdicts": load.sent_verdicts,
                              "events_per_s": round((load.sent_requests + load.sent_verdicts) / t_stop, 1)}  # fmt: skip
        drained = None
        while time.monotonic() - t_load < t_stop + 120:
            r, v = await asyncio.to_thread(counter.counts)
            if r >= load.sent_requests and v >= load.sent_verdicts:
                drained = time.monotonic() - t_load - t_stop
                break
            await asyncio.sleep(0.25)
        result["drained_after_load_s"] = round(drained, 3) if drained is not None else None
        await asyncio.sleep(3)  # a repeat still in flight would show now
        rows = await asyncio.to_thread(counter.exactness)
        result["rows"] = rows
        result["exact"] = (rows["requests"] == rows["requests_distinct"] == load.sent_requests
                           and rows["verdicts"] == rows["verdicts_distinct"] == load.sent_verdicts)  # fmt: skip

        # 6. the delay series: stall and catch-up after the kill, and around each new worker
        series = delays([(x.t, x.produced) for x in samples], [(x.t, x.stored) for x in samples])
        starts = [result[k]["at_s"] for k in ("replacement", "add_worker") if k in result] + [t_stop]
        t_repl = starts[0]
        after_kill = [d for t, d in series if t_kill <= t < t_repl]
        caught = recovered_after(series, t_kill, t_repl, threshold)
        result["after_kill"]["caught_up"] = caught
        result["after_kill"]["peak_delay_s"] = round(max(after_kill), 3) if after_kill else None
        alone = [d for t, d in series if caught is not None and t_kill + caught <= t < t_repl]
        result["delay_one_worker_s"] = {"p50": _median(alone), "max": round(max(alone), 3) if alone else None}
        for key, (t_from, t_to) in zip(("replacement", "add_worker"), itertools.pairwise(starts), strict=False):
            if key in result:
                window = [d for t, d in series if t_from <= t < t_to]
                result[key]["peak_delay_s"] = round(max(window), 3) if window else None
                result[key]["caught_up_s"] = recovered_after(series, t_from, t_to, threshold)
        result["delay_series"] = [(round(t, 2), round(d, 2)) for t, d in series]
        result["events"] = {"kill_s": round(t_kill, 3), "replacement_s": t_repl,
                            "add_s": (result.get("add_worker") or {}).get("at_s"), "load_stopped_s": round(t_stop, 3)}  # fmt: skip
        result["complete"] = bool(
            result["exact"] and all(v is not None for v in result["after_kill"].values())
            and result["replacement"]["owns_shard_s"] is not None and result["replacement"]["others_pid_unchanged"]
            and (partitions < 3 or (result["add_worker"]["owns_shard_s"] is not None
                                    and result["add_worker"]["others_pid_unchanged"]))
        )  # fmt: skip
    finally:
        if load_task is not None:
            load.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(load_task, 30)
        for i, w in enumerate(workers):
            if w.running and w.proc is not None:
                peak_rss[i] = peak_rss_mib(w.proc.pid)
        codes = await _stop_all(workers)
        result["exit_codes"] = codes  # the victim's: -9
        result["peak_rss_mib"] = peak_rss  # the victim's read just before the kill
        result["logs"] = [log_findings(_log_text(w)) for w in workers]
    return result


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    ys = sorted(xs)
    mid = len(ys) // 2
    return round(ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2, 3)


def _longest_flat(trace: Sequence[tuple[float, int]], start: float, end: float | None) -> float | None:
    """Longest time in ``[start, end]`` during which the counter in ``trace`` did not move."""
    pts = [(t, c) for t, c in trace if t >= start and (end is None or t <= end)]
    if len(pts) < 2:
        return None
    longest = 0.0
    since_t, value = pts[0]
    for t, c in pts[1:]:
        longest = max(longest, t - since_t)  # flat from since_t until (at least) this sample
        if c != value:
            since_t, value = t, c
    return round(longest, 3)

