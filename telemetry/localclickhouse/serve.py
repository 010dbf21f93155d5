"""The serving process: ``python -m telemetry.localclickhouse.serve <data_path> <state_dir>``.

Started detached by :func:`telemetry.localclickhouse.start_server` with ``cwd=<state_dir>``, where
the engine reads ``config.xml`` (listen host and ports). It makes one module-level
``chdb._chdb.query(..., path=<data_path>)`` call: that runs a full clickhouse-local ``LocalServer``,
which can start ClickHouse's HTTP and native TCP listeners (a ``chdb.connect()`` session cannot);
the listeners live while the call runs, and the call blocks until the stop flag appears (see
:func:`telemetry.localclickhouse.config.serve_sql`). The call runs on a thread so that the main
thread can take SIGTERM/SIGINT and turn them into the stop flag: a graceful stop, in which the
engine shuts its tables down (and waits up to ~5 s for open client connections).

Exit codes: 0 after a requested stop; 1 when the engine ended on its own (data directory locked by
another process, a port in use, ...: ClickHouse printed the reason to stderr, i.e. ``server.log``);
2 for a wrong command line. The engine itself may end the process with code 0 right after a
requested stop when client connections were open.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from telemetry.localclickhouse.config import ServerLayout, serve_sql


def _say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} telemetry-clickhouse[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m telemetry.localclickhouse.serve <data_path> <state_dir>", file=sys.stderr)
        return 2
    layout = ServerLayout(state_dir=Path(argv[1]).resolve(), data_path=Path(argv[0]).resolve())
    os.chdir(layout.state_dir)  # the engine reads ./config.xml
    layout.stop_file.unlink(missing_ok=True)
    layout.data_path.mkdir(parents=True, exist_ok=True)

    import chdb  # its import opens and closes an in-memory session; harmless
    from chdb import _chdb

    # The module-level query (a full clickhouse-local LocalServer) is not in chdb's type stubs.
    local_query: Callable[..., Any] = getattr(_chdb, "query")  # noqa: B009

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stop_requested.is_set():
            _say(f"{signal.Signals(signum).name}: stopping")
        stop_requested.set()
        try:
            layout.stop_file.write_text("stop\n")
        except OSError as exc:  # the stopper falls back to SIGKILL
            _say(f"cannot write the stop flag {layout.stop_file}: {exc}")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)

    outcome: dict[str, object] = {}

    def serve() -> None:
        try:
            result = local_query(serve_sql(layout.stop_file), "TabSeparated", path=str(layout.data_path))
            outcome["rows"] = result.bytes()
        except BaseException as exc:  # reported below; the process must end either way
            outcome["error"] = exc

    _say(f"serving {layout.data_path} (chdb {getattr(chdb, '__version__', '?')}, "
         f"engine {getattr(chdb, 'engine_version', '?')})")  # fmt: skip
    thread = threading.Thread(target=serve, name="clickhouse-local", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # wakes up for signal handlers

    layout.stop_file.unlink(missing_ok=True)
    if outcome.get("rows"):
        _say("stopped")
        return 0
    error = outcome.get("error")
    _say(
        "the engine stopped without a stop request"
        + (f": {type(error).__name__}: {error}" if error else " (its reason is printed above)")
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
