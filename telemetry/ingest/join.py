"""The request/verdict join: pure state transitions, no I/O.

Every verdict is attached to its request exactly once, whatever the arrival order. The state
here is a *cache* of what ClickHouse already holds (requests and their stored verdicts, and
verdicts parked while their request has not arrived); ClickHouse is the source of truth, so a
restarted worker rebuilds this state from it (see ``telemetry.storage.store``).

A batch is handled in two steps so that the core stays pure:

1. :meth:`JoinState.ids_to_look_up` names the request ids whose fate the cache cannot decide;
   the shell fetches them from storage into a :class:`Lookup`.
2. :meth:`JoinState.apply` decides, updates the cache and returns a :class:`JoinOutcome`: the
   rows to write. The shell writes them (retrying until ClickHouse has them) before it lets
   the offsets be committed.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from telemetry.contracts.request import RequestEvent
from telemetry.contracts.verdict import VerdictEvent
from telemetry.ingest.shard import shard_of
from telemetry.pricing import Cost


@dataclass(slots=True)
class KnownRequest:
    """What a verdict needs from its request, and which evaluators already judged it."""

    request_id: str
    ts_ms: int
    route: str
    team: str
    model: str
    served_model: str
    cost_usd: float | None
    evaluators: set[str] | None = None  # created on the first verdict: most requests get none


@dataclass(frozen=True, slots=True)
class PricedRequest:
    """A valid request event with its cost and where it came from."""

    event: RequestEvent
    cost: Cost
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class JoinedVerdict:
    """A verdict attached to its request. ``late``: judged more than the horizon after the request."""

    verdict: VerdictEvent
    request: KnownRequest
    late: bool


@dataclass(frozen=True, slots=True)
class Lookup:
    """What storage holds for some request ids: the requests (with the evaluators of their
    stored verdicts) and the evaluators of their parked verdicts."""

    requests: dict[str, KnownRequest] = field(default_factory=dict)
    pending: dict[str, list[VerdictEvent]] = field(default_factory=dict)


@dataclass(slots=True)
class JoinOutcome:
    """Rows to write for one batch, and what was recognised as a duplicate."""

    new_requests: list[PricedRequest] = field(default_factory=list)
    joined: list[JoinedVerdict] = field(default_factory=list)
    parked: list[VerdictEvent] = field(default_factory=list)
    duplicate_requests: int = 0
    duplicate_verdicts: int = 0
    # Largest accepted event time per source (topic, partition) in the batch, duplicates
    # included: what the detectors' clock advances on (set by the pipeline).
    event_times: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.new_requests) + len(self.joined) + len(self.parked)


def known_from(priced: PricedRequest) -> KnownRequest:
    """The cache entry of a request. Route, team and model names are interned: a million
    cached requests share a handful of strings instead of holding a million copies."""
    event = priced.event
    intern = sys.intern
    return KnownRequest(
        request_id=event.request_id,
        ts_ms=event.ts,
        route=intern(event.route),
        team=intern(event.team),
        model=intern(event.model),
        served_model=intern(event.served_model),
        cost_usd=priced.cost.usd,
        evaluators=None,
    )


class JoinState:
    """Cache of stored requests (bounded, oldest first out) and of parked verdicts.

    Invariant: every stored request with ``ts >= complete_since_ms`` is in the cache, so a
    request id newer than that and missing from the cache is new without asking storage.
    """

    def __init__(self, *, horizon_ms: int, capacity: int = 1_000_000, complete_since_ms: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.horizon_ms = horizon_ms
        self.capacity = capacity
        self.complete_since_ms = complete_since_ms
        self._requests: dict[str, KnownRequest] = {}
        self._order: deque[KnownRequest] = deque()  # insertion order, for O(1) eviction
        self._parked: dict[str, dict[str, VerdictEvent]] = {}

    # -- loading (startup) -----------------------------------------------------------------
    def remember(self, requests: Iterable[KnownRequest]) -> None:
        """Add stored requests to the cache (startup load, or lookups)."""
        for known in requests:
            self._put(known)
        self._trim()

    def park(self, verdicts: Iterable[VerdictEvent]) -> None:
        """Add stored, not yet joined verdicts (startup load)."""
        for verdict in verdicts:
            self._parked.setdefault(verdict.request_id, {})[verdict.evaluator] = verdict

    @property
    def cached_requests(self) -> int:
        return len(self._requests)

    @property
    def parked_verdicts(self) -> int:
        return sum(len(v) for v in self._parked.values())

    def parked_request_ids(self) -> list[str]:
        return list(self._parked)

    # -- step 1 ------------------------------------------------------------------------------
    def ids_to_look_up(self, requests: Sequence[PricedRequest], verdicts: Sequence[VerdictEvent]) -> set[str]:
        """Request ids the cache cannot decide: old requests that may be duplicates, and verdicts
        whose request is neither cached nor already waiting for them."""
        ids: set[str] = set()
        for priced in requests:
            rid = priced.event.request_id
            if rid not in self._requests and priced.event.ts < self.complete_since_ms:
                ids.add(rid)
        for verdict in verdicts:
            rid = verdict.request_id
            if rid not in self._requests and rid not in self._parked:
                ids.add(rid)
        return ids

    # -- step 2 ------------------------------------------------------------------------------
    def apply(
        self,
        requests: Sequence[PricedRequest],
        verdicts: Sequence[VerdictEvent],
        lookup: Lookup | None = None,
    ) -> JoinOutcome:
        """Decide every event of the batch; update the cache; return the rows to write.

        Requests are applied before verdicts, so a verdict and its request in one batch join.
        """
        lookup = lookup or Lookup()
        out = JoinOutcome()
        for rid, known in lookup.requests.items():
            if rid not in self._requests:
                self._put(known)
        for rid, stored in lookup.pending.items():
            if rid not in self._requests:
                parked = self._parked.setdefault(rid, {})
                for verdict in stored:
                    parked.setdefault(verdict.evaluator, verdict)
        for priced in requests:
            rid = priced.event.request_id
            cached = self._requests.get(rid)
            if cached is None:
                known = known_from(priced)
                self._put(known)
                out.new_requests.append(priced)
            else:
                known = cached
                out.duplicate_requests += 1
            self._release_parked(known, out)
        for verdict in verdicts:
            self._apply_verdict(verdict, out)
        self._trim()
        return out

    # -- internals ---------------------------------------------------------------------------
    def _apply_verdict(self, verdict: VerdictEvent, out: JoinOutcome) -> None:
        known = self._requests.get(verdict.request_id)
        if known is not None:
            if known.evaluators is None:
                known.evaluators = set()
            elif verdict.evaluator in known.evaluators:
                out.duplicate_verdicts += 1
                return
            known.evaluators.add(verdict.evaluator)
            out.joined.append(JoinedVerdict(verdict, known, self._is_late(verdict, known)))
            return
        parked = self._parked.setdefault(verdict.request_id, {})
        if verdict.evaluator in parked:
            out.duplicate_verdicts += 1
            return
        parked[verdict.evaluator] = verdict
        out.parked.append(verdict)

    def _release_parked(self, known: KnownRequest, out: JoinOutcome) -> None:
        parked = self._parked.pop(known.request_id, None)
        if not parked:
            return
        if known.evaluators is None:
            known.evaluators = set()
        for evaluator, verdict in parked.items():
            if evaluator in known.evaluators:
                continue
            known.evaluators.add(evaluator)
            out.joined.append(JoinedVerdict(verdict, known, self._is_late(verdict, known)))

    def _is_late(self, verdict: VerdictEvent, known: KnownRequest) -> bool:
        return verdict.ts - known.ts_ms > self.horizon_ms

    def _put(self, known: KnownRequest) -> None:
        self._requests[known.request_id] = known
        self._order.append(known)

    def _trim(self) -> None:
        """Evict the oldest entries down to capacity. Runs only between batches: an eviction
        in the middle of :meth:`apply` would drop a request that :meth:`ids_to_look_up` had
        counted on, and its verdict would be parked instead of joined.

        Popping the oldest key of a dict is O(n) in CPython once many were deleted (the entries
        table keeps tombstones), so the insertion order lives in a deque. Every put appends its
        entry; an entry evicts only if it is still the cached one (a re-added id has a newer
        entry further back), so each cached id has exactly one live deque entry."""
        while len(self._requests) > self.capacity:
            oldest = self._order.popleft()
            if self._requests.get(oldest.request_id) is oldest:
                del self._requests[oldest.request_id]
                self.complete_since_ms = max(self.complete_since_ms, oldest.ts_ms + 1)


class NotOwned(RuntimeError):
    """An event of a shard this worker does not own reached the join (a bug in the shell)."""


class ShardedJoin:
    """The join of the shards this worker owns: one :class:`JoinState` per shard.

    Every event of a request id is routed to that id's shard (``telemetry.ingest.shard``) and
    a shard has one owner at a time, so each state sees every event of its ids: the cache
    invariant of :class:`JoinState` holds per shard whatever the number of workers. A shard is
    adopted (its state loaded from storage) when assigned and released when revoked.
    """

    def __init__(self, shards: int) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.shards = shards
        self._states: dict[int, JoinState] = {}

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._states)

    def adopt(self, shard: int, state: JoinState) -> None:
        self._states[shard] = state

    def release(self, shard: int) -> None:
        self._states.pop(shard, None)

    @property
    def cached_requests(self) -> int:
        return sum(s.cached_requests for s in self._states.values())

    @property
    def parked_verdicts(self) -> int:
        return sum(s.parked_verdicts for s in self._states.values())

    def _shard(self, request_id: str) -> int:
        return shard_of(request_id, self.shards) if self.shards > 1 else 0

    def _state(self, shard: int) -> JoinState:
        state = self._states.get(shard)
        if state is None:
            raise NotOwned(f"shard {shard} is not owned by this worker (owned: {sorted(self._states)})")
        return state

    def _split(
        self, requests: Sequence[PricedRequest], verdicts: Sequence[VerdictEvent]
    ) -> dict[int, tuple[list[PricedRequest], list[VerdictEvent]]]:
        groups: dict[int, tuple[list[PricedRequest], list[VerdictEvent]]] = {}
        for priced in requests:
            groups.setdefault(self._shard(priced.event.request_id), ([], []))[0].append(priced)
        for verdict in verdicts:
            groups.setdefault(self._shard(verdict.request_id), ([], []))[1].append(verdict)
        return groups

    def ids_to_look_up(self, requests: Sequence[PricedRequest], verdicts: Sequence[VerdictEvent]) -> set[str]:
        ids: set[str] = set()
        for shard, (reqs, verds) in self._split(requests, verdicts).items():
            ids |= self._state(shard).ids_to_look_up(reqs, verds)
        return ids

    def apply(
        self, requests: Sequence[PricedRequest], verdicts: Sequence[VerdictEvent], lookup: Lookup | None = None
    ) -> JoinOutcome:
        """:meth:`JoinState.apply` per shard; one outcome (requests before verdicts per shard)."""
        lookup = lookup or Lookup()
        out = JoinOutcome()
        for shard, (reqs, verds) in self._split(requests, verdicts).items():
            state = self._state(shard)
            part = Lookup(
                {rid: k for rid, k in lookup.requests.items() if self._shard(rid) == shard},
                {rid: v for rid, v in lookup.pending.items() if self._shard(rid) == shard},
            )
            one = state.apply(reqs, verds, part)
            out.new_requests += one.new_requests
            out.joined += one.joined
            out.parked += one.parked
            out.duplicate_requests += one.duplicate_requests
            out.duplicate_verdicts += one.duplicate_verdicts
        return out
