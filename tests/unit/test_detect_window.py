"""RouteWindow: bounded per-minute and per-hour aggregates equal brute-force counts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.detect.testing import HOUR, MINUTE, T0, request
from telemetry.detect.window import HOUR_SLOTS, MINUTE_SLOTS, RouteWindow

fact_st = st.builds(
    lambda minute, sec, slow, err, length, attempt, served: request(
        T0 + minute * MINUTE + sec * 1000,
        latency_ms=2000.0 if slow else 100.0,
        status="error" if err else "ok",
        error_type="timeout" if err else "",
        finish_reason="length" if length else "stop",
        attempt=attempt,
        served_model=served,
        cost_usd=0.5,
    ),
    minute=st.integers(0, 200),
    sec=st.integers(0, 59),
    slow=st.booleans(),
    err=st.booleans(),
    length=st.booleans(),
    attempt=st.integers(1, 3),
    served=st.sampled_from(["m", "big"]),
)


@settings(deadline=None, max_examples=60)
@given(facts=st.lists(fact_st, min_size=1, max_size=200), window=st.integers(1, 60))
def test_window_sums_match_brute_force_in_any_arrival_order(facts: list, window: int) -> None:  # type: ignore[type-arg]
    w = RouteWindow(1000.0, None)
    for f in facts:
        w.add(f)
    cur = w.cur
    assert cur == max(f.ts_ms for f in facts) // MINUTE
    recent = [f for f in facts if cur - window < f.ts_ms // MINUTE <= cur]
    assert w.wsum(w.req, window) == len(recent)
    assert w.wsum(w.ok, window) == sum(f.status == "ok" for f in recent)
    assert w.wsum(w.first, window) == sum(f.attempt == 1 for f in recent)
    assert w.wsum(w.slow95, window) == sum(f.status == "ok" and f.latency_ms > 1000 for f in recent)
    assert w.wsum(w.slow99, window) == 0  # no p99 target: never counted
    assert w.wsum(w.length, window) == sum(f.status == "ok" and f.finish_reason == "length" for f in recent)
    assert abs(w.wsum(w.cost, window) - 0.5 * len(recent)) < 1e-9
    errors = w.error_window(window)
    assert sum(errors.values()) == sum(f.status == "error" for f in recent)
    models = w.model_window(window)
    assert sum(row[0] for row in models.values()) == sum(f.status == "ok" for f in recent)
    # every fact ever added is in the hour ring or in the current minute
    assert w.hours_total("hreq", HOUR_SLOTS) == len(facts)
    assert w.hours_total("herr", HOUR_SLOTS) == sum(f.status == "error" for f in facts)


def test_advancing_clears_old_minutes_and_folds_them_into_hours() -> None:
    w = RouteWindow(None, None)
    w.add(request(T0))
    w.add(request(T0 + 30 * MINUTE))
    w.advance((T0 + 2 * HOUR) // MINUTE)
    assert w.wsum(w.req, 60) == 0
    assert w.hsum(w.hreq, T0 // HOUR, T0 // HOUR) == 2


def test_too_old_facts_go_to_the_hour_ring_and_ancient_ones_are_dropped() -> None:
    w = RouteWindow(None, None)
    w.add(request(T0 + 3 * HOUR))
    w.add(request(T0 + HOUR))  # older than the minute ring
    w.add(request(T0 - 30 * 24 * HOUR))  # older than the hour ring
    assert w.wsum(w.req, MINUTE_SLOTS) == 1
    assert w.hsum(w.hreq, (T0 + HOUR) // HOUR, (T0 + HOUR) // HOUR) == 1
    assert w.hours_total("hreq", HOUR_SLOTS) == 2


def test_state_round_trips() -> None:
    w = RouteWindow(1000.0, 3000.0)
    for i in range(500):
        w.add(
            request(
                T0 + i * 20_000,
                status="error" if i % 7 == 0 else "ok",
                error_type="x",
                served_model="a" if i % 2 else "b",
            )
        )
    back = RouteWindow.from_state(w.to_state(), 1000.0, 3000.0)
    assert back.to_state() == w.to_state()
    assert back.latency_quantile(60, 0.95) == w.latency_quantile(60, 0.95)
