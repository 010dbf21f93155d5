"""Analyst reports: the pure cores, and every report's SQL against the real embedded engine.

chDB allows one data path per process: the SQL tests share the session ``engine`` fixture
(tests/unit/conftest.py) and one migrated database of their own, filled once with a small,
fully known data set (see ``dataset``). Expected numbers are computed independently in the tests.
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.client import Client
from genai_prices import Usage, calc_price

from telemetry.pricing import PriceBook
from telemetry.reports.canary import NO_ARM, Criteria, canary, canary_verdict, pick_arms
from telemetry.reports.cli import register_report
from telemetry.reports.common import ModelStats
from telemetry.reports.diagnostics import diagnostics, read_gate, status
from telemetry.reports.history import HourBucket, model_history, tier_changes
from telemetry.reports.output import render_report
from telemetry.reports.projection import (
    TokenMix,
    band_sql,
    cost_projection,
    mix_usd,
    project,
    reprice,
)
from telemetry.reports.query import (
    Query,
    ReportError,
    make_window,
    query_function,
    sql_string,
)
from telemetry.reports.stats import Proportion, diff_interval, wilson
from telemetry.reports.tierdown import cpc_rise, select_tier_down, tier_down
from telemetry.settings import Settings, load_settings
from telemetry.sql import SqlError, run_read_only
from telemetry.storage.migrate import migrate

MONTH = 30 * 86_400
HOUR = 3_600_000
DAY = 86_400_000
T0 = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def gp_price(model: str, provider: str, ts_ms: int, inp: int, cached: int, out: int) -> float:
    """Independent price from genai-prices' own calculator."""
    when = datetime.fromtimestamp(ts_ms / 1000, UTC)
    usage = Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out)
    return float(calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=when).total_price)


# -- statistics ---------------------------------------------------------------------------------------
def test_wilson_matches_the_formula() -> None:
    p, n, z = 0.9, 100, 1.959963984540054
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson(90, 100)
    assert low == pytest.approx((centre - half) / (1 + z * z / n))
    assert high == pytest.approx((centre + half) / (1 + z * z / n))


def test_difference_interval_is_newcombes_hybrid_score() -> None:
    # Newcombe (1998) table II, example (a): 56/70 - 48/80 -> 95% CI 0.0524 to 0.3339 (method 10)
    low, high = diff_interval(56, 70, 48, 80)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    # example (h): 10/10 - 0/10 -> 0.6075 to 1.0000
    low, high = diff_interval(10, 10, 0, 10)
    assert (round(low, 4), round(high, 4)) == (0.6075, 1.0)
    assert diff_interval(0, 0, 5, 10) == (-1.0, 1.0)
    assert Proportion(0, 0).rate is None and Proportion(0, 0).interval is None


# -- window ---------------------------------------------------------------------------------------------
def test_window_ends_at_the_newest_data_and_is_clipped_to_the_oldest() -> None:
    w = make_window(T0, T0 + 2 * DAY, 7)
    assert (w.start_ms, w.end_ms, w.seconds) == (T0, T0 + 2 * DAY, 2 * 86_400)
    w = make_window(T0, T0 + 30 * DAY, 7)
    assert w.start_ms == T0 + 23 * DAY
    assert w.rate(86_400 * 7) == pytest.approx(1.0)
    with pytest.raises(ReportError):
        make_window(T0, T0, 0)


def test_sql_string_escapes_quotes_and_backslashes() -> None:
    assert sql_string("a'b\\c") == "'a\\'b\\\\c'"


# -- cost projection: pure arithmetic -----------------------------------------------------------------------
def test_repricing_a_token_mix_equals_genai_prices_calc_price(book: PriceBook) -> None:
    ts = T0 + DAY
    rates = book.rates("openai", "gpt-4o", ts)
    assert rates is not None and not rates.tiers
    mix = TokenMix(requests=10, input_tokens=10_000, cached_input_tokens=2_000, output_tokens=3_000)
    expected = gp_price("gpt-4o", "openai", ts, 10_000, 2_000, 3_000)
    assert reprice(rates, {0: mix}) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx((8_000 * 2.5 + 2_000 * 1.25 + 3_000 * 10.0) / 1e6)  # the price sheet


