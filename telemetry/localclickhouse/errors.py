"""The one exception the local ClickHouse server package raises on purpose."""

from __future__ import annotations

from telemetry.errors import TelemetryError


class ServerError(TelemetryError):
    """The local ClickHouse server could not be started, stopped or inspected.

    ``str(error)`` is one clear line for the user (what failed and what to do); the CLI prints it
    and exits 1. Details (ClickHouse's own messages) are in the server log it points to.
    """
