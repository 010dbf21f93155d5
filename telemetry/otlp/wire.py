"""One OTLP message, protobuf or OTLP/JSON, read into plain spans and log records. Pure.

Both encodings give the same :class:`Span` / :class:`LogRecord` values: trace and span ids as
lowercase hex, times as integer nanoseconds, attribute values as Python scalars (``str``,
``int``, ``float``, ``bool``) or tuples of scalars. Values this product never reads as a fact
(nested ``kvlistValue``, ``bytesValue``, arrays of arrays) become :class:`Opaque`, so a hostile
message cannot make the reader recurse or copy large structures.

:func:`read_traces` / :func:`read_logs` raise :class:`~telemetry.errors.BadInput` for a message
that cannot be read at all (``otlp_invalid``: truncated protobuf, not OTLP/JSON); anything
readable is returned, however wrong its values, for the mapping to judge span by span.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from telemetry.errors import BadInput

Encoding = Literal["auto", "otlp_proto", "otlp_json"]
Attributes = Mapping[str, Any]

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


@dataclass(frozen=True, slots=True)
class Opaque:
    """An attribute value of a type no fact is read from (named by its OTLP type)."""

    kind: str


Value = str | int | float | bool | tuple[Any, ...] | Opaque | None


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    time_ns: int
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    attributes: Attributes
    events: tuple[Event, ...]
    resource: Attributes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LogRecord:
    time_ns: int
    event_name: str
    trace_id: str
    span_id: str
    attributes: Attributes
    resource: Attributes = field(repr=False)


def sniff(raw: bytes) -> Literal["otlp_proto", "otlp_json"]:
    """The encoding of ``raw``: OTLP/JSON starts with ``{`` (after whitespace); a protobuf export
    request starts with field 1's tag (0x0a) or is empty."""
    head = raw.lstrip()[:1]
    return "otlp_json" if head == b"{" else "otlp_proto"


def _invalid(detail: str) -> BadInput:
    return BadInput("otlp_invalid", detail)


# --- protobuf --------------------------------------------------------------------------------


def _pb_value(v: Any) -> Value:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        out: list[Any] = []
        for item in v.array_value.values:
            inner = item.WhichOneof("value")
            out.append(getattr(item, inner) if inner in _PB_SCALARS else Opaque(inner or "empty"))
        return tuple(out)
    if kind in _PB_SCALARS:
        return getattr(v, kind)  # type: ignore[no-any-return]
    return Opaque(kind)


_PB_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def _pb_attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def _parse_pb(cls: Any, raw: bytes) -> Any:
    try:
        return cls.FromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:  # upb raises DecodeError; depth: RuntimeError
        raise _invalid(f"not a protobuf {cls.__name__}: {exc}") from None


def _pb_traces(raw: bytes) -> Iterator[Span]:
    request = _parse_pb(ExportTraceServiceRequest, raw)
    for rs in request.resource_spans:
        resource = _pb_attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                events = tuple(Event(e.name, e.time_unix_nano, _pb_attributes(e.attributes)) for e in s.events)
                yield Span(s.trace_id.hex(), s.span_id.hex(), s.name, s.start_time_unix_nano, s.end_time_unix_nano,
                           s.status.code, _pb_attributes(s.attributes), events, resource)  # fmt: skip


def _pb_logs(raw: bytes) -> Iterator[LogRecord]:
    request = _parse_pb(ExportLogsServiceRequest, raw)
    for rl in request.resource_logs:
        resource = _pb_attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                attributes = _pb_attributes(r.attributes)
                yield LogRecord(r.time_unix_nano or r.observed_time_unix_nano, r.event_name or _event_name(attributes),
                                r.trace_id.hex(), r.span_id.hex(), attributes, resource)  # fmt: skip


# --- OTLP/JSON -------------------------------------------------------------------------------

_JSON_SCALARS = {"stringValue": str, "boolValue": bool, "doubleValue": float}


def _json_scalar(v: Any) -> Value:
    if not isinstance(v, dict) or not v:
        return None
    ((kind, raw),) = list(v.items())[:1]
    if kind == "stringValue":
        return raw if isinstance(raw, str) else Opaque("stringValue of " + type(raw).__name__)
    if kind == "intValue":  # int64 as a string (or a number from lenient writers)
        if isinstance(raw, int) and not isinstance(raw, bool) and -(2**63) <= raw < 2**63:
            return raw
        if isinstance(raw, str) and raw.lstrip("-").isdigit() and len(raw) <= 20:
            number = int(raw)
            return number if -(2**63) <= number < 2**63 else Opaque("intValue beyond int64")
        return Opaque("intValue of " + type(raw).__name__)
    if kind == "doubleValue":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if raw in ("NaN", "Infinity", "-Infinity"):
            return float(raw.replace("Infinity", "inf"))
        return Opaque("doubleValue of " + type(raw).__name__)
    if kind == "boolValue":
        return raw if isinstance(raw, bool) else Opaque("boolValue of " + type(raw).__name__)
    return Opaque(kind)


def _json_value(v: Any) -> Value:
    if isinstance(v, dict) and "arrayValue" in v:
        values = v["arrayValue"].get("values", []) if isinstance(v["arrayValue"], dict) else None
        if not isinstance(values, list):
            return Opaque("arrayValue")
        return tuple(_json_scalar(item) if not (isinstance(item, dict) and "arrayValue" in item) else Opaque("arrayValue")
                     for item in values)  # fmt: skip
    return _json_scalar(v)


def _json_attributes(kvs: Any) -> dict[str, Any]:
    if not isinstance(kvs, list):
        return {}
    out: dict[str, Any] = {}
    for kv in kvs:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = _json_value(kv.get("value"))
    return out


def _get(d: Any, camel: str, snake: str) -> Any:
    if not isinstance(d, dict):
        return None
    value = d.get(camel)
    return d.get(snake) if value is None else value


def _list(d: Any, camel: str, snake: str) -> list[Any]:
    value = _get(d, camel, snake)
    return value if isinstance(value, list) else []


def _nanos(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _hex_id(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


def _status_code(status: Any) -> int:
    code = status.get("code") if isinstance(status, dict) else None
    if isinstance(code, str):
        return _STATUS_NAMES.get(code, 0)
    return code if isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 2 else 0


def _load_json(raw: bytes, top: str) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"not OTLP/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _invalid(f"not OTLP/JSON: expected an object with {top}, got {type(data).__name__}")
    return data


def _json_traces(raw: bytes) -> Iterator[Span]:
    data = _load_json(raw, "resourceSpans")
    for rs in _list(data, "resourceSpans", "resource_spans"):
        resource = _json_attributes(_get(_get(rs, "resource", "resource"), "attributes", "attributes"))
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for s in _list(ss, "spans", "spans"):
                if not isinstance(s, dict):
                    continue
                events = tuple(
                    Event(_text(e.get("name")), _nanos(_get(e, "timeUnixNano", "time_unix_nano")), _json_attributes(e.get("attributes")))
                    for e in _list(s, "events", "events") if isinstance(e, dict)
                )  # fmt: skip
                name = s.get("name")
                yield Span(_hex_id(_get(s, "traceId", "trace_id")), _hex_id(_get(s, "spanId", "span_id")),
                           name if isinstance(name, str) else "",
                           _nanos(_get(s, "startTimeUnixNano", "start_time_unix_nano")),
                           _nanos(_get(s, "endTimeUnixNano", "end_time_unix_nano")),
                           _status_code(s.get("status")), _json_attributes(s.get("attributes")), events, resource)  # fmt: skip


def _json_logs(raw: bytes) -> Iterator[LogRecord]:
    data = _load_json(raw, "resourceLogs")
    for rl in _list(data, "resourceLogs", "resource_logs"):
        resource = _json_attributes(_get(_get(rl, "resource", "resource"), "attributes", "attributes"))
        for sl in _list(rl, "scopeLogs", "scope_logs"):
            for r in _list(sl, "logRecords", "log_records"):
                if not isinstance(r, dict):
                    continue
                attributes = _json_attributes(r.get("attributes"))
                event_name = _get(r, "eventName", "event_name")
                time_ns = _nanos(_get(r, "timeUnixNano", "time_unix_nano")) or _nanos(
                    _get(r, "observedTimeUnixNano", "observed_time_unix_nano"))
                yield LogRecord(time_ns, event_name if isinstance(event_name, str) and event_name else _event_name(attributes),
                                _hex_id(_get(r, "traceId", "trace_id")), _hex_id(_get(r, "spanId", "span_id")),
                                attributes, resource)  # fmt: skip


def _event_name(attributes: Attributes) -> str:
    """Older SDKs name an event by the ``event.name`` attribute instead of the record's field."""
    name = attributes.get("event.name")
    return name if isinstance(name, str) else ""


def read_traces(raw: bytes, encoding: Encoding = "auto") -> list[Span]:
    """Every span of one ``ExportTraceServiceRequest``. Raises BadInput (``otlp_invalid``)."""
    form = sniff(raw) if encoding == "auto" else encoding
    return list(_json_traces(raw) if form == "otlp_json" else _pb_traces(raw))


def read_logs(raw: bytes, encoding: Encoding = "auto") -> list[LogRecord]:
    """Every log record of one ``ExportLogsServiceRequest``. Raises BadInput (``otlp_invalid``)."""
    form = sniff(raw) if encoding == "auto" else encoding
    return list(_json_logs(raw) if form == "otlp_json" else _pb_logs(raw))
