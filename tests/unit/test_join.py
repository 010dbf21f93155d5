"""The join rules, pure: every verdict attached to its request exactly once, whatever the order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.contracts.request import RequestEvent
from telemetry.contracts.verdict import VerdictEvent
from telemetry.ingest.join import JoinState, KnownRequest, Lookup, PricedRequest
from telemetry.pricing import Cost

HOUR = 3_600_000
T0 = 1_767_225_600_000


def req(i: int, ts: int = T0) -> PricedRequest:
    event = RequestEvent(request_id=f"r{i}", ts=ts, route="support.answer", model="gpt-4o", input_tokens=10,
                         output_tokens=5, latency_ms=100, status="ok")  # fmt: skip
    return PricedRequest(event, Cost(0.01, "genai-prices", "v"), 0, i)


def verdict(i: int, evaluator: str = "judge@v1", ts: int = T0 + 1000, passed: bool = True) -> VerdictEvent:
    return VerdictEvent(request_id=f"r{i}", ts=ts, evaluator=evaluator, passed=passed)


def state() -> JoinState:
    return JoinState(horizon_ms=24 * HOUR, capacity=1000)


def test_verdict_after_request_joins_with_request_fields() -> None:
    s = state()
    s.apply([req(1)], [])
    out = s.apply([], [verdict(1)])
    assert len(out.joined) == 1
    joined = out.joined[0]
    assert (joined.request.route, joined.request.served_model, joined.request.cost_usd) == ("support.answer", "gpt-4o", 0.01)
    assert not joined.late


def test_verdict_before_request_is_parked_then_joined_once() -> None:
    s = state()
    first = s.apply([], [verdict(1)])
    assert first.parked and not first.joined
    second = s.apply([req(1)], [])
    assert [j.verdict.request_id for j in second.joined] == ["r1"]
    again = s.apply([req(1)], [verdict(1)])  # producer duplicates of both
    assert not again.joined and again.duplicate_requests == 1 and again.duplicate_verdicts == 1


def test_same_request_judged_by_two_evaluators_gives_two_rows() -> None:
    s = state()
    out = s.apply([req(1)], [verdict(1, "judge@v1"), verdict(1, "human@v1"), verdict(1, "judge@v1")])
    assert sorted(j.verdict.evaluator for j in out.joined) == ["human@v1", "judge@v1"]
    assert out.duplicate_verdicts == 1


def test_verdict_after_horizon_is_kept_and_flagged_late() -> None:
    s = state()
    s.apply([req(1)], [])
    out = s.apply([], [verdict(1, ts=T0 + 25 * HOUR)])
    assert len(out.joined) == 1 and out.joined[0].late


def test_request_evicted_from_cache_is_looked_up_not_assumed_new() -> None:
    s = JoinState(horizon_ms=24 * HOUR, capacity=2)
    s.apply([req(1, T0), req(2, T0 + 1), req(3, T0 + 2)], [])
    assert s.complete_since_ms == T0 + 1  # r1 evicted
    assert s.ids_to_look_up([req(1, T0)], []) == {"r1"}
    assert s.ids_to_look_up([req(4, T0 + 5)], []) == set()
    stored = KnownRequest("r1", T0, "support.answer", "", "gpt-4o", "gpt-4o", 0.01, {"judge@v1"})
    out = s.apply([req(1, T0)], [verdict(1)], Lookup(requests={"r1": stored}))
    assert out.duplicate_requests == 1 and out.duplicate_verdicts == 1 and not out.new_requests


def test_verdict_parked_in_storage_is_a_duplicate_and_joins_when_request_arrives() -> None:
    s = state()
    assert s.ids_to_look_up([], [verdict(9)]) == {"r9"}
    out = s.apply([], [verdict(9)], Lookup(pending={"r9": [verdict(9)]}))
    assert out.duplicate_verdicts == 1 and not out.parked
    out = s.apply([req(9)], [])
    assert len(out.joined) == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=1, max_value=6))
def test_any_order_and_batching_joins_each_verdict_exactly_once(seed: int, batches: int) -> None:
    rnd = random.Random(seed)
    n = 40
    events: list[tuple[str, object]] = [("r", req(i)) for i in range(n)]
    events += [("v", verdict(i, e)) for i in range(n) for e in ("a@1", "b@1") if rnd.random() < 0.6]
    expected = {(v.request_id, v.evaluator) for kind, v in events if kind == "v"}  # type: ignore[union-attr]
    events += rnd.sample(events, len(events) // 3)  # duplicates
    rnd.shuffle(events)
    s = JoinState(horizon_ms=24 * HOUR, capacity=1000)
    joined: list[tuple[str, str]] = []
    stored: set[str] = set()
    cut = sorted(rnd.sample(range(1, len(events)), min(batches - 1, len(events) - 1)))
    for chunk in (events[a:b] for a, b in zip([0, *cut], [*cut, len(events)])):
        out = s.apply([e for k, e in chunk if k == "r"], [e for k, e in chunk if k == "v"])  # type: ignore[misc]
        stored.update(p.event.request_id for p in out.new_requests)
        joined += [(j.verdict.request_id, j.verdict.evaluator) for j in out.joined]
    assert len(stored) == n
    assert sorted(joined) == sorted(expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.booleans())
def test_small_cache_lagging_verdicts_and_pipelined_writes_lose_no_join(seed: int, pipelined: bool) -> None:
    """The shell's loop with a cache far smaller than the lag between requests and verdicts:
    evicted requests are found in storage, parked verdicts are released, none stays parked."""
    rnd = random.Random(seed)
    s = JoinState(horizon_ms=24 * HOUR, capacity=50)
    stored: dict[str, PricedRequest] = {}
    parked_store: dict[str, list[VerdictEvent]] = {}
    requests = [req(i, T0 + i) for i in range(600)]
    verdicts = [verdict(i) for i in range(600) if rnd.random() < 0.4]
    rnd.shuffle(verdicts[: len(verdicts) // 3])  # some early, most lagging
    joined: list[str] = []
    in_flight = None

    def write(out: object) -> None:
        for p in out.new_requests:  # type: ignore[attr-defined]
            stored[p.event.request_id] = p
        for v in out.parked:  # type: ignore[attr-defined]
            parked_store.setdefault(v.request_id, []).append(v)

    def lookup(ids: set[str]) -> Lookup:
        return Lookup(
            requests={i: KnownRequest(i, stored[i].event.ts, "support.answer", "", "gpt-4o", "gpt-4o", 0.01)
                      for i in ids if i in stored},
            pending={i: list(parked_store[i]) for i in ids if i in parked_store},
        )  # fmt: skip

    ri = vi = 0
    while ri < len(requests) or vi < len(verdicts):
        rb = requests[ri : ri + rnd.randint(0, 40)]
        vb = verdicts[vi : vi + rnd.randint(0, 8)]
        ri, vi = ri + len(rb), vi + len(vb)
        out = s.apply(rb, vb, lookup(s.ids_to_look_up(rb, vb)))
        joined += [j.verdict.request_id for j in out.joined]
        if pipelined:  # this batch is stored after the next one is prepared
            if in_flight is not None:
                write(in_flight)
            in_flight = out
        else:
            write(out)
    assert sorted(joined) == sorted(v.request_id for v in verdicts)
    assert s.parked_verdicts == 0
