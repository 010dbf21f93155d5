"""Builders for tests and examples: facts with defaults, and a seeded traffic driver.

Pure and deterministic (``random.Random(seed)``); time is explicit event time in epoch ms.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from telemetry.contracts.alert import Alert
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.facts import RequestFact, VerdictFact

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def request(
    ts_ms: int,
    route: str = "r",
    *,
    team: str = "",
    model: str = "m",
    served_model: str | None = None,
    cost_usd: float | None = 0.01,
    latency_ms: float = 500.0,
    status: str = "ok",
    error_type: str = "",
    finish_reason: str = "stop",
    attempt: int = 1,
) -> RequestFact:
    """One request fact; ``served_model`` defaults to ``model``."""
    return RequestFact(
        ts_ms=ts_ms,
        route=route,
        team=team,
        model=model,
        served_model=model if served_model is None else served_model,
        cost_usd=cost_usd,
        latency_ms=latency_ms,
        status=status,
        error_type=error_type,
        finish_reason=finish_reason,
        attempt=attempt,
    )


def verdict(
    ts_ms: int,
    route: str = "r",
    *,
    passed: bool = True,
    evaluator: str = "judge@v1",
    kind: str = "online",
    model: str = "m",
    request_ts_ms: int | None = None,
    cost_usd: float | None = None,
) -> VerdictFact:
    """One verdict fact; the judged request defaults to one second before the verdict."""
    return VerdictFact(
        ts_ms=ts_ms,
        request_ts_ms=ts_ms - 1000 if request_ts_ms is None else request_ts_ms,
        route=route,
        model=model,
        evaluator=evaluator,
        kind=kind,
        passed=passed,
        cost_usd=cost_usd,
    )


@dataclass
class Profile:
    """Traffic of one route: rates per minute and the distribution of each field."""

    route: str = "r"
    team: str = ""
    per_minute: float = 10.0
    model: str = "m"
    served_model: str = "m"
    cost_usd: float | None = 0.01
    cost_jitter: float = 0.2  # lognormal sigma
    latency_ms: float = 500.0
    latency_sigma: float = 0.3
    error_rate: float = 0.0
    error_type: str = "server_error"
    retry_rate: float = 0.0  # chance each attempt fails with rate_limited and is retried (max 3)
    truncation_rate: float = 0.0
    judged_per_minute: float = 0.0
    pass_rate: float = 0.9
    evaluator: str = "judge@v1"
    verdict_kind: str = "online"


@dataclass
class Driver:
    """Feeds an engine step by step with seeded traffic and keeps every notification.

    ``run(profiles, minutes)`` advances event time by ``step_s`` per step: facts of the step are
    observed, then ``evaluate(step end)`` is called. ``notifications`` holds ``(at_ms, alert)``.
    """

    engine: DetectionEngine
    now_ms: int = T0
    seed: int = 0
    step_s: int = 60
    notifications: list[tuple[int, Alert]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def run(self, profiles: list[Profile] | Profile, minutes: float) -> list[Alert]:
        """Run ``minutes`` of traffic; returns the notifications of this run."""
        if isinstance(profiles, Profile):
            profiles = [profiles]
        out: list[Alert] = []
        step_ms = self.step_s * 1000
        end = self.now_ms + int(minutes * MINUTE)
        while self.now_ms < end:
            start, stop = self.now_ms, self.now_ms + step_ms
            requests: list[RequestFact] = []
            verdicts: list[VerdictFact] = []
            for p in profiles:
                self._generate(p, start, stop, requests, verdicts)
            requests.sort(key=lambda f: f.ts_ms)
            self.engine.observe_requests(requests)
            self.engine.observe_verdicts(verdicts)
            self.now_ms = stop
            for alert in self.engine.evaluate(stop - 1):
                self.notifications.append((stop - 1, alert))
                out.append(alert)
        return out

    def _poisson(self, mean: float) -> int:
        # Knuth for small means, normal approximation above
        if mean <= 0:
            return 0
        if mean > 50:
            return max(0, round(self.rng.gauss(mean, mean**0.5)))
        limit, k, prod = math.exp(-mean), 0, self.rng.random()
        while prod > limit:
            k += 1
            prod *= self.rng.random()
        return k

    def _generate(
        self, p: Profile, start: int, stop: int, requests: list[RequestFact], verdicts: list[VerdictFact]
    ) -> None:
        rng = self.rng
        span = stop - start
        minutes = span / MINUTE
        for _ in range(self._poisson(p.per_minute * minutes)):
            ts = start + rng.randrange(span)
            if rng.random() < p.error_rate:
                requests.append(
                    request(
                        ts,
                        p.route,
                        team=p.team,
                        model=p.model,
                        cost_usd=0.0,
                        latency_ms=50.0,
                        status="error",
                        error_type=p.error_type,
                    )
                )
                continue
            attempt = 1
            while attempt < 3 and rng.random() < p.retry_rate:
                requests.append(
                    request(
                        ts,
                        p.route,
                        team=p.team,
                        model=p.model,
                        cost_usd=0.0,
                        latency_ms=50.0,
                        status="error",
                        error_type="rate_limited",
                        attempt=attempt,
                    )
                )
                attempt += 1
            cost = None if p.cost_usd is None else p.cost_usd * rng.lognormvariate(0.0, p.cost_jitter)
            requests.append(
                request(
                    ts,
                    p.route,
                    team=p.team,
                    model=p.model,
                    served_model=p.served_model,
                    cost_usd=cost,
                    latency_ms=p.latency_ms * rng.lognormvariate(0.0, p.latency_sigma),
                    finish_reason="length" if rng.random() < p.truncation_rate else "stop",
                    attempt=attempt,
                )
            )
        for _ in range(self._poisson(p.judged_per_minute * minutes)):
            ts = start + rng.randrange(span)
            verdicts.append(
                verdict(
                    ts,
                    p.route,
                    passed=rng.random() < p.pass_rate,
                    evaluator=p.evaluator,
                    kind=p.verdict_kind,
                    model=p.served_model,
                    request_ts_ms=ts - 30_000,
                )
            )
        verdicts.sort(key=lambda v: v.ts_ms)

    def firing(self, alertname: str | None = None) -> list[Alert]:
        """First notifications (sequence 1) of firing alerts, optionally of one alert name."""
        return [
            a
            for _, a in self.notifications
            if a.status == "firing" and a.sequence == 1 and (alertname is None or a.alertname == alertname)
        ]
