"""Gates in ClickHouse: rows of ``tier_gates`` to records and back, reads and writes.

Reads go through a :data:`telemetry.sql.Query` (so they reach the running worker when it owns
the embedded engine). Writes go through a :class:`GateWriter`: with the embedded engine and a
worker running, the worker writes (``POST /telemetry/gates/``, the same token as the SQL page:
chDB lets one process own its data); otherwise a direct client inserts. A version is written
once: the insert carries a deduplication token of ``(id, version)``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from telemetry.gates.model import STATES, GateError, GateRecord
from telemetry.settings import Settings
from telemetry.sql import Query, auth_headers, worker_base_url

COLUMNS = [
    "id", "version", "route", "team", "direction", "current_model", "proposed_model", "proposed_provider", "state",
    "hypothesis", "author", "reviewer", "review_note", "opened_at", "decided_at", "applied_at", "postmortem_due_at",
    "closed_at", "projected_monthly_usd", "realized_monthly_usd", "evidence", "findings", "updated_at",
]  # fmt: skip

_TIMES = {"opened_at": "opened_at_ms", "decided_at": "decided_at_ms", "applied_at": "applied_at_ms",
          "postmortem_due_at": "postmortem_due_at_ms", "closed_at": "closed_at_ms", "updated_at": "updated_at_ms"}  # fmt: skip


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def row_of(g: GateRecord) -> list[Any]:
    """The ``tier_gates`` row of one version (column order :data:`COLUMNS`)."""
    values: dict[str, Any] = {
        "id": g.id, "version": g.version, "route": g.route, "team": g.team, "direction": g.direction,
        "current_model": g.current_model, "proposed_model": g.proposed_model, "proposed_provider": g.proposed_provider,
        "state": g.state, "hypothesis": g.hypothesis, "author": g.author, "reviewer": g.reviewer,
        "review_note": g.review_note, "projected_monthly_usd": g.projected_monthly_usd,
        "realized_monthly_usd": g.realized_monthly_usd, "evidence": orjson.dumps(g.evidence).decode(),
        "findings": g.findings,
    }  # fmt: skip
    for column, attr in _TIMES.items():
        values[column] = _dt(getattr(g, attr))
    return [values[c] for c in COLUMNS]


def fields_of(g: GateRecord) -> dict[str, Any]:
    """The record as JSON-able fields (what the CLI sends to the worker's write page)."""
    return asdict(g)


def from_fields(data: Any) -> GateRecord:
    """A record from :func:`fields_of` output (the worker's write page). Raises GateError."""
    if not isinstance(data, dict):
        raise GateError("not a gate record: expected an object")
    try:
        record = GateRecord(**data)
    except TypeError as exc:
        raise GateError(f"not a gate record: {exc}") from None
    if not record.id.startswith("gate-") or record.version < 1 or record.state not in STATES:
        raise GateError("not a gate record: bad id, version or state")
    return record


def _ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    if isinstance(value, int | float):
        return int(value)
    text = str(value).replace("Z", "+00:00").replace(" ", "T")
    dt = datetime.fromisoformat(text)
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def record_of(row: dict[str, Any]) -> GateRecord:
    """A record from a ``tier_gates`` / ``tier_gate_status`` row (times read as epoch ms)."""
    try:
        evidence = orjson.loads(row.get("evidence") or "{}")
    except orjson.JSONDecodeError:
        evidence = {}
    times = {attr: _ms(row.get(column)) for column, attr in _TIMES.items()}
    return GateRecord(
        id=str(row["id"]), version=int(row["version"]), route=str(row["route"]), team=str(row.get("team") or ""),
        direction=str(row.get("direction") or "up"), current_model=str(row["current_model"]),
        proposed_model=str(row["proposed_model"]), proposed_provider=str(row.get("proposed_provider") or ""),
        state=str(row["state"]), hypothesis=str(row.get("hypothesis") or ""), author=str(row.get("author") or ""),
        reviewer=str(row.get("reviewer") or ""), review_note=str(row.get("review_note") or ""),
        opened_at_ms=times["opened_at_ms"] or 0, decided_at_ms=times["decided_at_ms"],
        applied_at_ms=times["applied_at_ms"], postmortem_due_at_ms=times["postmortem_due_at_ms"],
        closed_at_ms=times["closed_at_ms"], projected_monthly_usd=row.get("projected_monthly_usd"),
        realized_monthly_usd=row.get("realized_monthly_usd"), evidence=evidence if isinstance(evidence, dict) else {},
        findings=str(row.get("findings") or ""), updated_at_ms=times["updated_at_ms"] or 0,
    )  # fmt: skip


_SELECT = ", ".join(f"toUnixTimestamp64Milli({c}) AS {c}" if c in _TIMES else c for c in COLUMNS)


def load(query: Query, database: str, *, gate_id: str | None = None, route: str | None = None,
         states: Sequence[str] = ()) -> list[GateRecord]:  # fmt: skip
    """Current versions (``tier_gate_status``), newest first, filtered by id, route and states."""
    from telemetry.reports.query import check_database, rows_of, sql_string

    db = check_database(database)
    where = ["1"]
    if gate_id is not None:
        where.append(f"id = {sql_string(gate_id)}")
    if route is not None:
        where.append(f"route = {sql_string(route)}")
    if states:
        where.append(f"state IN ({', '.join(sql_string(s) for s in states)})")
    rows = rows_of(query(f"SELECT {_SELECT} FROM {db}.tier_gate_status WHERE {' AND '.join(where)} ORDER BY opened_at DESC, id"))
    return [record_of(r) for r in rows]


def load_one(query: Query, database: str, gate_id: str) -> GateRecord:
    found = load(query, database, gate_id=gate_id)
    if not found:
        raise GateError(f"no gate {gate_id!r} (telemetry gate list shows them)")
    return found[0]


class GateWriter(Protocol):
    def write(self, records: Sequence[GateRecord]) -> None: ...


class DirectWriter:
    """Inserts with a ClickHouse client (a server DSN, the worker itself, or no worker running)."""

    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.database = database

    def write(self, records: Sequence[GateRecord]) -> None:
        if not records:
            return
        token = "gates:" + ",".join(f"{g.id}@{g.version}" for g in records)
        self.client.insert(f"{self.database}.tier_gates", [row_of(g) for g in records], column_names=COLUMNS,
                           settings={"insert_deduplication_token": token})  # fmt: skip


class WorkerWriter:
    """Asks the running worker to insert (``POST /telemetry/gates/``)."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.url = f"{worker_base_url(settings)}/telemetry/gates/"
        self.headers = {"Content-Type": "application/json", **auth_headers(settings)}
        self.timeout = timeout

    def write(self, records: Sequence[GateRecord]) -> None:
        body = json.dumps({"gates": [fields_of(g) for g in records]}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout):
                return
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            if exc.code == 401:
                raise GateError(f"the worker at {self.url} wants its bearer token: set TELEMETRY_WEB_TOKEN") from None
            raise GateError(f"the worker refused the gate: HTTP {exc.code} {detail}") from None
