"""Read-only, local-only, bounded SQL for analysts: ``telemetry sql "SELECT ..."``, the reports,
and the worker's ``/telemetry/sql/`` page all run every statement through :func:`run_read_only`.

Three layers:

1. **The checker** (:func:`check_read_only`). ClickHouse's own parser gives the one statement
   (``formatQuery``: no multi-statements; the canonical text is what runs) and its syntax tree
   (``EXPLAIN AST``), which is walked node by node, including subqueries, CTEs, JOINs, UNIONs,
   ``IN`` lists, EXPLAIN and ``view()``. Refused: any statement but SELECT, a few SHOW/DESCRIBE/
   EXISTS forms and EXPLAIN of a SELECT; ``INTO OUTFILE``; ``FORMAT``; a ``SETTINGS`` clause anywhere;
   every table function except :data:`SAFE_TABLE_FUNCTIONS` and the parameterized views of
   the user databases, such as ``route_window(bucket_seconds = N)`` (the set of table functions is read
   from ``system.table_functions``, so new ones are refused by default); the functions in
   :data:`DENIED_FUNCTIONS` (files, network, processes, dictionaries, LLM calls) and executable
   user-defined functions; ``system.*`` tables outside :data:`SYSTEM_TABLES`; ``merge()`` over
   ``system``; quoted identifiers with escapes or control characters (they would break the
   line-oriented tree).
2. **Limits** (:class:`SqlLimits`, ``TELEMETRY_SQL_*``): run time, memory, threads, result rows.
   On a server DSN they are per-query settings of the HTTP request, with ``readonly=1``. On the
   embedded engine they are the *session* settings of a dedicated chDB connection handle that
   only analyst SQL uses (``_AnalystPool``), with ``readonly = 1`` set last: a trailing
   ``SETTINGS`` clause is not enough (in ``SELECT .. UNION ALL SELECT .. SETTINGS ..`` it binds to
   the last SELECT only, measured: the first ran unbounded), and the worker's own ingest handle
   never sees them. The handle has its own lock, so a long analyst query does not hold the
   ingest client's lock either.
3. **The engine itself** (``readonly = 1`` on both DSN kinds): writes and settings changes fail,
   and so do table functions that read files or the network (they need ``CREATE TEMPORARY
   TABLE``, which read-only mode refuses).
"""

from __future__ import annotations

import csv
import io
import json
import math
import queue
import re
import threading
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from telemetry.errors import TelemetryError
from telemetry.settings import Settings

MAX_ROWS = 100_000
MAX_SQL_BYTES = 256 * 1024  # ClickHouse's own max_query_size
MIB = 1024 * 1024

SAFE_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "primes", "generate_series", "generateseries", "generaterandom",
    "values", "sqlstandardvalues", "null", "view", "merge",
})  # fmt: skip
"""The only table functions analysts may use (lower case): generated rows, inline values, ``view()``
of a checked subquery and ``merge()`` over a named database other than ``system``."""

DENIED_FUNCTIONS = frozenset({
    "file",  # reads a local file (/proc/self/environ holds the worker's secrets)
    "hascolumnintable",  # its long form connects to another host
    "joinget", "joingetornull",  # read a table named by a string, past the table checks
    "catboostevaluate", "modelevaluate",  # load model files
    "generateserialid",  # Keeper (network) and writes
    "logtrace",  # writes to the server log
    "addresstoline", "addresstolinewithinlines", "addresstosymbol", "demangle",  # introspection
    "reversednsquery",  # DNS (network)
})  # fmt: skip
"""Scalar functions refused anywhere in a statement (lower case), besides :data:`DENIED_PREFIXES`
and executable user-defined functions."""

DENIED_PREFIXES = ("dictget", "dicthas", "dictisin", "ai", "naivebayes")
"""Function families refused: dictionaries (their sources may be files, URLs, databases or
executables), ``ai*`` (calls to LLM providers over the network), ``naiveBayes*`` (model files)."""

SYSTEM_TABLES = frozenset({
    "tables", "columns", "databases", "parts", "parts_columns", "functions", "table_functions", "table_engines",
    "data_type_families", "aggregate_function_combinators", "formats", "time_zones",
    "one", "numbers", "numbers_mt", "zeros", "zeros_mt",
})  # fmt: skip
"""The ``system.*`` tables analysts may read: the catalog, never processes, logs, users, settings or disks."""

