"""RetryAmplification: attempts per logical request above the retry budget."""

from __future__ import annotations

from dataclasses import replace

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import MINUTE, Driver, Profile
from telemetry.routes import RoutesConfig

CLEAN = Profile(route="agent.plan", per_minute=10, retry_rate=0.05)


def _driver(seed: int = 1) -> Driver:
    return Driver(DetectionEngine(RoutesConfig.load(None), env="test"), seed=seed)


def test_retries_within_budget_do_not_page() -> None:
    assert _driver().run(CLEAN, 24 * 60) == []


def test_retry_storm_fires_resolves_and_is_not_inhibited_by_the_error_storm() -> None:
    d = _driver(seed=2)
    d.run(CLEAN, 6 * 60)
    change = d.now_ms
    d.run(replace(CLEAN, retry_rate=0.7), 30)
    fired = d.firing("RetryAmplification")
    assert len(fired) == 1
    assert (fired[0].decided_at.timestamp() * 1000 - change) / MINUTE <= 10
    ev = fired[0].evidence
    assert float(ev["amplification"]) >= 1.5 and int(ev["logical_requests"]) >= 20  # type: ignore[arg-type]
    assert int(ev["attempts"]) == int(ev["logical_requests"]) + int(ev["retries"])  # type: ignore[arg-type]
    assert d.firing("ErrorStorm")  # the rate limiting itself storms too; both are sent
    d.run(CLEAN, 60)
    assert [a.status for _, a in d.notifications if a.alertname == "RetryAmplification"] == ["firing", "resolved"]


def test_too_few_logical_requests_do_not_page() -> None:
    d = _driver(seed=3)
    d.run(replace(CLEAN, per_minute=1, retry_rate=0.9), 3 * 60)
    assert d.firing("RetryAmplification") == []
