"""The `genai-prices` adapter: match a model once, then resolve one :class:`Rates` per price period.

How genai-prices represents prices (0.2.x): a ``ModelInfo`` has either one ``ModelPrice`` or a list
of ``ConditionalPrice``; the *last* entry whose constraint holds wins, the first is the default.
Constraints are ``StartDateConstraint`` (UTC date of the request >= ``start_date``: a price change)
and ``TimeOfDateConstraint`` (a daily UTC window: DeepSeek's off-peak prices). Each price key holds
a ``Decimal`` or ``TieredPrices`` (a "cliff": above ``tier.start`` total input tokens the tier price
applies to all tokens). :class:`ModelTimeline` compiles those constraints to integer comparisons on
epoch milliseconds, so finding the period of a request costs a few comparisons, and converts each
period's ``ModelPrice`` to :class:`Rates` once, on first use.

Network: this module only reads the data bundled in the wheel (``genai_prices.data``) through a
private ``DataSnapshot``. It never starts ``genai_prices.UpdatePrices`` (the only code that
fetches), and it ignores a snapshot that anything else in the process may have installed with it,
so the version recorded on each cost is always the installed package's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING

from telemetry.pricing.providers import known_provider_ids
from telemetry.pricing.rates import Rates, RateTier

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

__all__ = ["GenaiPricesSource", "ModelTimeline", "rates_from_price"]

logger = logging.getLogger(__name__)

SOURCE = "genai-prices"
_DAY_MS = 86_400_000
_ALWAYS, _FROM, _WINDOW = 0, 1, 2


def _price_parts(value: Decimal | TieredPrices | None) -> tuple[float | None, list[tuple[int, float]]]:
    """(base price, [(tier start, tier price), ...] ascending) of one price key."""
    if value is None:
        return None, []
    if isinstance(value, Decimal):
        return float(value), []
    return float(value.base), sorted((t.start, float(t.price)) for t in value.tiers)


def _at_tier(parts: tuple[float | None, list[tuple[int, float]]], threshold: int) -> float | None:
    base, tiers = parts
    price = base
    for start, tier_price in tiers:
        if start <= threshold:
            price = tier_price
    return price


def rates_from_price(provider_id: str, model_id: str, price: ModelPrice, version: str) -> Rates | None:
    """Convert one genai-prices ``ModelPrice`` to :class:`Rates`; ``None`` if not priced by token.

    Models priced only by characters, pages, audio hours... (TTS, OCR, transcription) give ``None``:
    a token count cannot be priced with them. A model with only one of input/output priced (an
    embedding model) gets 0 for the other, as genai-prices does.
    """
    keys = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "output_reasoning_mtok")
    parts = [_price_parts(getattr(price, key, None)) for key in keys]
    if parts[0][0] is None and parts[1][0] is None:
        return None
    thresholds = sorted({start for _, tiers in parts for start, _ in tiers})
    tiers = tuple(
        RateTier(
            above_input_tokens=th,
            input=_at_tier(parts[0], th) or 0.0,
            output=_at_tier(parts[1], th) or 0.0,
            cache_read=_at_tier(parts[2], th),
            cache_write=_at_tier(parts[3], th),
            reasoning=_at_tier(parts[4], th),
        )
        for th in thresholds
    )
    request_base, _ = _price_parts(getattr(price, "requests_kcount", None))
    return Rates(
        input=parts[0][0] or 0.0,
        output=parts[1][0] or 0.0,
        cache_read=parts[2][0],
        cache_write=parts[3][0],
        source=SOURCE,
        version=version,
        provider=provider_id,
        model=model_id,
        reasoning=parts[4][0],
        request_usd=(request_base or 0.0) / 1000.0,
        tiers=tiers,
    )


def _midnight_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def _utc_us_of_day(value: time) -> int:
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).time()
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


class ModelTimeline:
    """The prices of one matched (provider, model) over time, resolved lazily, once per period."""

    __slots__ = ("provider_id", "model_id", "_model", "_version", "_static", "_conds", "_by_period")

    def __init__(self, provider: Provider, model: ModelInfo, version: str) -> None:
        from genai_prices.types import ModelPrice, StartDateConstraint, TimeOfDateConstraint

        self.provider_id = provider.id
        self.model_id = model.id
        self._model = model
        self._version = version
        self._by_period: dict[int, Rates | None] = {}
        self._conds: tuple[tuple[int, int, int, int], ...] = ()
        self._static: Rates | None = None
        if isinstance(model.prices, ModelPrice):
            self._static = self._resolve(0)
            return
        conds: list[tuple[int, int, int, int]] = []
        for index in reversed(range(len(model.prices))):  # the last active entry wins
            constraint = model.prices[index].constraint
            if constraint is None:
                conds.append((index, _ALWAYS, 0, 0))
            elif isinstance(constraint, StartDateConstraint):
                conds.append((index, _FROM, _midnight_ms(constraint.start_date), 0))
            elif isinstance(constraint, TimeOfDateConstraint):
                start, end = _utc_us_of_day(constraint.start_time), _utc_us_of_day(constraint.end_time)
                conds.append((index, _WINDOW, start, end))
            else:  # a constraint kind this adapter does not know: never active
                logger.warning("genai-prices: unknown constraint %r on %s/%s", constraint, provider.id, model.id)
        self._conds = tuple(conds)

    def _period(self, ts_ms: int) -> int:
        for index, kind, a, b in self._conds:
            if kind == _ALWAYS:
                return index
            if kind == _FROM:
                if ts_ms >= a:
                    return index
            else:
                us = (ts_ms % _DAY_MS) * 1000
                if (a <= us < b) if a <= b else (us >= a or us < b):
                    return index
        return 0

    def _resolve(self, period: int) -> Rates | None:
        prices = self._model.prices
        price = prices[period].prices if isinstance(prices, list) else prices
        return rates_from_price(self.provider_id, self.model_id, price, self._version)

    def at(self, ts_ms: int) -> Rates | None:
        """Rates at epoch milliseconds ``ts_ms`` (UTC); ``None`` if this model is not priced by token."""
        if not self._conds:
            return self._static
        period = self._period(ts_ms)
        try:
            return self._by_period[period]
        except KeyError:
            rates = self._by_period[period] = self._resolve(period)
            return rates


class GenaiPricesSource:
    """Offline genai-prices data: finds the model of a request, hands out shared timelines."""

    def __init__(self) -> None:
        import genai_prices
        from genai_prices.data import providers
        from genai_prices.data_snapshot import DataSnapshot

        self.version = f"genai-prices {genai_prices.__version__}"
        self._snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        self._timelines: dict[tuple[str, str], ModelTimeline] = {}

    def match(self, candidates: Iterable[tuple[str | None, str]]) -> ModelTimeline | None:
        """The timeline of the first candidate genai-prices knows, or ``None``. Slow path (~100 us)."""
        known = known_provider_ids()
        for provider_id, model_ref in candidates:
            if provider_id is not None and provider_id not in known:
                continue
            try:
                provider, model = self._snapshot.find_provider_model(model_ref, None, provider_id, None)
            except LookupError:
                continue
            key = (provider.id, model.id)
            timeline = self._timelines.get(key)
            if timeline is None:
                timeline = self._timelines[key] = ModelTimeline(provider, model, self.version)
            return timeline
        return None

    def trim(self) -> None:
        """Forget genai-prices' own lookup memo (it grows with every distinct unknown model name)."""
        for name in ("_lookup_cache", "_provider_cache", "_provider_misses"):
            memo = getattr(self._snapshot, name, None)
            if memo is not None:
                memo.clear()
