"""Alert lifecycle: pending -> firing -> resolved, for, keep_firing_for, repeats, inhibition."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.alerting.lifecycle import ActiveCondition, AlertLifecycle
from telemetry.contracts.alert import fingerprint

MIN = 60_000
LABELS = {"alertname": "CostSpike", "route": "r", "model": "", "team": "t", "severity": "warning", "env": "test"}


def cond(
    at: int = 0,
    *,
    for_ms: int = 0,
    keep: int = 0,
    repeat: int = 240 * MIN,
    inhibited: bool = False,
    labels: dict[str, str] | None = None,
    x: int = 1,
) -> ActiveCondition:
    return ActiveCondition(
        labels=dict(labels or LABELS),
        annotations={"summary": f"x={x}", "description": "d"},
        evidence={"x": x},
        decided_at_ms=at,
        for_ms=for_ms,
        keep_firing_for_ms=keep,
        repeat_interval_ms=repeat,
        inhibited=inhibited,
    )


def test_fires_once_repeats_on_interval_and_resolves_once() -> None:
    lc = AlertLifecycle()
    [first] = lc.update([cond(5)], 10 * MIN)
    assert (first.status, first.sequence, first.fingerprint) == ("firing", 1, fingerprint(LABELS))
    assert first.decided_at.timestamp() * 1000 == 5 and first.ends_at is None
    assert lc.update([cond()], 20 * MIN) == []
    [repeat] = lc.update([cond(x=2)], (10 + 240) * MIN)
    assert (repeat.status, repeat.sequence, repeat.evidence) == ("firing", 2, {"x": 2})
    assert repeat.starts_at == first.starts_at
    [resolved] = lc.update([], (10 + 241) * MIN)
    assert (resolved.status, resolved.sequence) == ("resolved", 3)
    assert resolved.ends_at is not None and resolved.starts_at == first.starts_at
    assert lc.update([], (10 + 300) * MIN) == [] and lc.states == {}


def test_pending_for_and_a_pending_alert_that_goes_away_is_silent() -> None:
    lc = AlertLifecycle()
    assert lc.update([cond(for_ms=5 * MIN)], 0) == []
    assert lc.update([cond(for_ms=5 * MIN)], 4 * MIN) == []
    assert lc.update([], 5 * MIN) == [] and lc.states == {}
    assert lc.update([cond(for_ms=5 * MIN)], 6 * MIN) == []
    [fired] = lc.update([cond(for_ms=5 * MIN)], 11 * MIN)
    assert fired.sequence == 1 and fired.starts_at.timestamp() * 1000 == 11 * MIN


def test_keep_firing_for_bridges_a_short_gap() -> None:
    lc = AlertLifecycle()
    lc.update([cond(keep=10 * MIN)], 0)
    assert lc.update([], 5 * MIN) == []
    assert lc.update([cond(keep=10 * MIN)], 6 * MIN) == []  # back before keep_firing_for ran out
    assert lc.update([], 15 * MIN) == []
    [resolved] = lc.update([], 16 * MIN)
    assert resolved.status == "resolved" and resolved.sequence == 2


def test_inhibited_pending_waits_and_inhibited_firing_is_not_repeated() -> None:
    lc = AlertLifecycle()
    assert lc.update([cond(inhibited=True)], 0) == []
    [fired] = lc.update([cond()], MIN)
    assert fired.sequence == 1
    assert lc.update([cond(inhibited=True)], 300 * MIN) == []  # repeat due, but inhibited
    [resolved] = lc.update([], 301 * MIN)
    assert resolved.status == "resolved" and resolved.sequence == 2


def test_identity_labels_make_separate_alerts_and_team_does_not() -> None:
    lc = AlertLifecycle()
    other_model = {**LABELS, "model": "gpt-4o"}
    sent = lc.update([cond(), cond(labels=other_model)], 0)
    assert len(sent) == 2 and len({a.fingerprint for a in sent}) == 2
    assert lc.update([cond(labels={**LABELS, "team": "renamed"}), cond(labels=other_model)], MIN) == []
    assert lc.states[fingerprint(LABELS)].labels["team"] == "renamed"


def test_state_round_trip_keeps_firing_alerts_quiet() -> None:
    lc = AlertLifecycle()
    lc.update([cond()], 0)
    back = AlertLifecycle.from_state(lc.to_state())
    assert back.update([cond()], MIN) == []
    assert back.is_firing(fingerprint(LABELS)) and back.firing_labels() == [LABELS]


@settings(deadline=None, max_examples=80)
@given(
    active=st.lists(st.booleans(), min_size=1, max_size=60),
    for_steps=st.integers(0, 3),
    keep_steps=st.integers(0, 3),
    repeat_steps=st.integers(1, 10),
)
def test_property_notifications_are_well_formed(
    active: list[bool], for_steps: int, keep_steps: int, repeat_steps: int
) -> None:
    lc = AlertLifecycle()
    sent = []
    for i, on in enumerate(active):
        c = cond(i * MIN, for_ms=for_steps * MIN, keep=keep_steps * MIN, repeat=repeat_steps * MIN)
        sent += lc.update([c] if on else [], i * MIN)
    episode_seq = 0
    for alert in sent:
        if alert.status == "firing":
            assert alert.sequence == episode_seq + 1  # 1 starts an episode; repeats count up
            episode_seq = alert.sequence
        else:
            assert episode_seq >= 1 and alert.sequence == episode_seq + 1  # resolution once, after a firing
            episode_seq = 0
    # no alert is resolved unless it fired, and none fires before its condition held for `for`
    if not any(active):
        assert sent == []
