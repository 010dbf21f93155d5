"""Analyst SQL is read-only, local-only and bounded: the checker, the limits and the output, against
the real embedded engine (chDB) and, for the client side of the worker's page, a local HTTP server.

Every statement here ran on the previous checker (which only looked at the root node of the tree):
files and /proc/self/environ read, the network reached, system tables read, no limit at all."""

from __future__ import annotations

import csv
import http.server
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.settings import load_settings
from telemetry.sql import (
    QueryResult,
    SqlError,
    SqlLimits,
    WriteRefused,
    query_function,
    render,
    run_read_only,
    visible,
)
from telemetry.storage.migrate import migrate

FAST = SqlLimits(seconds=1.5, memory_mb=256, threads=1, result_rows=1000)


@pytest.fixture(scope="module")
def database(engine: Client) -> Iterator[str]:
    name = f"g_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    engine.command(
        f"INSERT INTO {name}.requests (request_id, ts, route, served_model, model, latency_ms, status, error_type, "
        "cost_usd, attempt) VALUES ('a', '2026-01-01 00:00:01', 'support.answer', 'm', 'm', 100, 'ok', '', 0.02, 1), "
        "('b', '2026-01-01 00:00:02', 'evil\x1b[2J\x1b]0;pwned\x07\u202e', 'm', 'm', 300, 'ok', '', 0.04, 1)"
    )
    yield name
    engine.command(f"DROP DATABASE IF EXISTS {name}")


REFUSED = [
    # files, the network, processes, other databases (finding: /proc/self/environ holds the secrets)
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
    "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT length(file('/proc/self/environ'))",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString', 's String')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv')",
    "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1:9440', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM executable('cat /etc/passwd', 'LineAsString', 'line String')",
    "SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:5432', 'db', 't', 'u', 'p')",
    "SELECT * FROM hdfs('hdfs://127.0.0.1:9000/x', 'TSV', 'a String')",
    "SELECT * FROM azureBlobStorage('http://127.0.0.1:9/x', 'c', 'b')",
    "SELECT * FROM sqlite('/etc/x.db', 't')",
    "SELECT * FROM filesystem('/etc')",
    "SELECT * FROM python(x)",
    "SELECT * FROM loop(numbers(3))",
    "SELECT * FROM dictionary('d')",
    "SELECT dictGet('d', 'a', 1)",
    "SELECT aiGenerate('say hi')",
    "SELECT joinGet('db.t', 'v', 1)",
    "SELECT hasColumnInTable('127.0.0.1:9000', 'system', 'one', 'dummy')",
    # ... hidden in subqueries, CTEs, JOINs, UNIONs, IN, EXPLAIN, DESCRIBE, view()
    "SELECT * FROM (SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString')))",
    "WITH x AS (SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString', 's String')) SELECT * FROM x",
    "WITH (SELECT file('/etc/passwd')) AS f SELECT f",
    "SELECT 1 FROM {db}.requests AS r JOIN file('/etc/passwd', 'LineAsString') AS f ON 1",
    "SELECT 1 FROM {db}.requests WHERE route IN (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
    "SELECT route FROM {db}.requests UNION ALL SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT 1 INTERSECT SELECT length(file('/etc/passwd'))",
    "EXPLAIN SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "EXPLAIN PIPELINE SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString', 's String')",
    "EXPLAIN AST SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "DESCRIBE file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM view(SELECT * FROM file('/etc/passwd', 'LineAsString'))",
    "SELECT * FROM merge('system', '^processes$')",
    "SELECT * FROM merge(REGEXP('^sys'), '^processes$')",
    # system tables beyond the catalog, SHOW PROCESSLIST, access statements
    "SELECT * FROM system.processes",
    "SELECT query FROM `system`.`query_log`",
    "SELECT * FROM system.settings",
    "SELECT * FROM system.users",
    "SELECT 1 FROM {db}.requests WHERE route IN system.processes",
    "SELECT * FROM {db}.requests WHERE route IN (SELECT query FROM system.processes)",
    "SHOW PROCESSLIST",
    "SHOW GRANTS",
    "SHOW USERS",
    "SHOW CREATE USER default",
    # lifting the limits, writing, output tricks
    "SELECT count() FROM numbers(10) SETTINGS max_execution_time = 1000",
    "SELECT * FROM (SELECT count() FROM numbers(10) SETTINGS max_threads = 64)",
    "SELECT 1 UNION ALL SELECT 2 SETTINGS max_memory_usage = 0",
    "SET max_execution_time = 0",
    "SELECT 1 INTO OUTFILE '/tmp/x'",
    "EXPLAIN SELECT 1 INTO OUTFILE '/tmp/x'",
    "SHOW DATABASES INTO OUTFILE '/tmp/x'",
    "SELECT 1 FORMAT JSON",
    "SHOW CREATE TABLE {db}.requests FORMAT JSON",
    "EXPLAIN TABLE OVERRIDE mysql('a', 'b', 'c', 'd', 'e') PARTITION BY x",
    "KILL QUERY WHERE 1",
    "SELECT 1 AS `a\n   Function numbers (children 1)`",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_hostile_statements_are_refused(engine: Client, database: str, sql: str) -> None:
    with pytest.raises(WriteRefused):
        run_read_only(engine, sql.format(db=database), limits=FAST)


