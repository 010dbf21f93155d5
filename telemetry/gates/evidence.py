"""The evidence a gate carries from the moment it was opened. Pure: query results in, JSON out.

- **quality**: the route's online pass rate on its current model with its Wilson 95% interval,
  and the cost per correct answer with the interval that the pass rate's interval gives
  (``cost_per_request / high .. cost_per_request / low``);
- **diagnostics**: the closed-book / gold-context reading of ``telemetry report diagnostics``
  (:func:`telemetry.reports.diagnostics.read_gate`): whether a tier-up is a candidate at all;
- **projection**: the proposed model priced on the route's token mix (mean), and at the request
  distribution: a median request (p50 input and output tokens) and a heavy one (p99), each times
  the request rate for a monthly figure, next to the current model at the same tokens;
- **budget**: the owning team's monthly budget, its current monthly spend and the change;
- **earlier_tier_ups**: the route's tier-ups in the last 90 days (gates and TierSwitch alerts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telemetry.reports.diagnostics import Diagnostics, status
from telemetry.reports.projection import CostProjection
from telemetry.reports.query import MONTH_SECONDS
from telemetry.reports.stats import Proportion

LOOKBACK_DAYS = 90


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else float(f"{x:.{digits}g}")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class RequestShape:
    """One point of the route's request distribution and its cost per request on both models."""

    label: str
    input_tokens: int
    output_tokens: int
    current_cost: float | None
    proposed_cost: float | None


@dataclass(frozen=True, slots=True)
class Budget:
    team: str
    monthly_budget_usd: float | None
    team_monthly_spend_usd: float | None


@dataclass(frozen=True, slots=True)
class TierUp:
    at_ms: int
    from_model: str
    to_model: str
    source: str


def quality_evidence(quality: Proportion, cost_per_request: float | None, evaluator: str) -> dict[str, Any]:
    rate, low, high = quality.rate, quality.low, quality.high
    cpc = cost_per_request / rate if cost_per_request is not None and rate else None
    return {
        "evaluator": evaluator or None, "judged": quality.judged, "passed": quality.passed,
        "pass_rate": _r(rate, 4), "pass_rate_low95": _r(low, 4), "pass_rate_high95": _r(high, 4),
        "cost_per_request_usd": _r(cost_per_request),
        "cost_per_correct_usd": _r(cpc),
        "cost_per_correct_low95_usd": _r(cost_per_request / high) if cost_per_request is not None and high else None,
        "cost_per_correct_high95_usd": _r(cost_per_request / low) if cost_per_request is not None and low else None,
    }  # fmt: skip


def diagnostics_evidence(d: Diagnostics) -> dict[str, Any]:
    reading = d.reading()
    kinds = {
        kind: {"evaluator": r.evaluator, "judged": r.quality.judged, "pass_rate": _r(r.quality.rate, 4),
               "low95": _r(r.quality.low, 4), "high95": _r(r.quality.high, 4),
               "status": status(r.quality, d.target, d.min_judged)}
        for kind, r in d.chosen().items()
    }  # fmt: skip
    return {
        "target": d.target, "tier_up": reading.tier_up, "kinds": kinds,
        "findings": [{"code": f.code, "text": f.text} for f in reading.findings],
    }  # fmt: skip


def projection_evidence(p: CostProjection, shapes: Sequence[RequestShape]) -> dict[str, Any]:
    pr = p.projection
    rps = pr.requests_per_second
    out: dict[str, Any] = {
        "window_days": p.window.days, "requests": p.requests, "requests_per_second": _r(rps),
        "current_cost_per_request_usd": _r(pr.current_cost_per_request),
        "proposed_cost_per_request_usd": _r(pr.candidate_cost_per_request),
        "delta_per_request_usd": _r(pr.delta_per_request),
        "current_monthly_usd": _r(pr.current_monthly), "projected_monthly_usd": _r(pr.projected_monthly),
        "monthly_delta_usd": _r(pr.monthly_delta), "break_even_pass_rate": _r(p.break_even_pass_rate, 4),
        "priced": p.priced,
    }  # fmt: skip
    for s in shapes:
        out[s.label] = {
            "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
            "current_cost_per_request_usd": _r(s.current_cost), "proposed_cost_per_request_usd": _r(s.proposed_cost),
            "current_monthly_usd": _r(s.current_cost * rps * MONTH_SECONDS) if s.current_cost is not None and rps else None,
            "projected_monthly_usd": _r(s.proposed_cost * rps * MONTH_SECONDS) if s.proposed_cost is not None and rps else None,
        }  # fmt: skip
    return out


def budget_evidence(b: Budget, monthly_delta: float | None) -> dict[str, Any]:
    after = b.team_monthly_spend_usd + monthly_delta if b.team_monthly_spend_usd is not None and monthly_delta is not None else None
    share = monthly_delta / b.monthly_budget_usd if b.monthly_budget_usd and monthly_delta is not None else None
    return {
        "team": b.team or None, "monthly_budget_usd": b.monthly_budget_usd,
        "team_monthly_spend_usd": _r(b.team_monthly_spend_usd), "team_monthly_spend_after_usd": _r(after),
        "charge_share_of_budget": _r(share, 4),
        "over_budget_after": (after > b.monthly_budget_usd) if after is not None and b.monthly_budget_usd else None,
    }  # fmt: skip


def warnings(evidence: dict[str, Any]) -> list[str]:
    """What a reviewer must not miss, in words."""
    out: list[str] = []
    diag = evidence.get("diagnostics", {})
    if diag.get("tier_up") == "not indicated":
        out.append("the closed-book / gold-context reading does not indicate a tier-up: "
                   + "; ".join(f["code"] for f in diag.get("findings", [])))  # fmt: skip
    elif diag.get("tier_up") == "undetermined":
        out.append("the closed-book / gold-context gate has not been run (or has too few verdicts): run both before deciding")
    for t in evidence.get("earlier_tier_ups", []):
        out.append(f"we already tiered this route up on {t['at']} ({t['from']} -> {t['to']}, {t['source']})")
    budget = evidence.get("budget", {})
    if budget.get("over_budget_after"):
        out.append(f"team {budget.get('team')} would go over its monthly budget of ${budget.get('monthly_budget_usd'):,.2f}")
    proj = evidence.get("projection", {})
    if proj.get("priced") is False:
        out.append("the proposed model is not in the price book: no projection; add it to the price overrides")
    return out


def build(*, now_ms: int, quality: dict[str, Any], diagnostics: dict[str, Any], projection: dict[str, Any],
          budget: dict[str, Any], earlier: Sequence[TierUp]) -> dict[str, Any]:  # fmt: skip
    evidence: dict[str, Any] = {
        "computed_at": datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quality": quality, "diagnostics": diagnostics, "projection": projection, "budget": budget,
        "earlier_tier_ups": [{"at": _iso(t.at_ms), "from": t.from_model, "to": t.to_model, "source": t.source}
                             for t in sorted(earlier, key=lambda t: t.at_ms)],
    }  # fmt: skip
    evidence["warnings"] = warnings(evidence)
    return evidence
