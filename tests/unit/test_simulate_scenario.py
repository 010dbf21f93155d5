"""Scenario files: parsing, validation, prices, the bundled demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.simulate.scenario import (
    ALERTNAMES,
    EXPECTED_ALERTS,
    ScenarioError,
    bundled_scenarios,
    check_prices,
    describe_scenario,
    load_scenario,
    parse_duration_ms,
    parse_scenario,
)

MINIMAL = """
[scenario]
name = "mini"
seed = 3
start = "2025-06-01T00:00:00Z"
duration = "2h"

[[route]]
name = "a.route"
team = "t"
provider = "openai"
model = "gpt-4o-mini"
peak_rps = 1.0
"""

HOUR = 3_600_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250ms", 250), ("90s", 90_000), ("15m", 900_000), ("6h", 6 * HOUR), ("1h30m", 90 * 60_000),
     ("1d", 24 * HOUR), ("1.5h", 5_400_000), (30, 30_000), (0.5, 500), ("45", 45_000)],
)  # fmt: skip
def test_durations(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "abc", "5x", "-3s", True, -1, "h"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(bad)


def test_minimal_scenario_has_defaults() -> None:
    sc = parse_scenario(MINIMAL)
    assert sc.name == "mini" and sc.seed == 3
    assert sc.start_ms == 1_748_736_000_000 and sc.duration_ms == 2 * HOUR
    route = sc.routes[0]
    assert route.served_model == "gpt-4o-mini"
    assert route.shape == "diurnal" and 0 < route.shape_factor(3.0) < route.shape_factor(14.0) == 1.0
    assert sc.incidents == [] and sc.noise.malformed_fraction > 0


def test_route_defaults_merge_and_incident_offsets() -> None:
    text = (
        MINIMAL.replace(
            "[[route]]", "[route_defaults]\njudged_fraction = 0.3\nlatency_ms = { median = 500 }\n\n[[route]]"
        )
        + """
latency_ms = { sigma = 0.2 }

[[incident]]
route = "a.route"
kind = "latency_regression"
at = "30m"
duration = "20m"