_RESTRICTED_DATABASES = frozenset({"system"})
_READ_ROOTS = frozenset({
    "SelectWithUnionQuery", "Explain", "DescribeQuery",
    "ShowTables", "ShowColumns", "ShowIndexes", "ShowSetting", "ShowFunctions", "ShowEngineQuery",
    "ShowCreateTableQuery", "ShowCreateViewQuery", "ShowCreateDatabaseQuery",
    "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsViewQuery", "ExistsDictionaryQuery",
})  # fmt: skip
"""Statements analysts may run (``EXPLAIN AST`` root node). ``ShowTables`` also covers SHOW DATABASES,
SHOW SETTINGS, SHOW DICTIONARIES. Not SHOW PROCESSLIST (other users' queries), SHOW GRANTS/USERS/
CREATE USER and other access statements, SHOW CREATE DICTIONARY (its source may hold credentials)."""
_EXPLAIN_KINDS = frozenset({"EXPLAIN", "EXPLAIN PLAN", "EXPLAIN AST", "EXPLAIN SYNTAX", "EXPLAIN QUERY TREE",
                            "EXPLAIN PIPELINE", "EXPLAIN ESTIMATE"})  # fmt: skip
MAX_CONCURRENT = 2
"""Analyst statements the worker runs at once (each on at most ``TELEMETRY_SQL_MAX_THREADS`` threads)."""
MAX_QUEUED = 8
"""Analyst statements that may wait for a slot in the worker; more are answered 503."""


class WriteRefused(TelemetryError):
    """The statement is not read-only, or reaches past the analyst's tables (files, network, system)."""


class SqlError(TelemetryError):
    """A query failed (ClickHouse's message), was cancelled by a limit, or the worker did not answer."""


@dataclass(frozen=True, slots=True)
class SqlLimits:
    """Bounds of one analyst statement (``TELEMETRY_SQL_*``)."""

    seconds: float = 30.0
    memory_mb: int = 1024
    threads: int = 1
    result_rows: int = MAX_ROWS

    @classmethod
    def from_settings(cls, settings: Settings) -> SqlLimits:
        return cls(float(settings.sql_max_seconds), int(settings.sql_max_memory_mb), int(settings.sql_max_threads),
                   int(settings.sql_max_result_rows))  # fmt: skip

    def check_settings(self) -> dict[str, Any]:
        """ClickHouse settings bounding time, memory and threads (the checker's own queries)."""
        return {
            "max_execution_time": self.seconds,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.memory_mb * MIB,
            "max_threads": self.threads,
        }

    def run_settings(self) -> dict[str, Any]:
        """:meth:`check_settings` and the row limit. ``limit`` bounds the outermost result only (not
        subqueries) and also a UNION's (``max_result_rows`` does not: measured); one more row than
        shown marks the result truncated."""
        return {**self.check_settings(), "limit": self.result_rows + 1}


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


def client_query(client: Client) -> Query:
    """A :data:`Query` that runs statements as they are on ``client``: for this product's own
    statements (the detection owner's reads, ``telemetry gate``), never an analyst's (those go
    through :func:`run_read_only`)."""

    def query(sql: str) -> QueryResult:
        result = client.query(sql)
        return QueryResult(list(result.column_names), [list(r) for r in result.result_rows])

    return query


