"""Versioned DDL migrations: ``migrations/NNNN_name.sql``, applied in order, once each.

Each applied file is recorded in ``<database>.schema_migrations`` with its checksum. Files are
idempotent DDL (``IF NOT EXISTS``) so a run interrupted half way can simply be run again.
``{database}`` in a file is replaced by the configured database name.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

from telemetry.errors import ConfigError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self, database: str) -> list[str]:
        text = self.sql.replace("{database}", database)
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in text.split(";\n") if s.strip().rstrip(";").strip()]


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in the package, sorted by version."""
    found: list[Migration] = []
    for entry in resources.files("telemetry.storage.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"duplicate migration versions: {versions}")
    return found


def applied_versions(client: Client, database: str) -> dict[int, str]:
    rows = client.query(f"SELECT version, checksum FROM {database}.schema_migrations").result_rows
    return {int(v): str(c) for v, c in rows}


def migrate(client: Client, database: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied now. Blocks; may raise
    the client's errors (the CLI reports them). A recorded migration whose file changed is
    reported as a warning and not re-applied."""
    migrations = bundled_migrations() if migrations is None else migrations
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = applied_versions(client, database)
    applied: list[Migration] = []
    for migration in migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                log.warning(
                    "migration changed after it was applied",
                    extra={"version": migration.version, "migration": migration.name},
                )
            continue
        for statement in migration.statements(database):
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
            database=database,
            settings={"async_insert": 0},
        )
        log.info("migration applied", extra={"version": migration.version, "migration": migration.name})
        applied.append(migration)
    return applied
