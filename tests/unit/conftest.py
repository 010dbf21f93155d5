"""Fixtures shared by the unit tests.

chDB allows exactly one data path per process, so every test that needs the real embedded
ClickHouse engine shares the session-wide ``engine`` below and works in a database of its own.
"""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.storage.clickhouse import connect


@pytest.fixture(scope="session")
def engine_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The DSN of the one embedded engine of this process (for code that connects by itself)."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture(scope="session")
def engine(engine_dsn: str) -> Client:
    return connect(engine_dsn)
