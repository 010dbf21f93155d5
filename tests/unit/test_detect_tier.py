"""TierSwitch: the served model of a route moves to a pricier one."""

from __future__ import annotations

from dataclasses import replace

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.inputs import Gate, StoredInputs
from telemetry.detect.testing import DAY, HOUR, MINUTE, Driver, Profile
from telemetry.routes import RoutesConfig

SMALL = Profile(
    route="support.answer",
    per_minute=10,
    model="chat-default",
    served_model="small",
    cost_usd=0.01,
    judged_per_minute=1,
    pass_rate=0.8,
)


def _driver(seed: int = 1) -> Driver:
    return Driver(DetectionEngine(RoutesConfig.load(None), env="test"), seed=seed)


def test_switch_to_a_pricier_model_fires_with_cost_and_quality_evidence() -> None:
    d = _driver()
    d.run(SMALL, 24 * 60)
    change = d.now_ms
    d.run(replace(SMALL, served_model="large", cost_usd=0.03, pass_rate=0.9), 30)
    fired = d.firing("TierSwitch")
    assert len(fired) == 1
    alert = fired[0]
    assert alert.labels["model"] == "large"
    assert (alert.decided_at.timestamp() * 1000 - change) / MINUTE <= 6
    ev = alert.evidence
    assert ev["previous_model"] == "small" and ev["new_model"] == "large"
    assert ev["requested_model"] == "chat-default" and ev["served_differs_from_requested_share"] == 1.0
    before, after = float(ev["cost_per_request_before"]), float(ev["cost_per_request_after"])  # type: ignore[arg-type]
    assert 0.009 < before < 0.0115 and 0.027 < after < 0.035
    # monthly delta = delta per request x requests/s of the new model x 30 days
    rps = float(ev["new_model_requests_per_second"])  # type: ignore[arg-type]
    assert abs(float(ev["monthly_delta_usd"]) - (after - before) * rps * 30 * 86400) < 1.0  # type: ignore[arg-type]
    assert 0.75 < float(ev["quality_before"]) < 0.85 and int(ev["quality_before_judged"]) > 1000  # type: ignore[arg-type]
    assert ev["previous_tier_up_within_90d"] is None
    assert "large" in alert.annotations["summary"] and "/month" in alert.annotations["summary"]


def test_tier_switch_resolves_after_the_hold_and_does_not_repage() -> None:
    d = _driver(seed=2)
    d.run(SMALL, 24 * 60)
    large = replace(SMALL, served_model="large", cost_usd=0.03)
    d.run(large, 3 * 60)
    notes = [a for _, a in d.notifications if a.alertname == "TierSwitch"]
    assert [a.status for a in notes] == ["firing", "resolved"]
    held = (notes[1].ends_at.timestamp() - notes[0].starts_at.timestamp()) * 1000  # type: ignore[union-attr]
    assert HOUR <= held <= HOUR + 2 * MINUTE
    assert notes[1].evidence["quality_after_judged"] > 0  # type: ignore[operator]


def test_repeated_tier_up_names_the_previous_one_within_90_days() -> None:
    d = _driver(seed=3)
    d.run(SMALL, 24 * 60)
    large = replace(SMALL, served_model="large", cost_usd=0.03)
    d.run(large, 5 * 24 * 60)
    d.run(replace(large, served_model="frontier", cost_usd=0.09), 30)
    fired = d.firing("TierSwitch")
    assert [a.labels["model"] for a in fired] == ["large", "frontier"]
    ev = fired[1].evidence
    assert ev["previous_tier_up_within_90d"] == fired[0].starts_at.strftime("%Y-%m-%d")
    assert ev["previous_tier_up_from"] == "small" and ev["previous_tier_up_to"] == "large"
    assert ev["previous_model"] == "large"
    assert "tier-up also on" in fired[1].annotations["summary"]


def test_a_tier_down_is_recorded_as_info_and_unpriced_switches_and_fresh_routes_do_not_fire() -> None:
    d = _driver(seed=4)
    d.run(SMALL, 24 * 60)
    d.run(replace(SMALL, served_model="tiny", cost_usd=0.002), 60)
    d.run(replace(SMALL, served_model="mystery", cost_usd=None), 60)
    (down,) = d.firing("TierSwitch")
    assert down.labels["model"] == "tiny" and down.labels["severity"] == "info"
    assert down.evidence["direction"] == "down" and down.evidence["gated"] is None
    assert down.annotations["summary"].startswith("tier-down recorded")

    d = _driver(seed=5)  # a route's first model is its baseline, not a switch
    d.run(replace(SMALL, served_model="large", cost_usd=0.03), 2 * 60)
    assert d.firing("TierSwitch") == []


