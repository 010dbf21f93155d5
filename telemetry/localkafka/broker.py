"""Start, stop and inspect the local single-node KRaft broker (``telemetry kafka start|stop|status``).

State lives in ``<data_dir>/kafka``: ``server.properties``, the logging config, ``kraft-logs/``
(partitions and metadata, ``meta.properties`` once formatted), ``broker.pid`` and ``broker.log``
(the JVM's stdout/stderr; the previous run's is kept as ``broker.log.1``). Jars come from
:mod:`telemetry.localkafka.resolve`. "Ours" means a live ``java ... kafka.Kafka
<data_dir>/kafka/server.properties`` process; nothing else is ever signalled.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from telemetry.localkafka import config, process, resolve
from telemetry.localkafka.config import BrokerLayout, Endpoint
from telemetry.localkafka.errors import BrokerError
from telemetry.settings import Settings

logger = logging.getLogger(__name__)

FORMAT_TIMEOUT_S = 120.0
_POLL_S = 0.2


@dataclass(frozen=True)
class BrokerStatus:
    """What answers at the bootstrap address and whether we started it.

    ``running``: a Kafka broker answers at ``bootstrap``. ``managed``: a broker JVM started by
    :func:`start_broker` for this ``data_dir`` is alive (``pid`` is its pid). ``version`` is known
    for managed brokers only. ``detail`` is one human-readable line.
    """

    running: bool
    managed: bool
    pid: int | None
    bootstrap: str
    version: str | None
    detail: str


def broker_answers(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True if a TCP connect to the first ``host:port`` of ``bootstrap`` succeeds within ``timeout_s``.

    May block up to ``timeout_s``. Raises :class:`BrokerError` only if ``bootstrap`` is unparsable.
    """
    return process.tcp_answers(config.parse_bootstrap(bootstrap), timeout_s)


def broker_status(settings: Settings) -> BrokerStatus:
    """Inspect the broker at ``settings.kafka_bootstrap`` and our broker JVM for ``settings.data_dir``.

    Never starts or stops anything. Blocks at most a few seconds (TCP connect and a Kafka
    handshake). Raises :class:`BrokerError` only if the bootstrap address is unparsable.
    """
    endpoint = config.parse_bootstrap(settings.kafka_bootstrap)
    layout = BrokerLayout.for_settings(settings)
    pid = _our_pid(layout)
    version = process.version_of(pid) if pid else None
    answers = process.tcp_answers(endpoint)
    kafka = answers and process.speaks_kafka(endpoint)
    where = str(endpoint)
    if kafka and pid:
        detail = f"Kafka {version} at {where} is ours (pid {pid}, state in {layout.state_dir})"
    elif kafka:
        detail = f"a Kafka broker answers at {where}; not started by telemetry for {layout.state_dir}"
    elif answers:
        detail = f"something that is not a Kafka broker listens at {where}"
    elif pid:
        detail = f"our broker (pid {pid}) runs but does not answer at {where} yet; see {layout.broker_log}"
    else:
        detail = f"no broker answers at {where}; start one with `telemetry kafka start`"
    return BrokerStatus(
        running=kafka, managed=pid is not None, pid=pid, bootstrap=where, version=version, detail=detail
    )


def start_broker(settings: Settings, *, timeout_s: float = 120.0, log: Callable[[str], None] = print) -> BrokerStatus:
    """Make sure a Kafka broker answers at ``settings.kafka_bootstrap``, starting ours if needed.

    A broker already answering there makes this an instant no-op (``log`` gets the address).
    Otherwise: checks ``java`` (and ``mvn`` if the jar cache is incomplete), downloads the jars
    once per version, writes the config, formats KRaft storage on first use, launches the JVM
    detached (it outlives this process) and waits until the bootstrap port answers.

    Blocks: up to ``timeout_s`` waiting for readiness, plus the download on first use (bounded
    by :data:`telemetry.localkafka.resolve.RESOLVE_TIMEOUT_S`). Concurrent calls for the same
    ``data_dir`` serialize on a file lock. ``log`` receives a few progress lines for the user.

    Raises :class:`BrokerError` (one line) when a tool is missing, the port is held by something
    that is not Kafka, the download or format fails, the JVM exits (with its last meaningful log
    line), or it does not answer within ``timeout_s`` (the JVM is then killed).
    """
    endpoint = config.parse_bootstrap(settings.kafka_bootstrap)
    if process.tcp_answers(endpoint):
        return _already_answering(settings, endpoint, log)
    _check_startable(settings, endpoint)
    java = _require_java(settings.kafka_version)
    layout = BrokerLayout.for_settings(settings)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    with process.exclusive_lock(layout.lock_file):
        if process.tcp_answers(endpoint):  # a concurrent start finished while we waited
            return _already_answering(settings, endpoint, log)
        pid = _our_pid(layout)
        if pid is not None:
            log(f"Our broker (pid {pid}) is already starting; waiting for {endpoint} ...")
            _wait_ready(endpoint, pid, None, layout, timeout_s)
            return broker_status(settings)
        _check_ports_free(endpoint)
        libs = resolve.ensure_libs(settings, log)
        _write_config(settings, layout)
        _format_if_needed(java, settings, layout, libs)
        return _launch(java, settings, layout, libs, endpoint, timeout_s, log)


