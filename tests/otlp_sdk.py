"""OTLP messages built by the OpenTelemetry SDK's own encoders (both encodings), for tests.

Spans are made through the SDK tracer with explicit times, so a test knows every fact the
worker should read back: tokens, start, end, events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry._logs import LogRecord as ApiLogRecord
from opentelemetry.exporter.otlp.json.common._log_encoder import (
    encode_logs as json_logs,
)
from opentelemetry.exporter.otlp.json.common.trace_encoder import (
    encode_spans as json_spans,
)
from opentelemetry.exporter.otlp.proto.common._log_encoder import (
    encode_logs as proto_logs,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as proto_spans,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

Encoding = Literal["otlp_proto", "otlp_json"]
MS = 1_000_000


@dataclass
class SpanSpec:
    name: str
    start_ms: int
    end_ms: int
    attributes: Mapping[str, Any]
    events: Sequence[tuple[str, int, Mapping[str, Any]]] = ()
    error: bool = False


@dataclass
class Spans:
    """Spans of one resource, encoded as one ExportTraceServiceRequest."""

    resource: Mapping[str, Any] = field(default_factory=lambda: {"service.name": "checkout"})
    specs: list[SpanSpec] = field(default_factory=list)

    def add(self, spec: SpanSpec) -> Spans:
        self.specs.append(spec)
        return self

    def finished(self) -> list[ReadableSpan]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create(dict(self.resource)))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("tests.otlp")
        for spec in self.specs:
            span = tracer.start_span(spec.name, attributes=dict(spec.attributes), start_time=spec.start_ms * MS)
            for name, at_ms, attributes in spec.events:
                span.add_event(name, dict(attributes), timestamp=at_ms * MS)
            if spec.error:
                span.set_status(Status(StatusCode.ERROR, "failed"))
            span.end(end_time=spec.end_ms * MS)
        provider.shutdown()
        return list(exporter.get_finished_spans())

    def encode(self, encoding: Encoding) -> bytes:
        return encode_spans(self.finished(), encoding)


def encode_spans(spans: Sequence[ReadableSpan], encoding: Encoding) -> bytes:
    if encoding == "otlp_proto":
        return bytes(proto_spans(spans).SerializeToString())
    return json_spans(spans).to_json().encode()


def ids_of(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def evaluation_logs(records: Sequence[tuple[int, Mapping[str, Any], tuple[int, int] | None]], encoding: Encoding,
                    resource: Mapping[str, Any] | None = None) -> bytes:  # fmt: skip
    """``gen_ai.evaluation.result`` log records ``(time_ms, attributes, (trace_id, span_id) or None)``
    as one ExportLogsServiceRequest."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(dict(resource or {"service.name": "evaluator"})))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests.otlp.evals")
    for at_ms, attributes, link in records:
        context = None
        if link is not None:
            ctx = SpanContext(trace_id=link[0], span_id=link[1], is_remote=True, trace_flags=TraceFlags(1))
            context = set_span_in_context(NonRecordingSpan(ctx))
        logger.emit(ApiLogRecord(timestamp=at_ms * MS, observed_timestamp=at_ms * MS, context=context,
                                 event_name="gen_ai.evaluation.result", attributes=dict(attributes)))  # fmt: skip
    provider.shutdown()
    data = [r for r in exporter.get_finished_logs()]
    if encoding == "otlp_proto":
        return bytes(proto_logs(data).SerializeToString())
    return json_logs(data).to_json().encode()
