"""Fixtures shared by the unit tests.

chDB allows exactly one data path per process, so every test that needs the real embedded
ClickHouse engine shares the session-wide ``engine`` below and works in a database of its own.
"""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.storage.clickhouse import connect


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Client:
    return connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