def test_tiered_prices_apply_per_request_band(book: PriceBook) -> None:
    ts = T0 + DAY
    rates = book.rates("google", "gemini-2.5-pro", ts)
    assert rates is not None and rates.tiers, "gemini-2.5-pro has a long-context price tier"
    threshold = rates.tiers[0].above_input_tokens
    small, big = (1_000, 100, 50), (threshold + 50_000, 1_000, 300)  # input, cached, output
    bands = {0: TokenMix(1, small[0], small[1], small[2]), 1: TokenMix(1, big[0], big[1], big[2])}
    expected = gp_price("gemini-2.5-pro", "google", ts, *small) + gp_price("gemini-2.5-pro", "google", ts, *big)
    assert reprice(rates, bands) == pytest.approx(expected, rel=1e-12)
    assert mix_usd(rates, bands[1], 1) > mix_usd(rates, bands[1], 0)
    assert band_sql(rates) == f"multiIf(input_tokens > {threshold}, 1, 0)"
    assert band_sql(None) == "0"


def test_projection_arithmetic() -> None:
    p = project(requests=8_640, seconds=86_400, current_cost_per_request=0.001, candidate_usd=8_640 * 0.004)
    assert p.requests_per_second == pytest.approx(0.1)
    assert p.candidate_cost_per_request == pytest.approx(0.004)
    assert p.delta_per_request == pytest.approx(0.003)
    assert p.monthly_delta == pytest.approx(0.003 * 0.1 * 30 * 86_400)
    assert p.projected_monthly == pytest.approx(0.004 * 0.1 * MONTH)
    assert p.current_monthly == pytest.approx(0.001 * 0.1 * MONTH)
    unpriced = project(requests=10, seconds=100, current_cost_per_request=0.001, candidate_usd=None)
    assert (unpriced.candidate_cost_per_request, unpriced.delta_per_request, unpriced.monthly_delta) == (None, None, None)


# -- diagnostics: the gate's reading ------------------------------------------------------------------------
def test_status_against_the_target() -> None:
    assert status(None, 0.9, 30) == "missing"
    assert status(Proportion(60, 100), 0.9, 30) == "fail"  # upper bound ~0.69
    assert status(Proportion(95, 100), 0.9, 30) == "pass"
    assert status(Proportion(87, 100), 0.9, 30) == "unclear"  # below, but the interval reaches 0.9
    assert status(Proportion(10, 10), 0.9, 30) == "unclear"  # too few verdicts


def test_gold_passes_online_fails_means_fix_retrieval() -> None:
    r = read_gate({"online": Proportion(60, 100), "gold_context": Proportion(95, 100), "closed_book": Proportion(40, 100)})
    assert "fix_retrieval" in r.codes and "retrieval_gap" in r.codes
    assert "prompt_or_capability" not in r.codes and "retrieval_redundant" not in r.codes
    assert r.tier_up == "not indicated"


def test_gold_fails_makes_a_tier_up_a_candidate_hypothesis() -> None:
    r = read_gate({"online": Proportion(60, 100), "gold_context": Proportion(62, 100)})
    assert "prompt_or_capability" in r.codes and "fix_retrieval" not in r.codes
    assert r.tier_up == "candidate"


def test_closed_book_passing_means_retrieval_is_redundant_or_noise() -> None:
    r = read_gate({"online": Proportion(70, 100), "closed_book": Proportion(190, 200)})
    assert "retrieval_redundant" in r.codes and "retrieval_noise" in r.codes
    assert r.tier_up == "not indicated"


