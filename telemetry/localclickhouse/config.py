"""Pure configuration of the local ClickHouse server: paths, addresses, config.xml, the serving SQL.

Nothing here touches the network or starts a process (unit-tested directly).

The server serves one chDB data directory: the path of ``TELEMETRY_CLICKHOUSE_DSN`` when it is
``chdb:///path``, else the embedded default ``<data_dir>/clickhouse`` (what a worker opens with no
DSN set). Its own files live next to it in ``<data_dir>/clickhouse-server/``: ``config.xml`` (read
by the engine from its working directory: listen host and ports), ``server.pid``, ``server.log``
(the previous run's is kept as ``server.log.1``), ``.lock`` (serializes concurrent starts) and,
only while stopping, ``stop`` (the flag that ends the serving query).

Ports: HTTP from the ``http_port`` argument (CLI ``--http-port``), else the port of
``TELEMETRY_CLICKHOUSE_DSN`` when that is ``http://127.0.0.1:PORT`` (or ``localhost``), else a
``clickhouse_http_port`` setting if the settings class has one, else 8123. Native TCP from
``tcp_port`` (``--tcp-port``), else a ``clickhouse_tcp_port`` setting, else 9000. The host is
always loopback: the server has no authentication.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from telemetry.localclickhouse.errors import ServerError

if TYPE_CHECKING:
    from telemetry.settings import Settings

HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8123
DEFAULT_TCP_PORT = 9000
#: ``python -m SERVE_MODULE <data_path> <state_dir>`` is the serving process; this marks ours in /proc.
SERVE_MODULE = "telemetry.localclickhouse.serve"
#: Seconds between two checks of the stop flag by the serving query (the stop latency).
STOP_POLL_S = 0.2
#: What ``file(stop_flag, default)`` returns while the flag does not exist.
_ABSENT = "__telemetry_no_stop_flag__"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class Address:
    """Where the server listens: ``dsn`` is what clients put in ``TELEMETRY_CLICKHOUSE_DSN``."""

    host: str
    http_port: int
    tcp_port: int

    @property
    def dsn(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def native(self) -> str:
        """The native-protocol ``host:port`` (``clickhouse-client --host H --port P``, ``remote()``)."""
        return f"{self.host}:{self.tcp_port}"


@dataclass(frozen=True)
class ServerLayout:
    """Files of one local server (absolute paths)."""

    state_dir: Path
    data_path: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> ServerLayout:
        return cls(settings.data_dir.expanduser().resolve() / "clickhouse-server", data_path_for(settings))

    @property
    def config_xml(self) -> Path:
        return self.state_dir / "config.xml"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        """The serving process's stdout and stderr (ClickHouse prints its errors there)."""
        return self.state_dir / "server.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"

    @property
    def stop_file(self) -> Path:
        return self.state_dir / "stop"

    @property
    def engine_status_file(self) -> Path:
        """ClickHouse's own ``status`` file: ``flock``-ed by whichever process has the data open."""
        return self.data_path / "status"


def data_path_for(settings: Settings) -> Path:
    """The chDB data directory to serve: the ``chdb://`` DSN's path, else the embedded default."""
    dsn = settings.resolved_clickhouse_dsn
    if not dsn.startswith("chdb://"):
        dsn = settings.model_copy(update={"clickhouse_dsn": None}).resolved_clickhouse_dsn
    return Path(urlparse(dsn).path or "/").expanduser().resolve()


def resolve_address(settings: Settings, *, http_port: int | None = None, tcp_port: int | None = None) -> Address:
    """The address to serve on (see the module docstring for the order of sources).

    Raises :class:`ServerError` for a port outside 1..65535 or two equal ports.
    """
    if http_port is None:
        http_port = _local_dsn_port(settings.resolved_clickhouse_dsn)
    if http_port is None:
        http_port = int(getattr(settings, "clickhouse_http_port", None) or DEFAULT_HTTP_PORT)
    if tcp_port is None:
        tcp_port = int(getattr(settings, "clickhouse_tcp_port", None) or DEFAULT_TCP_PORT)
    for label, port in (("HTTP", http_port), ("TCP", tcp_port)):
        if not 0 < port < 65536:
            raise ServerError(f"the ClickHouse {label} port must be 1..65535, not {port}")
    if http_port == tcp_port:
        raise ServerError(f"the ClickHouse HTTP and TCP ports must differ (both {http_port})")
    return Address(HOST, http_port, tcp_port)


def _local_dsn_port(dsn: str) -> int | None:
    parsed = urlparse(dsn)
    if parsed.scheme != "http" or parsed.hostname not in _LOOPBACK_NAMES:
        return None
    try:
        return parsed.port or DEFAULT_HTTP_PORT
    except ValueError:
        return None


def render_config_xml(address: Address) -> str:
    """The ``config.xml`` the engine reads from its working directory when it starts."""
    return (
        "<!-- Written by `telemetry clickhouse start`; rewritten at every start. -->\n"
        "<clickhouse>\n"
        f"    <listen_host>{address.host}</listen_host>\n"
        f"    <http_port>{address.http_port}</http_port>\n"
        f"    <tcp_port>{address.tcp_port}</tcp_port>\n"
        "</clickhouse>\n"
    )


def read_config_xml(path: Path) -> Address | None:
    """The address recorded in a ``config.xml`` written by :func:`render_config_xml`; None if unreadable."""
    try:
        root = ET.parse(path).getroot()
        host = (root.findtext("listen_host") or "").strip()
        http_port = int((root.findtext("http_port") or "").strip())
        tcp_port = int((root.findtext("tcp_port") or "").strip())
    except (OSError, ET.ParseError, ValueError):
        return None
    return Address(host or HOST, http_port, tcp_port) if host else None


def serve_sql(stop_file: Path) -> str:
    """The statements the serving process runs: start both listeners, then block until stopped.

    The listeners live only while this one call runs. The last query sleeps ``STOP_POLL_S`` per
    row (one row per block) and ends at the first row that sees ``stop_file`` exist: ``file()``
    gets an argument that depends on the row, so it is evaluated again for every row rather than
    folded to a constant once.
    """
    quoted = str(stop_file).replace("\\", "\\\\").replace("'", "\\'")
    return (
        "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
        "SELECT number FROM system.numbers "
        f"WHERE sleepEachRow({STOP_POLL_S}) = 0 "
        f"AND file(concat('{quoted}', substring(toString(number), 1, 0)), '{_ABSENT}') != '{_ABSENT}' "
        "LIMIT 1 SETTINGS max_block_size = 1"
    )


def serve_command(layout: ServerLayout) -> list[str]:
    """argv of the serving process (run with ``cwd=layout.state_dir``)."""
    return [sys.executable, "-m", SERVE_MODULE, str(layout.data_path), str(layout.state_dir)]


def is_serve_argv(argv: list[str], layout: ServerLayout) -> bool:
    """True if ``argv`` is :func:`serve_command` of ``layout`` (whatever the Python executable)."""
    return len(argv) >= 4 and argv[-4:-2] == ["-m", SERVE_MODULE] and argv[-1] == str(layout.state_dir)
