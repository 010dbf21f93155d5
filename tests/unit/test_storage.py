"""Migrations and read-only SQL against the real embedded ClickHouse engine (chDB).

chDB allows one data path per process, so these tests share one engine (the ``engine`` fixture
in ``tests/unit/conftest.py``) and use one database each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.sql import WriteRefused, render, run_read_only
from telemetry.storage.migrate import bundled_migrations, migrate


@pytest.fixture
def database(engine: Client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    yield name
    engine.command(f"DROP DATABASE IF EXISTS {name}")


def test_migrations_apply_in_order_once_and_are_recorded(engine: Client) -> None:
    name = f"m_{uuid.uuid4().hex[:8]}"
    first = migrate(engine, name)
    assert [m.version for m in first] == [m.version for m in bundled_migrations()]
    assert migrate(engine, name) == []
    recorded = engine.query(f"SELECT version FROM {name}.schema_migrations ORDER BY version").result_rows
    assert [r[0] for r in recorded] == [m.version for m in bundled_migrations()]
    tables = {r[0] for r in engine.query(f"SHOW TABLES FROM {name}").result_rows}
    assert {"requests", "verdicts", "route_minute", "route_hour", "route_day", "dead_letters", "unpriced_models"} <= tables


def test_views_compute_documented_formulas(engine: Client, database: str) -> None:
    engine.command(
        f"INSERT INTO {database}.requests (request_id, ts, route, served_model, model, latency_ms, status, error_type, "
        "cost_usd, attempt) VALUES ('a', '2026-01-01 00:00:01', 'r', 'm', 'm', 100, 'ok', '', 0.02, 1), "
        "('b', '2026-01-01 00:00:02', 'r', 'm', 'm', 300, 'ok', '', 0.04, 1), "
        "('c', '2026-01-01 00:00:03', 'r', 'm', 'm', 200, 'error', 'timeout', NULL, 2)"
    )
    engine.command(
        f"INSERT INTO {database}.verdicts (request_id, evaluator, kind, passed, request_ts, route, served_model) VALUES "
        "('a', 'j@1', 'online', 1, '2026-01-01 00:00:01', 'r', 'm'), ('b', 'j@1', 'online', 0, '2026-01-01 00:00:02', 'r', 'm')"
    )
    row = run_read_only(engine, f"SELECT * FROM {database}.route_hour", server=False)
    got = dict(zip(row.columns, row.rows[0]))
    assert (got["requests"], got["errors"], got["judged"], got["passed"]) == (3, 1, 2, 1)
    assert got["pass_rate"] == 0.5
    assert got["cost_per_request"] == pytest.approx(0.03)  # priced requests only
    assert got["cost_per_correct"] == pytest.approx(0.06)
    assert got["judged_fraction"] == pytest.approx(2 / 3)
    assert got["retry_amplification"] == pytest.approx(4 / 2)
    assert got["errors_by_type"] == {"timeout": 1}


@pytest.mark.parametrize(
    "sql",
    ["INSERT INTO {db}.requests (request_id) VALUES ('x')", "DROP TABLE {db}.requests", "SELECT 1; DROP TABLE {db}.requests",
     "ALTER TABLE {db}.requests DELETE WHERE 1", "TRUNCATE TABLE {db}.requests", "SELECT 1 INTO OUTFILE '/tmp/x'",
     "CREATE TABLE {db}.x (a UInt8) ENGINE = Memory", "SET readonly = 0", "SELECT 1 FORMAT JSON"],
)  # fmt: skip
def test_writes_are_refused(engine: Client, database: str, sql: str) -> None:
    with pytest.raises(WriteRefused):
        run_read_only(engine, sql.format(db=database), server=False)
    assert engine.query(f"EXISTS TABLE {database}.requests").result_rows == [(1,)]


def test_reads_render_as_table_csv_and_json(engine: Client, database: str) -> None:
    result = run_read_only(engine, "SELECT 1 AS a, 'x' AS b, NULL AS c UNION ALL SELECT 2, 'y', 3.5", server=False)
    assert render(result, "csv").splitlines() == ["a,b,c", "1,x,NULL", "2,y,3.5"]
    assert render(result, "json").splitlines()[0] == '{"a":1,"b":"x","c":null}'
    assert "(2 rows)" in render(result, "table")
