"""QualityRegression: a Bernoulli CUSUM per (route, evaluator version) on judged verdicts.

Contract
--------
- Only verdicts whose ``kind`` is in the route's ``quality_kinds`` (default ``online``) count.
- Each ``(route, evaluator)`` has its own baseline: a ring of daily pass/judged counts over the
  last ``quality_baseline_days`` days (7). An evaluator never seen on the route (a new judge
  version) starts a new baseline and cannot alert before ``quality_min_verdicts`` (200)
  verdicts: a new judge **re-baselines instead of alerting**.
- Once warm, every verdict steps a one-sided CUSUM for a drop from ``p0`` to ``p1``:
  ``p0`` = Wilson 95% *lower* bound of the baseline (conservative), ``p1 = p0 - min(quality_drop,
  (quality_error_ratio - 1) * (1 - p0))`` — a 10-point drop, or a doubling of the failure rate
  when that is smaller (90% -> 80%, 99% -> 98%, 50% -> 40%). Steps: ``ln(q1/q0)`` on a fail,
  ``ln(p1/p0)`` on a pass; ``S = max(0, S + step)``; alarm at ``S >= h``.
- ``h`` is chosen per baseline so that clean traffic gives at most
  ``quality_false_alarms_per_month`` (0.25) false alarms at the route's own verdict rate (Wald /
  Siegmund average run length, :func:`telemetry.detect.stats.cusum_threshold`), designed for a
  clean rate one standard error below the baseline estimate (the false-alarm rate averaged over
  baseline noise is what a route sees), clamped to [4, 14]: at a 90% pass rate about 7.8 at 50
  judged/hour, 10.3 at 500/hour, 5.1 at 5/hour. ``quality_h`` fixes it instead.
- The baseline does not absorb a regression: a verdict waits ``quality_baseline_lag`` (6 h) in
  quarantine before it enters the baseline, and an alarm discards the quarantine (it holds the
  regression's onset: at 50 judged/hour a 10-point drop is caught in ~3-4 h). During an alarm
  ``p0``, ``p1`` and ``h`` are frozen and no verdict enters the baseline. (Leaving out verdicts
  while the CUSUM is merely elevated would bias the baseline up and raise false alarms.)
- Resolution: during an alarm a reverse CUSUM ``U`` tests the incident's own pass rate against
  ``p0`` with the same ``h`` and clears the alarm when the pass rate is back near the baseline.
  The incident's rate is the one-sided 95% upper bound of the alarm's pass rate (as if from at
  most 400 verdicts), kept between ``p1`` and the alarm test's break-even rate
  ``p* = ln(q1/q0) / (ln(q1/q0) - ln(p1/p0))``, where ``S`` has no drift
  (:func:`clear_alternative`). Any pass rate at which the alarm can fire makes ``U`` drift down:
  a continuing incident pages once and resolves once. (The mirror image of the alarm test,
  ``p1`` against ``p0``, shares its break-even rate: an incident near it -- 92% -> 86%, or
  92% -> 72% against a baseline that took in the first hour of the drop, p0 ~0.80 -- cleared
  and fired again every few hours.) A clear-cut drop clears as fast as before once the rate is
  back (92% -> 72% -> 92% at 540 judged/hour: ~0.6 h, ~300 verdicts); a drop of about ``p1``
  takes ~3 times as long (90% -> 80% -> 90% at 50 judged/hour: median ~8 h instead of ~2.5 h).
  A regression still present after ``quality_accept_after`` (7 days) becomes the new baseline
  and the alarm clears. An alarm of an evaluator silent for 24 hours clears.
- The alert's ``model`` label is the served model with the most verdicts since the estimated
  change point (the last time ``S`` was 0), frozen for the episode. Evidence: baseline and
  recent pass rates with 95% Wilson intervals, counts, judged fraction (24 h, by request time),
  one-sided exact binomial p-value (reported, not decided on), ``S`` and ``h``; and, when humans
  label some of its requests, the judge's current agreement with them (``judge_kappa``,
  ``judge_agreement``, ``judge_pairs``: :func:`telemetry.detect.judge.with_judge_agreement`); and
  a prompt version the route started serving within 2 h of the change point, when there is one
  (``prompt_version_change``, from the prompt history the detection owner reads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from telemetry.contracts._time import ms_to_datetime
from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded
from telemetry.detect.detector import Context, Detector, PassRates
from telemetry.detect.facts import VerdictFact
from telemetry.detect.inputs import prompt_attribution
from telemetry.detect.judge import with_judge_agreement
from telemetry.detect.names import QUALITY_REGRESSION
from telemetry.detect.policy import Duration, PolicySection
from telemetry.detect.stats import Z95_ONE_SIDED, binom_cdf, cusum_threshold, wilson
from telemetry.detect.window import HOUR_MS, MINUTE_SLOTS, RouteWindow

DAY_MS = 24 * HOUR_MS
DAY_SLOTS = 29
HOUR_SLOTS = 25
H_MIN, H_MAX = 4.0, 14.0
STALE_MS = DAY_MS
FORGET_MS = 14 * DAY_MS
_RECOMPUTE_EVERY = 50
CLEAR_EVIDENCE_CAP = 400
"""The clear test's bound on the incident's pass rate is never tighter than from this many verdicts."""


VerdictKind = Literal["online", "human", "user_feedback", "closed_book", "gold_context", "offline"]


class QualityPolicy(PolicySection):
    """QualityRegression's keys of the route policy."""

    quality_kinds: tuple[VerdictKind, ...] = ("online",)
    quality_min_verdicts: int = Field(200, ge=20, description="Baseline verdicts before it can alert.")
    quality_baseline_days: int = Field(7, ge=1, le=28)
    quality_drop: float = Field(0.10, gt=0, lt=1, description="Largest pass-rate drop to detect (points).")
    quality_error_ratio: float = Field(2.0, gt=1, description="...or this factor on the failure rate.")
    quality_false_alarms_per_month: float = Field(0.25, gt=0, description="Target; sets CUSUM h.")
    quality_h: float | None = Field(None, gt=0, description="Fixed CUSUM h; default: from the target.")
    quality_accept_after: Duration = Field(7 * DAY_MS, description="A regression this old becomes the baseline.")
    quality_baseline_lag: Duration = Field(6 * HOUR_MS, le=DAY_MS, description="Quarantine before the baseline.")

    @model_validator(mode="after")
    def _coherent(self) -> QualityPolicy:
        if not self.quality_kinds:
            raise ValueError("quality_kinds must name at least one verdict kind")
        return self


