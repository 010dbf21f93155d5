"""``telemetry worker``: create topics, build the pipeline and the detection observer, run the Faust worker."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from telemetry.settings import Settings

log = logging.getLogger(__name__)


def logging_config(loglevel: str) -> dict[str, Any]:
    """dictConfig for Faust's worker: JSON lines on stderr for every logger."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "telemetry.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": loglevel.upper()},
        "loggers": {
            name: {"level": "WARNING"} for name in ("aiokafka", "faust", "mode", "kafka", "aiohttp", "asyncio")
        },
    }


def build_worker(settings: Settings, *, loglevel: str = "info") -> Any:
    """The Faust worker for ``settings`` (not started). Raises aiokafka errors if the broker is down."""
    import faust

    from telemetry.routes import RoutesConfig
    from telemetry.worker.alerting import AlertingObserver
    from telemetry.worker.app import create_app
    from telemetry.worker.kafka_out import ensure_topics, shard_count
    from telemetry.worker.pipeline import Pipeline

    routes = RoutesConfig.load(settings.routes_file)  # a bad routes file stops the worker before any I/O
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust keeps its (empty) app directory there
    asyncio.run(ensure_topics(settings))
    shards = asyncio.run(shard_count(settings)) if settings.ingest_mode == "batch" else 1
    pipeline = Pipeline(settings, shards=shards)
    observer = AlertingObserver(settings, routes, pipeline.retry)
    app = create_app(settings, pipeline, observer)
    return faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        logging_config=logging_config(loglevel),
        override_logging=True,
    )


def tune_gc() -> None:
    """Fewer, larger young-generation collections: the worker allocates a few objects per event
    and keeps a million cached requests alive; with CPython's default thresholds the collector
    took half of the decode time (BENCHMARKS.md). Cached objects hold no reference cycles, so
    they are freed by reference counting as before."""
    gc.set_threshold(50_000, 20, 100)


def run_worker(settings: Settings, *, loglevel: str = "info") -> int:
    """Run until SIGINT/SIGTERM. Blocks."""
    tune_gc()
    worker = build_worker(settings, loglevel=loglevel)
    worker.execute_from_commandline()
    return 0
