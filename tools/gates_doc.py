"""Regenerate the examples of ``docs/gates.md`` from the code (a gate record, the alerts).

    python -m tools.gates_doc          # rewrite the generated block
    python -m tools.gates_doc --check  # exit 1 when the doc is out of date (the tests do this)

Everything is computed by the product's own pure code: the gate's evidence by
``telemetry.gates.evidence`` and its page by ``telemetry.gates.render``; the alerts by the
detection engine driven with seeded traffic (``telemetry.detect.testing``).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import orjson

from telemetry.contracts.alert import Alert
from telemetry.detect.engine import DetectionEngine
from telemetry.detect.inputs import Gate, StoredInputs
from telemetry.detect.testing import DAY, T0, Driver, Profile
from telemetry.gates import evidence as E
from telemetry.gates import model
from telemetry.gates.render import markdown
from telemetry.reports.stats import Proportion
from telemetry.routes import RoutesConfig
from tools.generated import main, replace_block

DOC = Path(__file__).resolve().parents[1] / "docs" / "gates.md"
BEGIN, END = "<!-- examples:begin (python -m tools.gates_doc) -->", "<!-- examples:end -->"


def example_gate() -> model.GateRecord:
    quality = E.quality_evidence(Proportion(3_312, 4_000), 0.000412, "helpfulness@v3")
    diagnostics = {
        "target": 0.9, "tier_up": "candidate",
        "kinds": {"online": {"evaluator": "helpfulness@v3", "judged": 4000, "pass_rate": 0.828, "low95": 0.8161,
                             "high95": 0.8393, "status": "fail"},
                  "gold_context": {"evaluator": "gold@v2", "judged": 300, "pass_rate": 0.81, "low95": 0.7619,
                                   "high95": 0.8506, "status": "fail"},
                  "closed_book": {"evaluator": "closed@v2", "judged": 300, "pass_rate": 0.52, "low95": 0.4635,
                                  "high95": 0.5759, "status": "fail"}},
        "findings": [{"code": "prompt_or_capability", "text": "gold_context fails (81.0% < 90.0%): the model fails even "
                      "with perfect context, so the prompt or the model's capability is at fault. A tier-up is a "
                      "candidate hypothesis, alongside rewriting the prompt, decomposing the task, or a same-tier model "
                      "with better instruction following: write it down with these numbers"}],
    }  # fmt: skip
    projection = {
        "window_days": 7.0, "requests": 1_209_600, "requests_per_second": 2.0, "current_cost_per_request_usd": 0.000412,
        "proposed_cost_per_request_usd": 0.00687, "delta_per_request_usd": 0.006458, "current_monthly_usd": 2135.81,
        "projected_monthly_usd": 35614.08, "monthly_delta_usd": 33478.27, "break_even_pass_rate": 13.81, "priced": True,
        "p50": {"input_tokens": 1830, "output_tokens": 240, "current_cost_per_request_usd": 0.0004185,
                "proposed_cost_per_request_usd": 0.006975, "current_monthly_usd": 2169.5, "projected_monthly_usd": 36158.4},
        "p99": {"input_tokens": 14200, "output_tokens": 1650, "current_cost_per_request_usd": 0.00312,
                "proposed_cost_per_request_usd": 0.052, "current_monthly_usd": 16174.08, "projected_monthly_usd": 269568.0},
    }  # fmt: skip
    evidence = E.build(
        now_ms=T0 + 9 * DAY, quality=quality, diagnostics=diagnostics, projection=projection,
        budget=E.budget_evidence(E.Budget("support", 40_000.0, 12_400.0), projection["monthly_delta_usd"]),  # type: ignore[arg-type]
        earlier=[E.TierUp(T0 - 40 * DAY, "gpt-4.1-nano", "gpt-4o-mini", "gate gate-5d0e22a1")],
    )  # fmt: skip
    g = model.open_gate(route="support.answer", current_model="gpt-4o-mini", proposed_model="gpt-4o", team="support",
                        hypothesis="Answers to multi-step billing questions miss a step (gold-context fails at 81%); "
                        "gpt-4o should reach 90% on the gold set. We will know from gold@v2 and helpfulness@v3 within a week.",
                        author="maria", now_ms=T0 + 9 * DAY, evidence=evidence, proposed_provider="openai",
                        projected_monthly_usd=35614.08, gate_id="gate-3f9c2a7b")  # fmt: skip
    return model.approve(g, reviewer="kenji", note="Approved for 30 days; re-run the gold set weekly.", now_ms=T0 + 10 * DAY)


SMALL = Profile(route="support.answer", per_minute=10, model="gpt-4o-mini", served_model="gpt-4o-mini",
                cost_usd=0.0004, judged_per_minute=1, pass_rate=0.83)  # fmt: skip


def example_alerts() -> dict[str, Alert]:
    out: dict[str, Alert] = {}
    for name, gated in (("gated", True), ("ungated", False)):
        d = Driver(DetectionEngine(RoutesConfig.load(None), env="prod"), seed=3)
        d.run(SMALL, 24 * 60)
        if gated:
            gate = Gate(id="gate-3f9c2a7b", route="support.answer", current_model="gpt-4o-mini", proposed_model="gpt-4o",
                        state="approved", projected_monthly_usd=35614.08, projected_cost_per_request=0.00687)  # fmt: skip
            d.engine.set_inputs(StoredInputs(as_of_ms=d.now_ms, gates=(gate,)))
        d.run(replace(SMALL, model="gpt-4o", served_model="gpt-4o", cost_usd=0.0069, pass_rate=0.9), 30)
        out[f"TierSwitch ({name})"] = d.firing("TierSwitch")[0]
    d = Driver(DetectionEngine(RoutesConfig.load(None), env="prod"), seed=4)
    due = Gate(id="gate-3f9c2a7b", route="support.answer", current_model="gpt-4o-mini", proposed_model="gpt-4o",
               state="postmortem_due", applied_at_ms=T0 - 30 * DAY, postmortem_due_at_ms=T0,
               projected_monthly_usd=35614.08, realized_monthly_usd=41230.5,
               postmortem={"before": {"pass_rate": 0.828, "cost_per_correct_usd": 0.000498, "judged": 4000},
                           "after": {"pass_rate": 0.871, "cost_per_correct_usd": 0.00789, "judged": 4100}})  # fmt: skip
    d.engine.set_inputs(StoredInputs(as_of_ms=T0, gates=(due,)))
    d.run(SMALL, 2)
    out["TierUpPostmortemDue"] = d.firing("TierUpPostmortemDue")[0]
    d = Driver(DetectionEngine(RoutesConfig.load(None), env="prod"), seed=5)
    report = {"period_days": 182, "tiered_up": ["support.answer (gpt-4o-mini -> gpt-4o, gate-3f9c2a7b)",
                                                 "code.review (claude-3-5-haiku -> claude-sonnet-4-0, ungated)"],
              "candidates": [{"route": "code.review", "current_model": "claude-sonnet-4-0",
                              "cheaper_model": "claude-3-5-haiku-latest", "monthly_saving_usd": 8120.4}]}  # fmt: skip
    d.engine.set_inputs(StoredInputs(as_of_ms=T0, extra={"tier_down_review": {"every_days": 0.01, "report": report}}))
    d.run(SMALL, 30)
    out["TierDownReview"] = d.firing("TierDownReview")[0]
    return out


def render() -> str:
    parts = ["### Example: a gate record (`telemetry gate show gate-3f9c2a7b`)", "", "````markdown",
             markdown(example_gate()), "````", ""]  # fmt: skip
    for title, alert in example_alerts().items():
        a = alert.model_dump(mode="json")
        body = {"labels": a["labels"], "summary": a["annotations"]["summary"], "evidence": a["evidence"]}
        parts += [f"### Example alert: {title}", "", "```json",
                  orjson.dumps(body, option=orjson.OPT_INDENT_2).decode(), "```", ""]  # fmt: skip
    return "\n".join(parts)


def updated(text: str) -> str:
    return replace_block(text, BEGIN, END, render())


if __name__ == "__main__":
    raise SystemExit(main(DOC, updated, "tools.gates_doc", sys.argv[1:]))
