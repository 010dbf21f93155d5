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

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telemetry.errors import TelemetryError
from telemetry.sql import Query, QueryResult, query_function

__all__ = [
    "DAY_MS",
    "MONTH_SECONDS",
    "Query",
    "ReportError",
    "Window",
    "check_database",
    "load_window",
    "make_window",
    "ms_sql",
    "query_function",
    "rows_of",
    "sql_string",
]

DAY_MS = 86_400_000
MONTH_SECONDS = 30 * 86_400
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ReportError(TelemetryError):
    """A report cannot be produced: no data, an unknown route or arm, a failed query."""


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


def ms_sql(ms: int) -> str:
    """SQL of the UTC instant at epoch milliseconds ``ms`` (a ``DateTime64(3)``)."""
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
        return f"{column} BETWEEN {ms_sql(self.start_ms)} AND {ms_sql(self.end_ms)}"

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


FUTURE_SLACK_S = 3600
"""Rows dated more than this ahead of the engine's clock do not move a report's window: the
worker refuses such events now (``ts_in_future``), but a table may hold some stored before."""


def load_window(query: Query, database: str, days: float) -> Window:
    """:func:`make_window` from the oldest and newest request in ``<database>.requests``
    (requests dated over :data:`FUTURE_SLACK_S` ahead of the engine's clock left out)."""
    db = check_database(database)
    result = query(
        f"SELECT count() AS n, toUnixTimestamp64Milli(min(ts)) AS first_ms, toUnixTimestamp64Milli(max(ts)) AS last_ms "
        f"FROM {db}.requests WHERE ts <= now64(3) + INTERVAL {FUTURE_SLACK_S} SECOND"
    )
    row = rows_of(result)[0] if result.rows else {"n": 0}
    if not row["n"]:
        raise ReportError(f"no requests in {db}.requests yet")
    return make_window(int(row["first_ms"]), int(row["last_ms"]), days)
