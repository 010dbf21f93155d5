"""CostSpike: cost per request (and per correct answer) against a robust baseline."""

from __future__ import annotations

from dataclasses import replace

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import MINUTE, Driver, Profile
from telemetry.routes import RoutesConfig

CLEAN = Profile(route="search.rerank", per_minute=10, cost_usd=0.01)


def _driver(seed: int = 1) -> Driver:
    return Driver(DetectionEngine(RoutesConfig.load(None), env="test"), seed=seed)


def test_clean_cost_does_not_page() -> None:
    d = _driver()
    assert d.run(CLEAN, 3 * 24 * 60) == []


def test_no_alert_before_the_baseline_has_enough_hours() -> None:
    d = _driver()
    d.run(CLEAN, 6 * 60)
    assert d.run(replace(CLEAN, cost_usd=0.05), 60) == []


def test_tripled_cost_fires_over_both_windows_then_clears_once() -> None:
    d = _driver(seed=2)
    d.run(CLEAN, 24 * 60)
    change = d.now_ms
    d.run(replace(CLEAN, cost_usd=0.03), 90)
    fired = d.firing("CostSpike")
    assert len(fired) == 1
    alert = fired[0]
    delay_min = (alert.decided_at.timestamp() * 1000 - change) / MINUTE
    assert 10 <= delay_min <= 25  # the 1 h window needs a quarter of its requests at 3x
    ev = alert.evidence
    assert alert.labels["model"] == "" and ev["metric"] == "cost_per_request"
    assert 0.0095 < float(ev["baseline_cost_per_request"]) < 0.011  # type: ignore[arg-type]
    assert float(ev["ratio_short"]) >= 1.5 and float(ev["ratio_long"]) >= 1.5  # type: ignore[arg-type]
    assert float(ev["monthly_delta_usd"]) > 0 and ev["top_served_model"] == "m"  # type: ignore[arg-type]
    assert "search.rerank" in alert.annotations["summary"] and len(alert.annotations["summary"]) <= 200

    d.run(CLEAN, 60)
    cost_notes = [a for _, a in d.notifications if a.alertname == "CostSpike"]
    assert [a.status for a in cost_notes] == ["firing", "resolved"]


def test_hysteresis_holds_between_clear_and_fire_levels() -> None:
    d = _driver(seed=3)
    d.run(CLEAN, 24 * 60)
    d.run(replace(CLEAN, cost_usd=0.03), 60)
    assert len(d.firing("CostSpike")) == 1
    d.run(replace(CLEAN, cost_usd=0.014), 120)  # 1.4x: below fire (1.5x) but above clear (1.2x)
    assert [a.status for _, a in d.notifications if a.alertname == "CostSpike"] == ["firing"]


def test_cost_per_correct_answer_fires_on_a_quality_collapse_at_equal_cost() -> None:
    d = _driver(seed=4)
    judged = replace(CLEAN, judged_per_minute=2, pass_rate=0.9)
    d.run(judged, 24 * 60)
    d.run(replace(judged, pass_rate=0.4), 8 * 60)
    fired = d.firing("CostSpike")
    assert len(fired) == 1 and fired[0].evidence["metric"] == "cost_per_correct"
    assert float(fired[0].evidence["recent_cost_per_correct"]) > 1.5 * float(  # type: ignore[arg-type]
        fired[0].evidence["baseline_cost_per_correct"]  # type: ignore[arg-type]
    )
    assert len(d.firing("QualityRegression")) == 1


def test_a_cost_spike_names_the_prompt_version_that_started_near_it() -> None:
    from telemetry.detect.inputs import PromptVersion, StoredInputs

    d = _driver(seed=2)
    d.run(CLEAN, 24 * 60)
    change = d.now_ms
    versions = (PromptVersion("v12", change - 5 * 24 * 3_600_000, 9000), PromptVersion("v13", change + 60_000, 400))
    d.engine.set_inputs(StoredInputs(as_of_ms=change, prompt_versions={"search.rerank": versions}))
    d.run(replace(CLEAN, cost_usd=0.03), 30)
    (alert,) = d.firing("CostSpike")
    ev = alert.evidence
    assert (ev["prompt_version_change"], ev["prompt_version_previous"]) == ("v13", "v12")
    assert "Prompt version v13 started serving" in alert.annotations["description"]

    quiet = _driver(seed=2)  # an old prompt change is not near: nothing named
    quiet.run(CLEAN, 24 * 60)
    quiet.engine.set_inputs(StoredInputs(as_of_ms=quiet.now_ms, prompt_versions={"search.rerank": versions[:1]}))
    quiet.run(replace(CLEAN, cost_usd=0.03), 30)
    assert quiet.firing("CostSpike")[0].evidence["prompt_version_change"] is None
