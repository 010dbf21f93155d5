"""A dependency-free text progress bar for stderr: ``progress(done, total)`` callables."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressFn = Callable[[int, int], None]


class TextProgress:
    """``[##########----------]  50.0%  65,000/130,000  12,345 ev/s`` on one rewritten line.

    On a terminal the line is redrawn at most every ``min_interval`` seconds; elsewhere (a log
    file, CI) a plain line is written at most every ``log_interval`` seconds. ``total`` 0 means
    unknown. Call :meth:`close` at the end to draw the final state and end the line.
    """

    def __init__(
        self,
        label: str = "",
        *,
        stream: TextIO | None = None,
        width: int = 30,
        min_interval: float = 0.1,
        log_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.clock = clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = min_interval if self.tty else log_interval
        self.started = clock()
        self._last_draw = float("-inf")
        self._done = 0
        self._total = 0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        self._done, self._total = done, total
        now = self.clock()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    def render(self, done: int, total: int, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        prefix = f"{self.label} " if self.label else ""
        if total > 0:
            frac = min(1.0, done / total)
            filled = int(round(frac * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            return f"{prefix}[{bar}] {frac * 100:5.1f}%  {done:,}/{total:,}  {rate:,.0f} ev/s  {elapsed:,.0f}s"
        return f"{prefix}{done:,} events  {rate:,.0f} ev/s  {elapsed:,.0f}s"

    def _draw(self, now: float) -> None:
        line = self.render(self._done, self._total, now - self.started)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        self._draw(self.clock())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
