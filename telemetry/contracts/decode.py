"""Bytes from Kafka to validated events, or a typed reason why not.

Pure: no I/O, no clock. The worker dead-letters every :class:`BadInput` with its reason
(:data:`REASONS`). :func:`decode_request` and :func:`decode_verdict` raise nothing else: an
unexpected exception while decoding one message is that message's ``decode_error``.

Two paths, same result:

- fast: pydantic validates the raw bytes in one native pass (``model_validate_json``) when the
  message uses our own field names;
- dict: parse to a dict, map OpenTelemetry ``gen_ai.*`` names (:mod:`telemetry.contracts.otel`),
  drop ``null`` values of optional fields (null = absent), validate. Taken when the bytes hold
  ``null`` or ``gen_ai.`` anywhere (a byte scan, cheaper than a failed fast validation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pydantic_core
from pydantic import BaseModel, ValidationError

from telemetry.contracts.otel import normalize_request, normalize_verdict
from telemetry.contracts.request import RequestEvent
from telemetry.contracts.verdict import VerdictEvent
from telemetry.errors import BadInput

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH_HINT = 64

REASONS: dict[str, str] = {
    "empty_message": "the message has no value (a tombstone)",
    "oversized": "the value is larger than TELEMETRY_MAX_MESSAGE_BYTES",
    "invalid_json": "the value is not JSON (invalid UTF-8, syntax, a number beyond double range)",
    "not_an_object": "the value is JSON but not an object",
    "unsupported_schema_version": "schema_version is not the integer 1",
    "non_finite_number": "a number field holds Infinity, -Infinity or NaN (or 1e999)",
    "out_of_range": "a number beyond its field's bounds (huge integers included), or ts outside 2001-09-09..2100-01-01",
    "invalid_label": "a text field holds a control, line-separator or bidi-control character",
    "too_long": "a text field, tag key or value longer than its limit, or more than 64 tags",
    "schema_violation": "anything else the contract refuses: a missing or mistyped field, null in a required "
    "field, a value outside its enum, inconsistent token counts, a verdict without passed or score",
    "ts_in_future": "ts more than TELEMETRY_MAX_FUTURE_SKEW ahead of the worker's clock",
    "ambiguous_request_id": "the request id the repartition stage routed the message by differs from the one "
    "the contract decodes (e.g. request_id given twice)",
    "otlp_invalid": "an OTLP message that cannot be read at all (truncated or corrupt protobuf, not OTLP/JSON): "
    "the whole message",
    "decode_error": "an unexpected exception while decoding, validating or pricing this one message "
    "(the detail starts with the exception class)",
}
"""Every dead-letter reason the decode path gives, with its meaning (documented in the README)."""

_BOUNDS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
_OWN = frozenset({"non_finite_number", "out_of_range"})  # raised by our own validators (``_time``)
_BIG = float(2**63)  # orjson reads integers beyond 64 bits as floats


def _required(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, f in model.model_fields.items() if f.is_required())


_REQUEST_REQUIRED = _required(RequestEvent)
_VERDICT_REQUIRED = _required(VerdictEvent)


def _reason(err: Any) -> str:
    """The dead-letter reason of one pydantic error."""
    kind, value = err["type"], err.get("input")
    if kind in _OWN:
        return str(kind)
    if type(value) is float:
        if not math.isfinite(value):
            return "non_finite_number"
        if kind == "int_type" and abs(value) >= _BIG:
            return "out_of_range"
    if kind == "finite_number":  # an integer beyond double range for a float field
        return "out_of_range" if type(value) is int else "non_finite_number"
    if kind == "float_type" and type(value) is int:
        return "out_of_range"
    if kind in _BOUNDS:
        return "out_of_range"
    if kind == "string_pattern_mismatch":
        return "invalid_label"
    if kind in ("string_too_long", "too_long"):
        return "too_long"
    return "schema_violation"


def _shown(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return repr(value) if value.bit_length() < 100 else f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, float | str):
        return repr(value)[:60]
    return type(value).__name__


def _describe(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "<root>"
    kind = err["type"]
    if kind == "string_pattern_mismatch":
        return f"{where}: contains a control, line-separator or bidi-control character ({_shown(err.get('input'))})"
    message = str(err["msg"])
    if kind in _OWN or kind in ("missing", "model_type", "dict_type") or (kind == "value_error" and not err["loc"]):
        return f"{where}: {message}"
    if kind in ("int_type", "float_type", "finite_number"):
        reason = _reason(err)
        if reason == "non_finite_number":
            message = "not a finite number"
        elif reason == "out_of_range":
            message = "number out of range"
    return f"{where}: {message} (got {_shown(err.get('input'))})"


def _refusal(errors: list[Any]) -> BadInput:
    """The BadInput for a pydantic refusal: the reason of the first error (an unsupported
    schema_version wins: other errors are expected then), the first five errors as detail."""
    if not errors:
        return BadInput("schema_violation", "refused by the contract")
    first = errors[0]
    if first["type"] == "json_invalid":
        return BadInput("invalid_json", f"not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    if first["type"] == "model_type" and not first["loc"]:
        return BadInput("not_an_object", f"expected a JSON object, got {_shown(first.get('input'))}")
    if any(err["loc"][:1] == ("schema_version",) for err in errors):
        reason = "unsupported_schema_version"
    else:
        reason = _reason(first)
    return BadInput(reason, "; ".join(_describe(err) for err in errors[:5]))


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # pydantic's parser (the fast path's) also reads Infinity/NaN and big integers: parse as
        # it does, so that both paths give the same reason (non_finite_number, out_of_range).
        try:
            return pydantic_core.from_json(raw, allow_inf_nan=True)
        except ValueError:
            raise BadInput("invalid_json", f"not valid JSON: {exc}") from None


def _load_object(raw: bytes) -> dict[str, Any]:
    data = _parse(raw)
    if not isinstance(data, dict):
        raise BadInput("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    return data


def _drop_nulls(data: dict[str, Any], required: frozenset[str]) -> dict[str, Any]:
    """``null`` means absent: drop it from optional fields (and tag values); refuse it in a
    required one."""
    out = {key: value for key, value in data.items() if value is not None}
    if len(out) != len(data):
        for key in required:
            if key in data and data[key] is None:
                raise BadInput("schema_violation", f"{key}: null in a required field")
    tags = out.get("tags")
    if isinstance(tags, dict) and any(v is None for v in tags.values()):
        out["tags"] = {k: v for k, v in tags.items() if v is not None}
    return out


def _decode(
    model: type[M],
    raw: bytes | None,
    max_bytes: int,
    normalize: Callable[[dict[str, Any]], dict[str, Any]],
    required: frozenset[str],
) -> M:
    if raw is None:
        raise BadInput("empty_message", "message has no value (tombstone)")
    if len(raw) > max_bytes:
        raise BadInput("oversized", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    otel = b"gen_ai." in raw or b'"error.type"' in raw
    if not otel and b"null" not in raw:
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise _refusal(exc.errors(include_url=False)) from None
    data = _load_object(raw)
    data = _drop_nulls(normalize(data) if otel else data, required)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refusal(exc.errors(include_url=False)) from None


def unexpected(exc: BaseException) -> BadInput:
    """``decode_error`` for an exception nothing expected; the detail names its class."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a message that cannot be shown is still a dead letter
        text = "<unprintable>"
    return BadInput("decode_error", f"{type(exc).__name__}: {text}"[:500])


def decode_request(raw: bytes | None, max_bytes: int = 1_000_000) -> RequestEvent:
    """Parse and validate a request event. Raises BadInput, nothing else."""
    try:
        return _decode(RequestEvent, raw, max_bytes, normalize_request, _REQUEST_REQUIRED)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - one message never stops the worker
        raise unexpected(exc) from exc


def decode_verdict(raw: bytes | None, max_bytes: int = 1_000_000) -> VerdictEvent:
    """Parse and validate a verdict event (or an OTel ``gen_ai.evaluation.result``). Raises
    BadInput, nothing else."""
    try:
        return _decode(VerdictEvent, raw, max_bytes, normalize_verdict, _VERDICT_REQUIRED)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - one message never stops the worker
        raise unexpected(exc) from exc
