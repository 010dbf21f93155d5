"""telemetry.pricing: costs against an independent genai-prices computation, price periods,
overrides, the lookup cache, and that nothing reaches the network."""

from __future__ import annotations

import math
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from genai_prices import Usage, calc_price
from genai_prices.data import providers as GENAI_PROVIDERS
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

import telemetry.pricing.source as source_module
from telemetry.pricing import Cost, PriceBook, PriceFileError, Rates, lookup_candidates, normalize_provider
from telemetry.pricing.source import rates_from_price

REPO = Path(__file__).resolve().parents[2]
VERSION = f"genai-prices {genai_prices.__version__}"


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


T0 = at(2025, 3, 1, 12)


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def independent(
    model: str, provider: str | None, when: datetime, *, inp: int, out: int, cached: int = 0, write: int = 0, reasoning: int = 0
) -> float:
    usage = Usage(
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=cached,
        cache_write_tokens=write,
        output_reasoning_tokens=reasoning,
    )
    return float(calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=when).total_price)


def write(tmp_path: Path, text: str, name: str = "prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- genai-prices: equal to calc_price -----------------------------------------------------------

CASES = [
    # provider as sent, model as sent, provider/model for calc_price, when, tokens
    ("openai", "gpt-4o", "openai", "gpt-4o", T0, dict(inp=12_345, out=678, cached=4_000)),
    (None, "openai/gpt-4o", "openai", "gpt-4o", T0, dict(inp=1_000, out=1_000)),
    ("anthropic", "claude-3-5-sonnet-20241022", "anthropic", "claude-3-5-sonnet-20241022", T0,
     dict(inp=50_000, out=2_000, cached=30_000, write=10_000)),
    (None, "claude-sonnet-4", None, "claude-sonnet-4", T0, dict(inp=7_777, out=3_333, cached=1_111)),
    ("vertex_ai", "gemini-2.0-flash", "google", "gemini-2.0-flash", T0, dict(inp=100_000, out=5_000, cached=20_000)),
    ("gemini", "gemini-2.5-pro", "google", "gemini-2.5-pro", T0, dict(inp=150_000, out=4_000, cached=10_000)),
    ("gemini", "gemini-2.5-pro", "google", "gemini-2.5-pro", T0, dict(inp=250_000, out=4_000, cached=10_000)),  # tier
    ("azure.ai.openai", "gpt-4o-mini", "azure", "gpt-4o-mini", T0, dict(inp=9_000, out=900, cached=1_024)),
    ("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", "aws", "us.anthropic.claude-sonnet-4-20250514-v1:0",
     T0, dict(inp=5_000, out=500)),
    ("groq", "llama-3.3-70b-versatile", "groq", "llama-3.3-70b-versatile", T0, dict(inp=5_000, out=500, cached=2_000)),
    ("deepseek", "deepseek-chat", "deepseek", "deepseek-chat", at(2025, 3, 1, 0, 10), dict(inp=5_000, out=500)),  # off-peak
    ("deepseek", "deepseek-chat", "deepseek", "deepseek-chat", at(2025, 3, 1, 9, 0), dict(inp=5_000, out=500)),
    ("perplexity", "sonar", "perplexity", "sonar", T0, dict(inp=1_000, out=300)),  # + per-request fee
    ("perplexity", "sonar-deep-research", "perplexity", "sonar-deep-research", T0,
     dict(inp=2_000, out=9_000, reasoning=6_000)),  # own reasoning price
    ("openai", "o3", "openai", "o3", T0, dict(inp=3_000, out=9_000, reasoning=6_000)),
]


@pytest.mark.parametrize(("provider", "model", "gp_provider", "gp_model", "when", "tokens"), CASES)
def test_cost_equals_independent_calc_price(book, provider, model, gp_provider, gp_model, when, tokens) -> None:
    expected = independent(gp_model, gp_provider, when, **tokens)
    got = book.cost(
        provider=provider,
        model=model,
        ts_ms=ms(when),
        input_tokens=tokens["inp"],
        output_tokens=tokens["out"],
        cached_input_tokens=tokens.get("cached", 0),
        reasoning_tokens=tokens.get("reasoning", 0),
        cache_write_tokens=tokens.get("write", 0),
    )
    assert got.source == "genai-prices" and got.version == VERSION
    assert got.usd is not None and expected > 0
    assert math.isclose(got.usd, expected, rel_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    case=st.sampled_from([c for c in CASES if c[2] is not None]),
    inp=st.integers(0, 2_000_000),
    cached_share=st.floats(0, 1),
    write_share=st.floats(0, 1),
    out=st.integers(0, 200_000),
    reasoning_share=st.floats(0, 1),
    seconds=st.integers(0, 4 * 365 * 86400),
)
def test_cost_equals_calc_price_for_any_counts_and_time(book, case, inp, cached_share, write_share, out, reasoning_share,
                                                        seconds) -> None:
    provider, model, gp_provider, gp_model, _, _ = case
    when = at(2023, 1, 1) + timedelta(seconds=seconds)
    cached = int(inp * cached_share)
    written = int((inp - cached) * write_share)
    reasoning = int(out * reasoning_share)
    expected = independent(gp_model, gp_provider, when, inp=inp, out=out, cached=cached, write=written, reasoning=reasoning)
    got = book.cost(provider=provider, model=model, ts_ms=ms(when), input_tokens=inp, output_tokens=out,
                    cached_input_tokens=cached, cache_write_tokens=written, reasoning_tokens=reasoning)
    assert got.usd is not None
    assert math.isclose(got.usd, expected, rel_tol=1e-9, abs_tol=1e-15)


def test_rates_of_well_known_models(book) -> None:
    r = book.rates("openai", "gpt-4o", ms(T0))
    assert r is not None
    assert (r.input, r.output, r.cache_read, r.provider, r.model) == (2.5, 10.0, 1.25, "openai", "gpt-4o")
    assert (r.source, r.version) == ("genai-prices", VERSION)
    tiered = book.rates("google", "gemini-2.5-pro", ms(T0))
    assert tiered is not None and tiered.tiers and tiered.tiers[0].above_input_tokens == 200_000
    assert tiered.tiers[0].input > tiered.input


def test_price_change_gives_each_side_its_price(book) -> None:
    # OpenAI o3: $10/$40 until 2025-06-09, $2/$8 from 2025-06-10 (UTC) in the bundled data.
    before, after = at(2025, 6, 10) - timedelta(milliseconds=1), at(2025, 6, 10)
    tokens = dict(input_tokens=10_000, output_tokens=2_000, cached_input_tokens=1_000)
    old = book.cost(provider="openai", model="o3", ts_ms=ms(before), **tokens)
    new = book.cost(provider="openai", model="o3", ts_ms=ms(after), **tokens)
    assert old.usd != new.usd
    assert math.isclose(old.usd, independent("o3", "openai", before, inp=10_000, out=2_000, cached=1_000), rel_tol=1e-9)
    assert math.isclose(new.usd, independent("o3", "openai", after, inp=10_000, out=2_000, cached=1_000), rel_tol=1e-9)
    assert math.isclose(old.usd, (9_000 * 10 + 1_000 * 0.5 + 2_000 * 40) / 1e6, rel_tol=1e-12)
    assert math.isclose(new.usd, (9_000 * 2 + 1_000 * 0.5 + 2_000 * 8) / 1e6, rel_tol=1e-12)
    # out of order: an old request after a new one still gets the old price
    again = book.cost(provider="openai", model="o3", ts_ms=ms(before), **tokens)
    assert again == old


def _boundaries(constraint: object) -> list[datetime]:
    if isinstance(constraint, StartDateConstraint):
        d = constraint.start_date
        return [at(d.year, d.month, d.day)]
    if isinstance(constraint, TimeOfDateConstraint):
        out = []
        for t in (constraint.start_time, constraint.end_time):
            base = datetime.combine(datetime(2025, 5, 5).date(), t)
            base = base.replace(tzinfo=UTC) if base.tzinfo is None else base.astimezone(UTC)
            out.append(base)
        return out
    return []


def test_period_selection_agrees_with_genai_prices_for_every_conditional_model(book) -> None:
    """Every model with dated or time-of-day prices: at each boundary, 1 ms before and after, our
    period equals genai-prices' own get_prices()."""
    checked = 0
    for provider in GENAI_PROVIDERS:
        for model in provider.models:
            if not isinstance(model.prices, list):
                continue
            timeline = source_module.ModelTimeline(provider, model, VERSION)
            instants = [at(2020, 1, 1), at(2030, 1, 1)]
            for cp in model.prices:
                for b in _boundaries(cp.constraint):
                    instants += [b - timedelta(milliseconds=1), b, b + timedelta(milliseconds=1)]
            for when in instants:
                expected = rates_from_price(provider.id, model.id, model.get_prices(when), VERSION)
                assert timeline.at(ms(when)) == expected, (provider.id, model.id, when)
                checked += 1
    assert checked > 500


def test_time_of_day_prices_resolve_once_per_period(counters) -> None:
    # DeepSeek chat: standard 00:30-16:30 UTC, off-peak otherwise; 28 days x 3 hours -> two conversions.
    book = PriceBook()
    usds = {
        book.cost(provider="deepseek", model="deepseek-chat", ts_ms=ms(at(2025, 3, day, hour)), input_tokens=10,
                  output_tokens=1).usd
        for day in range(1, 29)
        for hour in (0, 8, 20)
    }
    assert len(usds) == 2
    assert counters == {"find": 1, "convert": 2}


# --- token conventions -----------------------------------------------------------------------------

def test_cached_tokens_use_cache_read_rate_and_are_part_of_input(book) -> None:
    c = book.cost(provider="openai", model="gpt-4o", ts_ms=ms(T0), input_tokens=1_000, output_tokens=200,
                  cached_input_tokens=400)
    assert math.isclose(c.usd, (600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6, rel_tol=1e-12)


def test_cached_tokens_fall_back_to_input_rate_without_a_cache_price(book) -> None:
    r = book.rates("groq", "llama-3.3-70b-versatile", ms(T0))
    assert r is not None and r.cache_read is None
    args = dict(provider="groq", model="llama-3.3-70b-versatile", ts_ms=ms(T0), input_tokens=1_000, output_tokens=10)
    assert book.cost(**args, cached_input_tokens=700) == book.cost(**args)


def test_reasoning_tokens_are_inside_output_tokens(book) -> None:
    args = dict(provider="openai", model="o3", ts_ms=ms(T0), input_tokens=100, output_tokens=5_000)
    assert book.cost(**args, reasoning_tokens=4_000) == book.cost(**args)  # o3: no separate reasoning price
    deep = dict(provider="perplexity", model="sonar-deep-research", ts_ms=ms(T0), input_tokens=0, output_tokens=1_000)
    r = book.rates("perplexity", "sonar-deep-research", ms(T0))
    assert r is not None and r.reasoning is not None and r.reasoning != r.output
    assert math.isclose(book.cost(**deep, reasoning_tokens=1_000).usd, 1_000 * r.reasoning / 1e6, rel_tol=1e-12)


def test_bad_counts_are_clamped_not_raised(book) -> None:
    base = dict(provider="openai", model="gpt-4o", ts_ms=ms(T0))
    assert book.cost(**base, input_tokens=-5, output_tokens=-1).usd == 0.0
    capped = book.cost(**base, input_tokens=100, output_tokens=0, cached_input_tokens=1_000)
    assert math.isclose(capped.usd, 100 * 1.25 / 1e6, rel_tol=1e-12)  # cached clamped to input
    over = book.cost(**base, input_tokens=0, output_tokens=10, reasoning_tokens=50)
    assert math.isclose(over.usd, 10 * 10 / 1e6, rel_tol=1e-12)
    assert book.cost(**base, input_tokens=None, output_tokens=float("nan")).usd == 0.0  # type: ignore[arg-type]


# --- unpriced, producer -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("provider", "model"),
    [(None, "totally-unknown-model"), ("openai", "no-such-gpt"), ("ollama", "llama3"), (None, ""),
     ("openai", "tts-1")],  # tts-1 is priced per character, not per token
)
def test_unknown_model_is_unpriced_not_zero(book, provider, model) -> None:
    c = book.cost(provider=provider, model=model, ts_ms=ms(T0), input_tokens=1_000, output_tokens=1_000)
    assert c == Cost(None, "unpriced", "")
    assert book.rates(provider, model, ms(T0)) is None


def test_producer_cost_wins(book) -> None:
    args = dict(provider="openai", model="gpt-4o", ts_ms=ms(T0), input_tokens=1_000, output_tokens=1_000)
    assert book.cost(**args, producer_cost_usd=0.123) == Cost(0.123, "producer", "")
    assert book.cost(provider=None, model="unknown-x", ts_ms=0, input_tokens=1, output_tokens=1,
                     producer_cost_usd=0.0) == Cost(0.0, "producer", "")
    for bad in (-1.0, float("nan"), float("inf")):
        assert book.cost(**args, producer_cost_usd=bad).source == "genai-prices"


# --- providers and model names ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "expected"),
    [("openai", "openai"), ("OpenAI", "openai"), ("anthropic", "anthropic"), ("google", "google"),
     ("gemini", "google"), ("vertex_ai", "google"), ("gcp.vertex_ai", "google"), ("Vertex AI", "google"),
     ("bedrock", "aws"), ("aws.bedrock", "aws"), ("AWS Bedrock", "aws"), ("azure", "azure"),
     ("azure.ai.openai", "azure"), ("az.ai.inference", "azure"), ("mistral_ai", "mistral"),
     ("mistralai", "mistral"), ("groq", "groq"), ("xai", "x-ai"), ("x_ai", "x-ai"), ("together_ai", "together"),
     ("fireworks_ai", "fireworks"), ("huggingface_together", "huggingface_together"),
     ("Internal LLM", "internal-llm"), ("", None), (None, None)],
)
def test_normalize_provider(name, expected) -> None:
    assert normalize_provider(name) == expected


