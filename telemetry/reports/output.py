"""A report as printed: a title, named tables (sections) and notes, in table, CSV or JSON form.

- ``table``: the title, each section as an aligned table under its name, then the notes.
- ``csv``: each section as CSV under a ``# <name>`` line, sections separated by a blank line;
  notes as ``# note: ...`` lines at the end.
- ``json``: one JSON document ``{"report", "title", "sections": {name: [row objects]}, "notes"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from telemetry.sql import QueryResult, render

__all__ = ["FORMATS", "Report", "Section", "render_report"]

FORMATS = ("table", "csv", "json")


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    columns: list[str]
    rows: list[list[Any]]

    def as_result(self) -> QueryResult:
        return QueryResult(self.columns, self.rows)


@dataclass(frozen=True, slots=True)
class Report:
    report: str
    title: str
    sections: list[Section]
    notes: list[str] = field(default_factory=list)


def render_report(report: Report, fmt: str = "table") -> str:
    """The report as text in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        doc = {
            "report": report.report,
            "title": report.title,
            "sections": {s.name: [dict(zip(s.columns, row)) for row in s.rows] for s in report.sections},
            "notes": report.notes,
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        parts = [f"# {s.name}\n{render(s.as_result(), 'csv')}" for s in report.sections]
        text = "\n\n".join(parts)
        if report.notes:
            text += "\n\n" + "\n".join(f"# note: {n}" for n in report.notes)
        return text
    out = [report.title, ""]
    for s in report.sections:
        out += [f"{s.name}:", render(s.as_result(), "table"), ""]
    out += [f"- {n}" for n in report.notes]
    return "\n".join(out).rstrip("\n")
