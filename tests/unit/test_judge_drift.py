"""JudgeDrift: an LLM judge's agreement with human labels, from the stored pairs (an input).

Explicit event times; the input is built by hand as the agreement source would return it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from telemetry.contracts.alert import Alert
from telemetry.detect.agreement import DAY_MS, HOUR_MS, INPUT_KEY, HourPairs, Pairs
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.inputs import StoredInputs
from telemetry.detect.judge import (
    JUDGE_MODEL_PREFIX,
    MAX_JUDGES_PER_ROUTE,
    JudgeDriftDetector,
    JudgePolicy,
    judge_assessment,
)
from telemetry.detect.judge_simulation import (
    CLEAN,
    DOCS_BEGIN,
    DOCS_END,
    DRIFTS,
    detection_delays,
    false_alarms,
    updated,
)
from telemetry.detect.names import ALERT_NAMES, JUDGE_DRIFT
from telemetry.detect.registry import DETECTORS
from telemetry.detect.testing import HOUR, T0, request
from telemetry.routes import RoutesConfig

DOCS = Path(__file__).resolve().parents[2] / "docs" / "judges.md"
ROUTE, JUDGE = "support.answer", "helpfulness@v3"
TODAY = T0 // DAY_MS + 60
NOW = TODAY * DAY_MS + 12 * HOUR
GOOD = Pairs(17, 0, 1, 2)  # a day of a good judge: 20 pairs, humans fail 2, it fails one human pass
LENIENT = Pairs(17, 2, 1, 0)  # it passes what humans fail


def at_hour(day: int) -> int:
    """The hour bucket of a day's pairs in these tests: 06:00 (before NOW's 12:00)."""
    return day * 24 + 6


def days(*spans: tuple[int, Pairs]) -> tuple[HourPairs, ...]:
    """Consecutive days ending today: ``(how many days, pairs each day)``, oldest first, each
    day's pairs at 06:00."""
    out: list[HourPairs] = []
    n = sum(k for k, _ in spans)
    day = TODAY - n + 1
    for k, pairs in spans:
        for _ in range(k):
            out.append(HourPairs(at_hour(day), pairs))
            day += 1
    return tuple(out)


def engine(config: RoutesConfig | None = None) -> DetectionEngine:
    e = DetectionEngine(config or RoutesConfig(), env="test")
    e.observe_requests([request(NOW - 60_000, ROUTE, team="support")])
    return e


def evaluate(e: DetectionEngine, data: dict[str, Any] | None, at: int = NOW) -> list[Alert]:
    if data is not None:
        e.set_inputs(StoredInputs(as_of_ms=at, extra={INPUT_KEY: data}))
    e.observe_requests([request(at - 1000, ROUTE, team="support")])
    """JudgeDrift's first firings and resolutions at ``at`` (repeats every 4 h left out)."""
    out = [a for a in e.evaluate(at) if a.labels["alertname"] == JUDGE_DRIFT]
    return [a for a in out if a.status == "resolved" or a.sequence == 1]


# --- the registry -------------------------------------------------------------------------------
def test_registered_with_its_alert_name() -> None:
    assert JudgeDriftDetector in DETECTORS and JUDGE_DRIFT in ALERT_NAMES
    config = RoutesConfig.from_mapping({"routes": {ROUTE: {"judge_recent_window": "3d", "judge_baseline_window": "12h"}}})
    policy = config.for_route(ROUTE).section(JudgePolicy)
    assert (policy.recent_hours, policy.baseline_hours, policy.lookback_hours) == (72, 12, 84)
    with pytest.raises(ValueError, match="whole hours"):
        JudgePolicy(judge_recent_window="90m")
    with pytest.raises(ValueError, match="between 1h and 28d"):
        JudgePolicy(judge_recent_window="30d")


