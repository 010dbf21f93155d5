"""CanaryVerdict: the declaration in the routes file, the decision, one alert per decision, the
CloudEvent a router acts on, the documented example, and the source's SQL on the real engine."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from telemetry.alerting.payloads import canary_extensions, cloudevent, kafka_record
from telemetry.detect.canary import (
    ArmTotals,
    CanaryDetector,
    CanaryInput,
    CanaryPolicy,
    CanarySpec,
    judge,
    outcome,
)
from telemetry.detect.canary_simulation import (
    EXAMPLE_BEGIN,
    EXAMPLE_END,
    example_markdown,
)
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.inputs import StoredInputs
from telemetry.detect.testing import HOUR, MINUTE, T0
from telemetry.errors import ConfigError
from telemetry.routes import RoutesConfig
from telemetry.storage.migrate import migrate
from telemetry.storage.store import Store
from telemetry.worker.canary_source import canary_source

ROUTES = """
[defaults]
canary = { deadline = "2d", criteria = ["error_rate < 0.01"] }

[routes."support.answer"]
team = "support"
canary = { model = "gpt-4.1-mini", share = 0.05, criteria = ["p95_latency_ms < 300", "error_rate < 1%", "pass_rate_delta > -0.02", "cost_per_correct_ratio < 1.5"] }

