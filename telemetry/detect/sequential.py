"""Always-valid sequential tests: decide on running totals as often as you like. Pure, stdlib only.

A canary is looked at every minute (every input refresh, in fact) for days. A fixed-sample test
repeated at every look rejects a true hypothesis far more often than its level says (with a
z-test at 5% looked at 1,000 times, about half the time); the tests here keep their error
probability at ``alpha`` however often, and whenever, they are looked at, because each is a
**test martingale** and Ville's inequality bounds the chance that it ever crosses ``1/alpha``
under the null. The set of values a test does not reject is a **confidence sequence**: it
covers the true value at every time at once with probability ``1 - alpha``.

Two mixtures, one per kind of evidence:

- :func:`beta_binomial_log_lr` — **exact**, for one proportion (an error rate, the share of
  requests slower than a latency target, a pass rate): Robbins' conjugate mixture,
  ``M_n(theta) = integral of p^x (1-p)^(n-x) dBeta(a, b) / (theta^x (1-theta)^(n-x))``,
  a non-negative martingale with mean 1 for every fixed ``theta`` when the observations are
  Bernoulli(theta). No approximation, no minimum sample.
- :func:`normal_mixture_log_lr` — **asymptotic**, for an estimate with a standard error that
  is approximately normal (a difference of pass rates, the log of a cost ratio): the mixture
  SPRT of Robbins as used for A/B tests by Johari et al. (2017, "Peeking at A/B tests"):
  ``Lambda = (1 + I tau^2)^(-1/2) exp(I^2 tau^2 (est - theta0)^2 / (2 (1 + I tau^2)))`` with
  ``I = 1 / se^2`` the information and ``tau`` the scale of the mixing normal. Valid as the
  estimate's normal approximation is; callers require minimum counts first.

Each mixture is tuned to the alternatives that matter (:func:`beta_prior`, ``tau``): the
guarantee holds for any tuning, only the time to a decision changes.

:func:`decide` turns one test into a decision on a one-sided criterion ``theta < theta0`` (or
``>``): **pass** when every value on the wrong side of ``theta0`` is rejected, **fail** when every
value on the right side is, otherwise undecided. Both statistics are convex in ``theta0`` around
the estimate, so rejecting ``theta0`` itself rejects the whole side beyond it: one statistic at
the threshold decides both ways, and the probability of any wrong decision is at most ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Decision = Literal["pass", "fail", "undecided"]

_BISECT_STEPS = 60


def log_beta(a: float, b: float) -> float:
    """``log B(a, b)``."""
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_prior(theta0: float) -> tuple[float, float]:
    """The mixing Beta of a proportion tested against ``theta0`` (``0 < theta0 < 1``).

    Mean ``theta0`` and ``a + b = 1 / min(theta0, 1 - theta0)``: the rarer outcome has one
    pseudo-observation, so the mixture spreads over rates from a fraction of ``theta0`` to a few
    times it (``Beta(1, 19)`` for 5%, ``Beta(1, 99)`` for 1%) -- the alternatives a canary
    criterion is about.
    """
    if not 0.0 < theta0 < 1.0:
        raise ValueError("theta0 must be strictly between 0 and 1")
    k = 1.0 / min(theta0, 1.0 - theta0)
    return theta0 * k, (1.0 - theta0) * k


def beta_binomial_log_lr(successes: int, n: int, theta: float, a: float, b: float) -> float:
    """``log M_n(theta)``: the Beta(a, b) mixture likelihood ratio against Bernoulli(theta)
    after ``successes`` out of ``n``. ``-inf``/``+inf`` at the edges are handled: ``theta`` of 0
    or 1 contradicted by the data gives ``inf``."""
    if n <= 0:
        return 0.0
    x, y = successes, n - successes
    if theta <= 0.0:
        return math.inf if x > 0 else log_beta(a, b + y) - log_beta(a, b)
    if theta >= 1.0:
        return math.inf if y > 0 else log_beta(a + x, b) - log_beta(a, b)
    return log_beta(a + x, b + y) - log_beta(a, b) - x * math.log(theta) - y * math.log1p(-theta)


def normal_mixture_log_lr(estimate: float, se: float, theta0: float, tau: float) -> float:
    """``log Lambda``: the normal-mixture likelihood ratio of ``estimate`` (standard error ``se``)
    against ``theta0``, mixing over ``N(theta0, tau^2)`` alternatives. ``se == 0`` is treated as
    near-exact information (a huge ratio unless ``estimate == theta0``)."""
    info = 1.0 / (se * se) if se > 0 else 1e18
    it2 = info * tau * tau
    return -0.5 * math.log1p(it2) + info * it2 * (estimate - theta0) ** 2 / (2.0 * (1.0 + it2))


def normal_mixture_radius(se: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at this look: the ``theta0`` with
    :func:`normal_mixture_log_lr` ``= log(1/alpha)`` are ``estimate +- radius``."""
    if se <= 0:
        return 0.0
    info = 1.0 / (se * se)
    it2 = info * tau * tau
    return math.sqrt(2.0 * (1.0 + it2) * (math.log(1.0 / alpha) + 0.5 * math.log1p(it2)) / (info * it2))


