"""Bytes from Kafka to validated events, or a typed reason why not.

Pure: no I/O. The worker dead-letters every :class:`BadInput` with its reason.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from telemetry.contracts.otel import normalize_request, normalize_verdict
from telemetry.contracts.request import RequestEvent
from telemetry.contracts.verdict import VerdictEvent
from telemetry.errors import BadInput

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH_HINT = 64


def _load_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if raw is None:
        raise BadInput("empty_message", "message has no value (tombstone)")
    if len(raw) > max_bytes:
        raise BadInput("oversized", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput("invalid_json", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    return data


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise BadInput("schema_violation", problems) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadInput("schema_violation", str(exc)[:500]) from None


def _fast(model: type[M], raw: bytes | None, max_bytes: int) -> M | None:
    """Validate straight from bytes (pydantic's JSON parser, one pass) when the message uses
    our own field names; None when it needs the alias path (``gen_ai.*`` names)."""
    if raw is None:
        raise BadInput("empty_message", "message has no value (tombstone)")
    if len(raw) > max_bytes:
        raise BadInput("oversized", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    if b"gen_ai." in raw or b'"error.type"' in raw:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0] if errors else {"type": "", "loc": (), "msg": ""}
        if first["type"] == "json_invalid":
            raise BadInput("invalid_json", f"not valid JSON: {first['msg']}") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise BadInput("not_an_object", "expected a JSON object") from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in errors[:5]
        )
        raise BadInput("schema_violation", problems) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadInput("schema_violation", str(exc)[:500]) from None


def decode_request(raw: bytes | None, max_bytes: int = 1_000_000) -> RequestEvent:
    """Parse and validate a request event. Raises BadInput."""
    event = _fast(RequestEvent, raw, max_bytes)
    if event is not None:
        return event
    return _validate(RequestEvent, normalize_request(_load_object(raw, max_bytes)))


def decode_verdict(raw: bytes | None, max_bytes: int = 1_000_000) -> VerdictEvent:
    """Parse and validate a verdict event (or an OTel ``gen_ai.evaluation.result``). Raises BadInput."""
    event = _fast(VerdictEvent, raw, max_bytes)
    if event is not None:
        return event
    return _validate(VerdictEvent, normalize_verdict(_load_object(raw, max_bytes)))
