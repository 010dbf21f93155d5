"""The worker child: :class:`telemetry.worker.process.WorkerProcess`, optionally under the probe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from telemetry.settings import Settings
from telemetry.worker.process import WorkerProcess, WorkerProcessError, settings_env

__all__ = ["ProbedWorkerProcess", "bench_env", "new_worker"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def bench_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) with the repository on ``PYTHONPATH`` so child
    processes can import ``bench`` from any working directory."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class ProbedWorkerProcess(WorkerProcess):
    """Same child, started as ``python -m bench.probe`` (GC timer + stack sampler, see there)."""

    def __init__(self, settings: Settings, log_path: Path, probe_out: Path) -> None:
        super().__init__(settings, log_path)
        self.probe_out = probe_out

    def start(self, timeout: float = 120.0) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = bench_env(settings_env(self.settings))
        env["BENCH_PROBE_OUT"] = str(self.probe_out)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.probe"], env=env, stdout=self._log, stderr=self._log, start_new_session=True
        )
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


def new_worker(settings: Settings, log_path: Path, probe_out: Path | None = None) -> WorkerProcess:
    """The plain worker child, or the probed one when ``probe_out`` is given."""
    if probe_out is None:
        return WorkerProcess(settings, log_path)
    return ProbedWorkerProcess(settings, log_path, probe_out)
