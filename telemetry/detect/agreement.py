"""Agreement of an LLM judge with human labels on the same requests. Pure functions, stdlib only.

A judge and a human each say pass or fail of one request: a *pair*. :class:`Pairs` holds the
2x2 counts (rows: the judge, columns: the human); :func:`assess` gives, for a set of pairs:

- **raw agreement** ``p_o = (pass_pass + fail_fail) / n`` with its 95% Wilson interval;
- **Cohen's kappa** ``(p_o - p_e) / (1 - p_e)``, ``p_e = p_judge p_human + (1 - p_judge)(1 -
  p_human)`` the agreement two raters with these pass rates would reach by chance, with the
  large-sample standard error of Fleiss, Cohen & Everitt (1969) (the non-null variance; the one
  SAS, R ``irr``/``psych`` and statsmodels report) and the Wald 95% interval ``kappa +- 1.96 se``
  clipped to [-1, 1]. Kappa is undefined (None) when ``p_e = 1`` (both raters gave one
  same answer to every request).

Raw agreement alone hides a judge that passes everything on a route that mostly passes (90%
raw agreement, kappa 0); kappa alone depends on the pass rate. Both are reported; the drift
decision (:mod:`telemetry.detect.judge`) is on kappa.

The detectors receive the pairs per UTC hour of request time: :data:`INPUT_KEY` of
:attr:`telemetry.detect.inputs.StoredInputs.extra` maps ``route -> judge -> (HourPairs, ...)``
(oldest hour first, hours without a pair left out; see :mod:`telemetry.worker.agreement_source`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from telemetry.detect.stats import Z95_TWO_SIDED, wilson

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
INPUT_KEY: Final = "judge_agreement"
"""The key of the agreement input in :attr:`telemetry.detect.inputs.StoredInputs.extra`."""


@dataclass(frozen=True, slots=True)
class Pairs:
    """2x2 counts of (judge, human) verdict pairs; the first word is the judge's verdict."""

    pass_pass: int = 0
    """Both passed the request."""
    pass_fail: int = 0
    """The judge passed what the human failed (a lenient judge)."""
    fail_pass: int = 0
    """The judge failed what the human passed (a strict judge)."""
    fail_fail: int = 0
    """Both failed it."""

    @property
    def n(self) -> int:
        return self.pass_pass + self.pass_fail + self.fail_pass + self.fail_fail

    @property
    def agreed(self) -> int:
        return self.pass_pass + self.fail_fail

    @property
    def human_passed(self) -> int:
        return self.pass_pass + self.fail_pass

    @property
    def human_failed(self) -> int:
        return self.pass_fail + self.fail_fail

    @property
    def judge_passed(self) -> int:
        return self.pass_pass + self.pass_fail

    def __add__(self, other: Pairs) -> Pairs:
        return Pairs(
            self.pass_pass + other.pass_pass,
            self.pass_fail + other.pass_fail,
            self.fail_pass + other.fail_pass,
            self.fail_fail + other.fail_fail,
        )


@dataclass(frozen=True, slots=True)
class HourPairs:
    """The pairs of one judge on one route whose request falls in UTC hour ``hour`` (epoch ms //
    :data:`HOUR_MS`)."""

    hour: int
    pairs: Pairs


JudgeAgreementInput: TypeAlias = Mapping[str, Mapping[str, tuple[HourPairs, ...]]]
"""``route -> judge (evaluator incl. version) -> pairs per hour``, oldest hour first."""


def kappa(p: Pairs) -> float | None:
    """Cohen's kappa of the pairs; None when there are none or ``p_e = 1``."""
    n = p.n
    if n <= 0:
        return None
    pj, ph = p.judge_passed / n, p.human_passed / n
    pe = pj * ph + (1.0 - pj) * (1.0 - ph)
    if 1.0 - pe <= 1e-12:
        return None
    return (p.agreed / n - pe) / (1.0 - pe)


