"""Analyst SQL on a server DSN: the same checker and limits over ClickHouse's HTTP interface, against
the real engine served by `telemetry clickhouse start` (a ClickHouse server process on 127.0.0.1)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from telemetry.localclickhouse import start_server, stop_server
from telemetry.reports.query import load_window
from telemetry.settings import Settings, load_settings
from telemetry.sql import SqlError, SqlLimits, WriteRefused, _server_settings, query_function
from telemetry.storage.clickhouse import connect
from telemetry.storage.migrate import migrate
from tests.integration.harness import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    base = load_settings(data_dir=tmp_path_factory.mktemp("sql-server"), clickhouse_http_port=free_port(),
                         clickhouse_tcp_port=free_port())  # fmt: skip
    start_server(base)
    try:
        dsn = f"http://127.0.0.1:{base.clickhouse_http_port}"
        admin = connect(dsn)
        migrate(admin, base.clickhouse_database)
        admin.command(
            f"INSERT INTO {base.clickhouse_database}.requests (request_id, ts, route, served_model, model, latency_ms, "
            "status) VALUES ('a', '2026-01-01 00:00:01', 'support.answer', 'm', 'm', 100, 'ok')"
        )
        yield base.model_copy(update={"clickhouse_dsn": dsn, "sql_max_seconds": 2.0, "sql_max_result_rows": 10})
    finally:
        stop_server(base)


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM file('/etc/passwd', 'LineAsString')", "SELECT file('/proc/self/environ')",
     "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString', 's String')",
     "SELECT * FROM remote('127.0.0.1:9000', system.one)", "SELECT * FROM system.processes", "SHOW PROCESSLIST",
     "SELECT * FROM (SELECT 1 UNION ALL SELECT length(file('/etc/passwd')))",
     "SELECT count() FROM numbers(10) SETTINGS max_execution_time = 1000", "SELECT 1 FORMAT JSON"],
)  # fmt: skip
def test_hostile_statements_are_refused_on_a_server(settings: Settings, sql: str) -> None:
    with pytest.raises(WriteRefused):
        query_function(settings)(sql)


def test_limits_apply_to_every_part_of_a_statement_on_a_server(settings: Settings) -> None:
    query = query_function(settings)
    started = time.monotonic()
    with pytest.raises(SqlError, match="TELEMETRY_SQL_MAX_SECONDS=2"):
        query("SELECT count() FROM numbers(1e12) UNION ALL SELECT 1")
    assert time.monotonic() - started < 60
    result = query("SELECT number FROM numbers(1e6) UNION ALL SELECT 1")
    assert len(result.rows) == 10 and result.truncated
    row = query("SELECT getSetting('readonly') AS r, getSetting('max_threads') AS t, getSetting('max_execution_time') AS s")
    assert row.rows == [[1, 1, 2.0]]
    # the reports' path works on the same limits
    window = load_window(query, settings.clickhouse_database, 1.0)
    assert window.start_ms == window.end_ms


def test_the_server_itself_refuses_table_functions_under_the_analyst_settings(settings: Settings) -> None:
    client = connect(settings.resolved_clickhouse_dsn)
    limits = SqlLimits.from_settings(settings)
    with pytest.raises(Exception, match="readonly"):
        client.query("SELECT * FROM file('/etc/passwd', 'LineAsString')", settings=_server_settings(client, limits.run_settings()))
    assert client.query("SELECT getSetting('readonly')").result_rows == [(0,)]  # the worker's own queries: untouched


@pytest.mark.parametrize(
    "sql",
    ["SELECT route, count() AS n FROM llm_telemetry.requests GROUP BY route", "SHOW TABLES FROM llm_telemetry",
     "DESCRIBE TABLE llm_telemetry.requests", "SHOW CREATE TABLE llm_telemetry.requests", "EXISTS llm_telemetry.requests",
     "EXPLAIN SELECT 1", "EXPLAIN SYNTAX SELECT 1", "EXPLAIN AST SELECT 1", "EXPLAIN PIPELINE SELECT count() FROM numbers(9)",
     "SELECT name FROM system.tables WHERE database = 'llm_telemetry' LIMIT 1"],
)  # fmt: skip
def test_analyst_statements_run_on_a_server(settings: Settings, sql: str) -> None:
    assert query_function(settings)(sql).rows
