"""The detectors' event clock: one bad clock cannot move it, silence moves it with wall time."""

from __future__ import annotations

from telemetry.detect.clock import EventClock

WALL = 1_790_000_000_000
MIN = 60_000
YEAR = 365 * 24 * 60 * MIN


def clock() -> EventClock:
    return EventClock(max_skew_ms=5 * MIN, idle_ms=30_000, primary_topics=frozenset({"r"}))


def test_the_clock_is_the_slowest_active_source_and_never_goes_back() -> None:
    c = clock()
    c.observe({("r", 0): WALL - 10 * MIN, ("r", 1): WALL - 12 * MIN}, WALL)
    assert c.tick(WALL) == WALL - 12 * MIN
    c.observe({("r", 1): WALL - 9 * MIN}, WALL + 1000)
    assert c.tick(WALL + 1000) == WALL - 10 * MIN
    c.observe({("r", 0): WALL - 20 * MIN}, WALL + 2000)  # a straggler does not move it back
    assert c.tick(WALL + 2000) == WALL - 10 * MIN


def test_one_partition_far_ahead_does_not_pull_the_others_forward() -> None:
    c = clock()
    c.observe({("r", 0): WALL, ("r", 1): WALL}, WALL)
    c.observe({("r", 2): WALL + 4 * MIN}, WALL + 100)  # within the skew, one partition only
    assert c.tick(WALL + 100) == WALL


def test_the_clock_is_never_ahead_of_wall_time_plus_the_skew() -> None:
    c = clock()
    c.observe({("r", 0): WALL + YEAR}, WALL)
    assert c.tick(WALL) == WALL + 5 * MIN


def test_a_source_gone_quiet_stops_holding_the_clock_back() -> None:
    c = clock()
    c.observe({("r", 0): WALL - 60 * MIN, ("r", 1): WALL - 60 * MIN}, WALL)
    c.observe({("r", 1): WALL - 30 * MIN}, WALL + 40_000)  # partition 0 silent for 40 s of wall time
    assert c.tick(WALL + 40_000) == WALL - 30 * MIN


def test_with_no_traffic_the_clock_follows_wall_time_after_the_idle_period() -> None:
    c = clock()
    c.observe({("r", 0): WALL - 60 * MIN}, WALL)
    assert c.tick(WALL + 29_000) == WALL - 60 * MIN
    assert c.tick(WALL + 30_000) == WALL - 60 * MIN + 30_000
    assert c.tick(WALL + 10 * MIN) == WALL - 50 * MIN
    # traffic resumes behind the advanced clock: it does not go back
    c.observe({("r", 0): WALL - 55 * MIN}, WALL + 10 * MIN)
    assert c.tick(WALL + 10 * MIN) == WALL - 50 * MIN


def test_a_clock_saved_ahead_of_wall_time_is_repaired() -> None:
    c = clock()
    c.restore({"now_ms": WALL + YEAR, "watermarks": [["r", 0, WALL + YEAR]]})
    assert c.repair(WALL)
    assert c.now_ms == WALL
    c.observe({("r", 0): WALL + 1000}, WALL + 1000)
    assert c.tick(WALL + 1000) == WALL + 1000
    assert not c.repair(WALL + 1000)


def test_state_round_trips() -> None:
    c = clock()
    c.observe({("r", 0): WALL, ("v", 3): WALL - 5}, WALL)
    d = clock()
    d.restore(c.to_state())
    assert d.now_ms == c.now_ms and d.watermarks == c.watermarks


def test_verdict_partitions_set_the_clock_only_without_request_traffic() -> None:
    c = clock()
    c.observe({("v", 0): WALL - 90 * MIN}, WALL)  # verdicts only: they set it
    assert c.tick(WALL) == WALL - 90 * MIN
    c.observe({("r", 0): WALL - 10 * MIN, ("v", 0): WALL - 80 * MIN}, WALL + 1000)
    assert c.tick(WALL + 1000) == WALL - 10 * MIN  # a paused, lagging verdict partition holds nothing back


def test_verdicts_judged_hours_later_do_not_carry_the_clock_past_the_requests() -> None:
    """A backfill: every request read, its verdicts (judged up to hours later) still flowing.
    Before, the verdict partitions then set the clock 3 h past the last request, and every
    route looked silent (TrafficStopped for all routes, seen by python -m bench)."""
    clock = EventClock(max_skew_ms=10**12, idle_ms=30_000, primary_topics=frozenset({"llm.requests"}))
    clock.observe({("llm.requests", 0): 1_000_000, ("llm.verdicts", 0): 1_000_000}, wall_ms=0)
    clock.observe({("llm.verdicts", 0): 1_000_000 + 3 * 3_600_000}, wall_ms=40_000)  # requests idle for 40 s
    assert clock.now_ms == 1_000_000
    assert clock.tick(wall_ms=80_000) == 1_000_000 + 40_000  # then only idle time moves it
