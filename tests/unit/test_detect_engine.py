"""DetectionEngine: lifecycle wiring, repeats, snapshot/restore, labels, batches and speed."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest

from telemetry.contracts.alert import fingerprint
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.testing import HOUR, MINUTE, T0, Driver, Profile, request
from telemetry.routes import RoutesConfig

CONFIG = RoutesConfig.from_mapping(
    {
        "defaults": {"team": "platform"},
        "routes": {"chat": {"latency_p95_ms": 1000, "team": "chat-team"}},
    }
)
CLEAN = Profile(route="chat", per_minute=10, latency_ms=500, judged_per_minute=1, pass_rate=0.9)
SLOW = replace(CLEAN, latency_ms=1500)


def _driver(seed: int = 1, engine: DetectionEngine | None = None) -> Driver:
    return Driver(engine or DetectionEngine(CONFIG, env="prod"), seed=seed)


def test_labels_fingerprint_and_annotations() -> None:
    d = _driver()
    d.run(CLEAN, 60)
    d.run(SLOW, 20)
    [alert] = d.firing()
    assert alert.labels == {
        "alertname": "LatencySLOBreach",
        "route": "chat",
        "model": "",
        "team": "chat-team",
        "severity": "warning",
        "env": "prod",
    }
    assert alert.fingerprint == fingerprint(alert.labels) and alert.sequence == 1 and alert.ends_at is None
    assert set(alert.annotations) == {"summary", "description"} and len(alert.annotations["summary"]) <= 200


def test_team_comes_from_route_config_then_events_then_defaults() -> None:
    engine = DetectionEngine(CONFIG)
    engine.observe_requests([request(T0, "other", team="events-team"), request(T0, "bare")])
    assert CONFIG.team_for("chat", "events-team") == "chat-team"
    assert CONFIG.team_for("other", engine.windows["other"].team) == "events-team"
    assert CONFIG.team_for("bare", engine.windows["bare"].team) == "platform"


def test_firing_alert_repeats_on_the_interval_and_resolves_once() -> None:
    d = _driver(seed=2)
    d.run(CLEAN, 60)
    d.run(SLOW, 9 * 60)
    d.run(CLEAN, 60)
    sent = [(t, a) for t, a in d.notifications if a.alertname == "LatencySLOBreach"]
    notes = [a for _, a in sent]
    assert [(a.status, a.sequence) for a in notes] == [("firing", 1), ("firing", 2), ("firing", 3), ("resolved", 4)]
    assert [b[0] - a[0] for a, b in zip(sent, sent[1:3], strict=False)] == [4 * HOUR, 4 * HOUR]
    assert len({a.fingerprint for a in notes}) == 1 and len({a.starts_at for a in notes}) == 1


def test_restore_does_not_repage_and_keeps_baselines() -> None:
    d = _driver(seed=3)
    d.run(CLEAN, 24 * 60)
    d.run(SLOW, 30)
    assert len(d.firing("LatencySLOBreach")) == 1
    before = d.engine.quality.states["chat"]["judge@v1"]

    blob = d.engine.snapshot()
    restored = DetectionEngine.restore(blob, CONFIG, env="prod")
    assert restored.snapshot() == blob  # nothing lost, nothing invented
    after = restored.quality.states["chat"]["judge@v1"]
    assert (after.p_hat, after.base_n, after.h, after.s) == (before.p_hat, before.base_n, before.h, before.s)

    d2 = _driver(seed=4, engine=restored)
    d2.now_ms = d.now_ms
    d2.run(SLOW, 60)
    assert d2.firing() == []  # already firing before the restart: no second page
    d2.run(CLEAN, 60)
    notes = [a for _, a in d2.notifications if a.alertname == "LatencySLOBreach"]
    assert [(a.status, a.sequence) for a in notes] == [("resolved", 2)]
    # the quality baseline survived: a drop is still detected against it
    d2.run(replace(CLEAN, pass_rate=0.75), 10 * 60)
    assert len(d2.firing("QualityRegression")) == 1


def test_restore_rejects_foreign_bytes() -> None:
    with pytest.raises(ValueError):
        DetectionEngine.restore(b"not json", CONFIG)
    with pytest.raises(ValueError):
        DetectionEngine.restore(orjson.dumps({"version": 99}), CONFIG)


def test_batches_and_late_facts_give_the_same_result() -> None:
    facts = [
        request(T0 + i * 7_000, "chat", latency_ms=1500.0 if i % 3 else 400.0, cost_usd=0.01 * (1 + i % 5))
        for i in range(3000)
    ]
    one = DetectionEngine(CONFIG)
    one.observe_requests(facts)
    many = DetectionEngine(CONFIG)
    shuffled = facts[::2] + facts[1::2]  # half the facts arrive late, within the minute ring
    for i in range(0, len(shuffled), 97):
        many.observe_requests(shuffled[i : i + 97])
    end = facts[-1].ts_ms
    assert one.evaluate(end) == many.evaluate(end)
    a, b = one.windows["chat"], many.windows["chat"]
    for name in ("req", "ok", "slow95", "priced", "hreq", "hok", "hpriced"):
        assert getattr(a, name) == getattr(b, name), name
    assert [round(x, 9) for x in a.cost] == [round(x, 9) for x in b.cost]


def test_watermark_never_goes_back_and_no_facts_is_fine() -> None:
    engine = DetectionEngine(CONFIG)
    assert engine.evaluate(T0) == [] and engine.evaluate(T0 - HOUR) == []
    assert engine.now_ms == T0


def test_observe_is_fast_and_memory_is_bounded() -> None:
    engine = DetectionEngine(CONFIG)
    facts = [request(T0 + i * 100, f"r{i % 50}", served_model=f"m{i % 3}") for i in range(200_000)]
    started = time.perf_counter()
    for i in range(0, len(facts), 5000):
        engine.observe_requests(facts[i : i + 5000])
        engine.evaluate(facts[i + 4999].ts_ms)
    elapsed = time.perf_counter() - started
    assert elapsed < 10.0, elapsed  # ~1 us per fact on a laptop; generous for CI
    window = engine.windows["r0"]
    assert len(window.req) == 64 and len(window.hreq) == 24 * 8 and len(window.refs) == 3
    assert len(engine.snapshot()) < 2_000_000
    assert (facts[-1].ts_ms - T0) / MINUTE > 300  # spans more than the minute ring
