"""ClickHouse unavailable, then back: the worker waits and retries, dead-letters nothing, loses
nothing. The outage is real: the engine's disk (a small tmpfs) is filled until writes fail."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.settings import Settings
from tests.integration.harness import Worker, produce
from tests.integration.traffic import make_traffic

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs to fill ClickHouse's disk: run the suite as root (CI does)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=200"], capture_output=True, check=False)
    return filler


def test_worker_waits_out_a_clickhouse_outage_without_loss(test_settings: Settings, tmp_path: Path, small_disk: Path) -> None:
    settings = test_settings.model_copy(update={"clickhouse_dsn": f"chdb://{small_disk / 'clickhouse'}"})
    worker = Worker(settings, tmp_path / "logs")
    traffic = make_traffic(1200, seed=11)
    first, second = traffic.requests[:600], traffic.requests[600:]
    worker.start()
    try:
        produce(settings, settings.requests_topic, first)
        worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(first))

        filler = fill(small_disk)
        produce(settings, settings.requests_topic, second)
        deadline = time.monotonic() + 60
        while worker.stats()["infrastructure_retries"] < 3:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        assert worker.scalar("SELECT count() FROM llm_telemetry.requests") < len(traffic.requests)
        assert worker.proc is not None and worker.proc.poll() is None, "the worker must keep running"

        filler.unlink()  # ClickHouse can write again
        worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(traffic.requests), timeout=90)
        assert worker.scalar("SELECT count() FROM llm_telemetry.dead_letters") == 0
        assert worker.stats()["counters"].get("dead_letters", 0) == 0
        assert worker.scalar("SELECT sum(requests) FROM llm_telemetry.route_hour") == len(traffic.requests)
    finally:
        worker.stop()
