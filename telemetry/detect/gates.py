"""TierUpPostmortemDue and TierDownReview: the tier-up discipline coming back on its own.

Contract
--------
- **TierUpPostmortemDue**: one alert per gate (``route`` = the gate's route, ``model`` = its
  proposed model) while the gate is ``postmortem_due`` (the worker moves an applied gate there 30
  days after it was applied, with the realized figures): realized against projected monthly
  cost, pass rate and cost per correct answer before and after. It resolves when
  ``telemetry gate postmortem ID --findings ...`` closes the gate.
- **TierDownReview**: every ``TELEMETRY_TIER_DOWN_REVIEW_DAYS`` (182) of event time, counted
  from the first evaluation, one notification (``route`` ``*``) listing the routes that tiered up
  in the period and the over-served candidates of ``telemetry report tier-down`` with their
  monthly savings; it resolves after ``review_hold`` (1 day).

Both read the detectors' inputs (``ctx.inputs``, :mod:`telemetry.detect.inputs`): gates, and
under ``extra["tier_down_review"]`` the review period and the latest tier-down report. Until the
inputs were read once (``as_of_ms`` 0), they keep what they last said: a restart never resolves
and re-fires them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from pydantic import Field

from telemetry.contracts._time import ms_to_datetime
from telemetry.contracts.alert import Severity
from telemetry.detect.condition import Condition, Evidence, clip, pct, rounded, usd
from telemetry.detect.detector import Context, Detector
from telemetry.detect.inputs import Gate
from telemetry.detect.names import TIER_DOWN_REVIEW, TIER_UP_POSTMORTEM_DUE
from telemetry.detect.policy import DAY_MS, HOUR_MS, Duration, PolicySection

FLEET_ROUTE = "*"
"""The route label of a fleet-wide notification (TierDownReview)."""


def _day(ms: int | None) -> str | None:
    return ms_to_datetime(ms).strftime("%Y-%m-%d") if ms is not None else None


def _num(data: Any, key: str) -> float | None:
    value = data.get(key) if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(data: Any, key: str) -> int | None:
    value = _num(data, key)
    return None if value is None else int(value)


class PostmortemPolicy(PolicySection):
    """TierUpPostmortemDue has no keys of its own (its severity is in the routes file's table)."""


class TierUpPostmortemDetector(Detector):
    name: ClassVar[str] = "postmortem"
    alertname: ClassVar[str] = TIER_UP_POSTMORTEM_DUE
    severity: ClassVar[Severity] = "warning"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[type[PostmortemPolicy]] = PostmortemPolicy

    def __init__(self) -> None:
        self.due: list[Gate] = []

    def evaluate(self, ctx: Context) -> list[Condition]:
        if ctx.inputs.as_of_ms:  # else not read yet (a restart): what was due stays due
            self.due = [g for g in ctx.inputs.gates if g.state == "postmortem_due"]
        return [self._condition(g) for g in self.due]

    @staticmethod
    def _condition(g: Gate) -> Condition:
        pm = g.postmortem
        before, after = pm.get("before", {}), pm.get("after", {})
        realized, projected = g.realized_monthly_usd, g.projected_monthly_usd
        ratio = realized / projected if realized is not None and projected else None
        evidence: Evidence = {
            "gate_id": g.id, "previous_model": g.current_model, "new_model": g.proposed_model,
            "applied_at": _day(g.applied_at_ms), "postmortem_due_at": _day(g.postmortem_due_at_ms),
            "projected_monthly_usd": rounded(projected), "realized_monthly_usd": rounded(realized),
            "realized_vs_projected": rounded(ratio, 4),
            "pass_rate_before": rounded(_num(before, "pass_rate"), 4), "pass_rate_after": rounded(_num(after, "pass_rate"), 4),
            "judged_before": _int(before, "judged"), "judged_after": _int(after, "judged"),
            "cost_per_correct_before": rounded(_num(before, "cost_per_correct_usd")),
            "cost_per_correct_after": rounded(_num(after, "cost_per_correct_usd")),
            "cost_per_request_before": rounded(_num(before, "cost_per_request_usd")),
            "cost_per_request_after": rounded(_num(after, "cost_per_request_usd")),
        }  # fmt: skip
        summary = (
            f"postmortem due for {g.id} ({g.route}: {g.current_model} -> {g.proposed_model}): realized "
            f"{usd(realized)}/month vs projected {usd(projected)}"
        )
        description = (
            f"Thirty days ago {g.route} moved to {g.proposed_model} under gate {g.id}. Realized monthly cost "
            f"{usd(realized)} against {usd(projected)} projected"
            + (f" ({ratio:.2f}x)" if ratio is not None else "")
            + f"; pass rate {pct(_num(before, 'pass_rate'))} before, {pct(_num(after, 'pass_rate'))} after; cost per "
            f"correct answer {usd(_num(before, 'cost_per_correct_usd'))} before, "
            f"{usd(_num(after, 'cost_per_correct_usd'))} after. Did the bigger model buy what its hypothesis said? "
            f"Write it down: telemetry gate postmortem {g.id} --findings \"...\" (that resolves this alert)."
        )
        return Condition(alertname=TIER_UP_POSTMORTEM_DUE, route=g.route, model=g.proposed_model, summary=clip(summary),
                         description=description, evidence=evidence,
                         decided_at_ms=g.postmortem_due_at_ms or g.applied_at_ms or 0)  # fmt: skip

    def to_state(self) -> Any:
        return {"due": [{**asdict(g), "postmortem": dict(g.postmortem)} for g in self.due]}

    @classmethod
    def from_state(cls, data: Any) -> TierUpPostmortemDetector:
        d = cls()
        if isinstance(data, dict):
            d.due = [Gate(**g) for g in data.get("due", []) if isinstance(g, dict)]
        return d

    def repair_clock(self, wall_ms: int) -> None:
        return None


class ReviewPolicy(PolicySection):
    """TierDownReview's keys ([defaults] only: the review is fleet-wide)."""

    review_hold: Duration = Field(HOUR_MS, ge=60_000)


class TierDownReviewDetector(Detector):
    name: ClassVar[str] = "tier_down_review"
    alertname: ClassVar[str] = TIER_DOWN_REVIEW
    severity: ClassVar[Severity] = "info"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[type[ReviewPolicy]] = ReviewPolicy

    def __init__(self) -> None:
        self.period_start_ms: int | None = None
        self.review_at_ms: int | None = None
        self.content: dict[str, Any] = {}

    def evaluate(self, ctx: Context) -> list[Condition]:
        now = ctx.now_ms
        data = ctx.inputs.extra.get("tier_down_review")
        if not isinstance(data, dict) or not now:
            return self._held(ctx)
        every = int(float(data.get("every_days", 182)) * DAY_MS)
        if self.period_start_ms is None:
            self.period_start_ms = now
        if now - self.period_start_ms >= every and isinstance(data.get("report"), dict):
            self.review_at_ms, self.content = now, dict(data["report"])
            self.period_start_ms = now
        return self._held(ctx)

    def _held(self, ctx: Context) -> list[Condition]:
        if self.review_at_ms is None:
            return []
        hold = ctx.routes.defaults.section(ReviewPolicy).review_hold
        if ctx.now_ms - self.review_at_ms >= hold:
            return []
        c = self.content
        candidates = c.get("candidates", []) if isinstance(c.get("candidates"), list) else []
        tiered = c.get("tiered_up", []) if isinstance(c.get("tiered_up"), list) else []
        savings = sum(float(x.get("monthly_saving_usd") or 0.0) for x in candidates if isinstance(x, dict))
        top = "; ".join(f"{x.get('route')}: {x.get('current_model')} -> {x.get('cheaper_model')} saves "
                        f"{usd(_num(x, 'monthly_saving_usd'))}/month" for x in candidates[:5] if isinstance(x, dict))  # fmt: skip
        evidence: Evidence = {
            "period_days": rounded(_num(c, "period_days"), 4), "routes_tiered_up": len(tiered),
            "tiered_up": clip(", ".join(str(t) for t in tiered), 1000) or None,
            "candidates": len(candidates), "monthly_savings_usd": rounded(savings),
            "top_candidates": clip(top, 1000) or None,
        }  # fmt: skip
        summary = (f"tier-down review: {len(tiered)} route(s) tiered up in the period; {len(candidates)} over-served "
                   f"candidate(s) could save {usd(savings)}/month")  # fmt: skip
        description = (
            "The scheduled tier-down review (every TELEMETRY_TIER_DOWN_REVIEW_DAYS). Routes that moved up: "
            f"{', '.join(str(t) for t in tiered) or 'none'}. Cheaper models that serve as well (telemetry report "
            f"tier-down): {top or 'none'}. Open a gate for each move you make (direction down needs no review)."
        )
        return [Condition(alertname=TIER_DOWN_REVIEW, route=FLEET_ROUTE, model="", summary=clip(summary),
                          description=description, evidence=evidence, decided_at_ms=self.review_at_ms)]  # fmt: skip

    def to_state(self) -> Any:
        return {"period_start_ms": self.period_start_ms, "review_at_ms": self.review_at_ms, "content": self.content}

    @classmethod
    def from_state(cls, data: Any) -> TierDownReviewDetector:
        d = cls()
        if isinstance(data, dict):
            d.period_start_ms = data.get("period_start_ms")
            d.review_at_ms = data.get("review_at_ms")
            d.content = data.get("content") or {}
        return d

    def repair_clock(self, wall_ms: int) -> None:
        if self.period_start_ms is not None:
            self.period_start_ms = min(self.period_start_ms, wall_ms)
        if self.review_at_ms is not None:
            self.review_at_ms = min(self.review_at_ms, wall_ms)
