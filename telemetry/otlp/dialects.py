"""Which span attributes carry which fact, in each instrumentation dialect. Pure data.

One table (:data:`FACTS`), read in order: the first attribute present on the span wins, so the
OpenTelemetry GenAI name is tried before the older and the third-party ones. ``docs/otel.md``
is generated from this table (``python -m tools.otel_doc``) and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

OTEL = "OTel GenAI"
OTEL_OLD = "OTel GenAI (earlier versions)"
OPENLLMETRY = "OpenLLMetry / Traceloop"
OPENINFERENCE = "OpenInference"
OTEL_HTTP = "OTel HTTP / exceptions"

FIRST_TOKEN_EVENT = "First Token Stream Event"
"""OpenInference instrumentations (openai, mistralai, llama-index) mark the first streamed token with it."""


@dataclass(frozen=True, slots=True)
class Name:
    attribute: str
    dialect: str
    scale: float = 1.0
    """Multiplier to the fact's unit (e.g. seconds to milliseconds: 1000)."""


@dataclass(frozen=True, slots=True)
class Fact:
    field: str
    meaning: str
    names: tuple[Name, ...]


def _f(field: str, meaning: str, *names: tuple[str, str] | tuple[str, str, float]) -> Fact:
    return Fact(field, meaning, tuple(Name(*n) for n in names))


FACTS: tuple[Fact, ...] = (
    _f("operation", "the GenAI operation (a span without one is not a GenAI span)",
       ("gen_ai.operation.name", OTEL), ("llm.request.type", OPENLLMETRY), ("openinference.span.kind", OPENINFERENCE)),
    _f("request_id", "request id (else the span: `<trace_id>-<span_id>`)", ("gen_ai.response.id", OTEL)),
    _f("provider", "provider", ("gen_ai.provider.name", OTEL), ("gen_ai.system", OTEL_OLD),
       ("llm.provider", OPENINFERENCE), ("llm.system", OPENINFERENCE)),
    _f("model", "requested model", ("gen_ai.request.model", OTEL), ("llm.request.model_name", OPENINFERENCE),
       ("llm.model_name", OPENINFERENCE)),
    _f("response_model", "served model", ("gen_ai.response.model", OTEL), ("llm.response.model_name", OPENINFERENCE)),
    _f("input_tokens", "input tokens (cached and cache-written ones included)",
       ("gen_ai.usage.input_tokens", OTEL), ("gen_ai.usage.prompt_tokens", OPENLLMETRY),
       ("llm.token_count.prompt", OPENINFERENCE)),
    _f("output_tokens", "output tokens (reasoning ones included)",
       ("gen_ai.usage.output_tokens", OTEL), ("gen_ai.usage.completion_tokens", OPENLLMETRY),
       ("llm.token_count.completion", OPENINFERENCE)),
    _f("total_tokens", "total tokens: output = total - input when no output count is given",
       ("gen_ai.usage.total_tokens", OPENLLMETRY), ("llm.usage.total_tokens", OPENLLMETRY),
       ("llm.token_count.total", OPENINFERENCE)),
    _f("cached_input_tokens", "input tokens read from the provider's cache",
       ("gen_ai.usage.cache_read.input_tokens", OTEL), ("gen_ai.usage.cache_read_input_tokens", OPENLLMETRY),
       ("llm.token_count.prompt_details.cache_read", OPENINFERENCE)),
    _f("cache_write_tokens", "input tokens written to the provider's cache",
       ("gen_ai.usage.cache_creation.input_tokens", OTEL), ("gen_ai.usage.cache_creation_input_tokens", OPENLLMETRY),
       ("llm.token_count.prompt_details.cache_write", OPENINFERENCE)),
    _f("reasoning_tokens", "reasoning tokens (part of output)",
       ("gen_ai.usage.reasoning.output_tokens", OTEL), ("gen_ai.usage.reasoning_tokens", OPENLLMETRY),
       ("llm.usage.reasoning_tokens", OPENLLMETRY), ("llm.token_count.completion_details.reasoning", OPENINFERENCE)),
    _f("finish_reason", "the first finish reason",
       ("gen_ai.response.finish_reasons", OTEL), ("gen_ai.completion.0.finish_reason", OPENLLMETRY),
       ("llm.finish_reason", OPENINFERENCE)),
    _f("ttft_ms", "time to first token, seconds (else the time of a `First Token Stream Event` span event, "
       "OpenInference, after the span's start)", ("gen_ai.response.time_to_first_chunk", OTEL, 1000.0)),
    _f("error_type", "error type (with an error status; else the exception event's type)",
       ("error.type", OTEL), ("exception.type", OTEL_HTTP)),
    _f("http_status", "HTTP status of the provider call", ("http.response.status_code", OTEL_HTTP)),
    _f("attempt", "attempt number: resends + 1", ("http.request.resend_count", OTEL_HTTP)),
    _f("tool_name", "tool (model of an `execute_tool` span when no model is given)", ("gen_ai.tool.name", OTEL),
       ("tool.name", OPENINFERENCE)),
    _f("agent_name", "agent (model of an `invoke_agent` span when no model is given)", ("gen_ai.agent.name", OTEL),
       ("agent.name", OPENINFERENCE)),
)

BY_FIELD: dict[str, Fact] = {f.field: f for f in FACTS}

OPERATION_VALUES: dict[str, dict[str, str]] = {
    "llm.request.type": {"chat": "chat", "completion": "text_completion", "embedding": "embeddings", "rerank": "rerank"},
    "openinference.span.kind": {"LLM": "chat", "EMBEDDING": "embeddings", "TOOL": "execute_tool", "AGENT": "invoke_agent",
                                "RERANKER": "rerank"},
}
"""Dialect operation values as GenAI operation names (values not listed are not GenAI operations)."""

MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
"""Operations that call a model: they must report token usage (embeddings: input only)."""

EVALUATION = (
    ("evaluator", "gen_ai.evaluation.name"),
    ("score", "gen_ai.evaluation.score.value"),
    ("label", "gen_ai.evaluation.score.label"),
    ("request_id", "gen_ai.response.id"),
)
"""Attributes of a ``gen_ai.evaluation.result`` event or log record, by verdict field."""
