"""The agreement source's query against the real embedded engine: (judge, human) pairs per route,
judge and request day, as of the detectors' event time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.detect.agreement import DAY_MS, HOUR_MS, INPUT_KEY, HourPairs, Pairs
from telemetry.detect.judge import MAX_JUDGES_PER_ROUTE
from telemetry.routes import RoutesConfig
from telemetry.settings import load_settings
from telemetry.storage.migrate import migrate
from telemetry.storage.store import Store
from telemetry.worker.agreement_source import agreement_source, lookback_hours
from telemetry.worker.stored_inputs import sources

NOW = int(datetime(2026, 1, 10, 12, tzinfo=UTC).timestamp() * 1000)
TODAY = NOW // DAY_MS
Y_HOUR, T_HOUR = (TODAY - 1) * 24 + 1, TODAY * 24 + 1  # yesterday and today, 01:00


@pytest.fixture
def store(engine: Client) -> Iterator[Store]:
    name = f"j_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    yield Store(engine, name)
    engine.command(f"DROP DATABASE IF EXISTS {name}")


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def insert(store: Store, rows: list[tuple[str, str, str, int, int, int, str]]) -> None:
    """``(request_id, evaluator, kind, passed, request_ts_ms, verdict_ts_ms, route)``."""
    values = ", ".join(
        f"('{rid}', '{ev}', '{kind}', {passed}, '{_at(vts)}', '{_at(rts)}', '{route}', 'm')"
        for rid, ev, kind, passed, rts, vts, route in rows
    )
    store.client.command(
        f"INSERT INTO {store.db}.verdicts (request_id, evaluator, kind, passed, verdict_ts, request_ts, route, "
        f"served_model) VALUES {values}"
    )


def read(store: Store, routes: RoutesConfig | None = None) -> dict[str, dict[str, tuple[HourPairs, ...]]]:
    out = agreement_source(store, load_settings(), routes or RoutesConfig(), NOW)
    data: dict[str, dict[str, tuple[HourPairs, ...]]] = out["extra"][INPUT_KEY]
    return data


def test_pairs_per_route_judge_and_request_hour(store: Store) -> None:
    y = (TODAY - 1) * DAY_MS + 3_600_000  # yesterday 01:00
    t = TODAY * DAY_MS + 3_600_000  # today 01:00
    insert(store, [
        # a: both pass (yesterday); b: the judge passes a human fail; both labelled a day later
        ("a", "j@1", "online", 1, y, y + 5000, "r"), ("a", "rev", "human", 1, y, y + DAY_MS, "r"),
        ("b", "j@1", "online", 1, y + 1, y + 5000, "r"), ("b", "rev", "human", 0, y + 1, y + DAY_MS, "r"),
        # c: two humans fail it (majority fail); j@1 fails it, j@2 passes it (today)
        ("c", "j@1", "online", 0, t, t + 5000, "r"), ("c", "j@2", "online", 1, t, t + 5000, "r"),
        ("c", "rev", "human", 0, t, t + 1000, "r"), ("c", "rev2", "human", 0, t, t + 1000, "r"),
        # d: the humans disagree (a tie): left out
        ("d", "j@1", "online", 0, t, t + 5000, "r"), ("d", "rev", "human", 0, t, t + 1000, "r"),
        ("d", "rev2", "human", 1, t, t + 1000, "r"),
        # e: labelled after the detectors' event time: not yet
        ("e", "j@1", "online", 1, t, t + 5000, "r"), ("e", "rev", "human", 1, t, NOW + 60_000, "r"),
        # f: only a judge; g: only a human; h: user feedback is not a human label
        ("f", "j@1", "online", 1, t, t + 5000, "r"), ("g", "rev", "human", 1, t, t + 1000, "r"),
        ("h", "j@1", "online", 1, t, t + 5000, "r"), ("h", "thumbs", "user_feedback", 0, t, t + 1000, "r"),
        # i: another route; j: older than the lookback
        ("i", "j@1", "online", 0, t, t + 5000, "s"), ("i", "rev", "human", 1, t, t + 1000, "s"),
        ("j", "j@1", "online", 1, NOW - 60 * DAY_MS, NOW - 60 * DAY_MS, "r"),
        ("j", "rev", "human", 1, NOW - 60 * DAY_MS, NOW - 59 * DAY_MS, "r"),
    ])  # fmt: skip
    assert read(store) == {
        "r": {
            "j@1": (HourPairs(Y_HOUR, Pairs(1, 1, 0, 0)), HourPairs(T_HOUR, Pairs(0, 0, 0, 1))),
            "j@2": (HourPairs(T_HOUR, Pairs(0, 1, 0, 0)),),
        },
        "s": {"j@1": (HourPairs(T_HOUR, Pairs(0, 0, 1, 0)),)},
    }


def test_the_lookback_follows_the_routes_file(store: Store) -> None:
    old = NOW - 50 * DAY_MS
    insert(store, [("a", "j@1", "online", 1, old, old, "r"), ("a", "rev", "human", 1, old, old, "r")])
    assert read(store) == {}
    longer = RoutesConfig.from_mapping({"routes": {"r": {"judge_baseline_window": "60d"}}})
    assert lookback_hours(RoutesConfig()) == 38 * 24 and lookback_hours(longer) == 70 * 24
    assert read(store, longer) == {"r": {"j@1": (HourPairs(old // HOUR_MS, Pairs(1, 0, 0, 0)),)}}


def test_the_judges_with_most_pairs_per_route(store: Store) -> None:
    t = TODAY * DAY_MS
    rows = []
    for j in range(MAX_JUDGES_PER_ROUTE + 2):
        for i in range(j + 1):  # judge j has j + 1 pairs
            rid = f"{j}-{i}"
            rows += [(rid, f"judge{j:02d}@1", "online", 1, t + i, t + i, "r"), (rid, "rev", "human", 1, t + i, t + i, "r")]
    insert(store, rows)
    judges = list(read(store)["r"])
    assert judges == [f"judge{j:02d}@1" for j in range(MAX_JUDGES_PER_ROUTE + 1, 1, -1)]


def test_registered_as_a_source_of_the_detection_owner() -> None:
    assert ("judge_agreement", agreement_source) in sources()