ALLOWED = [
    ("SELECT route, count() AS n FROM {db}.requests GROUP BY route ORDER BY route", 2),
    ("WITH r AS (SELECT route FROM {db}.requests) SELECT count() FROM r JOIN {db}.requests USING route", 1),
    ("SELECT route FROM {db}.requests WHERE route IN (SELECT route FROM {db}.requests) UNION ALL SELECT 'x'", 3),
    ("SELECT number FROM numbers(3)", 3),
    ("SELECT * FROM values('a UInt8, b String', (1, 'x'), (2, 'y'))", 2),
    ("SELECT * FROM (VALUES (1, 2))", 1),
    ("SELECT * FROM generateRandom('a UInt8', 1) LIMIT 4", 4),
    ("SELECT * FROM view(SELECT 1 AS a)", 1),
    ("SELECT count() FROM merge('{db}', '^requests$')", 1),
    ("SELECT format('{{}}-{{}}', 'a', 'b')", 1),
    ("SELECT name FROM system.tables WHERE database = '{db}' AND name = 'requests'", 1),
    ("SELECT name FROM system.columns WHERE database = '{db}' AND table = 'requests' AND name = 'route'", 1),
    ("SELECT count() > 0 FROM system.functions", 1),
    ("SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' AND table_name = 'requests'", 1),
    ("SHOW TABLES FROM {db} LIKE 'requests'", 1),
    ("DESCRIBE TABLE {db}.requests", None),
    ("EXISTS TABLE {db}.requests", 1),
    ("SHOW CREATE TABLE {db}.requests", 1),
    ("EXPLAIN SELECT count() FROM {db}.requests", None),
    ("EXPLAIN PLAN indexes = 1 SELECT count() FROM {db}.requests", None),
    ("EXPLAIN AST SELECT 1", None),
    ("SELECT 'it''s', `route` AS `the route` FROM {db}.requests LIMIT 1", 1),
    # a parameterized view is called like a table function (docs/tables.md documents route_window)
    ("SELECT count() FROM {db}.route_window(bucket_seconds = 3600)", 1),
]


@pytest.mark.parametrize(("sql", "rows"), ALLOWED)
def test_analyst_statements_still_run(engine: Client, database: str, sql: str, rows: int | None) -> None:
    result = run_read_only(engine, sql.format(db=database), limits=FAST)
    if rows is not None:
        assert len(result.rows) == rows


def test_engine_refuses_table_functions_itself_on_the_analyst_handle(engine: Client) -> None:
    """Layer two: the analyst handle is readonly=1, which refuses file()/url() even past the checker."""
    from telemetry.sql import _pool

    with _pool(str(engine.path), FAST).slot() as slot:  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="readonly"):
            slot.run.query("SELECT * FROM file('/etc/passwd', 'LineAsString')")
        with pytest.raises(Exception, match="readonly"):
            slot.run.query("SELECT 1 SETTINGS max_execution_time = 1000")


# -- limits -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    ["SELECT count() FROM numbers(1e12)",
     "SELECT 1 UNION ALL SELECT count() FROM numbers(1e12)",  # a trailing SETTINGS would bind to the last SELECT
     "SELECT count() FROM numbers(1e12) UNION ALL SELECT 1",
     "SELECT (SELECT count() FROM numbers(1e12))",
     "EXPLAIN SELECT (SELECT count() FROM numbers(1e12))"],  # EXPLAIN runs scalar subqueries while planning
)  # fmt: skip
def test_a_runaway_statement_is_cancelled_after_the_time_limit(engine: Client, sql: str) -> None:
    started = time.monotonic()
    with pytest.raises(SqlError, match="TELEMETRY_SQL_MAX_SECONDS=1.5"):
        run_read_only(engine, sql, limits=FAST)
    assert time.monotonic() - started < 30
    assert run_read_only(engine, "SELECT 42 AS x", limits=FAST).rows == [[42]]  # the handle is clean afterwards


