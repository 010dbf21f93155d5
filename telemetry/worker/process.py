"""``telemetry worker`` as a child process, driven over its loopback HTTP pages.

Used by ``telemetry demo`` (and the integration tests): the child owns the embedded engine, so
every query goes through its ``/telemetry/sql/`` page.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from telemetry.errors import TelemetryError
from telemetry.settings import Settings


class WorkerProcessError(TelemetryError):
    """The child worker exited, or did not become ready."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"TELEMETRY_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """Start, query and stop one worker child process. Its log goes to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, *, argv: Sequence[str] | None = None,
                 extra_env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        """``argv``: the child's command (default ``python -m telemetry worker``); ``extra_env``:
        variables added to the environment that carries ``settings``."""
        self.settings = settings
        self.log_path = log_path
        self.argv = list(argv) if argv is not None else [sys.executable, "-m", "telemetry", "worker"]
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 120.0) -> WorkerProcess:
        """Start the child and wait until its pipeline is ready. Raises WorkerProcessError."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv, env={**settings_env(self.settings), **self.extra_env},
            stdout=self._log, stderr=self._log, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkerProcessError(f"worker exited with code {self.proc.returncode}; see {self.log_path}")
            try:
                if self.stats().get("ready"):
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise WorkerProcessError(f"worker not ready after {timeout:.0f}s; see {self.log_path}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _call(self, path: str, body: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        from telemetry.sql import auth_headers, worker_base_url

        url = worker_base_url(self.settings) + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **auth_headers(self.settings)}
        req = urllib.request.Request(url, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._call("/telemetry/stats/", timeout=5))

    def sql(self, query: str) -> list[dict[str, Any]]:
        """Rows of a read-only query as dicts. Raises WorkerProcessError with ClickHouse's message."""
        try:
            result = self._call("/telemetry/sql/", {"sql": query})
        except urllib.error.HTTPError as exc:
            raise WorkerProcessError(f"query failed: {exc.read().decode(errors='replace')}") from None
        return [dict(zip(result["columns"], row)) for row in result["rows"]]

    def scalar(self, query: str) -> Any:
        rows = self.sql(query)
        return next(iter(rows[0].values())) if rows else None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        """Signal the child and wait for it (SIGKILL after ``timeout``)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
