"""Traffic simulator and replay: realistic request and verdict events for Kafka.

- :mod:`~telemetry.simulate.scenario`: the scenario TOML format (routes, noise, incidents);
- :mod:`~telemetry.simulate.generator`: pure, seeded, streaming event generation;
- :mod:`~telemetry.simulate.publisher`: pacing and publishing (``simulate``);
- :mod:`~telemetry.simulate.replay`: JSONL captures back to Kafka (``replay``).
"""

from telemetry.simulate.generator import GeneratorStats, SimEvent, TrafficGenerator, generate
from telemetry.simulate.progress import TextProgress
from telemetry.simulate.publisher import (
    Pacer,
    PublishSummary,
    SimulationResult,
    ensure_topics,
    publish,
    resolve_start,
    simulate,
)
from telemetry.simulate.replay import ReplaySummary, parse_line, replay
from telemetry.simulate.scenario import (
    ALERTNAMES,
    EXPECTED_ALERTS,
    IncidentWindow,
    Scenario,
    ScenarioError,
    bundled_scenarios,
    check_prices,
    describe_scenario,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "ALERTNAMES",
    "EXPECTED_ALERTS",
    "GeneratorStats",
    "IncidentWindow",
    "Pacer",
    "PublishSummary",
    "ReplaySummary",
    "Scenario",
    "ScenarioError",
    "SimEvent",
    "SimulationResult",
    "TextProgress",
    "TrafficGenerator",
    "bundled_scenarios",
    "check_prices",
    "describe_scenario",
    "ensure_topics",
    "generate",
    "load_scenario",
    "parse_line",
    "parse_scenario",
    "publish",
    "replay",
    "resolve_start",
    "simulate",
]
