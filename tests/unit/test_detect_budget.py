"""BudgetOverrun: projected monthly spend per route and per team."""

from __future__ import annotations

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import Driver, Profile
from telemetry.routes import RoutesConfig

# 10 requests/minute at ~$0.0102 -> ~$4,400 per 30 days per route
A = Profile(route="a", team="growth", per_minute=10, cost_usd=0.01)
B = Profile(route="b", team="growth", per_minute=10, cost_usd=0.01)


def _driver(config: RoutesConfig, seed: int = 1) -> Driver:
    return Driver(DetectionEngine(config, env="test"), seed=seed)


def test_no_budget_no_alert_and_within_budget_no_alert() -> None:
    assert _driver(RoutesConfig.load(None)).run([A, B], 12 * 60) == []
    config = RoutesConfig.from_mapping({"routes": {"a": {"monthly_budget_usd": 10_000}}})
    assert _driver(config).run([A, B], 12 * 60) == []


def test_route_over_budget_fires_after_the_minimum_span() -> None:
    config = RoutesConfig.from_mapping({"routes": {"a": {"monthly_budget_usd": 3000}}})
    d = _driver(config)
    d.run([A, B], 12 * 60)
    fired = d.firing("BudgetOverrun")
    assert [a.route for a in fired] == ["a"]
    assert fired[0].starts_at.hour == 6  # budget_min_span: 6 h of history first
    ev = fired[0].evidence
    assert 3000 < float(ev["projected_monthly_usd"]) < 6000 and ev["monthly_budget_usd"] == 3000  # type: ignore[arg-type]


def test_team_budget_sums_its_routes_and_uses_a_team_route_label() -> None:
    config = RoutesConfig.from_mapping({"teams": {"growth": {"monthly_budget_usd": 6000}}})
    d = _driver(config)
    d.run([A, B], 12 * 60)
    fired = d.firing("BudgetOverrun")
    assert len(fired) == 1
    alert = fired[0]
    assert alert.labels["route"] == "team:growth" and alert.labels["team"] == "growth"
    assert int(alert.evidence["routes"]) == 2  # type: ignore[arg-type]


def test_budget_clears_below_the_clear_ratio() -> None:
    config = RoutesConfig.from_mapping({"routes": {"a": {"monthly_budget_usd": 3000}}})
    d = _driver(config)
    d.run(A, 12 * 60)
    d.run(Profile(route="a", team="growth", per_minute=10, cost_usd=0.001), 36 * 60)
    notes = [a for _, a in d.notifications if a.alertname == "BudgetOverrun"]
    assert notes[0].status == "firing" and notes[-1].status == "resolved"
    assert [a.status for a in notes].count("resolved") == 1
    assert all(a.status == "firing" and a.sequence == i + 1 for i, a in enumerate(notes[:-1]))  # 4 h repeats
