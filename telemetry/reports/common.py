"""Per-route, per-served-model statistics shared by the reports, and small formatting helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetry.reports.query import (
    Query,
    ReportError,
    Window,
    check_database,
    rows_of,
    sql_string,
)
from telemetry.reports.stats import Proportion

__all__ = ["ModelStats", "current_model", "model_stats", "pct", "ratio", "recent", "require_route", "usd"]


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``; None (never 0 or inf) when either is unknown or ``den`` is 0."""
    if num is None or den is None or den == 0:
        return None
    return num / den


@dataclass(frozen=True, slots=True)
class ModelStats:
    """One served model (or experiment arm) of a route over a window. Costs cover priced requests."""

    name: str
    requests: int
    priced_requests: int
    cost_usd: float
    quality: Proportion = field(default_factory=lambda: Proportion(0, 0))
    errors: int = 0
    p95_latency_ms: float | None = None

    @property
    def cost_per_request(self) -> float | None:
        """``cost / priced requests``; None when no request was priced."""
        return ratio(self.cost_usd, self.priced_requests) if self.priced_requests else None

    @property
    def cost_per_correct(self) -> float | None:
        """``cost_per_request / pass_rate``; None with no pass or no price."""
        return ratio(self.cost_per_request, self.quality.rate) if self.quality.passed else None

    @property
    def error_rate(self) -> float | None:
        return ratio(self.errors, self.requests)


def model_stats(query: Query, database: str, route: str, window: Window) -> list[ModelStats]:
    """The route's served models in the window, most requests first (online verdicts for quality)."""
    db = check_database(database)
    r = sql_string(route)
    reqs = rows_of(query(
        f"SELECT served_model AS sm, count() AS requests, countIf(cost_usd IS NOT NULL) AS priced, "
        f"sum(ifNull(cost_usd, 0)) AS cost, countIf(status = 'error') AS errors, "
        f"quantileExact(0.95)(latency_ms) AS p95 "
        f"FROM {db}.requests WHERE route = {r} AND {window.between('ts')} GROUP BY sm"
    ))  # fmt: skip
    verdicts = {
        row["sm"]: Proportion(int(row["n_passed"]), int(row["judged"]))
        for row in rows_of(query(
            f"SELECT served_model AS sm, count() AS judged, countIf(passed = 1) AS n_passed "
            f"FROM {db}.verdicts WHERE route = {r} AND kind = 'online' AND {window.between('request_ts')} "
            f"GROUP BY sm"
        ))
    }  # fmt: skip
    stats = [
        ModelStats(
            name=str(row["sm"]),
            requests=int(row["requests"]),
            priced_requests=int(row["priced"]),
            cost_usd=float(row["cost"] or 0.0),
            quality=verdicts.get(row["sm"], Proportion(0, 0)),
            errors=int(row["errors"]),
            p95_latency_ms=row["p95"],
        )
        for row in reqs
    ]
    return sorted(stats, key=lambda s: (-s.requests, s.name))


def require_route(query: Query, database: str, route: str, window: Window) -> None:
    """ReportError naming the busiest routes when ``route`` has no request in the window."""
    db = check_database(database)
    rows = rows_of(query(
        f"SELECT route, count() AS n FROM {db}.requests WHERE {window.between('ts')} GROUP BY route ORDER BY n DESC"
    ))  # fmt: skip
    if any(row["route"] == route for row in rows):
        return
    known = ", ".join(str(row["route"]) for row in rows[:20]) or "none"
    raise ReportError(f"route {route!r} has no requests in {window.describe()}; routes with traffic: {known}")


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.6f}" if abs(value) < 1 else f"${value:,.2f}"


def recent(window: Window, days: float = 1.0) -> Window:
    """The last ``days`` of ``window`` (all of it if shorter): what "current" means in the reports."""
    return Window(max(window.start_ms, window.end_ms - int(days * 86_400_000)), window.end_ms, window.days)


def current_model(query: Query, database: str, route: str, window: Window) -> str:
    """The served model with the most requests on ``route`` in the last day of ``window``."""
    stats = model_stats(query, database, route, recent(window))
    if not stats:
        raise ReportError(f"route {route!r} has no requests in the last day of {window.describe()}")
    return stats[0].name
