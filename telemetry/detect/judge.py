"""JudgeDrift: an LLM judge's agreement with human labels on the same requests has fallen.

Contract
--------
- Input, not facts: the detection owner reads, every few seconds, the pairs of verdicts on the
  same request -- one from an LLM judge (kind ``online``, per evaluator name incl. version), one
  human label (kind ``human``) -- counted per (route, judge, UTC hour of the request's time)
  (:mod:`telemetry.worker.agreement_source`, input :data:`~telemetry.detect.agreement.INPUT_KEY`).
  An hour keeps filling in as labels arrive, as every bucket of this product does.
- Per (route, judge), at event time ``now``: the **recent** window is the last
  ``judge_recent_window`` (10 days) of request time; the **baseline** the
  ``judge_baseline_window`` (28 days) before it. Each gives Cohen's kappa (Fleiss-Cohen-Everitt
  standard error, Wald 95% interval) and raw agreement (Wilson 95% interval), and the judge's
  two error rates against the humans: false passes (it passed what humans failed) and false
  fails (:mod:`telemetry.detect.agreement`).
- A window is **usable** with at least ``judge_min_pairs`` (40) pairs, at least
  ``judge_min_class`` (5) of them passed and 5 failed by the human (kappa measures agreement
  beyond chance on both answers; on a route where humans fail 1 request in 100 it cannot be
  measured from a few dozen labels), and a defined kappa.
- **Fires** when the recent window is usable and either
  - *drop*: the baseline is usable, kappa fell by at least ``judge_kappa_drop`` (0.2), and one
    of the judge's error rates rose: one-sided Fisher exact test of recent against baseline at
    ``judge_alpha / 2`` each (0.001 / 2). Kappa falls exactly when an error rate rises (at a
    given human pass rate); the exact test holds its level with a handful of human fails
    (a z-test of the kappa difference leans on an SE estimated from them), and it says which
    way the judge went. A change of the route's own pass rate moves kappa but not the error
    rates: no alert; or
  - *floor*: kappa is below ``judge_kappa_floor`` (0.4, "less than moderate agreement"; 0
    turns the rule off) with 95% confidence, baseline or not (a new judge version that never
    agreed): the upper bound is kappa at both error rates' Wilson lower bounds
    (:func:`~telemetry.detect.agreement.kappa_upper`), which does not collapse with few human
    fails as the Wald interval does.
- **Clears** (separate levels, no flapping) when neither holds at its clear level: the drop
  rule holds while kappa is at least half of ``judge_kappa_drop`` below the baseline and an
  error rate's p-value is at most :data:`CLEAR_P` (0.05); the floor rule while the kappa
  estimate is below the floor. A recent window that is not usable (labelling paused) neither
  fires nor clears: the alarm holds for ``judge_recent_window``, then clears. The baseline
  slides: a drift that persists enters it after ``judge_recent_window``, and the drop rule
  clears once the baseline has taken most of it in (about three weeks with the defaults; as
  QualityRegression accepts a regression after a week); the floor rule keeps firing while
  agreement stays below the floor.
- One alert per (route, judge): ``model`` is ``judge:<evaluator>`` (:data:`JUDGE_MODEL_PREFIX`).
  The fingerprint's identity labels are alertname, route, model, env and severity, so two judges
  of one route (helpfulness and faithfulness) drifting are two alerts with their own lifecycle;
  the prefix says the label names a judge, not a served model (as ``team:`` does in the route
  label of a team's BudgetOverrun). At most :data:`MAX_JUDGES_PER_ROUTE` judges per route
  (those with the most pairs), and only routes the engine keeps a window for (requests in the
  last 8 days): the labels stay bounded like every other alert's.
- Decided again when the input or the minute changes; until the input has been read once (a
  take-over), alarms hold as they were saved.
- Evidence: both windows' kappa and raw agreement with intervals, pair counts and 2x2 cells, the
  judge's false-pass and false-fail rates (which way it drifted) with the tests' p-values, the
  drop, kappa's upper bound, and the rules that hold.

:func:`with_judge_agreement` adds the judge's current agreement to a QualityRegression: a pass
rate that fell by a judge that no longer agrees with humans is not the same news.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Final

from pydantic import Field, model_validator

from telemetry.contracts._time import ms_to_datetime
from telemetry.contracts.alert import Severity
from telemetry.detect.agreement import (
    DAY_MS,
    HOUR_MS,
    INPUT_KEY,
    Agreement,
    HourPairs,
    assess,
    fisher_greater,
    for_judge,
    kappa_upper,
    total,
)
from telemetry.detect.condition import Condition, Evidence, EvidenceValue, clip, pct, rounded
from telemetry.detect.detector import Context, Detector
from telemetry.detect.names import JUDGE_DRIFT
from telemetry.detect.policy import Duration, PolicySection

JUDGE_MODEL_PREFIX: Final = "judge:"
"""The ``model`` label of a JudgeDrift alert is this prefix and the judge's evaluator name."""

