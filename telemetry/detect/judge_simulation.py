"""A seeded, pure simulation of JudgeDrift: human labels at a realistic rate, a judge whose
agreement drops at a known time (no broker, no storage, no clock).

Each route gets ``labels_per_day`` human-labelled requests a day (Poisson, uniform over the
day). The human passes a request with probability ``human_pass_rate``; the LLM judge passes it
with probability ``sensitivity`` when the human passed it and ``1 - specificity`` when the human
failed it. A human label becomes visible ``label_lag`` after its request (uniform between the
two bounds, hours): the pair is then counted in its *request's* day, as
:mod:`telemetry.worker.agreement_source` counts it. Every hour of event time the detector
(:class:`telemetry.detect.judge.JudgeDriftDetector`) evaluates the input as it stands; a firing
is a condition appearing (JudgeDrift has no ``for`` and no ``keep_firing_for``, so the alert
lifecycle fires and resolves exactly then).

Two experiments:

- :func:`false_alarms` -- clean judges for many route-years: every firing is a false alarm.
- :func:`detection_delays` -- the judge drifts at a known time (a random hour of day 40, after
  the windows are full): the delay from the change to the first firing, per drift and label rate.

``python -m telemetry.detect.judge_simulation [--route-years N] [--replicates N] [--seed S]
[--set judge_key=value ...]`` prints both as Markdown (defaults: 200 clean route-years per clean profile, 100 drifts per
(drift, label rate); ~3 minutes). ``--example`` prints the documented example alert instead
(:func:`example_markdown`; ``--write-example docs/judges.md`` rewrites it there).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pathlib import Path

import numpy as np
import orjson

from telemetry.alerting.payloads import generic
from telemetry.contracts.alert import Alert
from telemetry.detect.agreement import DAY_MS, HOUR_MS, INPUT_KEY, HourPairs, Pairs, kappa
from telemetry.detect.condition import Condition
from telemetry.detect.detector import Context, PassRates
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.facts import RequestFact
from telemetry.detect.inputs import StoredInputs
from telemetry.detect.judge import JudgeDriftDetector, JudgePolicy, span, with_judge_agreement
from telemetry.detect.names import JUDGE_DRIFT, QUALITY_REGRESSION
from telemetry.detect.policy import PolicySection, PolicyView, RoutesView, S, TeamView
from telemetry.detect.window import RouteWindow

T0_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z (a day boundary)
ROUTE = "support.answer"
JUDGE = "helpfulness@v3"
CHANGE_DAY = 40
"""Drifts start on this day: after the recent and baseline windows (35 days) are full."""


@dataclass(frozen=True, slots=True)
class JudgeProfile:
    """A route's human labels and its judge's behaviour against them."""

    name: str
    human_pass_rate: float = 0.9
    sensitivity: float = 0.95
    """P(judge passes | human passed)."""
    specificity: float = 0.8
    """P(judge fails | human failed)."""
    labels_per_day: float = 20.0
    label_lag_hours: tuple[float, float] = (1.0, 48.0)

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa this judge has in expectation."""
        p, se, sp = self.human_pass_rate, self.sensitivity, self.specificity
        scale = 1_000_000
        cells = (p * se, (1 - p) * (1 - sp), p * (1 - se), (1 - p) * sp)
        return kappa(Pairs(*(round(c * scale) for c in cells)))


CLEAN = JudgeProfile("good judge, 90% pass")
CLEAN_BALANCED = JudgeProfile("good judge, 70% pass", human_pass_rate=0.7, sensitivity=0.92, specificity=0.85)
CLEAN_PROFILES = (CLEAN, CLEAN_BALANCED)
DRIFTS = (
    JudgeProfile("lenient: passes 70% of human fails (was 20%)", specificity=0.3),
    JudgeProfile("strict: fails 25% of human passes (was 5%)", sensitivity=0.75),
    JudgeProfile("collapse: judge ignores the answer", sensitivity=0.875, specificity=0.125),
)
LABEL_RATES = (20.0, 50.0)


