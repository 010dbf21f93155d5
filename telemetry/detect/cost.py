"""CostSpike: cost per request (and per correct answer) against a robust baseline, per route.

Contract
--------
- Baseline: the hourly cost per request of the route over the last 7 days (hours with at least
  5 priced requests, the current and previous hour left out), summarised by the **median** of
  ``log(cost per request)`` and a robust sigma (1.4826 x MAD). It needs
  ``cost_min_baseline_hours`` (12) such hours. A median absorbs a permanent shift only after
  half the baseline (3.5 days): that is when a deliberate change becomes the new normal.
- Fire when the cost per request over **both** the short (15 min) and the long (1 h) window is at
  least the fire level: ``max(cost_fire_ratio (1.5), exp(cost_noise_z x sigma x sqrt(60/window)))``
  times the baseline — a noisy low-volume route needs a larger jump — with at least
  ``cost_min_requests`` priced requests in each window.
- Clear (separate level) when the short window drops below ``cost_clear_ratio / cost_fire_ratio``
  of the fire level (1.2x baseline by default), or has too few priced requests.
- Cost per correct answer: ``log cpc = log cpr - log pass_rate``. When the route has a warm
  quality baseline, the same two-window test also runs on ``cpr x p_baseline / p_recent`` over
  1 h and 6 h (at least 20 passed verdicts in each): a cheaper-but-worse model that costs more
  per *correct* answer fires too. The pass rate part is otherwise QualityRegression's job.
- One alert per route (``model`` label ``""``); evidence names the top served model, the monthly
  extra spend at the current request rate and both metrics, and a prompt version the route
  started serving within 2 h of the change (the long window's start), when there is one
  (``prompt_version_change``: the usual cause of a cost change without a model change).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from pydantic import Field, model_validator

from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, rounded, usd
from telemetry.detect.detector import Context, PassRates, PerRouteDetector
from telemetry.detect.inputs import StoredInputs, prompt_attribution
from telemetry.detect.names import COST_SPIKE
from telemetry.detect.policy import Duration, PolicySection
from telemetry.detect.stats import mad_sigma, median
from telemetry.detect.window import MINUTE_MS, RouteWindow

MONTH_S = 30 * 86_400
_MIN_PRICED_PER_HOUR = 5
_MIN_PASSED = 20


class CostPolicy(PolicySection):
    """CostSpike's keys of the route policy."""

    cost_fire_ratio: float = Field(1.5, gt=1)
    cost_clear_ratio: float = Field(1.2, ge=1)
    cost_short_window: Duration = 15 * MINUTE_MS
    cost_long_window: Duration = 60 * MINUTE_MS
    cost_min_requests: int = Field(20, ge=1)
    cost_noise_z: float = Field(4.0, ge=0)
    cost_min_baseline_hours: int = Field(12, ge=1)

    @model_validator(mode="after")
    def _coherent(self) -> CostPolicy:
        self.check_windows("cost_short_window", "cost_long_window")
        if self.cost_short_window > self.cost_long_window:
            raise ValueError("cost_short_window must not be longer than cost_long_window")
        if self.cost_clear_ratio > self.cost_fire_ratio:
            raise ValueError("cost_clear_ratio must not exceed cost_fire_ratio")
        return self


@dataclass(slots=True)
class CostState:
    """Per-route state: alarm flag, which metric fired, and the cached baseline."""

    active: bool = False
    metric: str = ""
    base_hour: int = -1
    base_log: float | None = None
    base_sigma: float = 0.0
    base_hours: int = 0
    base: float = 0.0
    fire_short: float = 0.0
    fire_long: float = 0.0
    fire_6h: float = 0.0


