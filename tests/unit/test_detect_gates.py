"""TierUpPostmortemDue and TierDownReview: decided on the gates and reviews read from storage."""

from __future__ import annotations

from telemetry.detect.engine import DetectionEngine
from telemetry.detect.inputs import Gate, StoredInputs
from telemetry.detect.testing import DAY, HOUR, MINUTE, T0, Driver, Profile  # noqa: F401
from telemetry.routes import RoutesConfig

CHAT = Profile(route="support.answer", per_minute=2, served_model="gpt-4o", cost_usd=0.01)
POSTMORTEM = {"before": {"pass_rate": 0.8, "cost_per_correct_usd": 0.0125, "judged": 400},
              "after": {"pass_rate": 0.82, "cost_per_correct_usd": 0.0366, "judged": 410}}  # fmt: skip


def _gate(state: str) -> Gate:
    return Gate(id="gate-1234abcd", route="support.answer", current_model="gpt-4o-mini", proposed_model="gpt-4o",
                state=state, applied_at_ms=T0 - 30 * DAY, postmortem_due_at_ms=T0, projected_monthly_usd=3000.0,
                realized_monthly_usd=4500.0, postmortem=POSTMORTEM)  # fmt: skip


def _driver() -> Driver:
    return Driver(DetectionEngine(RoutesConfig.load(None), env="test"), seed=1)


def test_a_due_postmortem_pages_once_and_resolves_when_the_gate_closes() -> None:
    d = _driver()
    d.engine.set_inputs(StoredInputs(as_of_ms=T0, gates=(_gate("postmortem_due"),)))
    d.run(CHAT, 120)
    notes = [a for _, a in d.notifications if a.alertname == "TierUpPostmortemDue"]
    assert [a.status for a in notes] == ["firing"]
    ev = notes[0].evidence
    assert (ev["gate_id"], ev["realized_monthly_usd"], ev["projected_monthly_usd"], ev["realized_vs_projected"]) == (
        "gate-1234abcd", 4500.0, 3000.0, 1.5)
    assert (ev["pass_rate_before"], ev["pass_rate_after"], ev["cost_per_correct_after"]) == (0.8, 0.82, 0.0366)
    assert notes[0].labels["model"] == "gpt-4o" and "telemetry gate postmortem gate-1234abcd" in notes[0].annotations["description"]

    # a restart: the engine comes back from its snapshot before the inputs are read: nothing resolves
    d.engine = DetectionEngine.restore(d.engine.snapshot(), RoutesConfig.load(None), env="test")
    d.run(CHAT, 10)
    assert [a.status for _, a in d.notifications if a.alertname == "TierUpPostmortemDue"] == ["firing"]
    d.engine.set_inputs(StoredInputs(as_of_ms=d.now_ms, gates=(_gate("postmortem_due"),)))
    d.run(CHAT, 10)
    d.engine.set_inputs(StoredInputs(as_of_ms=d.now_ms, gates=(_gate("closed"),)))
    d.run(CHAT, 10)
    assert [a.status for _, a in d.notifications if a.alertname == "TierUpPostmortemDue"] == ["firing", "resolved"]


def test_the_tier_down_review_comes_every_period_with_the_report() -> None:
    d = _driver()
    report = {"period_days": 0.5, "tiered_up": ["support.answer (gpt-4o-mini -> gpt-4o, ungated)"],
              "candidates": [{"route": "support.answer", "current_model": "gpt-4o", "cheaper_model": "gpt-4o-mini",
                              "monthly_saving_usd": 1234.5}]}  # fmt: skip
    d.engine.set_inputs(StoredInputs(as_of_ms=T0, extra={"tier_down_review": {"every_days": 0.5, "report": report}}))
    d.run(CHAT, 11 * 60)
    assert [a for _, a in d.notifications if a.alertname == "TierDownReview"] == []  # not 12 h yet
    d.run(CHAT, 2 * 60)
    notes = [(at, a) for at, a in d.notifications if a.alertname == "TierDownReview"]
    assert [a.status for _, a in notes] == ["firing"]
    first_at, alert = notes[0]
    assert alert.labels["route"] == "*" and alert.labels["severity"] == "info"
    assert alert.evidence["monthly_savings_usd"] == 1234.5 and alert.evidence["routes_tiered_up"] == 1
    assert "gpt-4o -> gpt-4o-mini saves $1,234" in alert.annotations["summary"] + alert.evidence["top_candidates"]  # type: ignore[operator]
    d.run(CHAT, 24 * 60)  # resolves after an hour; the next review 12 h after the first
    statuses = [(at, a.status) for at, a in d.notifications if a.alertname == "TierDownReview"]
    assert [s for _, s in statuses][:5] == ["firing", "resolved", "firing", "resolved", "firing"]
    assert abs(statuses[1][0] - first_at - HOUR) <= 2 * MINUTE
    firings = [at for at, s in statuses if s == "firing"]
    assert len(firings) == 3 and all(abs(b - a - 12 * HOUR) <= 2 * MINUTE for a, b in zip(firings, firings[1:]))
