"""Fixtures of the integration tests (the broker and settings fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.settings import Settings
from tests.integration.harness import Worker


@pytest.fixture
def worker(test_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    """A worker on the test's settings (set ``worker.settings`` before ``start()`` to change
    them); stopped at the end if it runs."""
    w = Worker(test_settings, tmp_path / "logs")
    yield w
    if w.proc is not None:
        w.stop()