def test_memory_and_rows_are_bounded(engine: Client) -> None:
    with pytest.raises(SqlError, match="TELEMETRY_SQL_MAX_MEMORY_MB=256"):
        run_read_only(engine, "SELECT groupArray(repeat('x', 1000)) FROM numbers(1e6)", limits=FAST)
    for sql in ("SELECT number FROM numbers(1e9)", "SELECT number FROM numbers(1e9) UNION ALL SELECT 1"):
        result = run_read_only(engine, sql, limits=FAST)
        assert len(result.rows) == FAST.result_rows and result.truncated
    # the row limit is the outermost result's only: subqueries, CTEs, JOINs, IN and UNION branches are whole
    for sql in ("SELECT count() FROM (SELECT number FROM numbers(5000))",
                "WITH x AS (SELECT number FROM numbers(5000)) SELECT count() FROM x",
                "SELECT count() FROM numbers(5000) AS a JOIN (SELECT number FROM numbers(5000)) AS b USING number",
                "SELECT countIf(number IN (SELECT number FROM numbers(5000))) FROM numbers(5000)",
                "SELECT count() FROM (SELECT number FROM numbers(2500) UNION ALL SELECT number FROM numbers(2500))",
                "SELECT length((SELECT groupArray(number) FROM numbers(5000)))"):  # fmt: skip
        assert run_read_only(engine, sql, limits=FAST).rows == [[5000]], sql


def test_threads_are_bounded_on_the_analyst_handle_only(engine: Client) -> None:
    result = run_read_only(engine, "SELECT getSetting('max_threads') AS t, getSetting('max_execution_time') AS s",
                           limits=FAST)  # fmt: skip
    assert result.rows == [[1, 1.5]]


def test_the_limits_never_reach_the_ingest_client(engine: Client, database: str) -> None:
    """chDB keeps settings for the rest of a session: only the analyst handles have them."""

    def session(client: Client) -> dict[str, str]:
        rows = client.query("SELECT name, value FROM system.settings WHERE name IN "
                            "('max_execution_time', 'max_memory_usage', 'max_threads', 'readonly', 'limit')").result_rows  # fmt: skip
        return dict(rows)

    before = session(engine)
    with pytest.raises(SqlError):
        run_read_only(engine, "SELECT count() FROM numbers(1e12)", limits=FAST)
    run_read_only(engine, "SELECT number FROM numbers(1e9)", limits=FAST)
    assert session(engine) == before
    assert before["readonly"] == "0" and before["max_execution_time"] == "0" and before["limit"] == "0"
    engine.command(f"INSERT INTO {database}.requests (request_id, ts, route, served_model, model, latency_ms, status) "
                   "VALUES ('after', '2026-01-01 00:00:03', 'r', 'm', 'm', 1, 'ok')")  # fmt: skip
    assert len(engine.query("SELECT number FROM numbers(5000)").result_rows) == 5000
    engine.command(f"ALTER TABLE {database}.requests DELETE WHERE request_id = 'after' SETTINGS mutations_sync = 1")


def test_ingest_progresses_while_a_runaway_statement_runs(engine: Client, database: str) -> None:
    """A runaway statement runs on a handle of its own: inserts on the ingest client go on meanwhile."""
    limits = SqlLimits(seconds=4, memory_mb=256, threads=1, result_rows=10)
    outcome: dict[str, Any] = {}

    def runaway() -> None:
        try:
            run_read_only(engine, "SELECT count() FROM numbers(1e12)", limits=limits)
        except SqlError as exc:
            outcome["error"] = str(exc)

    table = f"{database}.ingest_probe"
    engine.command(f"CREATE TABLE {table} (n UInt64) ENGINE = MergeTree ORDER BY n")
    thread = threading.Thread(target=runaway)
    thread.start()
    time.sleep(0.5)
    inserts = 0
    while thread.is_alive():
        engine.insert(table, [[inserts]], column_names=["n"])
        inserts += 1
    thread.join()
    assert "TELEMETRY_SQL_MAX_SECONDS=4" in outcome["error"]
    assert inserts >= 10, f"only {inserts} inserts went through while the analyst statement ran"
    assert engine.query(f"SELECT count() FROM {table}").result_rows[0][0] == inserts


