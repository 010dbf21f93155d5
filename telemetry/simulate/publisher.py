"""The imperative shell of the simulator and the replay: events to Kafka, paced or flat out.

``publish`` sends :class:`SimEvent` to ``settings.requests_topic`` / ``settings.verdicts_topic``
with one idempotent producer (``acks=all``), without awaiting each send: delivery futures are
awaited in chunks, and the producer is flushed at the end. Pacing maps simulated time to wall
time: ``speed`` simulated seconds per wall second (a day in 4 minutes = 360); ``None`` = as
fast as possible. Cancelling (Ctrl-C) flushes what was handed to the producer and stops cleanly.

``simulate`` is the ``telemetry simulate`` command as a function.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from telemetry.contracts._time import ms_to_datetime, to_epoch_ms
from telemetry.errors import InfrastructureError
from telemetry.settings import Settings
from telemetry.simulate.generator import GeneratorStats, SimEvent, TrafficGenerator
from telemetry.simulate.progress import ProgressFn, TextProgress
from telemetry.simulate.scenario import IncidentWindow, Scenario, load_scenario

__all__ = [
    "Pacer",
    "PublishSummary",
    "SimulationResult",
    "ensure_topics",
    "publish",
    "resolve_start",
    "simulate",
]

CHUNK = 5000  # delivery futures awaited together
PROGRESS_EVERY = 64  # events between progress callbacks
MAX_SLEEP_S = 0.5  # sleep in slices so progress keeps moving and Ctrl-C is prompt


class Pacer:
    """Maps simulated time to wall time: ``wall = wall0 + (sim_ms - origin_ms) / 1000 / speed``.

    The origin is the first event's simulated time unless given. Pure given a clock reading.
    """

    def __init__(self, speed: float, origin_sim_ms: int | None = None) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0 (simulated seconds per wall second)")
        self.speed = float(speed)
        self.origin_sim_ms = origin_sim_ms
        self.wall0: float | None = None

    def start(self, wall_now: float, first_sim_ms: int) -> None:
        if self.origin_sim_ms is None:
            self.origin_sim_ms = first_sim_ms
        self.wall0 = wall_now

    def wall_offset_s(self, sim_ms: int) -> float:
        assert self.origin_sim_ms is not None
        return (sim_ms - self.origin_sim_ms) / 1000.0 / self.speed

    def delay_s(self, sim_ms: int, wall_now: float) -> float:
        """Seconds to wait before publishing an event due at ``sim_ms`` (<= 0: it is due or late)."""
        if self.wall0 is None:
            self.start(wall_now, sim_ms)
        assert self.wall0 is not None
        return self.wall0 + self.wall_offset_s(sim_ms) - wall_now


@dataclass
class PublishSummary:
    """What ``publish`` did."""

    published: Counter[str] = field(default_factory=Counter)  # acknowledged, by topic kind
    by_note: Counter[str] = field(default_factory=Counter)  # acknowledged, by note
    topics: dict[str, str] = field(default_factory=dict)  # topic kind -> topic name
    duration_s: float = 0.0
    interrupted: bool = False
    first_sim_ms: int | None = None
    last_sim_ms: int | None = None
    speed: float | None = None
    max_behind_s: float = 0.0  # how far publishing fell behind the pacing schedule

    @property
    def total(self) -> int:
        return sum(self.published.values())

    @property
    def events_per_s(self) -> float:
        return self.total / self.duration_s if self.duration_s > 0 else 0.0

    def format(self) -> str:
        lines = [
            ("interrupted: " if self.interrupted else "")
            + f"published {self.total:,} events in {self.duration_s:,.1f}s ({self.events_per_s:,.0f} ev/s)"
        ]
        for kind, n in sorted(self.published.items()):
            lines.append(f"  {self.topics.get(kind, kind)}: {n:,}")
        notes = {k: v for k, v in self.by_note.items() if k != "original"}
        if notes:
            lines.append("  of which " + ", ".join(f"{v:,} {k}" for k, v in sorted(notes.items())))
        if self.first_sim_ms is not None and self.last_sim_ms is not None:
            lines.append(
                f"  simulated time {ms_to_datetime(self.first_sim_ms):%Y-%m-%d %H:%M:%S} .. "
                f"{ms_to_datetime(self.last_sim_ms):%Y-%m-%d %H:%M:%S} UTC"
            )
        if self.speed:
            lines.append(f"  pace x{self.speed:g}, at most {self.max_behind_s:.2f}s behind schedule")
        return "\n".join(lines)


def _make_producer(settings: Settings, linger_ms: int) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        **settings.kafka_client_options(),
        linger_ms=linger_ms,
        acks="all",
        enable_idempotence=True,
        max_batch_size=512 * 1024,
        client_id="llm-telemetry-simulate",
    )


async def publish(
    events: Iterable[SimEvent],
    settings: Settings,
    *,
    speed: float | None = None,
    progress: ProgressFn | None = None,
    total: int = 0,
    origin_sim_ms: int | None = None,
    linger_ms: int = 20,
    chunk: int = CHUNK,
    raise_on_cancel: bool = False,
    producer: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> PublishSummary:
    """Publish ``events`` in order; return counts of acknowledged messages.

    ``speed``: simulated seconds per wall second (None = no waiting). ``origin_sim_ms``: the
    simulated time that maps to the start (default: the first event's). ``progress(done, total)``
    is called as events are handed over (``total`` as given, 0 = unknown). On cancellation the
    producer is flushed and the summary returned with ``interrupted`` set (or, with
    ``raise_on_cancel``, CancelledError re-raised after the flush). ``producer`` (an
    AIOKafkaProducer-like object, already started) is for tests; normally one is created from
    ``settings`` with its ``kafka_client_options()``.
    """
    topics = {"requests": settings.requests_topic, "verdicts": settings.verdicts_topic}
    summary = PublishSummary(topics=dict(topics), speed=speed)
    pacer = Pacer(speed, origin_sim_ms) if speed else None
    own = producer is None
    if own:
        producer = _make_producer(settings, linger_ms)
        try:
            await producer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise InfrastructureError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc

    inflight: list[tuple[SimEvent, asyncio.Future[Any]]] = []
    handed = 0
    started = clock()

    async def drain() -> None:
        # asyncio.wait, not gather: cancelling us must not cancel the delivery futures
        if inflight:
            await asyncio.wait([f for _, f in inflight])
        error: BaseException | None = None
        for ev, fut in inflight:
            exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
            if exc is not None:
                error = error or exc
            else:
                summary.published[ev.topic_kind] += 1
                summary.by_note[ev.note] += 1
        inflight.clear()
        if error is not None:
            raise InfrastructureError(f"Kafka did not accept a message: {error!r}") from error

    try:
        for ev in events:
            if summary.first_sim_ms is None:
                summary.first_sim_ms = ev.publish_at_sim_ms
            summary.last_sim_ms = ev.publish_at_sim_ms
            if pacer is not None:
                while True:
                    wait = pacer.delay_s(ev.publish_at_sim_ms, clock())
                    if wait <= 0.001:
                        summary.max_behind_s = max(summary.max_behind_s, -wait)
                        break
                    await sleep(min(wait, MAX_SLEEP_S))
                    if progress is not None:
                        progress(handed, total)
            future = await producer.send(topics[ev.topic_kind], ev.value, key=ev.key)
            inflight.append((ev, future))
            handed += 1
            if progress is not None and handed % PROGRESS_EVERY == 0:
                progress(handed, total)
            if len(inflight) >= chunk:
                await drain()
        await producer.flush()
        await drain()
    except asyncio.CancelledError:
        summary.interrupted = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(producer.flush(), timeout=15)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(drain(), timeout=15)
        if raise_on_cancel:
            raise
    finally:
        summary.duration_s = clock() - started
        if progress is not None:
            progress(handed, total or handed)
        if own:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await producer.stop()
    return summary


async def ensure_topics(settings: Settings, topics: Iterable[str], *, partitions: int | None = None) -> list[str]:
    """Create the topics that do not exist yet (``settings.topic_partitions`` partitions,
    replication factor min(3, brokers)). Returns the ones created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options())
    try:
        await admin.start()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        raise InfrastructureError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return []
        n = partitions or settings.topic_partitions
        cluster = await admin.describe_cluster()
        replicas = max(1, min(3, len(cluster.get("brokers", ())) if isinstance(cluster, dict) else 1))
        response = await admin.create_topics([NewTopic(t, n, replicas) for t in missing])
        failed = [
            (err[0], err[1], err[2] if len(err) > 2 else "")
            for err in getattr(response, "topic_errors", [])
            if err[1] not in (0, 36)  # 36 = TOPIC_ALREADY_EXISTS (a concurrent creator)
        ]
        if failed:
            raise InfrastructureError(f"cannot create topics: {failed}")
        return missing
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


