"""ErrorStorm and its inhibition of quality, cost and latency alerts of the same route."""

from __future__ import annotations

from dataclasses import replace

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import MINUTE, Driver, Profile
from telemetry.routes import RoutesConfig

CONFIG = RoutesConfig.from_mapping({"routes": {"chat": {"latency_p95_ms": 1000}}})
CLEAN = Profile(route="chat", per_minute=10, latency_ms=500, error_rate=0.02, error_type="timeout")


def _driver(seed: int = 1) -> Driver:
    return Driver(DetectionEngine(CONFIG, env="test"), seed=seed)


def test_background_errors_do_not_storm() -> None:
    d = _driver()
    assert d.run(replace(CLEAN, retry_rate=0.03), 2 * 24 * 60) == []


def test_404_storm_after_an_alias_change_fires_within_minutes() -> None:
    d = _driver(seed=2)
    d.run(CLEAN, 6 * 60)
    change = d.now_ms
    d.run(replace(CLEAN, error_rate=0.5, error_type="model_not_found", model="gpt-latest"), 10)
    fired = d.firing("ErrorStorm")
    assert len(fired) == 1
    alert = fired[0]
    assert (alert.decided_at.timestamp() * 1000 - change) / MINUTE <= 3
    assert alert.labels["severity"] == "critical" and alert.labels["model"] == ""
    ev = alert.evidence
    assert ev["error_type"] == "model_not_found" and ev["top_requested_model"] == "gpt-latest"
    assert int(ev["errors"]) >= 5 and float(ev["error_share"]) >= 0.2  # type: ignore[arg-type]
    assert "model_not_found" in alert.annotations["summary"]


def test_storm_resolves_once_when_it_ends() -> None:
    d = _driver(seed=3)
    d.run(CLEAN, 6 * 60)
    d.run(replace(CLEAN, error_rate=0.5, error_type="model_not_found"), 20)
    d.run(CLEAN, 60)
    notes = [a.status for _, a in d.notifications if a.alertname == "ErrorStorm"]
    assert notes == ["firing", "resolved"]


def test_storm_inhibits_symptoms_on_its_route_only() -> None:
    d = _driver(seed=4)
    other = replace(CLEAN, route="other")
    d.run([CLEAN, other], 24 * 60)
    # the storm's route also gets slow and pricier: symptoms; the other route gets pricier: a cause
    storm = replace(CLEAN, error_rate=0.5, error_type="model_not_found", latency_ms=1500, cost_usd=0.04)
    d.run([storm, replace(other, cost_usd=0.04)], 90)
    names = {(a.route, a.alertname) for a in d.firing()}
    assert ("chat", "ErrorStorm") in names
    assert ("chat", "LatencySLOBreach") not in names and ("chat", "CostSpike") not in names
    assert ("other", "CostSpike") in names
    # inhibited conditions are held, not lost: once the storm (and its hold) is over they fire
    d.run(replace(CLEAN, latency_ms=1500), 45)
    assert ("chat", "LatencySLOBreach") in {(a.route, a.alertname) for a in d.firing()}


def test_an_alert_already_firing_is_not_repeated_while_inhibited() -> None:
    d = _driver(seed=5)
    d.run(CLEAN, 60)
    d.run(replace(CLEAN, latency_ms=1500), 30)
    assert len(d.firing("LatencySLOBreach")) == 1
    d.run(replace(CLEAN, latency_ms=1500, error_rate=0.5, error_type="model_not_found"), 6 * 60)
    latency = [a for _, a in d.notifications if a.alertname == "LatencySLOBreach"]
    assert [a.sequence for a in latency] == [1]  # the 4 h repeat was held back by the storm
