"""Timestamp parsing shared by the contracts: RFC 3339 strings or epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator

# Epoch-ms values below this are taken as seconds (a common producer mistake, 2001-09-09 in ms).
_MIN_EPOCH_MS = 1_000_000_000_000
_MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01


def to_epoch_ms(value: object) -> int:
    """Return epoch milliseconds for an RFC 3339 string, a datetime, or epoch ms/s number.

    Raises ValueError for anything else, or for a time outside 2001..2100.
    """
    if isinstance(value, bool):
        raise ValueError("timestamp must be RFC 3339 or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        ms = float(value)
        if ms < _MIN_EPOCH_MS:
            ms *= 1000.0
        result = int(ms)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return to_epoch_ms(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"timestamp {text[:40]!r} is not RFC 3339") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        result = int(parsed.timestamp() * 1000)
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        result = int(dt.timestamp() * 1000)
    else:
        raise ValueError("timestamp must be RFC 3339 or epoch milliseconds")
    if not _MIN_EPOCH_MS <= result <= _MAX_EPOCH_MS:
        raise ValueError("timestamp is outside 2001-09-09 .. 2100-01-01")
    return result


EpochMs = Annotated[int, BeforeValidator(to_epoch_ms)]
"""Epoch milliseconds (UTC); accepts RFC 3339 text or epoch ms (epoch seconds are converted)."""


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)