@dataclass(slots=True)
class EvaluatorState:
    """CUSUM and baseline of one (route, evaluator). Plain data; see the module docstring."""

    kind: str
    first_ms: int
    last_ms: int = 0
    day_key: list[int] = field(default_factory=lambda: [-1] * DAY_SLOTS)
    day_pass: list[int] = field(default_factory=lambda: [0] * DAY_SLOTS)
    day_n: list[int] = field(default_factory=lambda: [0] * DAY_SLOTS)
    # request-hour ring of judged counts (judged fraction); verdict-hour ring of pass/judged
    rq_key: list[int] = field(default_factory=lambda: [-1] * HOUR_SLOTS)
    rq_n: list[int] = field(default_factory=lambda: [0] * HOUR_SLOTS)
    vh_key: list[int] = field(default_factory=lambda: [-1] * HOUR_SLOTS)
    vh_pass: list[int] = field(default_factory=lambda: [0] * HOUR_SLOTS)
    vh_n: list[int] = field(default_factory=lambda: [0] * HOUR_SLOTS)
    # quarantine: verdicts wait quality_baseline_lag (by verdict hour) before entering the baseline
    pend_key: list[int] = field(default_factory=lambda: [-1] * HOUR_SLOTS)
    pend_pass: list[int] = field(default_factory=lambda: [0] * HOUR_SLOTS)
    pend_n: list[int] = field(default_factory=lambda: [0] * HOUR_SLOTS)
    models: dict[str, list[int]] = field(default_factory=dict)  # served model -> [passed, judged]
    # parameters, recomputed from the baseline every few verdicts
    base_pass: int = 0
    base_n: int = 0
    p_hat: float = 0.0
    p0: float = 0.0
    p1: float = 0.0
    up: float = 0.0
    down: float = 0.0
    h: float = 0.0
    armed: bool = False
    since_params: int = 0
    params_day: int = -1
    # CUSUM
    s: float = 0.0
    run_pass: int = 0
    run_n: int = 0
    run_start_ms: int = 0
    run_models: dict[str, int] = field(default_factory=dict)
    # alarm episode
    alarm: bool = False
    alarm_since_ms: int = 0
    alarm_s: float = 0.0
    alarm_model: str = ""
    alarm_pass: int = 0
    alarm_n: int = 0
    u: float = 0.0
    # the alarm's (passed, judged) up to the last time u was 0: the incident's own pass rate
    inc_pass: int = 0
    inc_n: int = 0

    def baseline(self, day: int, days: int) -> tuple[int, int]:
        """``(passed, judged)`` over the last ``days`` days, today included."""
        passed = n = 0
        for d in range(day - days + 1, day + 1):
            s = d % DAY_SLOTS
            if self.day_key[s] == d:
                passed += self.day_pass[s]
                n += self.day_n[s]
        return passed, n

    def recent(self) -> tuple[int, int]:
        """``(passed, judged)`` since the estimated change point (run, then alarm period)."""
        return self.run_pass + self.alarm_pass, self.run_n + self.alarm_n

    def pass_rate_hours(self, now_ms: int, hours: int) -> tuple[int, int]:
        """``(passed, judged)`` of verdicts made in the last ``hours`` hours."""
        cur = now_ms // HOUR_MS
        passed = n = 0
        for h in range(cur - hours + 1, cur + 1):
            s = h % HOUR_SLOTS
            if self.vh_key[s] == h:
                passed += self.vh_pass[s]
                n += self.vh_n[s]
        return passed, n

    def judged_by_request_hours(self, first_hour: int, last_hour: int) -> int:
        n = 0
        for h in range(max(first_hour, last_hour - HOUR_SLOTS + 1), last_hour + 1):
            s = h % HOUR_SLOTS
            if self.rq_key[s] == h:
                n += self.rq_n[s]
        return n


