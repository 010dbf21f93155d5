"""``telemetry report tier-down``: routes that could go back to a cheaper model, and routes whose
cost per correct answer rose.

**Cheaper alternatives** (:func:`select_tier_down`). Per route, the *current* model is the served
model with the most requests in the last day of the window. Every other model served on the route
in the window (a canary or experiment arm, or the model before a tier-up) is a candidate when:

- both it and the current model are priced and it costs less per request;
- both have at least ``min_judged`` online verdicts;
- its pass rate is not significantly lower: the lower bound of the 95% interval of
  ``pass_rate(cheaper) - pass_rate(current)`` (Newcombe) is ``>= -tolerance``.

``monthly_saving = (cost_per_request(current) - cost_per_request(cheaper)) * route requests/s
* 30 * 86400``, the route's traffic over the window moved as a whole. Caveat: a model served
before a tier-up was judged on older traffic, prompts and retrieval.

**Cost per correct rises** (:func:`cpc_rise`). Each route's cost per correct answer
``(cost / priced requests) / (passed / judged)`` in the first and the last slice of the window
(a slice is one day, or half the window if it is shorter than two days), both with at least
``min_passed`` (20) passing verdicts; listed when ``late / early > factor`` (1.5), with the cost
per request and pass-rate parts (``log cpc = log cpr - log pass_rate``) and each slice's model mix.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from telemetry.reports.common import ModelStats, ratio
from telemetry.reports.output import Report, Section
from telemetry.reports.query import (
    DAY_MS,
    MONTH_SECONDS,
    Query,
    Window,
    check_database,
    load_window,
    rows_of,
)
from telemetry.reports.stats import Proportion

__all__ = ["CpcRise", "TierDown", "TierDownCandidate", "cpc_rise", "select_tier_down", "tier_down"]


@dataclass(frozen=True, slots=True)
class TierDownCandidate:
    route: str
    current: ModelStats
    cheaper: ModelStats
    diff_interval: tuple[float, float]
    requests_per_second: float | None

    @property
    def monthly_saving(self) -> float | None:
        a, b = self.current.cost_per_request, self.cheaper.cost_per_request
        if a is None or b is None or self.requests_per_second is None:
            return None
        return (a - b) * self.requests_per_second * MONTH_SECONDS


def select_tier_down(route: str, models: Sequence[ModelStats], current: str, requests_per_second: float | None, *,
                     tolerance: float = 0.02, min_judged: int = 100) -> list[TierDownCandidate]:  # fmt: skip
    """Cheaper models of ``route`` whose pass rate is not significantly below ``current``'s. Pure."""
    cur = next((m for m in models if m.name == current), None)
    if cur is None or cur.cost_per_request is None or cur.quality.judged < min_judged:
        return []
    found = []
    for m in models:
        cpr = m.cost_per_request
        if m.name == current or cpr is None or cpr >= cur.cost_per_request or m.quality.judged < min_judged:
            continue
        low, high = m.quality.minus(cur.quality)
        if low >= -tolerance:
            found.append(TierDownCandidate(route, cur, m, (low, high), requests_per_second))
    return sorted(found, key=lambda c: -(c.monthly_saving or 0.0))


@dataclass(frozen=True, slots=True)
class CpcRise:
    route: str
    early: ModelStats  # name: the dominant model of the slice
    late: ModelStats
    early_mix: str = ""  # "model share, ..." of the slice's requests
    late_mix: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.late.cost_per_correct, self.early.cost_per_correct)

    @property
    def cost_per_request_ratio(self) -> float | None:
        return ratio(self.late.cost_per_request, self.early.cost_per_request)


def cpc_rise(route: str, early: ModelStats, late: ModelStats, *, factor: float = 1.5, min_passed: int = 20,
             early_mix: str = "", late_mix: str = "") -> CpcRise | None:  # fmt: skip
    """A :class:`CpcRise` when the late cost per correct is over ``factor`` x the early one. Pure."""
    if early.quality.passed < min_passed or late.quality.passed < min_passed:
        return None
    rise = CpcRise(route, early, late, early_mix, late_mix)
    r = rise.ratio
    return rise if r is not None and r > factor else None