def test_gate_not_run_healthy_and_eval_drift() -> None:
    r = read_gate({"online": Proportion(60, 100)})
    assert r.codes == ["gate_not_run"] and r.tier_up == "undetermined"
    r = read_gate({"online": Proportion(950, 1000), "user_feedback": Proportion(780, 1000), "gold_context": Proportion(96, 100)})
    assert "healthy" in r.codes and "eval_drift" in r.codes and r.tier_up == "not indicated"
    r = read_gate({"online": Proportion(85, 100), "gold_context": Proportion(9, 10)})
    assert "need_more_verdicts" in r.codes and r.tier_up == "undetermined"


# -- canary verdict -------------------------------------------------------------------------------------
def arm(name: str, passed: int, judged: int, cpr: float = 0.01, p95: float | None = 1000.0, n: int = 1000) -> ModelStats:
    return ModelStats(name, n, n, cpr * n, Proportion(passed, judged), 0, p95)


def test_canary_fails_when_significantly_worse_by_more_than_allowed() -> None:
    v = canary_verdict(arm("control", 900, 1000), arm("canary", 800, 1000))
    assert v.status == "FAIL" and v.pass_diff[1] < -0.02


def test_canary_passes_when_a_drop_is_ruled_out_and_ratios_hold() -> None:
    v = canary_verdict(arm("control", 9000, 10000), arm("canary", 9050, 10000, cpr=0.012, p95=1100.0))
    assert v.status == "PASS"
    assert v.pass_diff[0] >= -0.02
    assert v.p95_ratio == pytest.approx(1.1) and v.cost_ratio == pytest.approx(1.2)


def test_canary_inconclusive_on_few_verdicts_or_ratio_breach_or_unknowns() -> None:
    assert canary_verdict(arm("control", 90, 100), arm("canary", 90, 100)).status == "INCONCLUSIVE"
    slow = canary_verdict(arm("control", 9000, 10000), arm("canary", 9050, 10000, p95=1300.0))
    assert slow.status == "INCONCLUSIVE" and any(r.startswith("latency") for r in slow.reasons)
    pricey = canary_verdict(arm("control", 9000, 10000), arm("canary", 9050, 10000, cpr=0.02))
    assert pricey.status == "INCONCLUSIVE" and any(r.startswith("cost") for r in pricey.reasons)
    unpriced = ModelStats("canary", 1000, 0, 0.0, Proportion(9050, 10000), 0, 1000.0)
    assert canary_verdict(arm("control", 9000, 10000), unpriced).status == "INCONCLUSIVE"
    loose = Criteria(max_pass_drop=0.2)
    assert canary_verdict(arm("control", 90, 100), arm("canary", 90, 100), loose).status == "PASS"


def test_pick_arms() -> None:
    assert pick_arms({"control": 10, "canary": 500, NO_ARM: 9000}) == ("control", "canary")
    assert pick_arms({"a": 100, "b": 30, NO_ARM: 9000}) == ("a", "b")
    assert pick_arms({"exp": 30, NO_ARM: 900}) == (NO_ARM, "exp")
    assert pick_arms({"a": 100, "b": 30, "c": 5}, canary="c") == ("a", "c")
    assert pick_arms({"a": 100, "b": 30}, control="b", canary="a") == ("b", "a")
    with pytest.raises(ReportError):
        pick_arms({"a": 100}, control="z")
    with pytest.raises(ReportError):
        pick_arms({NO_ARM: 100})


# -- tier-down selection ----------------------------------------------------------------------------------
def test_tier_down_selects_cheaper_models_not_significantly_worse() -> None:
    pricey = arm("big", 900, 1000, cpr=0.01)
    as_good = arm("small", 905, 1000, cpr=0.002)
    worse = arm("tiny", 800, 1000, cpr=0.001)
    few = arm("micro", 50, 50, cpr=0.0005)
    found = select_tier_down("r", [pricey, as_good, worse, few], "big", 0.5, tolerance=0.05, min_judged=100)
    assert [c.cheaper.name for c in found] == ["small"]
    assert found[0].monthly_saving == pytest.approx((0.01 - 0.002) * 0.5 * MONTH)
    # the same numbers with a tighter tolerance: the interval's lower bound (~ -0.026) is too low
    assert select_tier_down("r", [pricey, as_good], "big", 0.5, tolerance=0.02, min_judged=100) == []
    # a pricier model is never a tier-down; nor is anything when the current model is under-judged
    assert select_tier_down("r", [as_good, pricey], "small", 0.5, tolerance=0.05, min_judged=100) == []
    assert select_tier_down("r", [pricey, as_good], "big", 0.5, tolerance=0.05, min_judged=5000) == []


