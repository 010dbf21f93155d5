"""Timestamp parsing shared by the contracts: RFC 3339 strings or epoch milliseconds."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

# Epoch-ms values below this are taken as seconds (a common producer mistake, 2001-09-09 in ms).
_MIN_EPOCH_MS = 1_000_000_000_000
_MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01
_MAX_MAGNITUDE = 10**16  # beyond this no reading (ms or s) can be in range; checked before any float()
_MAX_TEXT = 64  # longer text is not a timestamp


def _out_of_range(shown: object) -> PydanticCustomError:
    return PydanticCustomError(
        "out_of_range", "timestamp {value} is outside 2001-09-09 .. 2100-01-01", {"value": str(shown)[:40]}
    )


def to_epoch_ms(value: object) -> int:
    """Return epoch milliseconds for an RFC 3339 string, a datetime, or epoch ms/s number.

    Numbers below 1e12 are epoch seconds. Raises ValueError for anything else; the error is a
    ``PydanticCustomError`` (a ValueError) of type ``non_finite_number`` for Infinity/NaN and
    ``out_of_range`` for a time outside 2001-09-09..2100-01-01 (huge integers included). Never
    raises OverflowError.
    """
    if type(value) is int and _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:  # the common case, first
        return value
    if isinstance(value, bool):
        raise ValueError("timestamp must be RFC 3339 or epoch milliseconds, not a boolean")
    if isinstance(value, int):
        if not -_MAX_MAGNITUDE < value < _MAX_MAGNITUDE:
            raise _out_of_range(f"of about {int(value.bit_length() * 0.30103) + 1} digits")
        result = value if value >= _MIN_EPOCH_MS else value * 1000
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("non_finite_number", "timestamp {value} is not a finite number", {"value": str(value)})
        if not -_MAX_MAGNITUDE < value < _MAX_MAGNITUDE:
            raise _out_of_range(value)
        result = int(value if value >= _MIN_EPOCH_MS else value * 1000.0)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_TEXT:
            raise ValueError(f"timestamp {text[:40]!r}... is not RFC 3339 or epoch milliseconds")
        if text.isascii() and text.isdigit():
            return to_epoch_ms(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            result = int(parsed.timestamp() * 1000)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"timestamp {text[:40]!r} is not RFC 3339") from exc
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            result = int(dt.timestamp() * 1000)
        except (ValueError, OverflowError) as exc:
            raise _out_of_range(value) from exc
    else:
        raise ValueError("timestamp must be RFC 3339 or epoch milliseconds")
    if not _MIN_EPOCH_MS <= result <= _MAX_EPOCH_MS:
        raise _out_of_range(value)
    return result


EpochMs = Annotated[
    int,
    BeforeValidator(to_epoch_ms),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "format": "date-time"},
            {"type": "string", "pattern": "^[0-9]{1,16}$"},
            {"type": "number", "minimum": 1_000_000_000, "maximum": _MAX_EPOCH_MS},
        ]
    }),
]  # fmt: skip
"""Epoch milliseconds (UTC); accepts RFC 3339 text or epoch ms (epoch seconds are converted)."""


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)
