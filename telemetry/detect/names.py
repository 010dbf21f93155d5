"""The alert names the detectors raise, which of them an error storm inhibits, and the team route prefix.

Each detector declares the alert it raises (:attr:`telemetry.detect.detector.Detector.alertname`);
the constants live here so that the engine (inhibition), the simulation and the tests can name
them without importing a detector. This module imports nothing.
"""

from __future__ import annotations

from typing import Final

QUALITY_REGRESSION: Final = "QualityRegression"
COST_SPIKE: Final = "CostSpike"
TIER_SWITCH: Final = "TierSwitch"
LATENCY_SLO_BREACH: Final = "LatencySLOBreach"
ERROR_STORM: Final = "ErrorStorm"
RETRY_AMPLIFICATION: Final = "RetryAmplification"
TRUNCATION_SPIKE: Final = "TruncationSpike"
BUDGET_OVERRUN: Final = "BudgetOverrun"
TRAFFIC_STOPPED: Final = "TrafficStopped"
TIER_UP_POSTMORTEM_DUE: Final = "TierUpPostmortemDue"
TIER_DOWN_REVIEW: Final = "TierDownReview"
CANARY_VERDICT: Final = "CanaryVerdict"
JUDGE_DRIFT: Final = "JudgeDrift"

ALERT_NAMES: Final[tuple[str, ...]] = (
    QUALITY_REGRESSION,
    COST_SPIKE,
    TIER_SWITCH,
    LATENCY_SLO_BREACH,
    ERROR_STORM,
    RETRY_AMPLIFICATION,
    TRUNCATION_SPIKE,
    BUDGET_OVERRUN,
    TRAFFIC_STOPPED,
    TIER_UP_POSTMORTEM_DUE,
    TIER_DOWN_REVIEW,
    CANARY_VERDICT,
    JUDGE_DRIFT,
)
"""Every alert name, in the order the docs list them (the detectors are registered in
:data:`telemetry.detect.registry.DETECTORS`, in evaluation order; a test keeps the two in step)."""

FROM_INPUTS: Final[frozenset[str]] = frozenset({TIER_UP_POSTMORTEM_DUE, TIER_DOWN_REVIEW, CANARY_VERDICT, JUDGE_DRIFT})
"""Alerts decided on what the detection owner reads from storage (gates, canary arms' totals,
evaluator agreement: :mod:`telemetry.detect.inputs`), not on the facts alone."""

INHIBITED_BY_ERROR_STORM: Final[frozenset[str]] = frozenset({QUALITY_REGRESSION, COST_SPIKE, LATENCY_SLO_BREACH})
"""While a route's ErrorStorm fires, these alerts of the same route are symptoms: not sent.

TierSwitch (often the cause of a storm), RetryAmplification (its own harm: load and spend),
TruncationSpike, BudgetOverrun and TrafficStopped are not inhibited.
"""

TEAM_ROUTE_PREFIX: Final = "team:"
"""A team-level BudgetOverrun carries ``route = "team:<name>"``: the fingerprint's identity labels
(alertname, route, model, env, severity) do not include the team, so the route label tells two
teams' budget alerts apart."""