# -- the checker ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Node:
    kind: str
    text: str  # the rest of the line, without "(children N)"
    children: list[_Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Name of a Function / Identifier / TableIdentifier node, without its alias."""
        return self.text.split(" (alias ", 1)[0].strip()

    def line(self) -> str:
        return f"{self.kind} {self.text}".strip()


@dataclass(frozen=True, slots=True)
class _Catalog:
    functions: frozenset[str]  # lower-case names of ordinary functions
    executable: frozenset[str]  # executable user-defined functions (they run processes)
    table_functions: frozenset[str]
    database: str
    is_view: Callable[[str, str], bool] = lambda database, name: False
    """Whether ``database.name`` is a view (a parameterized view is called like a table function);
    asked at check time, not cached: migrations create views after a client's catalog is read."""


_LINE = re.compile(r"^( *)(\S+)(?: (.*))?$")
_CHILDREN = re.compile(r" ?\(children (\d+)\)$")
_STRING = re.compile(r"^'((?:[^'\\]|\\.)*)'")
_EXPLAIN_AST = re.compile(r"^EXPLAIN\s+AST\b", re.IGNORECASE)


def check_read_only(client: Client, sql: str, *, settings: dict[str, Any] | None = None) -> str:
    """Return ``sql`` as the one statement ClickHouse parses it to, or raise WriteRefused.

    ``formatQuery`` rejects multi-statements (chDB would run them all); the canonical text it
    returns is what gets executed, so nothing hides after a comment or a semicolon. Its syntax
    tree is then checked node by node (see the module docstring). ``settings``: per-query
    settings of the checker's own queries (a server's limits)."""
    settings = settings or {}
    if not sql.strip():
        raise WriteRefused("empty statement")
    if len(sql.encode("utf-8", "replace")) > MAX_SQL_BYTES:
        raise WriteRefused(f"statement longer than {MAX_SQL_BYTES // 1024} KiB")
    try:
        text = str(client.query("SELECT formatQuery(%(q)s)", parameters={"q": sql}, settings=settings).result_rows[0][0])
    except Exception as exc:
        raise WriteRefused(f"not a single read-only statement: {_first_line(exc)}") from None
    if not _identifiers_are_plain(text):
        raise WriteRefused("quoted identifiers with escapes or control characters are not allowed")
    catalog = _catalog(client, settings)
    if catalog.database in _RESTRICTED_DATABASES:
        raise WriteRefused(f"the connection's default database is {catalog.database}: use another one")
    # FORMAT Native of our own for the statement (two for an EXPLAIN AST: the inner SELECT takes one),
    # so that the client's own FORMAT Native lands on our EXPLAIN AST: an HTTP server would otherwise
    # answer in its default format. A FORMAT of the user's makes this a syntax error.
    formats = "\nFORMAT Native" * (2 if _EXPLAIN_AST.match(text) else 1)
    try:
        rows = [str(r[0]) for r in client.query(f"EXPLAIN AST {text}{formats}", settings=settings).result_rows]
    except Exception as exc:
        raise WriteRefused(f"not a single read-only statement: {_first_line(exc)}") from None
    root = _parse_tree(rows)
    _check_root(root, catalog)
    return text


def _identifiers_are_plain(text: str) -> bool:
    """False when a `quoted` or "quoted" identifier of the canonical text holds an escape or a
    control character: EXPLAIN AST prints identifiers raw, so a newline would forge tree lines."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            i += 1
            while i < n and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                return False
        elif ch in "`\"":
            i += 1
            while i < n and text[i] != ch:
                if text[i] == "\\" or unicodedata.category(text[i]) in ("Cc", "Zl", "Zp"):
                    return False
                i += 1
            if i >= n:
                return False
        i += 1
    return True


def _catalog(client: Client, settings: dict[str, Any]) -> _Catalog:
    cached = getattr(client, "_telemetry_sql_catalog", None)
    if isinstance(cached, _Catalog):
        return cached
    try:
        row = client.query(
            "SELECT (SELECT groupArray(lower(name)) FROM system.functions WHERE origin != 'ExecutableUserDefined'), "
            "(SELECT groupArray(lower(name)) FROM system.functions WHERE origin = 'ExecutableUserDefined'), "
            "(SELECT groupArray(lower(name)) FROM system.table_functions), currentDatabase()",
            settings=settings,
        ).result_rows[0]
    except Exception as exc:
        raise WriteRefused(f"cannot read the function catalog to check the statement: {_first_line(exc)}") from None
    def is_view(database: str, name: str) -> bool:
        if database.lower() in ("system", "information_schema"):
            return False
        found = client.query("SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(n)s AND engine = 'View'",
                             parameters={"d": database, "n": name}, settings=settings).result_rows  # fmt: skip
        return bool(found and found[0][0])

    catalog = _Catalog(frozenset(row[0]), frozenset(row[1]), frozenset(row[2]), str(row[3]), is_view)
    try:
        client._telemetry_sql_catalog = catalog  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return catalog


def _parse_tree(rows: list[str]) -> _Node:
    """The EXPLAIN AST text as a tree; every node's "(children N)" must match what follows it."""
    unverifiable = WriteRefused("the statement's syntax tree could not be verified")
    stack: list[tuple[int, _Node, int]] = []  # depth, node, declared children
    root: _Node | None = None
    for row in rows:
        m = _LINE.match(row)
        if m is None:
            raise unverifiable
        depth, kind, rest = len(m.group(1)), m.group(2), m.group(3) or ""
        declared = 0
        cm = _CHILDREN.search(rest)
        if cm is not None:
            declared, rest = int(cm.group(1)), rest[: cm.start()]
        node = _Node(kind, rest)
        while stack and stack[-1][0] >= depth:
            _close(stack.pop(), unverifiable)
        if not stack:
            if root is not None or depth != 0:
                raise unverifiable
            root = node
        else:
            if stack[-1][0] != depth - 1:
                raise unverifiable
            stack[-1][1].children.append(node)
        stack.append((depth, node, declared))
    while stack:
        _close(stack.pop(), unverifiable)
    if root is None:
        raise unverifiable
    return root


def _close(entry: tuple[int, _Node, int], error: WriteRefused) -> None:
    if len(entry[1].children) != entry[2]:
        raise error


def _check_root(root: _Node, catalog: _Catalog) -> None:
    if root.kind not in _READ_ROOTS:
        raise WriteRefused(f"only read-only statements are allowed (this one is {root.line() or 'unknown'})")
    children = list(root.children)
    if not children or not _is_native(children[-1]):  # the FORMAT Native we appended
        raise WriteRefused("a FORMAT clause is not allowed: choose the output with --format")
    children.pop()
    for child in children:
        if child.kind == "Literal":
            raise WriteRefused("INTO OUTFILE is not allowed")
        if child.kind == "Identifier" and root.kind in ("SelectWithUnionQuery", "Explain"):
            raise WriteRefused("a FORMAT clause is not allowed: choose the output with --format")
    if root.kind == "Explain":
        if root.text not in _EXPLAIN_KINDS:
            raise WriteRefused(f"{root.text} is not allowed")
        if children and children[0].kind == "Set":  # EXPLAIN's own options (ClickHouse refuses other settings there)
            children.pop(0)
        if len(children) != 1 or children[0].kind != "SelectWithUnionQuery":
            raise WriteRefused("EXPLAIN is allowed of a SELECT only")
    for child in children:
        _check(child, root, catalog)


def _check(node: _Node, parent: _Node, catalog: _Catalog) -> None:
    kind = node.kind
    if kind == "Set":
        raise WriteRefused("a SETTINGS clause is not allowed (the limits are TELEMETRY_SQL_* settings)")
    if kind == "SelectWithUnionQuery":
        for i, child in enumerate(node.children):
            if child.kind == "Literal":
                raise WriteRefused("INTO OUTFILE is not allowed")
            if child.kind == "Identifier" and not (_is_native(child) and i == len(node.children) - 1):
                raise WriteRefused("a FORMAT clause is not allowed: choose the output with --format")
    elif kind == "Function":
        _check_function(node, parent, catalog)
    elif kind in ("TableIdentifier", "Identifier"):
        _check_table_name(node.name)
    for child in node.children:
        _check(child, node, catalog)


def _is_native(node: _Node) -> bool:
    return node.kind == "Identifier" and node.name == "Native"


def _check_function(node: _Node, parent: _Node, catalog: _Catalog) -> None:
    name = node.name.split(" ", 1)[0].lower()
    if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES) or name in catalog.executable:
        raise WriteRefused(f"function {name}() is not allowed: analyst SQL cannot reach files, the network, "
                           "processes or dictionaries")  # fmt: skip
    is_table_function = parent.kind == "TableExpression" or (
        name in catalog.table_functions and name not in catalog.functions
    )
    view_db, _, view = node.name.split(" ", 1)[0].rpartition(".")
    if is_table_function and name not in SAFE_TABLE_FUNCTIONS and catalog.is_view(view_db or catalog.database, view):
        return  # a parameterized view (route_window): its own SQL reads our tables; its arguments are checked as children
    if is_table_function and name not in SAFE_TABLE_FUNCTIONS:
        raise WriteRefused(f"table function {name}() is not allowed (allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})")
    if name == "merge" and is_table_function:
        args = node.children[0].children if node.children and node.children[0].kind == "ExpressionList" else []
        if len(args) >= 2:
            first = args[0]
            database: str | None = None
            if first.kind == "Identifier" and "." not in first.name:
                database = first.name
            elif first.kind == "Literal":
                m = _STRING.match(first.text)
                database = m.group(1) if m and "\\" not in m.group(1) else None
            if database is None or database.lower() in _RESTRICTED_DATABASES:
                raise WriteRefused("merge() needs a database named plainly, other than system")


