"""TrafficStopped: a busy route that goes silent pages once; a quiet one never does."""

from __future__ import annotations

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import Driver, Profile
from telemetry.routes import RoutesConfig


def _names(alerts: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(a.alertname, a.status) for a in alerts if a.alertname == "TrafficStopped"]


def test_a_busy_route_that_goes_silent_pages_once_and_resolves_at_the_next_request() -> None:
    driver = Driver(DetectionEngine(RoutesConfig()), seed=3)
    busy = Profile(route="support.answer", per_minute=5.0)
    assert _names(driver.run(busy, 120)) == []
    silent = Profile(route="support.answer", per_minute=0.0)
    during = _names(driver.run(silent, 30))
    assert during == [("TrafficStopped", "firing")]
    fired = [a for _, a in driver.notifications if a.alertname == "TrafficStopped"][0]
    assert fired.evidence["requests_in_window"] == 0 and fired.evidence["baseline_requests"] >= 200
    assert _names(driver.run(busy, 5)) == [("TrafficStopped", "resolved")]


def test_a_quiet_route_cannot_be_told_from_chance_and_never_fires() -> None:
    driver = Driver(DetectionEngine(RoutesConfig()), seed=4)
    driver.run(Profile(route="docs.rare", per_minute=0.5), 180)
    assert _names(driver.run(Profile(route="docs.rare", per_minute=0.0), 60)) == []


def test_silence_alpha_zero_turns_it_off_for_a_route() -> None:
    config = RoutesConfig.from_toml("[routes.\"batch.nightly\"]\nsilence_alpha = 0\n")
    driver = Driver(DetectionEngine(config), seed=5)
    driver.run(Profile(route="batch.nightly", per_minute=5.0), 120)
    assert _names(driver.run(Profile(route="batch.nightly", per_minute=0.0), 30)) == []
