"""TruncationSpike: the share of ok responses cut at the token limit."""

from __future__ import annotations

from dataclasses import replace

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import Driver, Profile
from telemetry.routes import RoutesConfig

CLEAN = Profile(route="docs.summarize", per_minute=10, truncation_rate=0.02)


def _driver(seed: int = 1) -> Driver:
    return Driver(DetectionEngine(RoutesConfig.load(None), env="test"), seed=seed)


def test_usual_truncation_does_not_page() -> None:
    assert _driver().run(CLEAN, 2 * 24 * 60) == []


def test_spike_fires_against_the_baseline_and_resolves() -> None:
    d = _driver(seed=2)
    d.run(CLEAN, 12 * 60)
    d.run(replace(CLEAN, truncation_rate=0.2), 30)
    fired = d.firing("TruncationSpike")
    assert len(fired) == 1
    ev = fired[0].evidence
    assert float(ev["recent_share"]) >= 0.07 and float(ev["baseline_share"]) < 0.03  # type: ignore[arg-type]
    assert float(ev["p_value_one_sided"]) <= 1e-6  # type: ignore[arg-type]
    d.run(CLEAN, 60)
    assert [a.status for _, a in d.notifications if a.alertname == "TruncationSpike"] == ["firing", "resolved"]


def test_no_baseline_no_page() -> None:
    d = _driver(seed=3)
    d.run(replace(CLEAN, truncation_rate=0.5), 60)
    assert d.firing() == []
