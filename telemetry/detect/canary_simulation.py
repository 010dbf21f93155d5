"""Canary decisions under continuous monitoring: a seeded, pure simulation of the CanaryVerdict tests.

Each run is one canary on one route for up to its deadline: per minute, Poisson requests per
arm, errors, lognormal latency and cost per request, a judged sample with a pass rate; the
totals since the start are judged **every minute** by the detector's own decision functions
(:func:`telemetry.detect.canary.judge` and :func:`~telemetry.detect.canary.outcome`), exactly
as the worker would see them at a once-a-minute refresh. Scenarios where every criterion holds
measure false rollbacks; scenarios where one criterion is violated measure false promotions;
scenarios with one criterion exactly at its threshold show the worst case (every decision
about that criterion is unwarranted there). Each gives the median time to a decision.
For comparison, the same looks with fixed-sample z-tests (what a dashboard check does) show how
repeated looks inflate false decisions.

``python -m telemetry.detect.canary_simulation [--runs N] [--seed S]`` prints the figures as
Markdown (``docs/canaries.md``; 200 runs per scenario take a few minutes on one core).
``--example`` prints the documented CanaryVerdict example (a rollback decided in the
``bad_latency`` scenario) and ``--write-example docs/alerts.md`` refreshes it in that file.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import orjson

from telemetry.detect.canary import (
    Action,
    ArmTotals,
    CanarySpec,
    CriterionResult,
    Decided,
    decision,
    judge,
    outcome,
    parse_criterion,
)
from telemetry.detect.policy import MINUTE_MS
from telemetry.detect.sequential import Decision, fixed_z_decision

T0_MS = 1_741_939_200_000  # 2025-03-14T08:00:00Z
Truth = Literal["good", "bad", "boundary"]


@dataclass(frozen=True, slots=True)
class Arm:
    """Traffic of one arm: per minute, and per request."""

    requests_per_minute: float
    error_rate: float = 0.003
    latency_median_ms: float = 120.0
    latency_sigma: float = 0.5
    cost_median: float = 0.002
    cost_sigma: float = 0.6
    judged_fraction: float = 0.2
    pass_rate: float = 0.9

    def slow_share(self, target_ms: float) -> float:
        """Share of requests slower than ``target_ms`` (lognormal latency)."""
        z = (math.log(target_ms) - math.log(self.latency_median_ms)) / self.latency_sigma
        return 0.5 * math.erfc(z / math.sqrt(2.0))


CRITERIA = ("p95_latency_ms < 400", "error_rate < 0.01", "pass_rate_delta > -0.02", "cost_per_correct_ratio < 1.5")
"""The criteria of every scenario (the four the issue names)."""

CONTROL = Arm(requests_per_minute=90.0)
CANARY = Arm(requests_per_minute=10.0)
_P95_Z = 1.6448536269514722


@dataclass(frozen=True, slots=True)
class Scenario:
    """A canary against its control; ``truth`` says which decisions are wrong."""

    name: str
    truth: Truth
    canary: Arm
    what: str
    control: Arm = CONTROL
    criteria: tuple[str, ...] = CRITERIA


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("good_same", "good", CANARY, "the canary is the control's twin"),
    Scenario("good_better", "good", replace(CANARY, latency_median_ms=100.0, cost_median=0.0014, pass_rate=0.91),
             "faster, 30% cheaper, 1 point better"),
    Scenario("bad_latency", "bad", replace(CANARY, latency_median_ms=250.0), "p95 ~570 ms (17% slower than 400 ms)"),
    Scenario("bad_errors", "bad", replace(CANARY, error_rate=0.02), "2% errors"),
    Scenario("bad_quality", "bad", replace(CANARY, pass_rate=0.84), "pass rate 6 points lower"),
    Scenario("bad_cost", "bad", replace(CANARY, cost_median=0.0044), "cost per correct answer 2.2x"),
    Scenario("boundary_quality", "boundary", replace(CANARY, pass_rate=0.88), "pass rate exactly 2 points lower"),
    Scenario("boundary_latency", "boundary", replace(CANARY, latency_median_ms=400.0 / math.exp(_P95_Z * 0.5)),
             "p95 exactly 400 ms"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunResult:
    action: Action
    minutes: int
    criterion: str = ""


class _Series:
    """Cumulative per-minute totals of one arm over the horizon."""

    def __init__(self, rng: np.random.Generator, arm: Arm, minutes: int, targets: Sequence[float]) -> None:
        n = rng.poisson(arm.requests_per_minute, minutes)
        errors = rng.binomial(n, arm.error_rate)
        ok = n - errors
        self.requests = np.cumsum(n)
        self.errors = np.cumsum(errors)
        self.ok = np.cumsum(ok)
        self.slow = {t: np.cumsum(rng.binomial(ok, arm.slow_share(t))) for t in targets}
        costs = arm.cost_median * np.exp(arm.cost_sigma * rng.standard_normal(int(self.requests[-1]) if minutes else 0))
        ends = self.requests
        self.cost = np.concatenate([[0.0], np.cumsum(costs)])[ends]
        self.cost_sq = np.concatenate([[0.0], np.cumsum(costs * costs)])[ends]
        judged = rng.binomial(n, arm.judged_fraction)
        self.judged = np.cumsum(judged)
        self.passed = np.cumsum(rng.binomial(judged, arm.pass_rate))

    def at(self, i: int) -> ArmTotals:
        return ArmTotals(
            requests=int(self.requests[i]), errors=int(self.errors[i]), ok=int(self.ok[i]),
            slow={t: int(s[i]) for t, s in self.slow.items()}, priced=int(self.requests[i]),
            cost=float(self.cost[i]), cost_sq=float(self.cost_sq[i]), judged=int(self.judged[i]),
            passed=int(self.passed[i]),
        )  # fmt: skip


def spec_of(scenario: Scenario, deadline_minutes: int, alpha: float = 0.05) -> CanarySpec:
    return CanarySpec(model="canary-model", share=0.1, criteria=tuple(parse_criterion(c) for c in scenario.criteria),
                      deadline=deadline_minutes * MINUTE_MS, alpha=alpha)  # fmt: skip


def naive_outcome(spec: CanarySpec, can: ArmTotals, ctl: ArmTotals) -> Action | None:
    """The same look with a fixed-sample z-test per criterion, ``alpha / (2k)`` on each side (one
    look at a threshold decides wrongly with ``alpha / k``, as the sequential test may over all
    looks): what a dashboard check repeated every minute decides (never used by the detector)."""
    alpha = spec.alpha / len(spec.criteria) / 2
    decisions: list[Decision] = []
    for c in spec.criteria:
        est: float | None = None
        se = 0.0
        if c.metric == "error_rate" and can.requests:
            est = can.errors / can.requests
            se = math.sqrt(max(est * (1 - est), 1e-12) / can.requests)
        elif c.metric == "latency" and can.ok:
            est = can.slow.get(c.threshold, 0) / can.ok
            se = math.sqrt(max(est * (1 - est), 1e-12) / can.ok)
        elif c.metric == "pass_rate_delta" and can.judged >= spec.min_samples and ctl.judged >= spec.min_samples:
            p1, p2 = can.passed / can.judged, ctl.passed / ctl.judged
            est = p1 - p2
            se = math.sqrt(max(p1 * (1 - p1), 1e-12) / can.judged + max(p2 * (1 - p2), 1e-12) / ctl.judged)
        elif c.metric == "cost_per_correct_ratio" and min(can.priced, ctl.priced, can.judged, ctl.judged) >= spec.min_samples \
                and can.passed and ctl.passed:  # fmt: skip
            p1, p2 = can.passed / can.judged, ctl.passed / ctl.judged
            est = math.log((can.cost / can.priced) / (ctl.cost / ctl.priced)) - math.log(p1 / p2)
            se = math.sqrt(can.cost_cv2() / can.priced + ctl.cost_cv2() / ctl.priced
                           + (1 - p1) / (can.judged * p1) + (1 - p2) / (ctl.judged * p2))  # fmt: skip
        threshold = math.log(c.threshold) if c.metric.startswith("cost") else (1 - (c.quantile or 0.95)) if c.metric == "latency" else c.threshold
        decisions.append("undecided" if est is None else fixed_z_decision(est, se, threshold, c.below, alpha))
    if "fail" in decisions:
        return "rollback"
    return "promote" if all(d == "pass" for d in decisions) else None


def run_once(scenario: Scenario, rng: np.random.Generator, deadline_minutes: int, *, naive: bool = False,
             alpha: float = 0.05) -> tuple[RunResult, list[CriterionResult] | None, _Series, _Series]:  # fmt: skip
    """One canary looked at every minute until a decision or its deadline."""
    spec = spec_of(scenario, deadline_minutes, alpha)
    targets = spec.latency_targets
    can_s = _Series(rng, scenario.canary, deadline_minutes, targets)
    ctl_s = _Series(rng, scenario.control, deadline_minutes, targets)
    for i in range(deadline_minutes):
        can, ctl = can_s.at(i), ctl_s.at(i)
        if naive:
            action = naive_outcome(spec, can, ctl)
            if action is not None:
                return RunResult(action, i + 1), None, can_s, ctl_s
            continue
        results = judge(spec, can, ctl, bounds=False)
        action, failing = outcome(results)
        if action is not None:
            return RunResult(action, i + 1, failing.criterion.text if failing else ""), results, can_s, ctl_s
    return RunResult("inconclusive", deadline_minutes), None, can_s, ctl_s


@dataclass(slots=True)
class Figures:
    """One scenario's outcomes over its runs."""

    scenario: Scenario
    runs: int = 0
    actions: dict[str, int] = field(default_factory=lambda: {a: 0 for a in ("rollback", "promote", "inconclusive")})
    minutes: list[int] = field(default_factory=list)
    criteria: dict[str, int] = field(default_factory=dict)

    def add(self, r: RunResult) -> None:
        self.runs += 1
        self.actions[r.action] += 1
        if r.action != "inconclusive":
            self.minutes.append(r.minutes)
        if r.criterion:
            self.criteria[r.criterion] = self.criteria.get(r.criterion, 0) + 1

    def share(self, action: str) -> float:
        return self.actions[action] / self.runs if self.runs else 0.0

    @property
    def wrong(self) -> float:
        """Share of runs with a wrong decision: a rollback when every criterion holds, a
        promotion when one is violated, any decision at the threshold."""
        if self.scenario.truth == "good":
            return self.share("rollback")
        if self.scenario.truth == "bad":
            return self.share("promote")
        return self.share("rollback") + self.share("promote")

    @property
    def median_minutes(self) -> float | None:
        return statistics.median(self.minutes) if self.minutes else None


