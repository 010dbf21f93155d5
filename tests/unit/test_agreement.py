"""Agreement statistics of a judge against human labels: kappa, its standard error and
intervals, raw agreement, the exact test of an error rate, windows of daily pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from telemetry.detect.agreement import (
    HourPairs,
    Pairs,
    assess,
    drop_z,
    fisher_greater,
    for_judge,
    kappa,
    kappa_of_rates,
    kappa_se,
    kappa_upper,
    total,
)
from telemetry.detect.stats import wilson

cells = st.integers(0, 300)


def test_kappa_and_raw_agreement_of_a_textbook_table() -> None:
    # 50 items: both yes 20, both no 15, the raters disagree on 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = assess(Pairs(20, 5, 10, 15))
    assert a.kappa == pytest.approx(0.4)
    assert a.raw == pytest.approx(0.7)
    assert (a.raw_low, a.raw_high) == wilson(35, 50)
    assert a.kappa_se is not None and a.kappa_low == pytest.approx(0.4 - 1.959963984540054 * a.kappa_se)
    assert a.n == 50


def test_perfect_chance_and_undefined_agreement() -> None:
    assert kappa(Pairs(80, 0, 0, 20)) == pytest.approx(1.0)
    assert kappa(Pairs(40, 10, 40, 10)) == pytest.approx(0.0)  # the judge ignores the answer
    assert kappa(Pairs(0, 10, 10, 0)) == pytest.approx(-1.0)
    assert kappa(Pairs()) is None and kappa_se(Pairs()) is None
    assert kappa(Pairs(50, 0, 0, 0)) is None  # both always pass: p_e = 1
    empty = assess(Pairs())
    assert (empty.kappa, empty.raw, empty.kappa_low) == (None, None, None)


def _se_general(table: np.ndarray) -> float:
    """Fleiss, Cohen & Everitt (1969) for any k x k table, written independently of the 2x2 code."""
    n = table.sum()
    p = table / n
    rows, cols = p.sum(1), p.sum(0)
    pe = float((rows * cols).sum())
    k = (float(np.trace(p)) - pe) / (1 - pe)
    a = sum(p[i, i] * (1 - (rows[i] + cols[i]) * (1 - k)) ** 2 for i in range(len(p)))
    b = (1 - k) ** 2 * sum(p[i, j] * (cols[i] + rows[j]) ** 2 for i in range(len(p)) for j in range(len(p)) if i != j)
    c = (k - pe * (1 - k)) ** 2
    return math.sqrt(max(0.0, a + b - c) / (n * (1 - pe) ** 2))  # a degenerate margin: 0 up to rounding


@given(cells, cells, cells, cells)
@example(a=0, b=0, c=1, d=6)  # the judge never passes: a variance of 0, and rounding in the reference
@example(a=0, b=0, c=1, d=2)
def test_the_2x2_standard_error_is_the_general_formula(a: int, b: int, c: int, d: int) -> None:
    p = Pairs(a, b, c, d)
    se = kappa_se(p)
    if se is None:
        return
    assert se == pytest.approx(_se_general(np.array([[a, b], [c, d]], dtype=float)), rel=1e-9, abs=1e-6)


@pytest.mark.parametrize(
    ("probs", "n"),
    [((0.855, 0.02, 0.045, 0.08), 140), ((0.5, 0.1, 0.1, 0.3), 200), ((0.855, 0.02, 0.045, 0.08), 2000)],
)
def test_the_standard_error_matches_the_spread_of_kappa(probs: tuple[float, ...], n: int) -> None:
    """A judge at 90% human pass rate with 140 pairs (two weeks of labels) included."""
    rng = np.random.default_rng(3)
    ks, ses = [], []
    for t in rng.multinomial(n, probs, size=4000):
        p = Pairs(*(int(x) for x in t))
        k, se = kappa(p), kappa_se(p)
        if k is not None and se is not None:
            ks.append(k)
            ses.append(se)
    assert float(np.median(ses)) == pytest.approx(float(np.std(ks)), rel=0.08)


def test_the_interval_stays_within_minus_one_and_one() -> None:
    a = assess(Pairs(3, 0, 0, 1))
    assert a.kappa == pytest.approx(1.0) and a.kappa_high == 1.0 and a.kappa_low is not None and a.kappa_low >= -1.0


def test_drop_in_standard_errors() -> None:
    base, recent = assess(Pairs(400, 10, 20, 70)), assess(Pairs(80, 10, 10, 5))
    z = drop_z(base, recent)
    assert base.kappa is not None and recent.kappa is not None and base.kappa_se and recent.kappa_se
    assert z == pytest.approx((base.kappa - recent.kappa) / math.hypot(base.kappa_se, recent.kappa_se))
    assert drop_z(base, assess(Pairs())) is None


def _fisher_brute(x1: int, n1: int, x2: int, n2: int) -> float:
    k_total, n = x1 + x2, n1 + n2
    return sum(math.comb(k_total, k) * math.comb(n - k_total, n1 - k) for k in range(x1, min(k_total, n1) + 1)) / math.comb(n, n1)


@settings(max_examples=300)
@given(st.integers(1, 80), st.integers(1, 400), st.data())
def test_fisher_is_the_exact_hypergeometric_tail(n1: int, n2: int, data: st.DataObject) -> None:
    x1, x2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    assert fisher_greater(x1, n1, x2, n2) == pytest.approx(_fisher_brute(x1, n1, x2, n2), rel=1e-9, abs=1e-15)


def test_fisher_edges() -> None:
    assert fisher_greater(3, 10, 1, 10) == pytest.approx(0.2910216718)  # [[3, 7], [1, 9]]
    assert fisher_greater(10, 10, 0, 10) == pytest.approx(1 / math.comb(20, 10))
    assert fisher_greater(0, 10, 5, 10) == 1.0
    assert fisher_greater(1, 0, 1, 5) == 1.0 and fisher_greater(1, 5, 0, 0) == 1.0


@given(cells, cells, cells, cells)
def test_kappa_of_rates_is_kappa_of_the_table(a: int, b: int, c: int, d: int) -> None:
    p = Pairs(a, b, c, d)
    if p.human_passed == 0 or p.human_failed == 0 or kappa(p) is None:
        return
    k = kappa_of_rates(p.human_passed / p.n, p.pass_fail / p.human_failed, p.fail_pass / p.human_passed)
    assert k == pytest.approx(kappa(p), abs=1e-9)


@given(st.floats(0.01, 0.99), st.floats(0, 1), st.floats(0, 1), st.floats(0.001, 0.2))
def test_kappa_falls_as_either_error_rate_rises(h: float, fp: float, ff: float, step: float) -> None:
    base = kappa_of_rates(h, fp, ff)
    for more in (kappa_of_rates(h, min(1.0, fp + step), ff), kappa_of_rates(h, fp, min(1.0, ff + step))):
        if base is not None and more is not None:
            assert more <= base + 1e-12


@given(cells, cells, cells, cells)
def test_the_upper_bound_is_above_the_estimate(a: int, b: int, c: int, d: int) -> None:
    p = Pairs(a, b, c, d)
    k, upper = kappa(p), kappa_upper(p)
    if k is not None and upper is not None:
        assert upper >= k - 1e-12


def test_the_upper_bound_holds_its_level_and_rarely_puts_a_good_judge_below_the_floor() -> None:
    """A good judge (kappa 0.68, humans pass 90%) seen through 60 pairs (~6 human fails): the
    bound is above the truth at least 95% of the time, and it falls below a 0.4 floor far less
    often than the Wald interval's upper end, whose SE shrinks in exactly the unlucky samples."""
    probs, true = (0.855, 0.02, 0.045, 0.08), kappa_of_rates(0.9, 0.2, 0.05)
    assert true is not None
    rng = np.random.default_rng(11)
    used = misses = wald_low = upper_low = 0
    for t in rng.multinomial(60, probs, size=100_000):
        p = Pairs(*(int(x) for x in t))
        a, upper = assess(p), kappa_upper(p)
        if p.human_failed < 5 or a.kappa_high is None or upper is None:
            continue
        used += 1
        misses += upper < true
        wald_low += a.kappa_high < 0.4
        upper_low += upper < 0.4
    assert misses / used < 0.05
    assert wald_low >= 10 * max(1, upper_low)


def test_windows_of_hourly_pairs() -> None:
    days = (HourPairs(10, Pairs(1, 0, 0, 0)), HourPairs(12, Pairs(0, 1, 0, 0)), HourPairs(13, Pairs(0, 0, 1, 1)))
    assert total(days, 11, 13) == Pairs(0, 1, 1, 1)
    assert total(days, 10, 10) == Pairs(1, 0, 0, 0)
    assert total(days, 14, 20) == Pairs()
    assert Pairs(1, 2, 3, 4) + Pairs(1, 1, 1, 1) == Pairs(2, 3, 4, 5)
    data = {"r": {"j@1": days}}
    assert for_judge(data, "r", "j@1") == days
    assert for_judge(data, "r", "j@2") is None and for_judge(data, "s", "j@1") is None
    assert for_judge(None, "r", "j@1") is None and for_judge({"r": {"j@1": [1]}}, "r", "j@1") is None