def break_even(up: float, down: float) -> float:
    """The pass rate at which the alarm CUSUM has no drift: below it ``S`` climbs towards ``h``."""
    return up / (up - down)


def clear_alternative(st: EvaluatorState) -> float:
    """The pass rate the clear test weighs ``p0`` against during an alarm: the incident's own.

    The one-sided 95% Wilson upper bound of the alarm's pass rate (counted up to the last time
    the clear statistic was 0, so a recovery under way does not raise it; never tighter than
    from :data:`CLEAR_EVIDENCE_CAP` verdicts), kept between ``p1`` and :func:`break_even`. At
    any pass rate up to this value the clear statistic drifts down, so a continuing incident --
    also one whose rate is close to where the alarm test breaks even -- does not clear and fire
    again; a clear-cut drop is weighed at ``p1`` and clears as fast as a p1-vs-p0 test would.
    """
    even = break_even(st.up, st.down)
    if st.inc_n <= 0:
        return even
    n = min(st.inc_n, CLEAR_EVIDENCE_CAP)
    high = wilson(st.inc_pass * n / st.inc_n, n, Z95_ONE_SIDED)[1]
    return min(max(st.p1, high), even)


def _bump(keys: list[int], cols: Sequence[list[int]], index: int, values: Sequence[int]) -> None:
    s = index % len(keys)
    if keys[s] != index:
        if keys[s] > index:
            return
        keys[s] = index
        for col in cols:
            col[s] = 0
    for col, v in zip(cols, values, strict=True):
        col[s] += v


