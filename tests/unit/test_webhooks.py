"""What each webhook channel kind receives (the payload of :func:`render`) and the severity
filter. Delivery (retries, back-off, restarts) is the outbox's: tests/unit/test_outbox.py and
tests/integration/test_alert_delivery_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from telemetry.alerting import payloads
from telemetry.alerting.channels import WebhookChannel
from telemetry.alerting.webhooks import render, severity_allows
from telemetry.contracts.alert import Alert, fingerprint

ROUTING_KEY = "R0UTINGKEYSECRET0000000000000000"
T0 = datetime(2025, 3, 14, 9, 42, 17, 250_000, tzinfo=UTC)


def make_alert(status: str = "firing", *, severity: str = "critical", route: str = "support.answer",
               sequence: int = 1) -> Alert:
    labels = {"alertname": "QualityRegression", "route": route, "model": "gpt-4o", "team": "support",
              "severity": severity, "env": "prod"}
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,  # type: ignore[arg-type]
        labels=labels,
        annotations={"summary": "pass rate fell"},
        evidence={"baseline_pass_rate": 0.912, "recent_pass_rate": 0.7769},
        starts_at=T0,
        ends_at=T0.replace(hour=11) if status == "resolved" else None,
        decided_at=T0,
        sequence=sequence,
    )


def channel(url: str, kind: str = "webhook", **kw: Any) -> WebhookChannel:
    return WebhookChannel(name=kw.pop("name", "ops"), kind=kind, url=url, **kw)  # type: ignore[arg-type]


def test_each_kind_gets_its_format() -> None:
    alert = make_alert(severity="warning")
    slack = render(alert, channel("http://x/slack", "slack", name="slack"))
    assert {"blocks", "text"} == set(slack)
    assert render(alert, channel("http://x/pd", "pagerduty", name="pd", routing_key=ROUTING_KEY)) == payloads.pagerduty(
        alert, routing_key=ROUTING_KEY
    )
    assert render(alert, channel("http://x/am", "alertmanager", name="am")) == payloads.alertmanager([alert], receiver="am")
    assert render(alert, channel("http://x/hook", "webhook", name="hook")) == payloads.generic(alert)


def test_severity_allows() -> None:
    info, warning, critical = (make_alert(severity=s) for s in ("info", "warning", "critical"))
    ch = channel("http://x", min_severity="warning")
    assert [severity_allows(a, ch) for a in (info, warning, critical)] == [False, True, True]
    assert severity_allows(make_alert(severity="bogus"), channel("http://x", min_severity="critical"))
    with pytest.raises(ValueError):
        render(make_alert(), channel("http://x", "pagerduty"))  # no routing key
