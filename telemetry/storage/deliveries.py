"""The ``alert_deliveries`` table: the webhook outbox's durable state.

Every method blocks (call through ``asyncio.to_thread``) and raises the client's exceptions; the
caller retries the transient ones (:func:`telemetry.storage.clickhouse.is_transient`).

Each state change of a delivery is a new row; the table is a ``ReplacingMergeTree(updated_at)``
keyed by (alert id, channel), so the row with the largest ``updated_at`` is the delivery's state.
Reads here take that row explicitly (``LIMIT 1 BY``), never rely on merges having happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from clickhouse_connect.driver.client import Client

from telemetry.alerting.delivery import Delivery
from telemetry.storage.clickhouse import WRITE_SETTINGS

__all__ = ["DELIVERY_COLUMNS", "DeliveryStore"]

DELIVERY_COLUMNS = [
    "alert_id", "channel", "channel_kind", "fingerprint", "alertname", "route", "status", "sequence", "state",
    "attempts", "last_status", "last_error", "next_attempt_at", "created_at", "updated_at", "payload",
]  # fmt: skip

_SELECT = (
    "alert_id, channel, channel_kind, fingerprint, alertname, route, status, sequence, state, attempts, "
    "last_status, last_error, toUnixTimestamp64Milli(next_attempt_at), toUnixTimestamp64Milli(created_at), "
    "toUnixTimestamp64Milli(updated_at), payload"
)
_CHUNK = 1000


def _row(d: Delivery) -> list[object]:
    return [
        d.alert_id, d.channel, d.channel_kind, d.fingerprint, d.alertname, d.route, d.status, d.sequence, d.state,
        d.attempts, d.last_status, d.last_error, d.next_attempt_ms, d.created_ms, d.updated_ms, d.payload,
    ]  # fmt: skip


def _delivery(row: Sequence[object]) -> Delivery:
    return Delivery(
        alert_id=str(row[0]), channel=str(row[1]), channel_kind=str(row[2]), fingerprint=str(row[3]),
        alertname=str(row[4]), route=str(row[5]), status=str(row[6]), sequence=int(row[7]),  # type: ignore[call-overload]
        state=str(row[8]),  # type: ignore[arg-type]
        attempts=int(row[9]), last_status=str(row[10]), last_error=str(row[11]),  # type: ignore[call-overload]
        next_attempt_ms=int(row[12]), created_ms=int(row[13]), updated_ms=int(row[14]),  # type: ignore[call-overload]
        payload=str(row[15]),
    )  # fmt: skip


class DeliveryStore:
    """Reads and writes of ``<database>.alert_deliveries``."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database

    def record(self, deliveries: Sequence[Delivery]) -> None:
        """Write new versions of ``deliveries`` (synchronously: when this returns they are stored).
        A retried write of the same versions is deduplicated by its token."""
        if not deliveries:
            return
        digest = hashlib.sha256()
        for d in deliveries:
            digest.update(f"{d.alert_id}\x1f{d.channel}\x1f{d.state}\x1f{d.attempts}\x1f{d.updated_ms}\x1e".encode())
        self.client.insert(
            "alert_deliveries",
            [_row(d) for d in deliveries],
            column_names=DELIVERY_COLUMNS,
            database=self.db,
            settings={**WRITE_SETTINGS, "insert_deduplication_token": f"deliveries-{digest.hexdigest()[:32]}"},
        )

    def existing(self, alert_ids: Iterable[str]) -> set[tuple[str, str]]:
        """(alert id, channel) of the deliveries already recorded for ``alert_ids``, in any state."""
        ids = sorted(set(alert_ids))
        found: set[tuple[str, str]] = set()
        for start in range(0, len(ids), _CHUNK):
            result = self.client.query(
                f"SELECT DISTINCT alert_id, channel FROM {self.db}.alert_deliveries WHERE alert_id IN %(ids)s",
                parameters={"ids": ids[start : start + _CHUNK]},
            )
            found.update((str(a), str(c)) for a, c in result.result_rows)
        return found

    def latest(self, *, state: str | None = None) -> list[Delivery]:
        """The newest version of every delivery (only those in ``state`` when given), oldest first."""
        where = "WHERE state = %(state)s" if state is not None else ""
        result = self.client.query(
            f"SELECT {_SELECT} FROM (SELECT * FROM {self.db}.alert_deliveries "
            f"ORDER BY alert_id, channel, updated_at DESC LIMIT 1 BY alert_id, channel) {where} "
            "ORDER BY created_at, fingerprint, sequence, alert_id, channel",
            parameters={"state": state} if state is not None else None,
        )
        return [_delivery(row) for row in result.result_rows]

    def pending(self) -> list[Delivery]:
        """Deliveries not yet delivered or failed, oldest first: what a starting worker resumes."""
        return self.latest(state="pending")

    def counts(self) -> dict[str, int]:
        """Number of deliveries per state (newest version of each)."""
        result = self.client.query(
            f"SELECT state, count() FROM (SELECT alert_id, channel, argMax(state, updated_at) AS state "
            f"FROM {self.db}.alert_deliveries GROUP BY alert_id, channel) GROUP BY state"
        )
        return {str(s): int(n) for s, n in result.result_rows}
