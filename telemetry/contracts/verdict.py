"""The verdict event: an evaluator's judgment of one request, on ``<prefix>verdicts``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from telemetry.contracts._text import label_field, optional_fields_accept_null
from telemetry.contracts._time import EpochMs

VERDICT_SCHEMA_VERSION = 1

VerdictKind = Literal["online", "human", "user_feedback", "closed_book", "gold_context", "offline"]


class VerdictEvent(BaseModel):
    """One evaluator's verdict on one request. Key the Kafka message by ``request_id``.

    One row per (request_id, evaluator) is kept: a repeated verdict is a duplicate. Strict
    types and labels as for :class:`~telemetry.contracts.request.RequestEvent`.
    """

    model_config = ConfigDict(
        extra="ignore", frozen=True, str_strip_whitespace=True, strict=True, allow_inf_nan=False,
        json_schema_extra=optional_fields_accept_null,
    )  # fmt: skip

    schema_version: int = Field(
        VERDICT_SCHEMA_VERSION, ge=VERDICT_SCHEMA_VERSION, le=VERDICT_SCHEMA_VERSION,
        json_schema_extra={"const": VERDICT_SCHEMA_VERSION}, description="Contract version (1).",
    )  # fmt: skip
    request_id: str = label_field(min_length=1, max_length=256, description="The judged request.")
    ts: EpochMs = Field(description="When the verdict was made: RFC 3339 or epoch ms.")
    evaluator: str = label_field(min_length=1, max_length=256, description="Evaluator name incl. version.")
    kind: VerdictKind = Field("online", description="online, human, user_feedback, closed_book, ...")
    passed: bool | None = Field(None, description="Pass/fail. Derived from score >= 0.5 when omitted.")
    score: float | None = Field(None, ge=-1e9, le=1e9, description="Numeric score, optional.")
    label: str = label_field("", max_length=256, description="Categorical label, optional.")
    eval_cost_usd: float | None = Field(None, ge=0, le=1_000_000, description="Cost of evaluating.")

    @model_validator(mode="after")
    def _outcome(self) -> VerdictEvent:
        if self.passed is None:
            if self.score is None:
                raise ValueError("a verdict needs passed or score")
            object.__setattr__(self, "passed", self.score >= 0.5)
        return self