@pytest.mark.parametrize(
    ("provider", "model", "matched"),
    [("openai", "gpt-4o", ("openai", "gpt-4o")), (None, "gpt-4o", ("openai", "gpt-4o")),
     (None, "openai/gpt-4o", ("openai", "gpt-4o")), ("some-gateway", "gpt-4o", ("openai", "gpt-4o")),
     ("litellm", "anthropic/claude-3-5-sonnet-20241022", ("anthropic", "claude-3-5-sonnet")),
     (None, "vertex_ai/gemini-2.0-flash", ("google", "gemini-2.0-flash")),
     ("google", "models/gemini-2.0-flash", ("google", "gemini-2.0-flash")),
     ("openrouter", "openai/gpt-4o", ("openrouter", "openai/gpt-4o")),
     (None, "anthropic.claude-3-haiku-20240307-v1:0", ("aws", "regional.anthropic.claude-3-haiku-20240307-v1:0"))],
)
def test_model_matching_with_and_without_provider(book, provider, model, matched) -> None:
    r = book.rates(provider, model, ms(T0))
    assert r is not None and (r.provider, r.model) == matched


def test_lookup_candidates_strip_prefixes() -> None:
    assert lookup_candidates(None, "openai/gpt-4o")[:2] == [(None, "openai/gpt-4o"), ("openai", "gpt-4o")]
    assert ("google", "gemini-2.0-flash") in lookup_candidates("vertex_ai", "publishers/google/models/gemini-2.0-flash")


