"""Exact statistics used by the detectors."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.detect.stats import (
    binom_cdf,
    binom_sf,
    cusum_arl0,
    cusum_threshold,
    mad_sigma,
    median,
    wilson,
)


def _brute_sf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(max(k, 0), n + 1))


@given(n=st.integers(0, 120), k=st.integers(-2, 125), p=st.floats(0.001, 0.999))
def test_binomial_tails_match_brute_force(n: int, k: int, p: float) -> None:
    sf = binom_sf(k, n, p)
    assert math.isclose(sf, _brute_sf(k, n, p), rel_tol=1e-6, abs_tol=1e-12)
    assert math.isclose(binom_cdf(k, n, p), 1.0 - _brute_sf(k + 1, n, p), rel_tol=1e-6, abs_tol=1e-12)


def test_binomial_tail_is_tiny_far_out_and_exact_in_large_n() -> None:
    assert binom_sf(60, 100, 0.05) < 1e-30
    assert math.isclose(binom_sf(500, 1000, 0.5), 0.5126125090, rel_tol=1e-8)


@given(passed=st.integers(0, 500), extra=st.integers(0, 500))
def test_wilson_interval_contains_the_estimate(passed: int, extra: int) -> None:
    n = passed + extra
    lo, hi = wilson(passed, n)
    if n:
        assert 0.0 <= lo <= passed / n <= hi <= 1.0
    else:
        assert (lo, hi) == (0.0, 1.0)


def test_wilson_known_value() -> None:
    lo, hi = wilson(90, 100)
    assert math.isclose(lo, 0.8256, abs_tol=1e-4) and math.isclose(hi, 0.9448, abs_tol=1e-4)


def test_median_and_mad() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert math.isclose(mad_sigma([1.0, 2.0, 3.0, 4.0, 100.0], 3.0), 1.4826)


def test_cusum_threshold_reaches_the_wanted_run_length() -> None:
    up, down = math.log(0.2 / 0.1), math.log(0.8 / 0.9)
    h = cusum_threshold(0.9, up, down, 100_000, 4.0, 14.0)
    assert math.isclose(cusum_arl0(0.9, up, down, h), 100_000, rel_tol=1e-3)
    assert cusum_threshold(0.9, up, down, 200_000, 4.0, 14.0) > h
    assert cusum_threshold(0.9, up, down, 10.0, 4.0, 14.0) == 4.0
    assert cusum_threshold(0.9, up, down, 1e30, 4.0, 14.0) == 14.0


@settings(deadline=None, max_examples=1)
@given(seed=st.just(11))
def test_cusum_run_length_approximation_is_close_to_simulation(seed: int) -> None:
    rng = random.Random(seed)
    up, down, h = math.log(0.2 / 0.1), math.log(0.8 / 0.9), 4.5
    alarms, s, n = 0, 0.0, 600_000
    for _ in range(n):
        s = s + up if rng.random() >= 0.9 else max(0.0, s + down)
        if s >= h:
            alarms, s = alarms + 1, 0.0
    simulated = n / alarms
    assert 0.8 < cusum_arl0(0.9, up, down, h) / simulated < 1.25