class QualityDetector(Detector):
    """Bernoulli CUSUM per (route, evaluator). :meth:`observe_verdicts` per verdict,
    :meth:`evaluate` per tick. Its state is kept by evaluator activity, not by request windows."""

    name: ClassVar[str] = "quality"
    alertname: ClassVar[str] = QUALITY_REGRESSION
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[type[QualityPolicy]] = QualityPolicy

    def __init__(self) -> None:
        self.states: dict[str, dict[str, EvaluatorState]] = {}  # route -> evaluator -> state

    # --- input -----------------------------------------------------------------------------
    def observe_verdicts(self, facts: Sequence[VerdictFact], policy_of: Callable[[str], QualityPolicy]) -> None:
        """Step the CUSUM of each verdict, in the given order. O(1) per verdict."""
        for f in facts:
            policy = policy_of(f.route)
            if f.kind not in policy.quality_kinds:
                continue
            by_eval = self.states.get(f.route)
            if by_eval is None:
                by_eval = self.states[f.route] = {}
            st = by_eval.get(f.evaluator)
            if st is None:
                st = by_eval[f.evaluator] = EvaluatorState(kind=f.kind, first_ms=f.ts_ms)
            self._step(st, f, policy)

    def _step(self, st: EvaluatorState, f: VerdictFact, policy: QualityPolicy) -> None:
        ts = f.ts_ms
        ok = 1 if f.passed else 0
        st.last_ms = max(st.last_ms, ts)
        st.first_ms = min(st.first_ms, ts)
        day = ts // DAY_MS
        _bump(st.rq_key, (st.rq_n,), f.request_ts_ms // HOUR_MS, (1,))
        _bump(st.vh_key, (st.vh_pass, st.vh_n), ts // HOUR_MS, (ok, 1))
        row = st.models.get(f.model)
        if row is None:
            row = st.models[f.model] = [0, 0]
        row[0] += ok
        row[1] += 1
        if row[1] > 20_000:
            row[0] //= 2
            row[1] //= 2

        if st.alarm:
            bad = clear_alternative(st)
            st.alarm_pass += ok
            st.alarm_n += 1
            st.u = max(0.0, st.u + (math.log(st.p0 / bad) if ok else math.log((1.0 - st.p0) / (1.0 - bad))))
            if st.u == 0.0:  # no sign of a recovery: every verdict so far measures the incident
                st.inc_pass, st.inc_n = st.alarm_pass, st.alarm_n
            if st.u >= st.h:
                self._clear(st)
            elif ts - st.alarm_since_ms >= policy.quality_accept_after:
                self._accept(st, day)
            return

        if not st.armed or st.since_params >= _RECOMPUTE_EVERY or st.params_day != day:
            self._params(st, day, policy)
        if st.armed:
            st.s += st.down if ok else st.up
            if st.s <= 0.0:
                st.s = 0.0
                st.run_pass = st.run_n = 0
                st.run_models = {}
                st.run_start_ms = ts
            else:
                if st.run_n == 0:
                    st.run_start_ms = ts
                st.run_pass += ok
                st.run_n += 1
                st.run_models[f.model] = st.run_models.get(f.model, 0) + 1
            if st.s >= st.h:
                st.alarm = True
                st.alarm_since_ms = ts
                st.alarm_s = st.s
                top = max(st.run_models.items(), key=lambda kv: (kv[1], kv[0])) if st.run_models else None
                st.alarm_model = top[0] if top else f.model
                st.alarm_pass = st.alarm_n = st.inc_pass = st.inc_n = 0
                st.u = 0.0
                # the quarantined verdicts hold the regression's onset: never let them in
                st.pend_key = [-1] * HOUR_SLOTS
                st.pend_pass = [0] * HOUR_SLOTS
                st.pend_n = [0] * HOUR_SLOTS
                return
        hour = ts // HOUR_MS
        _bump(st.pend_key, (st.pend_pass, st.pend_n), hour, (ok, 1))
        self._release(st, hour - policy.quality_baseline_lag // HOUR_MS)

    @staticmethod
    def _release(st: EvaluatorState, up_to_hour: int) -> None:
        """Move quarantined hours up to ``up_to_hour`` into the daily baseline ring."""
        for s, h in enumerate(st.pend_key):
            if 0 <= h <= up_to_hour:
                if st.pend_n[s]:
                    _bump(st.day_key, (st.day_pass, st.day_n), h * HOUR_MS // DAY_MS, (st.pend_pass[s], st.pend_n[s]))
                    st.since_params += st.pend_n[s]
                st.pend_key[s] = -1
                st.pend_pass[s] = st.pend_n[s] = 0

    @staticmethod
    def _params(st: EvaluatorState, day: int, policy: QualityPolicy) -> None:
        st.since_params = 0
        st.params_day = day
        passed, n = st.baseline(day, policy.quality_baseline_days)
        st.base_pass, st.base_n = passed, n
        if n < policy.quality_min_verdicts:
            st.armed = False
            return
        p_hat = passed / n
        p0 = wilson(passed, n, Z95_ONE_SIDED)[0]
        p1 = p0 - min(policy.quality_drop, (policy.quality_error_ratio - 1.0) * (1.0 - p0))
        if p1 <= 0.005 or p0 >= 0.9999:
            st.armed = False
            return
        up = math.log((1.0 - p1) / (1.0 - p0))
        down = math.log(p1 / p0)
        if policy.quality_h is not None:
            h = policy.quality_h
        else:
            span = min(policy.quality_baseline_days * DAY_MS, max(HOUR_MS, st.last_ms - st.first_ms))
            per_month = n / span * 30 * DAY_MS
            arl0 = per_month / policy.quality_false_alarms_per_month
            # design for the pessimistic end of the baseline's noise (p_hat - 1 sd): the false-alarm
            # rate is an average over that noise, and it is exponential in it
            p_design = max(p0, p_hat - math.sqrt(p_hat * (1.0 - p_hat) / n))
            h = cusum_threshold(p_design, up, down, arl0, H_MIN, H_MAX)
        st.p_hat, st.p0, st.p1, st.up, st.down, st.h = p_hat, p0, p1, up, down, h
        st.armed = True

    @staticmethod
    def _clear(st: EvaluatorState) -> None:
        st.alarm = False
        st.s = st.u = 0.0
        st.run_pass = st.run_n = st.alarm_pass = st.alarm_n = st.inc_pass = st.inc_n = 0
        st.run_models = {}
        st.since_params = _RECOMPUTE_EVERY  # recompute on the next verdict

    def _accept(self, st: EvaluatorState, day: int) -> None:
        passed, n = st.alarm_pass, st.alarm_n
        st.day_key = [-1] * DAY_SLOTS
        st.day_pass = [0] * DAY_SLOTS
        st.day_n = [0] * DAY_SLOTS
        _bump(st.day_key, (st.day_pass, st.day_n), day, (passed, n))
        st.first_ms = st.alarm_since_ms
        self._clear(st)
        st.armed = False

    # --- output ----------------------------------------------------------------------------
    def evaluate(self, ctx: Context) -> list[Condition]:
        """Conditions of every alarmed (route, evaluator), one per (route, model label)."""
        now_ms, windows = ctx.now_ms, ctx.windows
        by_label: dict[tuple[str, str], list[tuple[str, EvaluatorState]]] = {}
        for route, by_eval in self.states.items():
            for evaluator, st in by_eval.items():
                if not st.alarm:
                    continue
                if st.last_ms < now_ms - STALE_MS:
                    self._clear(st)
                    continue
                by_label.setdefault((route, st.alarm_model), []).append((evaluator, st))
        out = []
        for (route, model), group in sorted(by_label.items()):
            group.sort(key=lambda es: (es[1].alarm_since_ms, es[0]))
            evaluator, st = group[0]
            others = [e for e, _ in group[1:]]
            cond = self._condition(route, model, evaluator, st, others, now_ms, windows.get(route))
            cond = with_judge_agreement(cond, ctx, evaluator)
            prompt, text = prompt_attribution(ctx.inputs, route, st.run_start_ms)
            out.append(replace(cond, evidence={**cond.evidence, **prompt}, description=cond.description + text))
        return out

    @staticmethod
    def _condition(
        route: str,
        model: str,
        evaluator: str,
        st: EvaluatorState,
        others: list[str],
        now_ms: int,
        window: RouteWindow | None,
    ) -> Condition:
        rp, rn = st.recent()
        b_lo, b_hi = wilson(st.base_pass, st.base_n)
        r_lo, r_hi = wilson(rp, rn)
        recent = rp / rn if rn else None
        judged_fraction = None
        recent_requests = None
        if window is not None and window.cur >= 0:
            last_hour = window.cur // 60
            requests_24h = window.hsum(window.hreq, last_hour - 23, last_hour) + window.req[window.cur % MINUTE_SLOTS]
            judged_24h = st.judged_by_request_hours(last_hour - 23, last_hour)
            judged_fraction = min(1.0, judged_24h / requests_24h) if requests_24h else None
            first_hour = st.run_start_ms // HOUR_MS
            recent_requests = int(
                window.hsum(window.hreq, first_hour, last_hour) + window.req[window.cur % MINUTE_SLOTS]
            )
        change_at = ms_to_datetime(st.run_start_ms).strftime("%Y-%m-%dT%H:%M:%SZ")
        evidence: Evidence = {
            "evaluator": st.kind,
            "judge_version": evaluator,
            "baseline_pass_rate": rounded(st.p_hat, 4),
            "baseline_wilson_low": rounded(b_lo, 4),
            "baseline_wilson_high": rounded(b_hi, 4),
            "baseline_judged": st.base_n,
            "baseline_passed": st.base_pass,
            "recent_pass_rate": rounded(recent, 4),
            "recent_wilson_low": rounded(r_lo, 4),
            "recent_wilson_high": rounded(r_hi, 4),
            "recent_judged": rn,
            "recent_passed": rp,
            "recent_requests": recent_requests,
            "judged_fraction": rounded(judged_fraction, 4),
            "p_value_one_sided": rounded(binom_cdf(rp, rn, st.p_hat), 3) if rn else None,
            "cusum_statistic": rounded(st.alarm_s, 4),
            "cusum_threshold": rounded(st.h, 4),
            "cusum_p0": rounded(st.p0, 4),
            "cusum_p1": rounded(st.p1, 4),
            "change_point_at": change_at,
            "also_alarmed_evaluators": ", ".join(others) or None,
        }
        summary = clip(f"{route} pass rate fell to {pct(recent)} (baseline {pct(st.p_hat)}) on {model} [{evaluator}]")
        description = (
            f"{st.kind} evaluator {evaluator}: {rp}/{rn} judged requests passed since about {change_at} "
            f"({pct(recent)}, 95% Wilson {pct(r_lo)}-{pct(r_hi)}) against a "
            f"{st.base_n}-verdict baseline of {pct(st.p_hat)} ({pct(b_lo)}-{pct(b_hi)}). "
            f"Bernoulli CUSUM for a drop from {pct(st.p0)} to {pct(st.p1)} crossed h={st.h:.2f}. "
            f"Judged fraction (24 h): {pct(judged_fraction)}."
        )
        if others:
            description += f" Also alarmed on this route and model: {', '.join(others)}."
        return Condition(
            alertname=QUALITY_REGRESSION,
            route=route,
            model=model,
            summary=summary,
            description=description,
            evidence=evidence,
            decided_at_ms=st.alarm_since_ms,
        )

    # --- helpers for other detectors ----------------------------------------------------------
    def primary(self, route: str) -> tuple[str, EvaluatorState] | None:
        """The route's evaluator with the largest baseline (None if the route has none)."""
        best: tuple[str, EvaluatorState] | None = None
        for evaluator, st in self.states.get(route, {}).items():
            if best is None or st.base_n > best[1].base_n:
                best = (evaluator, st)
        return best

    def pass_rates(self, route: str, now_ms: int) -> PassRates | None:
        """Pass rates of the route's primary evaluator (cost per correct answer), None unless armed."""
        primary = self.primary(route)
        if primary is None or not primary[1].armed:
            return None
        st = primary[1]
        p1, n1 = st.pass_rate_hours(now_ms, 2)
        p6, n6 = st.pass_rate_hours(now_ms, 7)
        return PassRates(baseline=st.p_hat, passed_1h=p1, judged_1h=n1, passed_6h=p6, judged_6h=n6)

    def model_pass_rate(self, route: str, model: str) -> tuple[float | None, int, str]:
        """Pass rate of ``model`` on ``route`` by the evaluator with most verdicts on it."""
        best: tuple[int, int, str] | None = None
        for evaluator, st in self.states.get(route, {}).items():
            row = st.models.get(model)
            if row and (best is None or row[1] > best[1]):
                best = (row[0], row[1], evaluator)
        if best is None:
            return None, 0, ""
        return best[0] / best[1], best[1], best[2]

    # --- persistence ---------------------------------------------------------------------
    def forget(self, now_ms: int) -> None:
        """Drop evaluators silent for 14 days (bounded memory). Call now and then."""
        for route in list(self.states):
            by_eval = self.states[route]
            for evaluator in [e for e, st in by_eval.items() if st.last_ms < now_ms - FORGET_MS]:
                del by_eval[evaluator]
            if not by_eval:
                del self.states[route]

    def held_routes(self) -> Collection[str]:
        """Routes with an evaluator state: kept while verdicts come, whatever their requests."""
        return self.states.keys()

    def release_route(self, route: str) -> None:
        self.states.pop(route, None)

    def repair_clock(self, wall_ms: int) -> None:
        """Keep the baselines; pull the evaluators' times back to ``wall_ms``."""
        for st in self.states.values():
            for ev in st.values():
                ev.last_ms = min(ev.last_ms, wall_ms)
                ev.alarm_since_ms = min(ev.alarm_since_ms, wall_ms)

    def to_state(self) -> dict[str, Any]:
        return {route: {e: asdict(st) for e, st in by_eval.items()} for route, by_eval in self.states.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> QualityDetector:
        det = cls()
        for route, by_eval in data.items():
            det.states[route] = {e: EvaluatorState(**raw) for e, raw in by_eval.items()}
        return det