# --- overrides -------------------------------------------------------------------------------------

OVERRIDES = """
[[price]]
model = "acme-llm-7b"
input_per_mtok = 0.10
output_per_mtok = 0.40
cache_read_per_mtok = 0.01

[[price]]
provider = "internal"
model = "acme-*"
input_per_mtok = 0.20
output_per_mtok = 0.80

[[price]]
provider = "internal"
model = "acme-*"
input_per_mtok = 0.15
output_per_mtok = 0.60
effective_from = 2025-07-01

[[price]]
provider = "openai"
model = "gpt-4o"
input_per_mtok = 2.0
output_per_mtok = 8.0
effective_from = 2025-03-01T00:00:00Z
"""


@pytest.fixture
def override_book(tmp_path: Path) -> PriceBook:
    return PriceBook(write(tmp_path, OVERRIDES))


def test_override_prices_a_private_model(override_book) -> None:
    c = override_book.cost(provider=None, model="ACME-LLM-7B", ts_ms=ms(T0), input_tokens=1_000_000,
                           output_tokens=1_000_000, cached_input_tokens=500_000)
    assert c.source == "override" and c.version.startswith("override prices.toml sha256:")
    assert len(c.version.rsplit(":", 1)[1]) == 8
    assert math.isclose(c.usd, 0.5 * 0.10 + 0.5 * 0.01 + 0.40, rel_tol=1e-12)
    assert override_book.version() == f"{VERSION}; {c.version}"


