"""Read-only SQL for analysts: ``telemetry sql "SELECT ..."``.

Writes are refused by ClickHouse's own parser: the statement's syntax tree (``EXPLAIN AST``)
must be a SELECT, SHOW, DESCRIBE, EXISTS or EXPLAIN. On a server DSN the query also runs with
``readonly=1``. (chDB keeps per-query settings for the rest of its session, so the embedded
engine relies on the parser check alone.)
"""

from __future__ import annotations

import csv
import io
import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from telemetry.errors import TelemetryError
from telemetry.settings import Settings

_READ_ROOTS = ("SelectWithUnionQuery", "SelectQuery", "ShowTables", "ShowCreate", "Describe", "Explain",
               "ExistsTable", "ExistsDatabase", "ExistsView", "ShowColumns", "ShowDatabases", "ShowProcessList",
               "ShowSetting", "ShowSettings", "ShowFunctions", "ShowEngines")  # fmt: skip
MAX_ROWS = 100_000


class WriteRefused(TelemetryError):
    """The statement is not read-only."""


class SqlError(TelemetryError):
    """A query failed (ClickHouse's message), or the worker holding the engine did not answer."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueryResult:
        return cls(list(data["columns"]), [list(r) for r in data["rows"]], bool(data.get("truncated")))


def check_read_only(client: Client, sql: str) -> str:
    """Return ``sql`` as the one statement ClickHouse parses it to, or raise WriteRefused.

    ``formatQuery`` rejects multi-statements (chDB would run them all); the canonical text it
    returns is what gets executed, so nothing hides after a comment or a semicolon."""
    if not sql.strip():
        raise WriteRefused("empty statement")
    try:
        text = str(client.query("SELECT formatQuery(%(q)s)", parameters={"q": sql}).result_rows[0][0])
        ast = client.query(f"EXPLAIN AST {text}").result_rows
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WriteRefused(f"not a single read-only statement: {first[:300]}") from None
    root = str(ast[0][0]).strip() if ast else ""
    if not root.startswith(_READ_ROOTS):
        raise WriteRefused(f"only read-only statements are allowed (this one is {root.split(' ')[0] or 'unknown'})")
    if any(str(line[0]).startswith(" Literal") for line in ast):
        raise WriteRefused("INTO OUTFILE is not allowed")
    top_identifiers = [str(line[0]).strip() for line in ast if str(line[0]).startswith(" Identifier")]
    if top_identifiers and top_identifiers != ["Identifier Native"]:  # the client appends FORMAT Native
        raise WriteRefused("a FORMAT clause is not allowed: choose the output with --format")
    return text


def run_read_only(client: Client, sql: str, *, server: bool, max_rows: int = MAX_ROWS) -> QueryResult:
    """Check and run ``sql``; return at most ``max_rows`` rows as JSON-safe values. Blocks."""
    text = check_read_only(client, sql)
    settings = {"readonly": 1, "max_result_rows": max_rows + 1, "result_overflow_mode": "break"} if server else {}
    result = client.query(text, settings=settings)
    rows = [[_plain(v) for v in row] for row in result.result_rows[: max_rows + 1]]
    truncated = len(rows) > max_rows
    return QueryResult(list(result.column_names), rows[:max_rows], truncated)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def render(result: QueryResult, fmt: str = "table") -> str:
    """Format a result as an aligned text table, CSV, or JSON lines."""
    if fmt == "json":
        return "\n".join(orjson.dumps(dict(zip(result.columns, row))).decode() for row in result.rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_cell(v) for v in row] for row in result.rows)
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(result.columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    out.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''}{', truncated' if result.truncated else ''})")
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


Query = Callable[[str], "QueryResult"]
"""Runs one read-only statement and returns its rows. Blocks; raises on a failed query."""


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
        if body.get("refused"):
            raise WriteRefused(str(body.get("error", exc))) from None
        raise SqlError(f"query failed: {body.get('error', exc)}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise ConnectionError(str(exc)) from None
        raise SqlError(f"the worker at {url} did not answer: {exc.reason}") from None
    except ConnectionRefusedError as exc:
        raise ConnectionError(str(exc)) from None