def kappa_se(p: Pairs) -> float | None:
    """Large-sample standard error of :func:`kappa` (Fleiss, Cohen & Everitt 1969).

    ``Var = [sum_i p_ii (1 - (p_i. + p_.i)(1 - k))^2 + (1 - k)^2 sum_{i!=j} p_ij (p_.i + p_j.)^2
    - (k - p_e (1 - k))^2] / (n (1 - p_e)^2)``. It is 0 when a rater's answers are all one
    value (a degenerate margin): callers require both human answers in enough numbers.
    """
    k = kappa(p)
    if k is None:
        return None
    n = p.n
    p11, p12, p21, p22 = p.pass_pass / n, p.pass_fail / n, p.fail_pass / n, p.fail_fail / n
    r1, r2 = p11 + p12, p21 + p22  # the judge's pass / fail shares (rows)
    c1, c2 = p11 + p21, p12 + p22  # the human's (columns)
    pe = r1 * c1 + r2 * c2
    m = 1.0 - k
    a = p11 * (1.0 - (r1 + c1) * m) ** 2 + p22 * (1.0 - (r2 + c2) * m) ** 2
    b = m * m * (p12 * (c1 + r2) ** 2 + p21 * (c2 + r1) ** 2)
    c = (k - pe * m) ** 2
    return math.sqrt(max(0.0, a + b - c) / (n * (1.0 - pe) ** 2))


def kappa_of_rates(human_pass: float, false_pass: float, false_fail: float) -> float | None:
    """Kappa of a judge with these error rates against humans who pass ``human_pass`` of the
    requests: ``false_pass`` = P(judge passes | human failed), ``false_fail`` = P(judge fails |
    human passed). Decreasing in both rates (at any pass rate); None when ``p_e = 1``."""
    h = human_pass
    pj = h * (1.0 - false_fail) + (1.0 - h) * false_pass
    pe = pj * h + (1.0 - pj) * (1.0 - h)
    if 1.0 - pe <= 1e-12:
        return None
    po = h * (1.0 - false_fail) + (1.0 - h) * (1.0 - false_pass)
    return (po - pe) / (1.0 - pe)


def kappa_upper(p: Pairs, z: float = Z95_TWO_SIDED) -> float | None:
    """An upper confidence bound of kappa that holds its level at small counts.

    Given the human labels, kappa is a decreasing function of the judge's false-pass and
    false-fail rates (:func:`kappa_of_rates`); each rate has a Wilson interval, exact enough
    with a handful of human fails. Kappa at both rates' lower bounds (one-sided ``z`` each: 1.96
    gives a one-sided bound of >= 95%, Bonferroni) bounds it from above. The Wald interval of
    :func:`assess` leans on an SE estimated from the same few human fails, which shrinks in the
    unlucky samples: for a good judge (kappa 0.68, humans pass 90%) seen through 60-140 pairs
    its upper end falls below 0.4 15-25 times as often as this bound does. So the floor rule of
    JudgeDrift decides on this bound. None without both human answers.
    """
    if p.human_failed <= 0 or p.human_passed <= 0:
        return None
    fp_low = wilson(p.pass_fail, p.human_failed, z)[0]
    ff_low = wilson(p.fail_pass, p.human_passed, z)[0]
    return kappa_of_rates(p.human_passed / p.n, fp_low, ff_low)


@dataclass(frozen=True, slots=True)
class Agreement:
    """What a set of pairs says about a judge: kappa and raw agreement with 95% intervals."""

    pairs: Pairs
    kappa: float | None
    kappa_se: float | None
    kappa_low: float | None
    kappa_high: float | None
    raw: float | None
    raw_low: float | None
    raw_high: float | None

    @property
    def n(self) -> int:
        return self.pairs.n


