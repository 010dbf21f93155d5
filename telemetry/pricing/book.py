"""PriceBook: the cached front of the price sources. See the package docstring for the contract."""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from pathlib import Path

from telemetry.pricing.overrides import Overrides, load_overrides
from telemetry.pricing.providers import lookup_candidates
from telemetry.pricing.rates import UNPRICED, Cost, Rates
from telemetry.pricing.source import GenaiPricesSource, ModelTimeline

__all__ = ["PriceBook"]

logger = logging.getLogger(__name__)

_Timeline = tuple[list[int], list[Rates | None]]


class _Entry:
    """What one (provider, model) pair as sent by producers resolves to, for every request time."""

    __slots__ = ("overrides", "source")

    def __init__(self, overrides: _Timeline | None, source: ModelTimeline | None) -> None:
        self.overrides = overrides
        self.source = source

    def at(self, ts_ms: int) -> Rates | None:
        if self.overrides is not None:
            bounds, by_segment = self.overrides
            rates = by_segment[bisect_right(bounds, ts_ms)]
            if rates is not None:
                return rates
        return self.source.at(ts_ms) if self.source is not None else None


_UNPRICED_ENTRY = _Entry(None, None)


class PriceBook:
    """Prices LLM requests from the override file (if any) and the bundled genai-prices data.

    The first request of a (provider, model) pair matches it against both sources (~0.1 ms); the
    first request in each price period converts that period's price (once per matched provider,
    model and period, shared by every spelling that matches it). After that :meth:`cost` is a dict
    lookup, a few integer comparisons and ``tokens x rate``. Never does I/O after ``__init__`` and
    never touches the network. Single-threaded use (one worker loop); safe to share read-only.

    ``max_entries`` bounds the memo of distinct (provider, model) spellings; past it the oldest is
    forgotten, so garbage model names cannot grow memory without bound. It is large (an unknown
    spelling costs one dict slot and shares one entry): 20,000 model names cycling through a
    smaller memo would re-match every request (~0.7 ms each).
    """

    def __init__(self, overrides_file: Path | None = None, *, max_entries: int = 200_000) -> None:
        self._overrides: Overrides | None = load_overrides(Path(overrides_file)) if overrides_file else None
        self._source = GenaiPricesSource()
        self._entries: dict[tuple[str | None, str], _Entry] = {}
        self._max_entries = max_entries
        self._unpriced_spellings = 0
        self._evictions = 0
        self._version = self._source.version + (f"; {self._overrides.version}" if self._overrides else "")

    def version(self) -> str:
        """``"genai-prices 0.2.3"``, plus ``"; override <file> sha256:<8 hex>"`` with an override file."""
        return self._version

    def rates(self, provider: str | None, model: str, ts_ms: int) -> Rates | None:
        """The rates for a request at epoch milliseconds ``ts_ms`` (UTC), or ``None`` if unpriced. Cached."""
        entry = self._entries.get((provider, model))
        if entry is None:
            entry = self._resolve(provider, model)
        return entry.at(ts_ms)

    def cost(
        self,
        *,
        provider: str | None,
        model: str,
        ts_ms: int,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
        producer_cost_usd: float | None = None,
        cache_write_tokens: int = 0,
    ) -> Cost:
        """The USD cost of one request and how it was derived. Never raises on numbers; see the
        package docstring for the token conventions and how bad counts are clamped."""
        if producer_cost_usd is not None and producer_cost_usd >= 0 and math.isfinite(producer_cost_usd):
            return Cost(float(producer_cost_usd), "producer", "")
        rates = self.rates(provider, model, ts_ms)
        if rates is None:
            return UNPRICED
        # Clamp (None, NaN and negatives count as 0): parts never exceed their totals.
        inp = input_tokens if input_tokens and input_tokens > 0 else 0
        cached = min(cached_input_tokens, inp) if cached_input_tokens and cached_input_tokens > 0 else 0
        written = min(cache_write_tokens, inp - cached) if cache_write_tokens and cache_write_tokens > 0 else 0
        out = output_tokens if output_tokens and output_tokens > 0 else 0
        reasoning = min(reasoning_tokens, out) if reasoning_tokens and reasoning_tokens > 0 else 0
        return Cost(rates.usd(inp, out, cached, written, reasoning), rates.source, rates.version)

    def _resolve(self, provider: str | None, model: str) -> _Entry:
        """Slow path, once per distinct (provider, model) spelling: match against every source."""
        try:
            candidates = lookup_candidates(provider, model or "")
            overrides = self._overrides.timeline(candidates) if self._overrides else None
            source = self._source.match(candidates) if candidates else None
        except Exception:  # a bug or odd data in a source must not stop the pipeline: unpriced
            logger.exception("pricing: lookup failed for provider=%r model=%r; left unpriced", provider, model)
            overrides, source = None, None
        if overrides is None and source is None:
            self._unpriced_spellings += 1
            n = self._unpriced_spellings
            if n <= 20 or n % 1000 == 0:  # a flood of garbage names must not flood the log
                logger.info("pricing: no price for provider=%r model=%r; its requests stay unpriced "
                            "(%d unpriced spellings so far)", provider, model[:80], n)  # fmt: skip
        if len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
            self._evictions += 1
            if self._evictions % 1000 == 1:
                self._source.trim()
        entry = _UNPRICED_ENTRY if overrides is None and source is None else _Entry(overrides, source)
        self._entries[(provider, model)] = entry
        return entry