def simulate(scenarios: Sequence[Scenario] = SCENARIOS, runs: int = 200, seed: int = 1, deadline_minutes: int = 3 * 1440,
             naive: bool = False, alpha: float = 0.05) -> list[Figures]:  # fmt: skip
    """Every scenario ``runs`` times (seeded per scenario: adding one changes no other)."""
    out = []
    for k, scenario in enumerate(scenarios):
        rng = np.random.default_rng([seed, k, int(naive)])
        fig = Figures(scenario)
        for _ in range(runs):
            fig.add(run_once(scenario, rng, deadline_minutes, naive=naive, alpha=alpha)[0])
        out.append(fig)
    return out


def _duration(minutes: float | None) -> str:
    if minutes is None:
        return "-"
    return f"{minutes / 60:.1f} h" if minutes >= 120 else f"{minutes:.0f} min"


def markdown(figures: Sequence[Figures], naive: Sequence[Figures] = (), *, seed: int = 1, deadline_minutes: int = 4320) -> str:
    """The figures as Markdown tables (docs/canaries.md)."""
    runs = figures[0].runs if figures else 0
    lines = [
        (f"{runs} runs per scenario, seed {seed}, looks every minute for up to {_duration(deadline_minutes)} "
        f"(the deadline), alpha 0.05 over the {len(CRITERIA)} criteria; canary {CANARY.requests_per_minute:g} "
        f"requests/min, control {CONTROL.requests_per_minute:g}, {100 * CONTROL.judged_fraction:g}% judged."),
        "",
        "| scenario | canary | truth | rollback | promote | inconclusive | wrong decisions | median time to decision | rollbacks named |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for f in figures:
        named = ", ".join(f"`{c}` {n}" for c, n in sorted(f.criteria.items(), key=lambda kv: -kv[1])) or "-"
        lines.append(
            f"| {f.scenario.name} | {f.scenario.what} | {f.scenario.truth} | {100 * f.share('rollback'):.1f}% | "
            f"{100 * f.share('promote'):.1f}% | {100 * f.share('inconclusive'):.1f}% | {100 * f.wrong:.1f}% | "
            f"{_duration(f.median_minutes)} | {named} |"
        )
    good = [f for f in figures if f.scenario.truth == "good"]
    bad = [f for f in figures if f.scenario.truth == "bad"]
    if good and bad:
        false_rollback = sum(f.actions["rollback"] for f in good) / sum(f.runs for f in good)
        false_promote = sum(f.actions["promote"] for f in bad) / sum(f.runs for f in bad)
        lines += ["", (f"False rollback (good canaries): {100 * false_rollback:.1f}%; false promote (bad canaries): "
                      f"{100 * false_promote:.1f}%.")]  # fmt: skip
    if naive:
        lines += ["", ("The same looks with a fixed-sample z-test per criterion (alpha / 8 on each side: one look at a "
                      "threshold errs with alpha / 4), i.e. a dashboard check repeated every minute:"), "",
                  "| scenario | truth | rollback | promote | wrong decisions | median time to decision |",
                  "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for f in naive:
            lines.append(f"| {f.scenario.name} | {f.scenario.truth} | {100 * f.share('rollback'):.1f}% | "
                         f"{100 * f.share('promote'):.1f}% | {100 * f.wrong:.1f}% | {_duration(f.median_minutes)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# the documented example (docs/alerts.md)

EXAMPLE_BEGIN = "<!-- BEGIN GENERATED CANARY: python -m telemetry.detect.canary_simulation --example -->"
EXAMPLE_END = "<!-- END GENERATED CANARY -->"
EXAMPLE_ROUTE = "support.answer"
EXAMPLE_EMITTED_DELAY_MS = 150


def example_decision(seed: int = 3) -> tuple[CanarySpec, Decided]:
    """The rollback the ``bad_latency`` scenario decides with ``seed``, as the detector words it."""
    scenario = next(s for s in SCENARIOS if s.name == "bad_latency")
    rng = np.random.default_rng(seed)
    result, results, can_s, ctl_s = run_once(scenario, rng, 3 * 1440)
    assert result.action == "rollback" and results is not None, result
    i = result.minutes - 1
    spec = CanarySpec(model="gpt-4.1-mini", share=0.1, arm="canary",
                      criteria=tuple(parse_criterion(c) for c in scenario.criteria))  # fmt: skip
    can, ctl = can_s.at(i), ctl_s.at(i)
    full = judge(spec, can, ctl)
    action, failing = outcome(full)
    now = T0_MS + result.minutes * MINUTE_MS
    return spec, decision(EXAMPLE_ROUTE, spec, T0_MS, full, action or "inconclusive", failing, can, ctl, now, now)


def example_markdown() -> str:
    """The Kafka record of the example rollback and its resolution, generated from the code."""
    from telemetry.alerting.payloads import cloudevent, kafka_record
    from telemetry.contracts._time import ms_to_datetime
    from telemetry.contracts.alert import Alert, fingerprint

    spec, d = example_decision()
    labels = {"alertname": "CanaryVerdict", "route": EXAMPLE_ROUTE, "model": spec.model, "team": "support",
              "severity": "warning", "env": "prod"}  # fmt: skip
    firing = Alert(fingerprint=fingerprint(labels), status="firing", labels=labels,
                   annotations={"summary": d.summary, "description": d.description}, evidence=d.evidence,
                   starts_at=ms_to_datetime(d.at_ms), decided_at=ms_to_datetime(d.at_ms), sequence=1)  # fmt: skip
    end = d.at_ms + spec.hold
    resolved = firing.model_copy(update={"status": "resolved", "ends_at": ms_to_datetime(end),
                                         "decided_at": ms_to_datetime(end), "sequence": 2})  # fmt: skip
    record = kafka_record(firing, emitted_at_ms=d.at_ms + EXAMPLE_EMITTED_DELAY_MS)
    criteria = ", ".join(f'"{c.text}"' for c in spec.criteria)
    return "".join([
        ("Declared as:\n\n```toml\n"
        f'[routes."{EXAMPLE_ROUTE}".canary]\nmodel = "{spec.model}"\narm = "{spec.arm}"\nshare = {spec.share}\n'
        f"criteria = [{criteria}]\n```\n\n"),
        ("The rollback the `bad_latency` simulation scenario decides (seed 3), as the worker publishes it on "
        "`<prefix>alerts`:\n\n"),
        f"- key: `{record.key.decode()}`\n",
        "".join(f"- header `{k}`: `{v.decode()}`\n" for k, v in record.headers),
        "- value (shown indented; sent compact):\n\n",
        _json_block(orjson.loads(record.value)),
        f"\nIts resolution, {spec.hold // 60_000} min later (no `canary*` attributes: nothing to act on):\n\n",
        _json_block(cloudevent(resolved, emitted_at_ms=end + EXAMPLE_EMITTED_DELAY_MS)),
    ])  # fmt: skip


def _json_block(obj: object) -> str:
    return "```json\n" + orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n```\n"


def replace_example(document: str, generated: str) -> str:
    """``document`` with the text between :data:`EXAMPLE_BEGIN` and :data:`EXAMPLE_END` replaced.
    Raises ValueError when the markers are missing or out of order."""
    start, end = document.find(EXAMPLE_BEGIN), document.find(EXAMPLE_END)
    if start < 0 or end < start:
        raise ValueError(f"markers {EXAMPLE_BEGIN!r} ... {EXAMPLE_END!r} not found")
    return document[: start + len(EXAMPLE_BEGIN)] + "\n\n" + generated + "\n" + document[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telemetry.detect.canary_simulation", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per scenario (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-naive", action="store_true", help="skip the fixed-sample comparison")
    parser.add_argument("--example", action="store_true", help="print the documented CanaryVerdict example")
    parser.add_argument("--write-example", metavar="PATH", help="refresh the example in PATH (docs/alerts.md)")
    args = parser.parse_args(argv)
    if args.example:
        sys.stdout.write(example_markdown())
        return 0
    if args.write_example:
        from pathlib import Path

        path = Path(args.write_example)
        path.write_text(replace_example(path.read_text(encoding="utf-8"), example_markdown()), encoding="utf-8")
        return 0
    figures = simulate(runs=args.runs, seed=args.seed)
    naive = [] if args.no_naive else simulate([s for s in SCENARIOS if s.truth != "bad"], runs=args.runs,
                                               seed=args.seed, naive=True)  # fmt: skip
    sys.stdout.write(markdown(figures, naive, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