def assess(p: Pairs, z: float = Z95_TWO_SIDED) -> Agreement:
    """Kappa (Wald interval on the Fleiss-Cohen-Everitt SE, clipped to [-1, 1]) and raw
    agreement (Wilson interval) of ``p``; ``z`` sets the interval (1.96: two-sided 95%)."""
    n = p.n
    k, se = kappa(p), kappa_se(p)
    low = high = None
    if k is not None and se is not None:
        low, high = max(-1.0, k - z * se), min(1.0, k + z * se)
    if n <= 0:
        return Agreement(p, None, None, None, None, None, None, None)
    raw_low, raw_high = wilson(p.agreed, n, z)
    return Agreement(p, k, se, low, high, p.agreed / n, raw_low, raw_high)


def drop_z(baseline: Agreement, recent: Agreement) -> float | None:
    """``(kappa_baseline - kappa_recent) / sqrt(se_b^2 + se_r^2)``: the drop in standard errors
    (two independent samples); None if either kappa is undefined. A drop with both SEs 0 is
    infinitely many standard errors."""
    if baseline.kappa is None or recent.kappa is None or baseline.kappa_se is None or recent.kappa_se is None:
        return None
    drop = baseline.kappa - recent.kappa
    se = math.hypot(baseline.kappa_se, recent.kappa_se)
    if se <= 0.0:
        return math.inf if drop > 0 else (-math.inf if drop < 0 else 0.0)
    return drop / se


def _log_choose(n: int, r: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)


def fisher_greater(x1: int, n1: int, x2: int, n2: int) -> float:
    """One-sided Fisher exact p-value that the rate ``x1/n1`` exceeds ``x2/n2``.

    ``P(X >= x1)`` with ``X`` hypergeometric given both totals: exact at any count (a judge's
    error rate among a handful of human fails included). 1.0 when either sample is empty.
    Sums the smaller tail, from its inner end outwards (terms only shrink), by the pmf's ratio.
    """
    if n1 <= 0 or n2 <= 0:
        return 1.0
    k_total, n = x1 + x2, n1 + n2
    lo, hi = max(0, k_total - n2), min(k_total, n1)
    if x1 <= lo:
        return 1.0
    if x1 > hi:
        return 0.0

    def pmf(k: int) -> float:
        return math.exp(_log_choose(k_total, k) + _log_choose(n - k_total, n1 - k) - _log_choose(n, n1))

    def ratio_up(k: int) -> float:  # pmf(k + 1) / pmf(k)
        return (k_total - k) * (n1 - k) / ((k + 1) * (n - k_total - n1 + k + 1))

    upper = x1 > (k_total + 1) * (n1 + 1) / (n + 2)  # beyond the mode: the upper tail is the small one
    k = x1 if upper else x1 - 1
    term = pmf(k)
    tail = 0.0
    while True:
        tail += term
        if term <= 1e-17 * tail:
            break
        if upper:
            if k >= hi:
                break
            term *= ratio_up(k)
            k += 1
        else:
            if k <= lo:
                break
            k -= 1
            term /= ratio_up(k)
    return min(1.0, tail) if upper else min(1.0, max(0.0, 1.0 - tail))


def total(hours: Iterable[HourPairs], first_hour: int, last_hour: int) -> Pairs:
    """The pairs of the hours ``first_hour .. last_hour`` (inclusive)."""
    a = b = c = d = 0
    for bucket in hours:
        if first_hour <= bucket.hour <= last_hour:
            p = bucket.pairs
            a += p.pass_pass
            b += p.pass_fail
            c += p.fail_pass
            d += p.fail_fail
    return Pairs(a, b, c, d)


def for_judge(data: object, route: str, judge: str) -> tuple[HourPairs, ...] | None:
    """The hours of ``judge`` on ``route`` in an agreement input, None if it has none (or the
    input is missing or malformed)."""
    if not isinstance(data, Mapping):
        return None
    judges = data.get(route)
    if not isinstance(judges, Mapping):
        return None
    hours = judges.get(judge)
    return hours if isinstance(hours, tuple) else None
