"""GenAI spans to request events, ``gen_ai.evaluation.result`` events to verdicts. Pure.

The output is a dict in our own contract's field names (``telemetry.contracts``): the worker
validates and prices it exactly as it does a JSON event, so an OTLP request and a JSON request
with the same facts are the same row. Values are passed on as the span gives them (a token count
sent as a string is refused by the contract with its reason), except that an integral double is
read as an integer (some SDKs send every number as a double).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telemetry.contracts.otel import FAIL_LABELS, PASS_LABELS
from telemetry.errors import BadInput
from telemetry.otlp.dialects import (
    BY_FIELD,
    EVALUATION,
    FIRST_TOKEN_EVENT,
    MODEL_CALLS,
    OPERATION_VALUES,
)
from telemetry.otlp.wire import STATUS_ERROR, LogRecord, Span

EVALUATION_EVENT = "gen_ai.evaluation.result"
VERDICT_KINDS = frozenset({"online", "human", "user_feedback", "closed_book", "gold_context", "offline"})
_INT_FIELDS = frozenset({"input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                         "reasoning_tokens", "total_tokens", "http_status", "attempt"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class SpanMapping:
    """Where the product's own labels come from (settings ``TELEMETRY_OTLP_*``): each list is
    tried in order, span attributes first, then resource attributes."""

    route: tuple[str, ...] = ("llm.route", "gen_ai.agent.name")
    team: tuple[str, ...] = ("llm.team", "team")
    prompt_version: tuple[str, ...] = ("llm.prompt.version", "llm.prompt_template.version", "traceloop.prompt.version")
    experiment: tuple[str, ...] = ("llm.experiment",)
    evaluation_kind: tuple[str, ...] = ("llm.evaluation.kind", "gen_ai.evaluation.kind")
    operations: frozenset[str] = frozenset({"chat", "text_completion", "generate_content", "embeddings"})


def span_ref(trace_id: str, span_id: str) -> str:
    """The request id of a span without ``gen_ai.response.id`` (and of an evaluation log record
    attached to it by span context)."""
    return f"{trace_id}-{span_id}"


def _finite(field: str, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInput("non_finite_number", f"{field}: not a finite number")
    return value


def _fact(field: str, attributes: Mapping[str, Any]) -> Any:
    """The first attribute of ``field``'s fact present in ``attributes`` (scaled), else None."""
    for name in BY_FIELD[field].names:
        value = attributes.get(name.attribute)
        if value is None:
            continue
        if isinstance(value, float):
            _finite(field, value)
            if field in _INT_FIELDS and value.is_integer() and abs(value) < 2**53:
                value = int(value)
        if name.scale != 1.0 and isinstance(value, int | float) and not isinstance(value, bool):
            value = value * name.scale
        return value
    return None


def _label(names: Sequence[str], span: Mapping[str, Any], resource: Mapping[str, Any]) -> Any:
    for attributes in (span, resource):
        for name in names:
            value = attributes.get(name)
            if value is not None and value != "":
                return value
    return None


def operation_of(attributes: Mapping[str, Any]) -> str | None:
    """The GenAI operation of a span, in OTel GenAI names; None: not a GenAI span."""
    for name in BY_FIELD["operation"].names:
        value = attributes.get(name.attribute)
        if not isinstance(value, str) or not value:
            continue
        if name.attribute == "gen_ai.operation.name":
            return value
        mapped = OPERATION_VALUES[name.attribute].get(value)
        if mapped is not None:
            return mapped
    return None


def _first(value: Any) -> Any:
    if isinstance(value, tuple):
        return value[0] if value else None
    return value


