"""Event contracts: the public shape of what services, evaluators and this worker exchange.

Pydantic models here are the source of truth; ``schemas/*.json`` are generated from them
(``telemetry schemas --write``) and a test fails when the checked-in files drift.
"""

from telemetry.contracts.alert import Alert, AlertStatus
from telemetry.contracts.request import RequestEvent
from telemetry.contracts.verdict import VerdictEvent

__all__ = ["Alert", "AlertStatus", "RequestEvent", "VerdictEvent"]