class _Policies:
    """The one policy every route has (a :class:`RoutesView` without the routes module)."""

    def __init__(self, judge: JudgePolicy, team: str = "") -> None:
        self.judge = judge
        self.team = team

    @property
    def repeat_interval(self) -> int:
        return 4 * HOUR_MS

    def section(self, kind: type[S]) -> S:
        return self.judge if isinstance(self.judge, kind) else kind()

    def severity_of(self, alertname: str) -> str:
        return "warning"

    def for_ms(self, alertname: str) -> int:
        return 0

    def keep_firing_ms(self, alertname: str) -> int:
        return 0

    @property
    def defaults(self) -> PolicyView:
        return self

    @property
    def routes(self) -> Mapping[str, PolicyView]:
        return {}

    @property
    def teams(self) -> Mapping[str, TeamView]:
        return {}

    def for_route(self, route: str) -> PolicyView:
        return self

    def team_for(self, route: str, observed: str = "") -> str:
        return self.team or observed


class _NoQuality:
    def model_pass_rate(self, route: str, model: str) -> tuple[float | None, int, str]:
        return None, 0, ""

    def pass_rates(self, route: str, now_ms: int) -> PassRates | None:
        return None


@dataclass
class RouteRun:
    """What one simulated route did: firing and resolution times (event time, ms)."""

    fired_ms: list[int] = field(default_factory=list)
    resolved_ms: list[int] = field(default_factory=list)
    pairs: int = 0


