"""Wire formats of an alert: the documented fields of each format, and docs/alerts.md in sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from telemetry.alerting import payloads
from telemetry.alerting.payloads import (
    ALERTMANAGER_ZERO_TIME,
    CLOUDEVENTS_CONTENT_TYPE,
    alertmanager,
    cloudevent,
    generic,
    kafka_record,
    pagerduty,
    slack,
)
from telemetry.contracts.alert import Alert, fingerprint

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"
T0 = datetime(2025, 3, 14, 9, 42, 17, 250_000, tzinfo=UTC)
T1 = datetime(2025, 3, 14, 11, 5, 40, 500_000, tzinfo=UTC)
EMITTED_MS = 1741945337400  # 2025-03-14T09:42:17.400Z


def make_alert(
    *,
    status: str = "firing",
    sequence: int = 1,
    route: str = "support.answer",
    model: str = "gpt-4o",
    severity: str = "critical",
    summary: str = "support.answer pass rate fell to 77.7% (baseline 91.2%) on gpt-4o",
    evidence: dict | None = None,
    starts_at: datetime = T0,
) -> Alert:
    labels = {
        "alertname": "QualityRegression",
        "route": route,
        "model": model,
        "team": "support",
        "severity": severity,
        "env": "prod",
    }
    resolved = status == "resolved"
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,  # type: ignore[arg-type]
        labels=labels,
        annotations={"summary": summary, "description": "Pass rate of the online judge dropped."},
        evidence=evidence
        if evidence is not None
        else {
            "baseline_pass_rate": 0.912,
            "recent_pass_rate": 0.7769,
            "recent_judged": 130,
            "judged_fraction": 0.2,
        },
        starts_at=starts_at,
        ends_at=T1 if resolved else None,
        decided_at=T1 if resolved else starts_at,
        sequence=sequence,
    )


FIRING = make_alert()
RESOLVED = make_alert(status="resolved", sequence=3)
OTHER = make_alert(route="search.rerank")


# ------------------------------------------------------------------------------ CloudEvents


def test_cloudevent_required_attributes() -> None:
    ce = cloudevent(FIRING, emitted_at_ms=EMITTED_MS)
    # CloudEvents 1.0 REQUIRED: id, source, specversion, type; all non-empty strings.
    for attr in ("id", "source", "specversion", "type"):
        assert isinstance(ce[attr], str) and ce[attr]
    assert ce["specversion"] == "1.0"
    assert ce["source"] == "llm-telemetry"
    assert ce["type"] == "io.llm-telemetry.alert.firing"
    assert ce["subject"] == "support.answer"
    assert ce["time"] == "2025-03-14T09:42:17.400Z"
    assert ce["datacontenttype"] == "application/json"
    assert cloudevent(RESOLVED, emitted_at_ms=EMITTED_MS)["type"] == "io.llm-telemetry.alert.resolved"
    assert cloudevent(FIRING, source="urn:test", emitted_at_ms=EMITTED_MS)["source"] == "urn:test"
    # extension/attribute names: lower-case a-z0-9 only
    assert all(k.isalnum() and k.islower() for k in ce)


def test_cloudevent_data_carries_the_alert() -> None:
    data = cloudevent(RESOLVED, emitted_at_ms=EMITTED_MS)["data"]
    assert data["fingerprint"] == RESOLVED.fingerprint
    assert data["status"] == "resolved"
    assert data["sequence"] == 3
    assert data["labels"] == RESOLVED.labels
    assert data["annotations"] == RESOLVED.annotations
    assert data["evidence"] == RESOLVED.evidence
    assert data["startsAt"] == "2025-03-14T09:42:17.250Z"
    assert data["endsAt"] == "2025-03-14T11:05:40.500Z"
    assert cloudevent(FIRING, emitted_at_ms=EMITTED_MS)["data"]["endsAt"] is None


def test_cloudevent_id_deterministic_and_unique_per_notification() -> None:
    a = cloudevent(FIRING, emitted_at_ms=EMITTED_MS)["id"]
    assert a == cloudevent(FIRING, emitted_at_ms=EMITTED_MS + 5_000)["id"]  # re-send: same id
    assert a == cloudevent(make_alert(), emitted_at_ms=EMITTED_MS)["id"]  # rebuilt alert: same id
    ids = {
        a,
        cloudevent(make_alert(sequence=2), emitted_at_ms=EMITTED_MS)["id"],  # repeat
        cloudevent(RESOLVED, emitted_at_ms=EMITTED_MS)["id"],  # resolve
        cloudevent(OTHER, emitted_at_ms=EMITTED_MS)["id"],  # other alert
        # a later episode of the same alert restarting at sequence 1
        cloudevent(make_alert(starts_at=T0 + timedelta(hours=5)), emitted_at_ms=EMITTED_MS)["id"],
    }
    assert len(ids) == 5
    assert FIRING.fingerprint in a


def test_cloudevent_time_is_utc_rfc3339() -> None:
    ce = cloudevent(FIRING, emitted_at_ms=0 + 1_700_000_000_123)
    assert ce["time"] == "2023-11-14T22:13:20.123Z"
    parsed = datetime.fromisoformat(ce["time"].replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)


def test_timestamps_of_other_zones_and_naive_are_utc() -> None:
    cet = timezone(timedelta(hours=1))
    alert = make_alert(starts_at=datetime(2025, 3, 14, 10, 42, 17, 250_000, tzinfo=cet))
    assert cloudevent(alert, emitted_at_ms=EMITTED_MS)["data"]["startsAt"] == "2025-03-14T09:42:17.250Z"
    naive = make_alert(starts_at=datetime(2025, 3, 14, 9, 42, 17, 250_000))
    assert cloudevent(naive, emitted_at_ms=EMITTED_MS)["data"]["startsAt"] == "2025-03-14T09:42:17.250Z"


def test_kafka_record() -> None:
    rec = kafka_record(FIRING, emitted_at_ms=EMITTED_MS)
    assert CLOUDEVENTS_CONTENT_TYPE == "application/cloudevents+json"
    assert rec.key == b"support.answer"
    assert rec.headers == [("content-type", b"application/cloudevents+json")]
    assert orjson.loads(rec.value) == cloudevent(FIRING, emitted_at_ms=EMITTED_MS)


def test_non_finite_evidence_becomes_null() -> None:
    alert = make_alert(evidence={"a": float("nan"), "b": float("inf"), "c": 1.5, "d": None, "e": "x"})
    expected = {"a": None, "b": None, "c": 1.5, "d": None, "e": "x"}
    assert cloudevent(alert, emitted_at_ms=EMITTED_MS)["data"]["evidence"] == expected
    assert generic(alert)["evidence"] == expected
    assert pagerduty(alert, routing_key="k")["payload"]["custom_details"]["evidence"] == expected
    for body in (cloudevent(alert, emitted_at_ms=EMITTED_MS), generic(alert), slack(alert)):
        orjson.loads(orjson.dumps(body))


# ------------------------------------------------------------------------------ Alertmanager


def test_alertmanager_firing() -> None:
    body = alertmanager([FIRING], receiver="support-oncall", external_url="https://t.example.com")
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "support-oncall"
    assert body["groupLabels"] == {"route": "support.answer"}
    assert body["commonLabels"] == FIRING.labels
    assert body["commonAnnotations"] == FIRING.annotations
    assert body["externalURL"] == "https://t.example.com"
    assert body["truncatedAlerts"] == 0
    assert body["groupKey"] == '{}:{route="support.answer"}'
    [a] = body["alerts"]
    assert set(a) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert a["status"] == "firing"
    assert a["labels"] == FIRING.labels
    assert a["startsAt"] == "2025-03-14T09:42:17.250Z"
    assert a["endsAt"] == ALERTMANAGER_ZERO_TIME == "0001-01-01T00:00:00Z"
    assert a["fingerprint"] == FIRING.fingerprint


def test_alertmanager_resolved_and_grouping() -> None:
    body = alertmanager([RESOLVED], receiver="r")
    assert body["status"] == "resolved"
    assert body["alerts"][0]["endsAt"] == "2025-03-14T11:05:40.500Z"
    assert body["externalURL"] == ""
    # any firing alert makes the group firing
    mixed = alertmanager([RESOLVED, make_alert(model="gpt-4o-mini")], receiver="r")
    assert mixed["status"] == "firing"
    assert mixed["groupLabels"] == {"route": "support.answer"}
    assert "model" not in mixed["commonLabels"] and mixed["commonLabels"]["route"] == "support.answer"
    assert [a["status"] for a in mixed["alerts"]] == ["resolved", "firing"]
    # alerts of different routes have no common group label
    assert alertmanager([FIRING, OTHER], receiver="r")["groupLabels"] == {}
    with pytest.raises(ValueError):
        alertmanager([], receiver="r")


# ------------------------------------------------------------------------------ PagerDuty


def test_pagerduty_trigger() -> None:
    ev = pagerduty(FIRING, routing_key="R0UT1NGKEY")
    assert ev["routing_key"] == "R0UT1NGKEY"
    assert ev["event_action"] == "trigger"
    assert ev["dedup_key"] == FIRING.fingerprint
    p = ev["payload"]
    assert p["summary"] == FIRING.annotations["summary"]
    assert p["source"] == "llm-telemetry/prod"
    assert p["severity"] == "critical"
    assert p["timestamp"] == "2025-03-14T09:42:17.250Z"
    assert p["component"] == "support.answer"
    assert p["group"] == "support"
    assert p["class"] == "QualityRegression"
    assert p["custom_details"]["evidence"] == FIRING.evidence
    assert p["custom_details"]["labels"] == FIRING.labels


def test_pagerduty_resolve_has_no_payload() -> None:
    ev = pagerduty(RESOLVED, routing_key="R0UT1NGKEY")
    assert ev == {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": RESOLVED.fingerprint}


def test_pagerduty_dedup_key_stable_per_alert() -> None:
    keys = {pagerduty(a, routing_key="k")["dedup_key"] for a in (FIRING, make_alert(sequence=2), RESOLVED)}
    assert len(keys) == 1
    other = pagerduty(OTHER, routing_key="k")["dedup_key"]
    assert other not in keys
    assert all(0 < len(k) <= 255 for k in keys | {other})


def test_pagerduty_summary_truncated_to_1024() -> None:
    long = make_alert(summary="x" * 5000)
    summary = pagerduty(long, routing_key="k")["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("\u2026")
    exact = make_alert(summary="y" * 1024)
    assert pagerduty(exact, routing_key="k")["payload"]["summary"] == "y" * 1024


def test_pagerduty_summary_fallback_and_severity_mapping() -> None:
    no_summary = make_alert(summary="")
    assert "QualityRegression" in pagerduty(no_summary, routing_key="k")["payload"]["summary"]
    for label, expected in [("critical", "critical"), ("warning", "warning"), ("info", "info"),
                            ("error", "error"), ("page-me", "warning")]:
        assert pagerduty(make_alert(severity=label), routing_key="k")["payload"]["severity"] == expected
    with pytest.raises(ValueError):
        pagerduty(FIRING, routing_key="")


# ------------------------------------------------------------------------------ Slack


def test_slack_firing_message() -> None:
    msg = slack(FIRING)
    assert "FIRING" in msg["text"] and FIRING.annotations["summary"] in msg["text"]
    header, section, fields, *context = msg["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert header["text"]["text"].startswith(":red_circle:")
    assert len(header["text"]["text"]) <= 150
    assert section["type"] == "section" and FIRING.annotations["summary"] in section["text"]["text"]
    texts = [f["text"] for f in fields["fields"]]
    for label in ("route", "model", "team", "severity"):
        assert any(t.startswith(f"*{label}*\n{FIRING.labels[label]}") for t in texts)
    assert len(fields["fields"]) <= 10
    evidence_text = context[0]["elements"][0]["text"]
    assert context[0]["type"] == "context"
    assert "baseline_pass_rate `0.912`" in evidence_text and "recent_judged `130`" in evidence_text


def test_slack_resolved_is_a_new_message_and_escapes() -> None:
    msg = slack(RESOLVED)
    assert msg["blocks"][0]["text"]["text"].startswith(":white_check_mark: RESOLVED")
    assert "RESOLVED" in msg["text"]
    assert "after 83 min" in msg["blocks"][1]["text"]["text"]
    tricky = slack(make_alert(summary="<!channel> & <http://x|y>"))
    assert "<!channel>" not in tricky["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://x|y&gt;" in tricky["blocks"][1]["text"]["text"]
    huge = slack(make_alert(summary="z" * 10_000, route="r" * 500))
    assert len(huge["blocks"][0]["text"]["text"]) <= 150
    assert len(huge["blocks"][1]["text"]["text"]) <= 3000


def test_slack_severity_emoji() -> None:
    def header(severity: str) -> str:
        return str(slack(make_alert(severity=severity))["blocks"][0]["text"]["text"])

    assert header("warning").startswith(":large_orange_circle:")
    assert header("info").startswith(":large_blue_circle:")


# ------------------------------------------------------------------------------ generic


def test_generic_is_the_alert_as_json() -> None:
    body = generic(FIRING)
    assert body == FIRING.model_dump(mode="json")
    assert Alert.model_validate(body) == FIRING
    assert generic(RESOLVED)["ends_at"] is not None


# ------------------------------------------------------------------------------ docs


def test_docs_contain_exactly_the_generated_examples() -> None:
    document = DOCS.read_text(encoding="utf-8")
    expected = payloads.replace_generated_block(document, payloads.examples_markdown())
    assert document == expected, (
        "docs/alerts.md examples drifted from the code: run "
        "`python -m telemetry.alerting.payloads --write docs/alerts.md`"
    )
    assert payloads.examples_markdown() in payloads.generated_block(document)


def test_examples_describe_the_documented_alert() -> None:
    firing, resolved = payloads.example_alerts()
    assert firing.labels == {
        "alertname": "QualityRegression", "route": "support.answer", "model": "gpt-4o",
        "team": "support", "severity": "critical", "env": "prod",
    }
    for key in (
        "baseline_pass_rate", "recent_pass_rate", "baseline_wilson_low", "baseline_wilson_high",
        "recent_wilson_low", "recent_wilson_high", "recent_judged", "recent_passed", "judged_fraction",
    ):
        assert key in firing.evidence
    assert firing.fingerprint == fingerprint(firing.labels)
    assert resolved.fingerprint == firing.fingerprint and resolved.status == "resolved"


def test_main_prints_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert payloads.main([]) == 0
    assert capsys.readouterr().out == payloads.examples_markdown()
    assert payloads.main(["--bogus"]) == 2
