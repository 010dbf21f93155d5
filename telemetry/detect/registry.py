"""The registered detectors: the one list the engine, the routes file and the snapshot follow.

Order is part of the behaviour: the engine evaluates each route's detectors in this order, then
the fleet phase (quality, then budgets) in the same order, and the notifications of one
evaluation come out in it. (:data:`telemetry.detect.names.ALERT_NAMES` is the order the docs
list the alerts in.) To add a detector: write its class (a module of its own
implementing :class:`~telemetry.detect.detector.Detector`, with its
:class:`~telemetry.detect.policy.PolicySection`) and add it here.
"""

from __future__ import annotations

from typing import Final

from telemetry.detect.budget import BudgetDetector
from telemetry.detect.canary import CanaryDetector
from telemetry.detect.cost import CostSpikeDetector
from telemetry.detect.detector import Detector
from telemetry.detect.gates import TierDownReviewDetector, TierUpPostmortemDetector
from telemetry.detect.judge import JudgeDriftDetector
from telemetry.detect.latency import LatencySLODetector
from telemetry.detect.policy import PolicySection
from telemetry.detect.quality import QualityDetector
from telemetry.detect.retry import RetryAmplificationDetector
from telemetry.detect.silence import TrafficStoppedDetector
from telemetry.detect.storm import ErrorStormDetector
from telemetry.detect.tier import TierSwitchDetector
from telemetry.detect.truncation import TruncationSpikeDetector

DETECTORS: Final[tuple[type[Detector], ...]] = (
    ErrorStormDetector,
    TierSwitchDetector,
    CostSpikeDetector,
    LatencySLODetector,
    RetryAmplificationDetector,
    TruncationSpikeDetector,
    TrafficStoppedDetector,
    QualityDetector,
    BudgetDetector,
    TierUpPostmortemDetector,
    TierDownReviewDetector,
    CanaryDetector,
    JudgeDriftDetector,
)
"""Every detector, in evaluation order."""

SECTIONS: Final[tuple[type[PolicySection], ...]] = tuple(d.policy for d in DETECTORS)
"""Each detector's section of the route policy, in registry order."""
