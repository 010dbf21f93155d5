"""``telemetry report prompt-history``: each prompt version of a route, its quality and cost.

Per ``prompt_version`` of the route in the window (requests without one are ``(none)``): when it
was first and last served, its requests and served models, its online pass rate by the route's
busiest judge (one evaluator version, never mixed) with the Wilson 95% interval, its cost per
request and cost per correct answer, and the change of each against the version before it.
A quality or cost change that came with a new prompt version shows here, version by version
(the QualityRegression and CostSpike alerts name such a version in their evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from telemetry.reports.common import require_route
from telemetry.reports.output import Report, Section
from telemetry.reports.query import (
    Query,
    Window,
    check_database,
    load_window,
    rows_of,
    sql_string,
)
from telemetry.reports.stats import Proportion

__all__ = ["PromptHistory", "PromptVersionStats", "prompt_history"]

NONE = "(none)"


@dataclass(frozen=True, slots=True)
class PromptVersionStats:
    version: str
    first_ms: int
    last_ms: int
    requests: int
    priced_requests: int
    cost_usd: float
    models: str
    quality: Proportion

    @property
    def cost_per_request(self) -> float | None:
        return self.cost_usd / self.priced_requests if self.priced_requests else None

    @property
    def cost_per_correct(self) -> float | None:
        cpr, rate = self.cost_per_request, self.quality.rate
        return cpr / rate if cpr is not None and rate else None


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class PromptHistory:
    route: str
    window: Window
    evaluator: str
    versions: list[PromptVersionStats]

    def to_report(self) -> Report:
        rows: list[list[object]] = []
        worse: list[str] = []
        previous: PromptVersionStats | None = None
        for v in self.versions:
            delta = v.quality.minus(previous.quality) if previous and v.quality.judged and previous.quality.judged else None
            cpc_change = (v.cost_per_correct / previous.cost_per_correct
                          if previous and v.cost_per_correct and previous.cost_per_correct else None)  # fmt: skip
            rows.append([v.version, _day(v.first_ms), _day(v.last_ms), v.requests, v.models, v.quality.judged,
                         v.quality.rate, v.quality.low, v.quality.high, v.cost_per_request, v.cost_per_correct,
                         delta[0] if delta else None, delta[1] if delta else None, cpc_change])  # fmt: skip
            if delta is not None and delta[1] < 0:
                worse.append(v.version)
            previous = v
        table = Section("versions", [
            "prompt_version", "first_seen", "last_seen", "requests", "served_models", "judged", "pass_rate", "low95",
            "high95", "cost_per_request", "cost_per_correct", "pass_diff_low95", "pass_diff_high95", "cpc_ratio_to_previous",
        ], rows)  # fmt: skip
        notes = [(f"pass rates by {self.evaluator or 'no online judge'}; differences are against the version above "
                  "(Newcombe 95% interval: entirely below 0 means the version is significantly worse)")]  # fmt: skip
        if worse:
            notes.append(f"significantly worse than the version before: {', '.join(worse)}")
        title = f"prompt-history: route {self.route}, {len(self.versions)} version(s)\nwindow {self.window.describe()}"
        return Report("prompt-history", title, [table], notes)


def prompt_history(query: Query, database: str, *, route: str, days: float = 30.0) -> PromptHistory:
    """The route's prompt versions over the window, oldest first. Blocks."""
    db = check_database(database)
    window = load_window(query, db, days)
    require_route(query, db, route, window)
    r = sql_string(route)
    judge_rows = rows_of(query(
        f"SELECT evaluator, count() AS n FROM {db}.verdicts WHERE route = {r} AND kind = 'online' "
        f"AND {window.between('request_ts')} GROUP BY evaluator ORDER BY n DESC, evaluator DESC LIMIT 1"
    ))  # fmt: skip
    judge = str(judge_rows[0]["evaluator"]) if judge_rows else ""
    reqs = rows_of(query(
        f"SELECT if(prompt_version = '', {sql_string(NONE)}, prompt_version) AS v, "
        f"toUnixTimestamp64Milli(min(ts)) AS first_ms, toUnixTimestamp64Milli(max(ts)) AS last_ms, count() AS n, "
        f"countIf(cost_usd IS NOT NULL) AS priced, sum(ifNull(cost_usd, 0)) AS cost, "
        f"arrayStringConcat(arraySort(groupUniqArray(8)(served_model)), ', ') AS models "
        f"FROM {db}.requests WHERE route = {r} AND {window.between('ts')} GROUP BY v ORDER BY first_ms"
    ))  # fmt: skip
    quality = {
        str(row["v"]): Proportion(int(row["passed"]), int(row["judged"]))
        for row in rows_of(query(
            f"SELECT if(q.prompt_version = '', {sql_string(NONE)}, q.prompt_version) AS v, count() AS judged, "
            f"countIf(x.passed = 1) AS passed FROM {db}.verdicts AS x "
            f"INNER JOIN (SELECT request_id, prompt_version FROM {db}.requests WHERE route = {r} "
            f"AND {window.between('ts')}) AS q ON q.request_id = x.request_id "
            f"WHERE x.route = {r} AND x.kind = 'online' AND x.evaluator = {sql_string(judge)} GROUP BY v"
        ))
    } if judge else {}  # fmt: skip
    versions = [
        PromptVersionStats(str(row["v"]), int(row["first_ms"]), int(row["last_ms"]), int(row["n"]), int(row["priced"]),
                           float(row["cost"] or 0.0), str(row["models"]), quality.get(str(row["v"]), Proportion(0, 0)))
        for row in reqs
    ]  # fmt: skip
    return PromptHistory(route, window, judge, versions)
