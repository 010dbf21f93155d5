"""``python -m bench.collector``: deploy/otel-collector.yaml against a real OpenTelemetry Collector.

Steps (progress on stderr, the report on stdout; exit 0 only if every check passed):

1. build a minimal Collector with the OpenTelemetry Collector Builder (ocb) v0.165.0 from Go
   modules: otlpreceiver, memorylimiterprocessor, batchprocessor (core v0.165.0 / v1.71.0) and
   the contrib kafkaexporter (v0.165.1, the contrib release paired with core v0.165.0). The
   builder, its manifest and the binary are cached under ``$OTELCOL_CACHE`` (default
   ``/work/.cache/otelcol``, outside the repo); a cached binary built from the same manifest is
   reused, so Go is needed only for the first build;
2. ``otelcol validate --config deploy/otel-collector.yaml`` (the file as committed, its
   ``${env:...}`` defaults in force);
3. end to end, against the broker at 127.0.0.1:9092 (started with ``telemetry kafka start`` if
   nothing answers there, and stopped again at the end only in that case): the Collector runs a
   variant of the file whose exporter topics are unique (``bench.otlp_spans.<run>``,
   ``bench.otlp_logs.<run>``) and whose OTLP receivers listen on free 127.0.0.1 ports, with
   ``KAFKA_BROKERS=127.0.0.1:9092``; GenAI spans (each with a ``gen_ai.evaluation.result`` span
   event) and a ``gen_ai.evaluation.result`` log record go to it through the OpenTelemetry
   Python SDK's OTLP/HTTP exporters; the two topics are read back with aiokafka and every message
   is decoded with the worker's own reader (``telemetry.otlp.split``).

Nothing here is run by CI (it needs Go or a cached binary, and a broker); the exporter package
``opentelemetry-exporter-otlp-proto-http`` is a bench-only dependency (``pip install`` it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "otel-collector.yaml"
BROKER = ("127.0.0.1", 9092)

OCB_VERSION = "v0.165.0"  # go.opentelemetry.io/collector/cmd/builder
CORE_BETA = "v0.165.0"  # core components (receivers, processors)
CORE_STABLE = "v1.71.0"  # confmap providers, paired with CORE_BETA
CONTRIB = "v0.165.1"  # contrib kafkaexporter, the patch release of contrib 0.165 (built on core v0.165.0)
DIST_NAME = "otelcol-llm-telemetry"

CACHE = Path(os.environ.get("OTELCOL_CACHE", "/work/.cache/otelcol"))
WORK = CACHE / OCB_VERSION
BUILDER = CACHE / "bin" / "builder"
MANIFEST = WORK / "manifest.yaml"
DIST = WORK / "dist"
BINARY = DIST / DIST_NAME
STAMP = WORK / "built-from.yaml"  # a copy of the manifest, written only after a successful build


def manifest() -> str:
    """The builder manifest (ocb's ``--config``)."""
    return f"""\
# Written by bench/collector.py (llm-telemetry); the minimal Collector that deploy/otel-collector.yaml needs.
dist:
  module: example.invalid/llm-telemetry/otelcol
  name: {DIST_NAME}
  description: Minimal OpenTelemetry Collector for llm-telemetry (OTLP in, Kafka out)
  version: {CORE_BETA.lstrip("v")}
  output_path: {DIST}
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver {CORE_BETA}
processors:
  - gomod: go.opentelemetry.io/collector/processor/memorylimiterprocessor {CORE_BETA}
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor {CORE_BETA}
exporters:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/kafkaexporter {CONTRIB}
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider {CORE_STABLE}
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider {CORE_STABLE}
  - gomod: go.opentelemetry.io/collector/confmap/provider/yamlprovider {CORE_STABLE}
"""


def _log(msg: str) -> None:
    sys.stderr.write(f"[collector {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class Abort(Exception):
    """Stop here with this exit code; the message says why."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- build ---------------------------------------------------------------------------------------
def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise Abort(
            "Go is not installed (no `go` on PATH): it is needed to build the Collector "
            f"(no cached binary at {BINARY}). Install Go 1.26 or newer (the Collector 0.165 modules need it) and run again.",
            code=2,
        )
    return go


def _run_logged(cmd: list[str], log_path: Path, *, cwd: Path, env: dict[str, str]) -> int:
    """Run ``cmd`` with its output in ``log_path``, printing a heartbeat every 30 s."""
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        started = time.monotonic()
        while True:
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _log(f"  ... still running ({time.monotonic() - started:.0f} s; log: {log_path})")


def ensure_collector(rebuild: bool = False) -> Path:
    """The Collector binary: the cached one if it was built from this manifest, else a new build."""
    text = manifest()
    if not rebuild and BINARY.is_file() and STAMP.is_file() and STAMP.read_text() == text:
        _log(f"reusing the cached Collector {BINARY} (built from the same manifest)")
        return BINARY
    go = _go()
    WORK.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(BUILDER.parent))
    if not BUILDER.is_file():
        _log(f"installing the Collector Builder {OCB_VERSION} into {BUILDER.parent} (go install, ~1 min)")
        rc = _run_logged([go, "install", f"go.opentelemetry.io/collector/cmd/builder@{OCB_VERSION}"],
                         WORK / "builder-install.log", cwd=WORK, env=env)  # fmt: skip
        if rc != 0 or not BUILDER.is_file():
            raise Abort(f"`go install` of the builder failed (exit {rc}); see {WORK / 'builder-install.log'}")
    MANIFEST.write_text(text)
    STAMP.unlink(missing_ok=True)
    _log(f"building the Collector from {MANIFEST} (Go modules, then compile: 5-15 min on 2 cores)")
    started = time.monotonic()
    # ocb reads its whole environment as config keys too; give it only what Go needs.
    keep = ("PATH", "HOME", "GOPATH", "GOMODCACHE", "GOCACHE", "GOPROXY", "GOFLAGS", "GOTOOLCHAIN", "TMPDIR")
    benv = {k: v for k, v in os.environ.items() if k in keep}
    rc = _run_logged([str(BUILDER), "--config", str(MANIFEST)], WORK / "build.log", cwd=WORK, env=benv)
    if rc != 0 or not BINARY.is_file():
        tail = (WORK / "build.log").read_text(errors="replace").splitlines()[-15:]
        raise Abort(f"the Collector build failed (exit {rc}); last lines of {WORK / 'build.log'}:\n  " + "\n  ".join(tail))
    STAMP.write_text(text)
    _log(f"built {BINARY} in {time.monotonic() - started:.0f} s")
    return BINARY


def collector_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], check=False, capture_output=True, text=True, timeout=30)
    return (out.stdout or out.stderr).strip()


def collector_env(**extra: str) -> dict[str, str]:
    """The environment without the config's own variables (so their defaults apply), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BROKERS", "KAFKA_PROTOCOL_VERSION")}
    env.update(extra)
    return env


def validate(binary: Path, config: Path, env: dict[str, str]) -> tuple[bool, str]:
    out = subprocess.run([str(binary), "validate", f"--config={config}"], check=False, capture_output=True, text=True,
                         timeout=60, env=env)  # fmt: skip
    return out.returncode == 0, (out.stdout + out.stderr).strip()


# -- broker, variant, collector process -----------------------------------------------------------
def tcp_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _telemetry(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("telemetry")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "telemetry", *args]
    env = dict(os.environ, TELEMETRY_KAFKA_BOOTSTRAP=f"{BROKER[0]}:{BROKER[1]}")
    return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def ensure_broker() -> bool:
    """True if we started the broker (and so may stop it)."""
    if tcp_answers(*BROKER):
        _log(f"a broker answers at {BROKER[0]}:{BROKER[1]}; using it (it will be left running)")
        return False
    _log(f"no broker at {BROKER[0]}:{BROKER[1]}; `telemetry kafka start`")
    out = _telemetry("kafka", "start")
    if out.returncode != 0 or not tcp_answers(*BROKER):
        raise Abort(f"`telemetry kafka start` failed (exit {out.returncode}):\n{out.stdout}{out.stderr}")
    return True


def write_variant(src: Path, dest: Path, spans_topic: str, logs_topic: str) -> tuple[int, int]:
    """``src`` with unique exporter topics and the OTLP receivers on free 127.0.0.1 ports; else unchanged."""
    import yaml  # type: ignore[import-untyped]

    cfg = yaml.safe_load(src.read_text())
    kafka = cfg["exporters"]["kafka"]
    kafka["traces"]["topic"] = spans_topic
    kafka["logs"]["topic"] = logs_topic
    grpc_port, http_port = free_port(), free_port()
    protocols = cfg["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["endpoint"] = f"127.0.0.1:{grpc_port}"
    protocols["http"]["endpoint"] = f"127.0.0.1:{http_port}"
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return grpc_port, http_port


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_collector(binary: Path, config: Path, log_path: Path, http_port: int, env: dict[str, str]) -> Running:
    out = log_path.open("wb")
    proc = subprocess.Popen([str(binary), f"--config={config}"], env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    running = Running(proc, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Abort(f"the Collector exited at start (exit {proc.returncode}):\n{running.log_text()}")
        if tcp_answers("127.0.0.1", http_port, 0.2) and "Everything is ready" in running.log_text():
            return running
        time.sleep(0.2)
    running.stop()
    raise Abort(f"the Collector did not become ready within 30 s:\n{running.log_text()}")


# -- OTLP in -------------------------------------------------------------------------------------
@dataclass
class Sent:
    response_ids: list[str]
    spans: int
    span_events: int
    log_records: int
    models: dict[str, str] = field(default_factory=dict)  # response id -> model


def send_otlp(http_port: int, run_id: str, n_spans: int) -> Sent:
    """Spans and one log record, exported through the SDK's OTLP/HTTP (protobuf) exporters."""
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    except ImportError as exc:
        raise Abort(f"{exc}: `pip install opentelemetry-exporter-otlp-proto-http` (a bench-only package)", 2) from exc
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        InMemoryLogRecordExporter,
        LogRecordExportResult,
        SimpleLogRecordProcessor,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )
    from opentelemetry.trace import SpanKind

    base = f"http://127.0.0.1:{http_port}"
    resource = Resource.create({"service.name": "bench-collector", "llm.team": "bench"})

    # Spans are collected in memory, then handed to the OTLP exporter in one export() call, so
    # that its result (success or the Collector's refusal) is known here.
    spans_mem = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans_mem))
    tracer = tracer_provider.get_tracer("bench.collector")
    sent = Sent(response_ids=[], spans=n_spans, span_events=n_spans, log_records=1)
    first_ctx = None
    for i in range(n_spans):
        rid = f"chatcmpl-{run_id}-{i}"
        model = ("gpt-4o-mini", "claude-3-5-haiku")[i % 2]
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 100 + i,
            "gen_ai.usage.output_tokens": 20 + i,
            "gen_ai.response.id": rid,
            "llm.route": "bench/collector",
        }
        with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs) as span:
            span.add_event("gen_ai.evaluation.result", {
                "gen_ai.evaluation.name": "relevance",
                "gen_ai.evaluation.score.value": 0.9,
                "gen_ai.evaluation.score.label": "pass",
            })  # fmt: skip
            if first_ctx is None:
                first_ctx = span.get_span_context()
        sent.response_ids.append(rid)
        sent.models[rid] = model
    finished = spans_mem.get_finished_spans()
    span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=10)
    result = span_exporter.export(finished)
    span_exporter.shutdown()  # type: ignore[no-untyped-call]
    tracer_provider.shutdown()
    if result != SpanExportResult.SUCCESS:
        raise Abort(f"the OTLP/HTTP span export to the Collector failed: {result}")
    _log(f"exported {len(finished)} spans via OTLP/HTTP to {base}/v1/traces: {result.name}")

    logs_mem = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs_mem))
    logger = logger_provider.get_logger("bench.collector")
    # An evaluation recorded later (e.g. a human verdict), joined by gen_ai.response.id.
    logger.emit(
        event_name="gen_ai.evaluation.result",
        attributes={
            "gen_ai.evaluation.name": "human_review",
            "gen_ai.evaluation.score.value": 0.0,
            "gen_ai.evaluation.score.label": "fail",
            "gen_ai.response.id": sent.response_ids[0],
            "llm.evaluation.kind": "human",
        },
        body="evaluation",
    )
    records = logs_mem.get_finished_logs()
    log_exporter = OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=10)
    lresult = log_exporter.export(records)
    log_exporter.shutdown()  # type: ignore[no-untyped-call]
    logger_provider.shutdown()
    if lresult != LogRecordExportResult.SUCCESS:
        raise Abort(f"the OTLP/HTTP log export to the Collector failed: {lresult}")
    _log(f"exported {len(records)} log record via OTLP/HTTP to {base}/v1/logs: {lresult.name}")
    return sent