def _check_table_name(name: str) -> None:
    parts = name.split(".")
    if len(parts) >= 2 and parts[0].lower() in _RESTRICTED_DATABASES and parts[1] not in SYSTEM_TABLES:
        raise WriteRefused(f"{parts[0]}.{parts[1]} is not readable by analyst SQL "
                           f"(system tables allowed: {', '.join(sorted(SYSTEM_TABLES))})")  # fmt: skip


# -- running ----------------------------------------------------------------------------------------
def _embedded_path(client: Client) -> str | None:
    """The data path of a chDB client, None for a server client."""
    try:
        from clickhouse_connect.driver._chdbclient import ChdbClient
    except ImportError:  # pragma: no cover - a clickhouse-connect without the chDB backend
        return None
    return str(Path(client.path).resolve()) if isinstance(client, ChdbClient) else None


@dataclass(frozen=True, slots=True)
class _Slot:
    check: Client  # runs formatQuery / EXPLAIN AST / the catalog: the limits without the row limit
    run: Client  # runs the statement: the limits with the row limit


class _AnalystPool:
    """At most :data:`MAX_CONCURRENT` slots of dedicated chDB connection handles for one (path, limits).

    Each handle's *session* settings are the limits, ``readonly = 1`` set last (it freezes the
    others). chDB keeps session settings per handle, so the worker's ingest handle never sees them,
    and every part of a statement is bounded: a trailing ``SETTINGS`` clause would not do (in
    ``SELECT .. UNION ALL SELECT .. SETTINGS ..`` it binds to the last SELECT only; measured: the
    first ran unbounded). Each handle has its own lock in clickhouse-connect, so a long analyst
    statement never holds the lock the ingest inserts take. After a failed statement a handle is
    drained (chDB returns a cancelled UNION's leftover output with the next call on that handle) or
    closed."""

    def __init__(self, path: str, limits: SqlLimits) -> None:
        self.path, self.limits = path, limits
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open = 0

    def _connect(self, settings: dict[str, Any]) -> Client:
        import clickhouse_connect

        wanted = {**settings, "readonly": 1}
        try:
            handle = clickhouse_connect.get_client(dsn=f"chdb://{self.path}", settings=wanted)
            names = ", ".join(f"'{k}'" for k in wanted)
            got = dict(handle.query(  # one row: the row limit must not cut this check short
                f"SELECT groupArray((name, value)) FROM system.settings WHERE name IN ({names})").result_rows[0][0])
            rows = None
            if "limit" in wanted:  # reads as 0 inside any query: check what it does instead
                rows = len(handle.query(f"SELECT 1 FROM numbers({int(wanted['limit']) + 1})").result_rows)
        except Exception as exc:
            raise SqlError(f"cannot open the analyst SQL connection: {_first_line(exc)}") from None
        for name, value in wanted.items():
            actual = rows if name == "limit" else got.get(name)
            if not _same_setting(actual, value):
                handle.close()
                raise SqlError(f"the analyst SQL limit {name}={value} did not take (the engine has {actual!r})")
        return handle

    def _acquire(self) -> _Slot:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            create = self._open < MAX_CONCURRENT
            if create:
                self._open += 1
        if not create:
            return self._free.get()
        try:
            return _Slot(self._connect(self.limits.check_settings()), self._connect(self.limits.run_settings()))
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    @contextmanager
    def slot(self) -> Iterator[_Slot]:
        slot = self._acquire()
        try:
            yield slot
        except BaseException:
            if _drained(slot.check) and _drained(slot.run):
                self._free.put(slot)
            else:
                for handle in (slot.check, slot.run):
                    handle.close()
                with self._lock:
                    self._open -= 1
            raise
        self._free.put(slot)


