"""The canary simulation, short: bad canaries are rolled back on the right criterion, a criterion at
its threshold is rarely decided under per-minute looks, and fixed-sample tests at the same looks are
not. The full run (``python -m telemetry.detect.canary_simulation``) gives docs/canaries.md's figures."""

from __future__ import annotations

import math

from telemetry.detect.canary_simulation import (
    SCENARIOS,
    example_decision,
    markdown,
    simulate,
)


def scenario(name: str):  # type: ignore[no-untyped-def]
    return next(s for s in SCENARIOS if s.name == name)


def test_bad_canaries_are_rolled_back_on_their_failing_criterion_and_never_promoted() -> None:
    expected = {"bad_latency": "p95_latency_ms < 400", "bad_cost": "cost_per_correct_ratio < 1.5",
                "bad_errors": "error_rate < 0.01"}  # fmt: skip
    figures = simulate([scenario(n) for n in expected], runs=12, seed=5, deadline_minutes=24 * 60)
    for f in figures:
        assert f.actions["rollback"] == 12 and f.wrong == 0.0, (f.scenario.name, f.actions)
        assert f.criteria == {expected[f.scenario.name]: 12}
        assert f.median_minutes is not None and f.median_minutes < 6 * 60


def test_a_good_canary_is_not_rolled_back() -> None:
    [f] = simulate([scenario("good_better")], runs=10, seed=6, deadline_minutes=36 * 60)
    assert f.actions["rollback"] == 0 and f.actions["promote"] >= 8


def test_a_criterion_at_its_threshold_keeps_alpha_under_per_minute_looks_unlike_fixed_sample_tests() -> None:
    runs, alpha = 80, 0.2  # a large alpha so that a few runs show the rate
    [sequential] = simulate([scenario("boundary_latency")], runs=runs, seed=7, deadline_minutes=600, alpha=alpha)
    [naive] = simulate([scenario("boundary_latency")], runs=runs, seed=7, deadline_minutes=600, alpha=alpha, naive=True)
    per_criterion = alpha / 4
    assert sequential.wrong <= per_criterion + 3 * math.sqrt(per_criterion * (1 - per_criterion) / runs)
    assert naive.wrong > 3 * max(sequential.wrong, per_criterion)


def test_markdown_and_the_documented_example() -> None:
    figures = simulate([scenario("bad_latency")], runs=3, seed=1, deadline_minutes=120)
    text = markdown(figures, seed=1, deadline_minutes=120)
    assert "| scenario | canary | truth | rollback |" in text and "| bad_latency |" in text
    spec, decided = example_decision()
    assert decided.action == "rollback" and decided.criterion == "p95_latency_ms < 400"
    assert decided.evidence["canary_arm"] == "canary" and spec.model == "gpt-4.1-mini"
