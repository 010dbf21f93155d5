"""OTLP ingest, pure: SDK-encoded spans and log records (both encodings) to contract events."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.contracts.decode import REASONS, decode_request, decode_verdict
from telemetry.errors import BadInput
from telemetry.ingest import bundle
from telemetry.ingest.batch import RawMessage, decode_requests, decode_verdicts
from telemetry.ingest.bundle import Forward
from telemetry.otlp.dialects import BY_FIELD, FACTS
from telemetry.otlp.genai import SpanMapping
from telemetry.otlp.split import Split, split_logs, split_traces
from telemetry.otlp.wire import sniff
from telemetry.pricing import PriceBook
from tests.otlp_sdk import Spans, SpanSpec, evaluation_logs, ids_of

ENCODINGS = ["otlp_proto", "otlp_json"]
T0 = 1_780_000_000_000  # ms
MAPPING = SpanMapping()

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 200,
    "gen_ai.usage.cache_creation.input_tokens": 100,
    "gen_ai.usage.reasoning.output_tokens": 50,
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.response.time_to_first_chunk": 0.25,
    "http.request.resend_count": 2,
    "http.response.status_code": 200,
    "llm.route": "support.answer",
    "llm.prompt.version": "v7",
    "llm.experiment": "control",
}


def requests_of(split: Split) -> list[dict[str, Any]]:
    return [orjson.loads(i.value) for i in split.items if i.kind == "requests" and i.refusal is None and i.value]


def verdicts_of(split: Split) -> list[dict[str, Any]]:
    return [orjson.loads(i.value) for i in split.items if i.kind == "verdicts" and i.refusal is None and i.value]


def one_request(attributes: dict[str, Any], encoding: str = "otlp_proto", **spec: Any) -> dict[str, Any]:
    spans = Spans(resource=spec.pop("resource", {"service.name": "checkout", "llm.team": "payments"}))
    spans.add(SpanSpec("chat gpt-4o", spec.pop("start_ms", T0), spec.pop("end_ms", T0 + 1500), attributes, **spec))
    split = split_traces(spans.encode(encoding), MAPPING)  # type: ignore[arg-type]
    assert len(split.items) >= 1 and split.items[0].refusal is None, split.items
    return requests_of(split)[0]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_genai_span_becomes_the_request_it_describes(encoding: str) -> None:
    event = decode_request(orjson.dumps(one_request(CHAT, encoding)))
    assert event.request_id == "chatcmpl-1"
    assert event.ts == T0 and event.latency_ms == 1500.0
    assert (event.route, event.team, event.provider) == ("support.answer", "payments", "openai")
    assert (event.model, event.served_model) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert (event.input_tokens, event.output_tokens, event.cached_input_tokens, event.cache_write_tokens,
            event.reasoning_tokens) == (1200, 300, 200, 100, 50)  # fmt: skip
    assert event.ttft_ms == 250.0 and event.finish_reason == "stop"
    assert (event.attempt, event.http_status, event.status) == (3, 200, "ok")
    assert (event.prompt_version, event.experiment) == ("v7", "control")


def test_both_encodings_give_the_same_items() -> None:
    spans = Spans().add(SpanSpec("chat", T0, T0 + 900, CHAT, events=[
        ("gen_ai.evaluation.result", T0 + 800, {"gen_ai.evaluation.name": "judge", "gen_ai.evaluation.score.value": 0.7})]))
    spans.add(SpanSpec("GET /", T0, T0 + 10, {"http.request.method": "GET"}))
    finished = spans.finished()
    from tests.otlp_sdk import encode_spans

    proto = split_traces(encode_spans(finished, "otlp_proto"), MAPPING)
    json_ = split_traces(encode_spans(finished, "otlp_json"), MAPPING)
    assert sniff(encode_spans(finished, "otlp_json")) == "otlp_json"
    assert proto.items == json_.items and len(proto.items) == 2
    assert proto.skipped == json_.skipped == {"not_genai": 1}


def test_a_span_without_a_response_id_is_identified_by_trace_and_span() -> None:
    attributes = {k: v for k, v in CHAT.items() if k != "gen_ai.response.id"}
    spans = Spans().add(SpanSpec("chat", T0, T0 + 5, attributes))
    finished = spans.finished()
    from tests.otlp_sdk import encode_spans

    trace_id, span_id = ids_of(finished[0])
    (request,) = requests_of(split_traces(encode_spans(finished, "otlp_json"), MAPPING))
    assert request["request_id"] == f"{trace_id}-{span_id}"


def test_route_falls_back_to_service_and_operation_and_can_come_from_the_resource() -> None:
    attributes = {k: v for k, v in CHAT.items() if k != "llm.route"}
    assert one_request(attributes, resource={"service.name": "checkout"})["route"] == "checkout.chat"
    assert one_request(attributes, resource={"service.name": "x", "llm.route": "search.rank"})["route"] == "search.rank"
    agent = {**attributes, "gen_ai.agent.name": "refund-agent"}
    assert one_request(agent)["route"] == "refund-agent"
    assert one_request({**agent, "llm.route": "a.b"})["route"] == "a.b"  # the span's own first


def test_the_route_attributes_are_configurable() -> None:
    mapping = SpanMapping(route=("app.feature",))
    spans = Spans().add(SpanSpec("chat", T0, T0 + 5, {**CHAT, "app.feature": "faq"}))
    (request,) = requests_of(split_traces(spans.encode("otlp_proto"), mapping))
    assert request["route"] == "faq"


@pytest.mark.parametrize("fact", [f for f in FACTS if f.field not in ("operation", "request_id", "tool_name", "agent_name")],
                         ids=lambda f: f.field)  # fmt: skip
def test_every_dialect_name_of_a_fact_is_read(fact: Any) -> None:
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 400, "llm.route": "r"}  # fmt: skip
    values = {"provider": "anthropic", "model": "claude-x", "response_model": "claude-x-1", "input_tokens": 900,
              "output_tokens": 300, "total_tokens": 1600, "cached_input_tokens": 11, "cache_write_tokens": 12,
              "reasoning_tokens": 13, "finish_reason": "length", "ttft_ms": 0.5, "error_type": "RateLimitError",
              "http_status": 429, "attempt": 1}  # fmt: skip
    for name in fact.names:
        attributes = {k: v for k, v in base.items() if not (fact.field == "model" and k == "gen_ai.request.model")}
        if fact.field in ("input_tokens", "output_tokens", "total_tokens"):
            attributes.pop("gen_ai.usage.input_tokens" if fact.field == "input_tokens" else "gen_ai.usage.output_tokens")
        value = values[fact.field]
        if fact.field == "finish_reason" and name.attribute == "gen_ai.response.finish_reasons":
            value = ["length"]
        attributes[name.attribute] = value
        spec: dict[str, Any] = {}
        if name.attribute == "exception.type":  # read from the exception event of an error span
            attributes.pop(name.attribute)
            spec = {"events": [("exception", T0 + 1, {"exception.type": "RateLimitError"})], "error": True}
        request = one_request(attributes, **spec)
        event = decode_request(orjson.dumps(request))
        expected = {"ttft_ms": 500.0, "attempt": 2, "finish_reason": "length", "total_tokens": 600}.get(fact.field, values[fact.field])
        got = event.output_tokens if fact.field == "total_tokens" else getattr(event, fact.field)
        assert got == expected, f"{name.attribute} ({name.dialect})"


def test_openinference_and_openllmetry_spans_are_genai_spans() -> None:
    inference = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
                 "llm.token_count.prompt": 10, "llm.token_count.completion": 5, "llm.route": "r"}  # fmt: skip
    assert one_request(inference)["tags"] == {"operation": "chat"}
    llmetry = {"llm.request.type": "embedding", "gen_ai.request.model": "text-embedding-3-small",
               "gen_ai.usage.prompt_tokens": 8, "llm.route": "r"}  # fmt: skip
    request = one_request(llmetry)
    assert request["tags"] == {"operation": "embeddings"} and request["output_tokens"] == 0
    chain = Spans().add(SpanSpec("chain", T0, T0 + 1, {"openinference.span.kind": "CHAIN"}))
    assert split_traces(chain.encode("otlp_proto"), MAPPING).skipped == {"not_genai": 1}


def test_first_token_stream_event_gives_ttft() -> None:
    attributes = {k: v for k, v in CHAT.items() if k != "gen_ai.response.time_to_first_chunk"}
    request = one_request(attributes, events=[("First Token Stream Event", T0 + 320, {})])
    assert request["ttft_ms"] == 320.0


def test_operations_outside_the_setting_are_skipped_and_counted() -> None:
    spans = Spans()
    spans.add(SpanSpec("tool", T0, T0 + 3, {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}))
    spans.add(SpanSpec("agent", T0, T0 + 3, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}))
    raw = spans.encode("otlp_proto")
    default = split_traces(raw, MAPPING)
    assert default.items == [] and default.skipped == {"operation_not_mapped": 2}
    wider = split_traces(raw, SpanMapping(operations=frozenset({"execute_tool", "invoke_agent"})))
    models = [decode_request(orjson.dumps(r)).model for r in requests_of(wider)]
    assert models == ["search", "a"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_error_span_is_an_error_request_even_without_usage(encoding: str) -> None:
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5-typo", "llm.route": "r",
                  "error.type": "model_not_found", "http.response.status_code": 404}  # fmt: skip
    event = decode_request(orjson.dumps(one_request(attributes, encoding, error=True)))
    assert (event.status, event.error_type, event.http_status, event.input_tokens) == ("error", "model_not_found", 404, 0)
    no_type = {k: v for k, v in attributes.items() if k != "error.type"}
    event = decode_request(orjson.dumps(one_request(no_type, encoding, error=True)))
    assert (event.status, event.error_type) == ("error", "unknown")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_evaluations_become_verdicts_from_span_events_and_log_records(encoding: str) -> None:
    spans = Spans()
    spans.add(SpanSpec("chat", T0, T0 + 900, {k: v for k, v in CHAT.items() if k != "gen_ai.response.id"}, events=[
        ("gen_ai.evaluation.result", T0 + 950, {"gen_ai.evaluation.name": "groundedness",
                                                "gen_ai.evaluation.score.label": "fail", "llm.evaluation.kind": "gold-context"}),
    ]))  # fmt: skip
    finished = spans.finished()
    from tests.otlp_sdk import encode_spans

    split = split_traces(encode_spans(finished, encoding), MAPPING)  # type: ignore[arg-type]
    (request,), (from_event,) = requests_of(split), verdicts_of(split)
    verdict = decode_verdict(orjson.dumps(from_event))
    assert verdict.request_id == request["request_id"]
    assert (verdict.evaluator, verdict.passed, verdict.kind, verdict.ts) == ("groundedness", False, "gold_context", T0 + 950)

    ctx = finished[0].get_span_context()
    logs = evaluation_logs([
        (T0 + 60_000, {"gen_ai.evaluation.name": "judge", "gen_ai.evaluation.score.value": 0.9}, (ctx.trace_id, ctx.span_id)),
        (T0 + 61_000, {"gen_ai.evaluation.name": "human", "gen_ai.evaluation.score.value": 0.2,
                       "gen_ai.response.id": "chatcmpl-9", "llm.evaluation.kind": "human"}, None),
        (T0 + 62_000, {"gen_ai.evaluation.name": "closed-book", "gen_ai.evaluation.score.label": "pass",
                       "llm.evaluation.kind": "closed_book", "gen_ai.response.id": "chatcmpl-9"}, None),
    ], encoding)  # type: ignore[arg-type]  # fmt: skip
    verdicts = [decode_verdict(orjson.dumps(v)) for v in verdicts_of(split_logs(logs, MAPPING))]
    assert [(v.request_id, v.evaluator, v.passed, v.kind) for v in verdicts] == [
        (request["request_id"], "judge", True, "online"),
        ("chatcmpl-9", "human", False, "human"),
        ("chatcmpl-9", "closed-book", True, "closed_book"),
    ]


def test_log_records_that_are_not_evaluations_are_skipped_and_counted() -> None:
    from opentelemetry._logs import LogRecord
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("x").emit(LogRecord(timestamp=T0 * 1_000_000, body="hello", attributes={"a": 1}))
    provider.shutdown()
    split = split_logs(bytes(encode_logs(exporter.get_finished_logs()).SerializeToString()), MAPPING)
    assert split.items == [] and split.skipped == {"not_evaluation": 1}


# --- hostile OTLP --------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"\x0a\x80\x80\x80\x80\x10", b"\x0a\x05\x0a\x03\x0a", b"{not json", b"[1,2]", b"\xff" * 64])
def test_an_unreadable_message_is_one_dead_letter_with_its_bytes(raw: bytes) -> None:
    split = split_traces(raw, MAPPING)
    (item,) = split.items
    assert item.item == 0 and item.value == raw and item.refusal is not None
    assert item.refusal.reason == "otlp_invalid" and "otlp_invalid" in REASONS


def test_a_truncated_export_request_is_refused_whole() -> None:
    raw = Spans().add(SpanSpec("chat", T0, T0 + 1, CHAT)).encode("otlp_proto")
    (item,) = split_traces(raw[: len(raw) // 2], MAPPING).items
    assert item.refusal is not None and item.refusal.reason == "otlp_invalid"


def test_empty_and_oversized_messages() -> None:
    assert split_traces(None, MAPPING).items[0].refusal.reason == "empty_message"  # type: ignore[union-attr]
    raw = Spans().add(SpanSpec("chat", T0, T0 + 1, CHAT)).encode("otlp_proto")
    assert split_traces(raw, MAPPING, max_bytes=len(raw) - 1).items[0].refusal.reason == "oversized"  # type: ignore[union-attr]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_one_bad_span_is_its_own_dead_letter_and_the_others_pass(encoding: str) -> None:
    spans = Spans()
    for i in range(5):
        attributes = {**CHAT, "gen_ai.response.id": f"r{i}"}
        if i == 1:
            attributes["gen_ai.usage.input_tokens"] = "many"  # wrong type
        if i == 3:
            attributes["llm.route"] = "x" * 300_000  # huge attribute value
        spans.add(SpanSpec("chat", T0, T0 + 10, attributes))
    split = split_traces(spans.encode(encoding), MAPPING, max_bytes=10_000_000)  # type: ignore[arg-type]
    raws = [RawMessage("otlp_spans", 0, 7, None, i.value, 0, i.item, i.refusal) for i in split.items]
    decoded = decode_requests(raws, PriceBook(), max_bytes=1_000_000, now_ms=T0)
    assert sorted(r.event.request_id for r in decoded.requests) == ["r0", "r2", "r4"]
    assert [(d.item, d.reason) for d in decoded.dead] == [(2, "schema_violation"), (4, "too_long")]
    assert len({d.coordinates for d in decoded.dead}) == 2  # one identity each, not one per message


def test_non_finite_numbers_and_huge_integers_are_refused_per_span() -> None:
    raw = Spans().add(SpanSpec("chat", T0, T0 + 1, {**CHAT, "gen_ai.response.time_to_first_chunk": math.nan})).encode("otlp_proto")
    (item,) = split_traces(raw, MAPPING).items
    assert item.refusal is not None and item.refusal.reason == "non_finite_number" and item.item == 1
    huge = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "ab" * 16, "spanId": "cd" * 8, "startTimeUnixNano": str(T0 * 10**6), "endTimeUnixNano": str(T0 * 10**6),
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                       {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
                       {"key": "llm.route", "value": {"stringValue": "r"}},
                       {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "9" * 20}},
                       {"key": "gen_ai.usage.output_tokens", "value": {"kvlistValue": {"values": []}}}]}]}]}]})  # fmt: skip
    (item,) = split_traces(huge, MAPPING).items
    raws = [RawMessage("otlp_spans", 0, 1, None, item.value, 0, item.item, item.refusal)]
    (dead,) = decode_requests(raws, PriceBook(), max_bytes=1_000_000, now_ms=T0).dead
    assert dead.reason == "schema_violation" and "input_tokens" in dead.detail


def test_ten_thousand_spans_in_one_message_are_ten_thousand_events() -> None:
    spans = Spans()
    for i in range(10_000):
        spans.add(SpanSpec("chat", T0 + i, T0 + i + 5, {**CHAT, "gen_ai.response.id": f"r{i}"}))
    raw = spans.encode("otlp_proto")
    split = split_traces(raw, MAPPING, max_bytes=len(raw))
    assert split.spans == 10_000 and len(split.items) == 10_000
    assert [i.item for i in split.items] == list(range(1, 10_001)) and all(i.refusal is None for i in split.items)


def test_deeply_nested_values_do_not_recurse() -> None:
    depth = 120  # x 4 JSON levels each: near orjson's own limit
    value = '{"kvlistValue":{"values":[{"key":"k","value":' * depth + '{"stringValue":"x"}' + "}]}}" * depth
    raw = ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + "ab" * 16 + '","spanId":"' + "cd" * 8 +
           '","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"gen_ai.operation.name",'
           '"value":{"stringValue":"chat"}},{"key":"deep","value":' + value + "}]}]}]}]}").encode()  # fmt: skip
    split = split_traces(raw, MAPPING)
    assert len(split.items) == 1  # mapped (and refused later by the contract), not a crash


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    for split in (split_traces(raw, MAPPING), split_logs(raw, MAPPING)):
        for item in split.items:
            assert item.refusal is not None or item.value is not None


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_export_requests_never_raise(data: st.DataObject) -> None:
    raw = bytearray(Spans().add(SpanSpec("chat", T0, T0 + 1, CHAT, events=[
        ("gen_ai.evaluation.result", T0, {"gen_ai.evaluation.name": "j", "gen_ai.evaluation.score.value": 1.0})])).encode("otlp_proto"))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    split = split_traces(bytes(raw), MAPPING)
    raws = [RawMessage("otlp_spans", 0, 1, None, i.value, 0, i.item, i.refusal) for i in split.items]
    decode_requests([r for r, i in zip(raws, split.items) if i.kind == "requests"], PriceBook(), max_bytes=10**6, now_ms=T0)
    decode_verdicts([r for r, i in zip(raws, split.items) if i.kind == "verdicts"], max_bytes=10**6, now_ms=T0)


# --- the path to the join stage ------------------------------------------------------------


def test_a_bundle_carries_items_and_refusals() -> None:
    forwards = [
        Forward(1, "otlp_spans", 2, 30, 5, None, b'{"a":1}', 4),
        Forward(1, "otlp_spans", 2, 31, 5, b"k", b"\x0a\x01", 0, BadInput("otlp_invalid", "corrupt \u00e9")),
    ]
    got = bundle.decode(bundle.encode(forwards), 1)
    assert [(m.topic, m.partition, m.offset, m.item, m.key, m.value) for m in got] == [
        ("otlp_spans", 2, 30, 4, None, b'{"a":1}'), ("otlp_spans", 2, 31, 0, b"k", b"\x0a\x01")]
    assert got[0].refusal is None and got[1].refusal is not None
    assert (got[1].refusal.reason, got[1].refusal.detail) == ("otlp_invalid", "corrupt \u00e9")


def test_bundles_of_the_previous_version_are_still_read() -> None:
    import struct

    v1 = b"LTB1" + struct.pack(">HiqqII", 8, 3, 44, 0, 0, 3) + b"requests" + b"{}"
    (m,) = bundle.decode(v1, 0)
    assert (m.topic, m.partition, m.offset, m.value, m.item, m.refusal) == ("requests", 3, 44, b"{}", 0, None)


def test_a_refused_item_is_a_dead_letter_naming_its_item() -> None:
    m = RawMessage("otlp_logs", 1, 9, None, b"{}", 0, 3, BadInput("non_finite_number", "score: not a finite number"))
    (dead,) = decode_verdicts([m], max_bytes=1000, now_ms=T0).dead
    assert dead.coordinates == ("otlp_logs", 1, 9, 3) and dead.reason == "non_finite_number"
    assert ("dlq.source.item", b"3") in dead.headers()
    whole = RawMessage("otlp_logs", 1, 10, None, b"x", 0, 0, BadInput("otlp_invalid", "bad"))
    (dead,) = decode_verdicts([whole], max_bytes=1000, now_ms=T0).dead
    assert all(k != "dlq.source.item" for k, _ in dead.headers())


def test_dialect_table_has_no_duplicate_attribute_per_fact() -> None:
    for fact in FACTS:
        names = [n.attribute for n in fact.names]
        assert len(names) == len(set(names)), fact.field
    assert BY_FIELD["input_tokens"].names[0].attribute == "gen_ai.usage.input_tokens"


def test_an_otlp_json_envelope_on_the_requests_topic_is_read_as_otlp() -> None:
    """The defect reported: an OTLP ``resourceSpans`` envelope published to the requests topic
    was one schema_violation; it is read as the spans it carries."""
    from types import SimpleNamespace

    from telemetry.ingest.inputs import InputRouter, otlp_envelope
    from telemetry.settings import load_settings

    settings = load_settings(topic_prefix="u.")
    spans = Spans().add(SpanSpec("chat", T0, T0 + 40, CHAT, events=[
        ("gen_ai.evaluation.result", T0 + 50, {"gen_ai.evaluation.name": "judge", "gen_ai.evaluation.score.value": 1.0})]))
    envelope = spans.encode("otlp_json")
    assert otlp_envelope(envelope) == "traces" and otlp_envelope(orjson.dumps({"request_id": "x"})) is None
    logs = evaluation_logs([(T0, {"gen_ai.evaluation.name": "h", "gen_ai.evaluation.score.value": 0.0,
                                  "gen_ai.response.id": "chatcmpl-1"}, None)], "otlp_json")  # fmt: skip
    router = InputRouter(settings, shards=3)
    records = [SimpleNamespace(topic="u.requests", partition=0, offset=5, timestamp=0, key=None, value=envelope),
               SimpleNamespace(topic="u.verdicts", partition=1, offset=6, timestamp=0, key=None, value=logs)]  # fmt: skip
    routed = router.route(records)
    assert [(k, f.topic, f.item, f.refusal) for k, f in routed] == [
        ("requests", "u.requests", 1, None), ("verdicts", "u.requests", 2, None), ("verdicts", "u.verdicts", 1, None)]
    event = decode_request(routed[0][1].value)
    assert (event.request_id, event.latency_ms) == ("chatcmpl-1", 40.0)
    assert len({f.shard for _, f in routed}) == 1  # all three are about chatcmpl-1: one shard
    assert router.counters["otlp.messages"] == 2


def test_the_repartition_stage_weighs_an_otlp_message_by_its_spans() -> None:
    """An OTLP backlog once filled one batch with 10,000 messages (~10^5 spans) and held the event
    loop for seconds: heartbeats expired and shards moved. A message now weighs ~one per span."""
    from types import SimpleNamespace

    from telemetry.retry import RetryPolicy
    from telemetry.settings import load_settings
    from telemetry.worker.repartition import Repartitioner

    stage = Repartitioner(load_settings(topic_prefix="w."), RetryPolicy(is_transient=lambda e: False), shards=4)
    spans = Spans()
    for i in range(256):
        spans.add(SpanSpec("chat", T0 + i, T0 + i + 5, {**CHAT, "gen_ai.response.id": f"w{i}"}))
    message = spans.encode("otlp_proto")
    otlp = SimpleNamespace(topic="otlp_spans", value=message)
    assert 100 <= stage._weight(otlp) <= 1000
    assert stage._weight(SimpleNamespace(topic="w.requests", value=orjson.dumps({"request_id": "x"}))) == 1
    assert stage._weight(SimpleNamespace(topic="w.requests", value=spans.encode("otlp_json"))) > 100  # an envelope