# -- output -----------------------------------------------------------------------------------------
def test_control_characters_are_shown_escaped_in_table_and_csv(engine: Client, database: str) -> None:
    result = run_read_only(engine, f"SELECT route, concat('a', char(9), 'b', char(10), 'c', char(194, 155), '1m') AS x "
                           f"FROM {database}.requests ORDER BY route",
                           limits=FAST)  # fmt: skip
    for fmt in ("table", "csv"):
        text = render(result, fmt)
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\x9b" not in text
        assert "\\x1b[2J\\x1b]0;pwned\\x07\\u202e" in text
        assert "a\\tb\\nc\\x9b1m" in text
    rows = list(csv.reader(io.StringIO(render(result, "csv"))))
    assert len(rows) == 3 and all(len(r) == 2 for r in rows)
    # JSON stays exact (a JSON reader gets the original value) and prints nothing a terminal acts on
    text = render(result, "json")
    assert "\x1b" not in text and "\u202e" not in text and "\x9b" not in text
    values = [json.loads(line) for line in text.splitlines()]
    assert values[0]["route"] == "evil\x1b[2J\x1b]0;pwned\x07\u202e" and values[0]["x"] == "a\tb\nc\x9b1m"


def test_column_names_are_escaped_too() -> None:
    result = QueryResult(["a\x1b[31m"], [["\x1b[0m"]])
    assert "\x1b" not in render(result, "table") and "\x1b" not in render(result, "csv")
    assert visible("plain text, accents: é ü 中") == "plain text, accents: é ü 中"


# -- the client side of the worker's page -----------------------------------------------------------
class _Page(http.server.BaseHTTPRequestHandler):
    token = "s3cret"
    seen: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        ok = auth == f"Bearer {self.token}"
        payload = QueryResult(["a"], [[1]]).to_json() if ok else {"error": "unauthorized"}
        data = json.dumps(payload).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_sql_and_reports_send_the_bearer_token() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with_token = load_settings(clickhouse_dsn="chdb:///nonexistent/owned-by-the-worker", web_port=port,
                                   web_token="s3cret")  # fmt: skip
        assert query_function(with_token)("SELECT 1").rows == [[1]]
        without = load_settings(clickhouse_dsn="chdb:///nonexistent/owned-by-the-worker", web_port=port)
        with pytest.raises(SqlError, match="TELEMETRY_WEB_TOKEN"):
            query_function(without)("SELECT 1")
        assert _Page.seen == ["Bearer s3cret", None]
    finally:
        server.shutdown()
        server.server_close()


# -- server DSN -------------------------------------------------------------------------------------
def test_server_limits_ride_on_every_query_unless_the_user_is_read_only() -> None:
    from telemetry.sql import _server_settings

    class Setting:
        def __init__(self, value: str) -> None:
            self.value = value

    class Server:
        def __init__(self, readonly: str) -> None:
            self.server_settings = {"readonly": Setting(readonly)}

    wanted = FAST.run_settings()
    assert wanted == {"max_execution_time": 1.5, "timeout_overflow_mode": "throw", "max_memory_usage": 256 * 1024 * 1024,
                      "max_threads": 1, "limit": 1001}  # fmt: skip
    assert _server_settings(Server("0"), wanted) == {**wanted, "readonly": 1}  # type: ignore[arg-type]
    assert _server_settings(Server("2"), wanted) == wanted  # type: ignore[arg-type]
    assert _server_settings(Server("1"), wanted) == {}  # type: ignore[arg-type]  # the profile's limits apply


def test_the_analyst_user_of_deploy_parses_and_matches_the_default_limits(engine: Client) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "deploy" / "clickhouse" / "analyst.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    statements = [s.strip().replace("@ANALYST_PASSWORD@", "pw") for s in body.split(";") if s.strip()]
    assert len(statements) == 4
    for statement in statements:
        engine.query("SELECT formatQuery(%(q)s)", parameters={"q": statement})
    assert "GRANT SELECT ON llm_telemetry.* TO llm_telemetry_analyst" in statements
    profile = dict(re.findall(r"`?(\w+)`? = '?(\w+)'?", statements[0]))
    defaults = SqlLimits.from_settings(load_settings())
    expected = {**defaults.run_settings(), "readonly": 1}
    assert {k: profile[k] for k in expected} == {k: str(int(v) if isinstance(v, float) else v) for k, v in expected.items()}
