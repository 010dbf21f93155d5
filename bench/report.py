"""Pure assembly of the benchmark's results: the per-event profile, the final JSON object and the
human-readable summary. No I/O, no clock: everything measured comes in as arguments."""

from __future__ import annotations

from typing import Any

__all__ = ["STAGES", "format_failover", "format_otlp", "format_summary", "format_workers", "probe_profile",
           "stage_profile", "summarize"]

STAGES = ("decode_validate_price", "lookup", "join", "insert", "dead_letter", "detect_alert")
"""The pipeline's ``stage_seconds`` keys, in the order a batch goes through them."""

REQUIRED_KEYS = (
    "events",
    "events_per_s",
    "ceiling_events_per_s",
    "ratio",
    "alert_latency_p50_s",
    "alert_latency_p99_s",
    "peak_rss_mib",
)


def _us(seconds: float, events: int) -> float | None:
    return round(seconds / events * 1e6, 2) if events else None


def stage_profile(stage_seconds: dict[str, float], events: int, wall_s: float) -> dict[str, Any]:
    """Per-event microseconds of each pipeline stage, and the rest of the wall time.

    The pipeline runs one batch at a time under one lock, so the stages add up to the time the
    worker spent *inside* batches; ``framework_overhead`` is the rest of the wall time between
    ready and done: Faust fetching, buffering and dispatching events, acks and offset commits,
    the wait for the last commit, and any moment the pipeline had no batch in hand. A worker
    that overlaps stages of consecutive batches (e.g. decodes the next batch while the previous
    one is inserted) can add up to more than the wall time: ``stages_overlap`` says so, and the
    overhead is then reported as 0 (it cannot be told apart from the overlap).
    """
    stages = {k: float(stage_seconds.get(k, 0.0)) for k in STAGES}
    extra = {k: float(v) for k, v in stage_seconds.items() if k not in stages}
    stages.update(extra)
    inside = sum(stages.values())
    overhead = max(0.0, wall_s - inside)
    per_event = {k: _us(v, events) for k, v in stages.items()}
    per_event["framework_overhead"] = _us(overhead, events)
    per_event["total"] = _us(wall_s, events)
    share = {k: round(v / wall_s, 4) if wall_s > 0 else None for k, v in stages.items()}
    share["framework_overhead"] = round(overhead / wall_s, 4) if wall_s > 0 else None
    return {
        "us_per_event": per_event,
        "share_of_wall": share,
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "inside_stages_s": round(inside, 3),
        "stages_overlap": inside > wall_s,
        "framework_overhead_s": round(overhead, 3),
        "wall_s": round(wall_s, 3),
        "events": events,
    }