[routes."search.rerank".canary]
model = "flash-2"
arm = "canary"
control = "control"
percentage = 10
start = 2025-01-01T00:00:00Z
"""


def config() -> RoutesConfig:
    return RoutesConfig.from_toml(ROUTES)


def spec_of(route: str, cfg: RoutesConfig | None = None) -> CanarySpec:
    return (cfg or config()).for_route(route).section(CanaryPolicy).canary


# --- the declaration ------------------------------------------------------------------------------
def test_a_canary_is_declared_the_way_teams_write_it() -> None:
    cfg = config()
    spec = spec_of("support.answer", cfg)
    assert spec.model == "gpt-4.1-mini" and spec.declared_share == 0.05
    assert [c.text for c in spec.criteria] == ["p95_latency_ms < 300", "error_rate < 1%", "pass_rate_delta > -0.02",
                                               "cost_per_correct_ratio < 1.5"]  # fmt: skip
    latency, errors = spec.criteria[0], spec.criteria[1]
    assert (latency.metric, latency.quantile, latency.threshold, latency.below) == ("latency", 0.95, 300.0, True)
    assert errors.threshold == pytest.approx(0.01)
    assert spec.deadline == 2 * 24 * HOUR  # merged key by key over [defaults] canary
    assert spec.latency_targets == (300.0,)
    rerank = spec_of("search.rerank", cfg)
    assert rerank.declared_share == 0.1 and rerank.arm == "canary" and rerank.control == "control"
    assert [c.text for c in rerank.criteria] == ["error_rate < 0.01"]  # the [defaults] criteria
    assert rerank.start_ms == T0
    assert not spec_of("other.route", cfg).model  # no canary elsewhere


@pytest.mark.parametrize(
    ("criterion", "message"),
    [
        ("latency < 300", "unknown metric 'latency'; expected one of error_rate, pNN_latency_ms"),
        ("p95_latency_ms > 300", "p95_latency_ms must be bounded with <"),
        ("pass_rate_delta < 0.02", "pass_rate_delta must be bounded with >"),
        ("error_rate < 2", "error_rate is a share"),
        ("cost_per_correct_ratio < 0", "is a ratio: the threshold must be positive"),
        ("p95_latency_ms < 3%", "a percentage threshold only suits"),
        ("p95_latency_ms << 300", "expected '<metric> <op> <number>'"),
        ("p100_latency_ms < 300", "between p0 and p100"),
    ],
)
def test_a_bad_criterion_is_refused_naming_the_route_and_the_problem(criterion: str, message: str) -> None:
    text = f'[routes."a".canary]\nmodel = "m"\ncriteria = ["error_rate < 0.01", "{criterion}"]\n'
    with pytest.raises(ConfigError) as info:
        RoutesConfig.from_toml(text, source=Path("routes.toml"))
    shown = str(info.value)
    assert shown.startswith('routes file routes.toml: [routes."a"]: canary.criteria.1: ') and message in shown, shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[defaults]\ncanary = { model = "m", criteria = ["error_rate < 0.01"] }\n',
         "[defaults]: canary.model: a canary is declared per route"),
        ('[routes."a".canary]\ncriteria = ["error_rate < 0.01"]\n', '[routes."a"]: canary.model: a canary names its model'),
        ('[routes."a".canary]\nmodel = "m"\n', "a canary needs criteria"),
        ('[routes."a".canary]\nmodel = "m"\ncriteria = ["error_rate < 0.01"]\nshare = 0.1\npercentage = 10\n',
         "give share or percentage, not both"),
        ('[routes."a".canary]\nmodel = "m"\ncriteria = ["error_rate < 0.01"]\nstart = 2025-01-01T00:00:00\n',
         "start needs a UTC offset"),
        ('[routes."a".canary]\nmodel = "m"\ncriteria = ["error_rate < 0.01"]\nshare = 1.5\n', "canary.share: Input should be less than 1"),
        ('[routes."a".canary]\nmodel = "m"\ncriteria = ["error_rate < 0.01"]\nsahre = 0.1\n', "canary.sahre: unknown key"),
        ('[routes."a".canary]\nmodel = "m"\ncriteria = ["error_rate < 0.01", "error_rate<0.01"]\n', "listed twice"),
        ('[routes."a"]\ncanary = "gpt-4.1"\n', "canary must be a table"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_refused_with_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        RoutesConfig.from_toml(text)
    assert message in str(info.value), str(info.value)


def test_the_example_routes_file_declares_a_canary() -> None:
    cfg = RoutesConfig.load(Path(__file__).resolve().parents[2] / "deploy" / "routes.example.toml")
    declared = {r: p.section(CanaryPolicy).canary for r, p in cfg.routes.items() if p.section(CanaryPolicy).canary.model}
    assert declared, "deploy/routes.example.toml has no canary example"


# --- the decision ---------------------------------------------------------------------------------
def arm(requests: int, *, errors: int = 0, slow: int = 0, cost: float = 0.002, judged: int = 0, passed: int = 0,
        target: float = 300.0) -> ArmTotals:  # fmt: skip
    ok = requests - errors
    return ArmTotals(requests=requests, errors=errors, ok=ok, slow={target: slow}, priced=requests,
                     cost=cost * requests, cost_sq=(cost * cost) * requests * 1.4, judged=judged, passed=passed)  # fmt: skip


GOOD_CANARY = arm(6000, errors=12, slow=90, judged=5000, passed=4500)
CONTROL = arm(60000, errors=150, slow=900, judged=30000, passed=27000)


def test_judge_and_outcome() -> None:
    spec = spec_of("support.answer")
    results = judge(spec, GOOD_CANARY, CONTROL)
    assert [r.decision for r in results] == ["pass"] * 4
    assert outcome(results) == ("promote", None)
    slow = replace(GOOD_CANARY, slow={300.0: 600})
    action, failing = outcome(judge(spec, slow, CONTROL))
    assert action == "rollback" and failing is not None and failing.criterion.text == "p95_latency_ms < 300"
    assert failing.low is not None and failing.low > 0.05
    thin = arm(40, judged=20, passed=18)
    results = judge(spec, thin, CONTROL)
    assert outcome(results) == (None, None)
    assert "waiting for 30 verdicts per arm" in results[2].basis


def inputs(route: str, spec: CanarySpec, canary: ArmTotals, control: ArmTotals, *, start: int, as_of: int) -> StoredInputs:
    return StoredInputs(as_of_ms=as_of, extra={"canary": {route: CanaryInput(route, spec.key(route), start, as_of, canary, control)}})


def test_a_failing_canary_is_rolled_back_once_and_resolves_after_the_hold() -> None:
    cfg = config()
    spec = spec_of("support.answer", cfg)
    engine = DetectionEngine(cfg, env="prod")
    start = T0 + HOUR
    engine.set_inputs(inputs("support.answer", spec, arm(100, slow=2), arm(1000), start=start, as_of=start + 5 * MINUTE))
    assert engine.evaluate(start + 5 * MINUTE) == []  # too little evidence yet
    slow = arm(400, slow=80, judged=40, passed=36)
    engine.set_inputs(inputs("support.answer", spec, slow, arm(4000, judged=400, passed=360), start=start, as_of=start + 20 * MINUTE))
    [alert] = engine.evaluate(start + 20 * MINUTE)
    assert alert.status == "firing" and alert.labels["alertname"] == "CanaryVerdict"
    assert alert.labels["route"] == "support.answer" and alert.labels["model"] == "gpt-4.1-mini"
    assert alert.labels["severity"] == "warning" and alert.labels["team"] == "support"
    ev = alert.evidence
    assert ev["action"] == "rollback" and ev["criterion"] == "p95_latency_ms < 300"
    assert ev["criterion_measure"] == "slow_share" and ev["criterion_limit"] == 0.05
    assert ev["criterion_estimate"] == 0.2 and 0.05 < ev["criterion_low"] < 0.2 < ev["criterion_high"]  # type: ignore[operator]
    assert ev["canary_requests"] == 400 and ev["decided_after_minutes"] == 20.0
    assert alert.annotations["summary"].startswith("ROLL BACK canary gpt-4.1-mini on support.answer after 20 min: "
                                                   "p95_latency_ms < 300 fails, 20.0% of ok requests slower than 300 ms")  # fmt: skip

    # new data that would promote changes nothing: decided once
    engine.set_inputs(inputs("support.answer", spec, GOOD_CANARY, CONTROL, start=start, as_of=start + 30 * MINUTE))
    assert engine.evaluate(start + 30 * MINUTE) == []
    # a restart within the hold neither re-fires nor forgets
    restored = DetectionEngine.restore(engine.snapshot(), cfg, env="prod")
    restored.set_inputs(engine.inputs)
    assert restored.evaluate(start + 40 * MINUTE) == []
    [resolved] = restored.evaluate(start + 20 * MINUTE + HOUR)
    assert resolved.status == "resolved" and resolved.evidence["action"] == "rollback"
    # and never again, however long it stays declared
    assert restored.evaluate(start + 30 * HOUR) == []
    assert DetectionEngine.restore(restored.snapshot(), cfg).evaluate(start + 31 * HOUR) == []


def test_a_good_canary_is_promoted_at_info_severity() -> None:
    cfg = config()
    spec = spec_of("support.answer", cfg)
    engine = DetectionEngine(cfg)
    engine.set_inputs(inputs("support.answer", spec, GOOD_CANARY, CONTROL, start=T0, as_of=T0 + 20 * HOUR))
    [alert] = engine.evaluate(T0 + 20 * HOUR)
    assert alert.evidence["action"] == "promote" and alert.evidence["criterion"] is None
    assert alert.labels["severity"] == "info"
    assert alert.annotations["summary"].startswith("PROMOTE canary gpt-4.1-mini on support.answer: all 4 criteria met")


def test_an_undecided_canary_is_inconclusive_at_its_deadline() -> None:
    cfg = config()
    spec = spec_of("support.answer", cfg)
    engine = DetectionEngine(cfg)
    thin = arm(300, slow=10, judged=60, passed=54)
    engine.set_inputs(inputs("support.answer", spec, thin, CONTROL, start=T0, as_of=T0 + HOUR))
    assert engine.evaluate(T0 + HOUR) == []
    assert engine.evaluate(T0 + 47 * HOUR) == []
    rerank = spec_of("search.rerank", cfg)  # declared start, and the source finds no traffic at all
    engine.set_inputs(StoredInputs(extra={"canary": {
        "support.answer": CanaryInput("support.answer", spec.key("support.answer"), T0, T0 + HOUR, thin, CONTROL),
        "search.rerank": CanaryInput("search.rerank", rerank.key("search.rerank"), T0, T0 + 47 * HOUR, ArmTotals(), ArmTotals()),
    }}))  # fmt: skip
    alerts = {a.labels["route"]: a for a in engine.evaluate(T0 + 48 * HOUR)}  # deadline 2d (from [defaults] canary)
    alert = alerts["support.answer"]
    assert alert.evidence["action"] == "inconclusive" and alert.labels["severity"] == "info"
    assert alert.evidence["undecided_criteria"] == 3  # the cost criterion alone is settled
    # a declared start with no traffic at all is inconclusive at its deadline too
    assert alerts["search.rerank"].evidence["action"] == "inconclusive"
    assert alerts["search.rerank"].evidence["canary_requests"] == 0
    assert "INCONCLUSIVE canary gpt-4.1-mini on support.answer at its deadline (48 h)" in alert.annotations["summary"]


def test_without_an_input_nothing_is_decided_even_past_the_deadline() -> None:
    cfg = config()
    spec = spec_of("search.rerank", cfg)
    engine = DetectionEngine(cfg)  # a fresh take-over: the first refresh has not come yet
    assert engine.evaluate(T0 + 100 * HOUR) == []
    engine.set_inputs(inputs("search.rerank", spec, arm(50), arm(500), start=T0, as_of=T0 + 100 * HOUR))
    [alert] = engine.evaluate(T0 + 100 * HOUR)
    assert alert.evidence["action"] == "inconclusive" and alert.evidence["canary_requests"] == 50


def test_the_declared_start_counts_and_inputs_of_another_declaration_are_ignored() -> None:
    cfg = config()
    spec = spec_of("search.rerank", cfg)
    engine = DetectionEngine(cfg)
    bad = arm(2000, errors=200)
    stale = StoredInputs(extra={"canary": {"search.rerank": CanaryInput("search.rerank", "another canary", T0, T0 + HOUR, bad, arm(2000))}})
    engine.set_inputs(stale)
    assert engine.evaluate(T0 + HOUR) == []
    engine.set_inputs(inputs("search.rerank", spec, bad, arm(2000), start=T0, as_of=T0 + HOUR))
    [alert] = engine.evaluate(T0 + HOUR)
    assert alert.evidence["action"] == "rollback" and alert.evidence["criterion"] == "error_rate < 0.01"
    assert alert.evidence["canary_arm"] == "canary" and alert.evidence["control_arm"] == "control"
    assert alert.evidence["started_at"] == "2025-01-01T00:00:00Z"


def test_a_canary_removed_from_the_routes_file_is_forgotten() -> None:
    cfg = config()
    spec = spec_of("search.rerank", cfg)
    engine = DetectionEngine(cfg)
    engine.set_inputs(inputs("search.rerank", spec, arm(2000, errors=200), arm(2000), start=T0, as_of=T0 + HOUR))
    assert len(engine.evaluate(T0 + HOUR)) == 1
    assert orjson.loads(engine.snapshot())["canary"]
    without = RoutesConfig.from_toml(ROUTES.split('[routes."search.rerank".canary]')[0])
    restored = DetectionEngine.restore(engine.snapshot(), without)
    [resolved] = restored.evaluate(T0 + HOUR + MINUTE)
    assert resolved.status == "resolved"
    assert orjson.loads(restored.snapshot())["canary"] == {}


def test_state_round_trips_and_clock_repair_clamps() -> None:
    det = CanaryDetector()
    cfg = config()
    spec = spec_of("search.rerank", cfg)
    engine = DetectionEngine(cfg)
    engine.set_inputs(inputs("search.rerank", spec, arm(2000, errors=200), arm(2000), start=T0, as_of=T0 + HOUR))
    engine.evaluate(T0 + HOUR)
    det = engine.detector(CanaryDetector)
    again = CanaryDetector.from_state(orjson.loads(orjson.dumps(det.to_state())))
    assert again.to_state() == det.to_state() and again.held_routes() == ["search.rerank"]
    again.repair_clock(T0 + MINUTE)
    [rec] = again.records.values()
    assert rec.decided is not None and rec.decided.at_ms == T0 + MINUTE


# --- the CloudEvent a router acts on --------------------------------------------------------------
def test_the_rollback_cloudevent_carries_what_a_router_needs() -> None:
    cfg = config()
    spec = spec_of("search.rerank", cfg)
    engine = DetectionEngine(cfg)
    engine.set_inputs(inputs("search.rerank", spec, arm(2000, errors=200), arm(2000), start=T0, as_of=T0 + HOUR))
    [firing] = engine.evaluate(T0 + HOUR)
    event = cloudevent(firing, emitted_at_ms=T0 + HOUR)
    assert event["type"] == "io.llm-telemetry.alert.firing" and event["subject"] == "search.rerank"
    assert (event["canaryaction"], event["canarymodel"], event["canaryarm"]) == ("rollback", "flash-2", "canary")
    assert event["data"]["evidence"]["criterion"] == "error_rate < 0.01"
    record = kafka_record(firing, emitted_at_ms=T0 + HOUR)
    assert orjson.loads(record.value)["canaryaction"] == "rollback" and record.key == b"search.rerank"
    [resolved] = engine.evaluate(T0 + 2 * HOUR)
    assert canary_extensions(resolved) == {} and "canaryaction" not in cloudevent(resolved, emitted_at_ms=T0)
    assert "canarymodel" not in cloudevent(firing.model_copy(update={"labels": {**firing.labels, "alertname": "CostSpike"}}),
                                           emitted_at_ms=T0)  # fmt: skip


def test_docs_show_the_generated_canary_example() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    start, end = text.find(EXAMPLE_BEGIN), text.find(EXAMPLE_END)
    assert 0 <= start < end, "docs/alerts.md lacks the CanaryVerdict example markers"
    assert text[start + len(EXAMPLE_BEGIN) : end] == "\n\n" + example_markdown() + "\n", (
        "docs/alerts.md's CanaryVerdict example drifted from the code: run "
        "`python -m telemetry.detect.canary_simulation --write-example docs/alerts.md`"
    )


# --- the source, on the real engine ---------------------------------------------------------------
REQUEST_COLUMNS = ["request_id", "ts", "route", "model", "served_model", "experiment", "latency_ms", "status", "cost_usd"]


def _ts(ms: int) -> object:
    from telemetry.contracts._time import ms_to_datetime

    return ms_to_datetime(ms)


def test_the_source_reads_both_arms_since_the_start(engine: Client) -> None:
    db = f"canary_{uuid.uuid4().hex[:8]}"
    migrate(engine, db)
    rows: list[list[object]] = []
    verdicts: list[list[object]] = []
    for i in range(40):  # route support.answer: 10 canary (gpt-4.1-mini), 30 control, from T0 + 1 h
        ts = T0 + HOUR + i * MINUTE
        canary = i % 4 == 0
        model = "gpt-4.1-mini" if canary else "gpt-4o-mini"
        latency = 500.0 if canary and i % 8 == 0 else 100.0
        status = "error" if canary and i == 4 else "ok"
        rows.append([f"r{i}", _ts(ts), "support.answer", model, model, "canary" if canary else "control", latency, status, 0.01 if canary else 0.002])
        if i % 2 == 0:
            verdicts.append([f"r{i}", "judge@v1", "online", int(i % 6 != 0), _ts(ts + 1000), _ts(ts), "support.answer", model, model])
    rows.append(["old", _ts(T0), "support.answer", "gpt-4o-mini", "gpt-4o-mini", "", 100.0, "ok", 0.002])  # before the canary
    rows.append(["late", _ts(T0 + 3 * HOUR), "support.answer", "gpt-4.1-mini", "gpt-4.1-mini", "canary", 100.0, "ok", 0.01])
    engine.insert(f"{db}.requests", rows, column_names=REQUEST_COLUMNS)
    engine.insert(f"{db}.verdicts", verdicts, column_names=["request_id", "evaluator", "kind", "passed", "verdict_ts",
                                                            "request_ts", "route", "model", "served_model"])  # fmt: skip
    store = Store(engine, db)
    now = T0 + 2 * HOUR
    data = canary_source(store, None, config(), now)["extra"]["canary"]  # type: ignore[arg-type]
    got = data["support.answer"]
    assert got.start_ms == T0 + HOUR and got.as_of_ms == now and got.key == spec_of("support.answer").key("support.answer")
    c, k = got.canary, got.control
    assert (c.requests, c.errors, c.ok, c.slow, c.priced) == (10, 1, 9, {300.0: 5}, 10)
    assert c.cost == pytest.approx(0.1) and c.cost_sq == pytest.approx(10 * 0.0001)
    assert (k.requests, k.errors, k.slow, k.priced) == (30, 0, {300.0: 0}, 30)  # the rest of the route, since the start
    assert (c.judged, c.passed) == (10, 6) and (k.judged, k.passed) == (10, 7)
    # arms as experiment values, with a declared start: joined to requests for the verdicts
    rerank = RoutesConfig.from_toml(
        '[routes."support.answer".canary]\nmodel = "x"\narm = "canary"\ncontrol = "control"\n'
        'criteria = ["error_rate < 0.01"]\nstart = 2025-01-01T00:00:00Z\n'
    )
    arms = canary_source(store, None, rerank, now)["extra"]["canary"]["support.answer"]  # type: ignore[arg-type]
    assert arms.start_ms == T0
    assert (arms.canary.requests, arms.canary.judged, arms.canary.passed) == (10, 10, 6)
    assert (arms.control.requests, arms.control.judged, arms.control.passed) == (30, 10, 7)  # "old" has no arm
    # no canary request yet: no start, nothing to judge
    none = RoutesConfig.from_toml('[routes."support.answer".canary]\nmodel = "nobody"\ncriteria = ["error_rate < 0.01"]\n')
    assert canary_source(store, None, none, now)["extra"]["canary"]["support.answer"].start_ms is None  # type: ignore[arg-type]
