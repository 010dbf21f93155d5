"""The traffic generator: pure, seeded, streaming; events follow the contracts and the scenario."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import pytest
from genai_prices import Usage, calc_price
from pydantic import ValidationError

from telemetry.contracts.request import RequestEvent
from telemetry.contracts.verdict import VerdictEvent
from telemetry.simulate.generator import SimEvent, TrafficGenerator, generate
from telemetry.simulate.scenario import Scenario, load_scenario, parse_scenario

HOUR = 3_600_000
START = 1_748_736_000_000  # 2025-06-01T00:00:00Z


def scenario_text(routes: str, incidents: str = "", noise: str = "", duration: str = "3h", seed: int = 1) -> str:
    return f"""
[scenario]
name = "t"
seed = {seed}
start = "2025-06-01T00:00:00Z"
duration = "{duration}"

[noise]
{noise}

{routes}

{incidents}
"""


def route(name: str, **fields: Any) -> str:
    base: dict[str, Any] = {
        "team": "t", "provider": "openai", "model": "gpt-4o-mini", "peak_rps": 1.0, "shape": "flat",
        "judged_fraction": 0.2, "error_rate": 0.0, "truncation_rate": 0.0,
    }  # fmt: skip
    base.update(fields)
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in base.items())
    return f'[[route]]\nname = "{name}"\n{body}\n'


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


def incident(route_name: str, kind: str, at: str, duration: str, **params: Any) -> str:
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in params.items())
    return f'[[incident]]\nroute = "{route_name}"\nkind = "{kind}"\nat = "{at}"\nduration = "{duration}"\n{body}\n'


def stream_digest(events: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for ev in events:
        n += 1
        h.update(f"{ev.publish_at_sim_ms}|{ev.topic_kind}|{ev.note}|".encode())
        h.update(ev.key or b"-")
        h.update(b"|")
        h.update(ev.value)
    return h.hexdigest(), n


def decoded(events: list[SimEvent], topic: str, notes: tuple[str, ...] = ("original", "early")) -> list[dict[str, Any]]:
    return [orjson.loads(e.value) for e in events if e.topic_kind == topic and e.note in notes]


# --------------------------------------------------------------------------------------
# determinism and streaming
# --------------------------------------------------------------------------------------


@cache
def demo() -> Scenario:
    return load_scenario("demo")


def test_same_seed_same_bytes_different_seed_different_bytes() -> None:
    sc = parse_scenario(scenario_text(route("a", peak_rps=3.0) + route("b", shape="diurnal"), noise=""), prices=False)
    d1 = stream_digest(generate(sc))
    d2 = stream_digest(generate(sc))
    d3 = stream_digest(generate(sc, seed=sc.seed + 1))
    assert d1 == d2
    assert d1[0] != d3[0]
    # re-iterating the same generator object replays the same stream
    gen = TrafficGenerator(sc)
    assert stream_digest(gen) == stream_digest(gen) == d1


def test_demo_is_deterministic_ordered_and_valid() -> None:
    """The whole bundled day: identical bytes twice, publish order, every non-malformed event
    valid per the contracts, every malformed one rejected."""
    sc = demo()
    gen = TrafficGenerator(sc)
    h = hashlib.sha256()
    last = 0
    notes: Counter[str] = Counter()
    for ev in gen:
        assert ev.publish_at_sim_ms >= last
        last = ev.publish_at_sim_ms
        h.update(ev.value)
        notes[ev.note] += 1
        model = RequestEvent if ev.topic_kind == "requests" else VerdictEvent
        if ev.note == "malformed":
            with pytest.raises((ValidationError, orjson.JSONDecodeError, TypeError, ValueError)):
                data = orjson.loads(ev.value)
                if not isinstance(data, dict):
                    raise TypeError("not an object")
                model.model_validate(data)
        else:
            event = model.model_validate_json(ev.value)
            assert ev.key == event.request_id.encode()
    again = hashlib.sha256()
    for ev in TrafficGenerator(sc):
        again.update(ev.value)
    assert h.hexdigest() == again.hexdigest()
    assert notes["malformed"] > 0 and notes["duplicate"] > 0 and notes["early"] > 0
    assert 60_000 <= gen.stats.logical_requests <= 160_000
    assert gen.stats.events == sum(notes.values())


def test_streams_with_bounded_memory() -> None:
    sc = demo()
    gen = TrafficGenerator(sc)
    it = iter(gen)
    first = next(it)
    assert first.publish_at_sim_ms < sc.start_ms + 60_000  # no whole-day precomputation
    for _ in it:
        pass
    assert 0 < gen.stats.max_pending < gen.stats.events / 20


# --------------------------------------------------------------------------------------
# rates, judging, noise
# --------------------------------------------------------------------------------------


def test_rates_follow_the_daily_shape() -> None:
    sc = parse_scenario(
        scenario_text(route("d", peak_rps=0.8, shape="diurnal", min_fraction=0.2, peak_hour=12, judged_fraction=0.0),
                      duration="24h"),
        prices=False,
    )  # fmt: skip
    per_block: Counter[int] = Counter()
    for ev in generate(sc):
        if ev.note == "original":
            ts = orjson.loads(ev.value)["ts"]
            per_block[(ts - START) // (3 * HOUR)] += 1
    r = sc.routes[0]
    for block in range(8):
        hours = [block * 3 + i / 60 for i in range(180)]
        expected = sum(r.peak_rps * r.shape_factor(h) * 60 for h in hours)
        assert per_block[block] == pytest.approx(expected, rel=0.08), block
    assert per_block[4] > 3 * per_block[0]  # noon block vs midnight block


def test_judged_fraction_and_pass_rate() -> None:
    sc = parse_scenario(scenario_text(route("j", peak_rps=4.0, judged_fraction=0.3, pass_rate=0.8)), prices=False)
    events = list(generate(sc))
    requests = decoded(events, "requests")
    verdicts = decoded(events, "verdicts")
    assert len(verdicts) / len(requests) == pytest.approx(0.3, abs=0.015)
    assert sum(v["passed"] for v in verdicts) / len(verdicts) == pytest.approx(0.8, abs=0.02)
    by_id = {r["request_id"]: r for r in requests}
    for v in verdicts:
        req = by_id[v["request_id"]]  # every verdict judges a generated ok request
        assert req["status"] == "ok"
        assert v["ts"] >= req["ts"] + int(req["latency_ms"])  # judged after the call ended
        assert (v["score"] >= 0.5) == v["passed"]
        assert v["evaluator"] == "quality@v1" and v["kind"] == "online"


def test_judge_delay_spans_seconds_to_hours() -> None:
    sc = parse_scenario(
        scenario_text(route("j", peak_rps=3.0, judged_fraction=1.0,
                            judge_delay={"median": "30s", "sigma": 1.0, "tail_fraction": 0.05,
                                         "tail_median": "1h", "tail_sigma": 0.5, "max": "3h"}),
                      duration="6h"),
        prices=False,
    )  # fmt: skip
    events = list(generate(sc))
    req = {r["request_id"]: r for r in decoded(events, "requests")}
    delays = [v["ts"] - req[v["request_id"]]["ts"] - int(req[v["request_id"]]["latency_ms"])
              for v in decoded(events, "verdicts", ("original",))]  # fmt: skip
    assert statistics.median(delays) == pytest.approx(30_000, rel=0.15)
    assert max(delays) <= 3 * HOUR
    share_over_20m = sum(d > 20 * 60_000 for d in delays) / len(delays)
    assert 0.03 < share_over_20m < 0.07  # the tail
    assert min(delays) >= 500


def test_noise_proportions() -> None:
    noise = (
        "request_duplicate_fraction = 0.05\nverdict_duplicate_fraction = 0.1\n"
        "early_verdict_fraction = 0.2\nmalformed_fraction = 0.02"
    )
    sc = parse_scenario(scenario_text(route("n", peak_rps=4.0, judged_fraction=0.5), noise=noise), prices=False)
    events = list(generate(sc))
    kinds = Counter((e.topic_kind, e.note) for e in events)
    n_req = kinds[("requests", "original")]
    n_ver = kinds[("verdicts", "original")] + kinds[("verdicts", "early")]
    assert kinds[("requests", "duplicate")] / n_req == pytest.approx(0.05, abs=0.008)
    assert kinds[("verdicts", "duplicate")] / n_ver == pytest.approx(0.1, abs=0.015)
    assert kinds[("verdicts", "early")] / n_ver == pytest.approx(0.2, abs=0.02)
    malformed = kinds[("requests", "malformed")] + kinds[("verdicts", "malformed")]
    assert malformed / (n_req + n_ver) == pytest.approx(0.02, abs=0.004)

    # duplicates are the same bytes, later; early verdicts are published before their request
    first_seen: dict[tuple[str, bytes], int] = {}
    published_at: dict[bytes, int] = {}
    for e in events:
        if e.note in ("original", "early"):
            first_seen[(e.topic_kind, e.value)] = e.publish_at_sim_ms
            if e.topic_kind == "requests":
                published_at[e.key or b""] = e.publish_at_sim_ms
    for e in events:
        if e.note == "duplicate":
            assert first_seen[(e.topic_kind, e.value)] < e.publish_at_sim_ms
    early = [e for e in events if e.note == "early"]
    assert early and all(published_at[e.key or b""] > e.publish_at_sim_ms for e in early)
    for e in early:  # and still consistent: judged after the call ended
        v = orjson.loads(e.value)
        assert v["ts"] == e.publish_at_sim_ms
    late = [e for e in events if e.note == "original" and e.topic_kind == "verdicts"]
    assert all(published_at[e.key or b""] <= e.publish_at_sim_ms for e in late)


def test_event_times_are_consistent() -> None:
    sc = parse_scenario(scenario_text(route("c", peak_rps=2.0, ttft_ms={"median": 200, "sigma": 0.3})), prices=False)
    events = list(generate(sc))
    held_back = {e.key for e in events if e.note == "early"}  # requests whose verdict overtook them
    assert held_back
    for e in events:
        if e.note != "original":
            continue
        body = orjson.loads(e.value)
        if e.topic_kind == "requests":
            end = body["ts"] + int(body["latency_ms"])
            if e.key in held_back:
                assert e.publish_at_sim_ms > end
            else:
                assert e.publish_at_sim_ms == end  # published when the call ends
            assert START <= body["ts"] < START + 3 * HOUR
            assert body["ttft_ms"] <= body["latency_ms"]
        else:
            assert e.publish_at_sim_ms == body["ts"]


def test_baseline_errors_and_retries() -> None:
    sc = parse_scenario(
        scenario_text(route("e", peak_rps=4.0, error_rate=0.1, retry_rate=1.0, max_attempts=3)), prices=False
    )
    requests = decoded(list(generate(sc)), "requests")
    errors = [r for r in requests if r["status"] == "error"]
    assert len(errors) / len(requests) == pytest.approx(0.1, abs=0.01)
    assert {r["error_type"] for r in errors} == {"rate_limited", "server_error", "timeout"}
    retries = [r for r in requests if r["attempt"] > 1]
    assert retries and all(r["request_id"].endswith(f"-a{r['attempt']}") for r in retries)
    assert max(r["attempt"] for r in requests) <= 3
    first = sum(r["attempt"] == 1 for r in requests)
    assert len(requests) / first == pytest.approx(1 + 0.1 + 0.01, abs=0.02)


# --------------------------------------------------------------------------------------
# incidents
# --------------------------------------------------------------------------------------

_INCIDENT_ROUTE_EXTRAS: list[tuple[str, dict[str, Any]]] = [
    ("q", {}),
    ("tier", {"provider": "anthropic", "model": "claude-3-5-haiku-latest"}),
    ("storm", {}),
    ("lat", {"latency_ms": {"median": 500, "sigma": 0.3}, "ttft_ms": {"median": 150, "sigma": 0.3}}),
    ("retry", {}),
    ("trunc", {"truncation_rate": 0.01}),
]
INCIDENT_ROUTES = "".join(
    route(name, peak_rps=1.0, judged_fraction=1.0, pass_rate=0.9, prompt_version="v1", **extra)
    for name, extra in _INCIDENT_ROUTE_EXTRAS
)
INCIDENTS = "".join(
    [
        incident("q", "quality_drop", "1h", "1h", pass_rate=0.7, prompt_version="v2"),
        incident("tier", "silent_tier_up", "1h", "1h", model="claude-sonnet-4-0"),
        incident("storm", "alias_404_storm", "1h", "1h", alias="gpt-5-mini-v2"),
        incident("lat", "latency_regression", "1h", "1h", latency_factor=3.0),
        incident("retry", "retry_storm", "1h", "1h", failure_rate=0.5, max_attempts=4),
        incident("trunc", "truncation_spike", "1h", "1h", truncation_rate=0.3, max_output_tokens=64),
    ]
)


@cache
def incident_events() -> tuple[Scenario, tuple[SimEvent, ...]]:
    sc = parse_scenario(scenario_text(INCIDENT_ROUTES, INCIDENTS, duration="3h"))
    return sc, tuple(generate(sc))


@cache
def incident_decoded() -> tuple[list[dict[str, Any]], dict[str, bool]]:
    _, events = incident_events()
    passed = {v["request_id"]: v["passed"] for v in decoded(list(events), "verdicts")}
    return decoded(list(events), "requests"), passed


def split(route_name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, bool]]:
    """(requests before/after the incident, requests during it, verdict passed by request id)."""
    requests, passed = incident_decoded()
    reqs = [r for r in requests if r["route"] == route_name]
    return (
        [r for r in reqs if not START + HOUR <= r["ts"] < START + 2 * HOUR],
        [r for r in reqs if START + HOUR <= r["ts"] < START + 2 * HOUR],
        passed,
    )


def pass_rate(reqs: list[dict[str, Any]], passed: dict[str, bool]) -> float:
    judged = [passed[r["request_id"]] for r in reqs if r["request_id"] in passed]
    return sum(judged) / len(judged)


def test_incident_windows_expose_ground_truth() -> None:
    sc, _ = incident_events()
    windows = {w.route: w for w in sc.incident_windows()}
    assert windows["tier"].expected_alertnames == ("TierSwitch", "CostSpike")
    assert windows["storm"].expected_alertnames == ("ErrorStorm",)
    assert windows["q"].start_ms == START + HOUR and windows["q"].end_ms == START + 2 * HOUR


def test_quality_drop() -> None:
    outside, during, passed = split("q")
    assert pass_rate(outside, passed) == pytest.approx(0.9, abs=0.02)
    assert pass_rate(during, passed) == pytest.approx(0.7, abs=0.03)
    assert {r["prompt_version"] for r in during} == {"v2"}
    assert {r["prompt_version"] for r in outside} == {"v1"}


def _cost(r: dict[str, Any]) -> float:
    when = datetime.fromtimestamp(r["ts"] / 1000, tz=UTC)
    usage = Usage(input_tokens=r["input_tokens"], output_tokens=r["output_tokens"])
    return float(calc_price(usage, model_ref=r["response_model"], provider_id=r["provider"],
                            genai_request_timestamp=when).total_price)  # fmt: skip


def test_silent_tier_up_switches_to_a_pricier_model_and_one_point_better() -> None:
    outside, during, passed = split("tier")
    assert {r["response_model"] for r in outside} == {"claude-3-5-haiku-latest"}
    assert {r["response_model"] for r in during} == {"claude-sonnet-4-0"}
    assert {r["model"] for r in during} == {"claude-3-5-haiku-latest"}  # silent: the request did not change
    ratio = statistics.fmean(_cost(r) for r in during) / statistics.fmean(_cost(r) for r in outside)
    assert 3.0 < ratio < 4.5  # sonnet-4 is 3.75x haiku-3.5 per token
    # +1 point of pass rate: exact in the generator's effective parameters ...
    from telemetry.simulate.generator import _Effective

    sc, _ = incident_events()
    eff = _Effective(sc.route("tier"))
    eff.apply(next(w.incident for w in sc.incident_windows() if w.route == "tier"))
    assert eff.pass_rate == pytest.approx(0.91) and eff.served == "claude-sonnet-4-0"
    # ... and no drop in the sample
    assert pass_rate(during, passed) > 0.87


def test_alias_404_storm() -> None:
    outside, during, passed = split("storm")
    errors = [r for r in during if r["status"] == "error"]
    assert len(errors) == len(during)  # error_fraction 1.0
    assert {(r["error_type"], r["http_status"], r["model"]) for r in errors} == {
        ("model_not_found", 404, "gpt-5-mini-v2")
    }
    assert all(r["output_tokens"] == 0 and r["attempt"] == 1 for r in errors)  # 404s are not retried
    assert all(r["status"] == "ok" for r in outside)
    assert not any(r["request_id"] in passed for r in errors)  # errors are not judged


def test_latency_regression() -> None:
    outside, during, _ = split("lat")
    p50_out = statistics.median(r["latency_ms"] for r in outside)
    p50_in = statistics.median(r["latency_ms"] for r in during)
    assert p50_out == pytest.approx(500, rel=0.05)
    assert p50_in / p50_out == pytest.approx(3.0, rel=0.08)
    assert statistics.median(r["ttft_ms"] for r in during) / statistics.median(r["ttft_ms"] for r in outside) > 2.5


def test_retry_storm() -> None:
    outside, during, _ = split("retry")
    assert all(r["attempt"] == 1 for r in outside)
    assert max(r["attempt"] for r in during) == 4
    amplification = len(during) / sum(r["attempt"] == 1 for r in during)
    assert amplification == pytest.approx((1 - 0.5**4) / 0.5, abs=0.1)
    failed = [r for r in during if r["status"] == "error"]
    assert {(r["error_type"], r["http_status"]) for r in failed} == {("rate_limited", 429)}
    # attempts of one logical request follow each other in time
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in during:
        chains[r["request_id"].split("-a")[0]].append(r)
    for chain in chains.values():
        chain.sort(key=lambda r: r["attempt"])
        for a, b in zip(chain, chain[1:], strict=False):
            assert b["ts"] >= a["ts"] + int(a["latency_ms"])
            assert a["status"] == "error"


def test_truncation_spike() -> None:
    outside, during, _ = split("trunc")
    share = lambda rs: sum(r["finish_reason"] == "length" for r in rs) / len(rs)  # noqa: E731
    assert share(outside) == pytest.approx(0.01, abs=0.01)
    assert share(during) == pytest.approx(0.3, abs=0.04)
    assert {r["output_tokens"] for r in during if r["finish_reason"] == "length"} == {64}


def test_start_override_shifts_everything() -> None:
    """Another start is an exact time shift: same events, timestamps moved, same daily shape
    around the incidents."""
    sc = parse_scenario(scenario_text(route("a", shape="diurnal", peak_hour=2.0) + route("b"), duration="4h"))
    shift = 24 * HOUR + 5 * HOUR + 17_000  # another day, another time of day
    original = list(generate(sc))
    shifted = list(generate(sc, start_ms=START + shift))
    assert len(shifted) == len(original)
    for a, b in zip(original, shifted, strict=True):
        assert b.publish_at_sim_ms == a.publish_at_sim_ms + shift
        assert (a.topic_kind, a.key, a.note) == (b.topic_kind, b.key, b.note)
        if a.note != "malformed":
            ja, jb = orjson.loads(a.value), orjson.loads(b.value)
            assert jb.pop("ts") == ja.pop("ts") + shift
            assert ja == jb
    inc_sc, _ = incident_events()
    later = START + shift
    assert [w.start_ms for w in inc_sc.incident_windows(later)] == [
        w.start_ms + shift for w in inc_sc.incident_windows()
    ]


def test_a_canary_splits_the_route_into_arms_and_a_judge_drift_lowers_agreement() -> None:
    from telemetry.simulate.generator import TrafficGenerator
    from telemetry.simulate.scenario import parse_scenario

    text = """
