"""The bench's fast OTLP generator (bench/otlp.py) against the OpenTelemetry SDK's own encoders.

The throughput bench builds its spans and log records without the SDK (too slow for a million
spans); these tests check on a sample of the same traffic that its messages give exactly the same
split items as the SDK's encoders of the same spans, in both encodings, and that the items carry
the facts of the JSON events they stand for.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from bench.otlp import (
    ENCODINGS,
    EVALUATOR_RESOURCE,
    GATEWAY_RESOURCE,
    EvalFacts,
    SpanFacts,
    encode_logs,
    encode_otlp_chunk,
    encode_traces,
    eval_of,
    messages_of,
    span_of,
)
from bench.traffic import ROUTES, TrafficMix, request_body, verdict_body
from telemetry.contracts.decode import decode_request, decode_verdict
from telemetry.otlp.genai import SpanMapping
from telemetry.otlp.split import Split, split_logs, split_traces
from tests.otlp_sdk import encode_spans, evaluation_logs

T0 = 1_780_000_000_000
MAPPING = SpanMapping()


class _FixedIds(IdGenerator):
    """Hands the SDK the ids the bench derived, in order."""

    def __init__(self, spans: Sequence[SpanFacts]) -> None:
        self.traces = [int.from_bytes(s.trace_id, "big") for s in reversed(spans)]
        self.spans = [int.from_bytes(s.span_id, "big") for s in reversed(spans)]

    def generate_trace_id(self) -> int:
        return self.traces.pop()

    def generate_span_id(self) -> int:
        return self.spans.pop()


def sdk_traces(spans: Sequence[SpanFacts], encoding: str) -> bytes:
    """The same spans made through the SDK tracer and encoded by the SDK's OTLP encoders."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(GATEWAY_RESOURCE), id_generator=_FixedIds(spans))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.genai", "0.66b2")
    for s in spans:
        span = tracer.start_span(s.name, kind=SpanKind.CLIENT, attributes=s.attributes, start_time=s.start_ns)
        if s.error is not None:
            span.set_status(Status(StatusCode.ERROR, s.error))
        span.end(end_time=s.end_ns)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans(), encoding)  # type: ignore[arg-type]


