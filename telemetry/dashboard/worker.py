"""The dashboard inside the worker: its Faust app class and the pages it mounts.

Faust's web server answers ``{"status": "OK"}`` at ``/`` (its production index); the worker's
app is built as :class:`FaustApp`, whose server leaves ``/`` to the dashboard (probes use
``/telemetry/health/``). :func:`add_worker_dashboard` mounts every page of
:data:`telemetry.dashboard.web.PAGES` and the static assets.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import faust
from aiohttp import web
from faust.web import View
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from telemetry.dashboard import pages
from telemetry.dashboard.web import PAGES, Dashboard, request_of, response
from telemetry.errors import TelemetryError
from telemetry.settings import Settings
from telemetry.sql import QueryResult, SqlLimits, run_read_only

if TYPE_CHECKING:
    from telemetry.worker.pipeline import Pipeline

__all__ = ["DASHBOARD_LIMITS", "FaustApp", "add_worker_dashboard"]

DASHBOARD_LIMITS = SqlLimits(seconds=10.0, memory_mb=512, threads=1, result_rows=50_000)
"""Bounds of each dashboard statement in the worker. They differ from the analyst defaults on
purpose: on the embedded engine ``telemetry.sql`` keeps one pool of connection handles per set of
limits, so a page never waits behind an analyst's 30-second statement."""


class _DashboardWeb(AiohttpWeb):
    """Faust's aiohttp web server without its production index (``{"status": "OK"}`` at ``/``)."""

    production_blueprints: ClassVar[list[tuple[str, str]]] = []


class FaustApp(faust.App):
    """``faust.App`` whose web server leaves ``/`` to the dashboard."""

    def _new_web(self) -> Any:
        return _DashboardWeb(self)


def add_worker_dashboard(app: Any, settings: Settings, pipeline: Pipeline) -> Dashboard:
    """Mount the dashboard in the worker's Faust ``app`` (a :class:`FaustApp`). Its statements run
    through :func:`telemetry.sql.run_read_only` within :data:`DASHBOARD_LIMITS`, on two threads of
    their own (never the ingest path's), once the pipeline is ready (503 before)."""

    def query(sql: str) -> QueryResult:
        store = pipeline.store
        if store is None:
            raise TelemetryError("the worker is starting")
        return run_read_only(store.client, sql, limits=DASHBOARD_LIMITS)

    token = settings.web_token.get_secret_value() if settings.web_token else None
    dashboard = Dashboard(query=query, database=settings.clickhouse_database, token=token,
                          executor=ThreadPoolExecutor(max_workers=2, thread_name_prefix="dashboard"),
                          ready=lambda: bool(pipeline.ready))  # fmt: skip
    for path in (*PAGES, *(f"/static/{name}" for name in pages.ASSETS)):
        app.page(path, name=f"dashboard:{path}")(_view(dashboard))
    return dashboard


def _view(dashboard: Dashboard) -> type:
    class DashboardPage(View):
        async def get(self, request: web.Request) -> web.Response:
            return response(await dashboard.respond(request_of(request)))

    return DashboardPage
