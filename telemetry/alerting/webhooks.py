"""What a webhook channel receives: the payload of one alert per channel kind, and the HTTP
conventions of delivery (severity filter, ``Retry-After``, user agent).

Delivery itself is the durable outbox (:mod:`telemetry.alerting.outbox`): every notification is
recorded in ``alert_deliveries`` before it is sent, retried with back-off and resumed after a
restart. This module has no state and does no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from telemetry.alerting import payloads
from telemetry.alerting.channels import WebhookChannel
from telemetry.contracts.alert import Alert

__all__ = ["SEVERITY_RANK", "render", "severity_allows"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
"""Order of the ``severity`` label; an unknown or missing label ranks as critical (it is sent)."""

_USER_AGENT = "llm-telemetry-webhooks/1"


def severity_allows(alert: Alert, channel: WebhookChannel) -> bool:
    """True when the alert's ``severity`` label is at least ``channel.min_severity``.

    A missing or unknown severity is sent everywhere: a typo must not silence an alert.
    """
    rank = SEVERITY_RANK.get(alert.labels.get("severity", ""), max(SEVERITY_RANK.values()))
    return rank >= SEVERITY_RANK.get(channel.min_severity, 0)


def render(alert: Alert, channel: WebhookChannel, *, external_url: str = "") -> dict[str, Any]:
    """The payload for ``channel.kind``: slack -> :func:`payloads.slack`, pagerduty ->
    :func:`payloads.pagerduty` (``channel.routing_key``), alertmanager ->
    :func:`payloads.alertmanager` (one alert, receiver = channel name), webhook ->
    :func:`payloads.generic`. Raises ValueError for an unknown kind or a PagerDuty channel
    without a routing key."""
    kind = channel.kind
    if kind == "slack":
        return payloads.slack(alert)
    if kind == "pagerduty":
        return payloads.pagerduty(alert, routing_key=channel.routing_key)
    if kind == "alertmanager":
        return payloads.alertmanager([alert], receiver=channel.name, external_url=external_url)
    if kind == "webhook":
        return payloads.generic(alert)
    raise ValueError(f"unknown channel kind {kind!r}")


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