MAX_JUDGES_PER_ROUTE: Final = 8
"""Judges per route the detector weighs (the source sends those with the most pairs)."""

CLEAR_P: Final = 0.05
"""A drop alarm holds while an error rate's exact p-value stays at most this (and half the drop)."""

_MINUTE_MS = 60_000


class JudgePolicy(PolicySection):
    """JudgeDrift's keys of the route policy."""

    judge_recent_window: Duration = Field(10 * DAY_MS, description="Recent window of request time, up to now.")
    judge_baseline_window: Duration = Field(28 * DAY_MS, description="Baseline: the request time before it.")
    judge_min_pairs: int = Field(40, ge=10, description="Pairs a window needs before it decides anything.")
    judge_min_class: int = Field(5, ge=1, description="...of which at least this many passed and failed by humans.")
    judge_kappa_drop: float = Field(0.2, gt=0, le=2, description="Smallest fall in kappa that alerts.")
    judge_alpha: float = Field(1e-3, gt=0, lt=CLEAR_P, description="...and an error rate rose at this level.")
    judge_kappa_floor: float = Field(0.4, ge=0, le=1, description="...or kappa below it with 95% confidence; 0: off.")

    @model_validator(mode="after")
    def _coherent(self) -> JudgePolicy:
        for name, most in (("judge_recent_window", 28 * DAY_MS), ("judge_baseline_window", 90 * DAY_MS)):
            ms = getattr(self, name)
            if ms % HOUR_MS or not HOUR_MS <= ms <= most:
                raise ValueError(f"{name} must be whole hours between 1h and {most // DAY_MS}d")
        return self

    @property
    def recent_hours(self) -> int:
        return self.judge_recent_window // HOUR_MS

    @property
    def baseline_hours(self) -> int:
        return self.judge_baseline_window // HOUR_MS

    @property
    def lookback_hours(self) -> int:
        """Hours of request time the two windows span (what the source reads)."""
        return self.recent_hours + self.baseline_hours


@dataclass(frozen=True, slots=True)
class Assessment:
    """One (route, judge) at one time: both windows and what the rules say."""

    recent: Agreement
    baseline: Agreement
    recent_first_hour: int
    baseline_first_hour: int
    recent_usable: bool
    baseline_usable: bool
    drop: float | None
    p_false_pass: float | None
    """One-sided Fisher p-value that the false-pass rate rose (None: not tested, the drop is
    under half of ``judge_kappa_drop`` or a window is not usable)."""
    p_false_fail: float | None
    recent_kappa_upper: float | None
    fire_drop: bool
    fire_floor: bool
    hold_drop: bool
    hold_floor: bool

    @property
    def fires(self) -> bool:
        return self.fire_drop or self.fire_floor

    @property
    def holds(self) -> bool:
        return self.hold_drop or self.hold_floor


def usable(a: Agreement, policy: JudgePolicy) -> bool:
    """Enough pairs, both human answers often enough, and a defined kappa."""
    p = a.pairs
    return (
        a.kappa is not None
        and p.n >= policy.judge_min_pairs
        and p.human_passed >= policy.judge_min_class
        and p.human_failed >= policy.judge_min_class
    )


