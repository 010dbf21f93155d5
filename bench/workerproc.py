"""The worker child: :class:`telemetry.worker.process.WorkerProcess`, optionally under the probe."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from telemetry.settings import Settings
from telemetry.worker.process import WorkerProcess, settings_env

__all__ = ["bench_env", "new_worker"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def bench_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) with the repository on ``PYTHONPATH`` so child
    processes can import ``bench`` from any working directory."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def new_worker(settings: Settings, log_path: Path, probe_out: Path | None = None) -> WorkerProcess:
    """The plain worker child, or the same child started as ``python -m bench.probe`` (GC timer
    + stack sampler, see there) when ``probe_out`` is given."""
    if probe_out is None:
        return WorkerProcess(settings, log_path)
    probe_env = bench_env(settings_env(settings))
    extra = {"PYTHONPATH": probe_env["PYTHONPATH"], "BENCH_PROBE_OUT": str(probe_out)}
    return WorkerProcess(settings, log_path, argv=[sys.executable, "-m", "bench.probe"], extra_env=extra)