# -- Kafka out -----------------------------------------------------------------------------------
@dataclass
class Seen:
    messages: Counter[str] = field(default_factory=Counter)  # topic -> messages
    keys: Counter[str] = field(default_factory=Counter)  # "null" / "keyed"
    key_samples: list[bytes] = field(default_factory=list)
    bytes_max: int = 0
    spans: int = 0
    log_records: int = 0
    items: Counter[str] = field(default_factory=Counter)  # kind -> items
    refusals: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    request_ids: list[str] = field(default_factory=list)
    verdict_ids: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    encodings: Counter[str] = field(default_factory=Counter)


def _encoding_of(raw: bytes) -> str:
    return "otlp_json" if raw[:1] in (b"{", b"[") else "otlp_proto"


async def consume(bootstrap: str, spans_topic: str, logs_topic: str, want_spans: int, want_records: int,
                  timeout_s: float) -> Seen:  # fmt: skip
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from telemetry.otlp.genai import SpanMapping
    from telemetry.otlp.split import split_logs, split_traces

    mapping = SpanMapping()
    seen = Seen()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        assigned: set[str] = set()
        while time.monotonic() < deadline:
            if assigned != {spans_topic, logs_topic}:
                # The exporter creates the topics on first produce (broker auto-create); pick them up.
                await consumer._client.force_metadata_update()
                tps = [TopicPartition(t, p) for t in (spans_topic, logs_topic)
                       for p in sorted(consumer.partitions_for_topic(t) or ())]  # fmt: skip
                now = {tp.topic for tp in tps}
                if now != assigned and tps:
                    consumer.assign(tps)
                    await consumer.seek_to_beginning(*tps)
                    assigned = now
            if not assigned:
                await asyncio.sleep(0.3)
                continue
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for msg in records:
                    raw = msg.value or b""
                    seen.messages[msg.topic] += 1
                    seen.bytes_max = max(seen.bytes_max, len(raw))
                    seen.encodings[_encoding_of(raw)] += 1
                    if msg.key is None:
                        seen.keys["null"] += 1
                    else:
                        seen.keys["keyed"] += 1
                        seen.key_samples.append(msg.key)
                    split = (split_traces if msg.topic == spans_topic else split_logs)(raw, mapping)
                    seen.spans += split.spans
                    seen.log_records += split.log_records
                    seen.skipped.update(split.skipped)
                    for item in split.items:
                        seen.items[item.kind] += 1
                        if item.refusal is not None:
                            seen.refusals.append(f"{msg.topic}@{msg.offset} item {item.item}: {item.refusal}")
                            continue
                        event = orjson.loads(item.value or b"{}")
                        if item.kind == "requests":
                            seen.request_ids.append(item.routing_id or "")
                            seen.requests.append(event)
                        else:
                            seen.verdict_ids.append(item.routing_id or "")
                            seen.verdicts.append(event)
            if seen.spans >= want_spans and seen.log_records >= want_records:
                # Anything more (a duplicate from a retried produce) would come right behind.
                extra = await consumer.getmany(timeout_ms=1500)
                if not any(extra.values()):
                    break
                for tp, records in extra.items():
                    consumer.seek(tp, records[0].offset)
        return seen
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


