"""JSON Schema files under ``schemas/``, generated from the pydantic contracts.

``telemetry schemas --write`` regenerates them; a test fails when the checked-in files drift.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel

from telemetry.contracts import Alert, RequestEvent, VerdictEvent

CONTRACTS: dict[str, type[BaseModel]] = {
    "request.schema.json": RequestEvent,
    "verdict.schema.json": VerdictEvent,
    "alert.schema.json": Alert,
}


def render_schemas() -> dict[str, bytes]:
    """File name -> JSON Schema bytes (stable formatting, trailing newline)."""
    out: dict[str, bytes] = {}
    for name, model in CONTRACTS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://llm-telemetry.dev/schemas/{name}"
        out[name] = orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    return out


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render_schemas().items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    return written


def stale_schemas(directory: Path) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    return [
        name for name, data in render_schemas().items()
        if not (directory / name).exists() or (directory / name).read_bytes() != data
    ]  # fmt: skip