def test_cost_per_correct_rise() -> None:
    early = arm("small", 90, 100, cpr=0.001)
    late = arm("big", 92, 100, cpr=0.004)
    rise = cpc_rise("r", early, late, factor=1.5)
    assert rise is not None and rise.ratio == pytest.approx((0.004 / 0.92) / (0.001 / 0.9))
    assert cpc_rise("r", early, arm("small", 90, 100, cpr=0.0012), factor=1.5) is None
    assert cpc_rise("r", arm("small", 9, 10, cpr=0.001), late, factor=1.5) is None  # < 20 passes


# -- tier changes (pure) ----------------------------------------------------------------------------------
def test_tier_changes_find_a_new_pricier_model() -> None:
    b = [HourBucket(T0 + h * HOUR, "small", 10, 10, 0.01) for h in range(6)]
    b += [HourBucket(T0 + h * HOUR, "big", 10, 10, 0.05) for h in range(6, 9)]
    b += [HourBucket(T0 + 7 * HOUR, "small", 10, 10, 0.01)]
    changes = tier_changes(b, {"small": T0 + 5, "big": T0 + 6 * HOUR + 1234}, T0 + 5)
    assert len(changes) == 1
    c = changes[0]
    assert (c.model, c.previous_model, c.direction) == ("big", "small", "up")
    assert c.cost_ratio == pytest.approx(5.0) and c.share_since == pytest.approx(30 / 40)
    # a model present from the route's first hour is the baseline, not a change
    assert tier_changes(b, {"small": T0, "big": T0 + 10}, T0) == []


# -- the reports' SQL on the real engine ----------------------------------------------------------------------
@dataclass
class Data:
    requests: list[dict[str, object]] = field(default_factory=list)
    verdicts: list[dict[str, object]] = field(default_factory=list)
    alerts: list[dict[str, object]] = field(default_factory=list)

    def request(self, rid: str, ts: int, route: str, model: str, *, cost: float | None, inp: int = 1000, cached: int = 200,
                out: int = 300, latency: float = 500.0, status: str = "ok", experiment: str = "") -> None:
        self.requests.append({
            "request_id": rid, "ts": ts, "route": route, "model": model, "served_model": model, "cost_usd": cost,
            "input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out, "latency_ms": latency,
            "status": status, "experiment": experiment,
        })  # fmt: skip

    def verdict(self, rid: str, ts: int, route: str, model: str, passed: bool, kind: str = "online",
                evaluator: str = "judge@2") -> None:
        self.verdicts.append({
            "request_id": rid, "evaluator": evaluator, "kind": kind, "passed": int(passed), "request_ts": ts,
            "route": route, "model": model, "served_model": model,
        })  # fmt: skip