# -- checks and report ---------------------------------------------------------------------------
def check(sent: Sent, seen: Seen) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, bool, str]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append((name, ok, detail))

    add("spans", seen.spans == sent.spans, f"{seen.spans} read back of {sent.spans} sent")
    add("log records", seen.log_records == sent.log_records, f"{seen.log_records} read back of {sent.log_records} sent")
    add("refusals", not seen.refusals, "none" if not seen.refusals else "; ".join(seen.refusals[:5]))
    add("requests", sorted(seen.request_ids) == sorted(sent.response_ids),
        f"{len(seen.request_ids)} request items, routing ids = the spans' gen_ai.response.id: "
        f"{sorted(seen.request_ids) == sorted(sent.response_ids)}")  # fmt: skip
    want_verdicts = sent.span_events + sent.log_records
    add("verdicts", len(seen.verdict_ids) == want_verdicts and set(seen.verdict_ids) <= set(sent.response_ids),
        f"{len(seen.verdict_ids)} verdict items of {want_verdicts} expected ({sent.span_events} span events + "
        f"{sent.log_records} log record), all joined to a sent response id: "
        f"{set(seen.verdict_ids) <= set(sent.response_ids)}")  # fmt: skip
    bad = []
    for r in seen.requests:
        rid = str(r.get("request_id", ""))
        i = sent.response_ids.index(rid) if rid in sent.response_ids else -1
        want = {"model": sent.models.get(rid), "input_tokens": 100 + i, "output_tokens": 20 + i, "route": "bench/collector"}
        got = {k: r.get(k) for k in want}
        if got != want:
            bad.append(f"{rid}: {got} != {want}")
    add("request fields", not bad and bool(seen.requests), "model, tokens, route as sent" if not bad else "; ".join(bad[:3]))
    human = [v for v in seen.verdicts if v.get("evaluator") == "human_review"]
    add("log verdict", len(human) == 1 and human[0].get("passed") is False and human[0].get("kind") == "human",
        f"{human[0] if human else 'missing'}")  # fmt: skip
    add("encoding", set(seen.encodings) == {"otlp_proto"}, dict(seen.encodings).__repr__())
    return checks


