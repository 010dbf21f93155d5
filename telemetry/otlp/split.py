"""One OTLP message becomes the items the worker routes: one per request or verdict. Pure.

Each item carries its kind, the request id it will be routed by, its ordinal in the message
(``item``, from 1; 0 is the message itself) and either the event as contract JSON or the reason
it is refused. A message that cannot be read at all is one refused item (``item`` 0) carrying
the original bytes; a span that cannot be mapped is one refused item of its own. Spans that are
not GenAI operations and log records that are not evaluations are skipped and counted by why
(:data:`SKIP_REASONS`), never dead-lettered. Nothing here raises for a message.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson

from telemetry.contracts.decode import unexpected
from telemetry.errors import BadInput
from telemetry.otlp import genai
from telemetry.otlp.genai import SpanMapping
from telemetry.otlp.wire import Encoding, read_logs, read_traces

log = logging.getLogger(__name__)

Kind = Literal["requests", "verdicts"]
T = TypeVar("T")

SKIP_REASONS: dict[str, str] = {
    "not_genai": "a span without a GenAI operation (HTTP, database, framework spans)",
    "operation_not_mapped": "a GenAI span whose operation is not in TELEMETRY_OTLP_OPERATIONS",
    "not_evaluation": "a log record that is not a gen_ai.evaluation.result event",
}
"""Why a span or log record became no event (the worker counts each: ``otlp.skipped.<reason>``)."""


@dataclass(frozen=True, slots=True)
class Item:
    kind: Kind
    item: int
    routing_id: str | None
    value: bytes | None
    refusal: BadInput | None = None


@dataclass(slots=True)
class Split:
    items: list[Item] = field(default_factory=list)
    spans: int = 0
    log_records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, kind: Kind, event: dict[str, Any]) -> None:
        rid = event.get("request_id")
        n = len(self.items) + 1
        try:
            value = orjson.dumps(event)
        except Exception as exc:  # noqa: BLE001 - e.g. an integer beyond 64 bits
            self.items.append(Item(kind, n, None, _where(event), unexpected(exc)))
            return
        routing = rid.strip() if isinstance(rid, str) else ""  # the contract strips text
        self.items.append(Item(kind, n, routing or None, value))

    def refuse(self, kind: Kind, event: dict[str, Any], error: BadInput) -> None:
        self.items.append(Item(kind, len(self.items) + 1, None, _where(event), error))


def _where(event: dict[str, Any]) -> bytes:
    """What a refused item's dead letter holds: where the span is (ids, no attribute values)."""
    return orjson.dumps({"otel_span": event.get("otel_span", "")})


def _whole(kind: Kind, raw: bytes, error: BadInput) -> Split:
    return Split(items=[Item(kind, 0, None, raw, error)])


def _read(kind: Kind, raw: bytes | None, max_bytes: int, read: Callable[[bytes], list[T]]) -> list[T] | Split:
    """The records of one message, or the Split that refuses it whole (its reason, its bytes)."""
    if not raw:
        return _whole(kind, raw or b"", BadInput("empty_message", "message has no value (tombstone)"))
    if len(raw) > max_bytes:
        return _whole(kind, raw, BadInput("oversized", f"message is {len(raw)} bytes, the limit is {max_bytes}"))
    try:
        return read(raw)
    except BadInput as exc:
        return _whole(kind, raw, exc)
    except Exception as exc:  # noqa: BLE001 - one message never stops the worker
        return _whole(kind, raw, unexpected(exc))


def split_traces(raw: bytes | None, mapping: SpanMapping, *, encoding: Encoding = "auto",
                 max_bytes: int = 1_000_000) -> Split:  # fmt: skip
    """Requests of the GenAI spans of one ``ExportTraceServiceRequest``, each followed by the
    verdicts of its ``gen_ai.evaluation.result`` events."""
    spans = _read("requests", raw, max_bytes, lambda b: read_traces(b, encoding))
    if isinstance(spans, Split):
        return spans
    out = Split(spans=len(spans))
    logged = False
    for span in spans:
        where = {"otel_span": f"{span.trace_id}/{span.span_id}"}
        try:
            operation = genai.operation_of(span.attributes)
            if operation is None or operation not in mapping.operations:
                out.skipped["not_genai" if operation is None else "operation_not_mapped"] += 1
                request_id = genai.span_ref(span.trace_id, span.span_id)  # its evaluations still count
            else:
                request = genai.request_of(span, operation, mapping)
                request_id = request["request_id"]
                out.add("requests", request)
            for verdict in genai.span_verdicts(span, request_id, mapping):
                out.add("verdicts", verdict)
        except BadInput as exc:
            out.refuse("requests", where, exc)
        except Exception as exc:
            if not logged:
                log.warning("unexpected error mapping a span; dead-lettered as decode_error", exc_info=exc)
                logged = True
            out.refuse("requests", where, unexpected(exc))
    return out


def split_logs(raw: bytes | None, mapping: SpanMapping, *, encoding: Encoding = "auto",
               max_bytes: int = 1_000_000) -> Split:  # fmt: skip
    """Verdicts of the ``gen_ai.evaluation.result`` records of one ``ExportLogsServiceRequest``."""
    records = _read("verdicts", raw, max_bytes, lambda b: read_logs(b, encoding))
    if isinstance(records, Split):
        return records
    out = Split(log_records=len(records))
    for record in records:
        if not genai.is_evaluation(record):
            out.skipped["not_evaluation"] += 1
            continue
        where = {"otel_span": f"{record.trace_id}/{record.span_id}"}
        try:
            out.add("verdicts", genai.log_verdict(record, mapping))
        except BadInput as exc:
            out.refuse("verdicts", where, exc)
        except Exception as exc:  # noqa: BLE001
            out.refuse("verdicts", where, unexpected(exc))
    return out
