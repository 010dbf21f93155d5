"""The throughput traffic as OpenTelemetry OTLP, the way the Collector's Kafka exporter writes it. Pure.

The same requests and verdicts as :mod:`bench.traffic` (same mix, seed and chunks), each request
a GenAI ``chat`` client span with the OTel GenAI attribute names, each verdict a
``gen_ai.evaluation.result`` log record; ``per_message`` spans (log records) per
``ExportTraceServiceRequest`` (``ExportLogsServiceRequest``), like the Collector's batch
processor (deploy/otel-collector.yaml: ``send_batch_size`` 256), unkeyed, in ``otlp_proto``
(protobuf) or ``otlp_json`` (the OTLP/JSON mapping: hex ids, 64-bit integers as strings).

The messages are built straight from ``opentelemetry.proto`` classes (protobuf) or as plain
dicts (OTLP/JSON), not through the SDK's tracer and encoders: those cost ~100 µs per span, too
slow for a million spans. tests/unit/test_bench_otlp.py checks on a sample that these messages
give exactly the same split items (``telemetry.otlp.split``) as the SDK's own encoders of the
same spans, in both encodings.

What a span carries, from a JSON request body (docs/otel.md has the mapping back):

- ``gen_ai.operation.name`` ``chat``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model`` (successful calls), ``gen_ai.response.id`` = the request id (a
  gateway's id for every call, failed ones too, so that the verdicts join as in JSON),
  ``gen_ai.usage.input_tokens`` / ``output_tokens`` / ``cache_read.input_tokens``,
  ``gen_ai.response.finish_reasons``, ``gen_ai.response.time_to_first_chunk`` (seconds),
  ``http.response.status_code``, ``http.request.resend_count`` (attempt - 1), ``error.type``
  and an ERROR status for failed calls;
- ``llm.route``, ``llm.team``, ``llm.prompt.version`` (the product's labels);
- attributes an instrumentation sends that the product does not read: ``gen_ai.request.max_tokens``,
  ``gen_ai.request.temperature``, ``server.address``, ``server.port``;
- start = the request's ``ts``, end = start + ``latency_ms``; trace and span ids derived from
  the request id (the verdict's log record carries the same ids and ``gen_ai.response.id``).

Not carried (no OTel attribute is mapped to them): ``system_prompt_tokens``, ``user_hash``,
``response_hash``. No prompt or completion content (instrumentations capture it only on opt-in).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from bench.traffic import TrafficMix

__all__ = [
    "ENCODINGS",
    "EVALUATOR_RESOURCE",
    "GATEWAY_RESOURCE",
    "EvalFacts",
    "OtlpBatch",
    "SpanFacts",
    "encode_logs",
    "encode_otlp_chunk",
    "encode_traces",
    "eval_of",
    "ids_of",
    "messages_of",
    "span_of",
]

Encoding = Literal["otlp_proto", "otlp_json"]
ENCODINGS: tuple[Encoding, ...] = ("otlp_proto", "otlp_json")
MS = 1_000_000
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
EVALUATION_EVENT = "gen_ai.evaluation.result"

GATEWAY_RESOURCE: dict[str, Any] = {
    "service.name": "llm-gateway",
    "service.version": "2.14.0",
    "deployment.environment.name": "production",
    "telemetry.sdk.language": "python",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.45.2",
}
"""One service (an LLM gateway) makes every call: one resource per message, like a batch of one service."""
EVALUATOR_RESOURCE: dict[str, Any] = {
    "service.name": "online-evaluator",
    "telemetry.sdk.language": "python",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.45.2",
}
SCOPE = ("opentelemetry.instrumentation.genai", "0.66b2")
EVAL_SCOPE = ("bench.evaluator", "1.0")
SERVER_ADDRESS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com",
                  "google": "generativelanguage.googleapis.com"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SpanFacts:
    """One GenAI span, as the SDK would be told it: ids, name, times, status and attributes."""

    trace_id: bytes
    span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    error: str | None  # the ERROR status' message, None: status unset
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EvalFacts:
    """One ``gen_ai.evaluation.result`` log record, attached to its request's span."""

    time_ns: int
    trace_id: bytes
    span_id: bytes
    attributes: dict[str, Any]