# --- the rules ----------------------------------------------------------------------------------
def test_a_steady_good_judge_does_not_fire() -> None:
    a = judge_assessment(days((38, GOOD)), NOW, JudgePolicy())
    assert a.recent_usable and a.baseline_usable and not a.fires and not a.holds
    assert a.recent.kappa == pytest.approx(a.baseline.kappa)
    assert a.p_false_pass is None and a.p_false_fail is None  # no drop to test


def test_a_lenient_judge_fires_the_drop_rule() -> None:
    a = judge_assessment(days((28, GOOD), (10, LENIENT)), NOW, JudgePolicy())
    assert a.fire_drop and a.drop is not None and a.drop >= 0.2
    assert a.p_false_pass is not None and a.p_false_fail is not None
    assert a.p_false_pass < 5e-4 and a.p_false_fail > 0.05  # it is the false passes that rose
    assert a.recent.pairs.pass_fail == 20 and a.baseline.pairs.pass_fail == 0


def test_a_judge_that_never_agreed_fires_the_floor_rule_without_a_baseline() -> None:
    a = judge_assessment(days((10, Pairs(12, 3, 4, 1))), NOW, JudgePolicy())
    assert not a.baseline_usable and a.fire_floor and not a.fire_drop
    assert a.recent_kappa_upper is not None and a.recent_kappa_upper < 0.4
    off = judge_assessment(days((10, Pairs(12, 3, 4, 1))), NOW, JudgePolicy(judge_kappa_floor=0))
    assert not off.fires


def test_too_few_pairs_or_human_fails_decide_nothing() -> None:
    collapsed = Pairs(0, 2, 2, 0)
    few = judge_assessment(days((28, GOOD), (1, collapsed)), NOW, JudgePolicy(judge_recent_window="1d"))
    assert not few.recent_usable and not few.fires  # 4 pairs < 40
    no_fails = judge_assessment(days((28, GOOD), (10, Pairs(15, 0, 5, 0))), NOW, JudgePolicy())
    assert not no_fails.recent_usable and not no_fails.fires  # no human fail: kappa says nothing


def test_separate_fire_and_clear_levels() -> None:
    """A fall of 0.1-0.2 with a significant rise in false passes holds an alarm but cannot fire one."""
    mild = days((28, GOOD), (5, Pairs(17, 1, 1, 1)), (5, GOOD))
    a = judge_assessment(mild, NOW, JudgePolicy())
    assert a.drop is not None and 0.1 <= a.drop < 0.2 and a.p_false_pass is not None and a.p_false_pass <= 0.05
    assert a.hold_drop and not a.fires
    assert evaluate(engine(), {ROUTE: {JUDGE: mild}}) == []  # never fires from a clean state
    e = engine()
    assert len(evaluate(e, {ROUTE: {JUDGE: days((28, GOOD), (10, LENIENT))}})) == 1
    assert evaluate(e, {ROUTE: {JUDGE: mild}}, NOW + 60_000) == []  # ... but keeps one firing
    assert ROUTE in e.detector(JudgeDriftDetector).alarms


# --- through the engine -------------------------------------------------------------------------
def test_fires_once_per_judge_with_its_own_identity_and_resolves_once() -> None:
    e = engine()
    drifting = days((28, GOOD), (10, LENIENT))
    steady = days((38, GOOD))
    data = {ROUTE: {JUDGE: drifting, "faithfulness@v1": steady}}
    [fired] = evaluate(e, data)
    assert fired.status == "firing"
    assert fired.labels == {"alertname": JUDGE_DRIFT, "route": ROUTE, "model": JUDGE_MODEL_PREFIX + JUDGE,
                            "team": "support", "severity": "warning", "env": "test"}  # fmt: skip
    ev = fired.evidence
    assert ev["judge"] == JUDGE and ev["rule"] == "drop+floor" and ev["recent_pairs"] == 200
    assert float(ev["recent_kappa"]) < float(ev["baseline_kappa"]) - 0.2  # type: ignore[arg-type]
    assert float(ev["recent_false_pass_rate"]) == 1.0 and float(ev["baseline_false_pass_rate"]) == 0.0  # type: ignore[arg-type]
    assert len(fired.annotations["summary"]) <= 200 and JUDGE in fired.annotations["summary"]
    # the same input (and a new read of it) does not page again
    assert evaluate(e, None, NOW + 60_000) == []
    assert evaluate(e, {ROUTE: {JUDGE: drifting}}, NOW + 120_000) == []
    # the judge is fixed: ten good days later the recent window is clean again
    later = NOW + 10 * DAY_MS
    fixed = drifting + tuple(HourPairs(at_hour(TODAY + k), GOOD) for k in range(1, 11))
    [resolved] = evaluate(e, {ROUTE: {JUDGE: fixed}}, later)
    assert resolved.status == "resolved" and resolved.labels["model"] == JUDGE_MODEL_PREFIX + JUDGE
    assert evaluate(e, {ROUTE: {JUDGE: fixed}}, later + 60_000) == []


