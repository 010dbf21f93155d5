"""The detector registry: one interface, one list, one-way imports, and no change in behaviour.

A 31-hour scenario on three routes raises every alert decided on facts (inhibition included).
``tests/data/detection_engine_v2.json.gz`` holds its notifications, the snapshot taken half-way,
a digest of the final state, and what follows a
:meth:`~telemetry.detect.engine.DetectionEngine.repair_clock`, as the engine of today gives them;
the engine must give the same from the same facts. To record it again (only when a change of
behaviour is intended, e.g. a new detector or new evidence)::

    python -m tests.unit.test_detector_registry

``tests/data/detection_engine_v1.json.gz`` was recorded with the engine as it was before the
detectors were registered (hard-coded detectors, one flat ``RoutePolicy``, no gates): its
half-way snapshot must still restore, lose nothing, and go on as today's engine does.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import pkgutil
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

import telemetry.detect
from telemetry.detect import names
from telemetry.detect.detector import Detector
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.registry import DETECTORS, SECTIONS
from telemetry.detect.testing import Driver, Profile
from telemetry.routes import DEFAULT_KEEP_FIRING_MS, DEFAULT_SEVERITY, RoutePolicy, RoutesConfig

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "detection_engine_v2.json.gz"
FIXTURE_V1 = REPO / "tests" / "data" / "detection_engine_v1.json.gz"
DETECT = Path(telemetry.detect.__file__).parent
MINUTE = 60_000

SCENARIO_ROUTES: dict[str, Any] = {
    "defaults": {"team": "platform"},
    "routes": {
        "chat": {"team": "chat-team", "latency_p95_ms": 1000, "monthly_budget_usd": 3000},
        "search": {"latency_p95_ms": 2000, "severity": {"ErrorStorm": "warning"}},
    },
    "teams": {"search": {"monthly_budget_usd": 1500}},
}
CHAT = Profile(route="chat", per_minute=10, cost_usd=0.01, latency_ms=500, judged_per_minute=1, pass_rate=0.9)
SEARCH = Profile(
    route="search",
    team="search",
    per_minute=20,
    cost_usd=0.002,
    latency_ms=400,
    error_rate=0.005,
    truncation_rate=0.02,
    judged_per_minute=0.5,
    pass_rate=0.85,
)
BATCH = Profile(route="batch", team="search", per_minute=8, cost_usd=0.001, latency_ms=2000)

WORSE_CHAT = replace(CHAT, pass_rate=0.6)
STORM = replace(SEARCH, error_rate=0.5, error_type="model_not_found", latency_ms=3000)
RETRIES = replace(SEARCH, retry_rate=0.5)
TIER_UP = replace(WORSE_CHAT, served_model="big", cost_usd=0.05, latency_ms=1500)
TRUNCATING = replace(SEARCH, truncation_rate=0.3)

MIDPOINT_MINUTES = 27 * 60
PHASES: list[tuple[list[Profile], int]] = [
    ([CHAT, SEARCH, BATCH], 26 * 60),  # baselines; BudgetOverrun (route and team) on the way
    ([WORSE_CHAT, STORM], 30),  # QualityRegression, ErrorStorm inhibiting search's latency; batch silent
    ([WORSE_CHAT, RETRIES, BATCH], 30),  # RetryAmplification; batch back
    # --- the snapshot is taken here (27 h) ---
    ([TIER_UP, TRUNCATING, BATCH], 60),  # TierSwitch, CostSpike, LatencySLOBreach, TruncationSpike
    ([WORSE_CHAT, SEARCH, BATCH], 60),
    ([CHAT, SEARCH, BATCH], 3 * 60),  # everything resolves
]


def _dump(at_ms: int, alerts: list[Any]) -> list[list[Any]]:
    return [[at_ms, a.model_dump(mode="json")] for a in alerts]


def run_scenario(restore: bytes | None = None) -> dict[str, Any]:
    """Run :data:`PHASES`; half-way take a snapshot and go on with an engine restored from it
    (from ``restore`` instead when given). Returns notifications, snapshot and final digest."""
    config = RoutesConfig.from_mapping(SCENARIO_ROUTES)
    d = Driver(DetectionEngine(config, env="prod"), seed=7)
    before: list[list[Any]] = []
    after: list[list[Any]] = []
    snapshot = b""
    elapsed = 0
    for profiles, minutes in PHASES:
        if elapsed == MIDPOINT_MINUTES:
            snapshot = d.engine.snapshot()
            d.engine = DetectionEngine.restore(restore or snapshot, config, env="prod")
        out = before if elapsed < MIDPOINT_MINUTES else after
        for _ in range(minutes):
            at = d.now_ms
            out.extend(_dump(at + 59_999, d.run(profiles, 1)))
        elapsed += minutes
    final = orjson.dumps(orjson.loads(d.engine.snapshot()), option=orjson.OPT_SORT_KEYS)
    # a clock saved two hours ahead of wall time is pulled back, and traffic goes on from there
    repaired: list[list[Any]] = []
    wall = d.now_ms - 2 * 60 * MINUTE
    assert d.engine.repair_clock(wall, max_skew_ms=MINUTE)
    d.now_ms = wall
    for _ in range(90):
        at = d.now_ms
        repaired.extend(_dump(at + 59_999, d.run([WORSE_CHAT, SEARCH, BATCH], 1)))
    repaired_state = orjson.dumps(orjson.loads(d.engine.snapshot()), option=orjson.OPT_SORT_KEYS)
    return {
        "before": before,
        "after": after,
        "snapshot": snapshot.decode(),
        "final_sha256": hashlib.sha256(final).hexdigest(),
        "repaired": repaired,
        "repaired_sha256": hashlib.sha256(repaired_state).hexdigest(),
    }


def _recorded(fixture: Path = FIXTURE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gzip.decompress(fixture.read_bytes()))
    return data


# --- behaviour: the engine before the registry, and now -------------------------------------------
def test_the_scenario_raises_every_alert_once_at_least() -> None:
    recorded = _recorded()
    fired = {n["labels"]["alertname"] for _, n in recorded["before"] + recorded["after"]}
    assert fired == set(names.ALERT_NAMES) - names.FROM_INPUTS
    assert not any(
        n["labels"]["route"] == "search" and n["labels"]["alertname"] == "LatencySLOBreach"
        for _, n in recorded["before"] + recorded["after"]
    ), "search's latency breach happens during its error storm: inhibited, never sent"


def test_the_same_facts_give_the_same_notifications_snapshot_and_state() -> None:
    recorded = _recorded()
    now = run_scenario()
    assert now["before"] == recorded["before"]
    assert orjson.loads(now["snapshot"]) == orjson.loads(recorded["snapshot"])  # key order aside
    assert now["after"] == recorded["after"]
    assert now["final_sha256"] == recorded["final_sha256"]
    assert now["repaired"] == recorded["repaired"]  # repair_clock: windows restart, baselines stay
    assert now["repaired_sha256"] == recorded["repaired_sha256"]


def test_a_snapshot_of_the_engine_before_the_registry_restores_and_goes_on_the_same() -> None:
    recorded, old_snapshot = _recorded(), _recorded(FIXTURE_V1)["snapshot"]
    now = run_scenario(restore=old_snapshot.encode())
    assert now["after"] == recorded["after"]
    assert now["final_sha256"] == recorded["final_sha256"]
    old = orjson.loads(old_snapshot)
    restored = orjson.loads(DetectionEngine.restore(old_snapshot.encode(), RoutesConfig.from_mapping(SCENARIO_ROUTES)).snapshot())
    fresh = orjson.loads(DetectionEngine(RoutesConfig()).snapshot())
    for key, value in restored.items():  # nothing lost, nothing invented: detectors added since start fresh
        if key not in old:
            assert value == fresh[key], key
        elif key == "tier":  # tier events gained a direction and a gate (an old one: up, ungated)
            for route, st in value.items():
                assert [{k: v for k, v in e.items() if k not in ("direction", "gate_id")} for e in st["events"]] == \
                    old[key][route]["events"]
                assert all((e["direction"], e["gate_id"]) == ("up", "") for e in st["events"])
        else:
            assert value == old[key], key


def test_a_detector_missing_from_a_snapshot_starts_fresh() -> None:
    state = orjson.loads(_recorded()["snapshot"])
    del state["silence"], state["tier"]  # fmt: skip
    engine = DetectionEngine.restore(orjson.dumps(state), RoutesConfig.from_mapping(SCENARIO_ROUTES))
    assert orjson.loads(engine.snapshot())["silence"] == {} and orjson.loads(engine.snapshot())["tier"] == {}
    assert engine.quality.states["chat"]  # the others are restored


# --- the registry ---------------------------------------------------------------------------------
def test_every_detector_is_registered_once_and_implements_the_interface() -> None:
    assert all(Detector in kind.__mro__ for kind in DETECTORS)  # explicit subclasses: checked by mypy
    assert len({kind.name for kind in DETECTORS}) == len(DETECTORS)
    assert sorted(kind.alertname for kind in DETECTORS) == sorted(names.ALERT_NAMES)
    for kind in DETECTORS:
        fresh = kind()
        assert kind.from_state(orjson.loads(orjson.dumps(fresh.to_state()))).to_state() == fresh.to_state()
    engine = DetectionEngine(RoutesConfig())
    assert list(engine.detectors) == [kind.name for kind in DETECTORS]
    # the snapshot keys of the engine before the registry are all still there
    assert {kind.name for kind in DETECTORS} >= {
        "quality", "cost", "tier", "latency", "storm", "retry", "truncation", "silence", "budget"
    }  # fmt: skip


def test_the_defaults_per_alert_come_from_the_detectors_unchanged() -> None:
    old = set(names.ALERT_NAMES[:9])  # the alerts of the engine before the registry keep their defaults
    assert {k: v for k, v in DEFAULT_SEVERITY.items() if k in old} == {
        "QualityRegression": "warning",
        "CostSpike": "warning",
        "TierSwitch": "warning",
        "LatencySLOBreach": "warning",
        "ErrorStorm": "critical",
        "RetryAmplification": "warning",
        "TruncationSpike": "warning",
        "BudgetOverrun": "warning",
        "TrafficStopped": "warning",
    }
    assert {k: v for k, v in DEFAULT_KEEP_FIRING_MS.items() if k in old} == {
        "QualityRegression": 0,
        "CostSpike": 15 * MINUTE,
        "TierSwitch": 0,
        "LatencySLOBreach": 10 * MINUTE,
        "ErrorStorm": 5 * MINUTE,
        "RetryAmplification": 10 * MINUTE,
        "TruncationSpike": 15 * MINUTE,
        "BudgetOverrun": 60 * MINUTE,
        "TrafficStopped": 0,
    }


def test_each_key_of_the_routes_file_has_exactly_one_owner() -> None:
    own = {f.alias or name for name, f in RoutePolicy.model_fields.items()} | {"team"}
    owners: dict[str, str] = {key: "telemetry.routes" for key in own}
    for kind in DETECTORS:
        for key in kind.policy.model_fields:
            assert key not in owners, f"{key} is {owners[key]}'s and {kind.__name__}'s"
            owners[key] = kind.__name__
    example = tomllib.loads((REPO / "deploy" / "routes.example.toml").read_text())
    documented = set(example["defaults"]) | {"quality_h", "monthly_budget_usd"}  # commented out there
    assert documented == set(owners), "deploy/routes.example.toml and the detectors' sections differ"


def test_each_route_gets_every_section_with_its_overrides() -> None:
    config = RoutesConfig.from_mapping(
        {"defaults": {"cost_fire_ratio": 2.0, "retry_window": "5m"}, "routes": {"a": {"cost_fire_ratio": 3.0}}}
    )
    for kind in SECTIONS:
        assert type(config.for_route("a").section(kind)) is kind
        assert config.for_route("nowhere").section(kind) == config.defaults.section(kind)
    from telemetry.detect.cost import CostPolicy
    from telemetry.detect.retry import RetryPolicy

    assert config.for_route("a").section(CostPolicy).cost_fire_ratio == 3.0
    assert config.defaults.section(CostPolicy).cost_fire_ratio == 2.0
    assert config.for_route("a").section(RetryPolicy).retry_window == 5 * MINUTE
    assert RoutePolicy() == RoutesConfig().defaults


def test_a_bad_table_names_the_problems_of_every_section() -> None:
    from telemetry.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        RoutesConfig.from_mapping({"defaults": {"cost_fire_ratio": 0.5, "storm_window": "90m", "nope": 1}})
    message = str(info.value)
    assert "nope: unknown key" in message and "cost_fire_ratio: Input should be greater than 1" in message
    assert "storm_window must be whole minutes between 1m and 60m" in message
    with pytest.raises(ConfigError, match=r"severity\.CostSpik\.\[key\]: unknown alert name; expected one of"):
        RoutesConfig.from_mapping({"routes": {"a": {"severity": {"CostSpik": "info"}}}})


# --- imports go one way: telemetry.routes -> telemetry.detect -------------------------------------
CORE = sorted(m.name for m in pkgutil.iter_modules([str(DETECT)]) if m.name != "simulation")
"""Every module of the detection package but the simulation: an application that writes a
routes file of its own (``python -m telemetry.detect.simulation``)."""


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", CORE)
def test_no_detection_module_imports_the_routes_module(module: str) -> None:
    imported = _imported_modules(DETECT / f"{module}.py")
    assert not {m for m in imported if m == "telemetry.routes" or m.startswith("telemetry.routes.")}
    assert "telemetry.routes" not in {m.rsplit(".", 1)[0] for m in imported if m.startswith("telemetry.")}


def test_importing_the_detection_core_does_not_load_the_routes_module() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {CORE!r}:
            importlib.import_module("telemetry.detect." + name)
        assert "telemetry.routes" not in sys.modules, sorted(m for m in sys.modules if m.startswith("telemetry"))
        import telemetry.routes  # and the other way round works from a fresh start
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_the_routes_module_imports_first_in_a_fresh_interpreter() -> None:
    code = "import telemetry.routes, sys; assert 'telemetry.detect.engine' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- adding a detector: one class and one entry in the list ---------------------------------------
TOY = """
from typing import Any, ClassVar

