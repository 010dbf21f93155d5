"""The detectors' facts of a stored batch (pure): one per new request, one per joined verdict."""

from __future__ import annotations

from telemetry.detect.facts import RequestFact, VerdictFact
from telemetry.ingest.join import JoinOutcome


def request_facts(outcome: JoinOutcome) -> list[RequestFact]:
    return [
        RequestFact(
            ts_ms=e.ts, route=e.route, team=e.team, model=e.model, served_model=e.served_model,
            cost_usd=p.cost.usd, latency_ms=e.latency_ms, status=e.status, error_type=e.error_type,
            finish_reason=e.finish_reason, attempt=e.attempt,
        )  # fmt: skip
        for p in outcome.new_requests
        for e in (p.event,)
    ]


def verdict_facts(outcome: JoinOutcome) -> list[VerdictFact]:
    return [
        VerdictFact(
            ts_ms=j.verdict.ts, request_ts_ms=j.request.ts_ms, route=j.request.route, model=j.request.served_model,
            evaluator=j.verdict.evaluator, kind=j.verdict.kind, passed=bool(j.verdict.passed),
            cost_usd=j.request.cost_usd,
        )  # fmt: skip
        for j in outcome.joined
    ]