def judge_assessment(hours: tuple[HourPairs, ...], now_ms: int, policy: JudgePolicy) -> Assessment:
    """Both windows of one judge's pairs at event time ``now_ms`` and the rules' answers. Pure."""
    hour = now_ms // HOUR_MS
    recent_first = hour - policy.recent_hours + 1
    base_first = recent_first - policy.baseline_hours
    recent = assess(total(hours, recent_first, hour))
    baseline = assess(total(hours, base_first, recent_first - 1))
    r_ok, b_ok = usable(recent, policy), usable(baseline, policy)
    drop = p_pass = p_fail = None
    fire_drop = hold_drop = fire_floor = hold_floor = False
    if r_ok and b_ok:
        assert recent.kappa is not None and baseline.kappa is not None
        r, b = recent.pairs, baseline.pairs
        drop = baseline.kappa - recent.kappa
        if drop >= policy.judge_kappa_drop / 2:  # the tests matter (and are reported) only then
            p_pass = fisher_greater(r.pass_fail, r.human_failed, b.pass_fail, b.human_failed)
            p_fail = fisher_greater(r.fail_pass, r.human_passed, b.fail_pass, b.human_passed)
            p_min = min(p_pass, p_fail)
            fire_drop = drop >= policy.judge_kappa_drop and p_min <= policy.judge_alpha / 2
            hold_drop = p_min <= CLEAR_P
    upper = kappa_upper(recent.pairs)
    if r_ok and policy.judge_kappa_floor > 0 and upper is not None:
        assert recent.kappa is not None
        fire_floor = upper < policy.judge_kappa_floor
        hold_floor = recent.kappa < policy.judge_kappa_floor
    return Assessment(recent, baseline, recent_first, base_first, r_ok, b_ok, drop, p_pass, p_fail, upper,
                      fire_drop, fire_floor, hold_drop, hold_floor)  # fmt: skip


@dataclass(slots=True)
class JudgeAlarm:
    """A (route, judge) whose JudgeDrift holds: when it fired, when a usable window last
    confirmed it, and the condition as last decided."""

    since_ms: int
    last_held_ms: int
    summary: str = ""
    description: str = ""
    evidence: dict[str, EvidenceValue] = field(default_factory=dict)


def _hour(hour: int) -> str:
    return ms_to_datetime(hour * HOUR_MS).strftime("%Y-%m-%dT%H:00Z")


def span(ms: int) -> str:
    """``864000000`` -> ``"10d"``, ``7200000`` -> ``"2h"``."""
    return f"{ms // DAY_MS}d" if ms % DAY_MS == 0 else f"{ms // HOUR_MS}h"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _window_evidence(prefix: str, a: Agreement, first_hour: int, window_ms: int) -> Evidence:
    p = a.pairs
    return {
        f"{prefix}_kappa": rounded(a.kappa, 4),
        f"{prefix}_kappa_low": rounded(a.kappa_low, 4),
        f"{prefix}_kappa_high": rounded(a.kappa_high, 4),
        f"{prefix}_agreement": rounded(a.raw, 4),
        f"{prefix}_agreement_low": rounded(a.raw_low, 4),
        f"{prefix}_agreement_high": rounded(a.raw_high, 4),
        f"{prefix}_pairs": p.n,
        f"{prefix}_pass_pass": p.pass_pass,
        f"{prefix}_pass_fail": p.pass_fail,
        f"{prefix}_fail_pass": p.fail_pass,
        f"{prefix}_fail_fail": p.fail_fail,
        f"{prefix}_false_pass_rate": rounded(_share(p.pass_fail, p.human_failed), 4),
        f"{prefix}_false_fail_rate": rounded(_share(p.fail_pass, p.human_passed), 4),
        f"{prefix}_from": _hour(first_hour),
        f"{prefix}_window": span(window_ms),
    }