@dataclass(frozen=True, slots=True)
class TierDown:
    window: Window
    tolerance: float
    min_judged: int
    factor: float
    candidates: list[TierDownCandidate]
    rises: list[CpcRise]

    def to_report(self) -> Report:
        cand = Section("cheaper_alternatives", [
            "route", "current_model", "current_cost_per_request", "current_pass_rate", "current_judged",
            "cheaper_model", "cheaper_cost_per_request", "cheaper_pass_rate", "cheaper_judged",
            "pass_diff_low95", "pass_diff_high95", "requests_per_second", "monthly_saving_usd",
        ], [[c.route, c.current.name, c.current.cost_per_request, c.current.quality.rate, c.current.quality.judged,
             c.cheaper.name, c.cheaper.cost_per_request, c.cheaper.quality.rate, c.cheaper.quality.judged,
             c.diff_interval[0], c.diff_interval[1], c.requests_per_second, c.monthly_saving]
            for c in self.candidates])  # fmt: skip
        rises = Section("cost_per_correct_rises", [
            "route", "early_models", "late_models", "early_cost_per_correct", "late_cost_per_correct", "cpc_ratio",
            "cost_per_request_ratio", "early_pass_rate", "late_pass_rate",
        ], [[r.route, r.early_mix, r.late_mix, r.early.cost_per_correct, r.late.cost_per_correct, r.ratio,
             r.cost_per_request_ratio, r.early.quality.rate, r.late.quality.rate] for r in self.rises])  # fmt: skip
        best = sum((cs[0].monthly_saving or 0.0) for cs in _by_route(self.candidates).values())
        notes = [
            (f"cheaper alternatives: pass-rate difference lower bound >= -{self.tolerance:g}, >= {self.min_judged} "
             f"online verdicts per model; saving if each route moves to its best candidate: ${best:,.2f}/month"),
            f"cost per correct rises: last slice over first slice > {self.factor:g}x",
            ("a cheaper model served before a tier-up was judged on older traffic, prompts and retrieval: confirm "
             "with a canary (telemetry report canary) before moving the route back"),
        ]  # fmt: skip
        title = f"tier-down review\nwindow {self.window.describe()}"
        return Report("tier-down", title, [cand, rises], notes)


def _by_route(candidates: Sequence[TierDownCandidate]) -> dict[str, list[TierDownCandidate]]:
    out: dict[str, list[TierDownCandidate]] = defaultdict(list)
    for c in candidates:
        out[c.route].append(c)
    return out


def _stats(query: Query, db: str, window: Window, part: str, part_v: str) -> dict[tuple[str, str, str], ModelStats]:
    """ModelStats per (route, part, served model); ``part``/``part_v`` label each request/verdict row."""
    reqs = rows_of(query(
        f"SELECT route, {part} AS part, served_model AS sm, count() AS requests, "
        f"countIf(cost_usd IS NOT NULL) AS priced, sum(ifNull(cost_usd, 0)) AS cost "
        f"FROM {db}.requests WHERE {window.between('ts')} GROUP BY route, part, sm"
    ))  # fmt: skip
    verd = {
        (str(r["route"]), str(r["part"]), str(r["sm"])): Proportion(int(r["n_passed"]), int(r["judged"]))
        for r in rows_of(query(
            f"SELECT route, {part_v} AS part, served_model AS sm, count() AS judged, countIf(passed = 1) AS n_passed "
            f"FROM {db}.verdicts WHERE kind = 'online' AND {window.between('request_ts')} GROUP BY route, part, sm"
        ))
    }  # fmt: skip
    out = {}
    for r in reqs:
        key = (str(r["route"]), str(r["part"]), str(r["sm"]))
        out[key] = ModelStats(key[2], int(r["requests"]), int(r["priced"]), float(r["cost"] or 0.0),
                              verd.get(key, Proportion(0, 0)))  # fmt: skip
    return out


