"""The alert-latency phase: a worker under steady load, incidents injected, time to the alert.

Method
------
1. A fresh worker on fresh topics. Each *incident route* (one per injection) gets 90 minutes of
   clean history, produced at once with event times ``now - 90 min .. now`` (fast-forwarded
   event time; the detectors only use event time): TierSwitch needs an hour of history on a
   route, ErrorStorm a baseline error share. The bench waits until the worker has stored it.
2. Steady load: ``rate`` events/s (requests plus verdicts for ``verdict_sample`` of them) on the
   throughput mix's ten routes, plus 1 request/s on every incident route, with ``ts`` = the wall
   clock at send (verdicts judged ~1 s after their request, ``ts`` = send time too).
3. After ``warmup_s``, incidents one at a time, alternating:
   - **404 storm**: the route's requests fail with ``model_not_found`` (HTTP 404) naming a new
     alias, at ``burst_rate`` per second, until its ErrorStorm alert arrives;
   - **tier switch**: the route's requests (asking ``gpt-4o-mini``) are served by ``gpt-4o``
     at ``burst_rate`` per second, until its TierSwitch alert arrives.
   Every event of the route is recorded with its ``ts`` and the wall time it was handed to the
   producer.
4. An alert is read from ``<prefix>alerts`` by a plain consumer; its CloudEvent ``data.decidedAt``
   is the event-time watermark of the deciding evaluation. The deciding event is taken as the
   route's event with the largest ``ts <= decidedAt``; latency = the wall time the alert was read
   minus the wall time that event was handed to the producer. (With several partitions an event
   of the route with a slightly later ``ts`` than the true deciding one can be picked: the error
   is at most the gap between two of the route's events, 1 / ``burst_rate``.)

The latency therefore covers: producer linger and broker append, the worker's fetch, its batch
window (``batch_seconds``), decode/join/insert of that batch, detection, the alert's publish,
and the bench consumer's fetch. It does not include the detector's statistical delay (how many
events a storm needs before it is significant), which is measured in event time by the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.kafkautil import BulkProducer, create_topics
from bench.procstat import cpu_seconds, peak_rss_mib
from bench.traffic import ROUTES, RouteSpec, request_body, verdict_body
from telemetry.settings import Settings
from telemetry.worker.process import WorkerProcess, WorkerProcessError

__all__ = ["Incident", "percentile", "run_latency"]

HISTORY_MS = 90 * 60_000
HISTORY_STEP_MS = 6_000
TIER_FROM, TIER_TO = "gpt-4o-mini", "gpt-4o"


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class Incident:
    kind: str  # "storm" | "tier"
    route: RouteSpec
    alertname: str
    sent: list[tuple[int, float]] = field(default_factory=list)  # (ts ms, wall time handed to producer)
    started_wall: float = 0.0
    alert: dict[str, Any] | None = None
    latency_s: float | None = None
    worker_part_s: float | None = None
    events_to_alert: int = 0


def incident_routes(count: int) -> list[Incident]:
    """``count`` incidents on distinct routes, alternating 404 storm and tier switch."""
    base = next(r for r in ROUTES if r.model == TIER_FROM)
    out = []
    for i in range(count):
        kind = "storm" if i % 2 == 0 else "tier"
        route = replace(base, name=f"{base.name}.{kind}{i:02d}", weight=0.0, error_rate=0.0)
        out.append(Incident(kind, route, "ErrorStorm" if kind == "storm" else "TierSwitch"))
    return out


def _rfc3339_ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


class _Load:
    """Steady traffic with ts = wall clock, sent with the ordinary producer API."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, incidents: list[Incident], rate: float,
                 verdict_sample: float, seed: int) -> None:  # fmt: skip
        self.producer = producer
        self.topics = (settings.requests_topic, settings.verdicts_topic)
        self.rng = random.Random(seed)
        self.sample = verdict_sample
        self.requests_rate = rate / (1.0 + verdict_sample)
        per_incident = 1.0
        background = max(0.0, self.requests_rate - per_incident * len(incidents))
        total_w = sum(r.weight for r in ROUTES)
        self.routes = list(ROUTES) + [i.route for i in incidents]
        weights = [background * r.weight / total_w for r in ROUTES] + [per_incident] * len(incidents)
        self.cum = list(accumulate(weights))
        self.by_route = {i.route.name: i for i in incidents}
        self.verdicts_due: deque[tuple[float, RouteSpec, str]] = deque()
        self.sent_requests = 0
        self.sent_verdicts = 0
        self.pending: list[asyncio.Future[Any]] = []
        self.seq = 0
        self.ack_latencies: list[float] = []  # send() -> broker ack, every 20th request

    def _rid(self) -> str:
        self.seq += 1
        return f"lat_{self.rng.getrandbits(48):012x}_{self.seq}"

    async def send_request(self, route: RouteSpec, *, served: str | None = None,
                           error: tuple[str, int | None] | None = None, model: str | None = None) -> tuple[int, float]:  # fmt: skip
        wall = time.time()
        ts = int(wall * 1000)
        rid = self._rid()
        body = request_body(self.rng, route, rid, ts, served_model=served, error=error)
        if model is not None:
            body["model"] = model
        fut = await self.producer.send(self.topics[0], orjson.dumps(body), key=rid.encode())
        self.pending.append(fut)
        self.sent_requests += 1
        if self.sent_requests % 20 == 0:
            fut.add_done_callback(lambda _f, w=wall: self.ack_latencies.append(time.time() - w))
        if error is None and self.sample and self.rng.random() < self.sample:
            self.verdicts_due.append((wall + 1.0, route, rid))
        incident = self.by_route.get(route.name)
        if incident is not None and incident.started_wall:
            incident.sent.append((ts, wall))
        return ts, wall

    async def run(self) -> None:
        started = time.monotonic()
        rng = self.rng
        cum, total, routes, last = self.cum, self.cum[-1], self.routes, len(self.routes) - 1
        while True:
            due = int((time.monotonic() - started) * self.requests_rate) - self.sent_requests
            for _ in range(max(0, due)):
                route = routes[min(bisect_right(cum, rng.random() * total), last)]
                await self.send_request(route)
            now = time.time()
            while self.verdicts_due and self.verdicts_due[0][0] <= now:
                _, route, rid = self.verdicts_due.popleft()
                body = verdict_body(rng, route, rid, int(time.time() * 1000))
                self.pending.append(await self.producer.send(self.topics[1], orjson.dumps(body), key=rid.encode()))
                self.sent_verdicts += 1
            if len(self.pending) > 5000:
                pending, self.pending = self.pending, []
                await asyncio.gather(*pending)
            await asyncio.sleep(0.01)