def dataset() -> Data:
    """Two days of traffic, T0 .. T0 + 2 days (the newest request), in March 2025 (far from now).

    - support.answer: gpt-4o-mini ($0.0005/request) 200 requests on day 1 (180 pass) and 100 on the
      morning of day 2 (95 pass); gpt-4o ($0.005) from day 2 12:00, 200 requests (170 pass).
    - docs.rag: claude-3-5-haiku-latest, 100 requests; online judge@2 60/100, judge@1 10/10,
      gold_context 95/100, closed_book 40/100.
    - code.canary: arm control 400 requests (10 errors) $0.01, ok latency 1000 ms, 342/390 pass;
      arm canary 100 requests $0.012, latency 1100 ms, 88/100 pass.
    """
    d = Data()

    def spread(n: int, start: int, span: int) -> list[int]:
        return [start + (i * span) // n for i in range(n)]

    for i, ts in enumerate(spread(200, T0, DAY)):
        d.request(f"a1-{i}", ts, "support.answer", "gpt-4o-mini", cost=0.0005)
        d.verdict(f"a1-{i}", ts, "support.answer", "gpt-4o-mini", i < 180)
    for i, ts in enumerate(spread(100, T0 + DAY, 12 * HOUR)):
        d.request(f"a2-{i}", ts, "support.answer", "gpt-4o-mini", cost=0.0005)
        d.verdict(f"a2-{i}", ts, "support.answer", "gpt-4o-mini", i < 95)
    for i, ts in enumerate(spread(200, T0 + DAY + 12 * HOUR, 12 * HOUR)):
        d.request(f"a3-{i}", ts, "support.answer", "gpt-4o", cost=0.005)
        d.verdict(f"a3-{i}", ts, "support.answer", "gpt-4o", i < 170)
    for i, ts in enumerate(spread(100, T0 + HOUR, DAY)):
        d.request(f"b-{i}", ts, "docs.rag", "claude-3-5-haiku-latest", cost=0.002)
        d.verdict(f"b-{i}", ts, "docs.rag", "claude-3-5-haiku-latest", i < 60)
        d.verdict(f"b-{i}", ts, "docs.rag", "claude-3-5-haiku-latest", i < 95, "gold_context", "gold@1")
        d.verdict(f"b-{i}", ts, "docs.rag", "claude-3-5-haiku-latest", i < 40, "closed_book", "closed@1")
        if i < 10:
            d.verdict(f"b-{i}", ts, "docs.rag", "claude-3-5-haiku-latest", True, evaluator="judge@1")
    for i, ts in enumerate(spread(400, T0 + DAY, DAY - 1)):
        error = i < 10
        d.request(f"c0-{i}", ts, "code.canary", "claude-sonnet-4-0", cost=0.01, experiment="control",
                  latency=50.0 if error else 1000.0, status="error" if error else "ok")
        if not error:
            d.verdict(f"c0-{i}", ts, "code.canary", "claude-sonnet-4-0", i < 352)
    for i, ts in enumerate(spread(100, T0 + DAY, DAY - 1)):
        d.request(f"c1-{i}", ts, "code.canary", "claude-sonnet-4-0", cost=0.012, experiment="canary", latency=1100.0)
        d.verdict(f"c1-{i}", ts, "code.canary", "claude-sonnet-4-0", i < 88)
    d.request("last", T0 + 2 * DAY, "other.route", "gpt-4o-mini", cost=None)  # the newest request: the window's end
    for ts, seq, state, name in [(T0 + 36 * HOUR, 1, "firing", "TierSwitch"), (T0 + 36 * HOUR, 2, "resolved", "TierSwitch"),
                                 (T0 - 100 * DAY, 1, "firing", "TierSwitch"), (T0 + 30 * HOUR, 1, "firing", "CostSpike")]:
        d.alerts.append({
            "starts_at": ts, "sequence": seq, "status": state, "alertname": name, "route": "support.answer",
            "model": "gpt-4o", "fingerprint": f"fp-{name}-{ts}", "summary": f"{name} at {ts}",
            "ends_at": ts + HOUR if state == "resolved" else None,
        })  # fmt: skip
    return d


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


@pytest.fixture(scope="module")
def data() -> Data:
    return dataset()


@pytest.fixture(scope="module")
def database(engine: Client, data: Data) -> Iterator[str]:
    name = f"rep_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    for table, rows in (("requests", data.requests), ("verdicts", data.verdicts), ("alerts", data.alerts)):
        columns = list(rows[0])
        values = [[_ms(v) if isinstance(v, int) and c in ("ts", "request_ts", "starts_at", "ends_at") else v
                   for c, v in row.items()] for row in rows]
        engine.insert(table, values, column_names=columns, database=name)
    yield name
    engine.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="module")
def query(engine: Client) -> Query:
    return lambda sql: run_read_only(engine, sql, server=False)


