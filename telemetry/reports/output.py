"""A report as printed: a title, named tables (sections) and notes, in table, CSV or JSON form.

- ``table``: the title, each section as an aligned table under its name, then the notes.
- ``csv``: each section as CSV under a ``# <name>`` line, sections separated by a blank line;
  notes as ``# note: ...`` lines at the end.
- ``json``: one JSON document ``{"report", "title", "sections": {name: [row objects]}, "notes"}``.

:func:`render_report_html` gives the same report as one self-contained HTML page (stylesheet and
script inline, no request to anywhere): the title, charts (``telemetry report ... --html FILE``
passes the dashboard's charts for the report's route and window), each section as a table, the notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from telemetry.sql import QueryResult, render

__all__ = ["FORMATS", "Report", "Section", "render_report", "render_report_html"]

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


def _html_cell(value: Any) -> str:
    from telemetry.dashboard.charts import esc

    if value is None:
        return '<td class="muted">-</td>'
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float):
        return f'<td class="num">{esc(f"{value:.6g}")}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f'<td class="wrap">{esc(value)}</td>'


def render_report_html(report: Report, charts: str = "") -> str:
    """``report`` as a self-contained HTML page, ``charts`` (HTML) after its title. Every value is escaped."""
    from telemetry.dashboard.charts import esc
    from telemetry.dashboard.pages import inline, layout

    title, _, rest = report.title.partition("\n")
    parts = [f'<h1>{esc(title)}</h1><pre class="subtitle">{esc(rest)}</pre>' if rest else f"<h1>{esc(title)}</h1>", charts]
    for s in report.sections:
        head = "".join(f"<th>{esc(c)}</th>" for c in s.columns)
        body = "".join("<tr>" + "".join(_html_cell(v) for v in row) + "</tr>" for row in s.rows)
        if not s.rows:
            body = f'<tr><td class="muted" colspan="{len(s.columns)}">none</td></tr>'
        parts.append(f'<h2>{esc(s.name)}</h2><table class="section" data-section="{esc(s.name)}"><thead><tr>{head}'
                     f"</tr></thead><tbody>{body}</tbody></table>")  # fmt: skip
    if report.notes:
        parts.append('<h2>notes</h2><ul class="report-notes">' + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>")
    return layout(f"llm-telemetry report: {title}", "".join(parts), chrome=inline())
