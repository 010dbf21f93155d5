"""Replay a JSONL capture of real events to Kafka (``telemetry replay FILE``).

Each non-blank line is one JSON object, in one of two forms:

- an envelope ``{"topic": "requests" | "verdicts", "key": "...", "value": {...}, "ts": ...}``:
  ``topic`` may also be a full topic name ending in ``requests`` / ``verdicts`` (e.g.
  ``llm.requests``), which is mapped to the configured topic; ``value`` is the event object, or
  a string published byte for byte (to replay raw or broken payloads); ``key`` is optional
  (default: the event's ``request_id``; ``null`` = no key); ``ts`` is the original publish
  time, epoch milliseconds or RFC 3339, optional (default: the event's own ``ts``);
- a bare event object, published as written: a *request* if it has ``route`` and ``model``
  (or ``gen_ai.request.model``), a *verdict* if it has ``evaluator``, ``gen_ai.evaluation.name``
  or is a ``gen_ai.evaluation.result`` event. Its pacing time is its own ``ts``.

Pacing: ``pace="original"`` keeps the gaps between consecutive pacing times, divided by
``scale`` (2.0 = twice as fast); a time earlier than one already seen does not wait; a line
without a time is published right after the previous one. ``pace="fast"`` does not wait.
Unreadable lines are skipped and reported with their line numbers. ``.gz`` files are read
compressed.
"""

from __future__ import annotations

import gzip
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from telemetry.contracts._time import to_epoch_ms
from telemetry.settings import Settings
from telemetry.simulate.generator import SimEvent, TopicKind
from telemetry.simulate.progress import ProgressFn, TextProgress
from telemetry.simulate.publisher import PublishSummary, ensure_topics, publish

__all__ = ["ReplayLine", "ReplaySummary", "SkippedLine", "parse_line", "read_events", "replay"]

MAX_SKIPPED_KEPT = 1000


@dataclass(frozen=True, slots=True)
class ReplayLine:
    """One readable line: where to publish it, its key and bytes, and its pacing time (if any)."""

    topic_kind: TopicKind
    key: bytes | None
    value: bytes
    ts_ms: int | None


@dataclass(frozen=True, slots=True)
class SkippedLine:
    line_no: int
    reason: str


@dataclass
class ReplaySummary:
    """What ``replay`` did."""

    path: str
    lines_read: int = 0
    blank_lines: int = 0
    published: Counter[str] = field(default_factory=Counter)
    topics: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    skipped_lines: list[SkippedLine] = field(default_factory=list)  # the first 1000
    duration_s: float = 0.0
    interrupted: bool = False
    pace: str = "original"
    scale: float = 1.0

    @property
    def total_published(self) -> int:
        return sum(self.published.values())

    @property
    def events_per_s(self) -> float:
        return self.total_published / self.duration_s if self.duration_s > 0 else 0.0

    def format(self) -> str:
        pace = f"original pace x{self.scale:g}" if self.pace == "original" else "as fast as possible"
        lines = [
            ("interrupted: " if self.interrupted else "")
            + f"replayed {self.path}: {self.lines_read:,} lines read, {self.total_published:,} published "
            f"in {self.duration_s:,.1f}s ({self.events_per_s:,.0f} ev/s, {pace})"
        ]
        for kind, n in sorted(self.published.items()):
            lines.append(f"  {self.topics.get(kind, kind)}: {n:,}")
        if self.skipped:
            lines.append(f"  skipped {self.skipped:,} unreadable lines:")
            for s in self.skipped_lines[:20]:
                lines.append(f"    line {s.line_no}: {s.reason}")
            if self.skipped > 20:
                lines.append(f"    ... and {self.skipped - 20:,} more")
        return "\n".join(lines)


def _topic_kind(topic: object) -> TopicKind | None:
    if not isinstance(topic, str):
        return None
    name = topic.strip().lower()
    if name.endswith("requests"):
        return "requests"
    if name.endswith("verdicts"):
        return "verdicts"
    return None


def _classify(event: dict[str, Any]) -> TopicKind | None:
    if "route" in event and ("model" in event or "gen_ai.request.model" in event):
        return "requests"
    if "evaluator" in event or "gen_ai.evaluation.name" in event or event.get("name") == "gen_ai.evaluation.result":
        return "verdicts"
    return None


def _event_key(event: dict[str, Any]) -> bytes | None:
    attributes = event.get("attributes")
    for source in (event, attributes if isinstance(attributes, dict) else {}):
        for name in ("request_id", "gen_ai.response.id"):
            value = source.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value).encode()
    return None