def _buckets(
    now_h: int,
    recent_h: int,
    lookback_h: int,
    by_hour: dict[int, list[int]],
    by_day: dict[int, list[int]],
    cached: dict[tuple[str, int], HourPairs],
) -> tuple[HourPairs, ...]:
    """The input as the source would give it, with the same window totals but fewer buckets: a
    day that lies within one window is one bucket (at its first hour), the days a window edge
    cuts are hourly. (No pair is dated after ``now_h``: a label comes after its request.)"""
    first, edge = now_h - lookback_h + 1, now_h - recent_h + 1
    out: list[HourPairs] = []
    for day in range(first // 24, now_h // 24 + 1):
        lo, hi = day * 24, min(day * 24 + 23, now_h)
        if first <= lo and (hi < edge or lo >= edge):
            cells = by_day.get(day)
            if cells is not None:
                bucket = cached.get(("d", day))
                if bucket is None:
                    bucket = cached[("d", day)] = HourPairs(lo, Pairs(*cells))
                out.append(bucket)
            continue
        for h in range(max(lo, first), hi + 1):
            cells = by_hour.get(h)
            if cells is not None:
                bucket = cached.get(("h", h))
                if bucket is None:
                    bucket = cached[("h", h)] = HourPairs(h, Pairs(*cells))
                out.append(bucket)
    return tuple(out)


def simulate_route(
    clean: JudgeProfile,
    drifted: JudgeProfile | None,
    change_at_ms: int | None,
    days: int,
    seed: int,
    policy: JudgePolicy | None = None,
    stop_at_first: bool = False,
) -> RouteRun:
    """Run one route for ``days`` days, evaluating every hour. Deterministic for a seed."""
    policy = policy or JudgePolicy()
    rng = np.random.default_rng(seed)
    routes: RoutesView = _Policies(policy)
    windows = {ROUTE: RouteWindow(None, None)}
    detector = JudgeDriftDetector()
    n = int(rng.poisson(clean.labels_per_day * days))
    req = np.sort(rng.integers(0, days * DAY_MS, n)) + T0_MS
    u_human, u_judge = rng.random(n), rng.random(n)
    lo, hi = clean.label_lag_hours
    lag = (rng.uniform(lo, hi, n) * HOUR_MS).astype(np.int64)
    visible = req + lag
    order = np.argsort(visible, kind="stable")
    by_hour: dict[int, list[int]] = {}
    by_day: dict[int, list[int]] = {}
    cached: dict[tuple[str, int], HourPairs] = {}
    run = RouteRun()
    cursor = 0
    firing = False
    recent_h, lookback_h = policy.recent_hours, policy.lookback_hours
    for hour in range(1, days * 24 + 1):
        now = T0_MS + hour * HOUR_MS - 1
        while cursor < n and visible[order[cursor]] <= now:
            i = int(order[cursor])
            cursor += 1
            t = int(req[i])
            p = drifted if drifted is not None and change_at_ms is not None and t >= change_at_ms else clean
            human = u_human[i] < p.human_pass_rate
            judge = u_judge[i] < (p.sensitivity if human else 1.0 - p.specificity)
            cell = (0 if judge else 2) + (0 if human else 1)
            h, d = t // HOUR_MS, t // DAY_MS
            by_hour.setdefault(h, [0, 0, 0, 0])[cell] += 1
            by_day.setdefault(d, [0, 0, 0, 0])[cell] += 1
            cached.pop(("h", h), None)
            cached.pop(("d", d), None)
            run.pairs += 1
        buckets = _buckets(now // HOUR_MS, recent_h, lookback_h, by_hour, by_day, cached)
        data = {ROUTE: {JUDGE: buckets}}
        ctx = Context(now_ms=now, routes=routes, windows=windows, quality=_NoQuality(),
                      inputs=StoredInputs(as_of_ms=now, extra={INPUT_KEY: data}))  # fmt: skip
        holds = bool(detector.evaluate(ctx))
        if holds and not firing:
            run.fired_ms.append(now)
            if stop_at_first:
                return run
        elif firing and not holds:
            run.resolved_ms.append(now)
        firing = holds
    return run


@dataclass
class FalseAlarms:
    """Clean route-years of one profile."""

    profile: JudgeProfile
    route_years: float
    firings: int
    runtime_s: float

    @property
    def per_route_year(self) -> float:
        return self.firings / self.route_years if self.route_years else 0.0

    def interval(self) -> tuple[float, float]:
        """95% interval of :attr:`per_route_year` (Poisson count, Byar's approximation)."""
        x, z = self.firings, 1.959963984540054
        low = 0.0 if x == 0 else x * (1 - 1 / (9 * x) - z / (3 * math.sqrt(x))) ** 3
        high = (x + 1) * (1 - 1 / (9 * (x + 1)) + z / (3 * math.sqrt(x + 1))) ** 3
        return low / self.route_years, high / self.route_years


def false_alarms(profile: JudgeProfile, route_years: int, seed: int, policy: JudgePolicy | None = None) -> FalseAlarms:
    """Firings on ``route_years`` clean routes (each a year after the windows are full)."""
    policy = policy or JudgePolicy()
    started = time.perf_counter()
    warmup = -(-policy.lookback_hours // 24)
    firings = 0
    for r in range(route_years):
        run = simulate_route(profile, None, None, warmup + 365, seed * 100_003 + r, policy)
        firings += sum(1 for t in run.fired_ms if t >= T0_MS + warmup * DAY_MS)
    return FalseAlarms(profile, float(route_years), firings, time.perf_counter() - started)


@dataclass
class Delays:
    """Detection delays of one drift at one label rate."""

    drift: JudgeProfile
    labels_per_day: float
    replicates: int
    delays_h: list[float]
    before_change: int
    horizon_days: int

    @property
    def detected(self) -> int:
        return len(self.delays_h)

    def quantile_days(self, q: float) -> float | None:
        if not self.delays_h:
            return None
        s = sorted(self.delays_h)
        return s[min(len(s) - 1, int(q * len(s)))] / 24.0


def detection_delays(
    drift: JudgeProfile,
    labels_per_day: float,
    replicates: int,
    seed: int,
    horizon_days: int = 42,
    policy: JudgePolicy | None = None,
) -> Delays:
    """Delay from the change (a random hour of day :data:`CHANGE_DAY`) to the first firing."""
    clean = JudgeProfile("clean", labels_per_day=labels_per_day)
    drifted = JudgeProfile(drift.name, drift.human_pass_rate, drift.sensitivity, drift.specificity,
                           labels_per_day, drift.label_lag_hours)  # fmt: skip
    rng = np.random.default_rng(seed)
    delays: list[float] = []
    before = 0
    for r in range(replicates):
        change = T0_MS + CHANGE_DAY * DAY_MS + int(rng.integers(0, 24)) * HOUR_MS
        run = simulate_route(clean, drifted, change, CHANGE_DAY + horizon_days + 1, seed * 7_919 + r, policy)
        early = [t for t in run.fired_ms if t < change]
        before += len(early)
        late = [t for t in run.fired_ms if t >= change]
        if late:
            delays.append((late[0] - change) / HOUR_MS)
    return Delays(drifted, labels_per_day, replicates, delays, before, horizon_days)


def _days(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} d"


def markdown(clean: list[FalseAlarms], delays: list[Delays], policy: JudgePolicy, command: str) -> str:
    """The report as Markdown (docs/judges.md)."""
    lines = [
        f"Command: `{command}`. Policy: recent window {span(policy.judge_recent_window)}, baseline "
        f"{span(policy.judge_baseline_window)}, >= {policy.judge_min_pairs} pairs and {policy.judge_min_class} of each "
        f"human answer, kappa drop >= {policy.judge_kappa_drop} with an error rate up at p <= {policy.judge_alpha:g}/2 "
        f"(Fisher), floor {policy.judge_kappa_floor}. Human labels lag their requests by 1-48 h (uniform).",
        "",
        "False alarms on clean judges (every firing is false):",
        "",
        "| judge | kappa | labels/day | route-years | firings | per route-year (95%) |",
        "|---|---|---|---|---|---|",
    ]
    for c in clean:
        p = c.profile
        low, high = c.interval()
        lines.append(f"| {p.name} | {p.kappa:.2f} | {p.labels_per_day:.0f} | {c.route_years:.0f} | {c.firings} | "
                     f"{c.per_route_year:.2f} ({low:.2f}-{high:.2f}) |")  # fmt: skip
    lines += [
        "",
        f"Detection delay from the change to JudgeDrift (a good judge, 90% pass, kappa {CLEAN.kappa:.2f}, drifts on "
        f"day {CHANGE_DAY}):",
        "",
        "| drift | kappa after | labels/day | detected | median | p90 | fired before the change |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in delays:
        lines.append(
            f"| {d.drift.name} | {d.drift.kappa:.2f} | {d.labels_per_day:.0f} | "
            f"{d.detected}/{d.replicates} within {d.horizon_days} d | {_days(d.quantile_days(0.5))} | "
            f"{_days(d.quantile_days(0.9))} | {d.before_change} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# the documented example (docs/judges.md)

DOCS_BEGIN = "<!-- BEGIN GENERATED: python -m telemetry.detect.judge_simulation --example -->"
DOCS_END = "<!-- END GENERATED -->"
EXAMPLE_NOW_MS = T0_MS + 70 * DAY_MS + 9 * HOUR_MS + 30 * 60_000  # 2025-03-12T09:30:00Z


def example_input(now_ms: int = EXAMPLE_NOW_MS) -> dict[str, dict[str, tuple[HourPairs, ...]]]:
    """20 labelled requests a day on support.answer: 31 days of a good judge (humans pass 90%;
    the judge passes ~1 in 10 human fails and fails ~1 in 20 human passes), then a week in which
    it passes most of what humans fail (yesterday's and today's labels still coming in)."""
    today = now_ms // DAY_MS
    days: list[HourPairs] = []
    for k in range(38):
        day = today - 37 + k
        if k < 31:
            pass_fail = 1 if k % 5 == 0 else 0
            pairs = Pairs(17, pass_fail, 1, 2 - pass_fail)
        else:
            labelled = 20 if k < 36 else (12 if k == 36 else 3)  # labels lag: the last days fill in
            fails = 2 if k % 2 else 3
            pass_fail = fails - 1 if k % 3 else fails
            pairs = Pairs(labelled - fails - 1, pass_fail, 1, fails - pass_fail)
        days.append(HourPairs(day * 24 + 9, pairs))  # the day's labelled requests, at 09:00
    return {ROUTE: {JUDGE: tuple(days)}}


def example_alert() -> tuple[Alert, Condition]:
    """The JudgeDrift alert the engine raises on :func:`example_input`, and what
    :func:`~telemetry.detect.judge.with_judge_agreement` adds to a QualityRegression of that judge."""
    now = EXAMPLE_NOW_MS
    engine = DetectionEngine(_Policies(JudgePolicy(), team="support"), env="prod")
    engine.observe_requests([RequestFact(now - 1000, ROUTE, "support", "gpt-4o-mini", "gpt-4o-mini", 0.0004, 900.0,
                                         "ok", "", "stop", 1)])  # fmt: skip
    inputs = StoredInputs(as_of_ms=now, extra={INPUT_KEY: example_input(now)})
    engine.set_inputs(inputs)
    [alert] = [a for a in engine.evaluate(now) if a.labels["alertname"] == JUDGE_DRIFT]
    ctx = Context(now_ms=now, routes=engine.config, windows=engine.windows, quality=_NoQuality(), inputs=inputs)
    quality = Condition(QUALITY_REGRESSION, ROUTE, "gpt-4o-mini", "", "...", {"judge_version": JUDGE}, now)
    return alert, with_judge_agreement(quality, ctx, JUDGE)


def _json(obj: object) -> str:
    return "```json\n" + orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n```\n"


def example_markdown() -> str:
    """The example section of docs/judges.md, generated from the code."""
    alert, quality = example_alert()
    added = {k: v for k, v in quality.evidence.items() if k.startswith("judge_") and k != "judge_version"}
    return (
        f"{DOCS_BEGIN}\n\n"
        f"The alert the engine raises on 38 days of `{ROUTE}` pairs (`example_input()`: 20 labels a day, a good judge "
        f"for 31 days, then a week in which it passes most of what humans fail), in the generic webhook format:\n\n"
        + _json(generic(alert))
        + "\nWhat the same input adds to a QualityRegression decided on this judge's verdicts (evidence keys, and one "
        "sentence at the end of the description):\n\n"
        + _json(added)
        + f"\n> {quality.description.removeprefix('...').strip()}\n\n{DOCS_END}"
    )


def updated(text: str) -> str:
    """``text`` (docs/judges.md) with its generated example replaced by :func:`example_markdown`."""
    start, end = text.index(DOCS_BEGIN), text.index(DOCS_END) + len(DOCS_END)
    return text[:start] + example_markdown() + text[end:]


def main(argv: list[str] | None = None) -> None:
    """``python -m telemetry.detect.judge_simulation``: print the Markdown report."""
    parser = argparse.ArgumentParser(description="Simulated JudgeDrift false alarms and detection delays.")
    parser.add_argument("--route-years", type=int, default=200, help="clean route-years per clean profile")
    parser.add_argument("--replicates", type=int, default=100, help="drifts per (drift, label rate)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a JudgeDrift key of the routes file, e.g. judge_recent_window=4d")  # fmt: skip
    parser.add_argument("--example", action="store_true", help="print the documented example alert")
    parser.add_argument("--write-example", metavar="FILE", help="rewrite the example in FILE (docs/judges.md)")
    args = parser.parse_args(argv)
    if args.example:
        print(example_markdown())
        return
    if args.write_example:
        path = Path(args.write_example)
        path.write_text(updated(path.read_text(encoding="utf-8")), encoding="utf-8")
        return
    overrides = dict(item.split("=", 1) for item in args.set)
    policy = JudgePolicy.model_validate(overrides)
    started = time.perf_counter()
    clean = [false_alarms(p, args.route_years, args.seed + i, policy) for i, p in enumerate(CLEAN_PROFILES)]
    delays = [
        detection_delays(d, rate, args.replicates, args.seed + 10 * i + j, policy=policy)
        for i, d in enumerate(DRIFTS)
        for j, rate in enumerate(LABEL_RATES)
    ]
    command = "python -m telemetry.detect.judge_simulation"
    if (args.route_years, args.replicates, args.seed) != (200, 100, 1):
        command += f" --route-years {args.route_years} --replicates {args.replicates} --seed {args.seed}"
    command += "".join(f" --set {item}" for item in args.set)
    print(markdown(clean, delays, policy, command))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
