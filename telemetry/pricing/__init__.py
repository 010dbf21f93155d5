"""The USD cost of one LLM request, priced at the request's time.

Sources, in order of precedence:

1. ``producer``: the caller passed ``producer_cost_usd`` (a finite number >= 0; anything else is
   ignored) - it is used as is.
2. ``override``: the TOML file of ``settings.prices_file`` (private models, negotiated prices; see
   :mod:`telemetry.pricing.overrides` and ``deploy/prices.example.toml``).
3. ``genai-prices``: the effective-dated price data bundled in the installed ``genai-prices``
   wheel, read offline (nothing here ever fetches prices from the network).
4. ``unpriced``: ``Cost(usd=None, source="unpriced", version="")``. An unknown model is never
   priced at 0; models priced only per character/page/second (TTS, OCR) are unpriced too.

Token conventions (the public event contract):

- ``input_tokens`` is the TOTAL prompt tokens, INCLUDING ``cached_input_tokens`` and
  ``cache_write_tokens`` (OpenAI / OpenTelemetry ``gen_ai.usage.input_tokens`` convention; note
  that Anthropic's raw API reports ``input_tokens`` without cache reads and writes - the producer
  must add them).
- ``cached_input_tokens`` (OTel ``gen_ai.usage.cache_read.input_tokens``) are priced at the
  source's cache-read rate; when the source has no cache-read price for the model they are priced
  at the input rate (which is what genai-prices does too).
- ``cache_write_tokens`` (optional, OTel ``gen_ai.usage.cache_creation.input_tokens``) are priced
  at the cache-write rate, falling back to the input rate in the same way.
- ``output_tokens`` is the TOTAL completion tokens, INCLUDING ``reasoning_tokens``: reasoning
  tokens are not added on top. They are priced at the output rate, or at the model's own
  reasoning rate when the source has one (in genai-prices 0.2.3 only Perplexity's
  sonar-deep-research).
- ``ts_ms`` is the request's time in epoch milliseconds (UTC); it selects the price period.
- Tiered prices (Gemini 2.5 Pro, Claude long context...) follow genai-prices: once the total
  ``input_tokens`` exceed a tier's threshold, all tokens of the request use the tier's rates.
- Bad numbers are the caller's validation to reject, but ``cost()`` never raises on them: negative,
  ``None`` or NaN counts count as 0, ``cached_input_tokens`` is clamped to ``input_tokens``,
  ``cache_write_tokens`` to what is left of it, and ``reasoning_tokens`` to ``output_tokens``.

Performance contract: a price is looked up once per (provider, model) spelling and converted once
per (matched provider, model, price period); per event :meth:`PriceBook.cost` only does
``tokens x rate`` arithmetic. A request after a price change gets the new price.

Model names: lookups work with or without a provider, with unknown providers, with common provider
spellings (:func:`normalize_provider`) and with prefixed models (``openai/gpt-4o``,
``vertex_ai/gemini-2.0-flash``, ``us.anthropic.claude-...`` on Bedrock). When the named provider
does not list the model, the model alone is tried, and ``Rates.provider`` records who priced it.
"""

from telemetry.pricing.book import PriceBook
from telemetry.pricing.overrides import PriceFileError
from telemetry.pricing.providers import lookup_candidates, normalize_provider
from telemetry.pricing.rates import Cost, Rates, RateTier

__all__ = [
    "PriceBook",
    "Rates",
    "RateTier",
    "Cost",
    "PriceFileError",
    "normalize_provider",
    "lookup_candidates",
]
