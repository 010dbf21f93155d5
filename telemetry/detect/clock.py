"""The detectors' clock: "now" in event time, robust to stragglers, outliers and silence.

Pure: wall time is an argument, nothing here reads a clock.

Each input source (a ``(topic, partition)``) has its own watermark, the largest event time
accepted from it. The clock is the *smallest* watermark among the request partitions (the
``primary_topics``: the requests topic and the OTLP traces topic) that delivered something within the last ``idle_ms`` of wall time: a
partition that is far behind holds the clock back until it catches up or goes quiet, and one
partition carrying a clock error cannot pull the others forward. Verdict partitions carry
judging times and are paused while they run ahead of a backlog of requests, so they set the
clock only when no request partition is active, and then never past the newest request seen.
The clock never goes back. It is also never ahead of wall time plus
``max_skew_ms``: events beyond that are refused at ingest (``ts_in_future``), and a clock
restored from a saved state that is ahead is pulled back (:meth:`EventClock.repair`).

When no source delivered anything for ``idle_ms`` of wall time, the clock advances with wall
time from where traffic left it: alerts resolve on a silent deployment, and a route that goes
silent is seen to be silent. A historical replay (event times far behind wall time) keeps its
own time while it flows; only the idle gaps add wall time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from dataclasses import dataclass, field

Source = tuple[str, int]


@dataclass(slots=True)
class EventClock:
    """See the module docstring. ``now_ms`` is the clock's current reading (0 = no event yet)."""

    max_skew_ms: int
    idle_ms: int
    primary_topics: frozenset[str] = frozenset()
    now_ms: int = 0
    watermarks: dict[Source, int] = field(default_factory=dict)
    last_seen_wall_ms: dict[Source, int] = field(default_factory=dict)
    last_event_wall_ms: int = 0
    idle_since_now_ms: int = 0

    def observe(self, event_times: Mapping[Source, int], wall_ms: int) -> None:
        """Sources delivered events up to these event times at wall time ``wall_ms``."""
        if not event_times:
            return
        for source, ts in event_times.items():
            if ts > self.watermarks.get(source, -1):
                self.watermarks[source] = ts
            self.last_seen_wall_ms[source] = wall_ms
        self.last_event_wall_ms = wall_ms
        active = [s for s, seen in self.last_seen_wall_ms.items() if wall_ms - seen < self.idle_ms]
        primary = [self.watermarks[s] for s in active if s[0] in self.primary_topics]
        if primary:
            candidate = min(primary)
        else:
            candidate = min(self.watermarks[s] for s in active)
            # Verdicts are judged up to hours after their requests: once the requests went quiet
            # (a backfill's requests all read, its verdicts still flowing), they must not carry
            # the clock past the requests seen, or every route looks silent. Idle time advances it.
            seen = [ts for s, ts in self.watermarks.items() if s[0] in self.primary_topics]
            if seen:
                candidate = min(candidate, max(seen))
        self._advance_to(candidate, wall_ms)
        self.idle_since_now_ms = self.now_ms

    def tick(self, wall_ms: int) -> int:
        """The clock at wall time ``wall_ms``; advances with wall time once every source is idle."""
        if self.now_ms and self.last_event_wall_ms and wall_ms - self.last_event_wall_ms >= self.idle_ms:
            self._advance_to(self.idle_since_now_ms + (wall_ms - self.last_event_wall_ms), wall_ms)
        return self.now_ms

    def resume(self, now_ms: int, wall_ms: int) -> None:
        """After a start: read at least ``now_ms`` (the detectors' saved time); the idle period
        counts from ``wall_ms``, so a silent deployment's clock moves on after it."""
        self.now_ms = max(self.now_ms, now_ms)
        self.idle_since_now_ms = self.now_ms
        self.last_event_wall_ms = wall_ms

    def forget_idle_sources(self, wall_ms: int, older_than_ms: int) -> None:
        """Drop sources silent for ``older_than_ms`` of wall time (revoked partitions)."""
        for source in [s for s, seen in self.last_seen_wall_ms.items() if wall_ms - seen >= older_than_ms]:
            del self.last_seen_wall_ms[source]
            self.watermarks.pop(source, None)

    def repair(self, wall_ms: int) -> bool:
        """Pull a clock that is ahead of ``wall_ms`` + skew back to ``wall_ms``; True if it was."""
        bad = self.now_ms > wall_ms + self.max_skew_ms
        if bad:
            self.now_ms = wall_ms
        for source, ts in list(self.watermarks.items()):
            if ts > wall_ms + self.max_skew_ms:
                self.watermarks[source] = wall_ms
                bad = True
        self.idle_since_now_ms = min(self.idle_since_now_ms, self.now_ms)
        return bad

    def _advance_to(self, candidate: int, wall_ms: int) -> None:
        bounded = min(candidate, wall_ms + self.max_skew_ms)
        if bounded > self.now_ms:
            self.now_ms = bounded

    # --- persistence ------------------------------------------------------------------------
    def to_state(self) -> dict[str, object]:
        return {
            "now_ms": self.now_ms,
            "watermarks": [[t, p, ts] for (t, p), ts in self.watermarks.items()],
        }

    def restore(self, state: Mapping[str, object]) -> None:
        """Take the reading and watermarks of :meth:`to_state` (sources start as not recently seen)."""
        self.now_ms = int(state.get("now_ms", 0))  # type: ignore[call-overload]
        raw = state.get("watermarks", [])
        rows: list[list[Any]] = list(raw) if isinstance(raw, list) else []
        self.watermarks = {(str(t), int(p)): int(ts) for t, p, ts in rows}
        self.idle_since_now_ms = self.now_ms