def test_gradual_rollout_of_a_pricier_model_fires_once() -> None:
    d = _driver(seed=6)
    d.run(SMALL, 24 * 60)
    mixed = [replace(SMALL, per_minute=7), replace(SMALL, per_minute=3, served_model="large", cost_usd=0.03)]
    d.run(mixed, 60)
    d.run(replace(SMALL, served_model="large", cost_usd=0.03), 2 * DAY // MINUTE)
    assert [a.labels["model"] for a in d.firing("TierSwitch")] == ["large"]


def _gated(route: str, model: str, state: str = "approved") -> StoredInputs:
    gate = Gate(id="gate-0000abcd", route=route, current_model="small", proposed_model=model, state=state,
                projected_monthly_usd=2500.0, projected_cost_per_request=0.025)  # fmt: skip
    return StoredInputs(gates=(gate,))


def test_an_ungated_tier_up_says_so_and_keeps_the_configured_severity() -> None:
    d = _driver(seed=7)
    d.run(SMALL, 24 * 60)
    d.engine.set_inputs(_gated("support.answer", "large", state="open"))  # open is not approved
    d.run(replace(SMALL, served_model="large", cost_usd=0.03), 30)
    (alert,) = d.firing("TierSwitch")
    assert alert.labels["severity"] == "warning"
    assert alert.evidence["gated"] == "no" and alert.evidence["gate_id"] is None
    assert alert.annotations["summary"].startswith("UNGATED tier-up")
    assert "telemetry gate open" in alert.annotations["description"]


def test_a_gated_tier_up_names_its_gate_and_compares_the_projection() -> None:
    d = _driver(seed=8)
    d.run(SMALL, 24 * 60)
    d.engine.set_inputs(_gated("support.answer", "large"))
    d.run(replace(SMALL, served_model="large", cost_usd=0.03), 30)
    (alert,) = d.firing("TierSwitch")
    assert alert.labels["severity"] == "info"
    ev = alert.evidence
    assert (ev["gated"], ev["gate_id"], ev["gate_state"]) == ("yes", "gate-0000abcd", "approved")
    assert ev["gate_projected_cost_per_request"] == 0.025 and ev["gate_projected_monthly_usd"] == 2500.0
    assert 1.0 < float(ev["observed_vs_projected"]) < 1.4  # type: ignore[arg-type]
    assert alert.annotations["summary"].startswith("gated tier-up (gate-0000abcd)")


def test_a_gate_for_another_route_or_model_does_not_gate_the_switch() -> None:
    for inputs in (_gated("other.route", "large"), _gated("support.answer", "frontier")):
        d = _driver(seed=9)
        d.run(SMALL, 24 * 60)
        d.engine.set_inputs(inputs)
        d.run(replace(SMALL, served_model="large", cost_usd=0.03), 30)
        (alert,) = d.firing("TierSwitch")
        assert alert.evidence["gated"] == "no"


def test_a_state_saved_before_gates_restores() -> None:
    from telemetry.detect.tier import TierSwitchDetector

    old = {"r": {"latched": {"large": 1}, "events": [{"model": "large", "previous_model": "small", "at_ms": 5,
                                                       "cost_before": 0.01, "cost_after": 0.03}]}}  # fmt: skip
    restored = TierSwitchDetector.from_state(old)
    assert restored.states["r"].events[0].direction == "up" and restored.states["r"].events[0].gate_id == ""


def test_a_move_to_the_declared_canary_is_not_an_ungated_tier_up() -> None:
    config = RoutesConfig.from_mapping({"routes": {"support.answer": {"canary": {
        "model": "large", "share": 0.3, "criteria": ["p95_latency_ms < 3000"]}}}})  # fmt: skip
    d = Driver(DetectionEngine(config, env="test"), seed=11)
    d.run(SMALL, 24 * 60)
    d.run([replace(SMALL, per_minute=7), replace(SMALL, per_minute=3, served_model="large", cost_usd=0.03)], 30)
    (alert,) = d.firing("TierSwitch")
    assert alert.evidence["gated"] == "canary" and alert.labels["severity"] == "info"
    assert alert.annotations["summary"].startswith("canary tier-up")