import orjson
from pydantic import Field

import telemetry.detect.registry as registry
from telemetry.detect.condition import Condition
from telemetry.detect.detector import Context, PerRouteDetector
from telemetry.detect.policy import PolicySection
from telemetry.detect.window import RouteWindow


class ToyPolicy(PolicySection):
    toy_max_requests: int = Field(5, ge=1)


class ToyDetector(PerRouteDetector):
    name: ClassVar[str] = "toy"
    alertname: ClassVar[str] = "TooManyRequests"
    severity: ClassVar[Any] = "info"
    keep_firing_ms: ClassVar[int] = 0
    policy: ClassVar[Any] = ToyPolicy

    def __init__(self) -> None:
        self.states: dict[str, int] = {}

    def evaluate_route(self, route: str, w: RouteWindow, policy: ToyPolicy, ctx: Context) -> list[Condition]:
        n = int(w.wsum(w.req, 1))
        self.states[route] = n
        if n <= policy.toy_max_requests:
            return []
        return [Condition(self.alertname, route, "", f"{route}: {n} requests", "", {"n": n}, ctx.now_ms)]

    def to_state(self) -> dict[str, int]:
        return dict(self.states)

    @classmethod
    def from_state(cls, data: dict[str, int]) -> "ToyDetector":
        det = cls()
        det.states = dict(data)
        return det


