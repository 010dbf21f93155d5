"""``telemetry report cost-projection``: what moving a route to another model would cost.

The candidate's cost per request re-prices the route's **actual token mix** over the window
(sums of input, cached input, output and reasoning tokens from ``requests``) with the price book's
rates for the candidate at the newest request's time, assuming the candidate would use the same
tokens. Cliff-tiered prices (all tokens of a request above an input-token threshold priced at the
tier's rates) are applied per request: the mix is summed per tier band. Then (DOMAIN section 2):

- ``requests_per_second = requests / window seconds``
- ``delta_per_request = candidate_cost_per_request - current_cost_per_request``
- ``monthly_delta = delta_per_request * requests_per_second * 30 * 86400``
- ``projected_monthly = candidate_cost_per_request * requests_per_second * 30 * 86400``
- ``break_even_pass_rate = candidate_cost_per_request / current_cost_per_correct``: the pass rate
  the candidate must reach to keep the cost per correct answer where it is (> 1: it cannot).

A candidate the price book does not know is reported as unpriced: every candidate figure is None,
never 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from telemetry.pricing import PriceBook, Rates
from telemetry.reports.common import ModelStats, model_stats, pct, ratio, require_route
from telemetry.reports.output import Report, Section
from telemetry.reports.query import (
    MONTH_SECONDS,
    Query,
    Window,
    check_database,
    load_window,
    rows_of,
    sql_string,
)
from telemetry.reports.stats import Proportion

__all__ = ["CostProjection", "Projection", "TokenMix", "band_sql", "cost_projection", "mix_usd", "project", "reprice"]


@dataclass(frozen=True, slots=True)
class TokenMix:
    """Token sums of a set of requests (cached <= input and reasoning <= output per request)."""

    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: TokenMix) -> TokenMix:
        return TokenMix(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def mix_usd(rates: Rates, mix: TokenMix, band: int = 0) -> float:
    """USD of all requests of ``mix`` at ``rates``: band 0 at the base rates, band ``i`` at
    ``rates.tiers[i - 1]``; plus the per-request fee. Reuses :meth:`Rates.usd`, which is linear
    in the token counts once the tier is fixed."""
    flat = dataclasses.replace(rates, tiers=(), request_usd=0.0)
    if band > 0:
        tier = rates.tiers[band - 1]
        flat = dataclasses.replace(
            flat, input=tier.input, output=tier.output, cache_read=tier.cache_read,
            cache_write=tier.cache_write, reasoning=tier.reasoning,
        )  # fmt: skip
    tokens = flat.usd(mix.input_tokens, mix.output_tokens, mix.cached_input_tokens, 0, mix.reasoning_tokens)
    return tokens + rates.request_usd * mix.requests


def reprice(rates: Rates, bands: Mapping[int, TokenMix]) -> float:
    """USD of a token mix split by tier band (see :func:`band_sql`)."""
    return sum(mix_usd(rates, mix, band) for band, mix in bands.items())


def band_sql(rates: Rates | None, column: str = "input_tokens") -> str:
    """SQL expression of a request's tier band under ``rates``: 0 below every threshold, ``i``
    above ``rates.tiers[i - 1].above_input_tokens`` (the highest one that applies)."""
    tiers = rates.tiers if rates is not None else ()
    if not tiers:
        return "0"
    arms = [f"{column} > {int(t.above_input_tokens)}, {i}" for i, t in reversed(list(enumerate(tiers, start=1)))]
    return f"multiIf({', '.join(arms)}, 0)"


@dataclass(frozen=True, slots=True)
class Projection:
    """The arithmetic of a change at the current traffic. None wherever an input is unknown."""

    requests_per_second: float | None
    current_cost_per_request: float | None
    candidate_cost_per_request: float | None

    @property
    def delta_per_request(self) -> float | None:
        if self.current_cost_per_request is None or self.candidate_cost_per_request is None:
            return None
        return self.candidate_cost_per_request - self.current_cost_per_request

    def monthly(self, per_request: float | None) -> float | None:
        """``per_request * requests_per_second * 30 * 86400``."""
        if per_request is None or self.requests_per_second is None:
            return None
        return per_request * self.requests_per_second * MONTH_SECONDS

    @property
    def current_monthly(self) -> float | None:
        return self.monthly(self.current_cost_per_request)

    @property
    def projected_monthly(self) -> float | None:
        return self.monthly(self.candidate_cost_per_request)

    @property
    def monthly_delta(self) -> float | None:
        return self.monthly(self.delta_per_request)


def project(requests: int, seconds: float, current_cost_per_request: float | None,
            candidate_usd: float | None) -> Projection:  # fmt: skip
    """Projection for ``requests`` over ``seconds`` whose repriced total is ``candidate_usd``."""
    return Projection(
        requests_per_second=requests / seconds if seconds > 0 else None,
        current_cost_per_request=current_cost_per_request,
        candidate_cost_per_request=candidate_usd / requests if candidate_usd is not None and requests else None,
    )


@dataclass(frozen=True, slots=True)
class CostProjection:
    route: str
    candidate: str
    window: Window
    requests: int
    priced_requests: int
    cost_usd: float
    quality: Proportion
    served: list[ModelStats]
    mix: TokenMix
    rates: Rates | None
    projection: Projection
    candidate_observed: ModelStats | None

    @property
    def priced(self) -> bool:
        return self.rates is not None

    @property
    def current_cost_per_correct(self) -> float | None:
        return ratio(self.projection.current_cost_per_request, self.quality.rate) if self.quality.passed else None

    @property
    def break_even_pass_rate(self) -> float | None:
        return ratio(self.projection.candidate_cost_per_request, self.current_cost_per_correct)

    @property
    def candidate_cost_per_correct_at_current_pass_rate(self) -> float | None:
        return ratio(self.projection.candidate_cost_per_request, self.quality.rate) if self.quality.passed else None

    def to_report(self) -> Report:
        p = self.projection
        delta_ratio = ratio(p.candidate_cost_per_request, p.current_cost_per_request)
        current_label = ", ".join(f"{m.name} {pct(m.requests / self.requests, 0)}" for m in self.served[:3])
        summary = Section("projection", ["metric", "current", "candidate", "delta"], [
            ["requests_per_second", p.requests_per_second, p.requests_per_second, None],
            ["cost_per_request_usd", p.current_cost_per_request, p.candidate_cost_per_request, p.delta_per_request],
            ["cost_ratio", 1.0 if p.current_cost_per_request else None, delta_ratio, None],
            ["monthly_cost_usd", p.current_monthly, p.projected_monthly, p.monthly_delta],
            ["pass_rate", self.quality.rate, self.candidate_observed.quality.rate if self.candidate_observed else None, None],
            ["pass_rate_low95", self.quality.low, self.candidate_observed.quality.low if self.candidate_observed else None, None],
            ["pass_rate_high95", self.quality.high, self.candidate_observed.quality.high if self.candidate_observed else None, None],
            ["judged", self.quality.judged, self.candidate_observed.quality.judged if self.candidate_observed else None, None],
            ["cost_per_correct_usd", self.current_cost_per_correct, self.candidate_cost_per_correct_at_current_pass_rate, None],
            ["break_even_pass_rate", None, self.break_even_pass_rate, None],
        ])  # fmt: skip
        mix = Section("token_mix", ["requests", "priced_requests", "input_tokens", "cached_input_tokens",
                                    "output_tokens", "reasoning_tokens"],
                      [[self.requests, self.priced_requests, self.mix.input_tokens, self.mix.cached_input_tokens,
                        self.mix.output_tokens, self.mix.reasoning_tokens]])  # fmt: skip
        served = Section("served_models", ["model", "requests", "share", "cost_per_request", "pass_rate", "judged"], [
            [m.name, m.requests, m.requests / self.requests, m.cost_per_request, m.quality.rate, m.quality.judged]
            for m in self.served
        ])  # fmt: skip
        notes: list[str] = []
        if self.rates is None:
            notes.append(
                f"UNPRICED: {self.candidate!r} is not in the price book (genai-prices or TELEMETRY_PRICES_FILE); "
                "no candidate cost can be projected. Add it to the price overrides file."
            )
            rates = Section("candidate_rates", ["priced"], [["no (unpriced)"]])
        else:
            r = self.rates
            rates = Section(
                "candidate_rates",
                ["provider", "model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok", "tiers", "source", "version"],
                [[r.provider, r.model, r.input, r.input if r.cache_read is None else r.cache_read, r.output,
                  len(r.tiers), r.source, r.version]],
            )  # fmt: skip
        if self.priced_requests < self.requests:
            notes.append(
                f"{self.requests - self.priced_requests} of {self.requests} current requests are unpriced: "
                "the current cost per request covers the priced ones only"
            )
        if self.candidate_observed is None:
            notes.append(f"{self.candidate} did not serve this route in the window: its pass rate here is unknown. "
                         "cost_per_correct (candidate) assumes the current pass rate; break_even_pass_rate is the pass "
                         "rate it needs to keep the current cost per correct answer.")  # fmt: skip
        be = self.break_even_pass_rate
        if be is not None and be > 1.0:
            notes.append(f"break_even_pass_rate {be:.2f} > 1: even a perfect pass rate would not keep the current cost "
                         "per correct answer; the candidate costs more per request than the route pays per correct answer now")  # fmt: skip
        notes.append("the candidate is priced on the route's current token mix; a model that writes longer or "
                     "shorter answers (or reasons more) will differ.")  # fmt: skip
        title = (
            f"cost-projection: route {self.route} (now {current_label}) -> {self.candidate}\n"
            f"window {self.window.describe()}"
        )
        return Report("cost-projection", title, [summary, rates, mix, served], notes)


def cost_projection(query: Query, database: str, *, route: str, model: str, book: PriceBook,
                    days: float = 7.0, provider: str | None = None) -> CostProjection:  # fmt: skip
    """The route's current cost and quality and the candidate ``model``'s projection. Blocks."""
    db = check_database(database)
    window = load_window(query, db, days)
    require_route(query, db, route, window)
    rates = book.rates(provider or None, model, window.end_ms)
    rows = rows_of(query(
        f"SELECT {band_sql(rates)} AS band, count() AS requests, countIf(cost_usd IS NOT NULL) AS priced, "
        f"sum(ifNull(cost_usd, 0)) AS cost, sum(input_tokens) AS in_tok, "
        f"sum(least(cached_input_tokens, input_tokens)) AS cached_tok, sum(output_tokens) AS out_tok, "
        f"sum(least(reasoning_tokens, output_tokens)) AS reasoning_tok "
        f"FROM {db}.requests WHERE route = {sql_string(route)} AND {window.between('ts')} GROUP BY band"
    ))  # fmt: skip
    bands = {
        int(r["band"]): TokenMix(int(r["requests"]), int(r["in_tok"]), int(r["cached_tok"]), int(r["out_tok"]),
                                 int(r["reasoning_tok"]))
        for r in rows
    }  # fmt: skip
    requests = sum(int(r["requests"]) for r in rows)
    priced = sum(int(r["priced"]) for r in rows)
    cost = sum(float(r["cost"] or 0.0) for r in rows)
    served = model_stats(query, db, route, window)
    quality = Proportion(sum(m.quality.passed for m in served), sum(m.quality.judged for m in served))
    candidate_usd = reprice(rates, bands) if rates is not None else None
    projection = project(requests, window.seconds, cost / priced if priced else None, candidate_usd)
    return CostProjection(
        route=route, candidate=model, window=window, requests=requests, priced_requests=priced, cost_usd=cost,
        quality=quality, served=served, mix=sum(bands.values(), TokenMix()), rates=rates, projection=projection,
        candidate_observed=next((m for m in served if m.name == model), None),
    )  # fmt: skip
