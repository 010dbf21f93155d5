"""CanaryVerdict: a canary declared with criteria, decided live by always-valid sequential tests.

Contract
--------
- **Declaration** (the routes file, ``[routes."<route>".canary]``; :class:`CanarySpec`): the
  canary ``model``, its ``share`` of the route's traffic (or ``percentage``), and ``criteria``
  written the way teams write them: ``"p95_latency_ms < 300"``, ``"error_rate < 0.01"``,
  ``"pass_rate_delta > -0.02"``, ``"cost_per_correct_ratio < 1.5"`` (the closed set is
  :data:`METRICS`). Canary requests are those served by ``model`` (or, with ``arm``, those whose
  ``experiment`` is ``arm``); the control is the rest of the route's traffic (or, with
  ``control``, the requests of that experiment arm). The canary starts at ``start`` when
  declared, else at its first request; it has until ``deadline`` (3 days) to be decided.
  ``[defaults] canary`` holds the defaults of every route's canary (criteria, deadline, alpha,
  ...), never a model.
- **Input** (read by ``telemetry.worker.canary_source`` every input refresh): per declared
  canary, running totals of both arms since the start (:class:`CanaryInput`): requests,
  errors, ``ok`` requests slower than each latency target, priced requests with the sum and
  sum of squares of their cost, verdicts of the canary's ``kinds`` (``online``) and passes.
- **Tests** (:mod:`telemetry.detect.sequential`): each criterion is a one-sided hypothesis on
  one parameter, tested at every look with an always-valid test at ``alpha / len(criteria)``,
  so the chance of any wrong decision about the canary is at most ``alpha`` (5%) however
  often it is looked at. One-arm proportions (``error_rate``, ``pass_rate``, ``pNN_latency_ms``
  as the share of ``ok`` requests slower than the target against ``1 - NN%``) use the exact
  Beta-binomial mixture; two-arm comparisons (``pass_rate_delta``, ``cost_per_request_ratio``,
  ``cost_per_correct_ratio`` on the log scale, delta method) use the normal-mixture SPRT once
  each arm has ``min_samples`` verdicts or priced requests.
- **Decision**, once per canary: **rollback** as soon as one criterion fails (the first failing
  one in declaration order is named, with its estimate, its confidence sequence and the counts);
  **promote** when every criterion passes at the same look; **inconclusive** when the deadline
  comes first. The decision and its evidence are kept in the detector's state: a restart never
  decides again, nor does a later look.
- **Alert**: one ``CanaryVerdict`` per decision (labels: the route, ``model`` = the canary
  model); it fires at the decision and resolves ``hold`` (1 h) later. A rollback has the
  alert's configured severity (``warning``); a promotion or an inconclusive canary is ``info``.
  Its CloudEvent on the alerts topic carries the extension attributes ``canaryaction``,
  ``canarymodel`` and ``canaryarm`` (see ``telemetry.alerting.payloads``) for a router to act on.
- A canary whose declaration leaves the routes file is forgotten (declare it again, or change
  its ``start``, to run a new one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from telemetry.contracts._time import ms_to_datetime
from telemetry.contracts.alert import Severity
from telemetry.contracts.verdict import VerdictKind
from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded, usd
from telemetry.detect.detector import Context, Detector
from telemetry.detect.names import CANARY_VERDICT
from telemetry.detect.policy import DAY_MS, HOUR_MS, MINUTE_MS, Duration, PolicySection
from telemetry.detect.sequential import (
    Test,
    normal_test,
    proportion_test,
    restricted_difference_se,
)

Action = Literal["rollback", "promote", "inconclusive"]

METRICS: dict[str, str] = {
    "error_rate": "share of the canary's requests that failed (status error)",
    "pNN_latency_ms": "latency quantile NN (p50, p95, p99, p99.9) of the canary's ok requests, in ms",
    "pass_rate": "share of the canary's verdicts that passed",
    "pass_rate_delta": "canary pass rate minus control pass rate",
    "cost_per_request_ratio": "canary cost per request / control cost per request",
    "cost_per_correct_ratio": "canary cost per correct answer / control cost per correct answer",
}
"""The metrics a criterion may name (``pNN`` stands for any quantile)."""

_BELOW = {"error_rate": True, "latency": True, "pass_rate": False, "pass_rate_delta": False,
          "cost_per_request_ratio": True, "cost_per_correct_ratio": True}  # fmt: skip
"""For each metric, whether a good canary is below its threshold (``<``) or above it (``>``)."""

_CRITERION = re.compile(
    r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=|<|>)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*$"
)
_LATENCY = re.compile(r"^p(\d{1,3}(?:\.\d+)?)_latency_ms$")
_DELTA_TAU_MIN = 0.01
_LOG_RATIO_TAU_MIN = 0.05


@dataclass(frozen=True, slots=True)
class Criterion:
    """One parsed criterion: ``metric op threshold``; ``quantile`` for latency (0.95 for p95)."""

    text: str
    metric: str
    op: str
    threshold: float
    quantile: float | None = None

    @property
    def below(self) -> bool:
        """A good canary is below the threshold."""
        return self.op in ("<", "<=")


def _criterion_error(text: object, why: str) -> PydanticCustomError:
    return PydanticCustomError("canary_criterion", "'{criterion}': {why}", {"criterion": str(text), "why": why})


def parse_criterion(value: object) -> Criterion:
    """``"p95_latency_ms < 300"`` -> :class:`Criterion`. Raises a pydantic error naming the
    problem (unknown metric, wrong direction, threshold out of range)."""
    if isinstance(value, Criterion):
        return value
    if not isinstance(value, str):
        raise _criterion_error(value, "a criterion is text like 'p95_latency_ms < 300'")
    match = _CRITERION.match(value)
    if match is None:
        raise _criterion_error(value, "expected '<metric> <op> <number>' with op one of <, <=, >, >=, "
                                      "e.g. 'p95_latency_ms < 300' or 'pass_rate_delta > -0.02'")  # fmt: skip
    name, op, number, percent = match.groups()
    threshold = float(number) / (100.0 if percent else 1.0)
    latency = _LATENCY.match(name)
    metric, quantile = ("latency", float(latency.group(1)) / 100.0) if latency else (name, None)
    if metric not in _BELOW or (metric == "latency" and latency is None):
        raise _criterion_error(value, f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
    if percent and metric not in ("error_rate", "pass_rate", "pass_rate_delta"):
        raise _criterion_error(value, "a percentage threshold only suits error_rate, pass_rate and pass_rate_delta")
    below = op in ("<", "<=")
    if below != _BELOW[metric]:
        want = "<" if _BELOW[metric] else ">"
        raise _criterion_error(value, f"{name} must be bounded with {want} (a good canary has "
                                      f"{'lower' if _BELOW[metric] else 'higher'} values): "
                                      f"e.g. '{name} {want} {number}{percent}'")  # fmt: skip
    if metric == "latency":
        if quantile is None or not 0.0 < quantile < 1.0:
            raise _criterion_error(value, "the latency quantile must be between p0 and p100 (exclusive)")
        if not threshold > 0:
            raise _criterion_error(value, "the latency target must be positive (milliseconds)")
    elif metric in ("error_rate", "pass_rate"):
        if not 0.0 < threshold < 1.0:
            raise _criterion_error(value, f"{metric} is a share: the threshold must be between 0 and 1 (exclusive)")
    elif metric == "pass_rate_delta":
        if not -1.0 < threshold < 1.0:
            raise _criterion_error(value, "pass_rate_delta is a difference of shares: between -1 and 1 (exclusive)")
    elif not threshold > 0:
        raise _criterion_error(value, f"{metric} is a ratio: the threshold must be positive")
    text = f"{name} {op} {number}{percent}"
    return Criterion(text=text, metric=metric, op=op, threshold=threshold, quantile=quantile)


CriterionText = Annotated[Criterion, PlainValidator(parse_criterion)]


class CanarySpec(BaseModel):
    """One route's canary as declared (``[routes."<route>".canary]``), merged key by key over
    ``[defaults] canary``. ``model`` empty: no canary on the route."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field("", description="The canary model (its served_model).")
    share: float | None = Field(None, gt=0, lt=1, description="Declared share of the route's traffic.")
    percentage: float | None = Field(None, gt=0, lt=100, description="The same in percent.")
    criteria: tuple[CriterionText, ...] = ()
    arm: str = Field("", description="Experiment arm of the canary's requests; default: those served by model.")
    control: str = Field("", description="Experiment arm of the control; default: the rest of the route.")
    start: datetime | None = Field(None, description="When the canary started; default: its first request.")
    deadline: Duration = 3 * DAY_MS
    alpha: float = Field(0.05, gt=0, le=0.2, description="Probability of any wrong decision about the canary.")
    hold: Duration = HOUR_MS
    kinds: tuple[VerdictKind, ...] = ("online",)
    evaluator: str = Field("", description="Only this evaluator's verdicts (name with version); default: all.")
    min_samples: int = Field(30, ge=10, description="Verdicts / priced requests per arm before a two-arm test.")

    @model_validator(mode="after")
    def _coherent(self) -> CanarySpec:
        if self.share is not None and self.percentage is not None:
            raise ValueError("give share or percentage, not both")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2025-03-14T09:00:00Z")
        if not self.kinds:
            raise ValueError("kinds must name at least one verdict kind")
        if self.deadline < HOUR_MS:
            raise ValueError("deadline must be at least 1h")
        if self.model:
            if not self.criteria:
                raise ValueError("a canary needs criteria, e.g. criteria = [\"p95_latency_ms < 300\", \"error_rate < 0.01\"]")
            if self.arm and self.arm == self.control:
                raise ValueError("arm and control must differ")
        texts = [c.text for c in self.criteria]
        if len(set(texts)) != len(texts):
            raise ValueError("a criterion is listed twice")
        return self

    @property
    def declared_share(self) -> float | None:
        return self.share if self.share is not None else (self.percentage / 100.0 if self.percentage else None)

    @property
    def start_ms(self) -> int | None:
        return None if self.start is None else round(self.start.timestamp() * 1000)

    @property
    def latency_targets(self) -> tuple[float, ...]:
        """The latency targets (ms) whose slow counts the input must carry."""
        return tuple(sorted({c.threshold for c in self.criteria if c.metric == "latency"}))

    def key(self, route: str) -> str:
        """Identity of one canary run: a new model, arm, control or start is a new canary."""
        return "\x1f".join((route, self.model, self.arm, self.control, str(self.start_ms or "")))