def drift_text(route: str, judge: str, a: Assessment, policy: JudgePolicy) -> tuple[str, str, Evidence]:
    """Summary, description and evidence of a JudgeDrift on ``(route, judge)``."""
    r, b = a.recent, a.baseline
    rules = [name for name, on in (("drop", a.hold_drop), ("floor", a.hold_floor)) if on]
    evidence: Evidence = {
        "judge": judge,
        "rule": "+".join(rules) or None,
        **_window_evidence("recent", r, a.recent_first_hour, policy.judge_recent_window),
        **_window_evidence("baseline", b, a.baseline_first_hour, policy.judge_baseline_window),
        "kappa_drop": rounded(a.drop, 4),
        "p_false_pass_rose": rounded(a.p_false_pass, 3),
        "p_false_fail_rose": rounded(a.p_false_fail, 3),
        "min_kappa_drop": policy.judge_kappa_drop,
        "alpha": policy.judge_alpha,
        "kappa_floor": policy.judge_kappa_floor,
        "recent_kappa_upper_bound": rounded(a.recent_kappa_upper, 4),
    }
    base = f" vs {_num(b.kappa)} baseline" if a.baseline_usable else ""
    summary = clip(
        f"{route} judge {judge} agreement with humans fell: kappa {_num(r.kappa)} "
        f"({_num(r.kappa_low)}-{_num(r.kappa_high)}){base}, raw {pct(r.raw)} over {r.n} pairs"
    )
    rp, bp = r.pairs, b.pairs
    description = (
        f"LLM judge {judge} on {route} against human labels on the same requests, last "
        f"{span(policy.judge_recent_window)} (from {_hour(a.recent_first_hour)}): Cohen's kappa {_num(r.kappa)} "
        f"(95% {_num(r.kappa_low)}-{_num(r.kappa_high)}), raw agreement {pct(r.raw)} "
        f"({pct(r.raw_low)}-{pct(r.raw_high)}) over {rp.n} pairs; it passed {rp.pass_fail} of the "
        f"{rp.human_failed} requests humans failed and failed {rp.fail_pass} of the {rp.human_passed} they passed. "
    )
    if a.baseline_usable:
        description += (
            f"The {span(policy.judge_baseline_window)} before: kappa {_num(b.kappa)} "
            f"({_num(b.kappa_low)}-{_num(b.kappa_high)}), raw {pct(b.raw)} over {bp.n} pairs "
            f"(passed {bp.pass_fail} of {bp.human_failed} human fails, failed {bp.fail_pass} of {bp.human_passed} "
            f"human passes): kappa fell by {_num(a.drop)}. "
        )
        if a.p_false_pass is not None and a.p_false_fail is not None:
            description += (
                f"One-sided Fisher p-values that the false-pass rate rose: {a.p_false_pass:.2g}, that the "
                f"false-fail rate rose: {a.p_false_fail:.2g}. "
            )
    else:
        description += "No usable baseline. "
    floor = (
        f"kappa below {policy.judge_kappa_floor} with 95% confidence (upper bound {_num(a.recent_kappa_upper)})"
        if policy.judge_kappa_floor > 0
        else "no floor"
    )
    description += (
        f"Rules holding: {', '.join(rules) or 'none (no usable window: held)'}; it fires at a kappa drop >= "
        f"{policy.judge_kappa_drop} with an error rate up at p <= {policy.judge_alpha:g}/2, or at {floor}. "
        f"The judge's pass rates (QualityRegression, cost per correct answer) are suspect until it agrees again."
    )
    return summary, description, evidence


