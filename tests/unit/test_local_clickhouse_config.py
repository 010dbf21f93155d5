"""Unit tests of the local ClickHouse server's pure configuration: paths, ports, config.xml, SQL.

No server is started here (tests/integration/test_local_clickhouse.py does that).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from telemetry.localclickhouse import ServerError
from telemetry.localclickhouse.config import (
    SERVE_MODULE,
    Address,
    ServerLayout,
    data_path_for,
    is_serve_argv,
    read_config_xml,
    render_config_xml,
    resolve_address,
    serve_command,
    serve_sql,
)
from telemetry.settings import load_settings


def test_serves_the_embedded_default_or_the_chdb_dsn_path(tmp_path: Path) -> None:
    default = load_settings(data_dir=tmp_path)
    assert data_path_for(default) == (tmp_path / "clickhouse").resolve()
    assert default.resolved_clickhouse_dsn == f"chdb://{data_path_for(default)}"  # what a worker opens
    # Pointing the processes at the server does not move the data it serves.
    on_server = load_settings(data_dir=tmp_path, clickhouse_dsn="http://127.0.0.1:8124")
    assert data_path_for(on_server) == data_path_for(default)
    elsewhere = load_settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path / 'other'}")
    assert data_path_for(elsewhere) == (tmp_path / "other").resolve()

    layout = ServerLayout.for_settings(default)
    assert layout.state_dir == tmp_path.resolve() / "clickhouse-server"
    assert layout.engine_status_file == data_path_for(default) / "status"
    assert {p.parent for p in (layout.config_xml, layout.pid_file, layout.log_file, layout.stop_file)} == {
        layout.state_dir
    }


def test_ports_come_from_the_flags_then_a_local_http_dsn_then_the_defaults(tmp_path: Path) -> None:
    plain = load_settings(data_dir=tmp_path)
    assert resolve_address(plain) == Address("127.0.0.1", 8123, 9000)
    assert resolve_address(plain, http_port=18123, tcp_port=19000).dsn == "http://127.0.0.1:18123"
    local_dsn = load_settings(data_dir=tmp_path, clickhouse_dsn="http://localhost:8124")
    assert resolve_address(local_dsn).http_port == 8124
    assert resolve_address(local_dsn, http_port=8125).http_port == 8125
    remote_dsn = load_settings(data_dir=tmp_path, clickhouse_dsn="https://ch.internal:8443")
    assert resolve_address(remote_dsn).http_port == 8123
    with pytest.raises(ServerError, match="must differ"):
        resolve_address(plain, http_port=9000)
    with pytest.raises(ServerError, match="1..65535"):
        resolve_address(plain, tcp_port=70000)


def test_config_xml_round_trips_and_binds_loopback_only() -> None:
    address = Address("127.0.0.1", 18123, 19000)
    text = render_config_xml(address)
    assert "<listen_host>127.0.0.1</listen_host>" in text
    assert "<http_port>18123</http_port>" in text and "<tcp_port>19000</tcp_port>" in text


def test_config_xml_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(render_config_xml(Address("127.0.0.1", 18123, 19000)))
    assert read_config_xml(path) == Address("127.0.0.1", 18123, 19000)
    path.write_text("<clickhouse><http_port>x</http_port></clickhouse>")
    assert read_config_xml(path) is None
    assert read_config_xml(tmp_path / "missing.xml") is None


def test_serving_sql_starts_both_listeners_and_watches_the_stop_flag_per_row() -> None:
    sql = serve_sql(Path("/data/it's/stop"))
    assert sql.startswith("SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; SELECT")
    assert "file(concat('/data/it\\'s/stop', substring(toString(number), 1, 0))" in sql
    assert sql.endswith("LIMIT 1 SETTINGS max_block_size = 1")


def test_our_serving_process_is_recognized_by_its_argv(tmp_path: Path) -> None:
    layout = ServerLayout(tmp_path / "state", tmp_path / "data")
    argv = serve_command(layout)
    assert argv[:3] == [sys.executable, "-m", SERVE_MODULE]
    assert is_serve_argv(argv, layout)
    assert is_serve_argv(["/usr/bin/python3", *argv[1:]], layout)
    assert not is_serve_argv(argv[:-1] + [str(tmp_path / "other")], layout)
    assert not is_serve_argv(["python", "-m", "telemetry", "worker"], layout)