class CanaryPolicy(PolicySection):
    """CanaryVerdict's key of the route policy: the ``canary`` table."""

    canary: CanarySpec = CanarySpec()


@dataclass(frozen=True, slots=True)
class ArmTotals:
    """Running totals of one arm since the canary's start."""

    requests: int = 0
    errors: int = 0
    ok: int = 0
    slow: Mapping[float, int] = field(default_factory=dict)
    """``ok`` requests slower than each latency target (ms)."""
    priced: int = 0
    cost: float = 0.0
    cost_sq: float = 0.0
    judged: int = 0
    passed: int = 0

    @property
    def cost_per_request(self) -> float | None:
        return self.cost / self.priced if self.priced else None

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.judged if self.judged else None

    def cost_cv2(self) -> float:
        """Squared coefficient of variation of the cost of one request (sample variance / mean^2)."""
        if self.priced < 2 or self.cost <= 0:
            return 0.0
        mean = self.cost / self.priced
        var = max(0.0, (self.cost_sq - self.cost * mean) / (self.priced - 1))
        return var / (mean * mean)


@dataclass(frozen=True, slots=True)
class CanaryInput:
    """The detector's input for one declared canary (``ctx.inputs.extra["canary"][route]``).

    ``key`` is the :meth:`CanarySpec.key` the totals were read for; ``start_ms`` the declared
    start, else the first canary request seen (None: no canary request yet); the totals cover
    ``[start_ms, as_of_ms]`` of request time."""

    route: str
    key: str
    start_ms: int | None
    as_of_ms: int
    canary: ArmTotals
    control: ArmTotals