def test_override_exact_beats_glob_and_glob_matches_family(override_book) -> None:
    exact = override_book.rates("internal", "acme-llm-7b", ms(T0))
    family = override_book.rates("internal", "acme-coder-33b", ms(T0))
    assert exact is not None and exact.input == 0.10
    assert family is not None and (family.input, family.model, family.provider) == (0.20, "acme-*", "internal")
    assert override_book.rates("other", "acme-coder-33b", ms(T0)) is None  # glob entry is for "internal" only
    prefixed = override_book.rates(None, "internal/acme-coder-33b", ms(T0))
    assert prefixed is not None and prefixed.input == 0.20


def test_override_effective_from(override_book) -> None:
    before = override_book.rates("internal", "acme-coder-33b", ms(at(2025, 7, 1) - timedelta(milliseconds=1)))
    after = override_book.rates("internal", "acme-coder-33b", ms(at(2025, 7, 1)))
    assert before is not None and after is not None and (before.input, after.input) == (0.20, 0.15)


def test_override_takes_precedence_over_genai_prices_only_once_effective(override_book) -> None:
    tokens = dict(input_tokens=1_000_000, output_tokens=0)
    list_price = override_book.cost(provider="openai", model="gpt-4o", ts_ms=ms(at(2025, 2, 28, 23, 59)), **tokens)
    negotiated = override_book.cost(provider="openai", model="gpt-4o", ts_ms=ms(at(2025, 3, 1)), **tokens)
    assert (list_price.source, list_price.usd) == ("genai-prices", 2.5)
    assert (negotiated.source, negotiated.usd) == ("override", 2.0)
    other = override_book.cost(provider="azure", model="gpt-4o", ts_ms=ms(at(2025, 3, 1)), **tokens)
    assert other.source == "genai-prices"  # the override names provider openai


