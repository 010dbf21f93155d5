"""Routes file: defaults without a file, merging, channels, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.detect.budget import BudgetPolicy
from telemetry.detect.latency import LatencyPolicy
from telemetry.detect.quality import QualityPolicy
from telemetry.errors import ConfigError
from telemetry.routes import RoutesConfig, parse_duration_ms

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[defaults]
team = "platform"
channels = ["slack"]
repeat_interval = "2h"
severity = { CostSpike = "info" }
keep_firing_for = { CostSpike = "30m" }

[routes."support.answer"]
team = "support"
latency_p95_ms = 4000
monthly_budget_usd = 5000
channels = ["slack", "pd"]
severity = { QualityRegression = "critical" }

[teams.support]
monthly_budget_usd = 20000
channels = ["pd"]

[channels.slack]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/X"

[channels.pd]
kind = "pagerduty"
url = "https://events.pagerduty.com/v2/enqueue"
routing_key = "abc"
min_severity = "critical"
"""


def test_no_file_means_sensible_defaults_for_every_route() -> None:
    config = RoutesConfig.load(None)
    policy = config.for_route("anything.at.all")
    assert policy.repeat_interval == 4 * 3_600_000
    latency = policy.section(LatencyPolicy)
    assert latency.latency_p95_ms == 10_000 and latency.latency_p99_ms == 30_000
    assert policy.section(QualityPolicy).quality_kinds == ("online",)
    assert policy.section(BudgetPolicy).monthly_budget_usd is None
    assert policy.severity_of("ErrorStorm") == "critical" and policy.severity_of("CostSpike") == "warning"
    assert policy.for_ms("TierSwitch") == 0 and policy.keep_firing_ms("CostSpike") == 15 * 60_000
    assert config.channels == {} and config.channels_for("anything", "critical") == []
    assert config.team_for("anything", "from-events") == "from-events" and config.team_for("anything") == ""


def test_route_tables_merge_over_defaults() -> None:
    config = RoutesConfig.from_toml(GOOD)
    support = config.for_route("support.answer")
    latency = support.section(LatencyPolicy)
    assert latency.latency_p95_ms == 4000 and latency.latency_p99_ms == 30_000
    assert support.section(BudgetPolicy).monthly_budget_usd == 5000
    assert support.repeat_interval == 2 * 3_600_000  # inherited
    assert support.severity_of("QualityRegression") == "critical"
    assert support.severity_of("CostSpike") == "info"  # merged key by key with [defaults]
    assert support.keep_firing_ms("CostSpike") == 30 * 60_000
    assert config.team_for("support.answer", "someone-else") == "support"
    assert config.team_for("other") == "platform"
    assert config.team_budget("support") == 20000 and config.team_budget("nobody") is None


def test_channels_for_route_severity_and_team() -> None:
    config = RoutesConfig.from_toml(GOOD)
    assert [c.name for c in config.channels_for("support.answer", "critical")] == ["slack", "pd"]
    assert [c.name for c in config.channels_for("support.answer", "warning")] == ["slack"]
    assert [c.name for c in config.channels_for("other", "info")] == ["slack"]
    assert [c.name for c in config.channels_for("team:support", "critical")] == ["pd"]
    pd = config.channels["pd"]
    assert (pd.kind, pd.routing_key, pd.min_severity) == ("pagerduty", "abc", "critical")


def test_the_example_file_loads() -> None:
    config = RoutesConfig.load(REPO / "deploy" / "routes.example.toml")
    assert config.for_route("support.answer").section(LatencyPolicy).latency_p95_ms == 4000
    assert set(config.channels) == {"oncall-slack", "pd"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults]\nlatency_p95 = 4000\n", "latency_p95: unknown key"),
        ('[routes."a"]\nrepeat_interval = "soon"\n', "is not a duration"),
        ('[routes."a"]\nchannels = ["nope"]\n', "undefined channel(s) ['nope']"),
        ('[routes."a"]\nseverity = { CostSpike = "urgent" }\n', "severity.CostSpike"),
        ('[routes."a"]\nseverity = { CostSpik = "info" }\n', "unknown alert name"),
        ('[channels.pd]\nkind = "pagerduty"\nurl = "https://x.example"\n', "needs routing_key"),
        ('[channels.x]\nkind = "email"\nurl = "https://x.example"\n', "[channels.x]: kind"),
        ('[defaults]\ncost_short_window = "90m"\n', "whole minutes between 1m and 60m"),
        ("[defaults]\nretry_budget = 1.1\nretry_clear = 1.3\n", "retry_clear must not exceed"),
        ("[nonsense]\n", "unknown table(s) ['nonsense']"),
        ("[defaults\n", "not valid TOML"),
        ('[routes."team:x"]\n', "cannot start with"),
    ],
)
def test_bad_files_raise_config_error_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RoutesConfig.from_toml(text, source=Path("routes.toml"))
    assert message in str(info.value)
    assert "routes file routes.toml" in str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        RoutesConfig.load(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30s", 30_000),
        ("15m", 900_000),
        ("4h", 14_400_000),
        ("1h30m", 5_400_000),
        ("90d", 7_776_000_000),
        (90, 90_000),
        (1.5, 1_500),
        ("0", 0),
        ("250ms", 250),
    ],
)
def test_durations(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["4 hours", "-1s", -5, True, "h", "5x"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(bad)
