"""The pure pieces of the scale-out: which shard owns an id (and that ClickHouse computes the
same), routing ids that agree with the decoder, bundles, and the facts log."""

from __future__ import annotations

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.contracts.decode import decode_request, decode_verdict
from telemetry.detect import factlog
from telemetry.detect.facts import RequestFact, VerdictFact
from telemetry.errors import BadInput
from telemetry.ingest import bundle
from telemetry.ingest.bundle import BundleError, Forward
from telemetry.ingest.shard import routing_id, shard_of, shard_sql

REQ = {"request_id": "r-1", "ts": 1_767_225_600_000, "route": "support.answer", "model": "gpt-4o-mini",
       "input_tokens": 10, "output_tokens": 5, "latency_ms": 100.0, "status": "ok"}  # fmt: skip


def test_clickhouse_computes_the_same_shard_as_the_worker(engine: Client) -> None:
    ids = ["req_8dbb7344e1a8c4e8", "a", "ünïcode-✓", "x" * 256, "0", "with space"]
    for shards in (1, 2, 4, 7, 64):
        got = engine.query(f"SELECT id, {shard_sql('id', shards)} FROM (SELECT arrayJoin(%(ids)s) AS id)",
                           parameters={"ids": ids}).result_rows  # fmt: skip
        assert {str(i): int(s) for i, s in got} == {i: shard_of(i, shards) for i in ids}


def test_ids_spread_over_the_shards() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[shard_of(f"req_{i:06x}", 8)] += 1
    assert min(counts) > 800 and max(counts) < 1200, counts


@pytest.mark.parametrize(
    ("kind", "body", "rid"),
    [
        ("requests", REQ, "r-1"),
        ("requests", {k: v for k, v in REQ.items() if k != "request_id"} | {"gen_ai.response.id": "otel-1"}, "otel-1"),
        ("requests", REQ | {"gen_ai.response.id": "other"}, "r-1"),  # the contract name wins, as in decode
        ("verdicts", {"request_id": "v-1", "ts": 1, "evaluator": "j", "passed": True}, "v-1"),
        ("verdicts", {"name": "gen_ai.evaluation.result", "attributes": {"gen_ai.response.id": "ev-1"}}, "ev-1"),
        ("verdicts", {"gen_ai.response.id": "flat-1", "gen_ai.evaluation.name": "j"}, "flat-1"),
    ],
)
def test_routing_reads_the_id_the_decoder_reads(kind: str, body: dict[str, object], rid: str) -> None:
    assert routing_id(kind, orjson.dumps(body)) == rid  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "rid"),
    [
        (b'{"tags":{"request_id":"nested"},"request_id": "top"}', "top"),  # nested first: parsed
        (b'{"request_id":"a\\u00e9"}', "a\u00e9"),  # an escape: parsed
        (b'{"request_id":"x","tags":{"request_id":"x2"}}', "x"),  # twice: parsed
        (b'{"request_id":"fast","route":"r"}', "fast"),
    ],
)
def test_the_byte_scan_never_reads_another_id_than_the_parser(raw: bytes, rid: str) -> None:
    assert routing_id("requests", raw) == rid == orjson.loads(raw)["request_id"]


@pytest.mark.parametrize("value", [None, b"", b"{oops", b"[1,2]", b'"text"', b'{"request_id": 7}', b'{"request_id": ""}',
                                   b"\xff\xfe", b'{"request_id": null}'])  # fmt: skip
def test_messages_without_a_readable_id_have_none(value: bytes | None) -> None:
    assert routing_id("requests", value) is None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["request_id", "gen_ai.response.id", "route", "ts", "model", "x"]),
                       st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.none(), st.booleans()), max_size=6),
       st.sampled_from(["requests", "verdicts"]))  # fmt: skip
def test_whenever_a_message_decodes_routing_read_its_id(fields: dict[str, object], kind: str) -> None:
    body = {**(REQ if kind == "requests" else {"ts": 1, "evaluator": "j", "passed": True}), **fields}
    raw = orjson.dumps(body)
    try:
        event = decode_request(raw) if kind == "requests" else decode_verdict(raw)
    except BadInput:
        return
    assert routing_id(kind, raw) == event.request_id  # type: ignore[arg-type]


