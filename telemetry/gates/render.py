"""A gate as Markdown (``telemetry gate show``) and as a self-contained HTML page (``--html``),
and the one-line rows of ``telemetry gate list``. Pure."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from telemetry.gates.model import GateRecord


def _day(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _usd(x: Any) -> str:
    if not isinstance(x, int | float):
        return "-"
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.6f}"


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "-"


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


LIST_COLUMNS = ["id", "state", "route", "from", "to", "author", "reviewer", "opened", "projected_monthly_usd"]


def list_rows(gates: Sequence[GateRecord]) -> list[list[Any]]:
    return [[g.id, g.state, g.route, g.current_model, g.proposed_model, g.author, g.reviewer or "-",
              _day(g.opened_at_ms), g.projected_monthly_usd] for g in gates]  # fmt: skip


def markdown(g: GateRecord) -> str:
    """The whole record: what was proposed, why, on what evidence, and what happened since."""
    ev = g.evidence
    q, d, p, b = ev.get("quality", {}), ev.get("diagnostics", {}), ev.get("projection", {}), ev.get("budget", {})
    lines = [f"# {g.id}: {g.route} {g.current_model} -> {g.proposed_model} ({g.state})", ""]
    lines += _table(["", ""], [
        ["state", g.state], ["direction", g.direction], ["route", g.route], ["team", g.team or "-"],
        ["current model", g.current_model], ["proposed model", f"{g.proposed_model} ({g.proposed_provider or '?'})"],
        ["author", g.author], ["reviewer", g.reviewer or "-"], ["opened", _day(g.opened_at_ms)],
        ["decided", _day(g.decided_at_ms)], ["applied", _day(g.applied_at_ms)],
        ["postmortem due", _day(g.postmortem_due_at_ms)], ["closed", _day(g.closed_at_ms)],
    ])  # fmt: skip
    lines += ["", "## Hypothesis", "", g.hypothesis, ""]
    if g.review_note:
        lines += ["## Review", "", g.review_note, ""]
    warnings = ev.get("warnings", [])
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Quality now", ""]
    lines += _table(["evaluator", "judged", "pass rate", "95% interval", "cost per request", "cost per correct", "95% interval"], [[
        q.get("evaluator") or "-", q.get("judged", 0), _pct(q.get("pass_rate")),
        f"{_pct(q.get('pass_rate_low95'))} .. {_pct(q.get('pass_rate_high95'))}", _usd(q.get("cost_per_request_usd")),
        _usd(q.get("cost_per_correct_usd")),
        f"{_usd(q.get('cost_per_correct_low95_usd'))} .. {_usd(q.get('cost_per_correct_high95_usd'))}",
    ]])  # fmt: skip
    lines += ["", f"## Closed-book / gold-context reading: tier-up {d.get('tier_up', '-')}", ""]
    kinds = d.get("kinds", {})
    if kinds:
        lines += _table(["kind", "evaluator", "judged", "pass rate", "95% interval", "status"], [
            [k, v.get("evaluator"), v.get("judged"), _pct(v.get("pass_rate")), f"{_pct(v.get('low95'))} .. {_pct(v.get('high95'))}",
             v.get("status")] for k, v in kinds.items()
        ])  # fmt: skip
        lines.append("")
    lines += [f"- **{f['code']}**: {f['text']}" for f in d.get("findings", [])] + [""]
    lines += ["## Cost projection", ""]
    rows = [["mean request", _usd(p.get("current_cost_per_request_usd")), _usd(p.get("proposed_cost_per_request_usd")),
             _usd(p.get("current_monthly_usd")), _usd(p.get("projected_monthly_usd"))]]  # fmt: skip
    for label in ("p50", "p99"):
        s = p.get(label)
        if isinstance(s, dict):
            rows.append([f"{label} request ({s.get('input_tokens')} in, {s.get('output_tokens')} out)",
                         _usd(s.get("current_cost_per_request_usd")), _usd(s.get("proposed_cost_per_request_usd")),
                         _usd(s.get("current_monthly_usd")), _usd(s.get("projected_monthly_usd"))])  # fmt: skip
    lines += _table(["", "current per request", "proposed per request", "current per month", "projected per month"], rows)
    rate = (f"At {p.get('requests_per_second') or '-'} requests/s over the last {p.get('window_days', '-')} days; "
            f"monthly change {_usd(p.get('monthly_delta_usd'))}; break-even pass rate {_pct(p.get('break_even_pass_rate'))}.")
    budget = (f"Team {b.get('team') or '-'}: budget {_usd(b.get('monthly_budget_usd'))}/month, spending "
              f"{_usd(b.get('team_monthly_spend_usd'))}/month now, {_usd(b.get('team_monthly_spend_after_usd'))} after "
              f"({_pct(b.get('charge_share_of_budget'))} of the budget).")
    lines += ["", rate, "", "## Budget", "", budget, ""]
    earlier = ev.get("earlier_tier_ups", [])
    lines += ["## Earlier tier-ups (90 days)", ""]
    lines += ([f"- {t['at']}: {t['from']} -> {t['to']} ({t['source']})" for t in earlier] or ["- none"]) + [""]
    pm = ev.get("postmortem")
    if isinstance(pm, dict):
        bf, af = pm.get("before", {}), pm.get("after", {})
        lines += ["## Postmortem figures (30 days before and after)", ""]
        lines += _table(["", "before", "after"], [
            ["monthly cost", _usd(bf.get("monthly_usd")), _usd(af.get("monthly_usd"))],
            ["pass rate", _pct(bf.get("pass_rate")), _pct(af.get("pass_rate"))],
            ["cost per correct", _usd(bf.get("cost_per_correct_usd")), _usd(af.get("cost_per_correct_usd"))],
        ])  # fmt: skip
        lines += ["", f"Realized {_usd(pm.get('realized_monthly_usd'))}/month against {_usd(pm.get('projected_monthly_usd'))} projected.", ""]
    if g.findings:
        lines += ["## Findings", "", g.findings, ""]
    lines.append(f"_evidence computed {ev.get('computed_at', '-')}; version {g.version}_")
    return "\n".join(lines)


_CSS = ("body{font:14px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}"
        "h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}code{background:#f6f8fa}")  # fmt: skip


def html_page(g: GateRecord) -> str:
    """The Markdown of :func:`markdown` as a self-contained page (tables, headings, lists; escaped)."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, rows = table[0], table[2:]
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</table>")  # fmt: skip
            table.clear()

    for line in markdown(g).splitlines():
        if line.startswith("|"):
            table.append([html.escape(c.strip().replace("\\|", "|")) for c in line.strip().strip("|").split(" | ")])
            continue
        flush()
        text = html.escape(line)
        if line.startswith("# "):
            body.append(f"<h1>{text[2:]}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{text[3:]}</h2>")
        elif line.startswith("- "):
            body.append(f"<li>{text[2:].replace('**', '')}</li>")
        elif line.strip():
            body.append(f"<p>{text.replace('**', '')}</p>")
    flush()
    title = html.escape(f"{g.id}: {g.route}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title><style>{_CSS}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")  # fmt: skip
