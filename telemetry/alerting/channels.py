"""Where alerts go besides the topic and the table: configured webhook channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ChannelKind = Literal["slack", "pagerduty", "alertmanager", "webhook"]


@dataclass(frozen=True, slots=True)
class WebhookChannel:
    """One webhook destination, declared in the routes file under ``[channels.<name>]``.

    ``url`` may hold a secret (a Slack webhook token): it is never logged.
    ``routing_key`` is the PagerDuty Events v2 integration key (pagerduty only).
    ``min_severity``: alerts below it are not sent to this channel.
    """

    name: str
    kind: ChannelKind
    url: str
    routing_key: str = ""
    min_severity: Literal["info", "warning", "critical"] = "info"
    headers: dict[str, str] = field(default_factory=dict)