def test_two_judges_of_a_route_drifting_are_two_alerts() -> None:
    drifting = days((28, GOOD), (10, LENIENT))
    alerts = evaluate(engine(), {ROUTE: {JUDGE: drifting, "faithfulness@v1": drifting}})
    assert sorted(a.labels["model"] for a in alerts) == ["judge:faithfulness@v1", "judge:helpfulness@v3"]
    assert len({a.fingerprint for a in alerts}) == 2


def test_an_alarm_holds_while_labelling_pauses_then_clears() -> None:
    e = engine()
    drifting = days((28, GOOD), (10, LENIENT))
    assert len(evaluate(e, {ROUTE: {JUDGE: drifting}})) == 1
    # no label for 5 days: the recent window (10 days) still holds 5 drifted days -> still usable
    assert evaluate(e, {ROUTE: {JUDGE: drifting}}, NOW + 5 * DAY_MS) == []
    # 9 days: 1 drifted day = 20 pairs < 40, not usable: the alarm holds (no evidence either way)
    assert evaluate(e, {ROUTE: {JUDGE: drifting}}, NOW + 9 * DAY_MS) == []
    assert e.detector(JudgeDriftDetector).alarms[ROUTE][JUDGE].last_held_ms == NOW + 5 * DAY_MS
    # more than judge_recent_window since a usable window confirmed it: it clears
    [resolved] = evaluate(e, {ROUTE: {JUDGE: drifting}}, NOW + 16 * DAY_MS)
    assert resolved.status == "resolved"


def test_before_the_input_is_read_alarms_hold_and_survive_a_restart() -> None:
    e = engine()
    assert len(evaluate(e, {ROUTE: {JUDGE: days((28, GOOD), (10, LENIENT))}})) == 1
    restored = DetectionEngine.restore(e.snapshot(), RoutesConfig(), env="test")
    assert restored.detector(JudgeDriftDetector).alarms[ROUTE][JUDGE].since_ms == NOW
    assert evaluate(restored, None, NOW + 60_000) == []  # no input yet: neither re-fired nor resolved
    [resolved] = evaluate(restored, {}, NOW + 120_000)  # read: the judge has no pair any more
    assert resolved.status == "resolved"


def test_only_routes_with_traffic_and_a_bounded_number_of_judges() -> None:
    drifting = days((28, GOOD), (10, LENIENT))
    e = engine()
    many = {f"judge-{i}@v1": drifting for i in range(MAX_JUDGES_PER_ROUTE + 3)}
    alerts = evaluate(e, {ROUTE: many, "no.traffic": {JUDGE: drifting}})
    assert len(alerts) == MAX_JUDGES_PER_ROUTE and {a.labels["route"] for a in alerts} == {ROUTE}


def test_the_routes_file_sets_the_windows_per_route() -> None:
    config = RoutesConfig.from_mapping({"routes": {ROUTE: {"judge_kappa_drop": 0.9, "judge_kappa_floor": 0}}})
    assert evaluate(engine(config), {ROUTE: {JUDGE: days((28, GOOD), (10, LENIENT))}}) == []