def test_example_file_is_valid() -> None:
    book = PriceBook(REPO / "deploy" / "prices.example.toml")
    r = book.rates("anything", "acme-llm-7b", ms(T0))
    assert r is not None and r.source == "override"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[price]\nmodel = 'x'", "not valid TOML"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = 1.0\n", "output_per_mtok"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = -1.0\noutput_per_mtok = 1.0\n", "input_per_mtok"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = '1.0'\noutput_per_mtok = 1.0\n", "input_per_mtok"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = nan\noutput_per_mtok = 1.0\n", "input_per_mtok"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = inf\noutput_per_mtok = 1.0\n", "finite"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = 1\noutput_per_mtok = 1\ninput_per_mtoken = 1\n", "input_per_mtoken"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = 1\noutput_per_mtok = 1\neffective_from = 'soon'\n", "effective_from"),
        ("[[price]]\nmodel = ''\ninput_per_mtok = 1\noutput_per_mtok = 1\n", "model"),
        ("price = 3\n", "array of tables"),
        ("[prices]\nmodel = 'x'\n", "unknown top-level"),
        ("[[price]]\nmodel = 'x'\ninput_per_mtok = 1\noutput_per_mtok = 1\n" * 2, "duplicates"),
    ],
)
def test_bad_override_file_raises_price_file_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(PriceFileError, match=message) as info:
        PriceBook(path)
    assert str(path) in str(info.value)


def test_missing_override_file_raises_price_file_error(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="cannot read"):
        PriceBook(tmp_path / "nope.toml")


