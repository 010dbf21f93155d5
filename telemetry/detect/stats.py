"""Small, exact statistics the detectors decide and report on. Pure functions, stdlib only.

- :func:`wilson` — Wilson score interval of a binomial proportion.
- :func:`binom_sf` / :func:`binom_cdf` — exact binomial tails (one-sided p-values).
- :func:`median` / :func:`mad_sigma` — robust location and scale.
- :func:`cusum_threshold` — the Bernoulli CUSUM decision interval ``h`` that gives a wanted
  average run length (verdicts between false alarms) on clean data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95_TWO_SIDED = 1.959963984540054
Z95_ONE_SIDED = 1.6448536269514722


def wilson(passed: float, n: float, z: float = Z95_TWO_SIDED) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``passed`` successes out of ``n``.

    Returns ``(0.0, 1.0)`` when ``n <= 0``. ``z`` = 1.96 gives the two-sided 95% interval;
    ``z`` = 1.645 makes ``low`` a one-sided 95% lower bound.
    """
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, passed / n))
    z2 = z * z
    centre = p + z2 / (2.0 * n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    denom = 1.0 + z2 / n
    low = 0.0 if p <= 0.0 else max(0.0, min(p, (centre - half) / denom))
    high = 1.0 if p >= 1.0 else min(1.0, max(p, (centre + half) / denom))
    return low, high


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def _tail(k_from: int, k_to: int, step: int, n: int, p: float) -> float:
    """Sum of pmf from ``k_from`` towards ``k_to`` (inclusive), stopping when terms vanish.

    Callers sum away from the mode, so terms only shrink: once one underflows to 0 (a tail far
    below 1e-308), the rest do too -- stop there rather than walk all ``n`` terms."""
    total = 0.0
    k = k_from
    while (k <= k_to) if step > 0 else (k >= k_to):
        term = math.exp(_log_pmf(k, n, p))
        total += term
        if term <= 1e-17 * total:
            break
        k += step
    return total


def binom_sf(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``: exact, summed from the small side."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if k > n * p:
        return min(1.0, _tail(k, n, 1, n, p))
    return max(0.0, 1.0 - _tail(k - 1, 0, -1, n, p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``: exact, summed from the small side."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if k < n * p:
        return min(1.0, _tail(k, 0, -1, n, p))
    return max(0.0, 1.0 - _tail(k + 1, n, 1, n, p))


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


def mad_sigma(values: Sequence[float], centre: float) -> float:
    """Robust standard deviation: 1.4826 x median absolute deviation from ``centre``."""
    return 1.4826 * median([abs(v - centre) for v in values])


def _theta(p_true: float, up: float, down: float) -> float:
    """Positive root of ``q e^(t up) + p e^(t down) = 1`` (0 if the drift is not negative)."""
    q = 1.0 - p_true
    drift = q * up + p_true * down
    if drift >= 0.0:
        return 0.0
    lo, hi = 1e-9, 1.0
    while q * math.exp(hi * up) + p_true * math.exp(hi * down) < 1.0:
        hi *= 2.0
        if hi > 1e6:
            return hi
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if q * math.exp(mid * up) + p_true * math.exp(mid * down) < 1.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _arl(t: float, drift: float, up: float, h: float) -> float:
    if t <= 0.0:
        return h / max(drift, 1e-12)
    x = min(t * (h + 0.5 * up), 700.0)
    return (math.exp(x) - x - 1.0) / (t * abs(drift))


def cusum_arl0(p_true: float, up: float, down: float, h: float) -> float:
    """Approximate verdicts between false alarms of a Bernoulli CUSUM on clean data.

    ``up`` (> 0) is the step on a failed verdict, ``down`` (< 0) the step on a passed one,
    ``p_true`` the clean pass rate. Wald/Siegmund: ``(e^(t H) - t H - 1) / (t |drift|)`` with
    ``t`` the root of the step's moment generating function and ``H = h + up/2`` (overshoot).
    Within ~15% of simulation for 90% -> 80% designs, on the low (safe) side.
    """
    drift = (1.0 - p_true) * up + p_true * down
    return _arl(_theta(p_true, up, down), drift, up, h)


def cusum_threshold(p_true: float, up: float, down: float, arl0: float, h_min: float, h_max: float) -> float:
    """Smallest ``h`` in ``[h_min, h_max]`` whose :func:`cusum_arl0` reaches ``arl0`` verdicts."""
    drift = (1.0 - p_true) * up + p_true * down
    t = _theta(p_true, up, down)
    if _arl(t, drift, up, h_min) >= arl0:
        return h_min
    if _arl(t, drift, up, h_max) < arl0:
        return h_max
    lo, hi = h_min, h_max
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if _arl(t, drift, up, mid) >= arl0:
            hi = mid
        else:
            lo = mid
    return hi