def test_cost_projection_reprices_the_route_mix(query: Query, database: str, book: PriceBook) -> None:
    end = T0 + 2 * DAY
    res = cost_projection(query, database, route="support.answer", model="gpt-4o", book=book)
    assert res.window.start_ms == T0 and res.window.end_ms == end
    assert res.requests == 500 and res.priced_requests == 500
    assert res.mix == TokenMix(500, 500_000, 100_000, 150_000, 0)
    current_cpr = (300 * 0.0005 + 200 * 0.005) / 500
    rps = 500 / (2 * 86_400)
    candidate_cpr = gp_price("gpt-4o", "openai", end, 500_000, 100_000, 150_000) / 500
    p = res.projection
    assert p.requests_per_second == pytest.approx(rps)
    assert p.current_cost_per_request == pytest.approx(current_cpr)
    assert p.candidate_cost_per_request == pytest.approx(candidate_cpr, rel=1e-12)
    assert p.delta_per_request == pytest.approx(candidate_cpr - current_cpr)
    assert p.monthly_delta == pytest.approx((candidate_cpr - current_cpr) * rps * 30 * 86_400)
    assert p.projected_monthly == pytest.approx(candidate_cpr * rps * 30 * 86_400)
    assert (res.quality.passed, res.quality.judged) == (180 + 95 + 170, 500)
    assert res.break_even_pass_rate == pytest.approx(candidate_cpr / (current_cpr / (445 / 500)))
    assert res.candidate_observed is not None and res.candidate_observed.quality.rate == pytest.approx(170 / 200)
    assert [m.name for m in res.served] == ["gpt-4o-mini", "gpt-4o"]
    text = render_report(res.to_report(), "table")
    assert "cost_per_request_usd" in text and "UNPRICED" not in text
    assert json.loads(render_report(res.to_report(), "json"))["sections"]["token_mix"][0]["requests"] == 500


def test_cost_projection_of_an_unknown_model_is_unpriced_not_zero(query: Query, database: str, book: PriceBook) -> None:
    res = cost_projection(query, database, route="support.answer", model="acme-internal-llm-7b", book=book)
    assert res.rates is None and not res.priced
    p = res.projection
    assert (p.candidate_cost_per_request, p.delta_per_request, p.monthly_delta, p.projected_monthly) == (None,) * 4
    assert p.current_cost_per_request is not None
    report = res.to_report()
    assert any("UNPRICED" in n for n in report.notes)
    assert "NULL" in render_report(report, "csv")


def test_reports_reject_an_unknown_route(query: Query, database: str, book: PriceBook) -> None:
    with pytest.raises(ReportError, match="support.answer"):
        cost_projection(query, database, route="no.such'route", model="gpt-4o", book=book)


def test_window_follows_days(query: Query, database: str, book: PriceBook) -> None:
    res = cost_projection(query, database, route="support.answer", model="gpt-4o", book=book, days=0.5)
    assert res.window.start_ms == T0 + 2 * DAY - DAY // 2
    assert res.requests == 200  # gpt-4o's 12 hours, the first one on the window's (inclusive) edge
    assert {m.name for m in res.served} == {"gpt-4o"}


def test_model_history(query: Query, database: str) -> None:
    res = model_history(query, database, route="support.answer")
    rows = [(d.day, d.model, d.requests, d.share, d.cost_per_request, d.quality.rate) for d in res.days]
    assert rows == [
        ("2025-03-01", "gpt-4o-mini", 200, 1.0, pytest.approx(0.0005), 0.9),
        ("2025-03-02", "gpt-4o", 200, pytest.approx(2 / 3), pytest.approx(0.005), 0.85),
        ("2025-03-02", "gpt-4o-mini", 100, pytest.approx(1 / 3), pytest.approx(0.0005), 0.95),
    ]
    assert len(res.changes) == 1
    c = res.changes[0]
    assert (c.model, c.previous_model, c.direction) == ("gpt-4o", "gpt-4o-mini", "up")
    assert c.first_seen_ms == T0 + DAY + 12 * HOUR
    assert c.cost_ratio == pytest.approx(10.0) and c.share_since == pytest.approx(1.0)
    assert [(a["starts_at"], a["status"], a["model"]) for a in res.alerts] == [("2025-03-02 12:00:00", "resolved", "gpt-4o")]
    assert any("TierSwitch" in n for n in res.to_report().notes)