def sdk_logs(records: Sequence[EvalFacts], encoding: str) -> bytes:
    rows = []
    for r in records:
        assert r.time_ns % 1_000_000 == 0
        link = (int.from_bytes(r.trace_id, "big"), int.from_bytes(r.span_id, "big"))
        rows.append((r.time_ns // 1_000_000, r.attributes, link))
    return evaluation_logs(rows, encoding, EVALUATOR_RESOURCE)  # type: ignore[arg-type]


def sample_bodies(n: int = 1000) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Requests and verdicts of the throughput mix, plus every kind of failed call."""
    mix = TrafficMix(n, start_ms=T0, end_ms=T0 + 3_600_000, verdict_sample=0.3, seed=11)
    batch = mix.chunk(0, n)
    requests = [orjson.loads(v) for _, v in batch.requests]
    verdicts = [orjson.loads(v) for _, v in batch.verdicts]
    rng = random.Random(3)
    for i, error in enumerate([("rate_limited", 429), ("server_error", 503), ("timeout", None)]):
        body = request_body(rng, ROUTES[i], f"req_err{i}", T0 + i, error=error)
        requests.append(body)
        verdicts.append(verdict_body(rng, ROUTES[i], body["request_id"], T0 + 60_000))
    return requests, verdicts


def items(split: Split) -> list[tuple[Any, ...]]:
    assert not split.skipped
    return [(i.kind, i.item, i.routing_id, i.value, i.refusal) for i in split.items]


def test_the_sample_has_every_shape() -> None:
    requests, verdicts = sample_bodies()
    assert any(b["status"] == "error" and "http_status" not in b for b in requests)
    assert any(b["status"] == "error" and "http_status" in b for b in requests)
    assert any("ttft_ms" in b for b in requests) and any("ttft_ms" not in b for b in requests)
    assert any(b.get("finish_reason") == "length" for b in requests)
    assert any(b.get("cached_input_tokens") for b in requests)
    assert {v["passed"] for v in verdicts} == {True, False}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_spans_split_exactly_as_the_sdks(encoding: str) -> None:
    requests, _ = sample_bodies()
    spans = [span_of(b) for b in requests]
    for lo in range(0, len(spans), 100):  # 100 spans per message, as in the bench
        group = spans[lo : lo + 100]
        ours = split_traces(encode_traces(group, encoding), MAPPING, encoding=encoding)  # type: ignore[arg-type]
        theirs = split_traces(sdk_traces(group, encoding), MAPPING, encoding=encoding)  # type: ignore[arg-type]
        assert ours.spans == theirs.spans == len(group)
        assert items(ours) == items(theirs)
        assert all(i.refusal is None for i in ours.items)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_log_records_split_exactly_as_the_sdks(encoding: str) -> None:
    _, verdicts = sample_bodies()
    records = [eval_of(v) for v in verdicts]
    ours = split_logs(encode_logs(records, encoding), MAPPING, encoding=encoding)  # type: ignore[arg-type]
    theirs = split_logs(sdk_logs(records, encoding), MAPPING, encoding=encoding)  # type: ignore[arg-type]
    assert ours.log_records == theirs.log_records == len(records)
    assert items(ours) == items(theirs)


def test_both_encodings_and_auto_detection_give_the_same_items() -> None:
    requests, verdicts = sample_bodies(150)
    spans, records = [span_of(b) for b in requests], [eval_of(v) for v in verdicts]
    proto, js = encode_traces(spans, "otlp_proto"), encode_traces(spans, "otlp_json")
    assert items(split_traces(proto, MAPPING)) == items(split_traces(js, MAPPING))
    assert items(split_logs(encode_logs(records, "otlp_proto"), MAPPING)) == items(
        split_logs(encode_logs(records, "otlp_json"), MAPPING))  # fmt: skip


def test_the_items_carry_the_json_events_facts() -> None:
    """What the join stage decodes from a span is the JSON request it stands for (the facts OTLP carries)."""
    requests, verdicts = sample_bodies()
    split = split_traces(encode_traces([span_of(b) for b in requests], "otlp_proto"), MAPPING)
    assert len(split.items) == len(requests)
    for body, item in zip(requests, split.items, strict=True):
        assert item.kind == "requests" and item.routing_id == body["request_id"] and item.value is not None
        got, want = decode_request(item.value), decode_request(orjson.dumps(body))
        for name in ("request_id", "ts", "route", "team", "provider", "model", "served_model", "input_tokens",
                     "output_tokens", "cached_input_tokens", "status", "error_type", "http_status", "finish_reason",
                     "attempt", "prompt_version"):  # fmt: skip
            assert getattr(got, name) == getattr(want, name), (name, body)
        assert got.latency_ms == pytest.approx(want.latency_ms, abs=1e-6)
        assert (got.ttft_ms is None) == (want.ttft_ms is None)
        if want.ttft_ms is not None:
            assert got.ttft_ms == pytest.approx(want.ttft_ms, abs=1e-6)
    vsplit = split_logs(encode_logs([eval_of(v) for v in verdicts], "otlp_proto"), MAPPING)
    for body, item in zip(verdicts, vsplit.items, strict=True):
        assert item.kind == "verdicts" and item.routing_id == body["request_id"] and item.value is not None
        got, want = decode_verdict(item.value), decode_verdict(orjson.dumps(body))
        for name in ("request_id", "ts", "evaluator", "kind", "passed", "score"):
            assert getattr(got, name) == getattr(want, name), (name, body)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_chunk_is_the_json_chunk_in_messages_of_per_message(encoding: str) -> None:
    mix = TrafficMix(1000, start_ms=T0, end_ms=T0 + 3_600_000, verdict_sample=0.2, seed=5)
    json_chunk = mix.chunk(0, 1000)
    chunk = encode_otlp_chunk(mix, 0, 1000, encoding, 256)  # type: ignore[arg-type]
    assert (chunk.n_requests, chunk.n_verdicts) == (len(json_chunk.requests), len(json_chunk.verdicts))
    assert len(chunk.requests) == 4 and len(chunk.verdicts) == -(-chunk.n_verdicts // 256)
    assert all(key is None and len(value) < 1_000_000 for key, value in chunk.requests + chunk.verdicts)
    ids = [i.routing_id for _, v in chunk.requests for i in split_traces(v, MAPPING).items]
    assert ids == [k.decode() for k, _ in json_chunk.requests]
    vids = [i.routing_id for _, v in chunk.verdicts for i in split_logs(v, MAPPING).items]
    assert vids == [k.decode() for k, _ in json_chunk.verdicts]
    again = messages_of([orjson.loads(v) for _, v in json_chunk.requests],
                        [orjson.loads(v) for _, v in json_chunk.verdicts], encoding, 256)  # type: ignore[arg-type]
    assert again.requests == chunk.requests and again.verdicts == chunk.verdicts
