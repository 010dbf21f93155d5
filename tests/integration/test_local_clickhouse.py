"""The local ClickHouse server: the chDB engine served over HTTP and native TCP, shared by processes.

Real engine, real processes, no mocks. One server per module on free ports with its own data dir,
driven through the CLI (`telemetry clickhouse start|stop|status`) as a user would. The tests run
in file order and share the server; one of them stops and restarts it. The last test runs a real
worker (and the real broker) on the server's DSN while this process reads the same tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httputil import get_pool_manager

from telemetry.localclickhouse import server_status, stop_server
from telemetry.localclickhouse.config import SERVE_MODULE, ServerLayout
from telemetry.settings import Settings, load_settings
from telemetry.storage.clickhouse import WRITE_SETTINGS
from tests.integration.harness import Worker, free_port, produce
from tests.integration.traffic import make_traffic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TABLE = "shared.events"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    return {**env, "TELEMETRY_DATA_DIR": str(data_dir), **extra}


def _telemetry(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _serving_pids(layout: ServerLayout) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if SERVE_MODULE in argv and str(layout.state_dir) in argv:
            pids.append(int(entry.name))
    return pids


@contextmanager
def _client(dsn: str) -> Iterator[Client]:
    """A client on its own connection pool, closed on exit: kept-alive connections (the shared
    default pool keeps them) would make every stop wait ~5 s for them."""
    pool = get_pool_manager()
    client = clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False, pool_mgr=pool)
    try:
        yield client
    finally:
        client.close()
        pool.clear()


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.http_port, self.tcp_port = free_port(), free_port()
        self.env = _env(data_dir)
        self.settings = load_settings(data_dir=data_dir)
        self.layout = ServerLayout.for_settings(self.settings)
        self.dsn = f"http://127.0.0.1:{self.http_port}"
        self.first_start: subprocess.CompletedProcess[str] | None = None

    def cli(self, action: str, *, ports: bool = True) -> subprocess.CompletedProcess[str]:
        flags = ["--http-port", str(self.http_port), "--tcp-port", str(self.tcp_port)] if ports else []
        return _telemetry(self.env, "clickhouse", action, *flags)

    def pid(self) -> int:
        return int(self.layout.pid_file.read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("local-clickhouse"))
    started = time.monotonic()
    srv.first_start = srv.cli("start")
    assert srv.first_start.returncode == 0, srv.first_start.stderr
    print(f"cold start via the CLI: {time.monotonic() - started:.2f}s")
    try:
        yield srv
    finally:
        stop_server(srv.settings)  # whatever a failing test left behind
        assert _serving_pids(srv.layout) == []


def test_start_prints_the_dsn_and_a_second_start_is_a_noop(server: Server) -> None:
    first = server.first_start
    assert first is not None
    assert first.stdout == server.dsn + "\n"
    assert f"ready at {server.dsn} (native TCP 127.0.0.1:{server.tcp_port}" in first.stderr
    pid = server.pid()
    assert _serving_pids(server.layout) == [pid]

    again = server.cli("start")
    assert (again.returncode, again.stdout) == (0, server.dsn + "\n"), again.stderr
    assert f"already running at {server.dsn} (pid {pid})" in again.stderr
    assert _serving_pids(server.layout) == [pid]
    # Without the port flags too: the running server's address is what counts.
    bare = server.cli("start", ports=False)
    assert (bare.returncode, bare.stdout) == (0, server.dsn + "\n"), bare.stderr

    status = server.cli("status", ports=False)
    assert status.returncode == 0, status.stdout + status.stderr
    dsn_line, detail = status.stdout.splitlines()
    assert dsn_line == server.dsn
    assert detail.startswith(f"pid {pid}, serving {server.layout.data_path}, native TCP 127.0.0.1:{server.tcp_port}")


def test_two_processes_insert_and_read_one_table(server: Server) -> None:
    with _client(server.dsn) as client:
        client.command("CREATE DATABASE IF NOT EXISTS shared")
        client.command(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id UInt64, who String) ENGINE = MergeTree ORDER BY id "
            "SETTINGS non_replicated_deduplication_window = 100"
        )
        rows = [[i, "test"] for i in range(100)]
        for _ in range(2):  # a retried insert with its token lands once
            client.insert(TABLE, rows, column_names=["id", "who"],
                          settings={**WRITE_SETTINGS, "insert_deduplication_token": "batch-1"})  # fmt: skip

        other = textwrap.dedent(f"""
            import clickhouse_connect
            c = clickhouse_connect.get_client(dsn={server.dsn!r}, autogenerate_session_id=False)
            c.insert({TABLE!r}, [[i, "child"] for i in range(100, 250)], column_names=["id", "who"],
                     settings={{"async_insert": 0}})
            print(c.query("SELECT count() FROM {TABLE} WHERE who = 'test'").result_rows[0][0])
            c.close()
        """)
        child = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, timeout=60, check=False)
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == "100"  # the child reads what this process wrote

        counts = client.query(f"SELECT who, count() FROM {TABLE} GROUP BY who ORDER BY who").result_rows
        assert counts == [("child", 150), ("test", 100)]
        # The native TCP interface serves the same engine: the server queries itself through it.
        native = client.query(f"SELECT count() FROM remote('127.0.0.1:{server.tcp_port}', {TABLE})").result_rows
        assert native == [(250,)]


def test_migrate_and_deduplicated_inserts_into_the_views_over_http(server: Server) -> None:
    env = {**server.env, "TELEMETRY_CLICKHOUSE_DSN": server.dsn}
    first = _telemetry(env, "migrate")
    assert first.returncode == 0, first.stderr
    assert "applied 0001_core" in first.stdout
    assert f"llm_telemetry on {server.dsn} is up to date" in first.stdout
    second = _telemetry(env, "migrate")
    assert second.returncode == 0, second.stderr
    assert "applied" not in second.stdout

    with _client(server.dsn) as client:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        rows = [[f"r{i}", start + timedelta(seconds=i), "support.answer", "gpt-4o", "gpt-4o", "ok"] for i in range(30)]
        columns = ["request_id", "ts", "route", "model", "served_model", "status"]
        for _ in range(2):
            client.insert("requests", rows, column_names=columns, database="llm_telemetry",
                          settings={**WRITE_SETTINGS, "insert_deduplication_token": "requests-batch-1"})  # fmt: skip
        assert client.query("SELECT count() FROM llm_telemetry.requests").result_rows == [(30,)]
        # ... and its materialized view counted the block once too
        minute = client.query("SELECT sum(requests) FROM llm_telemetry.route_minute_state").result_rows
        assert minute == [(30,)]


def test_stop_start_keeps_the_data_and_stop_when_stopped_is_fine(server: Server) -> None:
    pid = server.pid()
    started = time.monotonic()
    stopped = server.cli("stop", ports=False)
    print(f"stop via the CLI: {time.monotonic() - started:.2f}s")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the ClickHouse server at {server.dsn} (pid {pid})" in stopped.stdout
    assert _serving_pids(server.layout) == []
    assert not server.layout.pid_file.exists()

    status = server.cli("status")
    assert status.returncode == 1
    assert status.stdout.startswith("not running")
    again = server.cli("stop")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("nothing to stop")

    restarted = server.cli("start")
    assert (restarted.returncode, restarted.stdout) == (0, server.dsn + "\n"), restarted.stderr
    with _client(server.dsn) as client:
        assert client.query(f"SELECT count() FROM {TABLE}").result_rows == [(250,)]
        assert client.query("SELECT count() FROM llm_telemetry.requests").result_rows == [(30,)]
    assert server_status(server.settings).running


def test_a_data_dir_held_by_another_process_is_refused_clearly(tmp_path: Path) -> None:
    data_dir = tmp_path / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, clickhouse_connect
            client = clickhouse_connect.get_client(dsn="chdb://{data_dir / 'clickhouse'}")  # open while referenced
            client.query("SELECT 1")
            print("open", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        refused = _telemetry(_env(data_dir), "clickhouse", "start", "--http-port", str(free_port()),
                             "--tcp-port", str(free_port()))  # fmt: skip
        assert refused.returncode == 1
        assert refused.stdout == ""
        message = refused.stderr.strip()
        assert message.startswith(f"telemetry: cannot serve {data_dir / 'clickhouse'}: another process has it open "
                                  f"(pid {holder.pid}")  # fmt: skip
        assert "TELEMETRY_CLICKHOUSE_DSN" in message and len(message.splitlines()) == 1
        layout = ServerLayout.for_settings(load_settings(data_dir=data_dir))
        assert _serving_pids(layout) == [] and not layout.pid_file.exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_taken_port_is_refused_clearly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = _telemetry(_env(tmp_path), "clickhouse", "start", "--http-port", str(free_port()),
                             "--tcp-port", str(port))  # fmt: skip
    assert refused.returncode == 1
    assert f"the TCP port 127.0.0.1:{port} is already in use" in refused.stderr


def test_a_worker_writes_through_the_server_while_this_process_reads(
    server: Server, test_settings: Settings, tmp_path: Path, unique: str
) -> None:
    database = f"w{unique}"
    settings = test_settings.model_copy(update={"clickhouse_dsn": server.dsn, "clickhouse_database": database})
    worker = Worker(settings, tmp_path / "logs")
    traffic = make_traffic(120)
    worker.start()
    try:
        produce(settings, settings.requests_topic, traffic.requests)
        produce(settings, settings.verdicts_topic, traffic.verdicts)
        deadline = time.monotonic() + 60
        counts: tuple[int, int] = (0, 0)
        while time.monotonic() < deadline:
            with _client(server.dsn) as client:
                row = client.query(f"SELECT (SELECT count() FROM {database}.requests), "
                                   f"(SELECT count() FROM {database}.verdicts)").result_rows[0]  # fmt: skip
            counts = (int(row[0]), int(row[1]))
            if counts == (120, traffic.expected["verdicts"]):
                break
            time.sleep(0.3)
        assert counts == (120, traffic.expected["verdicts"]), worker.log_tail()
    finally:
        worker.stop()
