"""The traffic generator: a pure, seeded, streaming function of a scenario.

``generate(scenario)`` yields :class:`SimEvent` in publish order (simulated time). Everything
random comes from one ``random.Random(seed)`` drawn in a fixed order, so the same scenario and
seed give the same byte sequence. Memory stays flat: arrivals are drawn one at a time (a
non-homogeneous Poisson process per route, by thinning) and events that are due later (the
request itself, published when the call ends; verdicts, hours later; duplicates; retries) wait
in a heap keyed by publish time.

Timing model, all in simulated epoch milliseconds:

- request ``ts`` = start of the call; the request is published when the call ends
  (``ts + latency_ms``);
- verdict ``ts`` = request end + judge delay; a verdict is published at its ``ts``;
- an *early* verdict comes 0.2-2 s after the call ends while its request is held back by the
  producer (published up to ``noise.early_by_max`` after the verdict);
- a *duplicate* is the same bytes again, up to ``noise.duplicate_delay_max`` later;
- a *malformed* message (invalid JSON, not an object, or a schema violation) is derived from a
  real one and published right after it, on the same topic and key;
- a retry is a new request event (``request_id`` ``<id>-a<n>``, ``attempt`` n) that starts
  after the failed attempt ends plus an exponential back-off.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from telemetry.contracts.request import REQUEST_SCHEMA_VERSION
from telemetry.contracts.verdict import VERDICT_SCHEMA_VERSION
from telemetry.simulate.scenario import (
    Alias404Storm,
    Canary,
    IncidentWindow,
    JudgeDrift,
    LatencyRegression,
    QualityDrop,
    RetryStorm,
    Route,
    Scenario,
    SilentTierUp,
    TruncationSpike,
)

__all__ = ["GeneratorStats", "SimEvent", "TrafficGenerator", "generate"]

TopicKind = Literal["requests", "verdicts"]
Note = Literal["original", "early", "duplicate", "malformed"]

_HOUR_MS = 3_600_000.0
_MASK64 = (1 << 64) - 1

# Baseline failures (route.error_rate): type, http status, share.
_BASELINE_ERRORS: tuple[tuple[str, int | None, float], ...] = (
    ("rate_limited", 429, 0.5),
    ("server_error", 500, 0.2),
    ("server_error", 503, 0.1),
    ("timeout", None, 0.2),
)
_BASELINE_CUM = tuple(itertools.accumulate(share for _, _, share in _BASELINE_ERRORS))


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message to publish: when (simulated epoch ms), where, and the exact bytes.

    ``note`` says what it is: ``original`` (a normal event), ``early`` (a verdict published
    before its request), ``duplicate`` (same bytes again) or ``malformed`` (must be rejected).
    """

    publish_at_sim_ms: int
    topic_kind: TopicKind
    key: bytes | None
    value: bytes
    note: Note = "original"


@dataclass(slots=True)
class GeneratorStats:
    """Counts of what a generator run produced (filled while iterating)."""

    logical_requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)  # "<topic>:<note>"
    by_route: Counter[str] = field(default_factory=Counter)  # logical requests per route
    max_pending: int = 0  # most events waiting in the heap at once (memory)
    first_publish_ms: int | None = None
    last_publish_ms: int | None = None

    @property
    def events(self) -> int:
        return sum(self.by_kind.values())

    def count(self, topic: str, note: str | None = None) -> int:
        if note is None:
            return sum(v for k, v in self.by_kind.items() if k.startswith(topic + ":"))
        return self.by_kind.get(f"{topic}:{note}", 0)


class _RouteState:
    """Per-route constants precomputed once."""

    __slots__ = (
        "route",
        "idx",
        "peak_per_ms",
        "windows",
        "lat_mu",
        "lat_sigma",
        "ttft",
        "in_mu",
        "in_sigma",
        "out_mu",
        "out_sigma",
        "salt",
        "factor",
    )

    def __init__(self, route: Route, idx: int, windows: list[IncidentWindow]) -> None:
        self.route = route
        self.idx = idx
        self.peak_per_ms = route.peak_rps / 1000.0
        self.windows = windows
        self.lat_mu, self.lat_sigma = route.latency_ms.mu, route.latency_ms.sigma
        self.ttft = (route.ttft_ms.mu, route.ttft_ms.sigma) if route.ttft_ms else None
        self.in_mu, self.in_sigma = route.input_tokens.mu, route.input_tokens.sigma
        self.out_mu, self.out_sigma = route.output_tokens.mu, route.output_tokens.sigma
        self.salt = (hash_str(route.name) * 0x9E3779B97F4A7C15) & _MASK64
        self.factor: Callable[[float], float] = route.shape_factor