def _totals(stats: Sequence[ModelStats]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for s in stats:
        totals[s.name] += s.requests
    return totals


def _dominant(stats: Sequence[ModelStats]) -> str:
    """The model with the most requests (stats of one model may come in several parts)."""
    totals = _totals(stats)
    return max(totals, key=lambda m: (totals[m], m))


def _mix(stats: Sequence[ModelStats]) -> str:
    """``"model 71%, other 29%"``, most requests first."""
    totals = _totals(stats)
    n = sum(totals.values()) or 1
    return ", ".join(f"{m} {100 * c / n:.0f}%" for m, c in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def _pool(name: str, stats: Sequence[ModelStats]) -> ModelStats:
    return ModelStats(name, sum(s.requests for s in stats), sum(s.priced_requests for s in stats),
                      sum(s.cost_usd for s in stats),
                      Proportion(sum(s.quality.passed for s in stats), sum(s.quality.judged for s in stats)))  # fmt: skip


def tier_down(query: Query, database: str, *, days: float = 7.0, tolerance: float = 0.02, min_judged: int = 100,
              factor: float = 1.5, min_passed: int = 20) -> TierDown:  # fmt: skip
    """Cheaper-model candidates and cost-per-correct rises over every route. Blocks."""
    db = check_database(database)
    window = load_window(query, db, days)
    slice_ms = min(DAY_MS, (window.end_ms - window.start_ms) // 2)
    early_end, late_start, recent_start = window.start_ms + slice_ms, window.end_ms - slice_ms, window.end_ms - DAY_MS

    def parts(col: str) -> str:
        # "<slice>:<recent>": first / last slice of the window (or mid), and whether in the last day
        t = f"toUnixTimestamp64Milli({col})"
        return (f"concat(multiIf({t} < {early_end}, 'early', {t} >= {late_start}, 'late', 'mid'), ':', "
                f"if({t} >= {recent_start}, 'recent', 'old'))")  # fmt: skip

    stats = _stats(query, db, window, parts("ts"), parts("request_ts"))
    per_model: dict[str, dict[str, list[ModelStats]]] = defaultdict(lambda: defaultdict(list))
    per_slice: dict[str, dict[str, list[ModelStats]]] = defaultdict(lambda: defaultdict(list))
    recent_requests: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (route, part, model), s in stats.items():
        slice_name, age = part.split(":")
        per_model[route][model].append(s)
        per_slice[route][slice_name].append(s)
        if age == "recent":
            recent_requests[route][model] += s.requests
    candidates: list[TierDownCandidate] = []
    rises: list[CpcRise] = []
    for route in sorted(per_model):
        models = [_pool(m, ss) for m, ss in per_model[route].items()]
        counts = recent_requests[route] or {m.name: m.requests for m in models}
        current = max(counts, key=lambda m: (counts[m], m))
        route_requests = sum(m.requests for m in models)
        candidates += select_tier_down(route, models, current, window.rate(route_requests),
                                       tolerance=tolerance, min_judged=min_judged)  # fmt: skip
        early, late = per_slice[route].get("early", []), per_slice[route].get("late", [])
        if early and late:
            rise = cpc_rise(route, _pool(_dominant(early), early), _pool(_dominant(late), late), factor=factor,
                            min_passed=min_passed, early_mix=_mix(early), late_mix=_mix(late))  # fmt: skip
            if rise is not None:
                rises.append(rise)
    candidates.sort(key=lambda c: -(c.monthly_saving or 0.0))
    rises.sort(key=lambda r: -(r.ratio or 0.0))
    return TierDown(window, tolerance, min_judged, factor, candidates, rises)
