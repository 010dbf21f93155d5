"""Pure mapping from domain objects to ClickHouse rows (column order = the ``*_COLUMNS`` lists)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telemetry.ingest.deadletter import DeadLetter
from telemetry.ingest.join import JoinedVerdict, PricedRequest
from telemetry.contracts.verdict import VerdictEvent

REQUEST_COLUMNS = [
    "request_id", "ts", "route", "team", "provider", "model", "response_model", "served_model",
    "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "system_prompt_tokens", "cost_usd", "cost_source", "price_version", "latency_ms", "ttft_ms", "status", "error_type",
    "http_status", "finish_reason", "attempt", "prompt_version", "experiment", "tool_calls",
    "tool_errors", "tags", "user_hash", "response_hash", "schema_version", "ingested_at",
    "source_partition", "source_offset",
]  # fmt: skip

VERDICT_COLUMNS = [
    "request_id", "evaluator", "kind", "passed", "score", "label", "eval_cost_usd", "verdict_ts",
    "request_ts", "route", "team", "model", "served_model", "cost_usd", "late", "lag_seconds", "joined_at",
]  # fmt: skip

PENDING_COLUMNS = [
    "request_id", "evaluator", "kind", "passed", "score", "label", "eval_cost_usd", "verdict_ts", "received_at",
]  # fmt: skip

DEAD_LETTER_COLUMNS = [
    "received_at", "source_topic", "source_partition", "source_offset", "reason", "detail", "size_bytes",
    "message_key", "source_item",
]  # fmt: skip


def request_rows(batch: Sequence[PricedRequest], now_ms: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for priced in batch:
        e = priced.event
        rows.append([
            e.request_id, e.ts, e.route, e.team, e.provider, e.model, e.response_model, e.served_model,
            e.input_tokens, e.output_tokens, e.cached_input_tokens, e.cache_write_tokens, e.reasoning_tokens,
            e.system_prompt_tokens,
            priced.cost.usd, priced.cost.source, priced.cost.version, e.latency_ms, e.ttft_ms, e.status,
            e.error_type, e.http_status, e.finish_reason, e.attempt, e.prompt_version, e.experiment,
            e.tool_calls, e.tool_errors, e.tags, e.user_hash, e.response_hash, e.schema_version, now_ms,
            priced.partition, priced.offset,
        ])  # fmt: skip
    return rows


def verdict_rows(batch: Sequence[JoinedVerdict], now_ms: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for joined in batch:
        v, r = joined.verdict, joined.request
        rows.append([
            v.request_id, v.evaluator, v.kind, int(bool(v.passed)), v.score, v.label, v.eval_cost_usd, v.ts,
            r.ts_ms, r.route, r.team, r.model, r.served_model, r.cost_usd, int(joined.late),
            (v.ts - r.ts_ms) / 1000.0, now_ms,
        ])  # fmt: skip
    return rows


def pending_rows(batch: Sequence[VerdictEvent], now_ms: int) -> list[list[object]]:
    return [
        [v.request_id, v.evaluator, v.kind, int(bool(v.passed)), v.score, v.label, v.eval_cost_usd, v.ts, now_ms]
        for v in batch
    ]


def pending_from_row(row: Sequence[Any]) -> VerdictEvent:
    rid, evaluator, kind, passed, score, label, eval_cost, verdict_ts = row[:8]
    return VerdictEvent.model_construct(
        schema_version=1, request_id=rid, ts=_ms(verdict_ts), evaluator=evaluator, kind=kind,
        passed=bool(passed), score=score, label=label, eval_cost_usd=eval_cost,
    )  # fmt: skip


def dead_letter_rows(batch: Sequence[DeadLetter]) -> list[list[object]]:
    return [
        [d.received_ms, d.topic, d.partition, d.offset, d.reason, d.detail[:2000], d.size, d.key_text, d.item]
        for d in batch
    ]


def _ms(value: object) -> int:
    from datetime import UTC, datetime

    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    return int(value)  # type: ignore[call-overload, no-any-return]
