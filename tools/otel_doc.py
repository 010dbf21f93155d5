"""Regenerate the attribute table of ``docs/otel.md`` from ``telemetry.otlp.dialects``.

    python -m tools.otel_doc          # rewrite the table between the markers
    python -m tools.otel_doc --check  # exit 1 when the doc is out of date (the tests do this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from telemetry.otlp.dialects import (
    FACTS,
    OPENINFERENCE,
    OPENLLMETRY,
    OPERATION_VALUES,
    OTEL,
    OTEL_HTTP,
    OTEL_OLD,
)
from tools.generated import main, replace_block

DOC = Path(__file__).resolve().parents[1] / "docs" / "otel.md"
BEGIN, END = "<!-- dialects:begin (python -m tools.otel_doc) -->", "<!-- dialects:end -->"
COLUMNS = (OTEL, OTEL_OLD, OPENLLMETRY, OPENINFERENCE, OTEL_HTTP)


def render() -> str:
    used = [c for c in COLUMNS if any(n.dialect == c for f in FACTS for n in f.names)]
    lines = ["| Field | Meaning | " + " | ".join(used) + " |", "|---|---|" + "---|" * len(used)]
    for fact in FACTS:
        cells = []
        for column in used:
            names = [f"`{n.attribute}`" for n in fact.names if n.dialect == column]
            cells.append(", ".join(names) or "")
        lines.append(f"| `{fact.field}` | {fact.meaning} | " + " | ".join(cells) + " |")
    lines += ["", "Dialect operation values read as GenAI operations:", ""]
    for attribute, values in OPERATION_VALUES.items():
        pairs = ", ".join(f"`{k}` → `{v}`" for k, v in values.items())
        lines.append(f"- `{attribute}`: {pairs}")
    return "\n".join(lines)


def updated(text: str) -> str:
    return replace_block(text, BEGIN, END, render())


if __name__ == "__main__":
    raise SystemExit(main(DOC, updated, "tools.otel_doc", sys.argv[1:]))