class JudgeDriftDetector(Detector):
    """Agreement of each (route, LLM judge) with human labels; state: the alarms that hold."""

    name: ClassVar[str] = "judge"
    alertname: ClassVar[str] = JUDGE_DRIFT
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[type[JudgePolicy]] = JudgePolicy

    def __init__(self) -> None:
        self.alarms: dict[str, dict[str, JudgeAlarm]] = {}  # route -> judge -> alarm
        self._seen: tuple[object, int] | None = None  # (input, minute) last decided on

    def evaluate(self, ctx: Context) -> list[Condition]:
        """The JudgeDrift conditions that hold now. Decides again when the input or the minute
        changed; otherwise (and before the input was read once) the alarms hold as they are."""
        data = ctx.inputs.extra.get(INPUT_KEY)
        minute = ctx.now_ms // _MINUTE_MS
        if data is not None and (self._seen is None or self._seen[0] is not data or self._seen[1] != minute):
            self._seen = (data, minute)
            self._decide(data, ctx)
        return [
            Condition(JUDGE_DRIFT, route, JUDGE_MODEL_PREFIX + judge, alarm.summary, alarm.description,
                      alarm.evidence, alarm.since_ms)  # fmt: skip
            for route, by_judge in sorted(self.alarms.items())
            for judge, alarm in sorted(by_judge.items())
        ]

    def _decide(self, data: object, ctx: Context) -> None:
        now_ms = ctx.now_ms
        seen: set[tuple[str, str]] = set()
        routes = data.items() if isinstance(data, Mapping) else ()
        for route, judges in routes:
            if route not in ctx.windows or not isinstance(judges, Mapping):
                continue
            policy = ctx.routes.for_route(route).section(JudgePolicy)
            for judge, hours in list(judges.items())[:MAX_JUDGES_PER_ROUTE]:
                if isinstance(hours, tuple):
                    seen.add((route, judge))
                    self._step(route, judge, hours, policy, now_ms)
        for route in list(self.alarms):
            by_judge = self.alarms[route]
            for judge in [j for j in by_judge if (route, j) not in seen]:
                del by_judge[judge]  # no pair left in the lookback, or the route went silent
            if not by_judge:
                del self.alarms[route]

    def _step(self, route: str, judge: str, hours: tuple[HourPairs, ...], policy: JudgePolicy, now_ms: int) -> None:
        a = judge_assessment(hours, now_ms, policy)
        alarm = self.alarms.get(route, {}).get(judge)
        if alarm is None:
            if a.fires:
                alarm = JudgeAlarm(since_ms=now_ms, last_held_ms=now_ms)
                alarm.summary, alarm.description, alarm.evidence = drift_text(route, judge, a, policy)
                self.alarms.setdefault(route, {})[judge] = alarm
            return
        if a.holds:
            alarm.last_held_ms = now_ms
            alarm.summary, alarm.description, alarm.evidence = drift_text(route, judge, a, policy)
        elif a.recent_usable or now_ms - alarm.last_held_ms > policy.judge_recent_window:
            self._clear(route, judge)

    def _clear(self, route: str, judge: str) -> None:
        by_judge = self.alarms.get(route, {})
        by_judge.pop(judge, None)
        if not by_judge:
            self.alarms.pop(route, None)

    # --- lifecycle hooks -------------------------------------------------------------------
    def drop_route(self, route: str) -> None:
        self.alarms.pop(route, None)

    def repair_clock(self, wall_ms: int) -> None:
        for by_judge in self.alarms.values():
            for alarm in by_judge.values():
                alarm.since_ms = min(alarm.since_ms, wall_ms)
                alarm.last_held_ms = min(alarm.last_held_ms, wall_ms)
        self._seen = None

    def to_state(self) -> dict[str, Any]:
        return {route: {j: asdict(a) for j, a in by_judge.items()} for route, by_judge in self.alarms.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> JudgeDriftDetector:
        det = cls()
        for route, by_judge in data.items():
            det.alarms[route] = {j: JudgeAlarm(**raw) for j, raw in by_judge.items()}
        return det


def with_judge_agreement(cond: Condition, ctx: Context, judge: str) -> Condition:
    """``cond`` (a QualityRegression decided on ``judge``'s verdicts) with the judge's current
    agreement with human labels: evidence ``judge_kappa`` (+ ``_low``/``_high``, 95%),
    ``judge_agreement`` (raw, + Wilson ``_low``/``_high``), ``judge_pairs`` and
    ``judge_agreement_window`` (the route's ``judge_recent_window``), and one sentence of the
    description. Unchanged when the judge has no human-labelled pair in the input."""
    hours = for_judge(ctx.inputs.extra.get(INPUT_KEY), cond.route, judge)
    if hours is None:
        return cond
    policy = ctx.routes.for_route(cond.route).section(JudgePolicy)
    now = ctx.now_ms // HOUR_MS
    a = assess(total(hours, now - policy.recent_hours + 1, now))
    evidence: Evidence = {
        **cond.evidence,
        "judge_kappa": rounded(a.kappa, 4),
        "judge_kappa_low": rounded(a.kappa_low, 4),
        "judge_kappa_high": rounded(a.kappa_high, 4),
        "judge_agreement": rounded(a.raw, 4),
        "judge_agreement_low": rounded(a.raw_low, 4),
        "judge_agreement_high": rounded(a.raw_high, 4),
        "judge_pairs": a.n,
        "judge_agreement_window": span(policy.judge_recent_window),
    }
    sentence = (
        f" The judge's agreement with human labels (last {span(policy.judge_recent_window)}): kappa {_num(a.kappa)} "
        f"(95% {_num(a.kappa_low)}-{_num(a.kappa_high)}), raw {pct(a.raw)} over {a.n} pairs."
    )
    return replace(cond, evidence=evidence, description=cond.description + sentence)

