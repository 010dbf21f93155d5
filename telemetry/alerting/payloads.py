"""Wire formats of an :class:`~telemetry.contracts.alert.Alert`: pure functions, no I/O.

One function per destination, each returning a JSON-ready ``dict`` (only ``str``, ``int``,
``float``, ``bool``, ``None``, ``list`` and ``dict``; non-finite evidence numbers become ``None``):

- :func:`cloudevent`: CloudEvents 1.0 structured mode, the value of a record on ``<prefix>alerts``
  (:func:`kafka_record` builds the whole record: key, value, headers).
- :func:`alertmanager`: Alertmanager webhook payload, ``"version": "4"``.
- :func:`pagerduty`: PagerDuty Events API v2 (trigger / resolve).
- :func:`slack`: Slack incoming webhook message (``text`` fallback + ``blocks``).
- :func:`generic`: the alert itself as plain JSON.

Every timestamp is RFC 3339 in UTC with millisecond precision (``2025-03-14T09:42:17.250Z``);
naive datetimes are taken as UTC.

``python -m telemetry.alerting.payloads`` prints one realistic example of each format as Markdown;
``--write docs/alerts.md`` refreshes the generated block of that file (a test fails on drift).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from telemetry.contracts.alert import Alert, fingerprint
from telemetry.detect.names import CANARY_VERDICT

__all__ = [
    "ALERTMANAGER_ZERO_TIME",
    "CLOUDEVENTS_CONTENT_TYPE",
    "CLOUDEVENT_TYPE_PREFIX",
    "KafkaRecord",
    "PAGERDUTY_DEDUP_KEY_MAX",
    "PAGERDUTY_SUMMARY_MAX",
    "alertmanager",
    "cloudevent",
    "canary_extensions",
    "cloudevent_id",
    "examples_markdown",
    "generic",
    "kafka_record",
    "pagerduty",
    "slack",
]

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
"""Kafka header ``content-type`` of a structured-mode CloudEvent (not ``application/json``)."""

CLOUDEVENT_TYPE_PREFIX = "io.llm-telemetry.alert."
"""CloudEvent ``type`` is this prefix + the alert status (``firing`` / ``resolved``)."""

ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"
"""``endsAt`` of a firing alert in an Alertmanager webhook (Go's zero ``time.Time``)."""

PAGERDUTY_SUMMARY_MAX = 1024
PAGERDUTY_DEDUP_KEY_MAX = 255

_PAGERDUTY_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
"""Alert ``severity`` label -> PagerDuty severity; anything else maps to ``warning``."""

# Slack Block Kit limits (characters).
_SLACK_HEADER_MAX = 150
_SLACK_SECTION_MAX = 3000
_SLACK_FIELD_MAX = 2000
_SLACK_CONTEXT_MAX = 3000

_SLACK_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
_SLACK_RESOLVED_EMOJI = ":white_check_mark:"


# --------------------------------------------------------------------------------------------
# helpers


def _rfc3339(value: datetime) -> str:
    """RFC 3339, UTC, millisecond precision, ``Z`` suffix; a naive datetime is taken as UTC."""
    dt = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _ms_to_rfc3339(ms: int) -> str:
    return _rfc3339(datetime.fromtimestamp(ms / 1000.0, tz=UTC))


def _epoch_ms(value: datetime) -> int:
    dt = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(round(dt.timestamp() * 1000))


def _finite(value: float | int | str | None) -> float | int | str | None:
    """NaN and infinities are not JSON: they become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _evidence(alert: Alert) -> dict[str, float | int | str | None]:
    return {k: _finite(v) for k, v in alert.evidence.items()}


def _truncate(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut to ``limit`` ending with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"


def _summary(alert: Alert) -> str:
    """The ``summary`` annotation, or a line built from the labels when it is missing/blank."""
    text = alert.annotations.get("summary", "").strip()
    if text:
        return text
    model = alert.labels.get("model", "")
    where = f"{alert.route} ({model})" if model else alert.route
    return f"{alert.alertname or 'Alert'} {alert.status} on {where or 'unknown route'}"


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Key/value pairs present with the same value in every map (Alertmanager's common*)."""
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _format_number(value: float | int | str | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------------------------
# CloudEvents 1.0 (Kafka)


def cloudevent_id(alert: Alert) -> str:
    """Deterministic id of one notification: ``<fingerprint>-<startsAt ms>-<status>-<sequence>``.

    The same notification always gets the same id (a consumer deduplicates redeliveries on
    ``source`` + ``id``); two notifications never share one, even when a later episode of the
    same alert restarts its ``sequence`` (``startsAt`` tells the episodes apart).
    """
    return f"{alert.fingerprint}-{_epoch_ms(alert.starts_at)}-{alert.status}-{alert.sequence}"


def cloudevent(alert: Alert, *, source: str = "llm-telemetry", emitted_at_ms: int) -> dict[str, Any]:
    """CloudEvents 1.0 structured-mode event of one notification.

    Attributes: ``specversion`` ``"1.0"``, ``id`` (:func:`cloudevent_id`), ``source``,
    ``type`` (``io.llm-telemetry.alert.firing`` / ``.resolved``), ``subject`` (the route),
    ``time`` (RFC 3339 of ``emitted_at_ms``, when this notification was emitted),
    ``datacontenttype`` ``"application/json"``. ``data`` holds the alert: ``fingerprint``,
    ``status``, ``sequence``, ``labels``, ``annotations``, ``evidence``, ``startsAt``,
    ``endsAt`` (``null`` while firing), ``decidedAt``, ``schemaVersion``. A firing
    ``CanaryVerdict`` adds the extension attributes of :func:`canary_extensions`.
    Serialized with orjson it is the value of the Kafka record (see :func:`kafka_record`).
    """
    if not source:
        raise ValueError("CloudEvents source must be a non-empty URI-reference")
    return {
        "specversion": "1.0",
        "id": cloudevent_id(alert),
        "source": source,
        "type": CLOUDEVENT_TYPE_PREFIX + alert.status,
        "subject": alert.route,
        "time": _ms_to_rfc3339(emitted_at_ms),
        "datacontenttype": "application/json",
        **canary_extensions(alert),
        "data": {
            "fingerprint": alert.fingerprint,
            "status": alert.status,
            "sequence": alert.sequence,
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "evidence": _evidence(alert),
            "startsAt": _rfc3339(alert.starts_at),
            "endsAt": _rfc3339(alert.ends_at) if alert.ends_at is not None else None,
            "decidedAt": _rfc3339(alert.decided_at),
            "schemaVersion": alert.schema_version,
        },
    }


def canary_extensions(alert: Alert) -> dict[str, str]:
    """CloudEvents extension attributes of a firing ``CanaryVerdict``, for a router to filter
    on without reading ``data``: ``canaryaction`` (``rollback``, ``promote`` or
    ``inconclusive``), ``canarymodel`` and, when the canary is an experiment arm, ``canaryarm``.
    Empty for every other notification (a resolution asks nothing of a router)."""
    if alert.alertname != CANARY_VERDICT or alert.status != "firing":
        return {}
    out = {}
    for attribute, key in (("canaryaction", "action"), ("canarymodel", "canary_model"), ("canaryarm", "canary_arm")):
        value = alert.evidence.get(key)
        if isinstance(value, str) and value:
            out[attribute] = value
    return out


class KafkaRecord(NamedTuple):
    """A record for ``<prefix>alerts``: pass as ``send(topic, value=..., key=..., headers=...)``."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def kafka_record(alert: Alert, *, source: str = "llm-telemetry", emitted_at_ms: int) -> KafkaRecord:
    """The Kafka record of one notification: key = route (UTF-8, so one route keeps its order
    on one partition), value = the :func:`cloudevent` as compact JSON, header
    ``content-type: application/cloudevents+json``."""
    value = orjson.dumps(cloudevent(alert, source=source, emitted_at_ms=emitted_at_ms))
    return KafkaRecord(
        key=alert.route.encode(),
        value=value,
        headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())],
    )


# --------------------------------------------------------------------------------------------
# Alertmanager webhook v4


def alertmanager(alerts: Sequence[Alert], *, receiver: str, external_url: str = "") -> dict[str, Any]:
    """Alertmanager webhook payload (``"version": "4"``) for a group of alerts.

    ``status`` is ``firing`` if any alert fires, else ``resolved``. ``groupLabels`` is
    ``{"route": ...}`` when every alert has the same route (else ``{}``); ``commonLabels`` /
    ``commonAnnotations`` are the pairs shared by every alert; ``groupKey`` is
    ``{}:{route="<route>"}`` (stable per group, as Alertmanager's ``<route path>:<group labels>``);
    ``truncatedAlerts`` is 0. Each alert has ``status``, ``labels``, ``annotations``,
    ``startsAt``, ``endsAt`` (``"0001-01-01T00:00:00Z"`` while firing), ``generatorURL``
    (``external_url``) and ``fingerprint``. Evidence is not part of this format (annotations are
    strings only). Raises ValueError for an empty sequence.
    """
    if not alerts:
        raise ValueError("an Alertmanager payload needs at least one alert")
    routes = {a.route for a in alerts}
    group_labels = {"route": next(iter(routes))} if len(routes) == 1 else {}
    group_key = "{}:{" + ",".join(f"{k}={orjson.dumps(v).decode()}" for k, v in group_labels.items()) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": _common([a.labels for a in alerts]),
        "commonAnnotations": _common([a.annotations for a in alerts]),
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": _rfc3339(a.starts_at),
                "endsAt": (
                    _rfc3339(a.ends_at) if a.status == "resolved" and a.ends_at is not None
                    else ALERTMANAGER_ZERO_TIME
                ),
                "generatorURL": external_url,
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }


# --------------------------------------------------------------------------------------------
# PagerDuty Events API v2


def pagerduty(alert: Alert, *, routing_key: str, source: str | None = None) -> dict[str, Any]:
    """PagerDuty Events API v2 event (POST https://events.pagerduty.com/v2/enqueue).

    ``event_action`` is ``trigger`` while firing (repeats re-trigger the same incident) and
    ``resolve`` once resolved. ``dedup_key`` is the fingerprint: the same for every
    notification of one alert, different for another alert, at most 255 characters.
    ``payload`` is sent on trigger only: ``summary`` (the summary annotation, cut to 1024
    characters), ``source`` (default ``llm-telemetry/<env>``), ``severity`` (critical / error /
    warning / info from the severity label; unknown -> warning), ``timestamp`` (decided at),
    ``component`` = route, ``group`` = team, ``class`` = alertname, ``custom_details`` =
    ``{"evidence": ..., "labels": ..., "description"?, "starts_at", "sequence"}``.
    A ``runbook_url`` annotation becomes a link. Raises ValueError for an empty routing key.
    """
    if not routing_key:
        raise ValueError("a PagerDuty channel needs a routing_key (Events API v2 integration key)")
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger" if alert.status == "firing" else "resolve",
        "dedup_key": alert.fingerprint[:PAGERDUTY_DEDUP_KEY_MAX],
    }
    if alert.status != "firing":
        return event
    env = alert.labels.get("env", "")
    details: dict[str, Any] = {"evidence": _evidence(alert), "labels": dict(alert.labels)}
    if alert.annotations.get("description"):
        details["description"] = alert.annotations["description"]
    details["starts_at"] = _rfc3339(alert.starts_at)
    details["sequence"] = alert.sequence
    payload: dict[str, Any] = {
        "summary": _truncate(_summary(alert), PAGERDUTY_SUMMARY_MAX),
        "source": source or (f"llm-telemetry/{env}" if env else "llm-telemetry"),
        "severity": _PAGERDUTY_SEVERITY.get(alert.labels.get("severity", ""), "warning"),
        "timestamp": _rfc3339(alert.decided_at),
        "component": alert.route,
        "group": alert.labels.get("team", ""),
        "class": alert.alertname,
        "custom_details": details,
    }
    event["payload"] = payload
    if alert.annotations.get("runbook_url"):
        event["links"] = [{"href": alert.annotations["runbook_url"], "text": "Runbook"}]
    return event


# --------------------------------------------------------------------------------------------
# Slack incoming webhook


def slack(alert: Alert) -> dict[str, Any]:
    """Slack incoming-webhook message: ``text`` (notification fallback) + ``blocks``.

    Blocks: a header with a status emoji (red/orange/blue circle by severity while firing,
    check mark when resolved), a section with the summary (and description), a section with
    fields route / model / team / severity (plus env), and a context line with the evidence.
    A webhook cannot edit an earlier message, so a resolve is a new message. User text is
    escaped for mrkdwn (``& < >``) and cut to Block Kit limits.
    """
    severity = alert.labels.get("severity", "")
    firing = alert.status == "firing"
    emoji = _SLACK_EMOJI.get(severity, ":red_circle:") if firing else _SLACK_RESOLVED_EMOJI
    state = "FIRING" if firing else "RESOLVED"
    title = f"{alert.alertname or 'Alert'} on {alert.route or 'unknown route'}"
    summary = _summary(alert)
    text = _truncate(
        f"{emoji} [{state}] {_slack_escape(title)}: {_slack_escape(summary)}", _SLACK_SECTION_MAX
    )

    body = f"*{_slack_escape(summary)}*"
    description = alert.annotations.get("description", "").strip()
    if description:
        body += "\n" + _slack_escape(description)
    if not firing and alert.ends_at is not None:
        minutes = max(0.0, (alert.ends_at - alert.starts_at).total_seconds() / 60.0)
        body += f"\nResolved at {_rfc3339(alert.ends_at)} after {minutes:.0f} min."
    runbook = alert.annotations.get("runbook_url", "").strip()
    if runbook:
        body += f"\n<{runbook}|Runbook>"

    fields = []
    for label in ("route", "model", "team", "severity", "env"):
        value = alert.labels.get(label)
        if value:
            fields.append(
                {"type": "mrkdwn", "text": _truncate(f"*{label}*\n{_slack_escape(value)}", _SLACK_FIELD_MAX)}
            )

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _truncate(f"{emoji} {state}: {title}", _SLACK_HEADER_MAX),
                     "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(body, _SLACK_SECTION_MAX)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    evidence = _evidence(alert)
    if evidence:
        line = " \u00b7 ".join(
            f"{_slack_escape(k)} `{_slack_escape(_format_number(v))}`" for k, v in evidence.items()
        )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _truncate(line, _SLACK_CONTEXT_MAX)}]}
        )
    footer = (
        f"fingerprint `{alert.fingerprint}` \u00b7 notification #{alert.sequence}"
        f" \u00b7 started {_rfc3339(alert.starts_at)}"
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": text, "blocks": blocks}


# --------------------------------------------------------------------------------------------
# generic webhook


def generic(alert: Alert) -> dict[str, Any]:
    """The alert as plain JSON: ``alert.model_dump(mode="json")`` (snake_case field names, the
    schema of :class:`~telemetry.contracts.alert.Alert`); non-finite evidence becomes ``null``."""
    data = alert.model_dump(mode="json")
    data["evidence"] = _evidence(alert)
    return data


# --------------------------------------------------------------------------------------------
# documentation examples (python -m telemetry.alerting.payloads)

DOCS_BEGIN = "<!-- BEGIN GENERATED: python -m telemetry.alerting.payloads -->"
DOCS_END = "<!-- END GENERATED -->"

_EXAMPLE_EMITTED_AT_MS = 1741945337400  # 2025-03-14T09:42:17.400Z
_EXAMPLE_RESOLVED_EMITTED_AT_MS = 1741950341120  # 2025-03-14T11:05:41.120Z


def example_alerts() -> tuple[Alert, Alert]:
    """The documented example: a QualityRegression on support.answer, firing then resolved."""
    labels = {
        "alertname": "QualityRegression",
        "route": "support.answer",
        "model": "gpt-4o",
        "team": "support",
        "severity": "critical",
        "env": "prod",
    }
    firing = Alert(
        fingerprint=fingerprint(labels),
        status="firing",
        labels=labels,
        annotations={
            "summary": "support.answer pass rate fell to 77.7% (baseline 91.2%) on gpt-4o",
            "description": (
                "Online judge (judge-v3) pass rate of the last 130 judged requests is 77.7% "
                "(95% Wilson 69.8%-84.0%) against a 7-day baseline of 91.2% (90.6%-91.8%, n=8400). "
                "Bernoulli CUSUM crossed h=7.0."
            ),
            "runbook_url": "https://runbooks.example.com/llm-telemetry/quality-regression",
        },
        evidence={
            "evaluator": "online",
            "judge_version": "judge-v3",
            "baseline_pass_rate": 0.912,
            "baseline_wilson_low": 0.9058,
            "baseline_wilson_high": 0.9179,
            "baseline_judged": 8400,
            "baseline_passed": 7661,
            "recent_pass_rate": 0.7769,
            "recent_wilson_low": 0.698,
            "recent_wilson_high": 0.84,
            "recent_judged": 130,
            "recent_passed": 101,
            "recent_requests": 650,
            "judged_fraction": 0.2,
            "p_value_one_sided": 9.6e-06,
            "cusum_statistic": 7.21,
            "cusum_threshold": 7.0,
        },
        starts_at=datetime(2025, 3, 14, 9, 42, 17, 250_000, tzinfo=UTC),
        decided_at=datetime(2025, 3, 14, 9, 42, 17, 250_000, tzinfo=UTC),
        sequence=1,
    )
    resolved = firing.model_copy(
        update={
            "status": "resolved",
            "ends_at": datetime(2025, 3, 14, 11, 5, 40, 500_000, tzinfo=UTC),
            "decided_at": datetime(2025, 3, 14, 11, 5, 40, 500_000, tzinfo=UTC),
            "sequence": 3,
        }
    )
    return firing, resolved


def _json_block(obj: Any) -> str:
    return "```json\n" + orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n```\n"


def examples_markdown() -> str:
    """Markdown of one example per format, generated from the functions above (docs/alerts.md)."""
    firing, resolved = example_alerts()
    record = kafka_record(firing, emitted_at_ms=_EXAMPLE_EMITTED_AT_MS)
    parts = [
        "### Example alert\n\n",
        "`QualityRegression` on route `support.answer` (model `gpt-4o`, team `support`, severity "
        "`critical`, env `prod`), first notification (`sequence` 1) and its resolution "
        "(`sequence` 3, after one repeat).\n\n",
        "### Kafka record on `<prefix>alerts` (CloudEvents 1.0, structured mode)\n\n",
        f"- key: `{record.key.decode()}`\n",
        "".join(f"- header `{k}`: `{v.decode()}`\n" for k, v in record.headers),
        "- value (shown indented; sent compact):\n\n",
        _json_block(orjson.loads(record.value)),
        "\nResolved (value only):\n\n",
        _json_block(cloudevent(resolved, emitted_at_ms=_EXAMPLE_RESOLVED_EMITTED_AT_MS)),
        "\n### Alertmanager webhook (version 4), channel kind `alertmanager`\n\n",
        "Firing (`receiver` = the channel name, here `support-oncall`; `externalURL` and"
        " `generatorURL` are empty unless the outbox is given an `external_url`, shown here"
        " with `https://telemetry.example.com`):\n\n",
        _json_block(
            alertmanager([firing], receiver="support-oncall", external_url="https://telemetry.example.com")
        ),
        "\n### PagerDuty Events API v2, channel kind `pagerduty`\n\n",
        "Trigger:\n\n",
        _json_block(pagerduty(firing, routing_key="<integration key>")),
        "\nResolve (no payload):\n\n",
        _json_block(pagerduty(resolved, routing_key="<integration key>")),
        "\n### Slack incoming webhook, channel kind `slack`\n\n",
        "Firing:\n\n",
        _json_block(slack(firing)),
        "\nResolved (a new message; a webhook cannot edit the first one):\n\n",
        _json_block(slack(resolved)),
        "\n### Generic webhook, channel kind `webhook`\n\n",
        _json_block(generic(firing)),
    ]
    return "".join(parts)


def replace_generated_block(document: str, generated: str) -> str:
    """``document`` with the text between :data:`DOCS_BEGIN` and :data:`DOCS_END` replaced.

    Raises ValueError when the markers are missing or out of order.
    """
    start = document.find(DOCS_BEGIN)
    end = document.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"markers {DOCS_BEGIN!r} ... {DOCS_END!r} not found")
    head = document[: start + len(DOCS_BEGIN)]
    return head + "\n\n" + generated + "\n" + document[end:]


def generated_block(document: str) -> str:
    """The text between the markers, as :func:`replace_generated_block` writes it."""
    start = document.find(DOCS_BEGIN)
    end = document.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"markers {DOCS_BEGIN!r} ... {DOCS_END!r} not found")
    return document[start + len(DOCS_BEGIN) : end]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m telemetry.alerting.payloads [--write PATH]``: print or refresh the examples."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--write"] and len(args) == 2:
        from pathlib import Path

        path = Path(args[1])
        path.write_text(replace_generated_block(path.read_text(encoding="utf-8"), examples_markdown()),
                        encoding="utf-8")
        return 0
    if args:
        print("usage: python -m telemetry.alerting.payloads [--write docs/alerts.md]", file=sys.stderr)
        return 2
    sys.stdout.write(examples_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
