"""Interval statistics the reports decide on. Pure functions, stdlib only.

- :func:`wilson` (re-exported from :mod:`telemetry.detect.stats`): Wilson score interval of one
  proportion, ``(p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``.
- :func:`diff_interval`: 95% interval of the difference of two independent proportions
  ``p1 - p2`` by Newcombe's hybrid score method (his method 10, 1998): it combines the two Wilson
  intervals, stays inside [-1, 1] and keeps its coverage near 95% at small counts and at rates near
  0 or 1, where the textbook Wald interval ``d +- z sqrt(p1 q1/n1 + p2 q2/n2)`` does not.
- :class:`Proportion`: passed / judged with its Wilson interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from telemetry.detect.stats import Z95_TWO_SIDED, wilson

__all__ = ["Z95_TWO_SIDED", "Proportion", "diff_interval", "wilson"]


def diff_interval(passed1: int, n1: int, passed2: int, n2: int, z: float = Z95_TWO_SIDED) -> tuple[float, float]:
    """Interval ``(low, high)`` of ``p1 - p2`` (Newcombe hybrid score). ``(-1.0, 1.0)`` if either n is 0.

    ``low = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)``, ``high = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)``
    with ``(l, u)`` each proportion's Wilson interval at the same ``z``.
    """
    if n1 <= 0 or n2 <= 0:
        return -1.0, 1.0
    p1, p2 = passed1 / n1, passed2 / n2
    l1, u1 = wilson(passed1, n1, z)
    l2, u2 = wilson(passed2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True, slots=True)
class Proportion:
    """``passed`` out of ``judged`` verdicts, with the Wilson 95% interval."""

    passed: int
    judged: int

    @property
    def rate(self) -> float | None:
        """``passed / judged``; None (never 0) with no verdicts."""
        return self.passed / self.judged if self.judged > 0 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.passed, self.judged) if self.judged > 0 else None

    @property
    def low(self) -> float | None:
        iv = self.interval
        return iv[0] if iv else None

    @property
    def high(self) -> float | None:
        iv = self.interval
        return iv[1] if iv else None

    def minus(self, other: Proportion) -> tuple[float, float]:
        """95% interval of ``self.rate - other.rate`` (:func:`diff_interval`)."""
        return diff_interval(self.passed, self.judged, other.passed, other.judged)
