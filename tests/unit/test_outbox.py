"""The webhook outbox against the real embedded ClickHouse engine and a real HTTP receiver on
127.0.0.1: recorded before delivery, retried with back-off, resumed by a new outbox (a restarted
worker) with its attempts, failed for good on a rejection or when too old; never a URL in a log.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from clickhouse_connect.driver.client import Client

from telemetry.alerting.delivery import DeliveryPolicy
from telemetry.alerting.outbox import DeliveryOutbox
from telemetry.contracts.alert import Alert, fingerprint
from telemetry.retry import RetryPolicy
from telemetry.routes import RoutesConfig
from telemetry.storage.clickhouse import is_transient
from telemetry.storage.deliveries import DeliveryStore
from telemetry.storage.migrate import migrate

SECRET = "T0SECRET/B0SECRET/xoxSECRET"
FAST = DeliveryPolicy(base_delay_s=0.05, max_delay_s=0.2, max_age_s=3600)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def routes(port: int, *, extra: str = "") -> RoutesConfig:
    return RoutesConfig.from_toml(
        '[defaults]\nchannels = ["hook", "am"]\n'
        f'[channels.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/generic/{SECRET}"\n'
        f'[channels.am]\nkind = "alertmanager"\nurl = "http://127.0.0.1:{port}/am/{SECRET}"\n' + extra
    )


def alert(status: str = "firing", sequence: int = 1, route: str = "sales.email") -> Alert:
    labels = {"alertname": "ErrorStorm", "route": route, "model": "m", "team": "t", "severity": "critical", "env": "test"}
    return Alert(
        fingerprint=fingerprint(labels), status=status, labels=labels,  # type: ignore[arg-type]
        annotations={"summary": f"{route} storm"}, evidence={"errors": 9, "share": float("nan")},
        starts_at=T0, ends_at=T0 + timedelta(minutes=5) if status == "resolved" else None, decided_at=T0,
        sequence=sequence,
    )  # fmt: skip


class Receiver:
    """Answers ``status`` to every POST and records (path, body)."""

    def __init__(self, port: int, status: int = 200) -> None:
        self.port = port
        self.status = status
        self.bodies: list[tuple[str, Any]] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        async def handler(request: web.Request) -> web.Response:
            self.bodies.append((request.path, orjson.loads(await request.read())))
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
def store(engine: Client) -> Iterator[DeliveryStore]:
    database = f"ob_{uuid.uuid4().hex[:8]}"
    migrate(engine, database)
    yield DeliveryStore(engine, database)
    engine.command(f"DROP DATABASE IF EXISTS {database}")


def retry() -> RetryPolicy:
    return RetryPolicy(base_s=0.01, cap_s=0.05, is_transient=is_transient)


def state(store: DeliveryStore) -> dict[tuple[str, str], Any]:
    return {d.key: d for d in store.latest()}


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_recorded_before_delivery_retried_resumed_after_a_restart_and_delivered_once(
    store: DeliveryStore, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nobody listens yet: the receiver is down
    config = routes(port)
    firing, resolved = alert(), alert("resolved", sequence=2)

    async def scenario() -> Receiver:
        first = DeliveryOutbox(config, policy=FAST)
        await first.start(store, retry())
        assert await first.submit([firing, resolved]) == 4
        # Recorded before any attempt: the rows are there, pending, never attempted.
        rows = state(store)
        assert len(rows) == 4 and {(d.state, d.attempts) for d in rows.values()} == {("pending", 0)}
        assert all(SECRET not in d.payload for d in rows.values())
        # The same notifications again (a batch redelivered after a crash): not recorded again.
        assert await first.submit([firing, resolved]) == 0
        await until(lambda: all(d.attempts >= 3 for d in state(store).values() if d.status == "firing"))
        await first.stop()
        before = state(store)
        assert {d.state for d in before.values()} == {"pending"}
        # A resolve never overtakes its trigger: it waits behind it, unattempted.
        assert {d.attempts for d in before.values() if d.status == "resolved"} == {0}
        assert first.counters["deliveries.retried"] >= 6

        receiver = await Receiver(port).start()  # the receiver is back
        second = DeliveryOutbox(config, policy=FAST)  # a restarted worker
        await second.start(store, retry())
        assert second.counters["deliveries.resumed"] == 4
        try:
            await until(lambda: {d.state for d in state(store).values()} == {"delivered"})
        finally:
            await second.stop()
            await receiver.stop()
        after = state(store)
        for key, d in after.items():
            if d.status == "firing":
                assert d.attempts == before[key].attempts + 1 > 1, "attempts persisted across the restart"
            assert d.last_status == "200" and d.last_error == ""
        assert second.counters["deliveries.delivered"] == 4 and second.counters["deliveries.pending"] == 0
        return receiver

    with caplog.at_level(logging.DEBUG):
        receiver = asyncio.run(scenario())
    paths = [p.split("/")[1] for p, _ in receiver.bodies]
    assert sorted(paths) == ["am", "am", "generic", "generic"], "each notification once per channel"
    generic = [b for p, b in receiver.bodies if p.startswith("/generic")]
    assert [b["status"] for b in generic] == ["firing", "resolved"], "in order"
    assert generic[0]["fingerprint"] == firing.fingerprint and generic[0]["evidence"]["share"] is None
    assert SECRET not in caplog.text and "127.0.0.1:" not in caplog.text


def test_a_rejection_fails_at_once_and_is_logged_without_the_url(store: DeliveryStore,
                                                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    port = free_port()

    async def scenario() -> DeliveryOutbox:
        receiver = await Receiver(port, status=404).start()
        outbox = DeliveryOutbox(routes(port), policy=FAST)
        await outbox.start(store, retry())
        await outbox.submit([alert()])
        try:
            await until(lambda: {d.state for d in state(store).values()} == {"failed"})
        finally:
            await outbox.stop()
            await receiver.stop()
        return outbox

    with caplog.at_level(logging.INFO):
        outbox = asyncio.run(scenario())
    rows = state(store)
    assert {(d.state, d.attempts, d.last_status) for d in rows.values()} == {("failed", 1, "404")}
    assert outbox.counters["deliveries.failed"] == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "failed for good" in r.getMessage()]
    assert len(errors) == 2
    assert SECRET not in caplog.text


def test_a_delivery_not_made_within_the_max_age_fails(store: DeliveryStore) -> None:
    port = free_port()  # down for good
    policy = DeliveryPolicy(base_delay_s=0.05, max_delay_s=0.1, max_age_s=0.5)

    async def scenario() -> None:
        outbox = DeliveryOutbox(routes(port), policy=policy)
        await outbox.start(store, retry())
        await outbox.submit([alert()])
        try:
            await until(lambda: {d.state for d in state(store).values()} == {"failed"})
        finally:
            await outbox.stop()

    asyncio.run(scenario())
    rows = list(state(store).values())
    assert all(d.attempts >= 2 and "gave up" in d.last_error for d in rows)


def test_a_channel_removed_from_the_routes_file_fails_its_pending_deliveries(store: DeliveryStore) -> None:
    port = free_port()

    async def scenario() -> None:
        first = DeliveryOutbox(routes(port), policy=FAST)
        await first.start(store, retry())
        await first.submit([alert()])
        await until(lambda: all(d.attempts >= 1 for d in state(store).values()))
        await first.stop()
        receiver = await Receiver(port).start()
        only_hook = RoutesConfig.from_toml(
            f'[defaults]\nchannels = ["hook"]\n[channels.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/g"\n'
        )
        second = DeliveryOutbox(only_hook, policy=FAST)
        await second.start(store, retry())
        try:
            await until(lambda: "pending" not in {d.state for d in state(store).values()})
        finally:
            await second.stop()
            await receiver.stop()

    asyncio.run(scenario())
    by_channel = {d.channel: d for d in state(store).values()}
    assert by_channel["hook"].state == "delivered"
    assert (by_channel["am"].state, by_channel["am"].last_status) == ("failed", "channel_removed")


def test_the_status_view_shows_only_the_newest_version(store: DeliveryStore, engine: Client) -> None:
    policy = FAST
    d = policy.new(alert_id="a-1", channel="hook", channel_kind="webhook", fingerprint="f", alertname="X", route="r",
                   status="firing", sequence=1, payload="{}", now_ms=1_767_225_600_000)  # fmt: skip
    from telemetry.alerting.delivery import AttemptResult

    retried = policy.after_attempt(d, AttemptResult(http_status=503), d.created_ms + 10, jitter=0.0)
    done = policy.after_attempt(retried, AttemptResult(http_status=200), retried.next_attempt_ms, jitter=0.0)
    for version in (d, retried, done):
        store.record([version])
    rows = engine.query(f"SELECT state, attempts FROM {store.db}.alert_delivery_status WHERE state = 'pending'")
    assert rows.result_rows == []
    rows = engine.query(f"SELECT state, attempts, last_status FROM {store.db}.alert_delivery_status")
    assert rows.result_rows == [("delivered", 2, "200")]
    assert store.pending() == [] and store.counts() == {"delivered": 1}
