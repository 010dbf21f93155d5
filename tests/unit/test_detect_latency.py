"""LatencySLOBreach: counts of slow requests against per-route p95/p99 targets."""

from __future__ import annotations

from dataclasses import replace

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import MINUTE, Driver, Profile
from telemetry.routes import RoutesConfig

CONFIG = RoutesConfig.from_mapping({"routes": {"chat": {"latency_p95_ms": 1000, "latency_p99_ms": 1600}}})
CLEAN = Profile(route="chat", per_minute=10, latency_ms=500, latency_sigma=0.3)  # p95 ~ 820 ms


def _driver(seed: int = 1, config: RoutesConfig = CONFIG) -> Driver:
    return Driver(DetectionEngine(config, env="test"), seed=seed)


def test_within_slo_does_not_page() -> None:
    d = _driver()
    assert d.run(CLEAN, 2 * 24 * 60) == []


def test_p95_doubling_fires_within_minutes_with_counts() -> None:
    d = _driver(seed=2)
    d.run(CLEAN, 2 * 60)
    change = d.now_ms
    d.run(replace(CLEAN, latency_ms=1000), 30)
    fired = d.firing("LatencySLOBreach")
    assert len(fired) == 1
    alert = fired[0]
    assert (alert.decided_at.timestamp() * 1000 - change) / MINUTE <= 10
    ev = alert.evidence
    assert ev["p95_target_ms"] == 1000.0 and ev["p95_allowed_share"] == 0.05
    assert int(ev["p95_requests"]) >= 100 and float(ev["p95_slow_share"]) >= 0.075  # type: ignore[arg-type]
    assert float(ev["p95_p_value"]) <= 1e-4  # type: ignore[arg-type]
    assert 1000 < float(ev["p95_estimate_ms"]) < 3000  # type: ignore[arg-type]
    assert alert.labels["model"] == "" and "SLO" in alert.annotations["summary"]


def test_recovery_resolves_once_after_keep_firing_for() -> None:
    d = _driver(seed=3)
    d.run(CLEAN, 60)
    d.run(replace(CLEAN, latency_ms=1000), 30)
    d.run(CLEAN, 60)
    notes = [a for _, a in d.notifications if a.alertname == "LatencySLOBreach"]
    assert [a.status for a in notes] == ["firing", "resolved"]


def test_too_little_data_means_no_page() -> None:
    d = _driver(seed=4)
    d.run(replace(CLEAN, per_minute=1, latency_ms=5000), 6 * 60)  # all slow, but < 100 per hour
    assert d.firing() == []


def test_p99_needs_enough_requests_and_fires_on_its_own() -> None:
    config = RoutesConfig.from_mapping({"routes": {"chat": {"latency_p95_ms": 0, "latency_p99_ms": 900}}})
    d = _driver(seed=5, config=config)
    d.run(replace(CLEAN, latency_sigma=0.15), 60)  # p99 ~ 700 ms
    assert d.firing() == []
    d.run(replace(CLEAN, latency_sigma=0.15, latency_ms=800), 90)  # ~ 22% over 900 ms
    fired = d.firing("LatencySLOBreach")
    assert len(fired) == 1
    assert int(fired[0].evidence["p99_requests"]) >= 300 and "p95_requests" not in fired[0].evidence  # type: ignore[arg-type]


def test_pending_for_delays_the_first_notification() -> None:
    config = RoutesConfig.from_mapping(
        {"routes": {"chat": {"latency_p95_ms": 1000, "for": {"LatencySLOBreach": "5m"}}}}
    )
    fast, slow = _driver(seed=6), _driver(seed=6, config=config)
    for d in (fast, slow):
        d.run(CLEAN, 60)
        d.run(replace(CLEAN, latency_ms=1000), 30)
    t_fast = fast.firing("LatencySLOBreach")[0].starts_at
    t_slow = slow.firing("LatencySLOBreach")[0].starts_at
    assert (t_slow - t_fast).total_seconds() == 5 * 60