@dataclass(frozen=True, slots=True)
class Test:
    """One look of one test: the estimate, the confidence sequence ``[low, high]`` at this look,
    the log likelihood ratio at the threshold and the decision."""

    estimate: float | None
    low: float
    high: float
    log_lr: float
    decision: Decision


def decide(estimate: float | None, log_lr: float, theta0: float, below: bool, alpha: float) -> Decision:
    """The decision on ``theta < theta0`` (``below``) or ``theta > theta0`` from the mixture
    likelihood ratio at ``theta0``: undecided until it reaches ``1/alpha``, then pass or fail by
    the side of the estimate."""
    if estimate is None or log_lr < math.log(1.0 / alpha) or estimate == theta0:
        return "undecided"
    good = estimate < theta0 if below else estimate > theta0
    return "pass" if good else "fail"


def _root(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The crossing of ``f`` (negative at ``lo``, non-negative at ``hi``, monotone between)."""
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if f(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def proportion_test(successes: int, n: int, theta0: float, below: bool, alpha: float, *, bounds: bool = True) -> Test:
    """Exact always-valid test of a proportion against ``theta0`` (Beta mixture of
    :func:`beta_prior`), with the confidence sequence at this look (``bounds=False``: without
    it, ``[0, 1]``; the decision does not need it)."""
    a, b = beta_prior(theta0)
    log_lr = beta_binomial_log_lr(successes, n, theta0, a, b)
    if n <= 0:
        return Test(None, 0.0, 1.0, log_lr, "undecided")
    est = successes / n
    if not bounds:
        return Test(est, 0.0, 1.0, log_lr, decide(est, log_lr, theta0, below, alpha))
    level = math.log(1.0 / alpha)

    def excess(theta: float) -> float:
        return beta_binomial_log_lr(successes, n, theta, a, b) - level

    low = 0.0 if excess(0.0) < 0.0 or est <= 0.0 else _root(lambda t: -excess(t), 0.0, est)
    high = 1.0 if excess(1.0) < 0.0 or est >= 1.0 else _root(excess, est, 1.0)
    return Test(est, low, high, log_lr, decide(est, log_lr, theta0, below, alpha))


def normal_test(estimate: float | None, se: float, theta0: float, below: bool, alpha: float, tau: float) -> Test:
    """Asymptotic always-valid test of an approximately normal ``estimate`` against ``theta0``
    (normal mixture with scale ``tau``), with the confidence sequence at this look. ``estimate``
    None: no data yet."""
    if estimate is None:
        return Test(None, -math.inf, math.inf, 0.0, "undecided")
    log_lr = normal_mixture_log_lr(estimate, se, theta0, tau)
    radius = normal_mixture_radius(se, tau, alpha)
    return Test(estimate, estimate - radius, estimate + radius, log_lr, decide(estimate, log_lr, theta0, below, alpha))


def restricted_difference_se(x1: int, n1: int, x2: int, n2: int, delta: float) -> float:
    """Standard error of ``p1 - p2`` at the maximum-likelihood rates constrained to
    ``p1 - p2 = delta`` (Farrington & Manning 1990, closed form).

    The test of a margin uses it: the plain estimate ``p(1-p)/n`` is too small exactly when a
    small arm is lucky (30 of 30 passes), which makes a non-inferiority test pass falsely; the
    rates under the null do not depend on that luck. ``n1, n2 > 0``.
    """
    p1, p2 = x1 / n1, x2 / n2
    theta = n2 / n1
    a = 1.0 + theta
    b = -(1.0 + theta + p1 + theta * p2 + delta * (theta + 2.0))
    c = delta * delta + delta * (2.0 * p1 + theta + 1.0) + p1 + theta * p2
    d = -p1 * delta * (1.0 + delta)
    v = b**3 / (27.0 * a**3) - b * c / (6.0 * a * a) + d / (2.0 * a)
    u2 = b * b / (9.0 * a * a) - c / (3.0 * a)
    if u2 <= 0.0:
        r1 = min(1.0, max(0.0, p1))
    else:
        u = math.copysign(math.sqrt(u2), v) if v != 0 else math.sqrt(u2)
        w = (math.pi + math.acos(max(-1.0, min(1.0, v / u**3)))) / 3.0
        r1 = 2.0 * u * math.cos(w) - b / (3.0 * a)
    r1 = min(1.0, max(0.0, r1))
    r2 = min(1.0, max(0.0, r1 - delta))
    return math.sqrt(r1 * (1.0 - r1) / n1 + r2 * (1.0 - r2) / n2)


def fixed_z_decision(estimate: float, se: float, theta0: float, below: bool, alpha: float) -> Decision:
    """What a fixed-sample one-sided z-test pair at level ``alpha`` would say at one look: the
    naive method whose error grows with every look (for comparison in the simulation and
    tests; never used to decide)."""
    if se <= 0:
        return "undecided"
    z = (estimate - theta0) / se
    crit = _normal_quantile(1.0 - alpha)
    if abs(z) < crit:
        return "undecided"
    good = z < 0 if below else z > 0
    return "pass" if good else "fail"


def _normal_quantile(p: float) -> float:
    """Standard normal quantile by bisection on ``erfc`` (enough for test levels)."""
    return _root(lambda z: 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0)) - p, -10.0, 10.0)
