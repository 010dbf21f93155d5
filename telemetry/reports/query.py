"""How a report reaches ClickHouse, and the pieces of SQL every report shares.

A report is a function of a :data:`Query` callable (``sql -> QueryResult``) and the database
name, so it runs the same against a test engine, a ClickHouse server, or the running worker.
:func:`query_function` builds the callable the way ``telemetry sql`` reaches the engine: with the
embedded engine (chDB lets one process own its data path) it asks the running worker on
``127.0.0.1:<web_port>/telemetry/sql/``; when no worker answers, or on a server DSN, it connects
itself and runs every statement through :func:`telemetry.sql.run_read_only` (read-only check;
``readonly=1`` on a server).

Report windows are anchored on the newest data, not the wall clock: ``end`` is the newest request
``ts`` in ``<database>.requests`` and ``start`` is ``end - days``, but never before the oldest
request (so requests per second are not diluted by days with no data at all).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telemetry.errors import TelemetryError
from telemetry.settings import Settings
from telemetry.sql import QueryResult

__all__ = [
    "Query",
    "ReportError",
    "query_function",
    "sql_string",
    "check_database",
    "Window",
    "make_window",
    "load_window",
    "rows_of",
    "DAY_MS",
    "MONTH_SECONDS",
]

Query = Callable[[str], QueryResult]
"""Runs one read-only statement and returns its rows. Blocks; raises on a failed query."""

DAY_MS = 86_400_000
MONTH_SECONDS = 30 * 86_400
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ReportError(TelemetryError):
    """A report cannot be produced: no data, an unknown route or arm, a failed query."""


# -- the query callable ---------------------------------------------------------------------------
def query_function(settings: Settings, *, timeout: float = 120.0) -> Query:
    """A :data:`Query` on ``settings``' ClickHouse, reached the way ``telemetry sql`` reaches it.

    Embedded DSN: the first statement goes to the worker's HTTP page; if nothing listens there
    the callable opens the chDB path itself for this and every later statement. Once the worker
    has answered, later failures are reported, never retried on the data path (the worker owns
    it). Server DSN: a direct client with ``readonly=1``. Does no I/O until the first call.
    """
    if not settings.is_embedded_clickhouse:
        return _direct(settings, server=True)
    state: dict[str, Query] = {}
    url = f"http://127.0.0.1:{settings.web_port}/telemetry/sql/"

    def query(sql: str) -> QueryResult:
        chosen = state.get("query")
        if chosen is not None:
            return chosen(sql)
        try:
            result = _via_worker(url, sql, timeout)
        except ConnectionError:
            state["query"] = _direct(settings, server=False)
            return state["query"](sql)
        state["query"] = lambda s: _via_worker(url, s, timeout)
        return result

    return query


def _direct(settings: Settings, *, server: bool) -> Query:
    from telemetry.sql import run_read_only
    from telemetry.storage.clickhouse import connect

    client = connect(settings.resolved_clickhouse_dsn)
    return lambda sql: run_read_only(client, sql, server=server)


def _via_worker(url: str, sql: str, timeout: float) -> QueryResult:
    """POST the statement to the worker. ConnectionError when nothing answers there."""
    request = urllib.request.Request(
        url, data=json.dumps({"sql": sql}).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return QueryResult.from_json(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        raise ReportError(f"query failed on the worker: {body.get('error', exc)}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise ConnectionError(str(exc)) from None
        raise ReportError(f"the worker at {url} did not answer: {exc.reason}") from None
    except ConnectionRefusedError as exc:
        raise ConnectionError(str(exc)) from None


# -- SQL pieces -------------------------------------------------------------------------------------
def sql_string(value: str) -> str:
    """``value`` as a ClickHouse string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_database(name: str) -> str:
    """``name`` if it is a plain identifier (as the migrations require), else ReportError."""
    if not _IDENT.match(name):
        raise ReportError(f"invalid database name {name!r}")
    return name


def rows_of(result: QueryResult) -> list[dict[str, Any]]:
    """The rows of a result as dicts keyed by column name."""
    return [dict(zip(result.columns, row)) for row in result.rows]


def _ms_sql(ms: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({int(ms)}), 'UTC')"


@dataclass(frozen=True, slots=True)
class Window:
    """``[start_ms, end_ms]`` (epoch ms, both included) of request time a report covers."""

    start_ms: int
    end_ms: int
    days: float

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000.0

    def between(self, column: str = "ts") -> str:
        """SQL condition: ``column`` inside the window."""
        return f"{column} BETWEEN {_ms_sql(self.start_ms)} AND {_ms_sql(self.end_ms)}"

    def rate(self, count: float) -> float | None:
        """``count`` per second of window; None for an empty (zero-length) window."""
        return count / self.seconds if self.seconds > 0 else None

    def describe(self) -> str:
        def iso(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")

        span = self.seconds / 86_400
        return f"{iso(self.start_ms)} .. {iso(self.end_ms)} UTC ({span:.2f} d of data, --days {self.days:g})"


def make_window(first_ms: int, last_ms: int, days: float) -> Window:
    """The window of ``days`` ending at the newest request ``last_ms``, clipped to the oldest ``first_ms``."""
    if days <= 0:
        raise ReportError("--days must be > 0")
    return Window(max(first_ms, last_ms - int(days * DAY_MS)), last_ms, days)


def load_window(query: Query, database: str, days: float) -> Window:
    """:func:`make_window` from the oldest and newest request in ``<database>.requests``."""
    db = check_database(database)
    result = query(
        f"SELECT count() AS n, toUnixTimestamp64Milli(min(ts)) AS first_ms, toUnixTimestamp64Milli(max(ts)) AS last_ms "
        f"FROM {db}.requests"
    )
    row = rows_of(result)[0] if result.rows else {"n": 0}
    if not row["n"]:
        raise ReportError(f"no requests in {db}.requests yet")
    return make_window(int(row["first_ms"]), int(row["last_ms"]), days)
