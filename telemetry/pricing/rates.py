"""Resolved prices (:class:`Rates`), a request's :class:`Cost`, and the per-event arithmetic.

Everything here is pure and cheap: :meth:`Rates.usd` is the only thing the per-event path runs
once a price is resolved. Token conventions are those of the package docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rates", "RateTier", "Cost", "UNPRICED"]

_PER = 1_000_000.0


@dataclass(frozen=True, slots=True)
class RateTier:
    """Rates replacing the base rates for a whole request whose total input exceeds a threshold.

    genai-prices' "cliff" tiers: once ``input_tokens > above_input_tokens`` *every* token of the
    request (input, cached, output) is priced at the tier's rates, e.g. Gemini 2.5 Pro above 200k.
    """

    above_input_tokens: int
    input: float
    output: float
    cache_read: float | None
    cache_write: float | None
    reasoning: float | None


@dataclass(frozen=True, slots=True)
class Rates:
    """Prices of one (provider, model) during one price period, in USD per million tokens.

    ``cache_read``/``cache_write``/``reasoning`` are ``None`` when the source has no separate price;
    those tokens are then priced at the input (cache) or output (reasoning) rate. ``request_usd`` is
    a flat fee per request (a few Perplexity models). ``tiers`` is empty for flat-priced models.
    """

    input: float
    output: float
    cache_read: float | None
    cache_write: float | None
    source: str  # "genai-prices" | "override"
    version: str  # "genai-prices 0.2.3" | "override prices.toml sha256:1a2b3c4d"
    provider: str  # as matched by the source
    model: str  # as matched by the source
    reasoning: float | None = None
    request_usd: float = 0.0
    tiers: tuple[RateTier, ...] = ()

    def usd(self, input_tokens: int, output_tokens: int, cached: int, cache_write: int, reasoning: int) -> float:
        """USD of one request. Expects counts already clamped: ``cached + cache_write <= input_tokens``
        and ``reasoning <= output_tokens``, all >= 0 (``PriceBook.cost`` does that)."""
        r: Rates | RateTier = self
        if self.tiers and input_tokens > self.tiers[0].above_input_tokens:
            for tier in reversed(self.tiers):
                if input_tokens > tier.above_input_tokens:
                    r = tier
                    break
        rin = r.input
        rcr = rin if r.cache_read is None else r.cache_read
        rcw = rin if r.cache_write is None else r.cache_write
        rout = r.output
        rre = rout if r.reasoning is None else r.reasoning
        total = (
            (input_tokens - cached - cache_write) * rin
            + cached * rcr
            + cache_write * rcw
            + (output_tokens - reasoning) * rout
            + reasoning * rre
        )
        return total / _PER + self.request_usd


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of one request and how it was derived (kept on the row)."""

    usd: float | None  # None = unpriced (never 0 for an unknown model)
    source: str  # "producer" | "genai-prices" | "override" | "unpriced"
    version: str  # price source and version ('' for producer/unpriced)


UNPRICED = Cost(None, "unpriced", "")
