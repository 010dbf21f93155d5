"""Micro-profile: each step of the worker's per-event path timed alone, in one process.

Run as its own process (``python -m bench.micro``; it opens its own embedded ClickHouse in a
temporary directory, and chDB allows one data path per process). It prints one JSON line:
per step, the events handled, the seconds and the microseconds per event. Steps, on the same
realistic messages the throughput phase sends (``bench.traffic``), in worker batches:

- ``orjson_loads``: ``orjson.loads`` of request values (parse only);
- ``validate``: ``normalize_request`` + ``RequestEvent.model_validate`` of parsed dicts (pydantic);
- ``price``: ``PriceBook.cost`` of validated requests (warm cache, the steady state);
- ``decode_requests``: the pipeline's whole decode stage, ``telemetry.ingest.batch.decode_requests``
  (parse + validate + price + wrappers); ``decode_verdicts`` likewise for verdicts;
- ``join_requests`` / ``join_verdicts``: ``JoinState.ids_to_look_up`` + ``JoinState.apply``
  (verdicts after their requests: all joined from the cache);
- ``rows_requests`` / ``rows_verdicts``: ``telemetry.storage.rows`` row building;
- ``insert_requests`` / ``insert_verdicts``: ``Store.write`` into embedded chDB (rows, dedup
  token, the insert and its materialized views);
- ``lookup_miss``: ``Store.lookup`` of request ids that are not stored yet (what a verdict
  arriving before its request costs), per id;
- ``detect``: facts + ``DetectionEngine.observe_*`` + ``evaluate`` per batch, per event.

What scaling out adds per event (README, "Several workers"), on the same messages:

- ``route_id``: ``routing_id`` + ``shard_of`` (the repartition stage reads each message's id);
- ``bundle_encode`` / ``bundle_decode``: ``telemetry.ingest.bundle`` plan + encode (stage 1) and
  decode (stage 2) of 1 MiB bundles (the produce and consume of the bundles themselves are in
  the end-to-end throughput);
- ``facts_encode`` / ``facts_decode``: the facts log records of the stored batches (stage 2
  writes them, the detection owner reads them).

The OTLP path (``--otlp-batch`` spans or log records per message, the same requests and
verdicts as OTLP, bench/otlp.py; per span or log record; 0 leaves these out):

- ``otlp_read_proto`` / ``otlp_read_json``: ``telemetry.otlp.wire.read_traces`` alone (parse the
  message, walk it into plain spans);
- ``otlp_map``: ``genai.operation_of`` + ``request_of`` + ``span_verdicts`` of read spans (the
  mapping to contract dicts);
- ``otlp_split_proto`` / ``otlp_split_json``: ``telemetry.otlp.split.split_traces``, the whole
  split (read + map + one contract JSON per span); ``otlp_split_logs_proto`` /
  ``otlp_split_logs_json`` likewise for evaluation log records (``split_logs``);
- ``otlp_route``: what the repartition stage does per OTLP message, ``InputRouter.split`` +
  ``otlp_forwards`` (split, shard of each item, the forward record), per span; against
  ``json_route``: ``InputRouter.contract_forward`` per JSON event (find the id, the shard);
- ``decode_otlp_requests`` / ``decode_otlp_verdicts``: the join stage's decode of the split
  items (contract JSON with ``otel_span`` and ``tags``); against ``json_decode_requests`` /
  ``json_decode_verdicts``, the same decode of the JSON events.

Each OTLP step and its JSON references is the least of 3 runs (after a full collection each),
wall and CPU time, GC on and off, with the worker's GC thresholds (50,000/20/100; the steps
above run with the interpreter's defaults): they are read against each other.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["profile"]


def _timed(fn: Callable[[], Any], events: int, *, repeat_without_gc: Callable[[], Any] | None = None) -> dict[str, float]:
    """Time ``fn`` once with the garbage collector on (as in the worker): wall time
    (``us_per_event``) and this process's CPU time (``cpu_us_per_event``: all its threads, so
    chDB's own threads count in the insert steps; on a machine shared with other work the CPU
    time is the steadier figure, the wall time includes the waits for a core). With
    ``repeat_without_gc``, also time that (an equivalent run) with the collector off: the
    difference is what cyclic GC costs at this heap size."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    s, cpu = time.perf_counter() - t, time.process_time() - c
    out = {"events": events, "seconds": round(s, 4), "us_per_event": round(s / events * 1e6, 2) if events else 0.0,
           "cpu_us_per_event": round(cpu / events * 1e6, 2) if events else 0.0}
    if repeat_without_gc is not None and events:
        gc.collect()
        gc.disable()
        try:
            t = time.perf_counter()
            repeat_without_gc()
            out["us_per_event_no_gc"] = round((time.perf_counter() - t) / events * 1e6, 2)
        finally:
            gc.enable()
    return out


