"""The pure simulation: false alarms on clean traffic, and detection of seeded regressions.

Sizes are cut to run in well under a minute; ``python -m telemetry.detect.simulation`` runs the
long version (the README figures).
"""

from __future__ import annotations

import pytest

from telemetry.detect.names import ALERT_NAMES, QUALITY_REGRESSION
from telemetry.detect.simulation import markdown, run_regressions, run_simulation

SEED = 7


@pytest.fixture(scope="module")
def clean_full():  # type: ignore[no-untyped-def]
    return run_simulation(route_days=6 * 30, seed=SEED, routes=6)


@pytest.fixture(scope="module")
def clean_quality():  # type: ignore[no-untyped-def]
    return run_simulation(route_days=40 * 30, seed=SEED, routes=40, with_requests=False)


@pytest.fixture(scope="module")
def detections():  # type: ignore[no-untyped-def]
    return run_regressions(seed=SEED, replicates=3)


def test_quality_false_alarms_under_one_per_route_per_month(clean_full, clean_quality) -> None:  # type: ignore[no-untyped-def]
    # 40 route-months of verdicts at ~50 judged/hour: the detector's target is 0.25
    assert clean_quality.route_days == 1200 and clean_quality.verdicts > 1_300_000
    assert clean_quality.per_route_month(QUALITY_REGRESSION) < 1.0
    assert clean_full.per_route_month(QUALITY_REGRESSION) < 1.0


def test_request_side_detectors_are_quiet_on_clean_traffic(clean_full) -> None:  # type: ignore[no-untyped-def]
    assert clean_full.route_days == 180 and clean_full.requests > 1_500_000
    for name in ALERT_NAMES:
        if name != QUALITY_REGRESSION:
            assert clean_full.per_route_day(name) <= 0.01, (name, clean_full.false_alarms)


# scenario -> (alert, max delay in seconds)
BOUNDS = {
    ("quality 90% -> 80%", "QualityRegression"): 12 * 3600,
    ("cost x3 by tier switch", "TierSwitch"): 10 * 60,
    ("cost x3 by tier switch", "CostSpike"): 30 * 60,
    ("p95 doubling", "LatencySLOBreach"): 20 * 60,
    ("404 storm after alias change", "ErrorStorm"): 10 * 60,
    ("retry storm", "RetryAmplification"): 15 * 60,
    ("truncation 2% -> 15%", "TruncationSpike"): 30 * 60,
}


def test_seeded_regressions_are_detected_with_bounded_delays(detections) -> None:  # type: ignore[no-untyped-def]
    found = {(d.scenario, d.alertname): d for d in detections}
    assert set(found) == set(BOUNDS)
    for key, bound in BOUNDS.items():
        d = found[key]
        assert d.detected == d.replicates == 3, key
        assert max(d.delays_s) <= bound, (key, d.delays_s)
        assert d.early_alerts == 0, key
    # the storm's symptoms are inhibited; only the retry storm's own rate limiting storms alongside
    for d in detections:
        allowed = {"ErrorStorm"} if d.scenario == "retry storm" else set()
        assert set(d.other_alerts) <= allowed, (d.scenario, d.other_alerts)
    quality = found[("quality 90% -> 80%", "QualityRegression")]
    assert all(50 <= v <= 600 for v in quality.verdicts_to_detect), quality.verdicts_to_detect


def test_report_is_markdown(clean_full, detections) -> None:  # type: ignore[no-untyped-def]
    text = markdown(clean_full, detections)
    assert "| QualityRegression |" in text and "| 404 storm after alias change | ErrorStorm | 3/3 |" in text
    print("\n" + text)