def probe_profile(probe: dict[str, Any] | None, events: int, wall_s: float) -> dict[str, Any] | None:
    """GC time per event (the probe's timer) and where the GIL went (py-spy), ``--profile-worker``."""
    if not probe:
        return None
    gc_s = sum(probe.get("gc_seconds", []))
    out: dict[str, Any] = {
        "gc_seconds": round(gc_s, 3),
        "gc_seconds_by_generation": probe.get("gc_seconds"),
        "gc_collections_by_generation": probe.get("gc_collections"),
        "gc_us_per_event": _us(gc_s, events),
        "gc_share_of_wall": round(gc_s / wall_s, 4) if wall_s > 0 else None,
        "gc_thresholds": probe.get("gc_thresholds"),
    }
    spy = probe.get("py_spy")
    if spy:
        busy = spy.get("gil_busy_share") or 0.0
        out["gil_busy_share"] = busy
        # GIL-holding time per event in each category: share x busy share x wall / events
        out["gil_us_per_event"] = {
            k: _us(v * busy * wall_s, events) for k, v in spy.get("share", {}).items() if v >= 0.001
        }
        out["py_spy"] = spy
    return out


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def summarize(
    *,
    run_id: str,
    config: dict[str, Any],
    machine: dict[str, Any],
    preload: dict[str, Any] | None,
    throughput: dict[str, Any] | None,
    ceiling: dict[str, Any] | None,
    latency: dict[str, Any] | None,
    micro: dict[str, Any] | None,
    seconds: float,
) -> dict[str, Any]:
    """The final JSON object (the last line of ``python -m bench``). Missing phases give None."""
    tp = throughput or {}
    events = int(tp.get("events", 0))
    eps = tp.get("events_per_s")
    ceiling_eps = _get(ceiling, "events_per_s")
    ratio = round(eps / ceiling_eps, 4) if eps and ceiling_eps else None
    peaks = [p for p in (tp.get("peak_rss_mib"), _get(latency, "peak_rss_mib")) if p is not None]
    stats = tp.get("stats") or {}
    wall = tp.get("done_after_ready_s") or 0.0
    profile = stage_profile(stats.get("stage_seconds", {}), events, wall) if throughput else None
    micro_us = None
    if micro:
        micro_us = {
            k: {kk: v[kk] for kk in ("us_per_event", "us_per_event_no_gc", "cpu_us_per_event") if kk in v}
            for k, v in micro.items()
            if isinstance(v, dict) and "us_per_event" in v
        }
    return {
        "run_id": run_id,
        "complete": bool(tp.get("complete")) if throughput else None,
        "events": events,
        "requests": tp.get("requests"),
        "verdicts": tp.get("verdicts"),
        "events_per_s": eps,
        "events_per_s_including_startup": tp.get("events_per_s_including_startup"),
        "steady_events_per_s": tp.get("steady_events_per_s"),
        "startup_s": tp.get("startup_s"),
        "done_after_ready_s": tp.get("done_after_ready_s"),
        "commit_wait_s": tp.get("commit_wait_s"),
        "stats_timeouts": tp.get("stats_timeouts"),
        "longest_stats_wait_s": tp.get("longest_stats_wait_s"),
        "ceiling_events_per_s": ceiling_eps,
        "ceiling_events_per_s_including_startup": _get(ceiling, "events_per_s_including_startup"),
        "ratio": ratio,
        "produce_events_per_s": round(preload["events_per_s"], 1) if preload else None,
        "alert_latency_p50_s": _get(latency, "p50_s"),
        "alert_latency_p99_s": _get(latency, "p99_s"),
        "alert_latency_max_s": _get(latency, "max_s"),
        "alert_latency_worker_part_p50_s": _get(latency, "worker_part_p50_s"),
        "alerts_detected": _get(latency, "detected"),
        "alerts_planned": _get(latency, "incidents_planned"),
        "latency_load_events_per_s": _get(latency, "steady_events_per_s"),
        "peak_rss_mib": max(peaks) if peaks else None,
        "peak_rss_mib_throughput": tp.get("peak_rss_mib"),
        "peak_rss_mib_latency": _get(latency, "peak_rss_mib"),
        "worker_cpu_s": tp.get("cpu_s"),
        "worker_cpu_utilisation": tp.get("cpu_utilisation"),
        "worker_cpu_s_by_thread": tp.get("cpu_s_by_thread"),
        "rows_in_clickhouse": tp.get("rows_in_clickhouse"),
        "counters": stats.get("counters"),
        "profile": profile,
        "probe": probe_profile(tp.get("probe"), events, wall),
        "micro_us_per_event": micro_us,
        "config": config,
        "machine": machine,
        "seconds": round(seconds, 1),
    }


def _fmt(x: Any, spec: str = ",.0f") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int | float):
        return format(x, spec)
    return str(x)


def format_summary(s: dict[str, Any]) -> str:
    """A few human lines for stderr (the JSON line on stdout is the machine-readable result)."""
    lines = [
        (f"bench {s['run_id']}: {_fmt(s['events'])} events ({_fmt(s['requests'])} requests + "
        f"{_fmt(s['verdicts'])} verdicts){'' if s['complete'] in (True, None) else ' INCOMPLETE'}"),
        (f"  worker      {_fmt(s['events_per_s'])} events/s after ready ({_fmt(s['events_per_s_including_startup'])}/s "
        f"with the {_fmt(s['startup_s'], '.1f')} s startup; steady {_fmt(s['steady_events_per_s'])}/s)"),
        f"  ceiling     {_fmt(s['ceiling_events_per_s'])} events/s (bare aiokafka + orjson); ratio {_fmt(s['ratio'], '.3f')}",
        f"  produce     {_fmt(s['produce_events_per_s'])} events/s (pre-load)",
        (f"  alerts      p50 {_fmt(s['alert_latency_p50_s'], '.3f')} s, p99 {_fmt(s['alert_latency_p99_s'], '.3f')} s "
        f"({_fmt(s['alerts_detected'])}/{_fmt(s['alerts_planned'])} detected)"),
        f"  memory      peak RSS {_fmt(s['peak_rss_mib'], ',.1f')} MiB",
        f"  cpu         {_fmt(s['worker_cpu_s'], ',.1f')} s ({_fmt(s['worker_cpu_utilisation'], '.2f')} cores); "
        + ", ".join(f"{k} {v}" for k, v in (s.get("worker_cpu_s_by_thread") or {}).items()),
    ]
    prof = s.get("profile")
    if prof:
        us = prof["us_per_event"]
        lines.append("  per event   " + ", ".join(f"{k} {_fmt(v, '.1f')} us" for k, v in us.items() if v))
    probe = s.get("probe")
    if probe:
        lines.append(f"  gc          {_fmt(probe.get('gc_seconds'), '.1f')} s ({_fmt(probe.get('gc_us_per_event'), '.1f')} us/event)")
        gil = probe.get("gil_us_per_event")
        if gil:
            lines.append(f"  GIL holder  busy {_fmt(probe.get('gil_busy_share'), '.0%')}: "
                         + ", ".join(f"{k} {_fmt(v, '.1f')} us" for k, v in gil.items() if v))
    micro = s.get("micro_us_per_event")
    if micro:
        lines.append("  micro       " + ", ".join(f"{k} {_fmt(v.get('us_per_event'), '.1f')}" for k, v in micro.items()))
    lines += format_otlp(s.get("otlp")) + format_workers(s.get("workers")) + format_failover(s.get("failover"))
    lines.append(f"  total       {_fmt(s['seconds'], '.1f')} s")
    return "\n".join(lines)


