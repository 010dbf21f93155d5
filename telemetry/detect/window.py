"""Per-route request aggregates shared by the request-side detectors.

A :class:`RouteWindow` holds, for one route, bounded rings instead of events:

- **minutes**: the last :data:`MINUTE_SLOTS` minutes (by request time), one column per counter
  (requests, ok, first attempts, truncations, cost, priced requests, slow requests against the
  route's p95 and p99 targets, errors), plus per-minute dicts of served models and of
  ``(error_type, requested model)`` and a coarse latency histogram of ok requests (evidence);
- **hours**: the last :data:`HOUR_SLOTS` hours of requests, ok, truncations, cost, priced
  requests and errors (baselines of cost, truncation and errors, budget projection, judged fraction);
- **model references**: per served model of ok responses, exponentially decayed (half-life one day) request,
  cost and priced counts: the route's reference model mix for tier-switch detection.

Every fact costs O(1). A minute is *folded* into the hour ring and the model references when it
stops being the current minute; a late fact for an older minute goes to its minute slot (if still
held) and straight to the hour ring. Facts older than the hour ring are dropped.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from telemetry.detect.facts import RequestFact

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MINUTE_SLOTS = 64
HOUR_SLOTS = 24 * 8
REF_HALF_LIFE_MINUTES = 24 * 60
LATENCY_BOUNDS: tuple[float, ...] = tuple(10.0 * 1.2**i for i in range(62))
"""Upper edges (ms) of the latency histogram: 10 ms x 1.2^i, up to ~1.1 h; ±10% resolution."""

_COLUMNS = ("req", "ok", "first", "length", "cost", "priced", "slow95", "slow99", "err")
_HOUR_COLUMNS = ("hreq", "hok", "hlen", "hcost", "hpriced", "herr")
_MINUTE_OF = {"hreq": "req", "hok": "ok", "hlen": "length", "hcost": "cost", "hpriced": "priced", "herr": "err"}


def _dense(pairs: list[list[int]]) -> list[int]:
    hist = [0] * (len(LATENCY_BOUNDS) + 1)
    for i, n in pairs:
        hist[i] = n
    return hist


class ModelRef:
    """Decayed request/cost counts of one served model on one route."""

    __slots__ = ("n", "cost", "priced", "minute", "first_seen_ms", "last_seen_ms", "requested")

    def __init__(self, minute: int, ts_ms: int) -> None:
        self.n = 0.0
        self.cost = 0.0
        self.priced = 0.0
        self.minute = minute
        self.first_seen_ms = ts_ms
        self.last_seen_ms = ts_ms
        self.requested = ""

    def decay_to(self, minute: int) -> None:
        """Age the counts to ``minute`` (no-op for an earlier minute)."""
        if minute > self.minute:
            f = 0.5 ** ((minute - self.minute) / REF_HALF_LIFE_MINUTES)
            self.n *= f
            self.cost *= f
            self.priced *= f
            self.minute = minute

    def to_list(self) -> list[Any]:
        return [self.n, self.cost, self.priced, self.minute, self.first_seen_ms, self.last_seen_ms, self.requested]

    @classmethod
    def from_list(cls, raw: list[Any]) -> ModelRef:
        ref = cls(int(raw[3]), int(raw[4]))
        ref.n, ref.cost, ref.priced = float(raw[0]), float(raw[1]), float(raw[2])
        ref.last_seen_ms, ref.requested = int(raw[5]), str(raw[6])
        return ref


class RouteWindow:
    """Bounded request aggregates of one route. See the module docstring.

    ``slow95_ms`` / ``slow99_ms`` are the route's latency targets (None or 0: not counted); requests
    slower than a target are counted as they arrive.
    """

    __slots__ = (
        *_COLUMNS,
        *_HOUR_COLUMNS,
        "slow95_ms",
        "slow99_ms",
        "cur",
        "first_ms",
        "last_ms",
        "team",
        "models",
        "errors",
        "hist",
        "hkey",
        "refs",
        "hour_version",
        "_hcache",
    )

    def __init__(self, slow95_ms: float | None, slow99_ms: float | None) -> None:
        self.slow95_ms = float(slow95_ms) if slow95_ms else math.inf
        self.slow99_ms = float(slow99_ms) if slow99_ms else math.inf
        self.cur = -1
        self.first_ms = -1
        self.last_ms = -1
        self.team = ""
        for name in _COLUMNS:
            setattr(self, name, [0.0] * MINUTE_SLOTS if name == "cost" else [0] * MINUTE_SLOTS)
        self.models: list[dict[str, list[float]]] = [{} for _ in range(MINUTE_SLOTS)]
        self.errors: list[dict[tuple[str, str], int] | None] = [None] * MINUTE_SLOTS
        self.hist: list[list[int] | None] = [None] * MINUTE_SLOTS
        self.hkey = [-1] * HOUR_SLOTS
        for name in _HOUR_COLUMNS:
            setattr(self, name, [0.0] * HOUR_SLOTS if name == "hcost" else [0] * HOUR_SLOTS)
        self.refs: dict[str, ModelRef] = {}
        self.hour_version = 0
        self._hcache: dict[tuple[str, int], tuple[int, int, float]] = {}

    # typed views of the slotted columns (set in __init__ via setattr)
    req: list[int]
    ok: list[int]
    first: list[int]
    length: list[int]
    cost: list[float]
    priced: list[int]
    slow95: list[int]
    slow99: list[int]
    err: list[int]
    hreq: list[int]
    hok: list[int]
    hlen: list[int]
    hcost: list[float]
    hpriced: list[int]
    herr: list[int]

    # --- writing ---------------------------------------------------------------------------
    def add_all(self, facts: Iterable[RequestFact]) -> None:
        """Add facts of this route (any order; late ones go to their own minute)."""
        for f in facts:
            self.add(f)

    def add(self, f: RequestFact) -> None:
        """Add one request fact of this route. O(1)."""
        ts = f.ts_ms
        m = ts // MINUTE_MS
        if m > self.cur:
            self.advance(m)
        if self.first_ms < 0 or ts < self.first_ms:
            self.first_ms = ts
        if ts > self.last_ms:
            self.last_ms = ts
        if f.team:
            self.team = f.team
        late = m < self.cur
        if m <= self.cur - MINUTE_SLOTS:
            self._add_hour(f, m)
            if f.status == "ok":
                self._add_ref(f, m)
            return
        s = m % MINUTE_SLOTS
        self.req[s] += 1
        if f.attempt <= 1:
            self.first[s] += 1
        c = f.cost_usd
        if c is not None:
            self.cost[s] += c
            self.priced[s] += 1
        if f.status != "ok":
            self.err[s] += 1
            e = self.errors[s]
            if e is None:
                e = self.errors[s] = {}
            key = (f.error_type or "unknown", f.model)
            e[key] = e.get(key, 0) + 1
            if late:
                self._add_hour(f, m)
            return
        self.ok[s] += 1
        if f.finish_reason == "length":
            self.length[s] += 1
        lat = f.latency_ms
        if lat > self.slow95_ms:
            self.slow95[s] += 1
        if lat > self.slow99_ms:
            self.slow99[s] += 1
        h = self.hist[s]
        if h is None:
            h = self.hist[s] = [0] * (len(LATENCY_BOUNDS) + 1)
        h[bisect_right(LATENCY_BOUNDS, lat)] += 1
        served = f.served_model
        row = self.models[s].get(served)
        if row is None:
            row = self.models[s][served] = [0.0, 0.0, 0.0, 0.0]
        row[0] += 1.0
        if c is not None:
            row[1] += c
            row[2] += 1.0
        if served != f.model:
            row[3] += 1.0
        ref = self.refs.get(served)
        if ref is None:
            ref = self.refs[served] = ModelRef(m, ts)
        if ts > ref.last_seen_ms:
            ref.last_seen_ms = ts
        if ts < ref.first_seen_ms:
            ref.first_seen_ms = ts
        ref.requested = f.model
        if late:
            self._add_hour(f, m)
            self._add_ref(f, m)

    def advance(self, minute: int) -> None:
        """Make ``minute`` the current minute: fold the previous one, clear reused slots."""
        cur = self.cur
        if cur < 0:
            self.cur = minute
            return
        if minute <= cur:
            return
        self._fold(cur)
        for mm in range(max(cur + 1, minute - MINUTE_SLOTS + 1), minute + 1):
            self._clear(mm % MINUTE_SLOTS)
        self.cur = minute

    def _clear(self, s: int) -> None:
        for name in _COLUMNS:
            col = getattr(self, name)
            col[s] = 0.0 if name == "cost" else 0
        self.models[s] = {}
        self.errors[s] = None
        self.hist[s] = None

    def _fold(self, minute: int) -> None:
        s = minute % MINUTE_SLOTS
        hs = self._hour_slot(minute // 60)
        if hs >= 0:
            self.hreq[hs] += self.req[s]
            self.hok[hs] += self.ok[s]
            self.hlen[hs] += self.length[s]
            self.hcost[hs] += self.cost[s]
            self.hpriced[hs] += self.priced[s]
            self.herr[hs] += self.err[s]
        for served, row in self.models[s].items():
            ref = self.refs.get(served)
            if ref is None:
                ref = self.refs[served] = ModelRef(minute, minute * MINUTE_MS)
            ref.decay_to(minute)
            ref.n += row[0]
            ref.cost += row[1]
            ref.priced += row[2]
        if len(self.refs) > 1:
            for served in [k for k, r in self.refs.items() if r.n < 1e-3 and r.minute < minute - 60]:
                del self.refs[served]

    def _hour_slot(self, hour: int) -> int:
        s = hour % HOUR_SLOTS
        key = self.hkey[s]
        if key != hour:
            if key > hour:
                return -1
            self.hkey[s] = hour
            self.hreq[s] = self.hok[s] = self.hlen[s] = self.hpriced[s] = self.herr[s] = 0
            self.hcost[s] = 0.0
        return s

    def _add_hour(self, f: RequestFact, minute: int) -> None:
        if minute // 60 < self.cur // 60:
            self.hour_version += 1  # a completed hour changed: cached sums are stale
        hs = self._hour_slot(minute // 60)
        if hs < 0:
            return
        self.hreq[hs] += 1
        if f.cost_usd is not None:
            self.hcost[hs] += f.cost_usd
            self.hpriced[hs] += 1
        if f.status == "ok":
            self.hok[hs] += 1
            if f.finish_reason == "length":
                self.hlen[hs] += 1
        else:
            self.herr[hs] += 1

    def _add_ref(self, f: RequestFact, minute: int) -> None:
        ref = self.refs.get(f.served_model)
        if ref is None:
            ref = self.refs[f.served_model] = ModelRef(minute, f.ts_ms)
        factor = 0.5 ** (max(0, ref.minute - minute) / REF_HALF_LIFE_MINUTES)
        ref.n += factor
        if f.cost_usd is not None:
            ref.cost += f.cost_usd * factor
            ref.priced += factor

    # --- reading ---------------------------------------------------------------------------
    def wsum(self, col: list[int] | list[float], minutes: int) -> float:
        """Sum of a minute column over the last ``minutes`` minutes, the current one included."""
        if self.cur < 0:
            return 0
        e = self.cur % MINUTE_SLOTS + 1
        b = e - minutes
        if b >= 0:
            return sum(col[b:e])
        return sum(col[:e]) + sum(col[b:])

    def slots(self, minutes: int) -> list[int]:
        """Slot indices of the last ``minutes`` minutes, oldest first."""
        if self.cur < 0:
            return []
        return [(self.cur - i) % MINUTE_SLOTS for i in range(minutes - 1, -1, -1)]

    def hsum(self, col: list[int] | list[float], first_hour: int, last_hour: int) -> float:
        """Sum of an hour column over hours ``first_hour..last_hour`` (folded minutes only)."""
        total: float = 0
        hkey = self.hkey
        for h in range(max(first_hour, last_hour - HOUR_SLOTS + 1), last_hour + 1):
            s = h % HOUR_SLOTS
            if hkey[s] == h:
                total += col[s]
        return total

    def hours_total(self, name: str, hours: int) -> float:
        """Sum of hour column ``name`` over the last ``hours`` hours, current minute included.

        The completed hours' part is cached until a late fact changes one of them.
        """
        if self.cur < 0:
            return 0
        last = self.cur // 60
        key = (name, hours)
        cached = self._hcache.get(key)
        col: list[float] = getattr(self, name)
        if cached is None or cached[0] != self.hour_version or cached[1] != last:
            cached = (self.hour_version, last, self.hsum(col, last - hours + 1, last - 1))
            self._hcache[key] = cached
        s = last % HOUR_SLOTS
        current = col[s] if self.hkey[s] == last else 0
        minute_col: list[float] = getattr(self, _MINUTE_OF[name])
        return cached[2] + current + minute_col[self.cur % MINUTE_SLOTS]

    def hour_values(self, first_hour: int, last_hour: int) -> list[tuple[int, int, int, float, int]]:
        """``(requests, ok, truncated, cost, priced)`` of each held hour in the range."""
        out = []
        for h in range(max(first_hour, last_hour - HOUR_SLOTS + 1), last_hour + 1):
            s = h % HOUR_SLOTS
            if self.hkey[s] == h:
                out.append((self.hreq[s], self.hok[s], self.hlen[s], self.hcost[s], self.hpriced[s]))
        return out

    def model_window(self, minutes: int) -> dict[str, list[float]]:
        """Per served model of ok responses ``[requests, cost, priced, served != requested]``."""
        out: dict[str, list[float]] = {}
        for s in self.slots(minutes):
            for served, row in self.models[s].items():
                acc = out.get(served)
                if acc is None:
                    out[served] = list(row)
                else:
                    for i in range(4):
                        acc[i] += row[i]
        return out

    def error_window(self, minutes: int) -> dict[tuple[str, str], int]:
        """``(error_type, requested model) -> count`` over the window."""
        out: dict[tuple[str, str], int] = {}
        for s in self.slots(minutes):
            e = self.errors[s]
            if e:
                for key, n in e.items():
                    out[key] = out.get(key, 0) + n
        return out

    def latency_quantile(self, minutes: int, q: float) -> float | None:
        """Approximate latency quantile (ms, ±10%) of ok requests over the window; None if empty."""
        acc = [0] * (len(LATENCY_BOUNDS) + 1)
        for s in self.slots(minutes):
            h = self.hist[s]
            if h:
                for i, n in enumerate(h):
                    acc[i] += n
        total = sum(acc)
        if total == 0:
            return None
        rank = q * total
        run = 0
        for i, n in enumerate(acc):
            run += n
            if run >= rank:
                if i >= len(LATENCY_BOUNDS):
                    return LATENCY_BOUNDS[-1]
                lo = LATENCY_BOUNDS[i - 1] if i else 0.0
                return math.sqrt(max(lo, 1.0) * LATENCY_BOUNDS[i])
        return LATENCY_BOUNDS[-1]

    def spend(self, now_ms: int, span_ms: int) -> tuple[float, float]:
        """``(cost, span)`` over the last ``span_ms`` (hour resolution) or since the first request."""
        if self.cur < 0:
            return 0.0, 0.0
        hours = max(1, span_ms // HOUR_MS)
        start = max(self.first_ms, (self.cur // 60 - hours + 1) * HOUR_MS)
        return self.hours_total("hcost", hours), float(max(0, now_ms - start))

    # --- persistence ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        state: dict[str, Any] = {name: getattr(self, name) for name in (*_COLUMNS, *_HOUR_COLUMNS)}
        state.update(
            cur=self.cur,
            first_ms=self.first_ms,
            last_ms=self.last_ms,
            team=self.team,
            hkey=self.hkey,
            models=self.models,
            errors=[None if e is None else [[k[0], k[1], n] for k, n in e.items()] for e in self.errors],
            hist=[None if h is None else [[i, n] for i, n in enumerate(h) if n] for h in self.hist],
            refs={k: r.to_list() for k, r in self.refs.items()},
        )
        return state

    @classmethod
    def from_state(cls, data: dict[str, Any], slow95_ms: float | None, slow99_ms: float | None) -> RouteWindow:
        """Inverse of :meth:`to_state`; the latency targets come from the current config."""
        w = cls(slow95_ms, slow99_ms)
        for name in (*_COLUMNS, *_HOUR_COLUMNS):
            setattr(w, name, list(data[name]))
        w.cur, w.first_ms, w.last_ms, w.team = data["cur"], data["first_ms"], data["last_ms"], data["team"]
        w.hkey = list(data["hkey"])
        w.models = [{k: list(v) for k, v in d.items()} for d in data["models"]]
        w.errors = [None if e is None else {(t, m): n for t, m, n in e} for e in data["errors"]]
        w.hist = [None if h is None else _dense(h) for h in data["hist"]]
        w.refs = {k: ModelRef.from_list(v) for k, v in data["refs"].items()}
        return w