[scenario]
name = "arms"
seed = 3
start = "2025-06-01T00:00:00Z"
duration = "4h"

[[route]]
name = "r"
provider = "openai"
model = "gpt-4o-mini"
peak_rps = 2
shape = "flat"
judged_fraction = 0.0
human_fraction = 0.2
judge_agreement = 0.95
error_rate = 0.0

[[incident]]
route = "r"
kind = "canary"
at = "1h"
duration = "1h"
model = "gpt-4o"
share = 0.25
error_rate = 0.2

[[incident]]
route = "r"
kind = "judge_drift"
at = "2h"
duration = "2h"
agreement = 0.5
"""
    import orjson

    events = list(TrafficGenerator(parse_scenario(text, prices=False)))
    start = 1748736000000
    requests = [orjson.loads(e.value) for e in events if e.topic_kind == "requests" and e.note != "malformed"]
    in_canary = [r for r in requests if start + 3_600_000 <= r["ts"] < start + 7_200_000]
    arms = {r.get("experiment") for r in in_canary}
    assert arms == {"canary", "control"} and {r.get("experiment") for r in requests if r["ts"] < start + 3_600_000} == {None}
    canary = [r for r in in_canary if r["experiment"] == "canary"]
    assert 0.18 < len(canary) / len(in_canary) < 0.32 and all(r["model"] == "gpt-4o" for r in canary)
    assert 0.1 < sum(r["status"] == "error" for r in canary) / len(canary) < 0.3
    verdicts = [orjson.loads(e.value) for e in events if e.topic_kind == "verdicts" and e.note != "malformed"]
    by_request: dict[str, dict[str, bool]] = {}
    for v in verdicts:
        by_request.setdefault(v["request_id"], {})[v["kind"]] = v["passed"]
    ts_of = {r["request_id"]: r["ts"] for r in requests}
    pairs = [(ts_of[rid], k["online"] == k["human"]) for rid, k in by_request.items() if len(k) == 2 and rid in ts_of]
    before = [same for ts, same in pairs if ts < start + 7_200_000]
    after = [same for ts, same in pairs if ts >= start + 7_200_000]
    assert sum(before) / len(before) > 0.9 and 0.4 < sum(after) / len(after) < 0.6
