"""The ClickHouse side of the worker: lookups for the join, idempotent writes, saved state.

Every method blocks (call through ``asyncio.to_thread``) and raises the client's exceptions;
the caller classifies them with :func:`telemetry.storage.clickhouse.is_transient`.

Writes are idempotent: each insert carries an ``insert_deduplication_token`` derived from its
content, and every table keeps a deduplication window, so retrying an insert whose answer was
lost never stores its rows twice, in the table or in the views fed from it.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import orjson
from clickhouse_connect.driver.client import Client

from telemetry.alerting.payloads import cloudevent_id
from telemetry.contracts.alert import Alert

from telemetry.contracts.verdict import VerdictEvent
from telemetry.ingest.deadletter import DeadLetter
from telemetry.ingest.join import JoinOutcome, JoinState, KnownRequest, Lookup
from telemetry.ingest.shard import shard_sql
from telemetry.storage import rows as R
from telemetry.storage.clickhouse import WRITE_SETTINGS

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 5000

ALERT_COLUMNS = [
    "emitted_at", "id", "fingerprint", "status", "alertname", "route", "model", "team", "severity", "env",
    "sequence", "starts_at", "ends_at", "decided_at", "summary", "description", "labels", "annotations", "evidence",
]  # fmt: skip


def _token(kind: str, keys: Iterable[str]) -> str:
    digest = hashlib.sha256(kind.encode())
    for key in keys:
        digest.update(b"\x1f")
        digest.update(key.encode())
    return f"{kind}-{digest.hexdigest()[:32]}"


def _known(row: Sequence[object]) -> KnownRequest:
    """A cache entry from (request_id, ts ms, route, team, model, served_model, cost_usd)."""
    intern = sys.intern
    return KnownRequest(
        str(row[0]), int(row[1]), intern(str(row[2])), intern(str(row[3])), intern(str(row[4])),  # type: ignore[call-overload]
        intern(str(row[5])), row[6],  # type: ignore[arg-type]
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AggregateCheck:
    requests: int
    requests_in_views: int
    verdicts: int
    verdicts_in_views: int

    @property
    def consistent(self) -> bool:
        return self.requests == self.requests_in_views and self.verdicts == self.verdicts_in_views


class Store:
    """Reads and writes of the worker's tables in ``database``."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database

    # -- writes ---------------------------------------------------------------------------------
    def _insert(self, table: str, rows: list[list[object]], columns: list[str], token: str) -> None:
        """Insert rows column-oriented (clickhouse-connect serializes columns ~3x faster)."""
        if not rows:
            return
        self.client.insert(
            table,
            list(zip(*rows, strict=True)),
            column_names=columns,
            database=self.db,
            column_oriented=True,
            settings={**WRITE_SETTINGS, "insert_deduplication_token": token},
        )

    def write(self, outcome: JoinOutcome, now_ms: int) -> None:
        """Store one batch's rows: requests, then joined verdicts, then parked verdicts."""
        if outcome.new_requests:
            self._insert(
                "requests",
                R.request_rows(outcome.new_requests, now_ms),
                R.REQUEST_COLUMNS,
                _token("requests", (p.event.request_id for p in outcome.new_requests)),
            )
        if outcome.joined:
            self._insert(
                "verdicts",
                R.verdict_rows(outcome.joined, now_ms),
                R.VERDICT_COLUMNS,
                _token("verdicts", (f"{j.verdict.request_id}\x1e{j.verdict.evaluator}" for j in outcome.joined)),
            )
        if outcome.parked:
            self._insert(
                "verdicts_pending",
                R.pending_rows(outcome.parked, now_ms),
                R.PENDING_COLUMNS,
                _token("pending", (f"{v.request_id}\x1e{v.evaluator}" for v in outcome.parked)),
            )

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Record dead letters. The caller passes those :meth:`recorded_dead_letters` does not
        hold yet (the pipeline asks once per batch, before it publishes them); a retried insert
        of the same letters is dropped by its deduplication token."""
        if not letters:
            return
        self._insert(
            "dead_letters",
            R.dead_letter_rows(letters),
            R.DEAD_LETTER_COLUMNS,
            _token("dead", (f"{d.topic}:{d.partition}:{d.offset}:{d.item}" for d in letters)),
        )

    def recorded_dead_letters(self, letters: Sequence[DeadLetter]) -> set[tuple[str, int, int, int]]:
        """The (topic, partition, offset, item) already in ``dead_letters`` among those of ``letters``
        (a superset filter: callers test membership)."""
        if not letters:
            return set()
        topics = sorted({d.topic for d in letters})
        low = min(d.offset for d in letters)
        result = self.client.query(
            f"SELECT source_topic, source_partition, source_offset, source_item FROM {self.db}.dead_letters "
            "WHERE source_topic IN %(topics)s AND source_offset >= %(low)s",
            parameters={"topics": topics, "low": low},
        )
        return {(str(t), int(p), int(o), int(i)) for t, p, o, i in result.result_rows}

    # -- lookups --------------------------------------------------------------------------------
    def lookup(self, request_ids: Iterable[str]) -> Lookup:
        """Stored requests (with their verdicts' evaluators) and parked verdicts for the ids."""
        ids = sorted(set(request_ids))
        found = Lookup()
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            found.requests.update(self._requests_by_id(chunk))
            stored = set(self._verdict_keys(chunk))
            for rid, evaluator in stored:
                known = found.requests.get(rid)
                if known is not None:
                    known.evaluators = (known.evaluators or set()) | {evaluator}
            for verdict in self._pending_by_id(chunk):
                if (verdict.request_id, verdict.evaluator) not in stored:
                    found.pending.setdefault(verdict.request_id, []).append(verdict)
        return found

    def _requests_by_id(self, ids: list[str]) -> dict[str, KnownRequest]:
        result = self.client.query(
            f"SELECT request_id, toUnixTimestamp64Milli(ts), route, team, model, served_model, cost_usd "
            f"FROM {self.db}.requests WHERE request_id IN %(ids)s",
            parameters={"ids": ids},
        )
        return {
            str(r[0]): _known(r) for r in result.result_rows
        }

    def _verdict_keys(self, ids: list[str]) -> list[tuple[str, str]]:
        result = self.client.query(
            f"SELECT request_id, evaluator FROM {self.db}.verdicts WHERE request_id IN %(ids)s",
            parameters={"ids": ids},
        )
        return [(str(a), str(b)) for a, b in result.result_rows]

    def _pending_by_id(self, ids: list[str]) -> list[VerdictEvent]:
        result = self.client.query(
            f"SELECT {', '.join(R.PENDING_COLUMNS)} FROM {self.db}.verdicts_pending WHERE request_id IN %(ids)s",
            parameters={"ids": ids},
        )
        return [R.pending_from_row(row) for row in result.result_rows]

    # -- startup --------------------------------------------------------------------------------
    def load_join_state(
        self, *, horizon_ms: int, capacity: int, shards: int = 1, owned: Collection[int] = (0,)
    ) -> tuple[dict[int, JoinState], list[VerdictEvent]]:
        """Rebuild the join cache of the ``owned`` shards (of ``shards``) from storage: per shard,
        the newest requests within the horizon (up to ``capacity`` / ``shards``, at least 1000)
        with their verdicts' evaluators. Returns the states and the shards' unjoined parked
        verdicts, which the caller replays through the join (they may match by now)."""
        owned = sorted(set(owned))
        per_shard = max(1000, capacity // shards) if shards > 1 else capacity
        where = "1" if shards == 1 else f"{shard_sql('request_id', shards)} IN %(owned)s"
        params: dict[str, object] = {"owned": owned}
        newest = self.client.query(
            f"SELECT toUnixTimestamp64Milli(max(ts)), count() FROM {self.db}.requests WHERE {where}", parameters=params
        )
        max_ts, total = newest.result_rows[0]
        states = {s: JoinState(horizon_ms=horizon_ms, capacity=per_shard, complete_since_ms=0) for s in owned}
        if total:
            since = int(max_ts) - horizon_ms
            shard_col = "0" if shards == 1 else shard_sql("request_id", shards)
            result = self.client.query(
                f"SELECT request_id, toUnixTimestamp64Milli(ts) AS t, route, team, model, served_model, cost_usd, "
                f"{shard_col} AS shard FROM {self.db}.requests "
                f"WHERE ts >= fromUnixTimestamp64Milli(%(since)s) AND {where} "
                f"ORDER BY t DESC LIMIT %(cap)s BY shard",
                parameters={**params, "since": since, "cap": per_shard},
            )
            loaded: dict[int, list[KnownRequest]] = {s: [] for s in owned}
            for row in result.result_rows:
                loaded[int(row[7])].append(_known(row))
            oldest_complete = since
            by_id: dict[str, KnownRequest] = {}
            for shard, known in loaded.items():
                complete_since = since
                if len(known) >= per_shard:
                    complete_since = known[-1].ts_ms + 1
                oldest_complete = min(oldest_complete, complete_since)
                state = states[shard] = JoinState(horizon_ms=horizon_ms, capacity=per_shard,
                                                  complete_since_ms=complete_since)  # fmt: skip
                known.reverse()
                state.remember(known)
                by_id.update((k.request_id, k) for k in known)
            keys = self.client.query(
                f"SELECT request_id, evaluator FROM {self.db}.verdicts "
                f"WHERE request_ts >= fromUnixTimestamp64Milli(%(since)s) AND {where}",
                parameters={**params, "since": oldest_complete},
            )
            for rid, evaluator in keys.result_rows:
                cached = by_id.get(str(rid))
                if cached is not None:
                    cached.evaluators = (cached.evaluators or set()) | {str(evaluator)}
        pending = self.client.query(
            f"SELECT {', '.join(R.PENDING_COLUMNS)} FROM {self.db}.verdicts_unjoined WHERE {where}", parameters=params
        )
        return states, [R.pending_from_row(row) for row in pending.result_rows]

    def check_aggregates(self) -> AggregateCheck:
        row = self.client.query(
            f"SELECT (SELECT count() FROM {self.db}.requests), (SELECT sum(requests) FROM {self.db}.route_minute_state), "
            f"(SELECT count() FROM {self.db}.verdicts), (SELECT sum(verdict_rows) FROM {self.db}.route_minute_state)"
        ).result_rows[0]
        return AggregateCheck(*(int(x or 0) for x in row))

    def rebuild_aggregates(self) -> None:
        """Recompute route_minute_state from its sources with the views' own SELECTs.

        For the embedded engine only, at startup, when :meth:`check_aggregates` disagrees: a
        process killed between a table's part and its view's part leaves them apart."""
        selects = self.client.query(
            "SELECT name, as_select FROM system.tables WHERE database = %(db)s AND name LIKE 'route_minute_%%_mv'",
            parameters={"db": self.db},
        ).result_rows
        # A view fills the state table's columns by name; INSERT ... SELECT goes by position: name them.
        columns = {name: ", ".join(f"`{r[0]}`" for r in self.client.query(f"DESCRIBE TABLE ({select})").result_rows)
                   for name, select in selects}  # fmt: skip
        self.client.command(f"TRUNCATE TABLE {self.db}.route_minute_state")
        for name, select in selects:
            log.warning("rebuilding aggregate from its source", extra={"view": name})
            self.client.command(f"INSERT INTO {self.db}.route_minute_state ({columns[name]}) {select}",
                                settings={"async_insert": 0})  # fmt: skip

    # -- alerts -------------------------------------------------------------------------------------
    def write_alerts(self, alerts: Sequence[Alert], emitted_ms: int) -> None:
        """Append alert notifications to the ``alerts`` table; a retried write of the same
        notifications is deduplicated by their CloudEvent ids."""
        if not alerts:
            return
        rows = []
        for a in alerts:
            labels = a.labels
            rows.append([
                emitted_ms, cloudevent_id(a), a.fingerprint, a.status, labels.get("alertname", ""), labels.get("route", ""),
                labels.get("model", ""), labels.get("team", ""), labels.get("severity", ""), labels.get("env", ""),
                a.sequence, a.starts_at, a.ends_at, a.decided_at, a.annotations.get("summary", ""),
                a.annotations.get("description", ""), dict(labels), dict(a.annotations),
                orjson.dumps(a.evidence, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            ])  # fmt: skip
        self._insert("alerts", rows, ALERT_COLUMNS, _token("alerts", (cloudevent_id(a) for a in alerts)))

    def recorded_alert_ids(self, ids: Sequence[str]) -> set[str]:
        """The notification ids among ``ids`` the ``alerts`` table holds."""
        if not ids:
            return set()
        rows = self.client.query(f"SELECT DISTINCT id FROM {self.db}.alerts WHERE id IN %(ids)s",
                                 parameters={"ids": list(ids)}).result_rows  # fmt: skip
        return {str(r[0]) for r in rows}

    # -- saved state ----------------------------------------------------------------------------
    def save_state(self, key: str, value: str, now_ms: int) -> None:
        self.save_states({key: value}, now_ms)

    def save_states(self, values: dict[str, str], now_ms: int) -> None:
        """Save several keys in one insert (one part: all of them or none)."""
        self.client.insert(
            "worker_state", [[k, v, now_ms] for k, v in values.items()], column_names=["key", "value", "updated_at"],
            database=self.db, settings={"async_insert": 0},
        )  # fmt: skip

    def state_time(self, keys: Sequence[str]) -> int:
        """The newest ``updated_at`` of ``keys`` (0: none saved). A new owner saves after it, so
        its saves win whatever its clock says."""
        rows = self.client.query(f"SELECT toUnixTimestamp64Milli(max(updated_at)) FROM {self.db}.worker_state WHERE key IN %(keys)s",
                                 parameters={"keys": list(keys)}).result_rows  # fmt: skip
        return int(rows[0][0] or 0) if rows else 0

    def load_state(self, key: str) -> str | None:
        rows = self.client.query(
            f"SELECT argMax(value, updated_at) FROM {self.db}.worker_state WHERE key = %(key)s HAVING count() > 0",
            parameters={"key": key},
        ).result_rows
        return str(rows[0][0]) if rows else None
