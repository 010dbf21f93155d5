"""Bounded label cardinality in the detectors: an overflow bucket, a count, bounded state."""

from __future__ import annotations

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.limits import OVERFLOW, CardinalityGuard, LabelLimits
from telemetry.detect.testing import DAY, MINUTE, T0, request, verdict
from telemetry.routes import RoutesConfig


def test_routes_beyond_the_limit_go_to_the_overflow_route_and_are_counted() -> None:
    guard = CardinalityGuard(LabelLimits(max_routes=2, max_models_per_route=2, max_teams=1))
    assert guard.request(request(T0, "a")).route == "a"
    assert guard.request(request(T0, "b")).route == "b"
    assert guard.request(request(T0, "c")).route == OVERFLOW
    assert guard.request(request(T0, "d")).route == OVERFLOW
    assert guard.request(request(T0, "a")).route == "a"
    assert guard.overflowed["routes"] == 2


def test_models_evaluators_and_teams_beyond_their_limits_overflow() -> None:
    guard = CardinalityGuard(LabelLimits(max_routes=5, max_models_per_route=2, max_teams=1))
    assert guard.request(request(T0, "a", model="m1", team="t1")).served_model == "m1"
    f = guard.request(request(T0, "a", model="m1", served_model="m2", team="t2"))
    assert (f.model, f.served_model, f.team) == ("m1", "m2", OVERFLOW)
    f = guard.request(request(T0, "a", model="m3"))
    assert (f.model, f.served_model) == (OVERFLOW, OVERFLOW)
    assert guard.verdict(verdict(T0, "a", evaluator="j@1", model="m1")).evaluator == "j@1"
    assert guard.verdict(verdict(T0, "a", evaluator="j@2", model="m1")).evaluator == "j@2"
    assert guard.verdict(verdict(T0, "a", evaluator="j@3", model="m1")).evaluator == OVERFLOW
    assert guard.overflowed == {"teams": 1, "models": 1, "evaluators": 1}


def test_an_admitted_fact_is_passed_through_unchanged() -> None:
    guard = CardinalityGuard()
    f = request(T0, "a", team="t")
    assert guard.request(f) is not None
    assert guard.request(f) is f


def test_fifty_thousand_routes_keep_the_engine_state_bounded() -> None:
    engine = DetectionEngine(RoutesConfig(), limits=LabelLimits(max_routes=100, max_models_per_route=5))
    facts = [request(T0 + i, f"route-{i}", model=f"model-{i % 7}") for i in range(50_000)]
    engine.observe_requests(facts)
    engine.evaluate(T0 + 60_000)
    assert len(engine.windows) == 101  # 100 admitted and the overflow route
    assert OVERFLOW in engine.windows
    assert engine.guard.overflowed["routes"] == 50_000 - 100
    restored = DetectionEngine.restore(engine.snapshot(), RoutesConfig(), limits=engine.limits)
    assert set(restored.windows) == set(engine.windows)
    assert restored.guard.routes == engine.guard.routes


def test_a_route_silent_for_its_whole_history_frees_its_slot() -> None:
    engine = DetectionEngine(RoutesConfig(), limits=LabelLimits(max_routes=1))
    engine.observe_requests([request(T0, "old")])
    engine.evaluate(T0)
    engine.observe_requests([request(T0 + 9 * DAY, "new")])  # no slot yet: overflow
    engine.evaluate(T0 + 9 * DAY)
    assert "old" not in engine.windows and "new" not in engine.windows
    engine.observe_requests([request(T0 + 9 * DAY + MINUTE, "new")])  # the freed slot
    assert set(engine.windows) == {"new", OVERFLOW}


def test_a_state_saved_without_limits_is_bounded_on_restore() -> None:
    big = DetectionEngine(RoutesConfig(), limits=LabelLimits(max_routes=1000))
    big.observe_requests([request(T0 + i, f"r{i}") for i in range(300)])
    big.evaluate(T0 + 1000)
    import orjson

    state = orjson.loads(big.snapshot())
    del state["guard"]
    small = DetectionEngine.restore(orjson.dumps(state), RoutesConfig(), limits=LabelLimits(max_routes=50))
    assert len(small.windows) == 50
    assert set(small.windows) == {f"r{i}" for i in range(250, 300)}
