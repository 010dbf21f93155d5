"""WebhookDispatcher against a real aiohttp server on 127.0.0.1 (random port).

pytest-asyncio is not a dependency: each test is a sync function running a coroutine with
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

from telemetry.alerting import payloads
from telemetry.alerting.channels import WebhookChannel
from telemetry.alerting.webhooks import WebhookDispatcher, render, severity_allows
from telemetry.contracts.alert import Alert, fingerprint

SECRET = "T0SECRET/B0SECRET/xoxSECRETtoken"
ROUTING_KEY = "R0UTINGKEYSECRET0000000000000000"
HEADER_SECRET = "Bearer HEADERSECRET"
T0 = datetime(2025, 3, 14, 9, 42, 17, 250_000, tzinfo=UTC)


def make_alert(status: str = "firing", *, severity: str = "critical", route: str = "support.answer",
               sequence: int = 1) -> Alert:
    labels = {"alertname": "QualityRegression", "route": route, "model": "gpt-4o", "team": "support",
              "severity": severity, "env": "prod"}
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,  # type: ignore[arg-type]
        labels=labels,
        annotations={"summary": "pass rate fell"},
        evidence={"baseline_pass_rate": 0.912, "recent_pass_rate": 0.7769},
        starts_at=T0,
        ends_at=T0.replace(hour=11) if status == "resolved" else None,
        decided_at=T0,
        sequence=sequence,
    )


Responder = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """A local HTTP receiver; ``respond(request, n)`` answers the n-th (0-based) request."""

    respond: Responder
    requests: list[tuple[float, dict[str, str], Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def __aenter__(self) -> Receiver:
        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            n = len(self.requests)
            self.requests.append((time.monotonic(), dict(request.headers), orjson.loads(body)))
            return await self.respond(request, n)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def url(self, path: str = f"/services/{SECRET}") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def bodies(self) -> list[Any]:
        return [b for _, _, b in self.requests]


def ok() -> Responder:
    async def respond(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=200, text="ok")

    return respond


def script(*statuses: int, headers: dict[str, str] | None = None) -> Responder:
    """Answer with ``statuses`` in turn, then 200."""

    async def respond(request: web.Request, n: int) -> web.StreamResponse:
        status = statuses[n] if n < len(statuses) else 200
        extra = headers if status != 200 else None
        return web.Response(status=status, text=f"status {status} {SECRET}", headers=extra)

    return respond


def free_port() -> int:
    """A port with nothing listening (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def channel(url: str, kind: str = "webhook", **kw: Any) -> WebhookChannel:
    return WebhookChannel(name=kw.pop("name", "ops"), kind=kind, url=url, **kw)  # type: ignore[arg-type]


def fast(**kw: Any) -> WebhookDispatcher:
    kw.setdefault("base_delay_s", 0.01)
    kw.setdefault("max_delay_s", 0.05)
    kw.setdefault("max_attempts", 4)
    kw.setdefault("timeout_s", 2.0)
    return WebhookDispatcher(**kw)


# ------------------------------------------------------------------------------ delivery


def test_firing_then_resolved_delivered_in_order() -> None:
    async def main() -> None:
        async with Receiver(ok()) as rx:
            d = fast()
            await d.start()
            ch = channel(rx.url(), headers={"Authorization": HEADER_SECRET, "X-Team": "support"})
            firing, repeat = make_alert(), make_alert(sequence=2)
            resolved = make_alert("resolved", sequence=3)
            d.submit(firing, [ch])
            d.submit(repeat, [ch])
            d.submit(resolved, [ch])
            await d.drain(5)
            await d.stop()
            got = [(b["status"], b["sequence"]) for b in rx.bodies]
            assert got == [("firing", 1), ("firing", 2), ("resolved", 3)]
            assert rx.bodies[0] == payloads.generic(firing)
            _, headers, _ = rx.requests[0]
            assert headers["Content-Type"] == "application/json"
            assert headers["Authorization"] == HEADER_SECRET and headers["X-Team"] == "support"
            assert d.stats == {"delivered": 3, "retried": 0, "failed": 0, "dropped": 0}
            assert d.pending == 0

    asyncio.run(main())


def test_each_kind_gets_its_format_and_min_severity_filters() -> None:
    async def main() -> None:
        async with Receiver(ok()) as rx:
            d = fast()
            await d.start()
            alert = make_alert(severity="warning")
            channels = [
                channel(rx.url("/slack"), "slack", name="slack"),
                channel(rx.url("/pd"), "pagerduty", name="pd", routing_key=ROUTING_KEY),
                channel(rx.url("/am"), "alertmanager", name="am"),
                channel(rx.url("/hook"), "webhook", name="hook"),
                channel(rx.url("/critical-only"), "webhook", name="crit", min_severity="critical"),
            ]
            d.submit(alert, channels)
            await d.drain(5)
            await d.stop()
            bodies = sorted(rx.bodies, key=lambda b: sorted(b))
            assert len(bodies) == 4  # the critical-only channel got nothing
            assert {"blocks", "text"} == set(next(b for b in bodies if "blocks" in b))
            pd = next(b for b in bodies if "routing_key" in b)
            assert pd == payloads.pagerduty(alert, routing_key=ROUTING_KEY)
            am = next(b for b in bodies if b.get("version") == "4")
            assert am == payloads.alertmanager([alert], receiver="am")
            assert payloads.generic(alert) in bodies
            assert d.stats["delivered"] == 4

    asyncio.run(main())


def test_severity_allows() -> None:
    info, warning, critical = (make_alert(severity=s) for s in ("info", "warning", "critical"))
    ch = channel("http://x", min_severity="warning")
    assert [severity_allows(a, ch) for a in (info, warning, critical)] == [False, True, True]
    assert severity_allows(make_alert(severity="bogus"), channel("http://x", min_severity="critical"))
    with pytest.raises(ValueError):
        render(make_alert(), channel("http://x", "pagerduty"))  # no routing key


def test_500_twice_then_200_is_retried_and_delivered() -> None:
    async def main() -> None:
        async with Receiver(script(500, 503)) as rx:
            d = fast()
            await d.start()
            d.submit(make_alert(), [channel(rx.url())])
            await d.drain(5)
            await d.stop()
            assert len(rx.requests) == 3
            assert all(b == rx.bodies[0] for b in rx.bodies)
            assert d.stats == {"delivered": 1, "retried": 2, "failed": 0, "dropped": 0}

    asyncio.run(main())


def test_400_is_not_retried_and_counted_failed() -> None:
    async def main() -> None:
        async with Receiver(script(400)) as rx:
            d = fast()
            await d.start()
            d.submit(make_alert(), [channel(rx.url())])
            await d.drain(5)
            await d.stop()
            assert len(rx.requests) == 1
            assert d.stats == {"delivered": 0, "retried": 0, "failed": 1, "dropped": 0}

    asyncio.run(main())


def test_redirect_is_not_followed() -> None:
    async def main() -> None:
        async def respond(request: web.Request, n: int) -> web.StreamResponse:
            return web.Response(status=307, headers={"Location": "http://127.0.0.1:1/elsewhere"})

        async with Receiver(respond) as rx:
            d = fast()
            await d.start()
            d.submit(make_alert(), [channel(rx.url())])
            await d.drain(5)
            await d.stop()
            assert len(rx.requests) == 1
            assert d.stats["failed"] == 1 and d.stats["retried"] == 0

    asyncio.run(main())


def test_429_honours_retry_after() -> None:
    async def main() -> None:
        async with Receiver(script(429, headers={"Retry-After": "1"})) as rx:
            d = fast(max_delay_s=0.01)
            await d.start()
            d.submit(make_alert(), [channel(rx.url())])
            await d.drain(5)
            await d.stop()
            (t1, _, _), (t2, _, _) = rx.requests
            assert t2 - t1 >= 0.9  # the back-off alone would be <= 0.01 s
            assert d.stats == {"delivered": 1, "retried": 1, "failed": 0, "dropped": 0}

    asyncio.run(main())


def test_gives_up_when_retry_after_exceeds_max_age() -> None:
    async def main() -> None:
        async with Receiver(script(503, headers={"Retry-After": "3600"})) as rx:
            d = fast(max_age_s=5)
            await d.start()
            d.submit(make_alert(), [channel(rx.url())])
            await d.drain(2)
            await d.stop()
            assert len(rx.requests) == 1
            assert d.stats == {"delivered": 0, "retried": 0, "failed": 1, "dropped": 0}

    asyncio.run(main())


def test_unreachable_port_is_retried_then_failed() -> None:
    async def main() -> None:
        d = fast(max_attempts=3)
        await d.start()
        d.submit(make_alert(), [channel(f"http://127.0.0.1:{free_port()}/hook/{SECRET}")])
        await d.drain(10)
        await d.stop()
        assert d.stats == {"delivered": 0, "retried": 2, "failed": 1, "dropped": 0}

    asyncio.run(main())


def test_submit_never_blocks_while_receiver_hangs() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def hang(request: web.Request, n: int) -> web.StreamResponse:
            await release.wait()
            return web.Response(status=200)

        async with Receiver(hang) as rx:
            d = fast(timeout_s=30)
            await d.start()
            ch = channel(rx.url())
            d.submit(make_alert(), [ch])
            await asyncio.sleep(0.2)  # the first delivery is now in flight and hanging
            assert len(rx.requests) == 1
            started = time.perf_counter()
            for i in range(1000):
                d.submit(make_alert(sequence=i + 2), [ch])
            assert time.perf_counter() - started < 0.5
            assert d.pending == 1001
            release.set()
            await d.drain(20)
            await d.stop()
            assert [b["sequence"] for b in rx.bodies] == list(range(1, 1002))  # order kept
            assert d.stats["delivered"] == 1001

    asyncio.run(main())


def test_full_queue_drops_oldest_pending() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def hang(request: web.Request, n: int) -> web.StreamResponse:
            await release.wait()
            return web.Response(status=200)

        async with Receiver(hang) as rx:
            d = fast(queue_size=2, timeout_s=30)
            await d.start()
            ch = channel(rx.url())
            d.submit(make_alert(sequence=1), [ch])
            await asyncio.sleep(0.2)  # sequence 1 in flight, queue empty
            for seq in range(2, 7):  # 2..6 queued; only the two newest survive
                d.submit(make_alert(sequence=seq), [ch])
            assert d.stats["dropped"] == 3
            release.set()
            await d.drain(5)
            await d.stop()
            assert [b["sequence"] for b in rx.bodies] == [1, 5, 6]
            assert d.stats == {"delivered": 3, "retried": 0, "failed": 0, "dropped": 3}

    asyncio.run(main())


def test_slow_channel_does_not_delay_other_channels() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def hang(request: web.Request, n: int) -> web.StreamResponse:
            await release.wait()
            return web.Response(status=200)

        async with Receiver(hang) as slow, Receiver(ok()) as fast_rx:
            d = fast(timeout_s=30)
            await d.start()
            d.submit(make_alert(), [channel(slow.url(), name="slow"), channel(fast_rx.url(), name="fast")])
            await asyncio.sleep(0.3)
            assert len(fast_rx.requests) == 1 and d.stats["delivered"] == 1
            release.set()
            await d.drain(5)
            await d.stop()
            assert d.stats["delivered"] == 2

    asyncio.run(main())


def test_submit_before_start_and_stop_drops_pending() -> None:
    async def main() -> None:
        async with Receiver(ok()) as rx:
            d = fast()
            d.submit(make_alert(), [channel(rx.url())])  # queued until start()
            await d.start()
            await d.drain(5)
            assert len(rx.requests) == 1
            await d.stop()
            d.submit(make_alert(), [channel(rx.url())])  # after stop: counted, never raises
            assert d.stats["dropped"] == 1

        d2 = fast(timeout_s=30)
        release = asyncio.Event()

        async def hang(request: web.Request, n: int) -> web.StreamResponse:
            await release.wait()
            return web.Response(status=200)

        async with Receiver(hang) as rx2:
            await d2.start()
            d2.submit(make_alert(), [channel(rx2.url())])
            d2.submit(make_alert(sequence=2), [channel(rx2.url())])
            await asyncio.sleep(0.2)
            await d2.drain(0.05)  # times out, returns
            assert d2.pending == 2
            await d2.stop()
            assert d2.stats["dropped"] == 2 and d2.pending == 0
            release.set()

    asyncio.run(main())


# ------------------------------------------------------------------------------ logging


def test_logs_never_contain_urls_or_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[int, int]:
        async with Receiver(script(400)) as rejecting, Receiver(script(500, 500, 500, 500, 500)) as failing:
            d = fast(max_attempts=3, queue_size=1)
            await d.start()
            dead = free_port()
            channels = [
                channel(
                    rejecting.url(), "slack", name="slack-support", headers={"Authorization": HEADER_SECRET}
                ),
                channel(
                    failing.url(f"/v2/enqueue/{SECRET}"), "pagerduty", name="pd", routing_key=ROUTING_KEY
                ),
                channel(f"http://127.0.0.1:{dead}/{SECRET}", "webhook", name="dead"),
                channel(f"http://user:{SECRET}@127.0.0.1:{dead}/", "alertmanager", name="dead-am"),
                channel(f"ht!tp://{SECRET}", "webhook", name="invalid"),
                channel(rejecting.url(), "pagerduty", name="pd-nokey"),  # render fails
            ]
            d.submit(make_alert(), channels)
            d.submit(make_alert(sequence=2), channels)  # queue_size=1: drops are logged too
            await d.drain(10)
            await d.stop()
            assert d.stats["failed"] >= 5 and d.stats["retried"] >= 2 and d.stats["dropped"] >= 1
            return rejecting.port, failing.port

    ports = asyncio.run(main())
    assert caplog.records, "expected failures to be logged"
    forbidden = [SECRET, "SECRET", ROUTING_KEY, HEADER_SECRET, "http://", "127.0.0.1"]
    forbidden += [f":{p}" for p in ports]
    for record in caplog.records:
        rendered = record.getMessage() + " " + repr(record.__dict__)
        if record.exc_info:
            rendered += logging.Formatter().formatException(record.exc_info)
        for needle in forbidden:
            assert needle not in rendered, (needle, record.name, record.getMessage())
    failed = [r for r in caplog.records if getattr(r, "event", "") == "webhook_failed"]
    failed_channels = {getattr(r, "channel", None) for r in failed}
    assert failed_channels >= {"slack-support", "pd", "dead", "dead-am", "invalid"}
    assert all(r.fingerprint for r in failed)  # type: ignore[attr-defined]
