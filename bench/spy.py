"""Where the worker's Python time goes: ``py-spy`` samples of the GIL holder, classified.

``py-spy record --gil --threads --nonblocking --format raw`` runs against the worker's pid from
*ready* to *done* (``--profile-worker``; py-spy is optional: ``pip install py-spy``). Only the
thread holding the GIL is sampled, so the samples split the worker's Python execution (the
part that cannot run in parallel) and their count over ``rate x seconds`` is how busy the GIL
was. Each sample is filed under

1. the pipeline stage on its stack (outermost first), named like the stats page's
   ``stage_seconds``: ``decode_requests``/``decode_verdicts`` = decode_validate_price,
   ``Store.lookup`` = lookup, ``JoinState.apply``/``ids_to_look_up`` = join, ``Store.write``
   = insert, ``AlertingObserver.on_facts`` = detect_alert, ``Pipeline._dead_letter`` =
   dead_letter; the bench's own polling of ``/telemetry/stats/`` = stats_page; else
2. ``framework: <package>``: the innermost frame's third-party package (``faust``, ``mode``,
   ``aiokafka``, ``aiohttp``, ...) or, for standard-library frames, the nearest caller that
   is one (``asyncio`` when only the event loop is on the stack).

Within a stage, samples are also split by the innermost package, e.g. ``insert`` into
``telemetry.storage`` (row building) and ``clickhouse_connect``/``chdb`` (the client) and
``decode_validate_price`` into ``pydantic``/``telemetry.contracts``/``orjson``.
Garbage collection has no frame of its own: it lands on the code that allocated (see the
probe's GC timer for its total).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["Spy", "classify_stack", "parse_raw", "summarize_spy"]

_STAGE_FUNCS = {
    "decode_requests": "decode_validate_price",
    "decode_verdicts": "decode_validate_price",
    "Store.lookup": "lookup",
    "JoinState.apply": "join",
    "JoinState.ids_to_look_up": "join",
    "Store.write": "insert",
    "AlertingObserver.on_facts": "detect_alert",
    "Pipeline._dead_letter": "dead_letter",
    "StatsPage.get": "stats_page",
}
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def package_of(path: str) -> tuple[str, bool]:
    """``(package, is_stdlib)`` of a source path as py-spy prints it with ``--full-filenames``."""
    p = path.replace("\\", "/")
    if "/site-packages/" in p:
        return p.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py"), False
    if "/telemetry/" in p:
        sub = p.rsplit("/telemetry/", 1)[1].split("/", 1)
        return ("telemetry." + sub[0].removesuffix(".py")) if len(sub) > 1 else "telemetry", False
    if "/bench/" in p:
        return "bench", False
    if "/" not in p:
        return p.strip("<>") or "?", True
    parts = p.split("/")
    if len(parts) >= 2 and parts[-2] in ("asyncio", "concurrent", "json", "logging", "http", "email", "importlib"):
        return parts[-2], True
    return parts[-1].removesuffix(".py"), True


def parse_raw(text: str) -> list[tuple[str, list[tuple[str, str]], int]]:
    """py-spy ``--format raw --threads`` lines -> ``(thread name, frames outermost first, count)``.
    Each frame is ``(function, file)``."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        parts = m.group("stack").split(";")
        thread = parts[0]
        frames = []
        for part in parts[1:]:
            fm = _FRAME.match(part)
            if fm:
                frames.append((fm.group("func"), fm.group("file")))
        out.append((thread, frames, int(m.group("count"))))
    return out


def classify_stack(frames: list[tuple[str, str]]) -> tuple[str, str]:
    """``(category, innermost package)`` of one stack (outermost frame first)."""
    inner = "?"
    inner_pkg = "?"
    for func, path in reversed(frames):
        pkg, stdlib = package_of(path)
        if inner == "?":
            inner = pkg
        if not stdlib:
            inner_pkg = pkg
            break
    for func, path in frames:
        stage = _STAGE_FUNCS.get(func) or _STAGE_FUNCS.get(func.rsplit("<locals>.", 1)[-1])
        if stage is not None and "telemetry" in path:
            return stage, inner_pkg if inner_pkg != "?" else inner
    if not frames:
        return "framework: (no Python frame)", "?"
    if inner_pkg == "?":
        return "framework: " + inner, inner
    top = inner_pkg.split(".", 1)[0]
    return ("framework: " + top if top != "telemetry" else "other telemetry: " + inner_pkg), inner_pkg


def summarize_spy(text: str, *, rate: int, seconds: float, main_thread_name: str = "MainThread") -> dict[str, Any]:
    """Shares of GIL samples per category, per thread group, with per-stage package splits."""
    by_cat: Counter[str] = Counter()
    by_thread: dict[str, Counter[str]] = {"main": Counter(), "other": Counter()}
    split: dict[str, Counter[str]] = {}
    funcs: dict[str, Counter[str]] = {}
    total = 0
    for thread, frames, count in parse_raw(text):
        cat, pkg = classify_stack(frames)
        which = "main" if thread.endswith(": " + main_thread_name) else "other"
        by_cat[cat] += count
        by_thread[which][cat] += count
        split.setdefault(cat, Counter())[pkg] += count
        if frames:
            func, path = frames[-1]
            funcs.setdefault(cat, Counter())[f"{func} ({path.rsplit('/', 1)[-1]})"] += count
        total += count
    expected = rate * seconds
    return {
        "samples": total,
        "rate_hz": rate,
        "seconds": round(seconds, 2),
        "gil_busy_share": round(total / expected, 4) if expected else None,
        "share": {k: round(v / total, 4) for k, v in by_cat.most_common()} if total else {},
        "share_main_thread": {k: round(v / total, 4) for k, v in by_thread["main"].most_common()} if total else {},
        "share_other_threads": {k: round(v / total, 4) for k, v in by_thread["other"].most_common()} if total else {},
        "packages_within": {
            cat: {k: round(v / sum(c.values()), 3) for k, v in c.most_common(6)}
            for cat, c in sorted(split.items(), key=lambda kv: -sum(kv[1].values()))[:12]
        },
        "top_functions_within": {
            cat: {k: round(v / sum(c.values()), 3) for k, v in c.most_common(6)}
            for cat, c in sorted(funcs.items(), key=lambda kv: -sum(kv[1].values()))[:12]
        },
    }


class Spy:
    """``py-spy record`` attached to ``pid`` until :meth:`stop` (SIGINT makes it write)."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        return shutil.which("py-spy")

    def start(self) -> None:
        exe = self.available()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw", "--gil", "--threads",
             "--nonblocking", "--full-filenames", "--output", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self, timeout: float = 30.0) -> str:
        """Stop sampling; return the raw text ("" if py-spy wrote nothing)."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            return self.out.read_text()
        except OSError:
            return ""
