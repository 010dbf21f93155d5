"""QualityRegression: Bernoulli CUSUM per (route, evaluator version), with explicit event times."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.quality import QualityDetector, QualityPolicy
from telemetry.detect.testing import DAY, HOUR, T0, Driver, Profile, verdict
from telemetry.routes import RoutesConfig

CLEAN = Profile(route="support.answer", team="support", per_minute=5, judged_per_minute=1, pass_rate=0.9)


def _driver(seed: int = 1, config: RoutesConfig | None = None) -> Driver:
    return Driver(DetectionEngine(config or RoutesConfig.load(None), env="test"), seed=seed)


def test_clean_traffic_does_not_page() -> None:
    d = _driver()
    assert d.run(CLEAN, 3 * 24 * 60) == []
    st = d.engine.quality.states["support.answer"]["judge@v1"]
    assert st.armed and abs(st.p_hat - 0.9) < 0.02


def test_ten_point_drop_fires_with_evidence() -> None:
    d = _driver()
    d.run(CLEAN, 24 * 60)
    change = d.now_ms
    d.run(replace(CLEAN, pass_rate=0.8), 12 * 60)
    fired = d.firing("QualityRegression")
    assert len(fired) == 1
    alert = fired[0]
    delay_h = (alert.decided_at.timestamp() * 1000 - change) / HOUR
    assert 0 < delay_h < 10
    assert alert.labels == {
        "alertname": "QualityRegression",
        "route": "support.answer",
        "model": "m",
        "team": "support",
        "severity": "warning",
        "env": "test",
    }
    ev = alert.evidence
    assert ev["judge_version"] == "judge@v1" and ev["evaluator"] == "online"
    assert abs(float(ev["baseline_pass_rate"]) - 0.9) < 0.03  # type: ignore[arg-type]
    assert float(ev["baseline_wilson_low"]) < float(ev["baseline_pass_rate"]) < float(ev["baseline_wilson_high"])  # type: ignore[arg-type]
    assert float(ev["recent_pass_rate"]) < 0.86  # type: ignore[arg-type]
    assert int(ev["recent_judged"]) >= 20 and int(ev["recent_passed"]) < int(ev["recent_judged"])  # type: ignore[arg-type]
    assert 0.1 < float(ev["judged_fraction"]) < 0.3  # type: ignore[arg-type]  # 1 judged of 5 per minute
    assert float(ev["p_value_one_sided"]) < 0.01  # type: ignore[arg-type]
    assert float(ev["cusum_statistic"]) >= float(ev["cusum_threshold"]) > 4  # type: ignore[arg-type]
    summary = alert.annotations["summary"]
    assert len(summary) <= 200 and "support.answer" in summary and " m " in summary and "%" in summary


def test_regression_is_not_absorbed_and_resolves_once_after_recovery() -> None:
    d = _driver(seed=2)
    d.run(CLEAN, 24 * 60)
    d.run(replace(CLEAN, pass_rate=0.75), 12 * 60)
    assert len(d.firing("QualityRegression")) == 1
    st = d.engine.quality.states["support.answer"]["judge@v1"]
    assert st.alarm and abs(st.p_hat - 0.9) < 0.03  # frozen baseline, regression kept out
    d.run(CLEAN, 12 * 60)
    statuses = [a.status for _, a in d.notifications if a.alertname == "QualityRegression"]
    assert statuses[0] == "firing" and statuses[-1] == "resolved"
    assert statuses.count("resolved") == 1
    assert len(d.firing("QualityRegression")) == 1  # no second page after recovery
    assert abs(st.p_hat - 0.9) < 0.03


def test_new_judge_version_rebaselines_instead_of_alerting() -> None:
    d = _driver(seed=13)
    d.run(CLEAN, 24 * 60)
    stricter = replace(CLEAN, evaluator="judge@v2", pass_rate=0.72)
    d.run(stricter, 36 * 60)
    assert d.firing() == []
    states = d.engine.quality.states["support.answer"]
    assert states["judge@v2"].armed and abs(states["judge@v2"].p_hat - 0.72) < 0.04
    d.run(replace(stricter, pass_rate=0.55), 12 * 60)  # a real drop under the new judge
    fired = d.firing("QualityRegression")
    assert len(fired) == 1 and fired[0].evidence["judge_version"] == "judge@v2"


def test_warm_up_cannot_page() -> None:
    d = _driver(seed=4)
    d.run(replace(CLEAN, pass_rate=0.3), 6 * 60)  # a terrible start is a baseline, not an alert
    assert d.firing() == []


def test_only_configured_verdict_kinds_count() -> None:
    d = _driver(seed=5)
    human = replace(CLEAN, verdict_kind="human")
    d.run(human, 24 * 60)
    d.run(replace(human, pass_rate=0.5), 12 * 60)
    assert d.firing() == [] and "support.answer" not in d.engine.quality.states

    config = RoutesConfig.from_mapping({"routes": {"support.answer": {"quality_kinds": ["human"]}}})
    d = _driver(seed=5, config=config)
    d.run(human, 24 * 60)
    d.run(replace(human, pass_rate=0.5), 12 * 60)
    assert len(d.firing("QualityRegression")) == 1


def test_persistent_regression_becomes_the_baseline_after_accept_after() -> None:
    config = RoutesConfig.from_mapping({"defaults": {"quality_accept_after": "12h"}})
    d = _driver(seed=6, config=config)
    d.run(CLEAN, 24 * 60)
    d.run(replace(CLEAN, pass_rate=0.75), 48 * 60)
    notes = [a for _, a in d.notifications if a.alertname == "QualityRegression"]
    assert [a.status for a in notes if a.sequence == 1 or a.status == "resolved"] == ["firing", "resolved"]
    st = d.engine.quality.states["support.answer"]["judge@v1"]
    assert not st.alarm and abs(st.p_hat - 0.75) < 0.05


def test_fixed_h_and_two_wrong_cannot_page() -> None:
    det = QualityDetector()
    config = RoutesConfig.from_mapping(
        {"defaults": {"quality_h": 5.0, "quality_min_verdicts": 20, "quality_baseline_lag": "0s"}}
    )
    policy = config.defaults.section(QualityPolicy)
    det.observe_verdicts([verdict(T0 + i * 60_000, passed=i % 10 != 0) for i in range(400)], lambda _: policy)
    st = det.states["r"]["judge@v1"]
    assert st.armed and st.h == 5.0
    det.observe_verdicts([verdict(T0 + DAY + i, passed=False) for i in range(2)], lambda _: policy)
    assert not st.alarm


@settings(deadline=None, max_examples=40)
@given(outcomes=st.lists(st.booleans(), min_size=1, max_size=300))
def test_property_cusum_never_negative_and_needs_enough_failures(outcomes: list[bool]) -> None:
    det = QualityDetector()
    config = RoutesConfig.from_mapping({"defaults": {"quality_min_verdicts": 100, "quality_baseline_lag": "0s"}})
    section = config.defaults.section(QualityPolicy)

    def policy(route: str) -> QualityPolicy:
        return section

    det.observe_verdicts([verdict(T0 + i * 60_000, passed=i % 10 != 0) for i in range(1000)], policy)
    st = det.states["r"]["judge@v1"]
    assert st.armed
    needed = st.h / st.up
    failures = 0
    for i, ok in enumerate(outcomes):
        det.observe_verdicts([verdict(T0 + DAY + i * 60_000, passed=ok)], policy)
        failures += not ok
        assert st.s >= 0.0
        if st.alarm:
            assert failures >= needed
            break


def test_a_regression_names_the_prompt_version_that_started_near_its_change_point() -> None:
    from telemetry.detect.inputs import PromptVersion, StoredInputs

    d = _driver()
    d.run(CLEAN, 24 * 60)
    change = d.now_ms
    versions = (PromptVersion("support-v12", change - 10 * DAY, 50_000), PromptVersion("support-v13", change + 5 * 60_000, 900))
    d.engine.set_inputs(StoredInputs(as_of_ms=change, prompt_versions={"support.answer": versions}))
    d.run(replace(CLEAN, pass_rate=0.7), 8 * 60)
    (alert,) = d.firing("QualityRegression")
    ev = alert.evidence
    assert (ev["prompt_version_change"], ev["prompt_version_previous"]) == ("support-v13", "support-v12")
    assert "Prompt version support-v13 started serving" in alert.annotations["description"]