def hash_str(text: str) -> int:
    """A stable 64-bit FNV-1a hash (Python's ``hash`` is salted per process)."""
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & _MASK64
    return h


class _Effective:
    """Route parameters at one instant, after the active incidents are applied."""

    __slots__ = (
        "pass_rate",
        "model",
        "served",
        "provider",
        "prompt_version",
        "lat_factor",
        "ttft_factor",
        "truncation_rate",
        "max_output_tokens",
        "truncate_to",
        "storm404",
        "retry_storm",
        "agreement",
        "canary",
    )

    def __init__(self, route: Route) -> None:
        self.pass_rate = route.pass_rate
        self.model = route.model
        self.served = route.served_model
        self.provider = route.provider
        self.prompt_version = route.prompt_version
        self.lat_factor = 1.0
        self.ttft_factor = 1.0
        self.truncation_rate = route.truncation_rate
        self.max_output_tokens = route.max_output_tokens
        self.truncate_to = route.max_output_tokens
        self.storm404: Alias404Storm | None = None
        self.retry_storm: RetryStorm | None = None
        self.agreement = route.judge_agreement
        self.canary: Canary | None = None

    def apply(self, inc: Any) -> None:
        if isinstance(inc, QualityDrop):
            self.pass_rate = inc.pass_rate if inc.pass_rate is not None else self.pass_rate + inc.pass_rate_delta
            if inc.prompt_version:
                self.prompt_version = inc.prompt_version
        elif isinstance(inc, SilentTierUp):
            self.served = inc.model
            if inc.provider:
                self.provider = inc.provider
            if inc.requested_model:
                self.model = inc.requested_model
            self.pass_rate += inc.pass_rate_delta
            self.lat_factor *= inc.latency_factor
            self.ttft_factor *= inc.latency_factor
        elif isinstance(inc, Alias404Storm):
            self.storm404 = inc
        elif isinstance(inc, LatencyRegression):
            self.lat_factor *= inc.latency_factor
            self.ttft_factor *= inc.ttft_factor if inc.ttft_factor is not None else inc.latency_factor
        elif isinstance(inc, RetryStorm):
            self.retry_storm = inc
        elif isinstance(inc, JudgeDrift):
            self.agreement = inc.agreement
        elif isinstance(inc, Canary):
            self.canary = inc
        elif isinstance(inc, TruncationSpike):
            self.truncation_rate = inc.truncation_rate
            if inc.max_output_tokens is not None:
                self.truncate_to = inc.max_output_tokens
        self.pass_rate = min(1.0, max(0.0, self.pass_rate))


