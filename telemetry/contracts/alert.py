"""The alert: what on-call receives on ``<prefix>alerts``, in the ``alerts`` table and at webhooks."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ALERT_SCHEMA_VERSION = 1

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["critical", "warning", "info"]

IDENTITY_LABELS = ("alertname", "route", "model", "env", "severity")


def fingerprint(labels: dict[str, str]) -> str:
    """Stable 16-hex fingerprint: sha256 of the sorted identity labels (Alertmanager style)."""
    text = "\x1f".join(f"{k}={labels.get(k, '')}" for k in IDENTITY_LABELS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Alert(BaseModel):
    """One notification of one alert: its first firing, a repeat, or its resolution."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = Field(ALERT_SCHEMA_VERSION)
    fingerprint: str = Field(description="sha256(identity labels)[:16]; stable across restarts.")
    status: AlertStatus
    labels: dict[str, str] = Field(description="alertname, route, model, team, severity, env.")
    annotations: dict[str, str] = Field(description="summary, description (human text).")
    evidence: dict[str, float | int | str | None] = Field(
        default_factory=dict, description="Numbers the decision rests on (baseline, recent, counts...)."
    )
    starts_at: datetime = Field(description="Event time the condition started firing.")
    ends_at: datetime | None = Field(None, description="Event time it resolved; None while firing.")
    decided_at: datetime = Field(description="Event time of the deciding event.")
    sequence: int = Field(1, ge=1, description="1 = first firing; repeats and resolution count up.")

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def route(self) -> str:
        return self.labels.get("route", "")
