"""Event contracts: what producers may send, what is refused and why, and the checked-in schemas."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from telemetry.contracts.decode import decode_request, decode_verdict
from telemetry.errors import BadInput
from telemetry.schemas import stale_schemas

REPO = Path(__file__).resolve().parents[2]
BASE = {"request_id": "a", "ts": "2026-01-01T00:00:00Z", "route": "support.answer", "model": "gpt-4o",
        "input_tokens": 10, "output_tokens": 5, "latency_ms": 120.5, "status": "ok"}  # fmt: skip


def test_minimal_request_gets_documented_defaults() -> None:
    event = decode_request(orjson.dumps(BASE))
    assert event.ts == 1_767_225_600_000
    assert (event.attempt, event.cached_input_tokens, event.team, event.served_model) == (1, 0, "", "gpt-4o")


@pytest.mark.parametrize("ts", [1_767_225_600_000, "1767225600000", "2026-01-01T00:00:00+00:00", 1_767_225_600])
def test_timestamps_rfc3339_or_epoch(ts: object) -> None:
    assert decode_request(orjson.dumps({**BASE, "ts": ts})).ts == 1_767_225_600_000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{nope", "invalid_json"),
        (b"[]", "not_an_object"),
        (None, "empty_message"),
        (orjson.dumps({**BASE, "status": "maybe"}), "schema_violation"),
        (orjson.dumps({**BASE, "cached_input_tokens": 11}), "schema_violation"),
        (orjson.dumps({k: v for k, v in BASE.items() if k != "route"}), "schema_violation"),
        (b"[" * 100_000, "invalid_json"),
        (orjson.dumps({**BASE, "pad": "x" * 2_000_000}), "oversized"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(BadInput) as info:
        decode_request(raw)
    assert info.value.reason == reason


def test_opentelemetry_genai_names_are_accepted() -> None:
    event = decode_request(orjson.dumps({
        "gen_ai.response.id": "x1", "ts": 1_767_225_600_000, "route": "r", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 50, "gen_ai.response.finish_reasons": ["length"],
        "latency_ms": 10, "error.type": "timeout",
    }))  # fmt: skip
    assert (event.request_id, event.model, event.response_model) == ("x1", "gpt-4o", "gpt-4o-2024-08-06")
    assert (event.cached_input_tokens, event.finish_reason, event.status, event.error_type) == (50, "length", "error", "timeout")


def test_opentelemetry_evaluation_event_is_a_verdict() -> None:
    verdict = decode_verdict(orjson.dumps({
        "name": "gen_ai.evaluation.result", "attributes": {
            "gen_ai.response.id": "x1", "gen_ai.evaluation.name": "faithfulness@v2",
            "gen_ai.evaluation.score.label": "fail", "ts": "2026-01-01T00:00:05Z"}}))  # fmt: skip
    assert (verdict.request_id, verdict.evaluator, verdict.passed) == ("x1", "faithfulness@v2", False)


def test_verdict_needs_an_outcome() -> None:
    with pytest.raises(BadInput):
        decode_verdict(orjson.dumps({"request_id": "a", "ts": 1_767_225_600_000, "evaluator": "j"}))
    assert decode_verdict(orjson.dumps({"request_id": "a", "ts": 1_767_225_600_000, "evaluator": "j", "score": 0.7})).passed


def test_checked_in_json_schemas_match_the_models() -> None:
    assert stale_schemas(REPO / "schemas") == [], "run: telemetry schemas --write"