def test_diagnostics(query: Query, database: str) -> None:
    res = diagnostics(query, database, route="docs.rag")
    assert res.model == "claude-3-5-haiku-latest"
    got = {(r.kind, r.evaluator): (r.quality.passed, r.quality.judged) for r in res.results}
    assert got == {("online", "judge@1"): (10, 10), ("online", "judge@2"): (60, 100),
                   ("gold_context", "gold@1"): (95, 100), ("closed_book", "closed@1"): (40, 100)}  # fmt: skip
    reading = res.reading()
    assert reading.statuses["online"] == "fail" and reading.statuses["gold_context"] == "pass"
    assert "fix_retrieval" in reading.codes and reading.tier_up == "not indicated"
    table = res.to_report().sections[0]
    used = {(row[0], row[1]) for row in table.rows if row[-1] == "yes"}
    assert used == {("online", "judge@2"), ("gold_context", "gold@1"), ("closed_book", "closed@1")}
    low, high = wilson(95, 100)
    row = next(r for r in table.rows if r[0] == "gold_context")
    assert row[5:7] == [pytest.approx(low), pytest.approx(high)]


def test_tier_down(query: Query, database: str) -> None:
    res = tier_down(query, database, tolerance=0.02, min_judged=100)
    assert len(res.candidates) == 1
    c = res.candidates[0]
    assert (c.route, c.current.name, c.cheaper.name) == ("support.answer", "gpt-4o", "gpt-4o-mini")
    assert (c.cheaper.quality.passed, c.cheaper.quality.judged) == (275, 300)
    assert c.diff_interval == pytest.approx(diff_interval(275, 300, 170, 200))
    assert c.monthly_saving == pytest.approx((0.005 - 0.0005) * 500 / (2 * 86_400) * MONTH)
    assert tier_down(query, database, min_judged=250).candidates == []
    # cost per correct: day 1 (mini only) vs day 2 (mini morning, gpt-4o afternoon)
    rises = {r.route: r for r in res.rises}
    assert set(rises) == {"support.answer"}
    early_cpc = 0.0005 / (180 / 200)
    late_cpc = ((100 * 0.0005 + 200 * 0.005) / 300) / ((95 + 170) / 300)
    assert rises["support.answer"].ratio == pytest.approx(late_cpc / early_cpc)
    assert (rises["support.answer"].early.name, rises["support.answer"].late.name) == ("gpt-4o-mini", "gpt-4o")
    assert (rises["support.answer"].early_mix, rises["support.answer"].late_mix) == ("gpt-4o-mini 100%", "gpt-4o 67%, gpt-4o-mini 33%")


def test_canary(query: Query, database: str) -> None:
    res = canary(query, database, route="code.canary")
    ctl, can = res.control, res.canary
    assert (ctl.name, can.name) == ("control", "canary")
    assert (ctl.requests, ctl.errors, ctl.quality.passed, ctl.quality.judged) == (400, 10, 342, 390)
    assert ctl.error_rate == pytest.approx(10 / 400)
    assert (can.requests, can.quality.passed, can.quality.judged) == (100, 88, 100)
    assert ctl.p95_latency_ms == 1000.0 and can.p95_latency_ms == 1100.0  # ok requests only
    assert ctl.cost_per_request == pytest.approx(0.01) and can.cost_per_request == pytest.approx(0.012)
    assert can.cost_per_correct == pytest.approx(0.012 / 0.88)
    v = res.verdict
    assert v.pass_diff == pytest.approx(diff_interval(88, 100, 342, 390))
    assert v.status == "INCONCLUSIVE"  # 100 verdicts cannot rule out a 2-point drop
    assert v.p95_ratio == pytest.approx(1.1) and v.cost_ratio == pytest.approx(1.2)
    loose = canary(query, database, route="code.canary", criteria=Criteria(max_pass_drop=0.15))
    assert loose.verdict.status == "PASS"
    strict = canary(query, database, route="code.canary", criteria=Criteria(max_pass_drop=0.15, max_cost_ratio=1.1))
    assert strict.verdict.status == "INCONCLUSIVE"
    swapped = canary(query, database, route="code.canary", control="canary", canary_arm="control")
    assert swapped.control.name == "canary"
    with pytest.raises(ReportError, match="arm"):
        canary(query, database, route="support.answer")  # no experiment arms there