def _drained(handle: Client) -> bool:
    for _ in range(3):
        try:
            if handle.query("SELECT 1").result_rows == [(1,)]:
                return True
        except Exception:  # noqa: BLE001 - leftover output of the failed statement; read it away
            continue
    return False


_pools_lock = threading.Lock()
_pools: dict[tuple[str, SqlLimits], _AnalystPool] = {}


def _pool(path: str, limits: SqlLimits) -> _AnalystPool:
    with _pools_lock:
        return _pools.setdefault((path, limits), _AnalystPool(path, limits))


def _same_setting(actual: Any, wanted: Any) -> bool:
    if actual is None:
        return False
    try:
        return float(actual) == float(wanted)
    except (TypeError, ValueError):
        return str(actual) == str(wanted)


def _server_settings(client: Client, settings: dict[str, Any]) -> dict[str, Any]:
    """Per-query settings on a server: ``settings`` and ``readonly=1``. A user whose profile is
    already ``readonly = 1`` (the analyst user of deploy/clickhouse) may change no setting: its
    profile's limits apply instead."""
    readonly = str(getattr(client.server_settings.get("readonly"), "value", "0"))
    if readonly == "1":
        return {}
    return {**settings, "readonly": 1} if readonly == "0" else dict(settings)


def run_read_only(client: Client, sql: str, *, server: bool | None = None, max_rows: int | None = None,
                  limits: SqlLimits | None = None) -> QueryResult:  # fmt: skip
    """Check and run ``sql`` within ``limits``; return at most ``limits.result_rows`` rows as JSON-safe
    values. Blocks. ``client`` is any client of the engine; on the embedded engine the statement
    runs on dedicated analyst handles (:class:`_AnalystPool`), never on ``client`` itself. ``server``
    is accepted for compatibility: the client's kind decides. Raises WriteRefused or SqlError."""
    limits = limits or SqlLimits()
    if max_rows is not None:
        limits = replace(limits, result_rows=max_rows)
    path = _embedded_path(client)
    if path is not None:
        with _pool(path, limits).slot() as slot:
            text = check_read_only(slot.check, sql)
            return _execute(slot.run, text, {}, limits)
    text = check_read_only(client, sql, settings=_server_settings(client, limits.check_settings()))
    return _execute(client, text, _server_settings(client, limits.run_settings()), limits)


