"""The two inputs of the detectors: one fact per request and one per verdict.

Facts are plain dataclasses built by the worker from decoded events (no validation here: the
contracts validated the events). Times are event times in epoch milliseconds. Treat them as
immutable; they are not frozen because the detection owner builds one per event from the facts
log, and a frozen dataclass costs six times as much to construct (``python -m bench.micro``,
``facts_decode``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RequestFact:
    """One LLM request (one attempt), as the detectors see it.

    ``served_model`` is the response model, or the requested ``model`` when the provider did not
    say. ``cost_usd`` is None when the request could not be priced. ``attempt`` 1 is the first
    try of a logical request; retries count up. ``status`` is ``"ok"`` or ``"error"``.
    """

    ts_ms: int
    route: str
    team: str
    model: str
    served_model: str
    cost_usd: float | None
    latency_ms: float
    status: str
    error_type: str
    finish_reason: str
    attempt: int


@dataclass(slots=True)
class VerdictFact:
    """One evaluator's verdict on one request.

    ``ts_ms`` is when the verdict was made, ``request_ts_ms`` when the judged request was made.
    ``model`` is the served model of the judged request. ``evaluator`` names the evaluator with
    its version (``"helpfulness-judge@v3"``): each version has its own quality baseline.
    ``kind`` is one of online, human, user_feedback, closed_book, gold_context, offline.
    ``cost_usd`` is the judged request's cost (None when unpriced).
    """

    ts_ms: int
    request_ts_ms: int
    route: str
    model: str
    evaluator: str
    kind: str
    passed: bool
    cost_usd: float | None