def profile(n_requests: int = 50_000, verdict_sample: float = 0.2, batch_size: int = 5000, seed: int = 7,
            otlp_batch: int = 256) -> dict[str, Any]:  # fmt: skip
    from bench.traffic import TrafficMix
    from telemetry.contracts.otel import normalize_request
    from telemetry.contracts.request import RequestEvent
    from telemetry.detect.engine import DetectionEngine
    from telemetry.ingest.batch import RawMessage, decode_requests, decode_verdicts
    from telemetry.ingest.join import JoinState
    from telemetry.pricing import PriceBook
    from telemetry.routes import RoutesConfig
    from telemetry.storage import rows as R
    from telemetry.storage.clickhouse import connect
    from telemetry.storage.migrate import migrate
    from telemetry.storage.store import Store
    from telemetry.ingest.facts import request_facts, verdict_facts

    now = int(time.time() * 1000)
    mix = TrafficMix(n_requests, start_ms=now - 28 * 3_600_000, end_ms=now - 4 * 3_600_000,
                     verdict_sample=verdict_sample, seed=seed)  # fmt: skip
    batch = mix.chunk(0, n_requests)
    req_raw = [RawMessage("r", 0, i, k, v) for i, (k, v) in enumerate(batch.requests)]
    ver_raw = [RawMessage("v", 0, i, k, v) for i, (k, v) in enumerate(batch.verdicts)]
    nr, nv = len(req_raw), len(ver_raw)

    def chunks(seq: list[Any]) -> list[list[Any]]:
        return [seq[i : i + batch_size] for i in range(0, len(seq), batch_size)]

    out: dict[str, Any] = {"requests": nr, "verdicts": nv, "batch_size": batch_size}
    values = [m.value for m in req_raw]
    dicts: list[dict[str, Any]] = []
    out["orjson_loads"] = _timed(lambda: dicts.extend(orjson.loads(v) for v in values), nr,
                                 repeat_without_gc=lambda: [orjson.loads(v) for v in values])  # fmt: skip
    events: list[RequestEvent] = []
    out["validate"] = _timed(lambda: events.extend(RequestEvent.model_validate(normalize_request(d)) for d in dicts), nr,
                             repeat_without_gc=lambda: [RequestEvent.model_validate(normalize_request(d)) for d in dicts])  # fmt: skip
    prices = PriceBook()
    for e in events[:1000]:  # warm the per-model cache (the steady state of a running worker)
        prices.cost(provider=e.provider or None, model=e.served_model, ts_ms=e.ts, input_tokens=e.input_tokens,
                    output_tokens=e.output_tokens)  # fmt: skip

    def price_all() -> None:
        for e in events:
            prices.cost(provider=e.provider or None, model=e.served_model, ts_ms=e.ts, input_tokens=e.input_tokens,
                        output_tokens=e.output_tokens, cached_input_tokens=e.cached_input_tokens,
                        reasoning_tokens=e.reasoning_tokens, producer_cost_usd=e.cost_usd)  # fmt: skip

    out["price"] = _timed(price_all, nr, repeat_without_gc=price_all)
    decoded_r: list[Any] = []
    decoded_v: list[Any] = []
    out["decode_requests"] = _timed(
        lambda: decoded_r.extend(decode_requests(c, prices, max_bytes=1_000_000, now_ms=now) for c in chunks(req_raw)), nr,
        repeat_without_gc=lambda: [decode_requests(c, prices, max_bytes=1_000_000, now_ms=now) for c in chunks(req_raw)],
    )
    out["decode_verdicts"] = _timed(
        lambda: decoded_v.extend(decode_verdicts(c, max_bytes=1_000_000, now_ms=now) for c in chunks(ver_raw)), nv,
        repeat_without_gc=lambda: [decode_verdicts(c, max_bytes=1_000_000, now_ms=now) for c in chunks(ver_raw)],
    )

    join = JoinState(horizon_ms=24 * 3_600_000, capacity=1_000_000)
    outcomes_r: list[Any] = []
    outcomes_v: list[Any] = []

    def join_requests() -> None:
        for d in decoded_r:
            join.ids_to_look_up(d.requests, [])
            outcomes_r.append(join.apply(d.requests, []))

    def join_verdicts() -> None:
        for d in decoded_v:
            join.ids_to_look_up([], d.verdicts)
            outcomes_v.append(join.apply([], d.verdicts))

    out["join_requests"] = _timed(join_requests, nr)
    out["join_verdicts"] = _timed(join_verdicts, nv)
    rows_r = lambda: [R.request_rows(o.new_requests, now) for o in outcomes_r]
    rows_v = lambda: [R.verdict_rows(o.joined, now) for o in outcomes_v]
    out["rows_requests"] = _timed(rows_r, nr, repeat_without_gc=rows_r)
    out["rows_verdicts"] = _timed(rows_v, nv, repeat_without_gc=rows_v)

    tmp = Path(tempfile.mkdtemp(prefix="telemetry-bench-micro-"))
    try:
        client = connect(f"chdb://{tmp / 'clickhouse'}")
        migrate(client, "llm_telemetry")
        store = Store(client, "llm_telemetry")
        out["insert_requests"] = _timed(lambda: [store.write(o, now) for o in outcomes_r], nr)
        out["insert_verdicts"] = _timed(lambda: [store.write(o, now) for o in outcomes_v], nv)
        missing = [f"req_missing_{i:08d}" for i in range(batch_size)]
        out["lookup_miss"] = _timed(lambda: store.lookup(missing), len(missing))
        engine = DetectionEngine(RoutesConfig())

        def detect() -> None:
            watermark = 0
            for o in outcomes_r:
                facts = request_facts(o)
                engine.observe_requests(facts)
                watermark = max(watermark, max(f.ts_ms for f in facts))
                engine.evaluate(watermark)
            for o in outcomes_v:
                vf = verdict_facts(o)
                engine.observe_verdicts(vf)
                engine.evaluate(watermark)

        out["detect"] = _timed(detect, nr + nv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    from telemetry.detect import factlog
    from telemetry.ingest import bundle
    from telemetry.ingest.shard import routing_id, shard_of

    shards = 4
    routed: list[Any] = []

    def route_all() -> None:
        for m in req_raw:
            rid = routing_id("requests", m.value)
            routed.append(bundle.Forward(shard_of(rid, shards) if rid else 0, m.topic, m.partition, m.offset, 0, m.key,
                                         m.value))  # fmt: skip

    out["route_id"] = _timed(route_all, nr)
    blobs: list[tuple[int, bytes]] = []
    out["bundle_encode"] = _timed(lambda: blobs.extend((sh, bundle.encode(g)) for sh, g in bundle.plan(routed, 1 << 20)), nr)
    out["bundle_decode"] = _timed(lambda: [bundle.decode(b, sh) for sh, b in blobs], nr)
    records: list[bytes] = []
    out["facts_encode"] = _timed(
        lambda: records.extend(r for o in outcomes_r + outcomes_v
                               for r in factlog.encode(request_facts(o), verdict_facts(o), {("r", 0): now})), nr + nv)  # fmt: skip
    out["facts_decode"] = _timed(lambda: [factlog.decode(r) for r in records], nr + nv)
    if otlp_batch > 0:
        out.update(profile_otlp(batch, otlp_batch, prices, now, batch_size, shards))
    return out


WORKER_GC_THRESHOLDS = (50_000, 20, 100)
"""``gc.set_threshold`` of the worker process (telemetry/worker/main.py), in force for the OTLP
steps and their JSON references (the steps above keep the interpreter's defaults)."""


def _best(fn: Callable[[], Any], events: int, repeat: int = 3) -> dict[str, Any]:
    """:func:`_timed` (GC on, then off) ``repeat`` times after a full collection each; the least
    of each figure (the OTLP steps are compared with each other and with two JSON references, on
    a machine that other work may share: the least is the steadiest)."""
    runs = []
    for _ in range(repeat):
        gc.collect()
        runs.append(_timed(fn, events, repeat_without_gc=fn))
    out: dict[str, Any] = {k: min(r[k] for r in runs) for k in runs[0] if k != "events"}
    out["events"] = events
    out["runs"] = repeat
    return out


def profile_otlp(batch: Any, per_message: int, prices: Any, now: int, batch_size: int, shards: int) -> dict[str, Any]:
    """The OTLP steps (module docstring) on ``batch`` (the JSON steps' requests and verdicts), each
    the least of 3 runs, with the JSON references ``json_route`` (``InputRouter.contract_forward``,
    what the repartition stage does per JSON event) and ``json_decode_requests`` /
    ``json_decode_verdicts`` timed the same way; with the worker's GC thresholds."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
    try:
        return _profile_otlp(batch, per_message, prices, now, batch_size, shards)
    finally:
        gc.set_threshold(*thresholds)


def _profile_otlp(batch: Any, per_message: int, prices: Any, now: int, batch_size: int, shards: int) -> dict[str, Any]:
    from types import SimpleNamespace

    from telemetry.ingest.batch import RawMessage, decode_requests, decode_verdicts
    from telemetry.ingest.inputs import InputRouter
    from telemetry.settings import load_settings

    req_bodies = [orjson.loads(v) for _, v in batch.requests]
    ver_bodies = [orjson.loads(v) for _, v in batch.verdicts]
    settings = load_settings()
    out: dict[str, Any] = {"otlp_spans_per_message": per_message, "gc_thresholds": list(WORKER_GC_THRESHOLDS)}

    def chunks(seq: list[Any]) -> list[list[Any]]:
        return [seq[i : i + batch_size] for i in range(0, len(seq), batch_size)]

    def decode_steps(prefix: str, req_raw: list[Any], ver_raw: list[Any]) -> None:
        dec_r = lambda: [decode_requests(c, prices, max_bytes=1_000_000, now_ms=now) for c in chunks(req_raw)]  # noqa: E731
        dec_v = lambda: [decode_verdicts(c, max_bytes=1_000_000, now_ms=now) for c in chunks(ver_raw)]  # noqa: E731
        out[f"{prefix}_requests"] = _best(dec_r, len(req_raw))
        out[f"{prefix}_verdicts"] = _best(dec_v, len(ver_raw))
        stored = sum(len(d.requests) for d in dec_r())
        if stored != len(req_bodies):
            raise RuntimeError(f"{prefix}: {stored} requests of {len(req_bodies)}")

    router = InputRouter(settings, shards)
    json_records = [SimpleNamespace(topic=settings.requests_topic, partition=0, offset=i, timestamp=now, key=k, value=v)
                    for i, (k, v) in enumerate(batch.requests)]  # fmt: skip
    json_route = lambda: [router.contract_forward(r) for r in json_records]  # noqa: E731
    out["json_route"] = _best(json_route, len(json_records))
    decode_steps("json_decode", [RawMessage("r", 0, i, k, v) for i, (k, v) in enumerate(batch.requests)],
                 [RawMessage("v", 0, i, k, v) for i, (k, v) in enumerate(batch.verdicts)])  # fmt: skip
    splits: dict[str, tuple[list[Any], list[Any]]] = {}
    for encoding in ("otlp_proto", "otlp_json"):
        splits[encoding] = _profile_otlp_encoding(out, encoding, req_bodies, ver_bodies, per_message, settings, now,
                                                  router)  # fmt: skip
    traces, logs = splits["otlp_proto"]

    def raws(split_list: list[Any], kind: str) -> list[Any]:
        return [RawMessage(kind, 0, m, None, i.value, 0, i.item, i.refusal)
                for m, sp in enumerate(split_list) for i in sp.items]  # fmt: skip

    decode_steps("decode_otlp", raws(traces, "r"), raws(logs, "v"))
    return out


def _profile_otlp_encoding(out: dict[str, Any], encoding: Any, req_bodies: list[Any], ver_bodies: list[Any],
                           per_message: int, settings: Any, now: int, router: Any) -> tuple[list[Any], list[Any]]:  # fmt: skip
    """The read, map, split and route steps of one encoding (into ``out``); its splits."""
    from types import SimpleNamespace

    from bench.otlp import messages_of
    from telemetry.otlp import genai
    from telemetry.otlp.split import split_logs, split_traces
    from telemetry.otlp.wire import read_traces

    nr, nv = len(req_bodies), len(ver_bodies)
    mapping = settings.span_mapping()
    msgs = messages_of(req_bodies, ver_bodies, encoding, per_message)
    traces, logs = [v for _, v in msgs.requests], [v for _, v in msgs.verdicts]
    short = encoding.removeprefix("otlp_")
    out[f"otlp_bytes_per_span_{short}"] = round(sum(map(len, traces)) / nr, 1)
    out[f"otlp_bytes_per_log_record_{short}"] = round(sum(map(len, logs)) / nv, 1) if nv else None
    read = lambda: [read_traces(v, encoding) for v in traces]  # noqa: E731
    out[f"otlp_read_{short}"] = _best(read, nr)
    if encoding == "otlp_proto":
        spans = [s for message in read() for s in message]

        def map_all() -> None:
            for span in spans:
                op = genai.operation_of(span.attributes)
                request = genai.request_of(span, op, mapping)  # type: ignore[arg-type]
                genai.span_verdicts(span, request["request_id"], mapping)

        out["otlp_map"] = _best(map_all, nr)
        del spans
    split_t = lambda: [split_traces(v, mapping) for v in traces]  # noqa: E731
    split_l = lambda: [split_logs(v, mapping) for v in logs]  # noqa: E731
    out[f"otlp_split_{short}"] = _best(split_t, nr)
    out[f"otlp_split_logs_{short}"] = _best(split_l, nv)
    result, vres = split_t(), split_l()
    if sum(len(sp.items) for sp in result) != nr or any(i.refusal for sp in result for i in sp.items):
        raise RuntimeError(f"the {encoding} split did not give one request per span")
    if encoding == "otlp_proto":
        records = [SimpleNamespace(topic=settings.otlp_spans_topic, partition=0, offset=i, timestamp=now, key=None,
                                   value=v) for i, v in enumerate(traces)]  # fmt: skip
        route = lambda: [router.otlp_forwards(r, router.split(r.value, "traces")) for r in records]  # noqa: E731
        out["otlp_route"] = _best(route, nr)
    return result, vres


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.micro", description="Micro-profile of the worker's per-event steps.")
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--verdict-sample", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--otlp-batch", type=int, default=256, help="spans per OTLP message (0: no OTLP steps)")
    args = ap.parse_args(argv)
    result = profile(args.requests, args.verdict_sample, args.batch_size, otlp_batch=args.otlp_batch)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
