"""``telemetry report diagnostics``: the closed-book / gold-context gate before any tier-up.

Pass rates per evaluator (name incl. version) and kind over the window, from ``verdicts``, with
Wilson 95% intervals, for one route and one served model (default: the current one, the model
with most requests in the last day). The reading (:func:`read_gate`) uses, per kind, the
evaluator with the most verdicts (judge versions are never mixed) and classifies each kind
against ``target``:

- ``missing``: no verdicts; ``unclear``: fewer than ``min_judged`` verdicts, or a rate below
  the target whose 95% interval still reaches it; ``fail``: the interval's upper bound is below
  the target (significantly below); ``pass``: rate >= target.

Rules, from the tier-up gate (seed article "The 'Try a Bigger Model' Reflex Is a Refactor Smell"):

- ``gate_not_run``: no closed_book and no gold_context verdicts -> run both before any tier-up.
- ``prompt_or_capability``: gold_context fails -> the model fails even with perfect context: the
  prompt or the model's capability. Only now is a tier-up a *candidate hypothesis*.
- ``fix_retrieval``: gold_context passes but online fails -> fix retrieval, not the model.
- ``retrieval_gap``: gold_context significantly above online (difference interval > 0).
- ``retrieval_redundant``: closed_book passes -> retrieval is redundant at best, noise at worst.
- ``retrieval_noise``: closed_book significantly above online -> the retrieved context hurts.
- ``eval_drift``: human or user_feedback significantly below online -> the judge or eval set has
  drifted from what users see; a tier-up would lift the judge's number, not theirs.
- ``healthy``: online passes the target -> nothing for a tier-up to fix.
- ``need_more_verdicts``: a kind the reading needs is unclear.

``tier_up``: ``not indicated`` when online passes, else ``candidate`` when gold_context fails,
else ``not indicated`` when gold_context or closed_book passes, else ``undetermined``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from telemetry.reports.common import current_model, pct, require_route
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

__all__ = ["KINDS", "Diagnostics", "EvaluatorResult", "Finding", "Reading", "diagnostics", "read_gate", "status"]

KINDS = ("online", "closed_book", "gold_context", "human", "user_feedback", "offline")


def status(q: Proportion | None, target: float, min_judged: int) -> str:
    """``missing``, ``unclear``, ``fail`` or ``pass`` of one pass rate against ``target``."""
    if q is None or q.judged == 0:
        return "missing"
    rate, high = q.rate, q.high
    assert rate is not None and high is not None
    if high < target:
        return "fail"
    if q.judged < min_judged or rate < target:
        return "unclear"
    return "pass"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Reading:
    statuses: dict[str, str]
    findings: list[Finding]
    tier_up: str  # "candidate" | "not indicated" | "undetermined"

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]


def _diff(a: Proportion, b: Proportion) -> str:
    low, high = a.minus(b)
    return f"{100 * (a.rate or 0) - 100 * (b.rate or 0):+.1f} points, 95% [{100 * low:+.1f}, {100 * high:+.1f}]"


def read_gate(rates: Mapping[str, Proportion], target: float = 0.9, min_judged: int = 30) -> Reading:
    """The gate's reading from one pass rate per kind (keys of :data:`KINDS`). Pure."""
    st = {kind: status(rates.get(kind), target, min_judged) for kind in KINDS if kind != "offline"}
    on, cb, gc = rates.get("online"), rates.get("closed_book"), rates.get("gold_context")
    t = pct(target)
    found: list[Finding] = []
    if st["closed_book"] == "missing" and st["gold_context"] == "missing":
        found.append(Finding("gate_not_run", "no closed_book and no gold_context verdicts: run both tests "
                                             "before deciding on a tier-up"))  # fmt: skip
    if st["gold_context"] == "fail" and gc is not None:
        found.append(Finding("prompt_or_capability",
                             f"gold_context fails ({pct(gc.rate)} < {t}): the model fails even with perfect context, so "
                             "the prompt or the model's capability is at fault. A tier-up is a candidate hypothesis, "
                             "alongside rewriting the prompt, decomposing the task, or a same-tier model with better "
                             "instruction following: write it down with these numbers"))  # fmt: skip
    if st["gold_context"] == "pass" and st["online"] == "fail" and gc is not None and on is not None:
        found.append(Finding("fix_retrieval", f"gold_context passes ({pct(gc.rate)}) but online fails ({pct(on.rate)}): "
                                              "the model answers with the right context: fix retrieval, not the model"))  # fmt: skip
    if gc is not None and on is not None and gc.judged and on.judged and gc.minus(on)[0] > 0:
        found.append(Finding("retrieval_gap", f"gold_context beats online by {_diff(gc, on)}: retrieval costs quality"))
    if st["closed_book"] == "pass" and cb is not None:
        found.append(Finding("retrieval_redundant", f"closed_book passes ({pct(cb.rate)} >= {t}): the model answers "
                                                    "without retrieved context; retrieval is redundant at best, noise "
                                                    "at worst. A bigger model will not change that"))  # fmt: skip
    if cb is not None and on is not None and cb.judged and on.judged and cb.minus(on)[0] > 0:
        found.append(Finding("retrieval_noise", f"closed_book beats online by {_diff(cb, on)}: the retrieved context "
                                                "hurts the answers"))  # fmt: skip
    for kind in ("human", "user_feedback"):
        other = rates.get(kind)
        if other is not None and on is not None and other.judged and on.judged and other.minus(on)[1] < 0:
            found.append(Finding("eval_drift", f"{kind} is below online by {_diff(other, on)}: the judge or eval set has "
                                               "drifted from what users see; a tier-up would lift the judge's number, "
                                               "not theirs"))  # fmt: skip
    if st["online"] == "pass":
        found.append(Finding("healthy", f"online passes the target ({pct(on.rate if on else None)} >= {t}): "
                                        "no quality problem for a tier-up to fix"))  # fmt: skip
    unclear = [k for k in ("online", "closed_book", "gold_context") if st[k] == "unclear"]
    if unclear:
        found.append(Finding("need_more_verdicts", f"{', '.join(unclear)}: cannot tell against {t}: fewer than "
                                                   f"{min_judged} verdicts, or below the target with a 95% interval "
                                                   "that still reaches it"))  # fmt: skip
    if st["online"] == "pass":
        tier_up = "not indicated"
    elif st["gold_context"] == "fail":
        tier_up = "candidate"
    elif "pass" in (st["gold_context"], st["closed_book"]):
        tier_up = "not indicated"
    else:
        tier_up = "undetermined"
    return Reading(st, found, tier_up)


