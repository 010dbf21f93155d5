"""A fast, seeded, realistic traffic generator for the benchmark (requests + sampled verdicts).

Why not the simulator: ``telemetry.simulate`` draws a non-homogeneous Poisson process with a
daily shape, retries, duplicates, disorder and malformed messages (~120k events/s). The
throughput phase needs a million *clean, countable* events quickly (every request stored once,
every verdict joined once), so this module draws the same kind of event bodies straight from a
route mix: several routes with real model names priced by genai-prices, log-normal tokens,
latency and time to first token, cache hits, a small baseline error rate (429/5xx/timeouts),
truncations, and a verdict for a seeded sample of requests. Pure: no I/O, no clock (times are
arguments); the same seed gives the same bytes.

Message bodies carry the same fields the simulator sends (``schema_version``, ``request_id``,
``ts``, ``route``, ``team``, ``provider``, ``model``, ``response_model``, tokens, latency,
``status``/``http_status``/``finish_reason``, ``attempt``, ``prompt_version``, hashes), about
430 bytes of JSON per request and 150 per verdict.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson

__all__ = ["ROUTES", "Batch", "RouteSpec", "TrafficMix", "encode_chunk", "request_body", "verdict_body"]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route's traffic: model, log-normal (median, sigma) shapes, quality, share of traffic."""

    name: str
    team: str
    provider: str
    model: str
    weight: float
    latency: tuple[float, float]
    input_tokens: tuple[float, float]
    output_tokens: tuple[float, float]
    ttft: tuple[float, float] | None = None
    system_prompt_tokens: int = 0
    cache_hit_rate: float = 0.0
    pass_rate: float = 0.9
    evaluator: str = "helpfulness@v3"
    prompt_version: str = "v1"
    error_rate: float = 0.003
    truncation_rate: float = 0.005


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("support.answer", "customer", "openai", "gpt-4o-mini", 0.22, (1400, 0.35), (1400, 0.5), (260, 0.5),
              (380, 0.4), 1100, 0.6, 0.91, prompt_version="support-v12"),
    RouteSpec("support.triage", "customer", "anthropic", "claude-3-5-haiku-latest", 0.10, (900, 0.3), (600, 0.5),
              (140, 0.45), (420, 0.35), 700, 0.6, 0.93, prompt_version="triage-v4"),
    RouteSpec("sales.email", "customer", "openai", "gpt-4.1-mini", 0.10, (2200, 0.35), (900, 0.5), (420, 0.4),
              (400, 0.4), 600, 0.5, 0.88, prompt_version="email-v7"),
    RouteSpec("search.rerank", "search", "google", "gemini-2.0-flash", 0.18, (350, 0.3), (2500, 0.4), (40, 0.3),
              None, 300, 0.0, 0.95, "relevance@v2", "rerank-v3"),
    RouteSpec("search.query_rewrite", "search", "google", "gemini-2.0-flash-lite", 0.14, (250, 0.3), (120, 0.4),
              (30, 0.4), None, 250, 0.0, 0.96, "relevance@v2", "rewrite-v5"),
    RouteSpec("docs.summarize", "search", "anthropic", "claude-3-5-haiku-latest", 0.08, (3000, 0.35), (3500, 0.5),
              (350, 0.45), (500, 0.35), 400, 0.6, 0.88, prompt_version="summarize-v9"),
    RouteSpec("code.review", "devtools", "anthropic", "claude-sonnet-4-0", 0.05, (4500, 0.3), (6000, 0.6),
              (700, 0.5), (900, 0.4), 1500, 0.6, 0.85, "review-quality@v1", "review-v2"),
    RouteSpec("code.complete", "devtools", "openai", "gpt-4.1", 0.06, (800, 0.4), (1800, 0.6), (90, 0.6),
              (250, 0.4), 900, 0.7, 0.9, "accept@v1", "complete-v5"),
    RouteSpec("agent.plan", "platform", "openai", "o3-mini", 0.03, (4000, 0.35), (3000, 0.5), (1500, 0.5),
              None, 2000, 0.5, 0.82, "plan-judge@v2", "plan-v3"),
    RouteSpec("analytics.sql", "platform", "google", "gemini-2.5-flash", 0.04, (1800, 0.4), (2200, 0.5),
              (300, 0.5), (350, 0.4), 1200, 0.3, 0.87, "sql-exec@v1", "sql-v8"),
)
"""The throughput mix: ten routes of four teams, nine real models from three providers, all priced."""

