"""Start, stop and inspect the local ClickHouse server (``telemetry clickhouse start|stop|status``).

The server is the chDB engine serving one data directory over ClickHouse's own HTTP and native TCP
interfaces on 127.0.0.1, in its own detached process (:mod:`telemetry.localclickhouse.serve`), so
that several processes share one engine. Files: see :mod:`telemetry.localclickhouse.config`.
"Ours" means a live ``python -m telemetry.localclickhouse.serve <data_path> <state_dir>`` process
for this state dir; nothing else is ever signalled.

Readiness: the HTTP port answers a query naming the data path we serve, and the TCP port accepts.
Stop: the stop flag plus SIGTERM (the serving process turns SIGTERM into the flag too), both
graceful; SIGKILL after ``timeout_s``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from telemetry.localclickhouse import config
from telemetry.localclickhouse.config import Address, ServerLayout
from telemetry.localclickhouse.errors import ServerError
from telemetry.localkafka import process
from telemetry.localkafka.config import Endpoint
from telemetry.settings import Settings

logger = logging.getLogger(__name__)

_POLL_S = 0.1
_STOPPING_WAIT_S = 30.0  # a stop waits ~5 s for connected clients; SIGKILL follows after 20 s
_RELEASE_WAIT_S = 10.0  # after the process is gone, for the kernel to release the data directory's lock
_IDENTIFY_SQL = "SELECT version(), value FROM system.server_settings WHERE name = 'path' FORMAT TabSeparated"
# Proxies from the environment must never see a loopback probe.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ServerStatus:
    """What answers at the server's address and whether it is ours.

    ``running``: our serving process is alive and answers at ``dsn``, serving ``data_path``.
    ``pid``: our serving process (alive), even when it does not answer (yet). ``version``: the
    ClickHouse version reported by what answers. ``detail`` is one human-readable line.
    """

    running: bool
    pid: int | None
    dsn: str
    native: str
    data_path: Path
    version: str | None
    detail: str


@dataclass(frozen=True)
class _Probe:
    version: str
    path: Path


def server_status(settings: Settings, *, http_port: int | None = None, tcp_port: int | None = None) -> ServerStatus:
    """Inspect our server for ``settings.data_dir`` (its recorded address, else the configured one).

    Never starts or stops anything; blocks at most ~2 s (one HTTP query). Raises
    :class:`ServerError` only for invalid ports.
    """
    layout = ServerLayout.for_settings(settings)
    pid = _our_pid(layout)
    address = (config.read_config_xml(layout.config_xml) if pid else None) or config.resolve_address(
        settings, http_port=http_port, tcp_port=tcp_port
    )
    probe = _identify(address)
    ours = probe is not None and probe.path == layout.data_path
    running = pid is not None and ours
    if running:
        detail = f"pid {pid}, serving {layout.data_path}, native TCP {address.native}, log {layout.log_file}"
    elif pid is not None and probe is not None:
        detail = f"not running: our server (pid {pid}) at {address.dsn} serves {probe.path}, not {layout.data_path}"
    elif pid is not None:
        detail = f"our server (pid {pid}) runs but does not answer at {address.dsn} yet; see {layout.log_file}"
    elif probe is not None:
        detail = (
            f"not running: a ClickHouse server not started by telemetry for {layout.state_dir} answers at "
            f"{address.dsn} (serving {probe.path})"
        )
    else:
        detail = f"not running: no ClickHouse server answers at {address.dsn}; start one with `telemetry clickhouse start`"
    return ServerStatus(
        running=running,
        pid=pid,
        dsn=address.dsn,
        native=address.native,
        data_path=layout.data_path,
        version=probe.version if probe else None,
        detail=detail,
    )


def start_server(
    settings: Settings,
    *,
    http_port: int | None = None,
    tcp_port: int | None = None,
    timeout_s: float = 60.0,
    log: Callable[[str], None] = print,
) -> ServerStatus:
    """Make sure our server serves the data directory, starting it if needed; return its status.

    With our server already running this is a no-op (``log`` says so; the returned DSN is the
    running server's, whatever ports were asked). Otherwise: checks that no other process holds
    the data directory and that both ports are free, writes ``config.xml``, launches the serving
    process detached (it outlives this one) and waits until it answers a query.

    Blocks up to ``timeout_s`` for readiness. Concurrent calls for one data dir serialize on a file
    lock. Raises :class:`ServerError` (one line) when the data directory is locked by another
    process (e.g. a worker on the embedded engine), a port is taken, the serving process exits
    during startup (with ClickHouse's reason from the log) or does not answer within ``timeout_s``
    (it is then stopped).
    """
    layout = ServerLayout.for_settings(settings)
    wanted = config.resolve_address(settings, http_port=http_port, tcp_port=tcp_port)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    with process.exclusive_lock(layout.lock_file):
        pid = _our_pid(layout)
        if pid is not None and layout.stop_file.exists():
            log(f"Our ClickHouse server (pid {pid}) is stopping; waiting for it to exit ...")
            if process.wait_gone([pid], _STOPPING_WAIT_S) or not _wait_unlocked(layout, _RELEASE_WAIT_S):
                raise ServerError(f"our ClickHouse server (pid {pid}) is still stopping; run `telemetry clickhouse stop`")
            pid = None
        if pid is not None:
            return _already_ours(settings, layout, pid, wanted, timeout_s, log)
        _check_unlocked(layout)
        _check_ports_free(wanted, layout)
        layout.data_path.mkdir(parents=True, exist_ok=True)
        _write_atomic(layout.config_xml, config.render_config_xml(wanted))
        return _launch(layout, wanted, timeout_s, log)


def stop_server(settings: Settings, *, timeout_s: float = 20.0) -> ServerStatus:
    """Stop our serving process for ``settings.data_dir``, if any (a no-op otherwise).

    Writes the stop flag and sends SIGTERM (both graceful: the engine shuts its tables down; with
    client connections open it waits up to ~5 s for them), then SIGKILL after ``timeout_s``.
    Removes the pid file. A server we did not start is left alone.

    Blocks up to ``timeout_s`` + 10 s. Raises :class:`ServerError` if the process survives SIGKILL.
    """
    layout = ServerLayout.for_settings(settings)
    pids = _our_pids(layout)
    if not pids:
        layout.pid_file.unlink(missing_ok=True)
        status = server_status(settings)
        return dataclasses.replace(
            status, detail=f"nothing to stop: no ClickHouse server started by telemetry runs for {layout.state_dir}"
        )
    address = config.read_config_xml(layout.config_xml)
    started = time.monotonic()
    logger.info("stopping clickhouse server", extra={"pids": pids, "state_dir": str(layout.state_dir)})
    try:
        layout.stop_file.write_text("stop\n")
    except OSError:
        pass  # SIGTERM makes the serving process write it; SIGKILL is the last resort
    survivors = process.terminate(pids, timeout_s)
    if survivors:
        raise ServerError(f"ClickHouse server process(es) {survivors} survived SIGKILL; check `ps -p {survivors[0]}`")
    # The leader thread can be a zombie while the engine's threads still exit: wait for the data
    # directory's lock too, so that a `start` or an embedded worker right after us can open it.
    _wait_unlocked(layout, _RELEASE_WAIT_S)
    layout.pid_file.unlink(missing_ok=True)
    layout.stop_file.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    logger.info("stopped clickhouse server", extra={"pids": pids, "elapsed_s": round(elapsed, 2)})
    status = server_status(settings)
    where = f" at {address.dsn}" if address else ""
    return dataclasses.replace(
        status, detail=f"stopped the ClickHouse server{where} (pid {', '.join(map(str, pids))}) in {elapsed:.1f}s"
    )


# --- start, step by step ---------------------------------------------------------------------


def _already_ours(
    settings: Settings,
    layout: ServerLayout,
    pid: int,
    wanted: Address,
    timeout_s: float,
    log: Callable[[str], None],
) -> ServerStatus:
    address = config.read_config_xml(layout.config_xml) or wanted
    serving = _served_path(pid)
    if serving is not None and serving != layout.data_path:
        raise ServerError(
            f"our ClickHouse server (pid {pid}) serves {serving}, not {layout.data_path}; "
            "stop it with `telemetry clickhouse stop` first"
        )
    probe = _identify(address)
    if probe is None or probe.path != layout.data_path:
        log(f"Our ClickHouse server (pid {pid}) is starting; waiting for {address.dsn} ...")
        _wait_ready(layout, address, pid, None, timeout_s)
    note = "" if address == wanted else f" (ports asked now: HTTP {wanted.http_port}, TCP {wanted.tcp_port}; stop it first to change them)"
    log(f"ClickHouse server already running at {address.dsn} (pid {pid}){note}")
    return server_status(settings)


def _check_unlocked(layout: ServerLayout) -> None:
    """Refuse early, with the holder's pid, when another process has the data directory open."""
    holder = _engine_lock_holder(layout)
    if holder is not None:
        raise _locked_error(layout, holder)


def _engine_lock_holder(layout: ServerLayout) -> int | None:
    """The pid holding the engine's ``flock`` on ``<data_path>/status`` (0 if unknown); None if free."""
    try:
        handle = open(layout.engine_status_file, "rb")  # noqa: SIM115
    except OSError:
        return None  # never opened yet: nobody holds it
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            match = re.search(rb"PID:\s*(\d+)", handle.read(4096))
            return int(match.group(1)) if match else 0
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _wait_unlocked(layout: ServerLayout, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` until no process holds the data directory; True if none does."""
    deadline = time.monotonic() + timeout_s
    while _engine_lock_holder(layout) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _locked_error(layout: ServerLayout, holder: int | None) -> ServerError:
    who = ""
    if holder:
        argv = process.cmdline(holder)
        who = f" (pid {holder}" + (f": {_short_argv(argv)}" if argv else "") + ")"
    return ServerError(
        f"cannot serve {layout.data_path}: another process has it open{who}; only one process can open a chDB "
        "data directory. Stop that process (a worker or `telemetry sql` on the embedded engine), run "
        "`telemetry clickhouse start`, then give every process TELEMETRY_CLICKHOUSE_DSN=<the printed DSN>"
    )


def _short_argv(argv: list[str]) -> str:
    text = " ".join(" ".join([Path(argv[0]).name, *argv[1:]]).split())  # one line, whatever the argv holds
    return text if len(text) <= 120 else text[:117] + "..."


def _check_ports_free(address: Address, layout: ServerLayout) -> None:
    probe = _identify(address)
    if probe is not None:
        raise ServerError(
            f"a ClickHouse server not started by telemetry for {layout.state_dir} already answers at {address.dsn} "
            f"(serving {probe.path}); stop it or choose other ports (--http-port/--tcp-port)"
        )
    for label, port in (("HTTP", address.http_port), ("TCP", address.tcp_port)):
        if not process.port_is_free(Endpoint(address.host, port)):
            raise ServerError(
                f"cannot start ClickHouse: the {label} port {address.host}:{port} is already in use by another "
                f"program; free it or choose another port (--{label.lower()}-port)"
            )


def _launch(layout: ServerLayout, address: Address, timeout_s: float, log: Callable[[str], None]) -> ServerStatus:
    if layout.log_file.exists():
        os.replace(layout.log_file, layout.log_file.with_name(layout.log_file.name + ".1"))
    layout.stop_file.unlink(missing_ok=True)
    started = time.monotonic()
    with open(layout.log_file, "ab") as out:
        proc = subprocess.Popen(
            config.serve_command(layout),
            cwd=layout.state_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the CLI; Ctrl-C in the terminal does not reach it
            close_fds=True,  # in particular not our start lock
        )
    _write_atomic(layout.pid_file, f"{proc.pid}\n")
    logger.info("launched clickhouse server", extra={"pid": proc.pid, "dsn": address.dsn})
    log(f"Starting ClickHouse (pid {proc.pid}) serving {layout.data_path}, log: {layout.log_file} ...")
    try:
        probe = _wait_ready(layout, address, proc.pid, proc, timeout_s)
    except BaseException:
        if proc.poll() is None:
            layout.stop_file.write_text("stop\n")
            process.terminate([proc.pid], 10.0)
        proc.poll()
        layout.pid_file.unlink(missing_ok=True)
        layout.stop_file.unlink(missing_ok=True)
        raise
    elapsed = time.monotonic() - started
    logger.info("clickhouse server ready", extra={"pid": proc.pid, "dsn": address.dsn, "elapsed_s": round(elapsed, 2)})
    log(f"ClickHouse {probe.version} ready at {address.dsn} (native TCP {address.native}, pid {proc.pid}, {elapsed:.1f}s)")
    return ServerStatus(
        running=True,
        pid=proc.pid,
        dsn=address.dsn,
        native=address.native,
        data_path=layout.data_path,
        version=probe.version,
        detail=f"pid {proc.pid}, serving {layout.data_path}, native TCP {address.native}, log {layout.log_file}",
    )


def _wait_ready(
    layout: ServerLayout, address: Address, pid: int, proc: subprocess.Popen[bytes] | None, timeout_s: float
) -> _Probe:
    """Poll until HTTP answers for our data path and TCP accepts; fail fast if the process exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        exited = proc.poll() is not None if proc is not None else not process.is_alive(pid)
        if exited:
            raise _startup_failure(layout, proc.returncode if proc is not None else None)
        probe = _identify(address, timeout_s=1.0)
        if probe is not None:
            if probe.path != layout.data_path:
                raise ServerError(
                    f"another ClickHouse server took {address.dsn} (serving {probe.path}) while ours started"
                )
            if process.tcp_answers(Endpoint(address.host, address.tcp_port), timeout_s=1.0):
                return probe
        if time.monotonic() >= deadline:
            outcome = "and was stopped" if proc is not None else "(stop it with `telemetry clickhouse stop`)"
            raise ServerError(
                f"ClickHouse did not answer at {address.dsn} within {timeout_s:g}s {outcome}; "
                f"last log line: {_last_line(layout.log_file)}"
            )
        time.sleep(_POLL_S)


def _startup_failure(layout: ServerLayout, returncode: int | None) -> ServerError:
    text = _read_tail(layout.log_file)
    if "Cannot lock file" in text or "Code: 76." in text:
        return _locked_error(layout, _engine_lock_holder(layout))
    code = f" with code {returncode}" if returncode is not None else ""
    return ServerError(
        f"ClickHouse exited during startup{code}: {_last_line(layout.log_file)} (full log: {layout.log_file})"
    )


# --- probes and small helpers ----------------------------------------------------------------


def _identify(address: Address, timeout_s: float = 2.0) -> _Probe | None:
    """Ask ``address`` over HTTP for its version and data path; None if it does not answer so.

    One request on a fresh connection that is closed afterwards: an open keep-alive connection
    would delay the server's shutdown. Never raises.
    """
    request = urllib.request.Request(address.dsn + "/", data=_IDENTIFY_SQL.encode(), method="POST")
    request.add_header("Connection", "close")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            body = response.read(64 * 1024).decode("utf-8", "replace")
    except (OSError, urllib.error.URLError, ValueError):
        return None
    version, _, path = body.strip().partition("\t")
    if not version or not path:
        return None
    return _Probe(version=version, path=Path(path.rstrip("/") or "/").resolve())


def _our_pid(layout: ServerLayout) -> int | None:
    pids = _our_pids(layout)
    return pids[0] if pids else None


def _our_pids(layout: ServerLayout) -> list[int]:
    """Live serving processes of this state dir: the pid file's (verified) first, then a ``/proc`` scan."""
    recorded: int | None = None
    try:
        recorded = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        pass
    pids = [recorded] if recorded and _is_ours(recorded, layout) else []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in pids and _is_ours(int(entry.name), layout):
            pids.append(int(entry.name))
    return pids


def _served_path(pid: int) -> Path | None:
    """The data path on the command line of our serving process ``pid``."""
    argv = process.cmdline(pid)
    return Path(argv[-2]) if len(argv) >= 2 else None


def _is_ours(pid: int, layout: ServerLayout) -> bool:
    return config.is_serve_argv(process.cmdline(pid), layout) and process.is_alive(pid)


def _read_tail(path: Path, max_bytes: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_line(path: Path) -> str:
    """ClickHouse's last exception line (``Code: N. DB::Exception: ...``), else the last line."""
    lines = [ln.strip() for ln in _read_tail(path).splitlines() if ln.strip()]
    if not lines:
        return "(empty log)"
    errors = [ln for ln in lines if "DB::Exception" in ln or ln.startswith("Code:")]
    return (errors[-1] if errors else lines[-1])[:400]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