@dataclass(frozen=True, slots=True)
class EvaluatorResult:
    kind: str
    evaluator: str
    quality: Proportion


@dataclass(frozen=True, slots=True)
class Diagnostics:
    route: str
    model: str
    window: Window
    target: float
    min_judged: int
    results: list[EvaluatorResult]

    def chosen(self) -> dict[str, EvaluatorResult]:
        """Per kind, the evaluator with the most verdicts (ties: the last name, e.g. the newest version)."""
        best: dict[str, EvaluatorResult] = {}
        for r in self.results:
            b = best.get(r.kind)
            if b is None or (r.quality.judged, r.evaluator) > (b.quality.judged, b.evaluator):
                best[r.kind] = r
        return best

    def by_kind(self) -> dict[str, Proportion]:
        """The pass rate of each kind the reading uses (:meth:`chosen`)."""
        return {k: r.quality for k, r in self.chosen().items()}

    def reading(self) -> Reading:
        return read_gate(self.by_kind(), self.target, self.min_judged)

    def to_report(self) -> Report:
        reading = self.reading()
        used = {(r.kind, r.evaluator) for r in self.chosen().values()}
        rows = [[r.kind, r.evaluator, r.quality.judged, r.quality.passed, r.quality.rate, r.quality.low, r.quality.high,
                 status(r.quality, self.target, self.min_judged), "yes" if (r.kind, r.evaluator) in used else ""]
                for r in self.results]  # fmt: skip
        table = Section("pass_rates", ["kind", "evaluator", "judged", "passed", "pass_rate", "low95", "high95",
                                       "status", "in_reading"], rows)  # fmt: skip
        findings = Section("reading", ["finding", "meaning"], [[f.code, f.text] for f in reading.findings])
        title = (
            f"diagnostics: route {self.route}, model {self.model}, target pass rate {pct(self.target)}\n"
            f"window {self.window.describe()}\ntier-up: {reading.tier_up}"
        )
        return Report("diagnostics", title, [table, findings])


def diagnostics(query: Query, database: str, *, route: str, model: str | None = None, days: float = 7.0,
                target: float = 0.9, min_judged: int = 30) -> Diagnostics:  # fmt: skip
    """Pass rates per evaluator of ``route`` x ``model`` (``None``: current model, ``"all"``: every model)."""
    db = check_database(database)
    window = load_window(query, db, days)
    require_route(query, db, route, window)
    chosen = model or current_model(query, db, route, window)
    model_cond = "" if chosen == "all" else f" AND served_model = {sql_string(chosen)}"
    rows = rows_of(query(
        f"SELECT kind, evaluator, count() AS judged, countIf(passed = 1) AS n_passed FROM {db}.verdicts "
        f"WHERE route = {sql_string(route)}{model_cond} AND {window.between('request_ts')} "
        f"GROUP BY kind, evaluator"
    ))  # fmt: skip
    order = {k: i for i, k in enumerate(KINDS)}
    results = sorted(
        (EvaluatorResult(str(r["kind"]), str(r["evaluator"]), Proportion(int(r["n_passed"]), int(r["judged"]))) for r in rows),
        key=lambda e: (order.get(e.kind, len(order)), e.kind, e.evaluator),
    )  # fmt: skip
    return Diagnostics(route, chosen, window, target, min_judged, results)
