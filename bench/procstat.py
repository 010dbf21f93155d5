"""Process figures from ``/proc`` (Linux; no psutil): peak and current RSS, CPU seconds."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "peak_rss_mib", "rss_mib", "thread_cpu", "thread_cpu_groups"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mib(pid: int) -> float | None:
    """``VmHWM``: the process's peak resident set size so far, MiB (None if it is gone)."""
    kib = _status_kib(pid, "VmHWM")
    return round(kib / 1024, 1) if kib is not None else None


def rss_mib(pid: int) -> float | None:
    """``VmRSS``: resident set size now, MiB."""
    kib = _status_kib(pid, "VmRSS")
    return round(kib / 1024, 1) if kib is not None else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of the process so far (all its threads)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of ``pid``: ``{tid: (name, seconds)}`` (name = ``comm``)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return out
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / _TICKS)
    return out


def thread_cpu_groups(
    pid: int,
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    python_threads: dict[int, str] | None = None,
) -> dict[str, float]:
    """CPU seconds between two :func:`thread_cpu` readings, grouped: the main thread (the event
    loop: Faust, aiokafka, agents, join, detectors), the ``asyncio.to_thread`` pool (decode, row
    building, and the chDB calls made from it, whose C++ work runs on the calling thread), and
    every other thread name (chDB's own pools) by name. ``python_threads`` (native id -> name,
    from the probe) identifies Python threads exactly; without it, threads named like the main
    one, or ``Unknown`` (what a pool thread is called once chDB has run a query on it), are taken
as the pool (Python 3.11 does not set ``comm`` itself)."""
    main_name = after.get(pid, before.get(pid, ("", 0.0)))[0]
    groups: dict[str, float] = {}
    for tid, (name, secs) in after.items():
        delta = secs - before.get(tid, (name, 0.0))[1]
        if tid == pid:
            key = "main thread (event loop)"
        elif python_threads is not None and tid in python_threads:
            pyname = python_threads[tid]
            key = "to_thread pool" if pyname.startswith("asyncio") else f"python: {pyname.rstrip('0123456789_')}"
        elif python_threads is None and name in (main_name, "Unknown"):
            # a pool thread that ran a chDB query shows as "Unknown" (the probe's exact mapping
            # of native ids to Python thread names shows these are the asyncio_N threads)
            key = "to_thread pool"
        else:
            key = f"native: {name.rstrip('0123456789') or name}"
        groups[key] = groups.get(key, 0.0) + delta
    return {k: round(v, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1]) if v > 0}