def ids_of(request_id: str) -> tuple[bytes, bytes]:
    """Trace id (16 bytes) and span id (8 bytes) of a request's span, derived from its id."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=24).digest()
    trace_id, span_id = digest[:16], digest[16:]
    if not any(span_id):  # all-zero ids are invalid in OTLP
        span_id = b"\x00" * 7 + b"\x01"
    return trace_id, span_id


def span_of(body: Mapping[str, Any]) -> SpanFacts:
    """The GenAI chat span of one request body of :func:`bench.traffic.request_body`."""
    rid = body["request_id"]
    provider, model = body["provider"], body["model"]
    a: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": 4096,
        "gen_ai.request.temperature": 0.2,
        "server.address": SERVER_ADDRESS.get(provider, f"api.{provider}.com"),
        "server.port": 443,
        "gen_ai.response.id": rid,
    }
    ok = body.get("status", "ok") == "ok"
    if ok:
        a["gen_ai.response.model"] = body.get("response_model", model)
        if "finish_reason" in body:
            a["gen_ai.response.finish_reasons"] = [body["finish_reason"]]
    a["gen_ai.usage.input_tokens"] = body["input_tokens"]
    a["gen_ai.usage.output_tokens"] = body["output_tokens"]
    if "cached_input_tokens" in body:
        a["gen_ai.usage.cache_read.input_tokens"] = body["cached_input_tokens"]
    if "ttft_ms" in body:
        a["gen_ai.response.time_to_first_chunk"] = body["ttft_ms"] / 1000.0
    if "http_status" in body:
        a["http.response.status_code"] = body["http_status"]
    if "attempt" in body:
        a["http.request.resend_count"] = body["attempt"] - 1
    if not ok:
        a["error.type"] = body.get("error_type", "unknown")
    a["llm.route"] = body["route"]
    a["llm.team"] = body["team"]
    if "prompt_version" in body:
        a["llm.prompt.version"] = body["prompt_version"]
    trace_id, span_id = ids_of(rid)
    start = body["ts"] * MS
    return SpanFacts(trace_id, span_id, f"chat {model}", start, start + round(body["latency_ms"] * MS),
                     None if ok else str(a["error.type"]), a)  # fmt: skip


def eval_of(verdict: Mapping[str, Any]) -> EvalFacts:
    """The ``gen_ai.evaluation.result`` log record of one verdict body of :func:`bench.traffic.verdict_body`."""
    rid = verdict["request_id"]
    trace_id, span_id = ids_of(rid)
    a = {
        "gen_ai.evaluation.name": verdict["evaluator"],
        "gen_ai.evaluation.score.value": float(verdict["score"]),
        "gen_ai.evaluation.score.label": "pass" if verdict["passed"] else "fail",
        "gen_ai.response.id": rid,
    }
    return EvalFacts(verdict["ts"] * MS, trace_id, span_id, a)


# --- protobuf ---------------------------------------------------------------------------------
# Filled in place (``add()`` and field assignment): ~4x faster than building nested messages
# with keyword arguments, which copies every submessage.


def _pb_set(value: Any, v: Any) -> None:
    """Set the ``AnyValue`` ``value`` to ``v``."""
    if isinstance(v, bool):
        value.bool_value = v
    elif isinstance(v, int):
        value.int_value = v
    elif isinstance(v, float):
        value.double_value = v
    elif isinstance(v, str):
        value.string_value = v
    elif isinstance(v, list | tuple):
        values = value.array_value.values
        if not v:
            value.array_value.SetInParent()
        for x in v:
            _pb_set(values.add(), x)
    else:
        raise TypeError(f"no OTLP attribute value for {type(v).__name__}")


def _pb_attributes(target: Any, attributes: Mapping[str, Any]) -> None:
    """Append ``attributes`` to the repeated ``KeyValue`` field ``target``."""
    for k, v in attributes.items():
        kv = target.add()
        kv.key = k
        _pb_set(kv.value, v)


def _pb_span(span: Any, s: SpanFacts) -> None:
    span.trace_id = s.trace_id
    span.span_id = s.span_id
    span.name = s.name
    span.kind = SPAN_KIND_CLIENT
    span.start_time_unix_nano = s.start_ns
    span.end_time_unix_nano = s.end_ns
    _pb_attributes(span.attributes, s.attributes)
    if s.error is not None:
        span.status.code = STATUS_ERROR
        span.status.message = s.error
    span.flags = 0x100 | 0x01  # the SDK's: sampled, parent not remote


def _pb_log(record: Any, r: EvalFacts) -> None:
    record.time_unix_nano = r.time_ns
    record.observed_time_unix_nano = r.time_ns
    record.trace_id = r.trace_id
    record.span_id = r.span_id
    record.flags = 1
    record.event_name = EVALUATION_EVENT
    _pb_attributes(record.attributes, r.attributes)


# --- OTLP/JSON --------------------------------------------------------------------------------


def _json_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, list | tuple):
        return {"arrayValue": {"values": [_json_value(x) for x in v]}}
    raise TypeError(f"no OTLP attribute value for {type(v).__name__}")


def _json_attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_value(v)} for k, v in attributes.items()]


def _json_span(s: SpanFacts) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": s.trace_id.hex(), "spanId": s.span_id.hex(), "flags": 0x101, "name": s.name,
        "kind": SPAN_KIND_CLIENT, "startTimeUnixNano": str(s.start_ns), "endTimeUnixNano": str(s.end_ns),
        "attributes": _json_attributes(s.attributes),
    }  # fmt: skip
    span["status"] = {"message": s.error, "code": STATUS_ERROR} if s.error is not None else {}
    return span


def _json_log(r: EvalFacts) -> dict[str, Any]:
    return {"timeUnixNano": str(r.time_ns), "observedTimeUnixNano": str(r.time_ns), "body": {},
            "attributes": _json_attributes(r.attributes), "flags": 1, "traceId": r.trace_id.hex(),
            "spanId": r.span_id.hex(), "eventName": EVALUATION_EVENT}  # fmt: skip


# --- messages ---------------------------------------------------------------------------------


def encode_traces(spans: Sequence[SpanFacts], encoding: Encoding,
                  resource: Mapping[str, Any] = GATEWAY_RESOURCE) -> bytes:  # fmt: skip
    """One ``ExportTraceServiceRequest`` of ``spans`` (one resource, one scope)."""
    if encoding == "otlp_proto":
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        _pb_attributes(rs.resource.attributes, resource)
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = SCOPE
        add = ss.spans.add
        for s in spans:
            _pb_span(add(), s)
        return bytes(request.SerializeToString())
    return orjson.dumps({"resourceSpans": [{
        "resource": {"attributes": _json_attributes(resource)},
        "scopeSpans": [{"scope": {"name": SCOPE[0], "version": SCOPE[1]}, "spans": [_json_span(s) for s in spans]}],
    }]})  # fmt: skip


def encode_logs(records: Sequence[EvalFacts], encoding: Encoding,
                resource: Mapping[str, Any] = EVALUATOR_RESOURCE) -> bytes:  # fmt: skip
    """One ``ExportLogsServiceRequest`` of ``records`` (one resource, one scope)."""
    if encoding == "otlp_proto":
        request = ExportLogsServiceRequest()
        rl = request.resource_logs.add()
        _pb_attributes(rl.resource.attributes, resource)
        sl = rl.scope_logs.add()
        sl.scope.name, sl.scope.version = EVAL_SCOPE
        add = sl.log_records.add
        for r in records:
            _pb_log(add(), r)
        return bytes(request.SerializeToString())
    return orjson.dumps({"resourceLogs": [{
        "resource": {"attributes": _json_attributes(resource)},
        "scopeLogs": [{"scope": {"name": EVAL_SCOPE[0], "version": EVAL_SCOPE[1]},
                       "logRecords": [_json_log(r) for r in records]}],
    }]})  # fmt: skip


def _batched(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


@dataclass(slots=True)
class OtlpBatch:
    """A chunk as OTLP messages: ``(key, value)`` pairs (keys None: the exporter's default, unkeyed),
    and how many requests (spans) and verdicts (log records) they carry."""

    requests: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    verdicts: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    n_requests: int = 0
    n_verdicts: int = 0


def messages_of(request_bodies: Sequence[Mapping[str, Any]], verdict_bodies: Sequence[Mapping[str, Any]],
                encoding: Encoding, per_message: int) -> OtlpBatch:  # fmt: skip
    """Spans of ``request_bodies`` and log records of ``verdict_bodies``, ``per_message`` per message."""
    spans = [span_of(b) for b in request_bodies]
    evals = [eval_of(v) for v in verdict_bodies]
    return OtlpBatch(
        requests=[(None, encode_traces(group, encoding)) for group in _batched(spans, per_message)],
        verdicts=[(None, encode_logs(group, encoding)) for group in _batched(evals, per_message)],
        n_requests=len(spans), n_verdicts=len(evals),
    )  # fmt: skip


def encode_otlp_chunk(mix: TrafficMix, first: int, count: int, encoding: Encoding, per_message: int) -> OtlpBatch:
    """Module-level entry for a process pool: requests ``first .. first+count-1`` of ``mix`` and
    their verdicts (exactly the JSON phase's, :meth:`TrafficMix.chunk`) as OTLP messages."""
    batch = mix.chunk(first, count)
    loads = orjson.loads
    return messages_of([loads(v) for _, v in batch.requests], [loads(v) for _, v in batch.verdicts], encoding,
                       per_message)  # fmt: skip
