"""What a detector reports: one condition that holds now, before labels and lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

EvidenceValue = float | int | str | None
Evidence = dict[str, EvidenceValue]


@dataclass(frozen=True, slots=True)
class Condition:
    """A breached condition at this evaluation.

    ``model`` is the served model, or ``""`` for a route-wide condition. ``team`` overrides the
    route's owner team (team budget alerts). ``summary`` is one line of at most 200 characters
    naming the route, the model and the numbers; ``evidence`` holds the numbers the decision
    rests on. ``decided_at_ms`` is the event time of the deciding event.
    """

    alertname: str
    route: str
    model: str
    summary: str
    description: str
    evidence: Evidence
    decided_at_ms: int
    team: str | None = None
    severity: str | None = None
    """Overrides the alert's configured severity (e.g. a gated tier-up is ``info``)."""


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pct(x: float | None, digits: int = 1) -> str:
    """``0.912`` -> ``"91.2%"``; None -> ``"n/a"``."""
    return "n/a" if x is None else f"{100.0 * x:.{digits}f}%"


def usd(x: float | None) -> str:
    """Dollar amount with sensible precision; None -> ``"n/a"``."""
    if x is None:
        return "n/a"
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    return f"${x:.4g}"


def rounded(x: float | None, sig: int = 6) -> float | None:
    """``x`` rounded to ``sig`` significant digits for readable evidence (None stays None)."""
    if x is None:
        return None
    if x == 0 or x != x or x in (float("inf"), float("-inf")):
        return x
    return float(f"{x:.{sig}g}")
