"""Deterministic test traffic with its expected totals computed independently of the worker."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from genai_prices import Usage, calc_price

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ROUTES = [("support.answer", "support", "openai", "gpt-4o"), ("search.rerank", "search", "openai", "gpt-4o-mini"),
          ("docs.summarize", "docs", "anthropic", "claude-3-5-haiku-latest")]  # fmt: skip
HORIZON_MS = 24 * 3_600_000


def independent_cost(provider: str, model: str, ts_ms: int, inp: int, out: int, cached: int) -> float:
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached)
    when = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return float(calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=when).total_price)


@dataclass
class Traffic:
    requests: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)


def make_traffic(n: int, seed: int = 7, *, unknown_model_every: int = 0) -> Traffic:
    rnd = random.Random(seed)
    t = Traffic()
    per_route: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    cost: dict[tuple[str, str], float] = defaultdict(float)
    verdict_keys = 0
    late = 0
    for i in range(n):
        route, team, provider, model = ROUTES[i % len(ROUTES)]
        if unknown_model_every and i % unknown_model_every == 0:
            model = "acme-private-llm"
        ts = START_MS + i * 1500
        inp, out = rnd.randint(100, 4000), rnd.randint(10, 800)
        cached = rnd.choice([0, 0, inp // 2])
        error = rnd.random() < 0.05
        req = {
            "request_id": f"req-{seed}-{i}", "ts": ts, "route": route, "team": team, "provider": provider,
            "model": model, "input_tokens": inp, "output_tokens": out, "cached_input_tokens": cached,
            "latency_ms": round(rnd.lognormvariate(6.5, 0.5), 1), "ttft_ms": 120.0,
            "status": "error" if error else "ok", "error_type": "timeout" if error else "",
            "finish_reason": "length" if rnd.random() < 0.03 else "stop", "attempt": 1 if rnd.random() > 0.1 else 2,
        }  # fmt: skip
        t.requests.append(req)
        key = (route, model)
        per_route[key]["requests"] += 1
        per_route[key]["errors"] += int(error)
        if model != "acme-private-llm":
            cost[key] += independent_cost(provider, model, ts, inp, out, cached)
        else:
            per_route[key]["unpriced"] += 1
        for evaluator, kind, rate in (("judge@v1", "online", 0.3), ("human@v1", "human", 0.05)):
            if rnd.random() < rate:
                is_late = rnd.random() < 0.05
                vts = ts + (HORIZON_MS + 3_600_000 if is_late else rnd.randint(1000, 3_600_000))
                passed = rnd.random() < 0.85
                t.verdicts.append({"request_id": req["request_id"], "ts": vts, "evaluator": evaluator, "kind": kind,
                                   "passed": passed, "score": 1.0 if passed else 0.0})  # fmt: skip
                verdict_keys += 1
                late += int(is_late)
                if kind == "online":
                    per_route[key]["judged"] += 1
                    per_route[key]["passed"] += int(passed)
    t.expected = {"per_route": per_route, "cost": cost, "verdicts": verdict_keys, "late": late}
    return t


POISON: list[bytes] = [
    b"{not json", b"[1, 2, 3]", b'"just a string"', b"\xff\xfe\x00garbage",
    b'{"request_id": "p1", "ts": "yesterday", "route": "r", "model": "m", "input_tokens": 1, "output_tokens": 1, "latency_ms": 1, "status": "ok"}',
    b'{"request_id": "p2", "ts": 1767225600000, "route": "r", "model": "m", "input_tokens": -5, "output_tokens": 1, "latency_ms": 1, "status": "ok"}',
    b'{"request_id": "p3"}',
    b"[" * 5000 + b"]" * 5000,
]  # fmt: skip
