"""The two failure families.

- :class:`BadInput`: the data is wrong. It is dead-lettered with its reason and counted; the
  worker goes on. Never retried.
- :class:`InfrastructureError`: Kafka or ClickHouse is unavailable. Retried with back-off;
  never dead-lettered; offsets are not committed past it.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Base of every error this package raises on purpose."""


class BadInput(TelemetryError):
    """A message that cannot be accepted. ``reason`` is a short stable code, ``detail`` human text."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InfrastructureError(TelemetryError):
    """A dependency (Kafka, ClickHouse) failed; the operation may succeed if retried."""


class ConfigError(TelemetryError):
    """Configuration is invalid; the process cannot start. The message says what to fix."""