def format_otlp(o: dict[str, Any] | None) -> list[str]:
    """The ``--otlp`` lines: events/s per encoding against the JSON phase, exactness."""
    if not o:
        return []
    lines = [f"  otlp        {_fmt(o.get('spans_per_message'))} spans per message; JSON {_fmt(o.get('json_events_per_s'))} "
             f"events/s{'' if o.get('complete') else ' INCOMPLETE'}"]
    for enc, c in (o.get("cases") or {}).items():
        lines.append(f"    {enc:<11} {_fmt(c.get('events_per_s'))} events/s after ready (steady {_fmt(c.get('steady_events_per_s'))}/s), "
                     f"ratio to JSON {_fmt(c.get('ratio_to_json'), '.3f')}; exact {c.get('exact')}, same rows as JSON "
                     f"{c.get('same_rows_as_json')}; {_fmt(c.get('cpu_us_per_event'), '.1f')} us CPU/event; "
                     f"peak RSS {_fmt(c.get('peak_rss_mib'), ',.0f')} MiB")
    return lines


def format_workers(w: dict[str, Any] | None) -> list[str]:
    """The ``--workers`` lines: events/s, efficiency, peak RSS and CPU per N."""
    if not w:
        return []
    lines = [f"  workers     {_fmt(w.get('requests'))} requests per case, {_fmt(w.get('partitions'))} shards"
             f"{'' if w.get('complete') else ' INCOMPLETE'}"]
    for c in w.get("cases") or []:
        name = f"N={c.get('workers')} {c.get('engine')}"
        eff = (f", efficiency {_fmt(c.get('efficiency'), '.2f')} / {_fmt(c.get('efficiency_settled'), '.2f')}"
               if c.get("engine") == "server" else "")
        rss = "/".join(_fmt(f.get("peak_rss_mib"), ",.0f") for f in c.get("per_worker") or [])
        cores = ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in (c.get("cpu_cores") or {}).items())
        lines.append(f"    {name:<13} {_fmt(c.get('events_per_s'))} events/s from spawn, {_fmt(c.get('events_per_s_settled'))}/s "
                     f"once all own shards ({_fmt(c.get('settled_s'), '.1f')} s){eff}; exact {c.get('exact')}; "
                     f"peak RSS {rss} MiB; cores: {cores}")
    return lines


def format_failover(f: dict[str, Any] | None) -> list[str]:
    """The ``--failover`` lines: takeover after the SIGKILL, catch-up, and the workers added after."""
    if not f:
        return []
    k = f.get("after_kill") or {}
    lines = [
        (f"  failover    SIGKILL of the {'detection owner' if f.get('victim_was_detection_owner') else 'worker'} "
         f"at {_fmt(f.get('rate'))} events/s, session timeout {_fmt(f.get('session_timeout_s'), 'g')} s; "
         f"exact {f.get('exact')}{'' if f.get('complete') else ' INCOMPLETE'}"),
        (f"    after kill  all shards {_fmt(k.get('shards_all'), '.1f')} s, counters moving "
         f"{_fmt(k.get('counters_moving'), '.1f')} s, detection owner {_fmt(k.get('detection_owner'), '.1f')} s, "
         f"caught up {_fmt(k.get('caught_up'), '.1f')} s (peak delay {_fmt(k.get('peak_delay_s'), '.1f')} s; "
         f"before: {_fmt((f.get('baseline_delay_s') or {}).get('max'), '.1f')} s)"),
    ]
    for key, name in (("replacement", "replacement"), ("add_worker", "scale-up")):
        a = f.get(key)
        if a:
            lines.append(f"    {name:<11} ready {_fmt(a.get('ready_s'), '.1f')} s, owns a shard "
                         f"{_fmt(a.get('owns_shard_s'), '.1f')} s after spawn (peak delay {_fmt(a.get('peak_delay_s'), '.1f')} s); "
                         f"others' PIDs unchanged {a.get('others_pid_unchanged')}")
    return lines