def test_cli_parser_and_rendering(query: Query, database: str) -> None:
    parser = argparse.ArgumentParser(prog="telemetry")
    register_report(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", "canary", "--route", "r", "--max-pass-drop", "0.05", "--format", "json", "--check"])
    assert (args.route, args.max_pass_drop, args.days, args.format, args.check) == ("r", 0.05, 7.0, "json", True)
    args = parser.parse_args(["report", "tier-down", "--tolerance", "0.03", "--min-judged", "50", "--days", "30"])
    assert (args.tolerance, args.min_judged, args.days) == (0.03, 50, 30.0)
    for name in ("cost-projection", "model-history", "diagnostics"):
        assert parser.parse_args(["report", name, "--route", "r", "--model", "m"] if name != "model-history"
                                 else ["report", name, "--route", "r"]).func  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "canary", "--route", "r", "--max-pass-drop", "2"])
    report = canary(query, database, route="code.canary").to_report()
    csv_text = render_report(report, "csv")
    assert csv_text.startswith("# arms\narm,role,models,")
    table = render_report(report, "table")
    assert "INCONCLUSIVE" in table.splitlines()[0]


# -- the CLI path: direct on the data path, and through the worker's HTTP page --------------------------------------
def _engine_path(engine: Client) -> str:
    from telemetry.storage import clickhouse

    return next(path for path, client in clickhouse._embedded_clients.items() if client is engine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_cli(argv: list[str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="telemetry")
    register_report(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args, settings)
    return code, capsys.readouterr().out


def test_cli_runs_directly_when_no_worker_answers(engine: Client, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(clickhouse_dsn=f"chdb://{_engine_path(engine)}", clickhouse_database=database,
                             web_port=_free_port())  # fmt: skip
    code, out = _run_cli(["report", "canary", "--route", "code.canary", "--format", "json", "--check"], settings, capsys)
    doc = json.loads(out)
    assert code == 3 and doc["report"] == "canary" and "INCONCLUSIVE" in doc["title"]
    assert [a["arm"] for a in doc["sections"]["arms"]] == ["control", "canary"]
    code, out = _run_cli(["report", "cost-projection", "--route", "support.answer", "--model", "gpt-4o"], settings, capsys)
    assert code == 0 and out.startswith("cost-projection: route support.answer")


def test_cli_asks_the_running_worker(engine: Client, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    class Page(http.server.BaseHTTPRequestHandler):  # the worker's /telemetry/sql/ contract
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(self.path)
            try:
                payload, status = run_read_only(engine, body["sql"], server=False).to_json(), 200
            except Exception as exc:  # noqa: BLE001
                payload, status = {"error": str(exc).splitlines()[0]}, 400
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = load_settings(clickhouse_dsn="chdb:///nonexistent/owned-by-the-worker", clickhouse_database=database,
                                 web_port=server.server_address[1])  # fmt: skip
        code, out = _run_cli(["report", "diagnostics", "--route", "docs.rag", "--format", "csv"], settings, capsys)
        assert code == 0 and out.startswith("# pass_rates\nkind,evaluator,")
        assert seen and set(seen) == {"/telemetry/sql/"}
        query = query_function(settings)
        with pytest.raises(SqlError, match="query failed"):
            query(f"SELECT no_such_column FROM {database}.requests")
    finally:
        server.shutdown()
        server.server_close()
