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
    """Time ``fn`` once with the garbage collector on (as in the worker). With
    ``repeat_without_gc``, also time that (an equivalent run) with the collector off: the
    difference is what cyclic GC costs at this heap size."""
    t = time.perf_counter()
    fn()
    s = time.perf_counter() - t
    out = {"events": events, "seconds": round(s, 4), "us_per_event": round(s / events * 1e6, 2) if events else 0.0}
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


def profile(n_requests: int = 50_000, verdict_sample: float = 0.2, batch_size: int = 5000, seed: int = 7) -> dict[str, Any]:
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
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.micro", description="Micro-profile of the worker's per-event steps.")
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--verdict-sample", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=5000)
    args = ap.parse_args(argv)
    result = profile(args.requests, args.verdict_sample, args.batch_size)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
