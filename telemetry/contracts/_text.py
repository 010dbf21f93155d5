"""What the contracts accept as text (labels, ids, hashes), and how their JSON Schemas say null.

Every text field of an event is printed somewhere (``telemetry sql``, alerts, webhooks), so none
may carry characters that move a terminal's cursor or reorder what a reader sees. A label is any
Unicode text (after leading and trailing whitespace is stripped) without:

- C0 controls U+0000..U+001F (tab, newline, ESC of ANSI escapes...), DEL U+007F, C1 controls
  U+0080..U+009F (CSI...);
- the line and paragraph separators U+2028, U+2029;
- the bidirectional embedding, override and isolate controls U+202A..U+202E, U+2066..U+2069.

The check is a pydantic ``pattern`` (compiled once, run in pydantic-core): the common path stays
in native code. A mismatch is dead-lettered as ``invalid_label``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

FORBIDDEN = r"\x00-\x1F\x7F-\x9F\u2028\u2029\u202A-\u202E\u2066-\u2069"
"""The characters no label may hold, as the body of a regex character class."""

LABEL_PATTERN = rf"^[^{FORBIDDEN}]*$"
"""A label: no control, line-separator or bidi-control characters (Rust, ECMA-262, Python syntax)."""


def label_field(default: Any = ..., *, max_length: int, min_length: int | None = None, description: str) -> Any:
    """A text field of the contract: ``LABEL_PATTERN`` and a length limit in characters."""
    return Field(default, min_length=min_length, max_length=max_length, pattern=LABEL_PATTERN, description=description)


def optional_fields_accept_null(schema: dict[str, Any]) -> None:
    """JSON Schema post-processing (``json_schema_extra``): every optional property also allows
    ``null``, which the decoder reads as "absent" (the field's default)."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required:
            continue
        variants = prop.get("anyOf")
        if variants is not None and any(v.get("type") == "null" for v in variants):
            continue
        meta = {key: prop.pop(key) for key in ("default", "description", "title") if key in prop}
        inner = dict(prop)
        prop.clear()
        prop.update(meta)
        prop["anyOf"] = [inner, {"type": "null"}]
