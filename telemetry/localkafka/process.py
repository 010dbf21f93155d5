"""Low-level helpers: TCP probes, a Kafka handshake, and finding/stopping our JVMs via ``/proc``.

Linux only (``/proc``). Every function here is bounded in time by its arguments.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import signal
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from telemetry.localkafka.config import VERSION_PROPERTY, Endpoint

logger = logging.getLogger(__name__)

_EXCEPTION_LINE = re.compile(r"^(Caused by: )?[A-Za-z_$][\w.$]*(Exception|Error)\b(:.*)?$")
_LOG_LEVEL = re.compile(r"\] (ERROR|FATAL) ")


# --- network ---------------------------------------------------------------------------------


def tcp_answers(endpoint: Endpoint, timeout_s: float = 1.0) -> bool:
    """True if a TCP connection to ``endpoint`` is accepted within ``timeout_s``. Never raises."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s):
            return True
    except OSError:
        return False


def speaks_kafka(endpoint: Endpoint, timeout_s: float = 2.0) -> bool:
    """True if ``endpoint`` answers a Kafka ApiVersions v0 request with a well-formed response.

    Every Kafka version answers it (an unsupported version still gets a v0-format error reply),
    while an HTTP server, database, etc. answers garbage or nothing. Never raises.
    """
    client_id = b"telemetry-probe"
    correlation_id = 0x7E1E
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack(">i", len(header)) + header)
            reply = b""
            while len(reply) < 8:
                chunk = sock.recv(8 - len(reply))
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    size, got_correlation = struct.unpack(">ii", reply)
    return bool(got_correlation == correlation_id and 4 <= size < 1_000_000)


def port_is_free(endpoint: Endpoint) -> bool:
    """True if this process could bind ``endpoint`` (SO_REUSEADDR, as the JVM does). Never raises."""
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((endpoint.host, endpoint.port))
            return True
    except OSError:
        return False


def is_local_host(host: str) -> bool:
    """True if ``host`` names an address of this machine (it can be bound). Never raises."""
    return port_is_free(Endpoint(host, 0))


# --- processes -------------------------------------------------------------------------------


def cmdline(pid: int) -> list[str]:
    """argv of ``pid`` from ``/proc``; empty if it does not exist, is a zombie or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies count as dead; our own exited children are reaped)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fine
    except OSError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X")


def is_our_broker(pid: int, server_properties: Path) -> bool:
    """True if ``pid`` is a live ``java ... kafka.Kafka <server_properties>`` process."""
    argv = cmdline(pid)
    return (
        bool(argv)
        and Path(argv[0]).name == "java"
        and "kafka.Kafka" in argv
        and argv[-1] == str(server_properties)
        and is_alive(pid)
    )


def find_our_brokers(server_properties: Path) -> list[int]:
    """Pids of every live broker JVM started with ``server_properties`` (a ``/proc`` scan)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_our_broker(int(entry.name), server_properties):
            found.append(int(entry.name))
    return sorted(found)


def version_of(pid: int) -> str | None:
    """The Kafka version recorded on our broker's command line (``-Dtelemetry.kafka.version``)."""
    prefix = f"-D{VERSION_PROPERTY}="
    for arg in cmdline(pid):
        if arg.startswith(prefix):
            return arg[len(prefix) :]
    return None


def wait_gone(pids: Iterable[int], timeout_s: float) -> list[int]:
    """Wait up to ``timeout_s`` for ``pids`` to exit; return those still alive."""
    deadline = time.monotonic() + timeout_s
    remaining = [p for p in pids if is_alive(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [p for p in remaining if is_alive(p)]
    return remaining


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``; a process that already exited is not an error."""
    try:
        os.kill(pid, sig)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def terminate(pids: list[int], timeout_s: float) -> list[int]:
    """SIGTERM ``pids``, wait up to ``timeout_s``, SIGKILL the rest, wait 10 s more.

    Returns pids that survived even SIGKILL (normally empty). May block up to ``timeout_s + 10``.
    """
    for pid in pids:
        send_signal(pid, signal.SIGTERM)
    left = wait_gone(pids, timeout_s)
    for pid in left:
        logger.warning("process ignored SIGTERM; sending SIGKILL", extra={"pid": pid, "waited_s": timeout_s})
        send_signal(pid, signal.SIGKILL)
    return wait_gone(left, 10.0)


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing); blocks until granted."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- logs ------------------------------------------------------------------------------------


def last_meaningful_line(log_path: Path, max_bytes: int = 256 * 1024) -> str:
    """The most informative line at the end of a broker log, for a one-line error message.

    Preference: the first exception line after the last ERROR/FATAL record (e.g. ``KafkaException:
    Socket server failed to bind ...``), else that ERROR record, else the last JVM ``Error:`` line,
    else the last non-empty line. Returns ``"(empty log)"`` if nothing is there. Never raises.
    """
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(empty log)"
    chosen: str | None = None
    last_error = max((i for i, ln in enumerate(lines) if _LOG_LEVEL.search(ln)), default=None)
    if last_error is not None:
        chosen = lines[last_error]
        for line in lines[last_error + 1 :]:
            if _EXCEPTION_LINE.match(line.strip()):
                chosen = line.strip()
                break
    if chosen is None:
        jvm_errors = [ln for ln in lines if _EXCEPTION_LINE.match(ln.strip()) or ln.startswith("Error")]
        chosen = jvm_errors[0] if jvm_errors else lines[-1]
    return chosen[:400]