_ERRORS: tuple[tuple[str, int | None, float], ...] = (
    ("rate_limited", 429, 0.5),
    ("server_error", 500, 0.2),
    ("server_error", 503, 0.1),
    ("timeout", None, 0.2),
)
_ERROR_CUM = tuple(accumulate(share for _, _, share in _ERRORS))


def request_body(
    rng: random.Random,
    route: RouteSpec,
    request_id: str,
    ts_ms: int,
    *,
    served_model: str | None = None,
    error: tuple[str, int | None] | None = None,
    error_rate: float | None = None,
) -> dict[str, Any]:
    """One request event body. ``served_model`` overrides the response model (a tier switch);
    ``error`` forces an error of that (type, http status); else errors follow ``error_rate``
    (default: the route's baseline mix of 429/5xx/timeouts)."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "request_id": request_id,
        "ts": ts_ms,
        "route": route.name,
        "team": route.team,
        "provider": route.provider,
        "model": route.model,
    }
    rate = route.error_rate if error_rate is None else error_rate
    if error is None and rate and rng.random() < rate:
        u = rng.random()
        etype, http, _ = _ERRORS[min(bisect_right(_ERROR_CUM, u), len(_ERRORS) - 1)]
        error = (etype, http)
    if error is not None:
        etype, http = error
        latency = round(math.exp(math.log(route.latency[0] * 0.3) + 0.5 * rng.gauss(0.0, 1.0)), 1)
        input_tokens = max(1, int(math.exp(math.log(route.input_tokens[0]) + route.input_tokens[1] * rng.gauss(0.0, 1.0))))
        body.update(input_tokens=input_tokens, output_tokens=0, latency_ms=latency, status="error", error_type=etype,
                    prompt_version=route.prompt_version)  # fmt: skip
        if http is not None:
            body["http_status"] = http
        return body
    gauss = rng.gauss
    latency = round(math.exp(math.log(route.latency[0]) + route.latency[1] * gauss(0.0, 1.0)), 1)
    input_tokens = max(1, int(math.exp(math.log(route.input_tokens[0]) + route.input_tokens[1] * gauss(0.0, 1.0))))
    input_tokens += route.system_prompt_tokens
    output_tokens = max(1, int(math.exp(math.log(route.output_tokens[0]) + route.output_tokens[1] * gauss(0.0, 1.0))))
    cached = route.system_prompt_tokens if route.cache_hit_rate and rng.random() < route.cache_hit_rate else 0
    finish = "length" if rng.random() < route.truncation_rate else "stop"
    body.update(
        response_model=served_model or route.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        latency_ms=latency,
    )
    if route.ttft is not None:
        ttft = math.exp(math.log(route.ttft[0]) + route.ttft[1] * gauss(0.0, 1.0))
        body["ttft_ms"] = round(min(ttft, latency * 0.95), 1)
    body.update(
        status="ok",
        http_status=200,
        finish_reason=finish,
        attempt=1,
        prompt_version=route.prompt_version,
        system_prompt_tokens=route.system_prompt_tokens,
        user_hash=f"{rng.getrandbits(64):016x}",
        response_hash=f"{rng.getrandbits(64):016x}",
    )
    return body


def verdict_body(rng: random.Random, route: RouteSpec, request_id: str, ts_ms: int) -> dict[str, Any]:
    """One online verdict on ``request_id`` judged at ``ts_ms``."""
    passed = rng.random() < route.pass_rate
    score = 0.5 + 0.5 * rng.random() if passed else 0.49 * rng.random()
    return {
        "schema_version": 1,
        "request_id": request_id,
        "ts": ts_ms,
        "evaluator": route.evaluator,
        "kind": "online",
        "passed": passed,
        "score": round(score, 3),
    }


@dataclass(slots=True)
class Batch:
    """A chunk of encoded messages: ``(key, value)`` pairs per topic kind."""

    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    verdicts: list[tuple[bytes, bytes]] = field(default_factory=list)


class TrafficMix:
    """``n`` requests with timestamps spread evenly (plus jitter) over ``[start_ms, end_ms)``,
    and a verdict for each request with probability ``verdict_sample`` (judged 1 s - 4 h after
    the call ends, log-normal around 40 s). Iterate :meth:`batches` for encoded chunks."""

    def __init__(
        self,
        n: int,
        *,
        start_ms: int,
        end_ms: int,
        verdict_sample: float = 0.2,
        seed: int = 20250601,
        routes: tuple[RouteSpec, ...] = ROUTES,
        distinct_routes: int = 0,
        distinct_models: int = 0,
    ) -> None:
        if n < 0 or not 0.0 <= verdict_sample <= 1.0 or end_ms <= start_ms:
            raise ValueError("need n >= 0, 0 <= verdict_sample <= 1 and start_ms < end_ms")
        self.n = n
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.verdict_sample = verdict_sample
        self.seed = seed
        self.routes = routes
        # hostile cardinality: spread the routes (or the served models) over this many names
        self.distinct_routes = distinct_routes
        self.distinct_models = distinct_models
        self._cum = list(accumulate(r.weight for r in routes))

    def chunks(self, size: int = 50_000) -> list[tuple[int, int]]:
        """``(first, count)`` request ranges of ``size``; each is generated independently."""
        return [(first, min(size, self.n - first)) for first in range(0, self.n, size)]

    def chunk(self, first: int, count: int) -> Batch:
        """Requests ``first .. first+count-1`` and their verdicts, encoded. Seeded by the chunk, so
        chunks can be generated in any order or in parallel and still give the same bytes."""
        rng = random.Random(self.seed * 1_000_003 + first)
        routes, cum, total_w = self.routes, self._cum, self._cum[-1]
        last = len(routes) - 1
        step = (self.end_ms - self.start_ms) / max(1, self.n)
        sample = self.verdict_sample
        dumps = orjson.dumps
        out = Batch()
        requests, verdicts = out.requests, out.verdicts
        for i in range(first, first + count):
            route = routes[min(bisect_right(cum, rng.random() * total_w), last)]
            ts = self.start_ms + int(i * step + rng.random() * step)
            rid = f"req_{rng.getrandbits(64):016x}"
            key = rid.encode()
            body = request_body(rng, route, rid, ts)
            if self.distinct_routes:
                body["route"] = f"{route.name}.{i % self.distinct_routes}"
            if self.distinct_models:
                body["model"] = body["response_model"] = f"ft:custom-model-{i % self.distinct_models}"
            requests.append((key, dumps(body)))
            if sample and rng.random() < sample:
                delay = min(max(40_000.0 * math.exp(rng.gauss(0.0, 1.0)), 1000.0), 4 * 3_600_000.0)
                vts = ts + int(body["latency_ms"]) + int(delay)
                verdicts.append((key, dumps(verdict_body(rng, route, rid, vts))))
        return out

    def batches(self, size: int = 50_000) -> Iterator[Batch]:
        """Encoded messages in chunks of ``size`` requests (with their verdicts), in order."""
        for first, count in self.chunks(size):
            yield self.chunk(first, count)


def encode_chunk(mix: TrafficMix, first: int, count: int) -> Batch:
    """Module-level entry for a process pool: ``mix.chunk(first, count)``."""
    return mix.chunk(first, count)
