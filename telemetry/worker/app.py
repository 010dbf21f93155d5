"""The Faust app: the worker's three stages as one service, and its HTTP pages.

This module only wires; every decision lives in the stages, the pipeline and the pure cores.

- ``TELEMETRY_INGEST_MODE=batch`` (default): the repartition stage (``repartition``) re-keys
  both input topics by request id, the join stage (``consumer``) joins and stores its shards,
  the detection owner (``detection``) runs the detectors over the whole group. Any number of
  workers share the work (README, "Several workers").
- ``agents``: two Faust agents feed the pipeline straight from the input topics, owning every
  request id (one shard): for one worker only. Faust acks a batch after the loop body finishes
  and commits acked offsets, so no offset is committed before ClickHouse has the rows.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import faust
import orjson
from faust.web import Request, Response, View

from telemetry.dashboard.worker import FaustApp, add_worker_dashboard
from telemetry.ingest.batch import RawMessage
from telemetry.ingest.inputs import InputRouter
from telemetry.settings import Settings
from telemetry.sql import (
    MAX_CONCURRENT,
    MAX_QUEUED,
    SqlLimits,
    WriteRefused,
    run_read_only,
)
from telemetry.worker.alerting import AlertingObserver
from telemetry.worker.consumer import BatchConsumer
from telemetry.worker.detection import DetectionOwner
from telemetry.worker.gate_page import register_gate_page
from telemetry.worker.pipeline import Kind, Pipeline, die
from telemetry.worker.repartition import Repartitioner

log = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> Any:
    """Faust's view of the same security settings every aiokafka client gets."""
    opts = settings.kafka_client_options()
    ssl_context = cast("ssl.SSLContext | None", opts.get("ssl_context"))
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


MAX_SQL_BODY = 1024 * 1024
"""Largest body the SQL page reads (a statement is at most 256 KiB anyway)."""


def _unauthorized(view: View, request: Request, settings: Settings) -> Response | None:
    """401 unless the request carries ``Authorization: Bearer <TELEMETRY_WEB_TOKEN>`` (when set)."""
    if settings.web_token is None:
        return None
    expected = f"Bearer {settings.web_token.get_secret_value()}".encode()
    given = str(request.headers.get("Authorization", "")).encode()
    if hmac.compare_digest(given, expected):
        return None
    return view.json({"error": "unauthorized: send Authorization: Bearer <TELEMETRY_WEB_TOKEN>"}, status=401,
                     headers={"WWW-Authenticate": 'Bearer realm="llm-telemetry"'})  # fmt: skip


async def _sql_of(request: Request) -> tuple[str | None, str]:
    """The ``sql`` string of a JSON body ``{"sql": "..."}``, or (None, why not)."""
    length = getattr(request, "content_length", None)
    if length is not None and length > MAX_SQL_BODY:
        return None, f"body larger than {MAX_SQL_BODY} bytes"
    try:
        raw = await request.read()
    except Exception:  # noqa: BLE001 - aiohttp refuses bodies over its client_max_size
        return None, f"body larger than {MAX_SQL_BODY} bytes or unreadable"
    if len(raw) > MAX_SQL_BODY:
        return None, f"body larger than {MAX_SQL_BODY} bytes"
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, 'body is not JSON: send {"sql": "SELECT ..."}'
    if not isinstance(body, dict):
        return None, 'body is not a JSON object: send {"sql": "SELECT ..."}'
    sql = body.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        return None, 'body needs "sql": a non-empty string'
    return sql, ""