def _event_ts(event: dict[str, Any]) -> int | None:
    if "ts" not in event:
        return None
    try:
        return to_epoch_ms(event["ts"])
    except ValueError:
        return None


def parse_line(raw: bytes) -> ReplayLine:
    """Parse one non-blank JSONL line. Raises ValueError with the reason it cannot be replayed."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object ({type(obj).__name__})")
    if "topic" in obj and "value" in obj:
        kind = _topic_kind(obj["topic"])
        if kind is None:
            raise ValueError(f"unknown topic {str(obj['topic'])[:60]!r} (requests or verdicts)")
        value = obj["value"]
        if isinstance(value, dict):
            payload = orjson.dumps(value)
            event: dict[str, Any] = value
        elif isinstance(value, str):
            payload = value.encode()
            event = {}
        else:
            raise ValueError("value must be a JSON object or a string")
        key: bytes | None
        if "key" in obj:
            key_value = obj["key"]
            if key_value is None:
                key = None
            elif isinstance(key_value, str | int) and not isinstance(key_value, bool):
                key = str(key_value).encode()
            else:
                raise ValueError("key must be a string or null")
        else:
            key = _event_key(event)
        ts: int | None
        if obj.get("ts") is not None:
            try:
                ts = to_epoch_ms(obj["ts"])
            except ValueError as exc:
                raise ValueError(f"bad ts: {exc}") from None
        else:
            ts = _event_ts(event)
        return ReplayLine(kind, key, payload, ts)
    kind = _classify(obj)
    if kind is None:
        raise ValueError("neither a request (route + model) nor a verdict (evaluator), nor an envelope")
    return ReplayLine(kind, _event_key(obj), raw.strip(), _event_ts(obj))


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def count_lines(path: Path) -> int:
    """Lines of the file (for the progress bar)."""
    n, last = 0, b"\n"
    with _open(path) as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (0 if last == b"\n" else 1)


def read_events(path: Path, summary: ReplaySummary) -> Iterator[SimEvent]:
    """Stream a capture as SimEvents whose ``publish_at_sim_ms`` is the running maximum of the
    lines' pacing times; unreadable lines are counted in ``summary``."""
    clock_ms = 0
    with _open(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            summary.lines_read += 1
            if not raw.strip():
                summary.blank_lines += 1
                continue
            try:
                line = parse_line(raw)
            except ValueError as exc:
                summary.skipped += 1
                if len(summary.skipped_lines) < MAX_SKIPPED_KEPT:
                    summary.skipped_lines.append(SkippedLine(line_no, str(exc)[:200]))
                continue
            if line.ts_ms is not None and line.ts_ms > clock_ms:
                clock_ms = line.ts_ms
            yield SimEvent(clock_ms, line.topic_kind, line.key, line.value)


async def replay(
    path: str | Path,
    settings: Settings,
    *,
    pace: Literal["original", "fast"] = "original",
    scale: float = 1.0,
    progress: ProgressFn | bool | None = True,
    create_topics: bool = True,
    raise_on_cancel: bool = False,
) -> ReplaySummary:
    """Publish a JSONL capture to ``settings.requests_topic`` / ``verdicts_topic``.

    ``pace="original"`` waits the original gaps divided by ``scale``; ``"fast"`` does not wait.
    ``progress``: True = a text bar on stderr (lines), or your own ``(done, total)`` callable.
    Ctrl-C flushes and returns the summary so far with ``interrupted`` set.
    """
    if pace not in ("original", "fast"):
        raise ValueError("pace is 'original' or 'fast'")
    if not scale > 0:
        raise ValueError("scale must be > 0")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such capture file: {file}")
    summary = ReplaySummary(path=str(file), pace=pace, scale=scale)
    total = count_lines(file)
    if create_topics:
        await ensure_topics(settings, [settings.requests_topic, settings.verdicts_topic])
    bar: TextProgress | None = None
    user_fn: ProgressFn | None
    if progress is True:
        bar = TextProgress(f"replay {file.name}")
        user_fn = bar
    else:
        user_fn = progress or None
    progress_fn: ProgressFn | None = None
    if user_fn is not None:
        report = user_fn

        def progress_fn(done: int, total_lines: int) -> None:  # progress in lines read
            report(summary.lines_read, total_lines)

    started = time.monotonic()
    try:
        published: PublishSummary = await publish(
            read_events(file, summary),
            settings,
            speed=scale if pace == "original" else None,
            progress=progress_fn,
            total=total,
            raise_on_cancel=raise_on_cancel,
        )
    finally:
        if bar is not None:
            bar.close()
    summary.published = published.published
    summary.topics = published.topics
    summary.interrupted = published.interrupted
    summary.duration_s = time.monotonic() - started
    return summary