def test_state_round_trips() -> None:
    det = JudgeDriftDetector()
    e = engine()
    evaluate(e, {ROUTE: {JUDGE: days((28, GOOD), (10, LENIENT))}})
    det = e.detector(JudgeDriftDetector)
    again = JudgeDriftDetector.from_state(orjson.loads(orjson.dumps(det.to_state())))
    assert again.to_state() == det.to_state() and again.alarms[ROUTE][JUDGE].evidence["judge"] == JUDGE


# --- QualityRegression states the judge's agreement ---------------------------------------------
def test_quality_regression_evidence_states_the_judges_current_agreement() -> None:
    from dataclasses import replace

    from telemetry.detect.testing import Driver, Profile

    clean = Profile(route=ROUTE, team="support", per_minute=5, judged_per_minute=1, pass_rate=0.9, evaluator=JUDGE)
    d = Driver(DetectionEngine(RoutesConfig(), env="test"), seed=1)
    d.run(clean, 24 * 60)
    today = d.now_ms // DAY_MS
    good = tuple(HourPairs(today * 24 - 24 * k, GOOD) for k in range(12, -1, -1))
    d.engine.set_inputs(StoredInputs(as_of_ms=d.now_ms, extra={INPUT_KEY: {ROUTE: {JUDGE: good}}}))
    d.run(replace(clean, pass_rate=0.8), 12 * 60)
    [alert] = d.firing("QualityRegression")
    ev = alert.evidence
    assert ev["judge_version"] == JUDGE and "baseline_pass_rate" in ev  # the existing keys stay
    assert ev["judge_pairs"] == 200 and ev["judge_agreement_window"] == "10d"
    assert float(ev["judge_kappa"]) == pytest.approx(0.77, abs=0.01)  # type: ignore[arg-type]
    assert float(ev["judge_agreement"]) == pytest.approx(0.95)  # type: ignore[arg-type]
    assert float(ev["judge_kappa_low"]) < float(ev["judge_kappa"]) < float(ev["judge_kappa_high"])  # type: ignore[arg-type]
    assert "agreement with human labels (last 10d): kappa 0.77" in alert.annotations["description"]


def test_quality_regression_without_human_labels_is_unchanged() -> None:
    from dataclasses import replace

    from telemetry.detect.testing import Driver, Profile

    clean = Profile(route=ROUTE, team="support", per_minute=5, judged_per_minute=1, pass_rate=0.9, evaluator=JUDGE)
    d = Driver(DetectionEngine(RoutesConfig(), env="test"), seed=1)
    d.run(clean, 24 * 60)
    d.engine.set_inputs(StoredInputs(extra={INPUT_KEY: {ROUTE: {"another@v1": days((5, GOOD))}}}))
    d.run(replace(clean, pass_rate=0.8), 12 * 60)
    [alert] = d.firing("QualityRegression")
    assert not [k for k in alert.evidence if k.startswith("judge_") and k != "judge_version"]


# --- the simulation (short) and the docs --------------------------------------------------------
def test_simulation_short_clean_judges_stay_quiet_and_a_collapse_is_caught_within_days() -> None:
    clean = false_alarms(CLEAN, route_years=2, seed=5)
    assert clean.firings == 0
    collapse = next(d for d in DRIFTS if d.name.startswith("collapse"))
    delays = detection_delays(collapse, labels_per_day=50, replicates=3, seed=5, horizon_days=20)
    assert delays.detected == 3 and delays.before_change == 0
    assert max(delays.delays_h) < 10 * 24


def test_docs_contain_the_generated_example() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert DOCS_BEGIN in text and DOCS_END in text
    assert updated(text) == text, (
        "docs/judges.md example drifted from the code: run "
        "`python -m telemetry.detect.judge_simulation --write-example docs/judges.md`"
    )