# --- the cache -------------------------------------------------------------------------------------

@pytest.fixture
def counters(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the underlying source work: genai-prices model matches and price conversions."""
    counts = {"find": 0, "convert": 0}
    real_find, real_convert = DataSnapshot.find_provider_model, source_module.rates_from_price

    def find(self, *args, **kwargs):
        counts["find"] += 1
        return real_find(self, *args, **kwargs)

    def convert(*args, **kwargs):
        counts["convert"] += 1
        return real_convert(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("calc_price must not be on the per-event path")

    monkeypatch.setattr(DataSnapshot, "find_provider_model", find)
    monkeypatch.setattr(source_module, "rates_from_price", convert)
    monkeypatch.setattr(genai_prices, "calc_price", forbidden)
    monkeypatch.setattr(DataSnapshot, "calc", forbidden)
    return counts


def test_ten_thousand_costs_one_lookup(counters) -> None:
    book = PriceBook()
    first = book.cost(provider="openai", model="gpt-4o", ts_ms=ms(T0), input_tokens=10, output_tokens=1)
    for i in range(10_000):
        c = book.cost(provider="openai", model="gpt-4o", ts_ms=ms(T0) + i * 1000, input_tokens=10, output_tokens=1)
    assert c == first
    assert counters == {"find": 1, "convert": 1}


def test_cache_respects_price_periods(counters) -> None:
    book = PriceBook()
    before, after = ms(at(2025, 6, 9, 12)), ms(at(2025, 6, 10, 12))
    usds = {book.cost(provider="openai", model="o3", ts_ms=(before, after)[i % 2] + i, input_tokens=1_000,
                      output_tokens=100).usd for i in range(10_000)}
    assert len(usds) == 2
    assert counters == {"find": 1, "convert": 2}


def test_spellings_of_one_model_share_its_periods(counters) -> None:
    book = PriceBook()
    for provider, model in [("openai", "gpt-4o"), (None, "gpt-4o"), (None, "openai/gpt-4o"), ("OpenAI", "gpt-4o")]:
        for _ in range(100):
            book.cost(provider=provider, model=model, ts_ms=ms(T0), input_tokens=1, output_tokens=1)
    assert counters["convert"] == 1


def test_unknown_models_are_cached_too_and_the_memo_is_bounded(counters) -> None:
    book = PriceBook(max_entries=10)
    for _ in range(1_000):
        book.cost(provider=None, model="mystery", ts_ms=0, input_tokens=1, output_tokens=1)
    finds = counters["find"]
    assert 0 < finds <= 10  # one cache fill: a few candidate spellings, then never again
    for i in range(50):
        book.cost(provider=None, model=f"garbage-{i}", ts_ms=0, input_tokens=1, output_tokens=1)
    assert len(book._entries) <= 10


# --- no network ------------------------------------------------------------------------------------

def test_nothing_reaches_the_network_or_starts_the_updater(monkeypatch: pytest.MonkeyPatch) -> None:
    from genai_prices import data_snapshot, update_prices

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(update_prices.httpx2, "get", no_network)
    book = PriceBook()
    for model in ("gpt-4o", "claude-sonnet-4", "gemini-2.0-flash", "unknown"):
        book.cost(provider=None, model=model, ts_ms=ms(T0), input_tokens=1, output_tokens=1)
    assert update_prices._shared_updater.thread is None
    assert data_snapshot._custom_snapshot is None


def test_a_snapshot_installed_by_someone_else_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from genai_prices import data_snapshot

    monkeypatch.setattr(data_snapshot, "_custom_snapshot", DataSnapshot(providers=[], from_auto_update=True))
    r = PriceBook().rates("openai", "gpt-4o", ms(T0))
    assert r is not None and r.version == VERSION


def test_rates_is_a_frozen_value() -> None:
    r = Rates(1.0, 2.0, None, None, "override", "v", "p", "m")
    with pytest.raises(AttributeError):
        r.input = 3.0  # type: ignore[misc]
    assert r.usd(1_000_000, 1_000_000, 0, 0, 0) == 3.0