class _LoopLag:
    """How late this process's event loop wakes up (the bench's own health during the phase)."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append(time.perf_counter() - t - 0.01)


class _Alerts:
    """Reads ``<prefix>alerts`` and records every notification with its receive time."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = AIOKafkaConsumer(
            settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
            auto_offset_reset="earliest", fetch_max_wait_ms=50, **settings.kafka_client_options(),
        )  # fmt: skip
        self.received: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=200)
                wall = time.time()
                for records in batches.values():
                    for rec in records:
                        try:
                            event = orjson.loads(rec.value)
                            data = event["data"]
                            labels = data["labels"]
                            self.received.append({
                                "alertname": labels.get("alertname"), "route": labels.get("route"),
                                "model": labels.get("model"), "status": data.get("status"),
                                "decided_ms": _rfc3339_ms(data["decidedAt"]), "received_wall": wall,
                                "kafka_ts_ms": rec.timestamp, "summary": data.get("annotations", {}).get("summary", ""),
                            })  # fmt: skip
                        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
                            continue
                if batches:
                    self.changed.set()
        finally:
            await self.consumer.stop()

    def find(self, route: str, alertname: str) -> dict[str, Any] | None:
        for a in self.received:
            if a["route"] == route and a["alertname"] == alertname and a["status"] == "firing":
                return a
        return None