# --------------------------------------------------------------------------------------
# telemetry simulate
# --------------------------------------------------------------------------------------


def resolve_start(start: str | int | float | datetime | None) -> int | None:
    """A start override: None (the scenario's), ``"now"`` (this second), RFC 3339, or epoch ms."""
    if start is None:
        return None
    if isinstance(start, str) and start.strip().lower() == "now":
        return int(time.time()) * 1000
    return to_epoch_ms(start)


@dataclass
class SimulationResult:
    """What ``simulate`` did, and the ground truth the demo checks alerts against."""

    scenario: Scenario
    seed: int
    start_ms: int
    end_ms: int
    incidents: list[IncidentWindow]
    summary: PublishSummary
    generated: GeneratorStats

    def format(self) -> str:
        head = (
            f"scenario {self.scenario.name} seed {self.seed}: {self.generated.logical_requests:,} logical requests, "
            f"{len(self.incidents)} incidents"
        )
        lines = [head, self.summary.format()]
        for w in self.incidents:
            lines.append(
                f"  incident {w.kind} on {w.route} {ms_to_datetime(w.start_ms):%H:%M}-"
                f"{ms_to_datetime(w.end_ms):%H:%M} -> {'/'.join(w.expected_alertnames)}"
            )
        return "\n".join(lines)