def _exit_if_failed(task: asyncio.Future[None]) -> None:
    """The ingest loop must never end on its own: if it does, stop without committing."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        die("ingest loop failed", exc)


def create_app(settings: Settings, pipeline: Pipeline, observer: AlertingObserver) -> faust.App:
    """Build the Faust app for ``settings``; ``pipeline`` joins and stores, ``observer`` detects."""
    # In batch mode the ingest consumer owns TELEMETRY_CONSUMER_GROUP; Faust's own consumer
    # (which subscribes to nothing then) must not join that group with its own protocol.
    app_id = settings.consumer_group if settings.ingest_mode == "agents" else f"{settings.consumer_group}.app"
    app = FaustApp(  # a faust.App that leaves / to the dashboard
        app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),  # not the working directory
        autodiscover=False,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_router_enabled=False,  # Faust's own /router/ and /table/ pages: unused, unauthenticated
        web_tables_enabled=False,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Faust's own group (subscribed to nothing in batch mode) must not hold a restarted
        # worker back for Faust's default 60 s after a member died: same timeout as the stages.
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=max(1.0, settings.kafka_session_timeout / 4),
        stream_buffer_maxsize=max(4 * settings.batch_size, 4096),
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_max_request_size=max(2 * settings.max_message_bytes, 1_048_576),
        stream_wait_empty=True,
    )

    router = InputRouter(settings, shards=1)

    def agent_for(topic_name: str) -> None:
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

        otlp = topic_name in settings.otlp_topics  # one message: ~100s of events, split off the loop
        take = max(1, settings.batch_size // 100) if otlp else settings.batch_size

        async def ingest(stream: Any) -> None:  # a faust.Stream (its StreamT protocol lacks take_events)
            await pipeline.wait_ready()
            async for events in stream.take_events(take, within=settings.batch_seconds):
                by_kind: dict[Kind, list[RawMessage]] = {"requests": [], "verdicts": []}
                messages = [e.message for e in events]
                routed = await asyncio.to_thread(router.route, messages) if otlp else router.route(messages)
                for kind, f in routed:
                    by_kind[kind].append(RawMessage(f.topic, f.partition, f.offset, f.key, f.value, 0, f.item, f.refusal))
                for kind, messages in by_kind.items():  # requests first: their verdicts join at once
                    if messages:
                        await pipeline.handle(kind, messages)

        ingest.__name__ = f"ingest_{topic_name}"
        app.agent(topic, name=f"ingest-{topic_name}")(ingest)

    repartitioner: Repartitioner | None = None
    consumer: BatchConsumer | None = None
    if settings.ingest_mode == "agents":
        for name in (settings.requests_topic, settings.verdicts_topic, *settings.otlp_topics):
            agent_for(name)
    else:
        repartitioner = Repartitioner(settings, pipeline.retry, pipeline.shards)
        consumer = BatchConsumer(settings, pipeline)
    detection = DetectionOwner(settings, observer, pipeline.retry)
    stages: list[Repartitioner | BatchConsumer | DetectionOwner] = [
        stage for stage in (repartitioner, consumer, detection) if stage is not None
    ]

    @app.service
    class PipelineService(faust.Service):
        """Starts the pipeline and the stages with the app; on stop, stops them upstream first:
        the repartition stage, then the join stage (its batch in flight is completed and
        committed), then the detection owner (it hands its state over)."""

        _stage_tasks: list[asyncio.Future[None]] = []

        async def on_start(self) -> None:
            await pipeline.start()
            assert pipeline.store is not None and pipeline.producer is not None
            await observer.start(pipeline.store, pipeline.producer)
            if settings.ingest_mode == "agents":
                await pipeline.adopt({0})
            gc.freeze()  # the join cache loaded at start need not be scanned by every collection
            for stage in stages:
                task = asyncio.ensure_future(stage.run())
                task.add_done_callback(_exit_if_failed)
                self._stage_tasks.append(task)

        async def on_stop(self) -> None:
            for stage, task in zip(stages, self._stage_tasks, strict=False):
                await stage.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=60)
                except (TimeoutError, asyncio.CancelledError):
                    die(f"{type(stage).__name__} did not stop within 60 s")
            await pipeline.stop()

    @app.page("/telemetry/health/")
    class HealthPage(View):
        """For probes, no token: 200 once the pipeline is ready (engine open, state loaded), else 503."""

        async def get(self, request: Request) -> Response:
            ready = bool(pipeline.ready)
            return self.json({"ready": ready}, status=200 if ready else 503)

    @app.page("/telemetry/stats/")
    class StatsPage(View):
        async def get(self, request: Request) -> Response:
            denied = _unauthorized(self, request, settings)
            if denied is not None:
                return denied
            join = pipeline.join
            return self.json({
                "ready": pipeline.ready,
                "counters": {**pipeline.counters, **observer.counters,
                             **(repartitioner.counters if repartitioner is not None else router.counters)},
                "detection_owner": observer.owner,
                "shards": sorted(pipeline.join.owned),
                "infrastructure_retries": pipeline.retry.retries,
                "stage_seconds": {k: round(v, 6) for k, v in pipeline.seconds.items()},
                "cached_requests": join.cached_requests,
                "parked_verdicts": join.parked_verdicts,
            })  # fmt: skip

    # Analyst SQL has threads of its own: a slow statement never takes one the ingest path needs.
    sql_pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT, thread_name_prefix="analyst-sql")
    sql_limits = SqlLimits.from_settings(settings)
    sql_waiting = [0]

    @app.page("/telemetry/sql/")
    class SqlPage(View):
        """Read-only SQL within the TELEMETRY_SQL_* limits: on the embedded engine, on analyst handles
        of its own (telemetry.sql), never the ingest client's; at most MAX_CONCURRENT at once."""

        async def post(self, request: Request) -> Response:
            denied = _unauthorized(self, request, settings)
            if denied is not None:
                return denied
            sql, why = await _sql_of(request)
            if sql is None:
                return self.json({"error": why}, status=400)
            if sql_waiting[0] >= MAX_CONCURRENT + MAX_QUEUED:
                return self.json({"error": "too many analyst queries at once; retry later"}, status=503)
            await pipeline.wait_ready()
            store = pipeline.store
            assert store is not None
            sql_waiting[0] += 1
            try:
                call = functools.partial(run_read_only, store.client, sql, limits=sql_limits)
                result = await asyncio.get_running_loop().run_in_executor(sql_pool, call)
            except WriteRefused as exc:
                return self.json({"error": str(exc), "refused": True}, status=400)
            except Exception as exc:  # a wrong or cancelled query is the analyst's to fix; report it
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return self.json({"error": first[:1000]}, status=400)
            finally:
                sql_waiting[0] -= 1
            return self.json(result.to_json())

    add_worker_dashboard(app, settings, pipeline)  # /, /route/, /alerts/: read-only pages (telemetry.dashboard)
    register_gate_page(app, pipeline, settings, _unauthorized)
    return app
