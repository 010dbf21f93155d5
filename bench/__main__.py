"""``python -m bench``: end-to-end throughput, the raw-consumer ceiling, alert latency, peak memory.

Phases (each on its own topics ``bench.<run id>.*``, consumer groups and data directories):

1. pre-load ``--requests`` requests and verdicts for ``--verdict-sample`` of them (bulk produce);
2. ceiling: a bare aiokafka consumer process reads them all and ``orjson.loads`` each;
3. throughput: the worker starts cold and is timed until every event is stored and committed;
   ``--otlp``: then the same traffic as OpenTelemetry OTLP (GenAI spans and evaluation log
   records, ``--otlp-batch`` per message), pre-loaded and timed the same way (bench/otlp.py);
4. alert latency: a fresh worker under steady load, incidents injected, produce-to-alert time;
5. micro-profile: each per-event step of the worker timed alone in a separate process;
6. ``--workers 1,2``: N workers over one local ClickHouse server, events/s and efficiency per N;
7. ``--failover``: 2 workers under load, the detection owner SIGKILLed, workers added (bench/workers.py).

Progress goes to stderr; the last line on stdout is one JSON object (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.report import format_summary, summarize


def _log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_info(kafka_version: str | None) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    from importlib.metadata import version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except Exception:  # noqa: BLE001
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": mem_gib,
        "python": platform.python_version(),
        "kafka": kafka_version,
        "faust_streaming": v("faust-streaming"),
        "aiokafka": v("aiokafka"),
        "chdb": v("chdb"),
        "pydantic": v("pydantic"),
        "orjson": v("orjson"),
    }


def git_info() -> dict[str, Any] | None:
    """The commit the worker code comes from, and the files changed on top of it."""
    from bench.workerproc import REPO_ROOT

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()  # fmt: skip

    try:
        changed = [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()]
        return {"commit": git("rev-parse", "--short=12", "HEAD"), "changed": [c for c in changed if c.startswith("telemetry/")]}
    except (OSError, subprocess.SubprocessError):
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    ap.add_argument("--requests", type=int, default=1_000_000, help="requests to pre-load")
    ap.add_argument("--verdict-sample", type=float, default=0.2, help="fraction of requests that get a verdict")
    ap.add_argument("--seed", type=int, default=20250601)
    ap.add_argument("--distinct-routes", type=int, default=0,
                    help="spread the traffic over this many route names (hostile cardinality; 0: the mix's ten)")
    ap.add_argument("--distinct-models", type=int, default=0,
                    help="spread the traffic over this many (unpriced) model names (0: the mix's nine)")
    w = ap.add_argument_group("worker knobs")
    w.add_argument("--batch-size", type=int, default=None, help="TELEMETRY_BATCH_SIZE (default: the worker's, 5000)")
    w.add_argument("--batch-seconds", type=float, default=None, help="TELEMETRY_BATCH_SECONDS (default: the worker's, 1.0)")
    w.add_argument("--partitions", type=int, default=4, help="partitions of every bench topic")
    w.add_argument("--join-cache-size", type=int, default=None, help="TELEMETRY_JOIN_CACHE_SIZE (default: the worker's)")
    w.add_argument("--set", dest="worker_settings", action="append", default=[], metavar="NAME=VALUE",
                   help="any other worker setting, e.g. --set ingest_mode=agents (TELEMETRY_<NAME>)")
    p = ap.add_argument_group("phases")
    p.add_argument("--skip-ceiling", action="store_true")
    p.add_argument("--skip-throughput", action="store_true", help="skip pre-load, ceiling and throughput")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-micro", action="store_true")
    p.add_argument("--otlp", action="store_true",
                   help="also pre-load the throughput phase's traffic as OTLP (GenAI chat spans, evaluation log "
                        "records) on the OTLP topics and time a cold worker on it; events/s against the JSON "
                        "throughput phase of the same run")
    p.add_argument("--otlp-encoding", choices=("otlp_proto", "otlp_json", "both"), default="otlp_proto",
                   help="encoding of the OTLP phase (both: one phase per encoding)")
    p.add_argument("--otlp-batch", type=int, default=256,
                   help="spans (log records) per OTLP message (deploy/otel-collector.yaml: send_batch_size 256)")
    p.add_argument("--cardinality", action="store_true",
                   help="also run the throughput phase with hostile cardinality (--cardinality-routes distinct "
                        "routes, then --cardinality-models distinct models) against a baseline in the same run")
    p.add_argument("--cardinality-routes", type=int, default=50_000)
    p.add_argument("--cardinality-models", type=int, default=20_000)
    p.add_argument("--cardinality-requests", type=int, default=200_000, help="requests per cardinality phase")
    p.add_argument("--workers", default=None, metavar="N,N,...",
                   help="scale-out phase: for each N (1..--partitions), N workers over one local ClickHouse server "
                        "on --workers-requests pre-loaded requests; events/s and per-worker efficiency")
    p.add_argument("--workers-requests", type=int, default=200_000, help="requests per --workers case")
    p.add_argument("--skip-workers-embedded", action="store_true",
                   help="with --workers: do not also run N=1 on the embedded chDB engine for comparison")
    p.add_argument("--failover", action="store_true",
                   help="failover phase: 2 workers under steady load, the detection owner SIGKILLed, then a "
                        "replacement and one more worker added; takeover, catch-up and join times")
    p.add_argument("--failover-rate", type=float, default=2000.0, help="steady events/s during the failover phase")
    p.add_argument("--failover-seconds", type=float, default=60.0,
                   help="least length of the failover phase's load (longer when its steps need it)")
    p.add_argument("--failover-kill-after", type=float, default=15.0, help="seconds of load before the SIGKILL")
    p.add_argument("--incidents", type=int, default=12, help="incident injections in the latency phase")
    p.add_argument("--load-rate", type=float, default=2000.0, help="steady events/s during the latency phase")
    p.add_argument("--burst-rate", type=float, default=50.0, help="incident events/s on the incident's route")
    p.add_argument("--micro-requests", type=int, default=30_000, help="requests for the micro-profile")
    p.add_argument("--profile-worker", action="store_true",
                   help="run the throughput worker under bench.probe (GC timer + stack sampler; ~1%% overhead)")
    o = ap.add_argument_group("other")
    o.add_argument("--compression", default=None, help="producer compression (gzip; lz4/zstd/snappy need cramjam)")
    o.add_argument("--timeout", type=float, default=900.0, help="give up on the throughput phase after this many seconds")
    o.add_argument("--data-dir", type=Path, default=None, help="where run directories go (default: a temp dir)")
    o.add_argument("--keep", action="store_true", help="keep topics and data directories")
    o.add_argument("--json-out", type=Path, default=None, help="also write every detail as JSON here")
    args = ap.parse_args(argv)
    if args.workers is not None:
        from bench.workers import parse_worker_counts

        try:
            args.worker_counts = parse_worker_counts(args.workers, args.partitions)
        except ValueError as exc:
            ap.error(str(exc))
    else:
        args.worker_counts = []
    if args.otlp_batch < 1:
        ap.error("--otlp-batch must be at least 1")
    if args.failover and args.partitions < 2:
        ap.error("--failover needs --partitions >= 2 (two workers, each with a join shard)")
    return args


async def _cleanup_topics(settings: Any, *prefixes: str) -> list[str]:
    from bench.kafkautil import delete_topics

    return await delete_topics(settings.kafka_bootstrap, settings.kafka_client_options(), *prefixes)


def _run_json_child(args: list[str], timeout: float) -> dict[str, Any]:
    from bench.workerproc import bench_env

    proc = subprocess.run([sys.executable, *args], capture_output=True, timeout=timeout, env=bench_env(), check=False)
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(args[:2])} printed nothing (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return dict(orjson.loads(lines[-1]))


async def run_cardinality(args: argparse.Namespace, settings_for: Any) -> dict[str, Any]:
    """Throughput, peak RSS, restart time and rebalances with the normal mix, with
    ``--cardinality-routes`` distinct routes and with ``--cardinality-models`` distinct models,
    each on its own topics and data; ratios against the normal mix of the same run."""
    from bench.kafkautil import create_topics
    from bench.preload import preload
    from bench.throughput import run_throughput
    from bench.traffic import TrafficMix

    cases = [("baseline", 0, 0), ("routes", args.cardinality_routes, 0), ("models", 0, args.cardinality_models)]
    out: dict[str, Any] = {}
    for label, routes, models in cases:
        s = settings_for(f"card-{label}")
        opts = s.kafka_client_options()
        await create_topics(s.kafka_bootstrap, opts, [s.requests_topic, s.verdicts_topic], args.partitions)
        now_ms = int(time.time() * 1000)
        mix = TrafficMix(args.cardinality_requests, start_ms=now_ms - 28 * 3_600_000, end_ms=now_ms - 4 * 3_600_000,
                         verdict_sample=args.verdict_sample, seed=args.seed, distinct_routes=routes,
                         distinct_models=models)  # fmt: skip
        pre = await preload(s.kafka_bootstrap, opts, mix, s.requests_topic, s.verdicts_topic,
                            compression=args.compression, progress=_log)  # fmt: skip
        res = await run_throughput(s, s.data_dir.parent / f"card-{label}-worker.log", n_requests=pre.requests,
                                   n_verdicts=pre.verdicts, timeout_s=args.timeout, progress=_log)  # fmt: skip
        counters = res["stats"].get("counters", {})
        out[label] = {
            "distinct_routes": routes, "distinct_models": models, "complete": res["complete"],
            "events_per_s": res["events_per_s"], "peak_rss_mib": res["peak_rss_mib"], "restart_s": res["restart_s"],
            "rebalances": res["rebalances"],
            "overflow": {k: v for k, v in counters.items() if k.startswith("overflow.")},
        }  # fmt: skip
        _log(f"cardinality {label}: {res['events_per_s']:,.0f} events/s, peak RSS {res['peak_rss_mib']} MiB, "
             f"restart {res['restart_s']} s, rebalances {res['rebalances']}")  # fmt: skip
    base = out["baseline"]["events_per_s"] or 1.0
    for label in ("routes", "models"):
        out[label]["throughput_ratio"] = round(out[label]["events_per_s"] / base, 3)
    return out


def otlp_case(res: dict[str, Any], pre: Any, json_res: dict[str, Any] | None, encoding: str,
              per_message: int) -> dict[str, Any]:  # fmt: skip
    """The figures of one OTLP phase: throughput, exactness, and ratios against the JSON phase."""
    from bench.report import stage_profile

    counters = res["stats"].get("counters", {})
    rows = res.get("rows_in_clickhouse") or {}
    exact = (res["complete"] and rows.get("requests") == pre.requests and rows.get("verdicts") == pre.verdicts
             and not counters.get("dead_letters"))  # fmt: skip
    json_eps = (json_res or {}).get("events_per_s")
    json_print, own_print = (json_res or {}).get("fingerprint"), res.get("fingerprint")
    out = {
        "encoding": encoding, "spans_per_message": per_message, "complete": res["complete"], "exact": bool(exact),
        "same_rows_as_json": (json_print == own_print) if json_print and own_print else None,
        "requests": pre.requests, "verdicts": pre.verdicts, "events": res["events"], "messages": pre.messages,
        "bytes": pre.bytes, "bytes_per_event": round(pre.bytes / pre.events, 1) if pre.events else None,
        "preload_s": round(pre.seconds, 2),
        "events_per_s": res["events_per_s"], "events_per_s_including_startup": res["events_per_s_including_startup"],
        "steady_events_per_s": res["steady_events_per_s"], "startup_s": res["startup_s"],
        "done_after_ready_s": res["done_after_ready_s"], "commit_wait_s": res["commit_wait_s"],
        "ratio_to_json": round(res["events_per_s"] / json_eps, 3) if json_eps and res["events_per_s"] else None,
        "steady_ratio_to_json": (round(res["steady_events_per_s"] / json_res["steady_events_per_s"], 3)
                                 if json_res and json_res.get("steady_events_per_s") and res["steady_events_per_s"]
                                 else None),
        "peak_rss_mib": res["peak_rss_mib"], "cpu_s": res["cpu_s"], "cpu_utilisation": res["cpu_utilisation"],
        "cpu_s_by_thread": res["cpu_s_by_thread"],
        "cpu_us_per_event": round(res["cpu_s"] / res["events"] * 1e6, 1) if res["events"] else None,
        "restart_s": res["restart_s"], "rebalances": res["rebalances"], "stats_timeouts": res["stats_timeouts"],
        "longest_stats_wait_s": res["longest_stats_wait_s"], "rows_in_clickhouse": rows,
        "fingerprint": own_print,
        "counters": {k: v for k, v in counters.items()
                     if k.startswith(("otlp.", "repartition.", "dead_letters", "lookups", "verdict_pauses"))},
        "profile": stage_profile(res["stats"].get("stage_seconds", {}), res["events"], res["done_after_ready_s"] or 0.0),
    }  # fmt: skip
    if json_res and json_res.get("cpu_s") and json_res.get("events"):
        out["json_cpu_us_per_event"] = round(json_res["cpu_s"] / json_res["events"] * 1e6, 1)
    if res.get("probe"):
        from bench.report import probe_profile

        out["probe"] = probe_profile(res["probe"], res["events"], res["done_after_ready_s"] or 0.0)
    return out


async def run_otlp(args: argparse.Namespace, settings_for: Any, root: Path, mix: Any,
                   json_res: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """The throughput phase again on ``mix`` (the JSON phase's requests and verdicts) as OTLP
    messages on the OTLP topics, one phase per encoding (``otlp-proto``, ``otlp-json``)."""
    from bench.kafkautil import create_topics
    from bench.otlp import encode_otlp_chunk
    from bench.preload import preload
    from bench.throughput import run_throughput

    encodings = ["otlp_proto", "otlp_json"] if args.otlp_encoding == "both" else [args.otlp_encoding]
    per = args.otlp_batch
    out: dict[str, Any] = {"spans_per_message": per, "json_events_per_s": (json_res or {}).get("events_per_s"),
                           "json_steady_events_per_s": (json_res or {}).get("steady_events_per_s"), "cases": {}}  # fmt: skip
    for encoding in encodings:
        phase = "otlp-" + encoding.removeprefix("otlp_")
        s = settings_for(phase)
        opts = s.kafka_client_options()
        await create_topics(s.kafka_bootstrap, opts, s.otlp_topics, args.partitions)
        _log(f"{phase}: generating and producing {mix.n:,} spans + their evaluation log records, "
             f"{per} per message ({encoding})")  # fmt: skip
        pre = await preload(s.kafka_bootstrap, opts, mix, s.otlp_spans_topic, s.otlp_logs_topic,
                            compression=args.compression,  # the JSON phase's chunks: the same traffic
                            encoder=encode_otlp_chunk, encoder_args=(encoding, per), progress=_log)  # fmt: skip
        _log(f"{phase}: {pre.events:,} events in {pre.messages:,} messages ({pre.bytes / 1e6:,.0f} MB) "
             f"in {pre.seconds:.1f}s")  # fmt: skip
        probe_out = (root / f"{phase}-probe.json") if args.profile_worker else None
        res = await run_throughput(s, root / f"{phase}-worker.log", n_requests=pre.requests, n_verdicts=pre.verdicts,
                                   timeout_s=args.timeout, topics=s.otlp_topics, fingerprint=True,
                                   probe_out=probe_out, progress=_log)  # fmt: skip
        case = otlp_case(res, pre, json_res, encoding, per)
        out["cases"][encoding] = case
        _log(f"{phase}: {case['events']:,} events, {case['events_per_s']:,.0f} events/s after ready "
             f"(JSON {out['json_events_per_s']}; ratio {case['ratio_to_json']}), exact {case['exact']}, "
             f"same rows as JSON {case['same_rows_as_json']}, peak RSS {case['peak_rss_mib']} MiB")  # fmt: skip
    out["complete"] = all(c["complete"] and c["exact"] and c["same_rows_as_json"] is not False
                          for c in out["cases"].values())  # fmt: skip
    return out


async def run_several_workers(args: argparse.Namespace, settings_for: Any, root: Path,
                              broker_pid: int | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:  # fmt: skip
    """``--workers`` and ``--failover`` (bench/workers.py) on one local ClickHouse server started
    for them in ``root/clickhouse-server`` and stopped after."""
    from bench.workers import ClickHouseServer, run_failover, run_scaling

    server = ClickHouseServer(root / "clickhouse-server")
    dsn = await asyncio.to_thread(server.start)
    _log(f"workers: ClickHouse server at {dsn} (pid {server.pid}, data {server.data_dir})")
    workers_res = failover_res = None
    try:
        if args.worker_counts:
            workers_res = await run_scaling(args, settings_for, dsn=dsn, server_pid=server.pid, broker_pid=broker_pid,
                                            counts=args.worker_counts,
                                            embedded=1 in args.worker_counts and not args.skip_workers_embedded,
                                            progress=_log)  # fmt: skip
            _log(f"workers: events/s {workers_res['events_per_s']}, efficiency {workers_res['efficiency']}, "
                 f"embedded N=1 {workers_res['embedded_n1_events_per_s']}")  # fmt: skip
        if args.failover:
            failover_res = await run_failover(settings_for("failover"), dsn=dsn, partitions=args.partitions,
                                              rate=args.failover_rate, seconds=args.failover_seconds,
                                              kill_after_s=args.failover_kill_after, verdict_sample=args.verdict_sample,
                                              seed=args.seed, progress=_log)  # fmt: skip
            added = {key: {k: v for k, v in (failover_res.get(key) or {}).items() if k != "shards"}
                     for key in ("replacement", "add_worker")}  # fmt: skip
            _log(f"failover: after the kill {failover_res.get('after_kill')}, {added}, exact {failover_res.get('exact')}")
    finally:
        await asyncio.to_thread(server.stop)
    return workers_res, failover_res


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from telemetry.localkafka import broker_status, start_broker
    from telemetry.settings import load_settings

    started = time.monotonic()
    base = load_settings()
    status = broker_status(base)
    if not status.running:
        _log(f"no broker at {base.kafka_bootstrap}; starting the local one")
        status = start_broker(base, log=_log)
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    prefix = f"bench.{run_id}."
    root = (args.data_dir / run_id) if args.data_dir else Path(tempfile.mkdtemp(prefix=f"telemetry-bench-{run_id}-"))
    root.mkdir(parents=True, exist_ok=True)
    knobs: dict[str, Any] = {"topic_partitions": args.partitions}
    if args.batch_size is not None:
        knobs["batch_size"] = args.batch_size
    if args.batch_seconds is not None:
        knobs["batch_seconds"] = args.batch_seconds
    if args.join_cache_size is not None:
        knobs["join_cache_size"] = args.join_cache_size
    for item in args.worker_settings:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--set wants NAME=VALUE, got {item!r}")
        knobs[name.strip().lower().removeprefix("telemetry_")] = value

    def settings_for(phase: str) -> Any:
        otlp = {"otlp_spans_topic": f"{prefix}{phase}.otlp_spans", "otlp_logs_topic": f"{prefix}{phase}.otlp_logs"}
        return load_settings(
            data_dir=root / phase, topic_prefix=f"{prefix}{phase}.", consumer_group=f"bench-{run_id}-{phase}",
            web_port=free_port(), clickhouse_dsn=None, **{**otlp, **knobs},
        )  # fmt: skip

    tp_settings = settings_for("throughput")
    config = {
        "requests": args.requests, "verdict_sample": args.verdict_sample, "seed": args.seed,
        "batch_size": tp_settings.batch_size, "batch_seconds": tp_settings.batch_seconds,
        "partitions": args.partitions, "join_cache_size": tp_settings.join_cache_size,
        "distinct_routes": args.distinct_routes, "distinct_models": args.distinct_models,
        "incidents": args.incidents, "load_rate": args.load_rate, "burst_rate": args.burst_rate,
        "compression": args.compression or "none", "profile_worker": args.profile_worker,
        "otlp": {"encoding": args.otlp_encoding, "spans_per_message": args.otlp_batch} if args.otlp else None,
        "worker_settings": {k: str(getattr(tp_settings, k, v)) for k, v in knobs.items()},
        "ingest_mode": getattr(tp_settings, "ingest_mode", None),
        "git": git_info(),
    }  # fmt: skip
    machine = machine_info(status.version or base.kafka_version)
    _log(f"run {run_id}: topics {prefix}*, data {root}; {config}")
    preload_res = throughput_res = ceiling_res = latency_res = micro_res = None
    cardinality_res: dict[str, Any] | None = None
    workers_res: dict[str, Any] | None = None
    failover_res: dict[str, Any] | None = None
    otlp_res: dict[str, Any] | None = None
    from bench.traffic import TrafficMix

    now_ms = int(time.time() * 1000)
    # a day of traffic ending 4 h ago: every verdict (judged <= 4 h later) is in the past; the
    # OTLP phase sends the same requests and verdicts
    mix = TrafficMix(args.requests, start_ms=now_ms - 28 * 3_600_000, end_ms=now_ms - 4 * 3_600_000,
                     verdict_sample=args.verdict_sample, seed=args.seed,
                     distinct_routes=args.distinct_routes, distinct_models=args.distinct_models)  # fmt: skip
    try:
        if not args.skip_throughput:
            from bench.kafkautil import create_topics
            from bench.preload import preload
            from bench.throughput import run_throughput

            s = tp_settings
            opts = s.kafka_client_options()
            await create_topics(s.kafka_bootstrap, opts, [s.requests_topic, s.verdicts_topic], args.partitions)
            _log(f"preload: generating and producing {args.requests:,} requests + ~{args.requests * args.verdict_sample:,.0f} verdicts")
            pre = await preload(s.kafka_bootstrap, opts, mix, s.requests_topic, s.verdicts_topic,
                                compression=args.compression, progress=_log)  # fmt: skip
            preload_res = {"requests": pre.requests, "verdicts": pre.verdicts, "events": pre.events, "bytes": pre.bytes,
                           "seconds": round(pre.seconds, 2), "events_per_s": round(pre.events_per_s, 1),
                           "produce_busy_s": round(pre.produce_busy_seconds, 2)}  # fmt: skip
            _log(f"preload: {pre.events:,} events ({pre.bytes / 1e6:,.0f} MB) in {pre.seconds:.1f}s = {pre.events_per_s:,.0f} events/s")

            if not args.skip_ceiling:
                _log("ceiling: bare aiokafka consumer + orjson.loads in its own process")
                ceiling_res = await asyncio.to_thread(
                    _run_json_child,
                    ["-m", "bench.ceiling", "--bootstrap", s.kafka_bootstrap, "--group", f"bench-{run_id}-ceiling",
                     "--expect", str(pre.events), s.requests_topic, s.verdicts_topic],
                    600.0,
                )  # fmt: skip
                _log(f"ceiling: {ceiling_res['messages']:,} messages, {ceiling_res['events_per_s']:,.0f} events/s "
                     f"({ceiling_res['events_per_s_including_startup']:,.0f}/s with startup)")  # fmt: skip

            _log("throughput: starting the worker cold")
            probe_out = (root / "throughput-probe.json") if args.profile_worker else None
            throughput_res = await run_throughput(s, root / "throughput-worker.log", n_requests=pre.requests,
                                                  n_verdicts=pre.verdicts, timeout_s=args.timeout,
                                                  probe_out=probe_out, fingerprint=args.otlp, progress=_log)  # fmt: skip
            _log(f"throughput: {throughput_res['events']:,} events, {throughput_res['events_per_s']:,.0f} events/s after ready "
                 f"({throughput_res['done_after_ready_s']:.1f}s), peak RSS {throughput_res['peak_rss_mib']} MiB")  # fmt: skip

        if args.otlp:
            otlp_res = await run_otlp(args, settings_for, root, mix, throughput_res)

        if args.cardinality:
            cardinality_res = await run_cardinality(args, settings_for)

        if args.worker_counts or args.failover:
            workers_res, failover_res = await run_several_workers(args, settings_for, root, status.pid)

        if not args.skip_latency:
            from bench.latency import run_latency

            ls = settings_for("latency")
            latency_res = await run_latency(ls, root / "latency-worker.log", incidents=args.incidents,
                                            rate=args.load_rate, verdict_sample=args.verdict_sample,
                                            burst_rate=args.burst_rate, seed=args.seed, progress=_log)  # fmt: skip
            _log(f"latency: p50 {latency_res['p50_s']} s, p99 {latency_res['p99_s']} s over {latency_res['detected']} alerts")

        if not args.skip_micro and args.micro_requests > 0:
            _log(f"micro: per-step timings on {args.micro_requests:,} requests in a separate process")
            micro_cmd = ["-m", "bench.micro", "--requests", str(args.micro_requests),
                         "--verdict-sample", str(args.verdict_sample), "--batch-size", str(tp_settings.batch_size),
                         "--otlp-batch", str(args.otlp_batch)]  # fmt: skip
            micro_res = await asyncio.to_thread(_run_json_child, micro_cmd, 600.0)
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                # the run's topics, and the ``<group>-__assignor-__leader`` topic Faust makes per group
                deleted = await _cleanup_topics(base, prefix, f"bench-{run_id}-")
                _log(f"cleanup: deleted {len(deleted)} topics")
            shutil.rmtree(root, ignore_errors=True)
        else:
            _log(f"kept topics {prefix}* and {root}")

    summary = summarize(run_id=run_id, config=config, machine=machine, preload=preload_res, throughput=throughput_res,
                        ceiling=ceiling_res, latency=latency_res, micro=micro_res,
                        seconds=time.monotonic() - started)  # fmt: skip
    if args.otlp:
        summary["otlp"] = otlp_res
    if cardinality_res is not None:
        summary["cardinality"] = cardinality_res
    if args.worker_counts:
        summary["workers"] = workers_res
    if args.failover:
        summary["failover"] = failover_res
    for extra in ("otlp", "workers", "failover"):
        # an incomplete or inexact OTLP, scale-out or failover phase fails the run like a throughput timeout
        if extra in summary and not (summary[extra] or {}).get("complete"):
            summary["complete"] = False
    if args.json_out:
        detail = {"summary": summary, "preload": preload_res, "ceiling": ceiling_res, "throughput": throughput_res,
                  "latency": latency_res, "micro": micro_res, "otlp": otlp_res}  # fmt: skip
        args.json_out.write_bytes(orjson.dumps(detail, option=orjson.OPT_INDENT_2))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        summary = asyncio.run(run(args))
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    sys.stderr.write(format_summary(summary) + "\n")
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()
    return 0 if summary.get("complete") in (True, None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
