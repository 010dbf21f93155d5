"""The batch observers the worker runs after each stored batch (detectors and alerting)."""

from __future__ import annotations

from telemetry.settings import Settings
from telemetry.worker.pipeline import BatchObserver


def build_observers(settings: Settings) -> list[BatchObserver]:
    return []
