"""The request event: one LLM call, published by the calling service to ``<prefix>requests``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from telemetry.contracts._text import LABEL_PATTERN, label_field, optional_fields_accept_null
from telemetry.contracts._time import EpochMs

REQUEST_SCHEMA_VERSION = 1
MAX_TOKENS = 100_000_000

TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=LABEL_PATTERN)]
TagValue = Annotated[str, StringConstraints(max_length=256, pattern=LABEL_PATTERN)]


class RequestEvent(BaseModel):
    """One LLM request. Key the Kafka message by ``request_id``.

    Token convention: ``input_tokens`` includes ``cached_input_tokens`` and ``cache_write_tokens``;
    ``output_tokens`` includes ``reasoning_tokens`` (the OpenAI / OpenTelemetry GenAI convention).

    Strict types: integers are JSON integers, numbers are JSON numbers (integers accepted),
    booleans are never numbers and text is never a number. ``null`` in an optional field means
    absent (the decoder drops it before validation). Text fields are labels (see ``_text``).
    """

    model_config = ConfigDict(
        extra="ignore", frozen=True, str_strip_whitespace=True, strict=True, allow_inf_nan=False,
        json_schema_extra=optional_fields_accept_null,
    )  # fmt: skip

    schema_version: int = Field(
        REQUEST_SCHEMA_VERSION, ge=REQUEST_SCHEMA_VERSION, le=REQUEST_SCHEMA_VERSION,
        json_schema_extra={"const": REQUEST_SCHEMA_VERSION}, description="Contract version (1).",
    )  # fmt: skip
    request_id: str = label_field(min_length=1, max_length=256, description="Unique id of the request.")
    ts: EpochMs = Field(description="Request start: RFC 3339 or epoch milliseconds (UTC).")
    route: str = label_field(min_length=1, max_length=256, description="Feature endpoint, e.g. support.answer.")
    team: str = label_field("", max_length=256, description="Owning team. Default: empty (route config may set it).")
    provider: str = label_field("", max_length=128, description="Provider, e.g. openai, anthropic. Default: empty.")
    model: str = label_field(min_length=1, max_length=256, description="Requested model (or alias).")
    response_model: str = label_field("", max_length=256, description="Served model. Default: empty = same as model.")
    input_tokens: int = Field(ge=0, le=MAX_TOKENS, description="Prompt tokens, cached and cache-written ones included.")
    output_tokens: int = Field(ge=0, le=MAX_TOKENS, description="Completion tokens, reasoning ones included.")
    cached_input_tokens: int = Field(0, ge=0, le=MAX_TOKENS, description="Prompt tokens read from cache.")
    cache_write_tokens: int = Field(
        0, ge=0, le=MAX_TOKENS, description="Prompt tokens written to the provider's prompt cache (part of input)."
    )
    reasoning_tokens: int = Field(0, ge=0, le=MAX_TOKENS, description="Reasoning tokens (part of output).")
    cost_usd: float | None = Field(None, ge=0, le=1_000_000, description="Producer's own cost; wins if set.")
    latency_ms: float = Field(ge=0, le=86_400_000, description="End-to-end latency in milliseconds.")
    ttft_ms: float | None = Field(None, ge=0, le=86_400_000, description="Time to first token, ms.")
    status: Literal["ok", "error"] = Field(description="ok or error.")
    error_type: str = label_field("", max_length=128, description="e.g. model_not_found, rate_limited, timeout.")
    http_status: int | None = Field(None, ge=0, le=999, description="HTTP status of the provider call.")
    finish_reason: str = label_field("", max_length=64, description="stop, length, tool_calls, content_filter...")
    attempt: int = Field(1, ge=1, le=1000, description="1 = first try; retries count up.")
    prompt_version: str = label_field("", max_length=256, description="Version of the prompt template.")
    experiment: str = label_field("", max_length=256, description="Experiment arm, e.g. control / canary.")
    tool_calls: int = Field(0, ge=0, le=100_000, description="Tool calls the model made.")
    tool_errors: int = Field(0, ge=0, le=100_000, description="Tool calls that failed.")
    system_prompt_tokens: int = Field(0, ge=0, le=MAX_TOKENS, description="Part of input from system prompt.")
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict, max_length=64, description="Free string labels (at most 64; keys 1..128, values 0..256 chars)."
    )
    user_hash: str = label_field("", max_length=128, description="Hashed user id (never raw PII).")
    response_hash: str = label_field("", max_length=128, description="Hash of the response text.")

    @model_validator(mode="after")
    def _consistent(self) -> RequestEvent:
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cached_input_tokens + cache_write_tokens exceeds input_tokens (input_tokens includes both)"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens exceeds output_tokens (output_tokens includes reasoning)")
        if self.status == "error" and not self.error_type:
            object.__setattr__(self, "error_type", "unknown")
        return self

    @property
    def served_model(self) -> str:
        return self.response_model or self.model