class CostSpikeDetector(PerRouteDetector):
    """One :class:`CostState` per route; :meth:`evaluate_route` is pure apart from that state."""

    name: ClassVar[str] = "cost"
    alertname: ClassVar[str] = COST_SPIKE
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 15 * MINUTE_MS
    policy: ClassVar[type[CostPolicy]] = CostPolicy

    def __init__(self) -> None:
        self.states: dict[str, CostState] = {}

    def evaluate_route(self, route: str, window: RouteWindow, policy: CostPolicy, ctx: Context) -> list[Condition]:
        """The route's CostSpike condition, if it holds now (pass rates from ``ctx.quality``)."""
        now_ms = ctx.now_ms
        found = self._evaluate(route, window, policy, now_ms, lambda: ctx.quality.pass_rates(route, now_ms))
        return [self._attributed(c, ctx.inputs, now_ms - policy.cost_long_window) for c in found]

    @staticmethod
    def _attributed(c: Condition, inputs: StoredInputs, change_ms: int) -> Condition:
        """Name a prompt version first served near the change (the long window's start), if any."""
        evidence, text = prompt_attribution(inputs, c.route, change_ms)
        return replace(c, evidence={**c.evidence, **evidence}, description=c.description + text)

    def _evaluate(
        self,
        route: str,
        w: RouteWindow,
        policy: CostPolicy,
        now_ms: int,
        pass_rates: Callable[[], PassRates | None],
    ) -> list[Condition]:
        """The route's CostSpike condition, if it holds now.

        ``pass_rates`` gives the route's primary evaluator's pass rates (called only when needed).
        """
        st = self.states.get(route)
        if st is None:
            st = self.states[route] = CostState()
        if w.cur < 0:
            return []
        self._baseline(st, w, policy)
        if st.base_log is None:
            st.active = False
            return []
        base = st.base
        short_m = policy.cost_short_window // MINUTE_MS
        long_m = policy.cost_long_window // MINUTE_MS
        fire_s, fire_l, fire_6h = st.fire_short, st.fire_long, st.fire_6h
        clear_s = fire_s * policy.cost_clear_ratio / policy.cost_fire_ratio

        n_s = w.wsum(w.priced, short_m)
        if n_s < policy.cost_min_requests:
            st.active = False
            return []
        cpr_s = w.wsum(w.cost, short_m) / n_s
        ratio_s = cpr_s / base
        if st.active and st.metric == "cost_per_request":
            if ratio_s < clear_s:
                st.active = False
                return []
            return [self._condition(route, w, policy, st, now_ms, base, fire_s, clear_s, pass_rates())]
        n_l = w.wsum(w.priced, long_m)
        if n_l < policy.cost_min_requests:
            st.active = False
            return []
        ratio_l = w.wsum(w.cost, long_m) / n_l / base
        if ratio_s >= fire_s and ratio_l >= fire_l:
            st.active, st.metric = True, "cost_per_request"
            return [self._condition(route, w, policy, st, now_ms, base, fire_s, clear_s, pass_rates())]

        # cost per correct answer: cpr x p_base / p_recent over 1 h and 6 h
        rates = pass_rates()
        if rates is None or rates.passed_1h < _MIN_PASSED or rates.passed_6h < _MIN_PASSED:
            st.active = False
            return []
        cpc_1h = ratio_l * rates.baseline / (rates.passed_1h / rates.judged_1h)
        if st.active and st.metric == "cost_per_correct":
            if cpc_1h < fire_l * policy.cost_clear_ratio / policy.cost_fire_ratio:
                st.active = False
                return []
        else:
            if cpc_1h < fire_l:
                st.active = False
                return []
            cpr_6h = self._cpr_hours(w, 6)
            cpc_6h = (cpr_6h or 0.0) / base * rates.baseline / (rates.passed_6h / rates.judged_6h)
            if cpc_6h < fire_6h:
                st.active = False
                return []
        st.active, st.metric = True, "cost_per_correct"
        return [self._condition(route, w, policy, st, now_ms, base, fire_s, clear_s, rates)]

    @staticmethod
    def _cpr_hours(w: RouteWindow, hours: int) -> float | None:
        n = w.hours_total("hpriced", hours)
        return w.hours_total("hcost", hours) / n if n else None

    @staticmethod
    def _baseline(st: CostState, w: RouteWindow, policy: CostPolicy) -> None:
        hour = w.cur // 60
        if st.base_hour == hour:
            return
        st.base_hour = hour
        logs = [
            math.log(cost / priced)
            for _, _, _, cost, priced in w.hour_values(hour - 7 * 24, hour - 2)
            if priced >= _MIN_PRICED_PER_HOUR and cost > 0
        ]
        if len(logs) < policy.cost_min_baseline_hours:
            st.base_log, st.base_sigma, st.base_hours = None, 0.0, len(logs)
            return
        centre = median(logs)
        sigma = mad_sigma(logs, centre)
        st.base_log, st.base_sigma, st.base_hours = centre, sigma, len(logs)
        st.base = math.exp(centre)

        def level(minutes: float) -> float:
            return max(policy.cost_fire_ratio, math.exp(policy.cost_noise_z * sigma * math.sqrt(60 / minutes)))

        st.fire_short = level(policy.cost_short_window / MINUTE_MS)
        st.fire_long = level(policy.cost_long_window / MINUTE_MS)
        st.fire_6h = level(360)

    def _condition(
        self,
        route: str,
        w: RouteWindow,
        policy: CostPolicy,
        st: CostState,
        now_ms: int,
        base: float,
        fire_s: float,
        clear_s: float,
        rates: PassRates | None,
    ) -> Condition:
        short_m = policy.cost_short_window // MINUTE_MS
        long_m = policy.cost_long_window // MINUTE_MS
        n_s, n_l = w.wsum(w.priced, short_m), w.wsum(w.priced, long_m)
        cpr_s = w.wsum(w.cost, short_m) / n_s if n_s else None
        cpr_l = w.wsum(w.cost, long_m) / n_l if n_l else None
        req_l = w.wsum(w.req, long_m)
        span_s = min(long_m * 60.0, max(60.0, (now_ms - w.first_ms) / 1000.0))
        rps = req_l / span_s
        monthly = (cpr_l - base) * rps * MONTH_S if cpr_l is not None else None
        models = w.model_window(long_m)
        top, top_n = ("", 0.0)
        if models:
            top, row = max(models.items(), key=lambda kv: (kv[1][0], kv[0]))
            top_n = row[0]
        cpc_base = cpc_recent = p_recent = None
        if rates is not None and rates.baseline > 0:
            cpc_base = base / rates.baseline
            if rates.passed_1h and cpr_l is not None:
                p_recent = rates.passed_1h / rates.judged_1h
                cpc_recent = cpr_l / p_recent
        ratio_s = cpr_s / base if cpr_s is not None and base > 0 else None
        ratio_l = cpr_l / base if cpr_l is not None and base > 0 else None
        evidence: Evidence = {
            "metric": st.metric,
            "baseline_cost_per_request": rounded(base),
            "baseline_hours": st.base_hours,
            "baseline_sigma_log": rounded(st.base_sigma, 4),
            "recent_cost_per_request_short": rounded(cpr_s),
            "recent_cost_per_request_long": rounded(cpr_l),
            "ratio_short": rounded(ratio_s, 4),
            "ratio_long": rounded(ratio_l, 4),
            "short_window_minutes": short_m,
            "long_window_minutes": long_m,
            "priced_requests_short": int(n_s),
            "priced_requests_long": int(n_l),
            "unpriced_share_long": rounded(1.0 - n_l / req_l, 4) if req_l else None,
            "fire_ratio": rounded(fire_s, 4),
            "clear_ratio": rounded(clear_s, 4),
            "requests_per_second": rounded(rps, 4),
            "monthly_delta_usd": rounded(monthly, 6),
            "top_served_model": top,
            "top_served_share": rounded(top_n / req_l, 4) if req_l else None,
            "baseline_pass_rate": rounded(rates.baseline, 4) if rates else None,
            "recent_pass_rate": rounded(p_recent, 4),
            "baseline_cost_per_correct": rounded(cpc_base),
            "recent_cost_per_correct": rounded(cpc_recent),
        }
        if st.metric == "cost_per_correct" and cpc_recent is not None and cpc_base:
            summary = (
                f"{route} cost per correct answer {usd(cpc_recent)} is {cpc_recent / cpc_base:.1f}x baseline "
                f"{usd(cpc_base)} (1h; pass rate {p_recent:.0%}), model {top or '?'}"
            )
        else:
            summary = (
                f"{route} cost/request {usd(cpr_s)} is {ratio_s or 0:.1f}x baseline {usd(base)} ({short_m}m), "
                f"{ratio_l or 0:.1f}x ({long_m}m); {'+' if (monthly or 0) >= 0 else ''}{usd(monthly)}/month "
                f"at {rps:.2g} req/s, model {top or '?'}"
            )
        description = (
            f"Cost per request of {route} over the last {short_m} min is {usd(cpr_s)} ({int(n_s)} priced "
            f"requests) and over {long_m} min {usd(cpr_l)} ({int(n_l)}), against a 7-day median of "
            f"{usd(base)} per request over {st.base_hours} hours. Fires at {fire_s:.2f}x in both windows, "
            f"clears below {clear_s:.2f}x. At {rps:.3g} requests/s the difference is {usd(monthly)} per "
            f"30 days. Top served model: {top or 'n/a'}."
        )
        if cpc_recent is not None:
            description += f" Cost per correct answer: {usd(cpc_recent)} vs {usd(cpc_base)} at baseline."
        return Condition(
            alertname=COST_SPIKE,
            route=route,
            model="",
            summary=clip(summary),
            description=description,
            evidence=evidence,
            decided_at_ms=min(now_ms, w.last_ms) if w.last_ms > 0 else now_ms,
        )

    def to_state(self) -> dict[str, Any]:
        return {route: asdict(st) for route, st in self.states.items()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> CostSpikeDetector:
        det = cls()
        det.states = {route: CostState(**raw) for route, raw in data.items()}
        return det
