"""``telemetry report canary``: a canary arm against its control, with a PASS / FAIL / INCONCLUSIVE verdict.

Arms are values of ``requests.experiment`` on the route (the empty value is shown as ``(none)``).
Default arms (:func:`pick_arms`): the arms named ``control`` and ``canary`` if both have traffic,
else the two arms with the most requests (named arms before ``(none)``), the busier one being the
control. Per arm over the window: requests, error rate, online pass rate with its Wilson 95%
interval, cost per request (priced requests), cost per correct answer, p95 latency of ``ok``
requests (exact quantile).

Verdict (:func:`canary_verdict`), with ``[low, high]`` the 95% interval (Newcombe) of
``pass_rate(canary) - pass_rate(control)``:

- **FAIL** when ``high < -max_pass_drop``: the canary is significantly worse by more than the
  allowed drop.
- **PASS** when ``low >= -max_pass_drop`` (a drop larger than allowed is ruled out) **and**
  ``p95(canary) / p95(control) <= max_p95_ratio`` **and** ``cost_per_request(canary) /
  cost_per_request(control) <= max_cost_ratio``.
- **INCONCLUSIVE** otherwise: too few verdicts to rule the drop in or out, or a latency or cost
  ratio above its bound or unknown (the reasons say which). Latency and cost breaches are
  reported, not failed: they are point estimates, and the pass/fail call is the quality test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from telemetry.reports.common import ModelStats, ratio, require_route
from telemetry.reports.output import Report, Section
from telemetry.reports.query import (
    Query,
    ReportError,
    Window,
    check_database,
    load_window,
    rows_of,
    sql_string,
)
from telemetry.reports.stats import Proportion

__all__ = ["NO_ARM", "Canary", "CanaryVerdict", "Criteria", "canary", "canary_verdict", "pick_arms"]

NO_ARM = "(none)"


@dataclass(frozen=True, slots=True)
class Criteria:
    max_pass_drop: float = 0.02
    max_p95_ratio: float = 1.2
    max_cost_ratio: float = 1.5


@dataclass(frozen=True, slots=True)
class CanaryVerdict:
    status: str  # PASS | FAIL | INCONCLUSIVE
    pass_diff: tuple[float, float]
    p95_ratio: float | None
    cost_ratio: float | None
    reasons: list[str]


def canary_verdict(control: ModelStats, canary: ModelStats, criteria: Criteria = Criteria()) -> CanaryVerdict:
    """The canary's verdict against the control under ``criteria`` (see the module docstring). Pure."""
    low, high = canary.quality.minus(control.quality)
    p95 = ratio(canary.p95_latency_ms, control.p95_latency_ms)
    cost = ratio(canary.cost_per_request, control.cost_per_request)
    drop = criteria.max_pass_drop
    iv = f"[{100 * low:+.1f}, {100 * high:+.1f}] points"
    if high < -drop:
        return CanaryVerdict("FAIL", (low, high), p95, cost,
                             [f"quality: canary - control pass rate {iv}, entirely below -{100 * drop:g} points"])  # fmt: skip
    reasons = []
    if low < -drop:
        reasons.append(f"quality: canary - control pass rate {iv} does not rule out a drop over {100 * drop:g} points "
                       f"({canary.quality.judged} and {control.quality.judged} verdicts)")  # fmt: skip
    if p95 is None:
        reasons.append("latency: p95 unknown for an arm")
    elif p95 > criteria.max_p95_ratio:
        reasons.append(f"latency: p95 ratio {p95:.2f} > {criteria.max_p95_ratio:g}")
    if cost is None:
        reasons.append("cost: cost per request unknown (unpriced) for an arm")
    elif cost > criteria.max_cost_ratio:
        reasons.append(f"cost: cost per request ratio {cost:.2f} > {criteria.max_cost_ratio:g}")
    if reasons:
        return CanaryVerdict("INCONCLUSIVE", (low, high), p95, cost, reasons)
    return CanaryVerdict("PASS", (low, high), p95, cost,
                         [(f"quality: canary - control pass rate {iv}, a drop over {100 * drop:g} points ruled out; "
                           f"p95 ratio {p95:.2f}, cost ratio {cost:.2f} within bounds")])  # fmt: skip


def pick_arms(requests: Mapping[str, int], control: str | None = None, canary: str | None = None) -> tuple[str, str]:
    """``(control, canary)`` among the arms with traffic (``requests``: arm -> count). Pure.

    Raises ReportError for a named arm without traffic or when fewer than two arms exist."""
    arms = {a: n for a, n in requests.items() if n > 0}
    for given in (control, canary):
        if given is not None and given not in arms:
            raise ReportError(f"arm {given!r} has no requests; arms: {_describe(arms)}")
    if control is not None and canary is not None:
        if control == canary:
            raise ReportError("--control and --canary must differ")
        return control, canary
    if control is None and canary is None and "control" in arms and "canary" in arms:
        return "control", "canary"
    ranked = sorted(arms, key=lambda a: (a == NO_ARM, -arms[a], a))
    if control is not None or canary is not None:
        given = control if control is not None else canary
        other = next((a for a in ranked if a != given), None)
        if other is None:
            raise ReportError(f"only one arm ({given!r}) has traffic")
        return (given, other) if control is not None else (other, given)  # type: ignore[return-value]
    if len(ranked) < 2:
        raise ReportError(f"need two experiment arms on the route; arms: {_describe(arms)}")
    a, b = ranked[0], ranked[1]
    if b == "control" or a == "canary" or (arms[b] > arms[a] and a != "control"):
        a, b = b, a
    return a, b