async def _wait_stored(worker: WorkerProcess, requests: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = await asyncio.to_thread(worker.stats)
        if int(stats.get("counters", {}).get("requests_stored", 0)) >= requests:
            return stats
        if not worker.running:
            raise WorkerProcessError(f"worker exited; log tail:\n{worker.log_tail()}")
        await asyncio.sleep(0.2)
    raise WorkerProcessError(f"worker did not store the history within {timeout_s:.0f}s")


def _seed_history(incidents: list[Incident], end_ms: int, verdict_sample: float, seed: int) -> tuple[list, list]:
    rng = random.Random(seed)
    requests: list[tuple[int, bytes, bytes]] = []
    verdicts: list[tuple[int, bytes, bytes]] = []
    for inc in incidents:
        for j, ts in enumerate(range(end_ms - HISTORY_MS, end_ms, HISTORY_STEP_MS)):
            t = ts + rng.randrange(HISTORY_STEP_MS)
            rid = f"hist_{inc.route.name}_{j}"
            body = request_body(rng, inc.route, rid, t)
            requests.append((t, rid.encode(), orjson.dumps(body)))
            if rng.random() < verdict_sample:
                v = verdict_body(rng, inc.route, rid, min(end_ms, t + int(body["latency_ms"]) + 1000))
                verdicts.append((v["ts"], rid.encode(), orjson.dumps(v)))
    requests.sort(key=lambda r: r[0])
    verdicts.sort(key=lambda r: r[0])
    return [(k, v) for _, k, v in requests], [(k, v) for _, k, v in verdicts]


async def run_latency(
    settings: Settings,
    log_path: Path,
    *,
    incidents: int = 16,
    rate: float = 2000.0,
    verdict_sample: float = 0.2,
    burst_rate: float = 50.0,
    warmup_s: float = 3.0,
    alert_timeout_s: float = 30.0,
    gap_s: float = 0.3,
    seed: int = 20250601,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the phase; return per-incident latencies, p50/p99 and the worker's figures."""
    bootstrap, options = settings.kafka_bootstrap, settings.kafka_client_options()
    await create_topics(bootstrap, options, [settings.requests_topic, settings.verdicts_topic,
                                             settings.deadletter_topic, settings.alerts_topic],
                        settings.topic_partitions)  # fmt: skip
    plan = incident_routes(incidents)
    alerts = _Alerts(settings)
    alerts_task = asyncio.create_task(alerts.run())
    lag = _LoopLag()
    lag_task = asyncio.create_task(lag.run())
    worker = WorkerProcess(settings, log_path)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5, client_id="llm-telemetry-bench-load",
                                **options)  # fmt: skip
    load_task: asyncio.Task[None] | None = None
    load: _Load | None = None
    t0 = time.monotonic()
    result: dict[str, Any] = {"incidents_planned": incidents, "rate_target": rate, "burst_rate": burst_rate}
    try:
        await asyncio.to_thread(worker.start, 180.0)
        assert worker.proc is not None
        pid = worker.proc.pid
        result["startup_s"] = round(time.monotonic() - t0, 3)
        progress(f"latency: worker ready in {result['startup_s']:.1f}s; seeding {HISTORY_MS // 60_000} min of history "
                 f"on {incidents} routes")  # fmt: skip
        hist_req, hist_ver = _seed_history(plan, int(time.time() * 1000), verdict_sample, seed)
        bulk = BulkProducer(bootstrap, options)
        await bulk.start([settings.requests_topic, settings.verdicts_topic])
        try:
            await bulk.send_all(settings.requests_topic, hist_req)
            await bulk.send_all(settings.verdicts_topic, hist_ver)
            await bulk.flush()
        finally:
            await bulk.stop()
        t_seed = time.monotonic()
        await _wait_stored(worker, len(hist_req), 120.0)
        result["history_events"] = len(hist_req) + len(hist_ver)
        result["history_ingest_s"] = round(time.monotonic() - t_seed, 3)

        await producer.start()
        load = _Load(producer, settings, plan, rate, verdict_sample, seed + 1)
        load_task = asyncio.create_task(load.run())
        t_load = time.monotonic()
        cpu_load0 = cpu_seconds(pid) or 0.0
        progress(f"latency: history stored in {result['history_ingest_s']:.1f}s; steady load {rate:,.0f} events/s, "
                 f"warm-up {warmup_s:.0f}s")  # fmt: skip
        await asyncio.sleep(warmup_s)

        for n, inc in enumerate(plan, 1):
            inc.started_wall = time.time()
            interval = 1.0 / burst_rate
            alias = inc.route.model + "-v2"
            next_send = time.monotonic()
            deadline = next_send + alert_timeout_s
            found = None
            while time.monotonic() < deadline:
                found = alerts.find(inc.route.name, inc.alertname)
                if found is not None:
                    break
                if time.monotonic() >= next_send:
                    if inc.kind == "storm":
                        await load.send_request(inc.route, error=("model_not_found", 404), model=alias)
                    else:
                        await load.send_request(inc.route, served=TIER_TO)
                    inc.events_to_alert += 1
                    next_send += interval
                alerts.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(alerts.changed.wait(), timeout=max(0.0, min(next_send - time.monotonic(), 0.05)))
            inc.started_wall = 0.0  # later events on the route are not the incident's
            if found is None:
                progress(f"latency: {n}/{len(plan)} {inc.kind} on {inc.route.name}: no {inc.alertname} within "
                         f"{alert_timeout_s:.0f}s")  # fmt: skip
                continue
            inc.alert = found
            sent_ts = [ts for ts, _ in inc.sent]
            i = bisect_right(sent_ts, found["decided_ms"]) - 1
            if i >= 0:
                # the last event handed over at or before the deciding event time
                wall = max(w for ts, w in inc.sent if ts == sent_ts[i])
                inc.latency_s = found["received_wall"] - wall
                if found.get("kafka_ts_ms"):
                    inc.worker_part_s = found["kafka_ts_ms"] / 1000.0 - wall
            progress(f"latency: {n}/{len(plan)} {inc.kind} on {inc.route.name}: {inc.alertname} after "
                     f"{inc.events_to_alert} events, latency {inc.latency_s if inc.latency_s is not None else float('nan'):.3f}s")  # fmt: skip
            await asyncio.sleep(gap_s)

        load_seconds = time.monotonic() - t_load
        stats = await asyncio.to_thread(worker.stats)
        result.update(
            steady_events_per_s=round((load.sent_requests + load.sent_verdicts) / load_seconds, 1),
            load_seconds=round(load_seconds, 1),
            worker_cpu_utilisation_under_load=round(((cpu_seconds(pid) or 0.0) - cpu_load0) / load_seconds, 3),
            peak_rss_mib=peak_rss_mib(pid),
            stats=stats,
        )
    finally:
        if load_task is not None:
            load_task.cancel()
            with contextlib.suppress(BaseException):
                await load_task
        with contextlib.suppress(Exception):
            await producer.stop()
        for task in (alerts_task, lag_task):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        result["worker_exit_code"] = await asyncio.to_thread(worker.stop)
        result["seconds"] = round(time.monotonic() - t0, 1)

    latencies = [i.latency_s for i in plan if i.latency_s is not None]
    ack = load.ack_latencies if load is not None else []
    worker_parts = [i.worker_part_s for i in plan if i.worker_part_s is not None]
    expected = {(i.route.name, i.alertname) for i in plan}
    result.update(
        detected=len(latencies),
        p50_s=_r(percentile(latencies, 50)),
        p99_s=_r(percentile(latencies, 99)),
        max_s=_r(max(latencies) if latencies else None),
        min_s=_r(min(latencies) if latencies else None),
        worker_part_p50_s=_r(percentile(worker_parts, 50)),
        bench_loop_lag_p99_ms=_r(1000 * (percentile(lag.lags, 99) or 0.0)),
        produce_ack_p50_ms=_r(1000 * (percentile(ack, 50) or 0.0)),
        produce_ack_p99_ms=_r(1000 * (percentile(ack, 99) or 0.0)),
        by_kind={
            kind: {"n": len(v), "p50_s": _r(percentile(v, 50)), "max_s": _r(max(v) if v else None)}
            for kind in ("storm", "tier")
            for v in ([i.latency_s for i in plan if i.kind == kind and i.latency_s is not None],)
        },
        incidents=[
            {"kind": i.kind, "route": i.route.name, "alertname": i.alertname, "events_to_alert": i.events_to_alert,
             "latency_s": _r(i.latency_s), "worker_part_s": _r(i.worker_part_s)}
            for i in plan
        ],
        other_alerts=[
            {k: a[k] for k in ("alertname", "route", "model", "status", "summary")}
            for a in alerts.received
            if (a["route"], a["alertname"]) not in expected
        ],
    )
    return result


def _r(x: float | None) -> float | None:
    return round(x, 4) if x is not None else None