@dataclass(frozen=True, slots=True)
class CriterionResult:
    """One criterion at one look: the test (on the tested scale) and what to show (ratios back
    on the ratio scale)."""

    criterion: Criterion
    test: Test
    alpha: float
    estimate: float | None
    low: float | None
    high: float | None
    basis: str
    """The counts the test rests on, in words."""

    @property
    def decision(self) -> str:
        return self.test.decision

    def describe(self) -> str:
        c = self.criterion
        if self.estimate is None:
            return f"{c.text}: {self.decision} ({self.basis})"
        return f"{c.text}: {self.decision}, {_fmt(c, self.estimate)} in [{_fmt(c, self.low)}, {_fmt(c, self.high)}] ({self.basis})"


def _fmt(c: Criterion, x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if c.metric in ("error_rate", "pass_rate", "latency"):
        return pct(x, 2 if x < 0.1 else 1)
    if c.metric == "pass_rate_delta":
        return f"{100 * x:+.1f} points"
    return f"{x:.3g}x"


MEASURES = {"error_rate": "error_rate", "latency": "slow_share", "pass_rate": "pass_rate",
            "pass_rate_delta": "pass_rate_delta", "cost_per_request_ratio": "cost_per_request_ratio",
            "cost_per_correct_ratio": "cost_per_correct_ratio"}  # fmt: skip
"""What each metric's test estimates (the evidence's ``criterion_measure``): a latency quantile
criterion tests ``slow_share``, the share of ok canary requests slower than the target."""


def limit_of(c: Criterion) -> float:
    """The bound the tested measure is held to: the threshold, or for ``pNN_latency_ms < T`` the
    allowed share slower than ``T`` (``1 - NN%``)."""
    return 1.0 - (c.quantile or 0.95) if c.metric == "latency" else c.threshold


def _measured(r: CriterionResult) -> str:
    """The failing measure in words: ``"14.7% of ok requests slower than 400 ms (5% allowed; CS 5.4%..29.1%)"``."""
    c = r.criterion
    cs = f"CS {_fmt(c, r.low)}..{_fmt(c, r.high)}"
    if c.metric == "latency":
        return f"{_fmt(c, r.estimate)} of ok requests slower than {c.threshold:g} ms ({pct(limit_of(c), 3 if limit_of(c) < 0.01 else 0)} allowed; {cs})"
    if c.metric == "pass_rate_delta":
        return f"pass rate {_fmt(c, r.estimate)} vs control ({cs})"
    name = c.metric.replace("_", " ")
    return f"{name} {_fmt(c, r.estimate)} ({cs})"


def _two_arm_ready(spec: CanarySpec, a: int, b: int) -> bool:
    return a >= spec.min_samples and b >= spec.min_samples


def judge(spec: CanarySpec, can: ArmTotals, ctl: ArmTotals, *, bounds: bool = True) -> list[CriterionResult]:
    """Every criterion of ``spec`` tested on the totals, at ``spec.alpha / len(criteria)`` each.

    ``bounds=False`` skips the confidence-sequence bounds of the exact tests (the decision does
    not need them; a simulation looking millions of times does not want them). Pure.
    """
    alpha = spec.alpha / max(1, len(spec.criteria))
    out: list[CriterionResult] = []
    for c in spec.criteria:
        out.append(_judge_one(spec, c, can, ctl, alpha, bounds))
    return out


def _judge_one(spec: CanarySpec, c: Criterion, can: ArmTotals, ctl: ArmTotals, alpha: float, bounds: bool) -> CriterionResult:
    if c.metric == "error_rate":
        t = proportion_test(can.errors, can.requests, c.threshold, True, alpha, bounds=bounds)
        basis = f"{can.errors:,} errors in {can.requests:,} canary requests" if bounds else ""
        return CriterionResult(c, t, alpha, t.estimate, t.low, t.high, basis)
    if c.metric == "latency":
        q = c.quantile or 0.95
        slow = can.slow.get(c.threshold, 0)
        t = proportion_test(slow, can.ok, 1.0 - q, True, alpha, bounds=bounds)
        basis = (f"{slow:,} of {can.ok:,} ok canary requests slower than {c.threshold:g} ms, "
                 f"{pct(1.0 - q, 3 if q > 0.99 else 0)} allowed") if bounds else ""  # fmt: skip
        return CriterionResult(c, t, alpha, t.estimate, t.low, t.high, basis)
    if c.metric == "pass_rate":
        t = proportion_test(can.passed, can.judged, c.threshold, False, alpha, bounds=bounds)
        basis = f"{can.passed:,} passed of {can.judged:,} canary verdicts" if bounds else ""
        return CriterionResult(c, t, alpha, t.estimate, t.low, t.high, basis)
    counts = (f"canary {can.passed:,}/{can.judged:,} passed, {can.priced:,} priced; "
              f"control {ctl.passed:,}/{ctl.judged:,} passed, {ctl.priced:,} priced") if bounds else ""  # fmt: skip
    if c.metric == "pass_rate_delta":
        if not _two_arm_ready(spec, can.judged, ctl.judged):
            return CriterionResult(c, _NO_DATA, alpha, None, None, None,
                                   f"waiting for {spec.min_samples} verdicts per arm; {counts}")  # fmt: skip
        est = can.passed / can.judged - ctl.passed / ctl.judged
        tau = max(abs(c.threshold), _DELTA_TAU_MIN)
        # decided with the standard error at the rates restricted to the threshold (Farrington-Manning);
        # shown with the plain one (its confidence sequence)
        se0 = restricted_difference_se(can.passed, can.judged, ctl.passed, ctl.judged, c.threshold)
        t = normal_test(est, se0, c.threshold, False, alpha, tau)
        if not bounds:
            return CriterionResult(c, t, alpha, est, None, None, "")
        var = _binomial_var(can.passed, can.judged) / can.judged + _binomial_var(ctl.passed, ctl.judged) / ctl.judged
        shown = normal_test(est, math.sqrt(var), c.threshold, False, alpha, tau)
        return CriterionResult(c, t, alpha, est, shown.low, shown.high, counts)
    # cost ratios, on the log scale
    wants_quality = c.metric == "cost_per_correct_ratio"
    ready = _two_arm_ready(spec, can.priced, ctl.priced) and can.cost > 0 and ctl.cost > 0
    if wants_quality:
        ready = ready and _two_arm_ready(spec, can.judged, ctl.judged) and can.passed > 0 and ctl.passed > 0
    if not ready:
        what = "verdicts (with a pass) and priced requests" if wants_quality else "priced requests"
        return CriterionResult(c, _NO_DATA, alpha, None, None, None,
                               f"waiting for {spec.min_samples} {what} per arm; {counts}")  # fmt: skip
    est = math.log((can.cost / can.priced) / (ctl.cost / ctl.priced))
    var = can.cost_cv2() / can.priced + ctl.cost_cv2() / ctl.priced
    if wants_quality:
        est -= math.log((can.passed / can.judged) / (ctl.passed / ctl.judged))
        var += _log_rate_var(can.passed, can.judged) + _log_rate_var(ctl.passed, ctl.judged)
    theta0 = math.log(c.threshold)
    t = normal_test(est, math.sqrt(var), theta0, True, alpha, max(abs(theta0), _LOG_RATIO_TAU_MIN))
    return CriterionResult(c, t, alpha, math.exp(est), _exp(t.low), _exp(t.high), counts)


_NO_DATA = Test(None, -math.inf, math.inf, 0.0, "undecided")


def _exp(x: float) -> float:
    return math.exp(min(x, 700.0)) if math.isfinite(x) else (0.0 if x < 0 else math.inf)


def _binomial_var(passed: int, n: int) -> float:
    """``p(1-p)`` with ``p`` shrunk towards 1/2 by one pseudo-count each way, so 30 of 30 passes
    does not claim zero variance."""
    p = (passed + 1.0) / (n + 2.0)
    return p * (1.0 - p)


def _log_rate_var(passed: int, n: int) -> float:
    """Delta-method variance of ``log(passed / n)``: ``(1 - p) / (n p)`` (shrunk as above)."""
    p = (passed + 1.0) / (n + 2.0)
    return (1.0 - p) / (n * p)


def outcome(results: Sequence[CriterionResult]) -> tuple[Action | None, CriterionResult | None]:
    """The decision of one look: rollback on the first failing criterion, promote when all pass,
    else None (undecided; the caller applies the deadline)."""
    for r in results:
        if r.decision == "fail":
            return "rollback", r
    if results and all(r.decision == "pass" for r in results):
        return "promote", None
    return None, None


# ------------------------------------------------------------------------------------------------
# the detector


@dataclass(slots=True)
class Decided:
    """A canary's decision, kept as its alert's content (the same at every notification)."""

    action: str
    at_ms: int
    criterion: str
    summary: str
    description: str
    evidence: dict[str, float | int | str | None]


@dataclass(slots=True)
class CanaryRecord:
    """One canary run: when it started, and once decided, its decision."""

    route: str
    model: str
    start_ms: int
    decided: Decided | None = None


class CanaryDetector(Detector):
    """One :class:`CanaryRecord` per declared canary (by :meth:`CanarySpec.key`)."""

    name: ClassVar[str] = "canary"
    alertname: ClassVar[str] = CANARY_VERDICT
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[type[CanaryPolicy]] = CanaryPolicy

    def __init__(self) -> None:
        self.records: dict[str, CanaryRecord] = {}
        self._looked: dict[str, int] = {}
        """``as_of_ms`` of the input each undecided canary was last judged on (not state: a
        restarted detector judges the current input once more, to the same result)."""

    def evaluate(self, ctx: Context) -> list[Condition]:
        """Decide every declared, undecided canary on its latest input; the conditions of the
        decisions still within their hold."""
        now = ctx.now_ms
        inputs: Mapping[str, CanaryInput] = ctx.inputs.extra.get(self.name) or {}
        declared: dict[str, tuple[str, CanarySpec]] = {}
        for route, policy in ctx.routes.routes.items():
            spec = policy.section(CanaryPolicy).canary
            if spec.model:
                declared[spec.key(route)] = (route, spec)
        for key in [k for k in self.records if k not in declared]:
            del self.records[key]
            self._looked.pop(key, None)
        out: list[Condition] = []
        for key, (route, spec) in declared.items():
            data = inputs.get(route)
            if data is not None and data.key != key:
                data = None  # totals read for another declaration
            rec = self.records.get(key)
            if rec is None:
                start = spec.start_ms if spec.start_ms is not None else (data.start_ms if data else None)
                if start is None or start > now:
                    continue
                rec = self.records[key] = CanaryRecord(route, spec.model, start)
            elif data is not None and data.start_ms is not None and spec.start_ms is None:
                rec.start_ms = min(rec.start_ms, data.start_ms)
            # no input yet (a fresh take-over): wait for one, even past the deadline
            if rec.decided is None and data is not None:
                due = now >= rec.start_ms + spec.deadline
                if due or self._looked.get(key) != data.as_of_ms:
                    rec.decided = self._decide(route, spec, rec, data, now)
                    self._looked[key] = data.as_of_ms
            d = rec.decided
            if d is not None and now - d.at_ms < spec.hold:
                out.append(Condition(
                    alertname=CANARY_VERDICT, route=route, model=spec.model, summary=d.summary,
                    description=d.description, evidence=dict(d.evidence), decided_at_ms=d.at_ms,
                    severity=None if d.action == "rollback" else "info",
                ))  # fmt: skip
        return out

    @staticmethod
    def _decide(route: str, spec: CanarySpec, rec: CanaryRecord, data: CanaryInput, now: int) -> Decided | None:
        can, ctl = data.canary, data.control
        action, failing = outcome(judge(spec, can, ctl, bounds=False))
        if action is None and now < rec.start_ms + spec.deadline:
            return None
        results = judge(spec, can, ctl)  # again, with the bounds, for the evidence
        action, failing = outcome(results)
        return decision(route, spec, rec.start_ms, results, action or "inconclusive", failing, can, ctl, now, data.as_of_ms)

    def held_routes(self) -> list[str]:
        return sorted({r.route for r in self.records.values()})

    def release_route(self, route: str) -> None:
        for key in [k for k, r in self.records.items() if r.route == route]:
            del self.records[key]

    def repair_clock(self, wall_ms: int) -> None:
        for rec in self.records.values():
            rec.start_ms = min(rec.start_ms, wall_ms)
            if rec.decided is not None:
                rec.decided.at_ms = min(rec.decided.at_ms, wall_ms)

    def to_state(self) -> dict[str, Any]:
        return {key: asdict(rec) for key, rec in self.records.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> CanaryDetector:
        det = cls()
        for key, raw in data.items():
            decided = raw.get("decided")
            det.records[key] = CanaryRecord(
                route=raw["route"], model=raw["model"], start_ms=int(raw["start_ms"]),
                decided=Decided(**decided) if decided else None,
            )  # fmt: skip
        return det


def _iso(ms: int | None) -> str | None:
    return None if ms is None else ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def _arm_evidence(prefix: str, a: ArmTotals) -> Evidence:
    return {
        f"{prefix}_requests": a.requests,
        f"{prefix}_errors": a.errors,
        f"{prefix}_judged": a.judged,
        f"{prefix}_passed": a.passed,
        f"{prefix}_pass_rate": rounded(a.pass_rate, 4),
        f"{prefix}_priced": a.priced,
        f"{prefix}_cost_per_request": rounded(a.cost_per_request),
    }


def decision(
    route: str, spec: CanarySpec, start_ms: int, results: Sequence[CriterionResult], action: Action,
    failing: CriterionResult | None, can: ArmTotals, ctl: ArmTotals, now_ms: int, as_of_ms: int | None,
) -> Decided:  # fmt: skip
    """The alert content of one decision. Pure."""
    minutes = (now_ms - start_ms) / MINUTE_MS
    control = f"arm {spec.control}" if spec.control else "the rest of the route"
    canary = f"canary {spec.model}" + (f" (arm {spec.arm})" if spec.arm else "")
    observed_share = can.requests / (can.requests + ctl.requests) if can.requests + ctl.requests else None
    undecided = [r for r in results if r.decision == "undecided"]
    status = "; ".join(r.describe() for r in results)
    evidence: Evidence = {
        "action": action,
        "canary_model": spec.model,
        "canary_arm": spec.arm or None,
        "control_arm": spec.control or None,
        "criterion": failing.criterion.text if failing else None,
        "criterion_measure": MEASURES[failing.criterion.metric] if failing else None,
        "criterion_limit": rounded(limit_of(failing.criterion)) if failing else None,
        "criterion_estimate": rounded(failing.estimate) if failing else None,
        "criterion_low": rounded(failing.low) if failing else None,
        "criterion_high": rounded(failing.high) if failing else None,
        "criteria": "; ".join(c.text for c in spec.criteria),
        "criteria_status": status,
        "undecided_criteria": len(undecided),
        "alpha": spec.alpha,
        "alpha_per_criterion": rounded(spec.alpha / max(1, len(spec.criteria)), 4),
        "started_at": _iso(start_ms),
        "deadline_at": _iso(start_ms + spec.deadline),
        "decided_after_minutes": round(minutes, 1),
        "totals_as_of": _iso(as_of_ms),
        "share_declared": spec.declared_share,
        "share_observed": rounded(observed_share, 4),
        **_arm_evidence("canary", can),
        **_arm_evidence("control", ctl),
        "method": "always-valid: beta-binomial mixture (one arm), normal-mixture SPRT (two arms)",
    }
    after = f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"
    if action == "rollback" and failing is not None:
        c = failing.criterion
        summary = f"ROLL BACK {canary} on {route} after {after}: {c.text} fails, {_measured(failing)}"
        description = (f"The {canary} on route {route} fails its criterion {c.text}: {failing.basis}; estimate "
                       f"{_fmt(c, failing.estimate)}, confidence sequence [{_fmt(c, failing.low)}, {_fmt(c, failing.high)}] "
                       f"at level {failing.alpha:.3g}, entirely on the wrong side of the threshold. Roll the canary back. ")  # fmt: skip
    elif action == "promote":
        summary = f"PROMOTE {canary} on {route}: all {len(results)} criteria met after {after} ({can.requests:,} canary requests)"
        description = f"The {canary} on route {route} meets every criterion against {control}. "
    else:
        names = ", ".join(r.criterion.text for r in undecided) or "none"
        summary = (f"INCONCLUSIVE {canary} on {route} at its deadline ({spec.deadline // HOUR_MS} h): "
                   f"{len(undecided)} of {len(results)} criteria undecided ({names})")  # fmt: skip
        description = (f"The {canary} on route {route} reached its deadline without a decision: the traffic so far "
                       f"neither establishes nor rules out {names}. Extend the canary (a new start), raise its share, "
                       f"or decide by hand. ")  # fmt: skip
    description += (f"Criteria against {control}, each tested with an always-valid sequential test (any wrong "
                    f"decision at most {spec.alpha:g} overall): {status}. Canary {can.requests:,} requests, "
                    f"cost per request {usd(can.cost_per_request)}; control {ctl.requests:,}, {usd(ctl.cost_per_request)}.")  # fmt: skip
    return Decided(action=action, at_ms=now_ms, criterion=failing.criterion.text if failing else "",
                   summary=clip(summary), description=description, evidence=evidence)  # fmt: skip
