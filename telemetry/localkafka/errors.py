"""The one exception the local-broker package raises on purpose."""

from __future__ import annotations

from telemetry.errors import TelemetryError


class BrokerError(TelemetryError):
    """The local broker could not be resolved, started, stopped or inspected.

    ``str(error)`` is one clear line for the user (what failed and what to do); the CLI prints it
    and exits 1. Details (full Maven output, Java stack traces) are in the logs it points to.
    """