def request_of(span: Span, operation: str, mapping: SpanMapping) -> dict[str, Any]:
    """The request event (contract field names) of a GenAI span. Raises BadInput for a value
    no contract field can hold (a non-finite number)."""
    a = span.attributes
    rid = a.get("gen_ai.response.id")
    event: dict[str, Any] = {
        "request_id": rid if isinstance(rid, str) and rid else span_ref(span.trace_id, span.span_id),
        "ts": span.start_ns // 1_000_000,
        "latency_ms": (span.end_ns - span.start_ns) / 1e6,
        "otel_span": f"{span.trace_id}/{span.span_id}",
    }
    route = _label(mapping.route, a, span.resource)
    if route is None:
        service = span.resource.get("service.name")
        route = f"{service if isinstance(service, str) and service else 'unknown_service'}.{operation}"
    event["route"] = route
    for field, names in (("team", mapping.team), ("prompt_version", mapping.prompt_version),
                         ("experiment", mapping.experiment)):  # fmt: skip
        value = _label(names, a, span.resource)
        if value is not None:
            event[field] = value

    model, served = _fact("model", a), _fact("response_model", a)
    if model is None:
        model = served
    if model is None and operation == "execute_tool":
        model = _fact("tool_name", a)
    if model is None and operation in ("invoke_agent", "create_agent"):
        model = _fact("agent_name", a)
    if model is not None:
        event["model"] = model
    if served is not None and served != model:
        event["response_model"] = served
    for field in ("provider", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "ttft_ms", "http_status"):
        value = _fact(field, a)
        if value is not None:
            event[field] = value

    if "ttft_ms" not in event:
        first = next((e.time_ns for e in span.events if e.name == FIRST_TOKEN_EVENT), None)
        if first is not None:
            event["ttft_ms"] = (first - span.start_ns) / 1e6
    inputs, outputs, total = _fact("input_tokens", a), _fact("output_tokens", a), _fact("total_tokens", a)
    if outputs is None and isinstance(total, int) and isinstance(inputs, int) and total >= inputs:
        outputs = total - inputs
    failed = span.status_code == STATUS_ERROR or a.get("error.type") is not None
    if operation not in MODEL_CALLS or failed:  # tools, agents and failed calls: usage is optional
        inputs = 0 if inputs is None else inputs
        outputs = 0 if outputs is None else outputs
    elif operation == "embeddings" and outputs is None:
        outputs = 0
    if inputs is not None:
        event["input_tokens"] = inputs
    if outputs is not None:
        event["output_tokens"] = outputs

    finish = _first(_fact("finish_reason", a))
    if finish is not None:
        event["finish_reason"] = finish
    resends = _fact("attempt", a)
    if isinstance(resends, int) and not isinstance(resends, bool):
        event["attempt"] = resends + 1
    error_type = a.get("error.type")
    if failed:
        event["status"] = "error"
        if error_type is None:
            error_type = next((e.attributes.get("exception.type") for e in span.events if e.name == "exception"), None)
        if error_type is not None:
            event["error_type"] = error_type
    else:
        event["status"] = "ok"
    event["tags"] = {"operation": operation}
    return event


def _verdict(attributes: Mapping[str, Any], resource: Mapping[str, Any], request_id: str, time_ns: int,
             mapping: SpanMapping, ref: str) -> dict[str, Any]:  # fmt: skip
    verdict: dict[str, Any] = {"request_id": request_id, "ts": time_ns // 1_000_000, "otel_span": ref}
    for field, attribute in EVALUATION:
        value = attributes.get(attribute)
        if value is not None:
            verdict[field] = _finite(attribute, value)
    if not verdict["request_id"]:
        del verdict["request_id"]
    kind = _label(mapping.evaluation_kind, attributes, resource)
    if isinstance(kind, str):
        kind = kind.strip().lower().replace("-", "_")
        verdict["kind"] = kind
    elif kind is not None:
        verdict["kind"] = kind
    label = verdict.get("label")
    if isinstance(label, str):
        text = label.strip().lower()
        if text in PASS_LABELS:
            verdict["passed"] = True
        elif text in FAIL_LABELS:
            verdict["passed"] = False
    return verdict


def span_verdicts(span: Span, request_id: str, mapping: SpanMapping) -> list[dict[str, Any]]:
    """The verdicts of the span's ``gen_ai.evaluation.result`` events (joined to the event's
    ``gen_ai.response.id``, else to ``request_id``, the span's own)."""
    ref = f"{span.trace_id}/{span.span_id}"
    out = []
    for e in span.events:
        if e.name == EVALUATION_EVENT:
            rid = e.attributes.get("gen_ai.response.id")
            joined = rid if isinstance(rid, str) and rid else request_id
            out.append(_verdict(e.attributes, span.resource, joined, e.time_ns, mapping, ref))
    return out


def is_evaluation(record: LogRecord) -> bool:
    return record.event_name == EVALUATION_EVENT


def log_verdict(record: LogRecord, mapping: SpanMapping) -> dict[str, Any]:
    """The verdict of a ``gen_ai.evaluation.result`` log record: joined to its
    ``gen_ai.response.id``, else to the span it is attached to (``<trace_id>-<span_id>``)."""
    rid = record.attributes.get("gen_ai.response.id")
    if not (isinstance(rid, str) and rid):
        rid = span_ref(record.trace_id, record.span_id) if record.trace_id and record.span_id else ""
    ref = f"{record.trace_id}/{record.span_id}" if record.trace_id else ""
    return _verdict(record.attributes, record.resource, rid, record.time_ns, mapping, ref)