def stop_broker(settings: Settings, *, timeout_s: float = 30.0) -> BrokerStatus:
    """Stop the broker JVM that :func:`start_broker` started for ``settings.data_dir``, if any.

    Only a live ``java ... kafka.Kafka <data_dir>/kafka/server.properties`` process is signalled
    (pid file, verified via ``/proc``, plus a ``/proc`` scan for lost pid files): SIGTERM, up to
    ``timeout_s`` for a clean shutdown, then SIGKILL. Removes the pid file. A broker we did not
    start is left alone; with nothing of ours running this is a no-op.

    Blocks up to ``timeout_s`` + 10 s. Raises :class:`BrokerError` if a JVM survives SIGKILL.
    """
    layout = BrokerLayout.for_settings(settings)
    pids = _our_pids(layout)
    if not pids:
        layout.pid_file.unlink(missing_ok=True)
        status = broker_status(settings)
        detail = f"nothing to stop: no broker started by telemetry runs for {layout.state_dir}"
        if status.running:
            detail += f" (the broker at {status.bootstrap} is not ours and was left alone)"
        return _with_detail(status, detail)
    started = time.monotonic()
    logger.info("stopping kafka broker", extra={"pids": pids, "state_dir": str(layout.state_dir)})
    survivors = process.terminate(pids, timeout_s)
    if survivors:
        raise BrokerError(f"broker JVM(s) {survivors} survived SIGKILL; check `ps -p {survivors[0]}`")
    layout.pid_file.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    logger.info("stopped kafka broker", extra={"pids": pids, "elapsed_s": round(elapsed, 1)})
    status = broker_status(settings)
    return _with_detail(status, f"stopped broker pid {', '.join(map(str, pids))} in {elapsed:.1f}s; {status.detail}")


# --- start, step by step ---------------------------------------------------------------------


def _already_answering(settings: Settings, endpoint: Endpoint, log: Callable[[str], None]) -> BrokerStatus:
    if not process.speaks_kafka(endpoint):
        if process.is_local_host(endpoint.host):
            raise BrokerError(
                f"port {endpoint.port} on {endpoint.host} is taken by something that is not a Kafka broker; "
                "stop it or set TELEMETRY_KAFKA_BOOTSTRAP to another host:port"
            )
        raise BrokerError(
            f"{endpoint} accepts connections but does not answer as a Kafka broker; check TELEMETRY_KAFKA_BOOTSTRAP"
        )
    status = broker_status(settings)
    layout = BrokerLayout.for_settings(settings)
    log(f"Kafka already answers at {endpoint}" + ("" if status.managed else f" (not the one of {layout.state_dir})"))
    return status


def _check_startable(settings: Settings, endpoint: Endpoint) -> None:
    if settings.kafka_security_protocol != "PLAINTEXT":
        raise BrokerError(
            "the local broker speaks PLAINTEXT only; unset TELEMETRY_KAFKA_SECURITY_PROTOCOL "
            f"(now {settings.kafka_security_protocol}) to use it"
        )
    if not process.is_local_host(endpoint.host):
        raise BrokerError(
            f"TELEMETRY_KAFKA_BOOTSTRAP host {endpoint.host!r} is not an address of this machine and no broker "
            "answers there; use 127.0.0.1:<port> for a local broker"
        )
    config.heap_flags(settings.kafka_heap)  # validate before any download


def _require_java(version: str) -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "java not found on PATH; the local Kafka broker needs Java 17+ "
            "(install it, e.g. apt-get install -y openjdk-17-jre-headless)"
        )
    needed = 11 if version.startswith("3.") else 17
    major = _java_major(java)
    if major is not None and major < needed:
        raise BrokerError(f"{java} is Java {major}; Kafka {version} needs Java {needed}+")
    return java