[[incident]]
route = "a.route"
kind = "quality_drop"
at = "2025-06-01T01:00:00Z"
duration = "30m"
pass_rate = 0.7
"""
    )
    sc = parse_scenario(text)
    route = sc.routes[0]
    assert route.judged_fraction == 0.3
    assert route.latency_ms.median == 500 and route.latency_ms.sigma == 0.2
    w1, w2 = sc.incident_windows()
    assert (w1.start_ms - sc.start_ms, w1.end_ms - w1.start_ms) == (30 * 60_000, 20 * 60_000)
    assert w1.expected_alertnames == ("LatencySLOBreach",)
    assert w2.start_ms - sc.start_ms == HOUR and w2.expected_alertnames == ("QualityRegression",)
    # a start override keeps the offsets
    moved = sc.with_overrides(start_ms=sc.start_ms + 5 * HOUR, seed=9)
    assert moved.seed == 9
    assert [w.start_ms - moved.start_ms for w in moved.incident_windows()] == [30 * 60_000, HOUR]
    assert [w.start_ms for w in sc.incident_windows(sc.start_ms + 5 * HOUR)] == [
        w.start_ms for w in moved.incident_windows()
    ]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ('\n[[incident]]\nroute = "nope"\nkind = "retry_storm"\nat = "1h"\nduration = "5m"\n', "unknown route"),
        ('\n[[incident]]\nroute = "a.route"\nkind = "meteor"\nat = "1h"\nduration = "5m"\n', "kind"),
        ('\n[[incident]]\nroute = "a.route"\nkind = "retry_storm"\nat = "3h"\nduration = "5m"\n', "outside"),
        ('\n[[incident]]\nroute = "a.route"\nkind = "retry_storm"\nat = "1h"\nduration = "5m"\nbogus = 1\n', "bogus"),
        ('\n[[incident]]\nroute = "a.route"\nkind = "retry_storm"\nat = "1h"\nduration = "5m"\nexpect = ["Nope"]\n',
         "unknown alert names"),
        ("\n[noise]\nmalformed_fraction = 2\n", "malformed_fraction"),
    ],
)  # fmt: skip
def test_invalid_scenarios_say_why(patch: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(MINIMAL + patch)


def test_bad_toml_and_duplicate_routes() -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse_scenario("[scenario\n")
    dup = MINIMAL + MINIMAL[MINIMAL.index("[[route]]") :]
    with pytest.raises(ScenarioError, match="unique"):
        parse_scenario(dup)


def test_models_must_be_priced_by_genai_prices() -> None:
    with pytest.raises(ScenarioError, match="unknown to genai-prices.*no-such-model"):
        parse_scenario(MINIMAL.replace("gpt-4o-mini", "no-such-model-xyz"))
    # the 404 storm's alias is unknown on purpose and is not priced
    sc = parse_scenario(
        MINIMAL + '\n[[incident]]\nroute = "a.route"\nkind = "alias_404_storm"\nat = "1h"\nduration = "5m"\n'
        'alias = "gpt-5-mini-v2"\n'
    )
    assert getattr(sc.incidents[0], "alias", None) == "gpt-5-mini-v2"
    # a tier-up target must be priced
    with pytest.raises(ScenarioError, match="incident"):
        parse_scenario(
            MINIMAL + '\n[[incident]]\nroute = "a.route"\nkind = "silent_tier_up"\nat = "1h"\nduration = "5m"\n'
            'model = "gpt-99-ultra"\n'
        )


def test_expected_alerts_cover_every_kind() -> None:
    assert set(EXPECTED_ALERTS) == {
        "quality_drop", "silent_tier_up", "alias_404_storm", "latency_regression", "retry_storm", "truncation_spike",
        "canary", "judge_drift",
    }  # fmt: skip
    assert {a for names in EXPECTED_ALERTS.values() for a in names} == ALERTNAMES
    assert EXPECTED_ALERTS["silent_tier_up"] == ("TierSwitch", "CostSpike")


def test_load_by_path_and_by_name(tmp_path: Path) -> None:
    file = tmp_path / "mine.toml"
    file.write_text(MINIMAL)
    assert load_scenario(file).name == "mini"
    assert load_scenario(str(file)).name == "mini"
    assert "demo" in bundled_scenarios()
    with pytest.raises(ScenarioError, match="bundled"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.toml")


def test_bundled_demo_is_a_good_demo() -> None:
    sc = load_scenario("demo")
    info = describe_scenario(sc)
    assert sc.duration_ms == 24 * HOUR
    assert 5 <= len(sc.routes) <= 10
    assert len({r.team for r in sc.routes}) == 3
    assert 60_000 <= info["requests"] <= 160_000
    windows = sc.incident_windows()
    assert {w.kind for w in windows} == set(EXPECTED_ALERTS)  # one of each kind
    assert len({w.route for w in windows}) == len(windows)  # on distinct routes
    assert {r.name for r in sc.routes} - {w.route for w in windows}  # at least one clean route
    for w in windows:
        assert w.start_ms - sc.start_ms >= 6 * HOUR  # baselines first
        assert sc.end_ms - w.end_ms >= 4 * HOUR  # ends, so alerts can resolve
        assert w.end_ms - w.start_ms >= 30 * 60_000
    prices = check_prices(sc)
    tier = next(r for r in info["incidents"] if r["kind"] == "silent_tier_up")
    assert 2.5 <= tier["cost_ratio"] <= 5
    storm = next(r for r in info["incidents"] if r["kind"] == "retry_storm")
    assert storm["retry_amplification"] > 1.5
    assert all(p.input_per_mtok > 0 for p in prices.values())
    # enough judged verdicts on the quality route for CUSUM (>= ~130 within an hour of the drop)
    quality = next(w for w in windows if w.kind == "quality_drop")
    route = sc.route(quality.route)
    hour = ((quality.start_ms / HOUR) % 24) + 0.5
    judged_per_hour = route.peak_rps * route.shape_factor(hour) * 3600 * route.judged_fraction
    assert judged_per_hour >= 150