def report(lines: list[str]) -> None:
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="the Collector config to check (default: %(default)s)")
    parser.add_argument("--spans", type=int, default=3, help="GenAI spans to send (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the messages (default: %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="build the Collector even if a cached one exists")
    parser.add_argument("--validate-only", action="store_true", help="build and validate; no broker, no traffic")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the run's topics at the end")
    args = parser.parse_args(argv)

    lines = ["== OpenTelemetry Collector check of " + str(args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config)]
    running: Running | None = None
    started_broker = False
    topics: list[str] = []
    bootstrap = f"{BROKER[0]}:{BROKER[1]}"
    ok = False
    try:
        binary = ensure_collector(args.rebuild)
        version = collector_version(binary)
        lines.append(f"collector:  {version} ({binary}; ocb {OCB_VERSION}, core {CORE_BETA}/{CORE_STABLE}, "
                     f"kafkaexporter {CONTRIB})")  # fmt: skip
        valid, text = validate(binary, args.config, collector_env())
        lines.append(f"validate:   {'OK' if valid else 'REJECTED'} (`{binary.name} validate --config={args.config}`)")
        if text:
            lines.extend("  | " + line for line in text.splitlines())
        if not valid:
            raise Abort("the Collector rejects the config (its exact error is above)")
        if args.validate_only:
            ok = True
            return 0

        started_broker = ensure_broker()
        status = _telemetry("kafka", "status")
        lines.append(f"broker:     {bootstrap}: {status.stdout.strip() or status.stderr.strip()}"
                     f"{' (started by this run)' if started_broker else ' (already running; left alone)'}")
        run_id = secrets.token_hex(4)
        spans_topic, logs_topic = f"bench.otlp_spans.{run_id}", f"bench.otlp_logs.{run_id}"
        topics = [spans_topic, logs_topic]
        tmp = Path(tempfile.mkdtemp(prefix="otelcol-bench-"))
        variant = tmp / "otel-collector.yaml"
        grpc_port, http_port = write_variant(args.config, variant, spans_topic, logs_topic)
        env = collector_env(KAFKA_BROKERS=bootstrap)
        valid_v, text_v = validate(binary, variant, env)
        if not valid_v:
            raise Abort(f"the Collector rejects the run's variant {variant}:\n{text_v}")
        if tcp_answers("127.0.0.1", 8888, 0.2):
            _log("warning: port 8888 (the Collector's own metrics) is in use; the Collector may fail to start")
        _log(f"starting the Collector: KAFKA_BROKERS={bootstrap}, OTLP grpc :{grpc_port} http :{http_port}, "
             f"topics {spans_topic} / {logs_topic}")  # fmt: skip
        running = start_collector(binary, variant, tmp / "collector.log", http_port, env)
        lines.append(f"run:        variant {variant} (topics {spans_topic}, {logs_topic}; "
                     f"OTLP http 127.0.0.1:{http_port}, grpc 127.0.0.1:{grpc_port}; kept only if the run fails)")  # fmt: skip

        sent = send_otlp(http_port, run_id, args.spans)
        lines.append(f"sent:       {sent.spans} GenAI spans (each with a gen_ai.evaluation.result event) + "
                     f"{sent.log_records} gen_ai.evaluation.result log record, OTLP/HTTP protobuf")  # fmt: skip
        seen = asyncio.run(consume(bootstrap, spans_topic, logs_topic, sent.spans, sent.log_records, args.timeout))
        lines.append(f"messages:   {seen.messages[spans_topic]} on {spans_topic}, {seen.messages[logs_topic]} on "
                     f"{logs_topic} (largest {seen.bytes_max} bytes; encodings {dict(seen.encodings)})")
        lines.append(f"decoded:    {seen.spans} spans, {seen.log_records} log records; items "
                     f"{dict(seen.items) or '{}'}; skipped {dict(seen.skipped) or '{}'}")  # fmt: skip
        keyed = seen.keys["keyed"]
        lines.append(f"keys:       {seen.keys['null']} unkeyed (null key), {keyed} keyed"
                     + (f" e.g. {seen.key_samples[:3]!r}" if keyed else " -> the exporter writes unkeyed messages"))
        checks = check(sent, seen)
        for name, passed, detail in checks:
            lines.append(f"  [{'ok' if passed else 'FAIL'}] {name}: {detail}")
        levels = ("\twarn\t", "\terror\t", "\tdpanic\t", "\tpanic\t", "\tfatal\t")
        problems = [ln for ln in running.log_text().splitlines() if any(lv in ln for lv in levels)]
        lines.append(f"collector log: {len(problems)} warn/error lines ({running.log_path})")
        lines.extend("  | " + ln[:300] for ln in problems[:10])
        ok = all(passed for _, passed, _ in checks)
        return 0 if ok else 1
    except Abort as exc:
        lines.append(f"ERROR: {exc}")
        if running is not None:
            lines.append(f"collector log ({running.log_path}), last lines:")
            lines.extend("  | " + ln for ln in running.log_text().splitlines()[-20:])
        return exc.code
    finally:
        if running is not None:
            rc = running.stop()
            lines.append(f"collector:  stopped (exit {rc})")
            if ok:
                shutil.rmtree(running.log_path.parent, ignore_errors=True)
        if topics and not args.keep_topics:
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics(bootstrap, topics))
        if started_broker:
            out = _telemetry("kafka", "stop")
            lines.append(f"broker:     stopped the one this run started ({out.stdout.strip() or out.returncode})")
        lines.append(f"RESULT:     {'PASS' if ok else 'FAIL'}")
        report(lines)


if __name__ == "__main__":
    sys.exit(main())