class TrafficGenerator:
    """Iterable of :class:`SimEvent` for a scenario; ``stats`` fills in while you iterate.

    Each iteration starts afresh from the seed (iterating twice gives the same events twice;
    concurrent iterations do not share state). A ``start_ms`` override shifts the whole stream
    in time: the daily shape stays anchored to the scenario's declared start, so traffic
    around each incident is the same whatever the start.
    """

    def __init__(self, scenario: Scenario, *, seed: int | None = None, start_ms: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.start_ms = scenario.start_ms if start_ms is None else start_ms
        self.end_ms = self.start_ms + scenario.duration_ms
        self.windows = scenario.incident_windows(self.start_ms)
        self.stats = GeneratorStats()

    # --- the main loop --------------------------------------------------------------------

    def __iter__(self) -> Iterator[SimEvent]:
        run = copy.copy(self)  # per-iteration state lives on the copy; stats are shared
        self.stats = run.stats = GeneratorStats()
        return run._events()

    def _events(self) -> Iterator[SimEvent]:
        stats = self.stats
        rng = random.Random(self.seed)
        self._rng = rng
        self._seq = itertools.count()
        self._pending: list[tuple[int, int, SimEvent]] = []
        self._noise = self.scenario.noise
        self._clock0 = float(self.scenario.start_ms)  # the daily shape's clock at offset 0
        states = [
            _RouteState(r, i, [w for w in self.windows if w.route == r.name])
            for i, r in enumerate(self.scenario.routes)
        ]
        start = self.start_ms
        duration = float(self.scenario.duration_ms)
        # arrivals are offsets (ms) from the start: a start override is an exact time shift
        arrivals = [(self._next_arrival(st, 0.0), st.idx) for st in states]
        heapq.heapify(arrivals)
        pending = self._pending
        by_kind = stats.by_kind
        heappop = heapq.heappop

        while arrivals and arrivals[0][0] < duration:
            offset, idx = arrivals[0]
            now = start + int(offset)
            while pending and pending[0][0] <= now:
                ev = heappop(pending)[2]
                by_kind[f"{ev.topic_kind}:{ev.note}"] += 1
                yield ev
            st = states[idx]
            self._logical_request(st, now)
            stats.logical_requests += 1
            stats.by_route[st.route.name] += 1
            if len(pending) > stats.max_pending:
                stats.max_pending = len(pending)
            heapq.heapreplace(arrivals, (self._next_arrival(st, offset), idx))

        while pending:
            ev = heappop(pending)[2]
            by_kind[f"{ev.topic_kind}:{ev.note}"] += 1
            yield ev

    def _next_arrival(self, st: _RouteState, offset: float) -> float:
        """Next arrival after ``offset`` of a Poisson process with rate peak * shape (thinning)."""
        rng = self._rng
        expo = rng.expovariate
        rnd = rng.random
        rate = st.peak_per_ms
        factor = st.factor
        duration = self.scenario.duration_ms
        clock0 = self._clock0
        while True:
            offset += expo(rate)
            if offset >= duration or rnd() < factor(((clock0 + offset) / _HOUR_MS) % 24.0):
                return offset

    def _push(self, publish_ms: int, topic: TopicKind, key: bytes | None, value: bytes, note: Note) -> None:
        ev = SimEvent(publish_ms, topic, key, value, note)
        heapq.heappush(self._pending, (publish_ms, next(self._seq), ev))
        stats = self.stats
        if stats.first_publish_ms is None or publish_ms < stats.first_publish_ms:
            stats.first_publish_ms = publish_ms
        if stats.last_publish_ms is None or publish_ms > stats.last_publish_ms:
            stats.last_publish_ms = publish_ms

    def _publish(
        self,
        publish_ms: int,
        topic: TopicKind,
        key: bytes,
        body: dict[str, Any],
        dup_fraction: float,
        note: Note = "original",
    ) -> None:
        """Queue an event, plus a duplicate and/or a malformed variant as the noise says."""
        rng = self._rng
        noise = self._noise
        value = orjson.dumps(body)
        self._push(publish_ms, topic, key, value, note)
        if dup_fraction and rng.random() < dup_fraction:
            delay = 1000 + int(rng.random() * max(0, noise.duplicate_delay_max - 1000))
            self._push(publish_ms + delay, topic, key, value, "duplicate")
        if noise.malformed_fraction and rng.random() < noise.malformed_fraction:
            self._push(publish_ms + 1, topic, key, _malform(rng, topic, body, value), "malformed")

    # --- one logical request (with its retries and verdict) --------------------------------

    def _logical_request(self, st: _RouteState, now: int) -> None:
        rng = self._rng
        route = st.route
        eff = _Effective(route)
        for w in st.windows:
            if w.start_ms <= now < w.end_ms:
                eff.apply(w.incident)

        experiment = route.experiment
        extra_errors = 0.0
        if eff.canary is not None:
            c = eff.canary
            if rng.random() < c.share:
                experiment = c.arm
                eff.model = eff.served = c.model
                if c.provider:
                    eff.provider = c.provider
                eff.pass_rate = min(1.0, max(0.0, eff.pass_rate + c.pass_rate_delta))
                eff.lat_factor *= c.latency_factor
                extra_errors = c.error_rate or 0.0
            else:
                experiment = c.control
        base_id = f"req_{rng.getrandbits(64):016x}"
        user = rng.randrange(route.users)
        user_hash = f"{(user * 0x9E3779B97F4A7C15 + st.salt) & _MASK64:016x}"
        ts = now
        attempt = 1
        while True:
            request_id = base_id if attempt == 1 else f"{base_id}-a{attempt}"
            body: dict[str, Any] = {
                "schema_version": REQUEST_SCHEMA_VERSION,
                "request_id": request_id,
                "ts": ts,
                "route": route.name,
                "team": route.team,
                "provider": eff.provider,
                "model": eff.model,
            }
            retry_max = route.max_attempts
            retry_p = route.retry_rate
            storm = eff.storm404
            rstorm = eff.retry_storm
            error: tuple[str, int | None] | None = None
            if storm is not None and rng.random() < storm.error_fraction:
                body["model"] = storm.alias or f"{route.model}-v2"
                error = (storm.error_type, storm.http_status)
                latency = math.exp(storm.latency_ms.mu + storm.latency_ms.sigma * rng.gauss(0.0, 1.0))
                retry_p = 0.0  # a 404 is not retryable
            elif rstorm is not None and rng.random() < rstorm.failure_rate:
                error = (rstorm.error_type, rstorm.http_status)
                latency = math.exp(rstorm.latency_ms.mu + rstorm.latency_ms.sigma * rng.gauss(0.0, 1.0))
                retry_max, retry_p = rstorm.max_attempts, 1.0
            elif extra_errors and rng.random() < extra_errors:
                error = ("server_error", 500)
                latency = math.exp(st.lat_mu + st.lat_sigma * rng.gauss(0.0, 1.0)) * 0.5 * eff.lat_factor
            elif route.error_rate and rng.random() < route.error_rate:
                u = rng.random()
                i = 0
                while i < len(_BASELINE_CUM) - 1 and u >= _BASELINE_CUM[i]:
                    i += 1
                etype, status, _ = _BASELINE_ERRORS[i]
                error = (etype, status)
                if etype == "timeout":
                    latency = 30_000.0 + rng.random() * 30_000.0
                elif etype == "rate_limited":
                    latency = 20.0 + rng.random() * 80.0
                else:
                    latency = math.exp(st.lat_mu + st.lat_sigma * rng.gauss(0.0, 1.0)) * 0.5 * eff.lat_factor
            else:
                latency = 0.0  # set below

            if error is not None:
                etype, status = error
                latency = round(latency, 1)
                body.update(
                    response_model="",
                    input_tokens=0,
                    output_tokens=0,
                    latency_ms=latency,
                    status="error",
                    error_type=etype,
                )
                if status is not None:
                    body["http_status"] = status
                body.update(attempt=attempt, prompt_version=eff.prompt_version, user_hash=user_hash)
                if experiment:
                    body["experiment"] = experiment
                if route.tags:
                    body["tags"] = route.tags
                end_ms = ts + int(latency)
                retry = attempt < retry_max and retry_p > 0 and (retry_p >= 1.0 or rng.random() < retry_p)
                self._publish(end_ms, "requests", request_id.encode(), body, self._noise.request_duplicate_fraction)
                if not retry:
                    return
                backoff = 200.0 * (2 ** (attempt - 1)) * (0.5 + rng.random())
                ts = end_ms + int(backoff)
                attempt += 1
                continue

            # --- a successful call ---
            latency = round(math.exp(st.lat_mu + st.lat_sigma * rng.gauss(0.0, 1.0)) * eff.lat_factor, 1)
            user_in = math.exp(st.in_mu + st.in_sigma * rng.gauss(0.0, 1.0))
            input_tokens = route.system_prompt_tokens + max(1, int(user_in))
            cached = route.system_prompt_tokens if route.cache_hit_rate and rng.random() < route.cache_hit_rate else 0
            output_tokens = max(1, int(math.exp(st.out_mu + st.out_sigma * rng.gauss(0.0, 1.0))))
            finish = "stop"
            cap = eff.max_output_tokens
            if cap is not None and output_tokens > cap:
                output_tokens, finish = cap, "length"
            elif eff.truncation_rate and rng.random() < eff.truncation_rate:
                finish = "length"
                if eff.truncate_to is not None:
                    output_tokens = eff.truncate_to
            body.update(
                response_model=eff.served,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_input_tokens=cached,
                latency_ms=latency,
            )
            if st.ttft is not None:
                ttft = math.exp(st.ttft[0] + st.ttft[1] * rng.gauss(0.0, 1.0)) * eff.ttft_factor
                body["ttft_ms"] = round(min(ttft, latency * 0.95), 1)
            body.update(
                status="ok",
                http_status=200,
                finish_reason=finish,
                attempt=attempt,
                prompt_version=eff.prompt_version,
                system_prompt_tokens=route.system_prompt_tokens,
                user_hash=user_hash,
                response_hash=f"{rng.getrandbits(64):016x}",
            )
            if route.tags:
                body["tags"] = route.tags
            if experiment:
                body["experiment"] = experiment
            end_ms = ts + int(latency)
            request_publish = end_ms
            labeled = self._human_label(route, eff, request_id, end_ms)

            if not labeled and route.judged_fraction and rng.random() < route.judged_fraction:
                passed = rng.random() < eff.pass_rate
                score = 0.5 + 0.5 * rng.random() if passed else 0.49 * rng.random()
                noise = self._noise
                if noise.early_verdict_fraction and rng.random() < noise.early_verdict_fraction:
                    delay = 200 + int(rng.random() * 1800)
                    verdict_ts = end_ms + delay
                    # the producer holds the request back: it lands after its verdict
                    request_publish = verdict_ts + 1 + int(rng.random() * noise.early_by_max)
                    early = True
                else:
                    verdict_ts = end_ms + self._judge_delay(route)
                    early = False
                verdict: dict[str, Any] = {
                    "schema_version": VERDICT_SCHEMA_VERSION,
                    "request_id": request_id,
                    "ts": verdict_ts,
                    "evaluator": route.evaluator,
                    "kind": route.evaluator_kind,
                    "passed": passed,
                    "score": round(min(score, 1.0), 3),
                }
                if route.eval_cost_usd is not None:
                    verdict["eval_cost_usd"] = route.eval_cost_usd
                if early:
                    # keep the queueing order deterministic: verdict first, then its request
                    self._publish(
                        verdict_ts,
                        "verdicts",
                        request_id.encode(),
                        verdict,
                        self._noise.verdict_duplicate_fraction,
                        "early",
                    )
                    self._publish(
                        request_publish,
                        "requests",
                        request_id.encode(),
                        body,
                        self._noise.request_duplicate_fraction,
                    )
                    return
                self._publish(
                    request_publish, "requests", request_id.encode(), body, self._noise.request_duplicate_fraction
                )
                self._publish(
                    verdict_ts, "verdicts", request_id.encode(), verdict, self._noise.verdict_duplicate_fraction
                )
                return
            self._publish(
                request_publish, "requests", request_id.encode(), body, self._noise.request_duplicate_fraction
            )
            return

    def _human_label(self, route: Route, eff: _Effective, request_id: str, end_ms: int) -> bool:
        """A human label on ``human_fraction`` of ok requests, and the judge's verdict on the same
        request: they agree with probability ``eff.agreement`` (a drifting judge agrees less)."""
        rng = self._rng
        if not route.human_fraction or rng.random() >= route.human_fraction:
            return False
        human = rng.random() < eff.pass_rate
        judge = human if rng.random() < eff.agreement else not human
        delay = self._judge_delay(route)
        for evaluator, kind, passed, at in ((route.evaluator, route.evaluator_kind, judge, end_ms + delay),
                                            (route.human_evaluator, "human", human, end_ms + 4 * delay)):  # fmt: skip
            verdict = {"schema_version": VERDICT_SCHEMA_VERSION, "request_id": request_id, "ts": at,
                       "evaluator": evaluator, "kind": kind, "passed": passed}  # fmt: skip
            self._publish(at, "verdicts", request_id.encode(), verdict, 0.0)
        return True

    def _judge_delay(self, route: Route) -> int:
        rng = self._rng
        jd = route.judge_delay
        if jd.tail_fraction and rng.random() < jd.tail_fraction:
            median, sigma = jd.tail_median, jd.tail_sigma
        else:
            median, sigma = jd.median, jd.sigma
        delay = median * math.exp(sigma * rng.gauss(0.0, 1.0))
        return int(min(max(delay, jd.min), jd.max))


def _malform(rng: random.Random, topic: TopicKind, body: dict[str, Any], value: bytes) -> bytes:
    """A broken variant of ``body``: invalid JSON, not an object, or a schema violation."""
    variant = rng.randrange(6)
    if variant == 0:  # truncated JSON
        return value[: max(1, int(len(value) * (0.2 + 0.6 * rng.random())))]
    if variant == 1:  # a JSON array, not an object
        return b"[" + value + b"]"
    broken = dict(body)
    if variant == 2:  # a required field missing
        broken.pop("route" if topic == "requests" else "evaluator", None)
    elif variant == 3:  # wrong type
        broken["input_tokens" if topic == "requests" else "passed"] = "lots" if topic == "requests" else "maybe"
    elif variant == 4:  # a value out of its domain
        if topic == "requests":
            broken["status"] = "maybe"
        else:
            broken["kind"] = "robot"
    else:  # an unreadable timestamp
        broken["ts"] = "yesterday"
    return orjson.dumps(broken)


def generate(scenario: Scenario, *, seed: int | None = None, start_ms: int | None = None) -> Iterator[SimEvent]:
    """Events of ``scenario`` in publish order; ``seed``/``start_ms`` override the scenario's."""
    return iter(TrafficGenerator(scenario, seed=seed, start_ms=start_ms))
