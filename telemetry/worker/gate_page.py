"""``POST /telemetry/gates/``: the worker writes gate versions for ``telemetry gate``.

With the embedded engine the running worker owns the data (chDB: one process per data path), so
the CLI computes a gate's new version and asks the worker to insert it. Same token as the SQL
page; the body is ``{"gates": [<record fields>]}`` (:func:`telemetry.gates.store.fields_of`),
at most :data:`MAX_GATES` records of at most :data:`MAX_BODY` bytes; each is checked
(:func:`telemetry.gates.store.from_fields`) before anything is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from faust.web import Request, Response, View

from telemetry.gates.model import GateError
from telemetry.gates.store import DirectWriter, from_fields
from telemetry.settings import Settings

MAX_BODY = 2_000_000
MAX_GATES = 100


def register_gate_page(app: Any, pipeline: Any, settings: Settings,
                       unauthorized: Callable[[View, Request, Settings], Response | None]) -> None:  # fmt: skip
    @app.page("/telemetry/gates/")
    class GatePage(View):
        async def post(self, request: Request) -> Response:
            denied = unauthorized(self, request, settings)
            if denied is not None:
                return denied
            try:
                raw = await request.read()
                if len(raw) > MAX_BODY:
                    raise GateError(f"body larger than {MAX_BODY} bytes")
                body = orjson.loads(raw)
                items = body.get("gates") if isinstance(body, dict) else None
                if not isinstance(items, list) or not 0 < len(items) <= MAX_GATES:
                    raise GateError(f'expected {{"gates": [1..{MAX_GATES} records]}}')
                records = [from_fields(item) for item in items]
            except (GateError, orjson.JSONDecodeError) as exc:
                return self.json({"error": str(exc)}, status=400)
            await pipeline.wait_ready()
            store = pipeline.store
            writer = DirectWriter(store.client, store.db)
            await asyncio.to_thread(writer.write, records)
            return self.json({"written": [f"{g.id}@{g.version}" for g in records]})