registry.DETECTORS = (*registry.DETECTORS, ToyDetector)  # the one entry
registry.SECTIONS = tuple(d.policy for d in registry.DETECTORS)

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import T0, request
from telemetry.routes import RoutesConfig

config = RoutesConfig.from_mapping(
    {"routes": {"busy": {"toy_max_requests": 2, "severity": {"TooManyRequests": "critical"}}}}
)
engine = DetectionEngine(config)
engine.observe_requests([request(T0 + i, "busy") for i in range(3)] + [request(T0, "calm")])
[alert] = engine.evaluate(T0 + 10)
assert alert.labels["alertname"] == "TooManyRequests" and alert.labels["severity"] == "critical", alert
assert orjson.loads(engine.snapshot())["toy"] == {"busy": 3, "calm": 1}
restored = DetectionEngine.restore(engine.snapshot(), config)
assert restored.detector(ToyDetector).states == {"busy": 3, "calm": 1}
assert restored.evaluate(T0 + 20) == []  # already firing: no second page
"""


def test_a_new_detector_is_one_class_and_one_entry() -> None:
    subprocess.run([sys.executable, "-c", TOY], check=True, cwd=REPO)


def main() -> None:
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_bytes(gzip.compress(json.dumps(run_scenario(), sort_keys=True).encode(), mtime=0))
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
