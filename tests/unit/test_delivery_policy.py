"""The webhook outbox's pure decisions: next state, next attempt time, give-up rule (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.alerting.delivery import AttemptResult, Delivery, DeliveryPolicy, judge

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR_MS = 3_600_000


def fresh(policy: DeliveryPolicy | None = None, now_ms: int = T0) -> Delivery:
    return (policy or DeliveryPolicy()).new(
        alert_id="04c6f45ac21b1a5b-1767225600000-firing-1", channel="oncall", channel_kind="slack",
        fingerprint="04c6f45ac21b1a5b", alertname="ErrorStorm", route="sales.email", status="firing", sequence=1,
        payload="{}", now_ms=now_ms,
    )  # fmt: skip


def test_a_new_delivery_is_pending_due_now_and_never_attempted() -> None:
    d = fresh()
    assert (d.state, d.attempts, d.next_attempt_ms, d.created_ms, d.updated_ms) == ("pending", 0, T0, T0, T0)
    assert d.due(T0) and not d.due(T0 - 1)


@pytest.mark.parametrize(
    ("result", "verdict"),
    [
        (AttemptResult(http_status=200), "delivered"),
        (AttemptResult(http_status=202), "delivered"),
        (AttemptResult(http_status=204), "delivered"),
        (AttemptResult(http_status=408), "retry"),
        (AttemptResult(http_status=429), "retry"),
        (AttemptResult(http_status=500), "retry"),
        (AttemptResult(http_status=503), "retry"),
        (AttemptResult(error="ClientConnectorError"), "retry"),
        (AttemptResult(error="TimeoutError"), "retry"),
        (AttemptResult(http_status=400), "rejected"),
        (AttemptResult(http_status=401), "rejected"),
        (AttemptResult(http_status=403), "rejected"),
        (AttemptResult(http_status=404), "rejected"),
        (AttemptResult(http_status=410), "rejected"),
        (AttemptResult(http_status=301), "rejected"),  # redirects are not followed
        (AttemptResult(error="InvalidURL", permanent=True), "rejected"),
        (AttemptResult(error="render_ValueError", permanent=True), "rejected"),
    ],
)
def test_judge(result: AttemptResult, verdict: str) -> None:
    assert judge(result) == verdict


def test_success_is_delivered_with_the_attempt_counted() -> None:
    d = DeliveryPolicy().after_attempt(fresh(), AttemptResult(http_status=200), T0 + 50, jitter=0.5)
    assert (d.state, d.attempts, d.last_status, d.last_error, d.updated_ms) == ("delivered", 1, "200", "", T0 + 50)


def test_a_permanent_rejection_fails_at_once() -> None:
    d = DeliveryPolicy().after_attempt(fresh(), AttemptResult(http_status=404), T0 + 50, jitter=0.5)
    assert (d.state, d.attempts, d.last_status) == ("failed", 1, "404")
    assert "404" in d.last_error and "not retried" in d.last_error


def test_transient_failures_back_off_exponentially_with_equal_jitter_and_a_cap() -> None:
    policy = DeliveryPolicy(base_delay_s=1.0, max_delay_s=60.0)
    d = fresh(policy)
    now = T0
    delays = []
    for attempt in range(1, 10):
        d = policy.after_attempt(d, AttemptResult(error="ClientConnectorError"), now, jitter=1.0)
        assert (d.state, d.attempts, d.last_status) == ("pending", attempt, "ClientConnectorError")
        delays.append(d.next_attempt_ms - now)
        now = d.next_attempt_ms
    assert delays == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    # jitter 0 gives half of the ceiling
    low = policy.after_attempt(fresh(policy), AttemptResult(http_status=503), T0, jitter=0.0)
    assert low.next_attempt_ms - T0 == 500


def test_retry_after_is_honoured_when_longer_than_the_back_off() -> None:
    policy = DeliveryPolicy(base_delay_s=1.0)
    d = policy.after_attempt(fresh(policy), AttemptResult(http_status=429, retry_after_s=30), T0, jitter=0.0)
    assert d.next_attempt_ms == T0 + 30_000
    d = policy.after_attempt(fresh(policy), AttemptResult(http_status=429, retry_after_s=0.1), T0, jitter=1.0)
    assert d.next_attempt_ms == T0 + 1000


def test_gives_up_when_the_next_attempt_would_be_past_the_max_age() -> None:
    policy = DeliveryPolicy(base_delay_s=1.0, max_delay_s=300.0, max_age_s=3600.0)
    d = fresh(policy)
    last = policy.after_attempt(d, AttemptResult(http_status=503), T0 + HOUR_MS - 100, jitter=0.0)
    assert (last.state, last.attempts, last.last_status) == ("failed", 1, "503")
    assert "gave up" in last.last_error
    # a Retry-After beyond the deadline too
    asked = policy.after_attempt(d, AttemptResult(http_status=429, retry_after_s=7200), T0, jitter=0.0)
    assert asked.state == "failed"


def test_a_delivery_older_than_the_max_age_expires_without_an_attempt() -> None:
    policy = DeliveryPolicy(max_age_s=24 * 3600.0)
    d = policy.after_attempt(fresh(policy), AttemptResult(error="ClientConnectorError"), T0, jitter=0.0)
    assert not policy.expired(d, T0 + 24 * HOUR_MS)
    assert policy.expired(d, T0 + 24 * HOUR_MS + 1)
    gone = policy.expire(d, T0 + 25 * HOUR_MS)
    assert (gone.state, gone.attempts, gone.last_status) == ("failed", 1, "ClientConnectorError")
    assert "24 h" in gone.last_error
    never = policy.expire(fresh(policy), T0 + 25 * HOUR_MS)
    assert (never.state, never.attempts, never.last_status) == ("failed", 0, "expired")


def test_versions_are_strictly_ordered_even_within_one_millisecond() -> None:
    policy = DeliveryPolicy()
    d = fresh(policy)
    a = policy.after_attempt(d, AttemptResult(http_status=503), T0, jitter=0.0)
    b = policy.after_attempt(a, AttemptResult(http_status=200), T0, jitter=0.0)
    assert d.updated_ms < a.updated_ms < b.updated_ms


def test_only_pending_deliveries_can_be_attempted() -> None:
    policy = DeliveryPolicy()
    done = policy.after_attempt(fresh(policy), AttemptResult(http_status=200), T0, jitter=0.0)
    with pytest.raises(ValueError):
        policy.after_attempt(done, AttemptResult(http_status=200), T0, jitter=0.0)


def test_last_error_is_short() -> None:
    policy = DeliveryPolicy()
    d = policy.after_attempt(fresh(policy), AttemptResult(error="E" * 1000), T0, jitter=0.0)
    assert len(d.last_error) <= 200


@given(
    outcomes=st.lists(st.one_of(st.integers(100, 599).map(lambda s: AttemptResult(http_status=s)),
                                st.just(AttemptResult(error="ClientConnectorError"))), min_size=1, max_size=40),
    jitters=st.lists(st.floats(0, 1), min_size=40, max_size=40),
)  # fmt: skip
def test_any_sequence_of_attempts_ends_within_the_max_age_and_never_leaves_a_final_state(
    outcomes: list[AttemptResult], jitters: list[float]
) -> None:
    policy = DeliveryPolicy(base_delay_s=1.0, max_delay_s=300.0, max_age_s=3600.0)
    d = fresh(policy)
    now = T0
    for result, jitter in zip(outcomes, jitters, strict=False):
        if d.state != "pending":
            break
        now = max(now, d.next_attempt_ms)
        new = policy.after_attempt(d, result, now, jitter=jitter)
        assert new.attempts == d.attempts + 1
        assert new.updated_ms > d.updated_ms
        if new.state == "pending":
            assert now < new.next_attempt_ms <= policy.deadline_ms(d)
        d = new
    assert d.state != "pending" or d.next_attempt_ms <= T0 + 3_600_000
