"""Always-valid sequential tests: the formulas, and the error rate under continuous monitoring.

The type-I checks look at running totals at every one of hundreds of looks (as the canary
detector does every minute) with fixed seeds, and compare with a fixed-sample z-test repeated at
the same looks, whose error grows with the number of looks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from telemetry.detect.sequential import (
    beta_binomial_log_lr,
    beta_prior,
    decide,
    fixed_z_decision,
    normal_mixture_log_lr,
    normal_mixture_radius,
    normal_test,
    proportion_test,
    restricted_difference_se,
)


def test_beta_prior_has_the_threshold_as_mean_and_one_pseudo_count_on_the_rare_side() -> None:
    assert beta_prior(0.05) == pytest.approx((1.0, 19.0))
    assert beta_prior(0.01) == pytest.approx((1.0, 99.0))
    a, b = beta_prior(0.9)
    assert a / (a + b) == pytest.approx(0.9) and b == pytest.approx(1.0)
    with pytest.raises(ValueError):
        beta_prior(1.0)


def test_beta_binomial_mixture_is_the_integral_it_claims() -> None:
    x, n, theta = 7, 40, 0.05
    a, b = beta_prior(theta)
    grid = (np.arange(200_000) + 0.5) / 200_000
    density = grid ** (a - 1) * (1 - grid) ** (b - 1) / math.exp(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    mixture = float(np.mean(density * grid**x * (1 - grid) ** (n - x)))
    expected = math.log(mixture) - (x * math.log(theta) + (n - x) * math.log(1 - theta))
    assert beta_binomial_log_lr(x, n, theta, a, b) == pytest.approx(expected, rel=1e-4)
    assert beta_binomial_log_lr(0, 0, theta, a, b) == 0.0
    assert beta_binomial_log_lr(1, 5, 0.0, a, b) == math.inf  # a rate of 0 is refuted by one success


def test_proportion_test_confidence_sequence_and_decisions() -> None:
    bad = proportion_test(40, 200, 0.05, True, 0.05)  # 20% slow against 5% allowed
    assert bad.decision == "fail" and 0.05 < bad.low < 0.2 < bad.high
    good = proportion_test(2, 2000, 0.05, True, 0.05)
    assert good.decision == "pass" and good.high < 0.05
    unsure = proportion_test(3, 60, 0.05, True, 0.05)
    assert unsure.decision == "undecided" and unsure.low < 0.05 < unsure.high
    assert proportion_test(0, 0, 0.05, True, 0.05).decision == "undecided"
    quick = proportion_test(40, 200, 0.05, True, 0.05, bounds=False)
    assert quick.decision == "fail" and (quick.low, quick.high) == (0.0, 1.0)
    # the bounds are where the statistic crosses 1/alpha
    a, b = beta_prior(0.05)
    for bound in (bad.low, bad.high):
        assert beta_binomial_log_lr(40, 200, bound, a, b) == pytest.approx(math.log(20), abs=1e-6)


def test_normal_mixture_radius_inverts_the_statistic() -> None:
    est, se, tau, alpha = 0.013, 0.004, 0.02, 0.0125
    r = normal_mixture_radius(se, tau, alpha)
    for theta0 in (est - r, est + r):
        assert normal_mixture_log_lr(est, se, theta0, tau) == pytest.approx(math.log(1 / alpha), rel=1e-9)
    t = normal_test(est, se, -0.02, False, alpha, tau)
    assert t.decision == "pass" and t.low > -0.02
    assert normal_test(None, 0.0, 0.0, True, 0.05, 1.0).decision == "undecided"
    assert decide(0.1, 100.0, 0.1, True, 0.05) == "undecided"  # exactly at the threshold: no side


def test_restricted_standard_error() -> None:
    # at the observed difference the constrained rates are the observed ones
    assert restricted_difference_se(90, 100, 900, 1000, 0.0) == pytest.approx(math.sqrt(0.09 / 100 + 0.09 / 1000))
    # a lucky small arm (99/100 against 98%) is judged at the rates of the margin, not its luck
    lucky = restricted_difference_se(99, 100, 980, 1000, -0.02)
    assert lucky > 1.8 * math.sqrt(0.99 * 0.01 / 100 + 0.98 * 0.02 / 1000)
    # the constrained maximum likelihood, found by brute force, agrees
    x1, n1, x2, n2, delta = 45, 50, 170, 200, 0.03
    grid = np.linspace(max(0.0, delta) + 1e-6, min(1.0, 1 + delta) - 1e-6, 200_001)
    ll = x1 * np.log(grid) + (n1 - x1) * np.log1p(-grid) + x2 * np.log(grid - delta) + (n2 - x2) * np.log1p(-(grid - delta))
    r1 = float(grid[np.argmax(ll)])
    r2 = r1 - delta
    assert restricted_difference_se(x1, n1, x2, n2, delta) == pytest.approx(
        math.sqrt(r1 * (1 - r1) / n1 + r2 * (1 - r2) / n2), rel=1e-4
    )


@pytest.mark.parametrize("theta0", [0.05, 0.01])
def test_proportion_test_keeps_alpha_when_looked_at_every_minute(theta0: float) -> None:
    """At the threshold itself (the worst case: every decision is wrong), 800 looks of 25
    observations each: the mixture decides in fewer than alpha of the runs; the same looks with
    a fixed-sample z-test decide in most of them."""
    rng = np.random.default_rng(11)
    runs, looks, per, alpha = 200, 800, 25, 0.1
    counts = rng.binomial(per, theta0, size=(runs, looks)).cumsum(axis=1)
    sequential = naive = 0
    for row in counts:
        for i, x in enumerate(row):
            if proportion_test(int(x), per * (i + 1), theta0, True, alpha, bounds=False).decision != "undecided":
                sequential += 1
                break
        for i, x in enumerate(row):
            n = per * (i + 1)
            p = x / n
            if fixed_z_decision(p, math.sqrt(max(p * (1 - p), 1e-12) / n), theta0, True, alpha / 2) != "undecided":
                naive += 1
                break
    assert sequential / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert naive / runs > 3 * alpha


def test_normal_mixture_keeps_alpha_on_a_margin_when_looked_at_every_minute() -> None:
    """A difference of pass rates exactly at its margin (-2 points), 2 and 18 verdicts a minute,
    600 looks: the mixture with the restricted standard error decides in fewer than alpha of the runs."""
    rng = np.random.default_rng(12)
    runs, looks, alpha, margin = 200, 600, 0.1, -0.02
    decided = 0
    for _ in range(runs):
        n1 = rng.poisson(2.0, looks).cumsum()
        n2 = rng.poisson(18.0, looks).cumsum()
        x1 = rng.binomial(np.diff(n1, prepend=0), 0.95 + margin).cumsum()
        x2 = rng.binomial(np.diff(n2, prepend=0), 0.95).cumsum()
        for i in range(looks):
            if n1[i] < 30:
                continue
            est = x1[i] / n1[i] - x2[i] / n2[i]
            se = restricted_difference_se(int(x1[i]), int(n1[i]), int(x2[i]), int(n2[i]), margin)
            if normal_test(est, se, margin, False, alpha, 0.02).decision != "undecided":
                decided += 1
                break
    assert decided / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