def _java_major(java: str) -> int | None:
    try:
        done = subprocess.run([java, "-version"], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"cannot run {java} -version: {exc}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _check_ports_free(endpoint: Endpoint) -> None:
    controller = config.controller_endpoint(endpoint)
    for label, ep in (("broker", endpoint), ("controller (broker port + 1)", controller)):
        if not process.port_is_free(ep):
            raise BrokerError(
                f"cannot start Kafka: the {label} port {ep} is already in use by another program; "
                "free it or set TELEMETRY_KAFKA_BOOTSTRAP to another host:port"
            )


def _write_config(settings: Settings, layout: BrokerLayout) -> None:
    _write_atomic(layout.server_properties, config.render_server_properties(settings, layout))
    _write_atomic(
        config.log_config_path(settings.kafka_version, layout), config.render_log_config(settings.kafka_version)
    )


def _format_if_needed(java: str, settings: Settings, layout: BrokerLayout, libs: Path) -> None:
    if layout.meta_properties.exists():
        return
    cluster_id = config.new_cluster_id()
    command = config.format_command(java, settings, layout, libs, cluster_id)
    logger.info("formatting kraft storage", extra={"cluster_id": cluster_id, "dir": str(layout.kraft_dir)})
    try:
        done = subprocess.run(
            command, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise BrokerError(f"formatting Kafka storage in {layout.kraft_dir} timed out") from None
    if done.returncode != 0 or not layout.meta_properties.exists():
        output = (done.stdout + "\n" + done.stderr).strip()
        logger.error("kraft format failed", extra={"returncode": done.returncode, "output": output})
        lines = [ln for ln in output.splitlines() if ln.strip()]
        raise BrokerError(f"formatting Kafka storage failed: {lines[-1] if lines else 'no output'}"[:500])


def _launch(
    java: str,
    settings: Settings,
    layout: BrokerLayout,
    libs: Path,
    endpoint: Endpoint,
    timeout_s: float,
    log: Callable[[str], None],
) -> BrokerStatus:
    if layout.broker_log.exists():
        os.replace(layout.broker_log, layout.broker_log.with_name(layout.broker_log.name + ".1"))
    command = config.broker_command(java, settings, layout, libs)
    started = time.monotonic()
    with open(layout.broker_log, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=layout.state_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the CLI; Ctrl-C in the terminal does not reach it
            close_fds=True,
        )
    _write_atomic(layout.pid_file, f"{proc.pid}\n")
    logger.info("launched kafka broker", extra={"pid": proc.pid, "version": settings.kafka_version})
    log(f"Starting Kafka {settings.kafka_version} (pid {proc.pid}), log: {layout.broker_log} ...")
    try:
        _wait_ready(endpoint, proc.pid, proc, layout, timeout_s)
    except BaseException:
        if proc.poll() is None:
            process.terminate([proc.pid], 10.0)
        proc.poll()
        layout.pid_file.unlink(missing_ok=True)
        raise
    elapsed = time.monotonic() - started
    logger.info(
        "kafka broker ready", extra={"pid": proc.pid, "bootstrap": str(endpoint), "elapsed_s": round(elapsed, 1)}
    )
    log(f"Kafka {settings.kafka_version} ready at {endpoint} (pid {proc.pid}, {elapsed:.1f}s)")
    return BrokerStatus(
        running=True,
        managed=True,
        pid=proc.pid,
        bootstrap=str(endpoint),
        version=settings.kafka_version,
        detail=f"Kafka {settings.kafka_version} at {endpoint} is ours (pid {proc.pid}, state in {layout.state_dir})",
    )


def _wait_ready(
    endpoint: Endpoint, pid: int, proc: subprocess.Popen[bytes] | None, layout: BrokerLayout, timeout_s: float
) -> None:
    """Poll the bootstrap port until it answers; fail fast if the JVM exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        exited = proc.poll() is not None if proc is not None else not process.is_alive(pid)
        if exited:
            code = f" with code {proc.returncode}" if proc is not None else ""
            raise BrokerError(
                f"Kafka exited during startup{code}: {process.last_meaningful_line(layout.broker_log)} "
                f"(full log: {layout.broker_log})"
            )
        if process.tcp_answers(endpoint, timeout_s=0.5):
            return
        if time.monotonic() >= deadline:
            outcome = "and was stopped" if proc is not None else "(stop it with `telemetry kafka stop`)"
            raise BrokerError(
                f"Kafka did not answer at {endpoint} within {timeout_s:g}s {outcome}; "
                f"last log line: {process.last_meaningful_line(layout.broker_log)}"
            )
        time.sleep(_POLL_S)


# --- small helpers ---------------------------------------------------------------------------


def _our_pid(layout: BrokerLayout) -> int | None:
    pids = _our_pids(layout)
    return pids[0] if pids else None


def _our_pids(layout: BrokerLayout) -> list[int]:
    """Live broker JVMs of this state dir: the pid file's (verified) first, then a ``/proc`` scan."""
    recorded: int | None = None
    try:
        recorded = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        pass
    pids = [recorded] if recorded and process.is_our_broker(recorded, layout.server_properties) else []
    pids += [p for p in process.find_our_brokers(layout.server_properties) if p not in pids]
    return pids


def _with_detail(status: BrokerStatus, detail: str) -> BrokerStatus:
    return dataclasses.replace(status, detail=detail)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