def test_a_bundle_carries_every_message_with_its_original_coordinates() -> None:
    messages = [
        Forward(3, "llm.requests", 2, 41, 1000, b"k", b'{"a":1}'),
        Forward(3, "llm.requests", 2, 42, 1001, None, None),  # a tombstone stays a tombstone
        Forward(3, "llm.vérdicts", 0, 7, 0, b"", b""),  # empty is not absent
    ]
    decoded = bundle.decode(bundle.encode(messages), 3)
    assert [(m.topic, m.partition, m.offset, m.key, m.value, m.shard) for m in decoded] == [
        ("llm.requests", 2, 41, b"k", b'{"a":1}', 3), ("llm.requests", 2, 42, None, None, 3),
        ("llm.vérdicts", 0, 7, b"", b"", 3)]  # fmt: skip


@pytest.mark.parametrize("data", [None, b"", b"XXXX", b"LTB1\x00\x05", bundle.encode([Forward(0, "t", 0, 0, 0, b"k", b"v" * 50)])[:-10]])
def test_what_is_not_a_whole_bundle_is_refused(data: bytes | None) -> None:
    with pytest.raises(BundleError):
        bundle.decode(data, 0)


def test_bundles_are_cut_by_size_per_shard_in_input_order() -> None:
    forwards = [Forward(i % 2, "t", 0, i, 0, None, b"x" * 100) for i in range(10)]
    planned = bundle.plan(forwards, max_bytes=350)
    by_shard: dict[int, list[int]] = {}
    for shard, group in planned:
        assert sum(f.size for f in group) <= 350 or len(group) == 1
        by_shard.setdefault(shard, []).extend(f.offset for f in group)
    assert by_shard == {0: [0, 2, 4, 6, 8], 1: [1, 3, 5, 7, 9]}
    assert len(planned) == 6  # 130 bytes each: two per bundle
    assert bundle.plan([Forward(0, "t", 0, 0, 0, None, b"x" * 1000)], max_bytes=10)[0][1][0].offset == 0


def test_facts_survive_the_log_and_are_chunked() -> None:
    requests = [RequestFact(i, "r", "t", "m", "m2", None if i % 2 else 0.5, 1.5, "ok", "", "stop", 1) for i in range(9000)]
    verdicts = [VerdictFact(5, 4, "r", "m2", "j@v1", "online", True, 0.25)]
    records = factlog.encode(requests, verdicts, {("llm.requests", 0): 77})
    assert len(records) == 3
    batches = [factlog.decode(r) for r in records]
    assert [f for b in batches for f in b.requests] == requests
    assert [f for b in batches for f in b.verdicts] == verdicts
    assert [b.event_times for b in batches] == [{("llm.requests", 0): 77}, {}, {}]
    # A batch of duplicates still moves the owner's clock.
    assert factlog.decode(factlog.encode([], [], {("t", 1): 5})[0]).event_times == {("t", 1): 5}
    assert factlog.encode([], [], {}) == []


@pytest.mark.parametrize("data", [None, b"{}", b'{"v": 2}', b'{"v": 1, "t": [], "r": [[1]], "q": []}', b"LTB1"])
def test_a_foreign_facts_record_is_refused(data: bytes | None) -> None:
    with pytest.raises(factlog.FactLogError):
        factlog.decode(data)


@pytest.mark.parametrize("raw_id", [" padded ", "\tpadded", "padded  "])
def test_a_padded_id_is_routed_by_the_id_the_contract_decodes(raw_id: str) -> None:
    """The contract strips text; routing by the unstripped id sent such a message to another
    shard, where it was refused as ambiguous_request_id."""
    raw = orjson.dumps(REQ | {"request_id": raw_id})
    assert routing_id("requests", raw) == decode_request(raw).request_id == "padded"
    nested = orjson.dumps({"tags": {"a": "b"}} | REQ | {"request_id": raw_id})  # the parsing path
    assert routing_id("requests", nested) == "padded"
