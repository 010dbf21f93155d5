"""OpenTelemetry GenAI attribute names accepted as aliases of our contract fields.

A service already instrumented with ``gen_ai.*`` attributes can publish its span attributes
as a flat JSON object; an evaluation published as a ``gen_ai.evaluation.result`` event (flat
attributes, or ``{"name": "gen_ai.evaluation.result", "attributes": {...}}``) is a verdict.
"""

from __future__ import annotations

from typing import Any

REQUEST_ALIASES: dict[str, str] = {
    "gen_ai.response.id": "request_id",
    "gen_ai.provider.name": "provider",
    "gen_ai.system": "provider",
    "gen_ai.request.model": "model",
    "gen_ai.response.model": "response_model",
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
    "gen_ai.usage.cache_read.input_tokens": "cached_input_tokens",
    "gen_ai.usage.cache_creation.input_tokens": "cache_write_tokens",
    "gen_ai.usage.reasoning.output_tokens": "reasoning_tokens",
    "error.type": "error_type",
}

VERDICT_ALIASES: dict[str, str] = {
    "gen_ai.response.id": "request_id",
    "gen_ai.evaluation.name": "evaluator",
    "gen_ai.evaluation.score.value": "score",
    "gen_ai.evaluation.score.label": "label",
}

EVALUATION_EVENT_NAME = "gen_ai.evaluation.result"
PASS_LABELS = frozenset({"pass", "passed", "correct", "true", "yes", "good", "relevant"})
FAIL_LABELS = frozenset({"fail", "failed", "incorrect", "false", "no", "bad", "irrelevant"})
"""Evaluation labels read as passed / failed (lower case, stripped), on every verdict path."""


def _rename(data: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k not in aliases}
    for alias, field in aliases.items():
        if alias in data and field not in out:
            out[field] = data[alias]
    return out


def normalize_request(data: dict[str, Any]) -> dict[str, Any]:
    """Map ``gen_ai.*`` names onto contract fields; contract names win when both are given."""
    if not any(key.startswith(("gen_ai.", "error.")) for key in data):
        return data
    out = _rename(data, REQUEST_ALIASES)
    reasons = data.get("gen_ai.response.finish_reasons")
    if "finish_reason" not in out and isinstance(reasons, list) and reasons and isinstance(reasons[0], str):
        out["finish_reason"] = reasons[0]
    if "status" not in out:
        out["status"] = "error" if out.get("error_type") else "ok"
    return out


def normalize_verdict(data: dict[str, Any]) -> dict[str, Any]:
    """Map a ``gen_ai.evaluation.result`` event (flat or with ``attributes``) onto a verdict."""
    if data.get("name") == EVALUATION_EVENT_NAME and isinstance(data.get("attributes"), dict):
        merged = {k: v for k, v in data.items() if k not in ("name", "attributes")}
        merged.update(data["attributes"])
        data = merged
    if not any(key.startswith("gen_ai.") for key in data):
        return data
    out = _rename(data, VERDICT_ALIASES)
    if "passed" not in out:
        label = out.get("label")
        label = label.strip().lower() if isinstance(label, str) else ""
        if label in PASS_LABELS:
            out["passed"] = True
        elif label in FAIL_LABELS:
            out["passed"] = False
    return out