def _describe(arms: Mapping[str, int]) -> str:
    return ", ".join(f"{a} ({n})" for a, n in sorted(arms.items(), key=lambda kv: -kv[1])) or "none"


@dataclass(frozen=True, slots=True)
class Canary:
    route: str
    window: Window
    criteria: Criteria
    control: ModelStats
    canary: ModelStats
    models: dict[str, str]
    verdict: CanaryVerdict

    def to_report(self) -> Report:
        arms = Section("arms", ["arm", "role", "models", "requests", "error_rate", "judged", "pass_rate", "low95", "high95",
                                "cost_per_request", "cost_per_correct", "p95_latency_ms"],
                       [[a.name, role, self.models.get(a.name, ""), a.requests, a.error_rate, a.quality.judged,
                         a.quality.rate, a.quality.low, a.quality.high, a.cost_per_request, a.cost_per_correct,
                         a.p95_latency_ms] for a, role in ((self.control, "control"), (self.canary, "canary"))])  # fmt: skip
        v, c = self.verdict, self.criteria
        low, high = v.pass_diff
        checks = Section("criteria", ["criterion", "observed", "limit", "ok"], [
            ["pass_diff_low95", low, -c.max_pass_drop, low >= -c.max_pass_drop],
            ["pass_diff_high95", high, -c.max_pass_drop, high >= -c.max_pass_drop],
            ["p95_ratio", v.p95_ratio, c.max_p95_ratio, v.p95_ratio is not None and v.p95_ratio <= c.max_p95_ratio],
            ["cost_ratio", v.cost_ratio, c.max_cost_ratio, v.cost_ratio is not None and v.cost_ratio <= c.max_cost_ratio],
        ])  # fmt: skip
        title = (f"canary: route {self.route}, arm {self.canary.name} against control arm {self.control.name}: {v.status}\n"
                 f"window {self.window.describe()}")  # fmt: skip
        return Report("canary", title, [arms, checks], v.reasons)


def canary(query: Query, database: str, *, route: str, control: str | None = None, canary_arm: str | None = None,
           days: float = 7.0, criteria: Criteria = Criteria()) -> Canary:  # fmt: skip
    """Compare two experiment arms of ``route`` over the window. Blocks."""
    db = check_database(database)
    window = load_window(query, db, days)
    require_route(query, db, route, window)
    r = sql_string(route)
    arm_sql = f"if(experiment = '', '{NO_ARM}', toString(experiment))"
    reqs = {
        str(row["arm"]): row
        for row in rows_of(query(
            f"SELECT {arm_sql} AS arm, count() AS requests, countIf(cost_usd IS NOT NULL) AS priced, "
            f"sum(ifNull(cost_usd, 0)) AS cost, countIf(status = 'error') AS errors, "
            f"quantileExactIf(0.95)(latency_ms, status = 'ok') AS p95, "
            f"arrayStringConcat(arraySort(groupUniqArray(toString(served_model))), ' ') AS models "
            f"FROM {db}.requests WHERE route = {r} AND {window.between('ts')} GROUP BY arm"
        ))
    }  # fmt: skip
    a_control, a_canary = pick_arms({a: int(row["requests"]) for a, row in reqs.items()}, control, canary_arm)
    quality = {
        str(row["arm"]): Proportion(int(row["n_passed"]), int(row["judged"]))
        for row in rows_of(query(
            f"SELECT {arm_sql} AS arm, count() AS judged, countIf(v.passed = 1) AS n_passed "
            f"FROM {db}.verdicts AS v INNER JOIN "
            f"(SELECT request_id, experiment FROM {db}.requests WHERE route = {r} AND {window.between('ts')}) AS q "
            f"ON v.request_id = q.request_id "
            f"WHERE v.route = {r} AND v.kind = 'online' AND {window.between('v.request_ts')} GROUP BY arm"
        ))
    }  # fmt: skip

    def stats(arm: str) -> ModelStats:
        row = reqs[arm]
        return ModelStats(arm, int(row["requests"]), int(row["priced"]), float(row["cost"] or 0.0),
                          quality.get(arm, Proportion(0, 0)), int(row["errors"]), row["p95"])  # fmt: skip

    ctl, can = stats(a_control), stats(a_canary)
    models = {a: str(row["models"]) for a, row in reqs.items()}
    return Canary(route, window, criteria, ctl, can, models, canary_verdict(ctl, can, criteria))