async def simulate(
    scenario: str | Path | Scenario,
    settings: Settings,
    *,
    speed: float | None = None,
    seed: int | None = None,
    start: str | int | float | datetime | None = None,
    progress: ProgressFn | bool | None = True,
    count_first: bool = True,
    create_topics: bool = True,
    raise_on_cancel: bool = False,
) -> SimulationResult:
    """Generate a scenario's traffic and publish it to Kafka.

    ``scenario``: a path, a bundled name (``"demo"``) or a loaded Scenario. ``speed``:
    simulated seconds per wall second (360 = a day in 4 minutes; None = as fast as possible);
    simulated time ``start`` maps to the moment publishing begins. ``seed``/``start`` override
    the scenario's (``start="now"``). ``progress``: True = a text bar on stderr, or your own
    ``(done, total)`` callable. ``count_first`` runs the generator once to know the total for
    the bar (about 1 s per 100k events). ``create_topics`` creates missing topics first.
    """
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    start_ms = resolve_start(start)
    generator = TrafficGenerator(loaded, seed=seed, start_ms=start_ms)
    total = sum(1 for _ in generator) if count_first else 0
    if create_topics:
        await ensure_topics(settings, [settings.requests_topic, settings.verdicts_topic])
    bar: TextProgress | None = None
    if progress is True:
        bar = TextProgress(f"simulate {loaded.name}")
        progress_fn: ProgressFn | None = bar
    else:
        progress_fn = progress or None
    try:
        summary = await publish(
            generator,
            settings,
            speed=speed,
            progress=progress_fn,
            total=total,
            origin_sim_ms=generator.start_ms,
            raise_on_cancel=raise_on_cancel,
        )
    finally:
        if bar is not None:
            bar.close()
    return SimulationResult(
        scenario=loaded,
        seed=generator.seed,
        start_ms=generator.start_ms,
        end_ms=generator.end_ms,
        incidents=generator.windows,
        summary=summary,
        generated=generator.stats,
    )