def _execute(client: Client, text: str, settings: dict[str, Any], limits: SqlLimits) -> QueryResult:
    if _EXPLAIN_AST.match(text):  # its SELECT would take the client's FORMAT Native (see check_read_only)
        text += "\nFORMAT Native"
    try:
        result = client.query(text, settings=settings)
    except Exception as exc:
        raise _failure(exc, limits) from exc
    rows = [[_plain(v) for v in row] for row in result.result_rows[: limits.result_rows + 1]]
    truncated = len(rows) > limits.result_rows
    return QueryResult(list(result.column_names), rows[: limits.result_rows], truncated)


def _failure(exc: BaseException, limits: SqlLimits) -> TelemetryError:
    first = _first_line(exc)
    code = re.search(r"Code: (\d+)", str(exc))
    number = int(code.group(1)) if code else 0
    if number == 159:  # TIMEOUT_EXCEEDED
        return SqlError(f"query cancelled: it ran longer than TELEMETRY_SQL_MAX_SECONDS={limits.seconds:g} s ({first})")
    if number == 241:  # MEMORY_LIMIT_EXCEEDED
        return SqlError(f"query cancelled: it needed more than TELEMETRY_SQL_MAX_MEMORY_MB={limits.memory_mb} MiB ({first})")
    if number in (164, 497):  # READONLY, ACCESS_DENIED: refused by the engine itself
        return WriteRefused(f"refused by the engine: {first}")
    return SqlError(first)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return visible(first[:1000])


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


