"""The batch observers the worker runs after each stored batch (detectors and alerting)."""

from __future__ import annotations

from telemetry.retry import RetryPolicy
from telemetry.routes import RoutesConfig
from telemetry.settings import Settings
from telemetry.worker.alerting import AlertingObserver
from telemetry.worker.pipeline import BatchObserver


def build_observers(settings: Settings, retry: RetryPolicy) -> list[BatchObserver]:
    """Observers for ``settings``; raises ConfigError on a bad routes file (before any I/O)."""
    return [AlertingObserver(settings, RoutesConfig.load(settings.routes_file), retry)]