# -- rendering --------------------------------------------------------------------------------------
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _hostile(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def visible(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1), line/paragraph separators and bidi overrides
    shown as escapes (``\\n``, ``\\x1b``, ``\\u202e``): a value can never drive the terminal."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif _hostile(ch):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _json_line(data: dict[str, Any]) -> str:
    """One JSON object; characters JSON may carry raw but a terminal would act on are \\u-escaped
    (the value stays exact for a JSON reader)."""
    text = orjson.dumps(data).decode()
    if text.isascii() and text.isprintable():
        return text
    return "".join(f"\\u{ord(ch):04x}" if _hostile(ch) else ch for ch in text)


def render(result: QueryResult, fmt: str = "table") -> str:
    """Format a result as an aligned text table, CSV, or JSON lines. Table and CSV show control
    characters as escapes (see :func:`visible`); JSON keeps values exact, escaped as JSON."""
    if fmt == "json":
        return "\n".join(_json_line(dict(zip(result.columns, row))) for row in result.rows)
    columns = [visible(c) for c in result.columns]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in result.rows)
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
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
        return visible(orjson.dumps(value).decode())
    return visible(str(value))


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- reaching the engine ----------------------------------------------------------------------------
Query = Callable[[str], "QueryResult"]
"""Runs one read-only statement and returns its rows. Blocks; raises on a failed query."""


def worker_base_url(settings: Settings) -> str:
    """``http://host:port`` of the worker's HTTP pages as a local client reaches them (a wildcard
    ``TELEMETRY_WEB_HOST`` is reached on 127.0.0.1)."""
    host = settings.web_host.strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.web_port}"


def auth_headers(settings: Settings) -> dict[str, str]:
    """The ``Authorization`` header for the worker's pages when ``TELEMETRY_WEB_TOKEN`` is set."""
    token = settings.web_token.get_secret_value() if settings.web_token else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def query_function(settings: Settings, *, timeout: float | None = None) -> Query:
    """A :data:`Query` on ``settings``' ClickHouse, reached the way ``telemetry sql`` reaches it.

    Embedded DSN: the first statement goes to the worker's HTTP page (with the bearer token when
    ``TELEMETRY_WEB_TOKEN`` is set); if nothing listens there the callable opens the chDB path
    itself for this and every later statement. Once the worker has answered, later failures are
    reported, never retried on the data path (the worker owns it). Server DSN: a direct client,
    ``readonly=1`` and the limits on every query. Does no I/O until the first call.
    """
    limits = SqlLimits.from_settings(settings)
    if not settings.is_embedded_clickhouse:
        return _direct(settings, limits)
    # a statement may wait behind MAX_QUEUED others in the worker, each bounded by the time limit
    wait = timeout if timeout is not None else (MAX_QUEUED // MAX_CONCURRENT + 1) * limits.seconds + 60.0
    state: dict[str, Query] = {}
    url, headers = f"{worker_base_url(settings)}/telemetry/sql/", auth_headers(settings)

    def query(sql: str) -> QueryResult:
        chosen = state.get("query")
        if chosen is not None:
            return chosen(sql)
        try:
            result = _via_worker(url, sql, wait, headers)
        except ConnectionError:
            state["query"] = _direct(settings, limits)
            return state["query"](sql)
        state["query"] = lambda s: _via_worker(url, s, wait, headers)
        return result

    return query


def _direct(settings: Settings, limits: SqlLimits) -> Query:
    from telemetry.storage.clickhouse import connect

    client = connect(settings.resolved_clickhouse_dsn)
    return lambda sql: run_read_only(client, sql, limits=limits)


def _via_worker(url: str, sql: str, timeout: float, headers: dict[str, str] | None = None) -> QueryResult:
    """POST the statement to the worker. ConnectionError when nothing answers there."""
    request = urllib.request.Request(
        url, data=json.dumps({"sql": sql}).encode(), method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return QueryResult.from_json(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = visible(str(body.get("error", exc)))
        if exc.code == 401:
            raise SqlError(f"the worker at {url} wants its bearer token: set TELEMETRY_WEB_TOKEN ({error})") from None
        if body.get("refused"):
            raise WriteRefused(error) from None
        raise SqlError(f"query failed: {error}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise ConnectionError(str(exc)) from None
        raise SqlError(f"the worker at {url} did not answer: {exc.reason}") from None
    except ConnectionRefusedError as exc:
        raise ConnectionError(str(exc)) from None
