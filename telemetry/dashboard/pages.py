"""The dashboard's pages as HTML. Pure functions of the page models in :mod:`telemetry.dashboard.views`.

Every value from the data (routes, models, summaries, evidence) is escaped; links carry route
names percent-encoded. Links are relative (``base`` is ``""`` at the root and ``"../"`` one level
down), so the pages also work behind a reverse proxy that mounts them under a prefix.

Two kinds of chrome: :func:`served` links the stylesheet and script from ``static/`` (a
Content-Security-Policy of ``'self'`` allows nothing else) and refreshes itself; :func:`inline`
embeds both, for a self-contained file (``telemetry report ... --html``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from urllib.parse import urlencode

import orjson

from telemetry.dashboard.charts import (
    Band,
    Line,
    Mark,
    Stack,
    esc,
    fmt_value,
    sparkline,
    time_chart,
    timeline,
)
from telemetry.dashboard.views import (
    RANGES,
    AlertEpisode,
    AlertsView,
    ModelRow,
    Overview,
    RouteView,
    Window,
)

__all__ = [
    "ASSETS",
    "Chrome",
    "alerts_page",
    "asset",
    "asset_version",
    "inline",
    "layout",
    "message_page",
    "overview_page",
    "overview_body",
    "route_charts",
    "route_events",
    "route_page",
    "route_summary",
    "served",
]

ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript", "favicon.svg": "image/svg+xml"}
PALETTE = 8


@cache
def asset(name: str) -> bytes:
    """A static file shipped with the package (``telemetry/dashboard/static``)."""
    if name not in ASSETS:
        raise KeyError(name)
    return (resources.files("telemetry.dashboard") / "static" / name).read_bytes()


@cache
def asset_version() -> str:
    """Short hash of the static files: their URLs change when they do (long browser caching)."""
    digest = hashlib.sha256()
    for name in sorted(ASSETS):
        digest.update(asset(name))
    return digest.hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Chrome:
    """How a page is wrapped: relative ``base`` to the root, linked or inlined assets, refresh."""

    base: str = ""
    inline_assets: bool = False
    refresh_s: int = 30
    nav: bool = True


def served(base: str = "", refresh_s: int = 30) -> Chrome:
    return Chrome(base, False, refresh_s, True)


def inline() -> Chrome:
    return Chrome("", True, 0, False)


def _iso(t_ms: int | None, seconds: bool = False) -> str:
    if t_ms is None:
        return "-"
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _short(t_ms: int | None) -> str:
    if t_ms is None:
        return "-"
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%b %d %H:%M")


def _duration(ms: int) -> str:
    minutes = ms // 60_000
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def href(base: str, path: str, **params: str) -> str:
    """A relative link to ``path`` (``""``, ``"route/"``, ``"alerts/"``) with its query string."""
    query = urlencode({k: v for k, v in params.items() if v})
    return esc((f"{base}{path}" + (f"?{query}" if query else "")) or "./")


def layout(title: str, main: str, *, chrome: Chrome, active: str = "", ranges: str = "", status: str = "") -> str:
    """The whole document around ``main``."""
    base = chrome.base
    if chrome.inline_assets:
        head_assets = (f"<style>{asset('dashboard.css').decode()}</style>"
                       f"<script>{asset('dashboard.js').decode()}</script>")  # fmt: skip
        icon = ""
    else:
        v = asset_version()
        head_assets = (f'<link rel="stylesheet" href="{esc(base)}static/dashboard.css?v={v}">'
                       f'<script src="{esc(base)}static/dashboard.js?v={v}" defer></script>')  # fmt: skip
        icon = f'<link rel="icon" type="image/svg+xml" href="{esc(base)}static/favicon.svg?v={v}">'
    nav = ""
    if chrome.nav:
        items = [("overview", "", "Overview"), ("alerts", "alerts/", "Alerts")]
        nav = "<nav>" + "".join(
            f'<a href="{href(base, path)}"{" aria-current=page" if name == active else ""}>{label}</a>'
            for name, path, label in items
        ) + "</nav>"  # fmt: skip
    brand = f'<a class="brand" href="{href(base, "")}">llm-telemetry</a>' if chrome.nav else '<span class="brand">llm-telemetry</span>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>{icon}{head_assets}</head>"
        f'<body data-refresh="{chrome.refresh_s}"><header class="top">{brand}{nav}'
        f'<div class="ranges">{ranges}</div><div class="status" id="status">{status}</div></header>'
        f'<main id="main">{main}</main></body></html>'
    )


def _range_links(chrome: Chrome, path: str, current: str, **params: str) -> str:
    if not chrome.nav:
        return ""
    return "".join(
        f'<a href="{href(chrome.base, path, **params, range=name)}"{" aria-current=true" if name == current else ""} '
        f'data-range="{name}">{name}</a>'
        for name in RANGES
    )  # fmt: skip


def _status(window: Window) -> str:
    if window.newest_ms is None:
        return "no data yet"
    return (f'data until <time data-t="{window.newest_ms}">{esc(_iso(window.newest_ms))}</time> UTC '
            f'<span class="refreshed" id="refreshed"></span>')  # fmt: skip


def message_page(title: str, text: str, *, chrome: Chrome, form: bool = False) -> str:
    """A page with one message (no data yet, unauthorized, an error); ``form``: ask for the token."""
    ask = ""
    if form:
        ask = ('<form method="get" class="token"><label>Token <input type="password" name="token" '
               'autocomplete="current-password" required></label> <button type="submit">Open</button></form>')  # fmt: skip
    return layout(title, f'<section class="message"><h1>{esc(title)}</h1><p>{esc(text)}</p>{ask}</section>',
                  chrome=chrome)  # fmt: skip


# -- shared pieces ---------------------------------------------------------------------------------------
def _pass_cell(row: ModelRow) -> str:
    q = row.quality
    if q.rate is None or q.low is None or q.high is None:
        return '<td class="num muted" data-col="pass_rate">no verdicts</td>'
    judged = fmt_value(row.judged_fraction, "pct")
    return (f'<td class="num" data-col="pass_rate" data-v="{q.rate:.6f}" data-low="{q.low:.6f}" data-high="{q.high:.6f}">'
            f'<b>{fmt_value(q.rate, "pct")}</b> <span class="ci">[{fmt_value(q.low, "pct")}, {fmt_value(q.high, "pct")}]</span>'
            f'<span class="judged" title="{q.judged} online verdicts">{esc(judged)} judged</span></td>')  # fmt: skip


def _num_cell(col: str, value: float | None, fmt: str, extra: str = "") -> str:
    data = f' data-v="{value:.9g}"' if value is not None else ""
    return f'<td class="num{extra}" data-col="{col}"{data}>{esc(fmt_value(value, fmt))}</td>'


def _alert_badges(alerts: Sequence[AlertEpisode], base: str, links: bool = True) -> str:
    if not alerts:
        return ""
    tag = "a" if links else "span"
    return "".join(
        f'<{tag} class="badge sev-{esc(a.severity)}"'
        + (f' href="{href(base, "alerts/")}#a-{esc(a.fingerprint)}-{a.starts_ms}"' if links else "")
        + f' title="{esc(a.first_summary)}">{esc(a.alertname)}</{tag}>'
        for a in alerts
    )


def _cards(items: Sequence[tuple[str, str, str]]) -> str:
    return '<section class="cards">' + "".join(
        f'<div class="card" data-card="{esc(key)}"><div class="label">{esc(label)}</div><div class="value">{value}</div></div>'
        for key, label, value in items
    ) + "</section>"  # fmt: skip


def _span(window: Window) -> str:
    return f"last {window.name}" if window.name in RANGES else "in the window"


def _rate_per_s(requests: int, window: Window) -> str:
    seconds = max(1.0, (min(window.t1_ms, (window.newest_ms or 0) + 60_000) - window.t0_ms) / 1000)
    return f"{requests / seconds:.2f}/s"


# -- overview -----------------------------------------------------------------------------------------------
def overview_page(view: Overview, *, chrome: Chrome) -> str:
    """Every route x served model: traffic, pass rate with its interval and judged fraction, cost per
    request, cost per correct answer (with a sparkline next to the pass rate's), p95, errors, alerts."""
    w = view.window
    if w.newest_ms is None:
        main = ('<section class="message"><h1>No data yet</h1><p>No request has been stored. Send traffic '
                '(<code>telemetry simulate demo</code>) and this page fills in by itself.</p></section>')  # fmt: skip
        return layout("llm-telemetry", main, chrome=chrome, active="overview", status=_status(w))
    main = (f'<h1>Routes <small>last {esc(w.name)}: {esc(_short(w.t0_ms))} – {esc(_short(w.t1_ms))} UTC</small></h1>'
            f"{overview_body(view, chrome.base)}"
            '<p class="hint">Cost per correct answer = cost per request / pass rate: a tier-up that lifts the pass rate '
            'shows here as the price of each extra correct answer.</p>')  # fmt: skip
    return layout("llm-telemetry: overview", main, chrome=chrome, active="overview",
                  ranges=_range_links(chrome, "", w.name), status=_status(w))  # fmt: skip


def overview_body(view: Overview, base: str, *, links: bool = True) -> str:
    """The overview's cards, firing alerts and table (also in the tier-down HTML report, without links)."""
    w = view.window
    rows = view.rows
    total_req = sum(r.requests for r in rows)
    total_cost = sum(r.cost_usd for r in rows)
    judged, passed = sum(r.judged for r in rows), sum(r.passed for r in rows)
    firing = view.firing
    cards = _cards([
        ("requests", f"requests, {_span(w)}", f"{total_req:,} <small>{_rate_per_s(total_req, w)}</small>"),
        ("cost", f"cost, {_span(w)}", esc(fmt_value(total_cost, "usd"))),
        ("pass_rate", "pass rate (online judge)", esc(fmt_value(passed / judged if judged else None, "pct"))),
        ("firing", "alerts firing", f'<span class="{"hot" if firing else ""}">{len(firing)}</span>'),
    ])  # fmt: skip
    by_route: dict[str, list[ModelRow]] = {}
    for r in rows:
        by_route.setdefault(r.route, []).append(r)
    firing_by_route: dict[str, list[AlertEpisode]] = {}
    for a in firing:
        firing_by_route.setdefault(a.route, []).append(a)
    body = []
    n_spark = 0
    for route in view.routes():
        models = by_route[route]
        route_link = href(base, "route/", name=route, range=w.name) if links else ""
        for i, r in enumerate(models):
            spark = view.sparks.get((r.route, r.model))
            spark_svg = ""
            if spark is not None:
                n_spark += 1
                spark_svg = sparkline(
                    f"spark-{n_spark}",
                    [("cost per correct", spark.cost_per_correct, "cpc"), ("pass rate", spark.pass_rate, "pass")],
                    t0=w.t0_ms, t1=w.t1_ms,
                    title=f"{route} {r.model}: cost per correct answer (purple) and pass rate (green), each on its own scale",
                )  # fmt: skip
            cells = []
            if i == 0:
                team = f'<span class="team">{esc(r.team)}</span>' if r.team else ""
                name = f'<a href="{route_link}">{esc(route)}</a>' if links else esc(route)
                cells.append(f'<th scope="rowgroup" rowspan="{len(models)}" class="route">{name}{team}</th>')
            cells += [
                f'<td class="model" data-col="model">{esc(r.model)}</td>',
                f'<td class="num" data-col="requests" data-v="{r.requests}">{r.requests:,}</td>',
                _pass_cell(r),
                _num_cell("cost_per_request", r.cost_per_request, "usd"),
                _num_cell("cost_per_correct", r.cost_per_correct, "usd", " strong"),
                f'<td class="spark" data-col="spark">{spark_svg}</td>',
                _num_cell("latency_p95_ms", r.latency_p95_ms, "ms"),
                _num_cell("error_rate", r.error_rate, "pct", " hot" if (r.error_rate or 0) >= 0.05 else ""),
            ]  # fmt: skip
            if i == 0:
                cells.append(f'<td rowspan="{len(models)}" class="alerts" data-col="alerts">'
                             f"{_alert_badges(firing_by_route.get(route, []), base, links)}</td>")  # fmt: skip
            body.append(f'<tr data-route="{esc(route)}" data-model="{esc(r.model)}">{"".join(cells)}</tr>')
    table = (
        '<table class="overview" id="overview"><thead><tr><th>route</th><th>served model</th><th class="num">requests</th>'
        '<th class="num">pass rate <small>[95% interval]</small></th><th class="num">$ / request</th>'
        '<th class="num">$ / correct answer</th><th>$/correct <i class="sw cpc"></i> vs pass rate <i class="sw pass"></i></th>'
        '<th class="num">p95 latency</th><th class="num">errors</th><th>firing</th></tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table>'
    )  # fmt: skip
    firing_html = _firing_list(firing, base, links) if firing else ""
    return f"{cards}{firing_html}{table}"


def _firing_list(firing: Sequence[AlertEpisode], base: str, links: bool = True) -> str:
    def name(a: AlertEpisode) -> str:
        if not links:
            return f"<b>{esc(a.alertname)}</b>"
        return f'<a href="{href(base, "alerts/")}#a-{esc(a.fingerprint)}-{a.starts_ms}"><b>{esc(a.alertname)}</b></a>'

    items = "".join(
        f'<li class="sev-{esc(a.severity)}">{name(a)} {esc(a.route)}{(" · " + esc(a.model)) if a.model else ""} '
        f'<span class="since">since {esc(_short(a.starts_ms))}</span> — {esc(a.last_summary)}</li>'
        for a in firing
    )  # fmt: skip
    return f'<section class="firing"><h2>Firing now</h2><ul>{items}</ul></section>'


# -- route ------------------------------------------------------------------------------------------------
def _color(index: int) -> str:
    return f"c{index % PALETTE}"


def route_charts(view: RouteView) -> str:
    """The route's charts (also used by the HTML reports): pass rate with its interval band, cost
    per correct answer, cost per request, latency and TTFT quantiles, errors by type, model mix;
    every chart carries the route's markers."""
    w = view.window
    marks = [Mark(m.t_ms, m.kind, m.label) for m in view.markers]
    chart = functools.partial(time_chart, t0=w.t0_ms, t1=w.t1_ms, bucket_ms=w.bucket_ms, marks=marks)
    bucket = f"per {_duration(w.bucket_ms)}"
    quantiles = [("p50", "q50"), ("p95", "q95"), ("p99", "q99")]
    charts = [
        chart("pass_rate", "Pass rate", lines=[Line("pass rate", view.line("pass_rate"), "pass")],
              bands=[Band("95% interval", view.band(), "pass")], fmt="pct", zero=False, ceiling=1.0,
              subtitle=f"online judge, Wilson 95% interval, {bucket}"),
        chart("cost_per_correct", "Cost per correct answer", fmt="usd", subtitle=f"$ per request / pass rate, {bucket}",
              lines=[Line("$ / correct", view.line("cost_per_correct"), "cpc")]),
        chart("cost_per_request", "Cost per request", fmt="usd", subtitle=f"priced requests, {bucket}",
              lines=[Line("$ / request", view.line("cost_per_request"), "cpr")]),
        chart("latency", "Latency", fmt="ms", subtitle=f"end to end, all requests, {bucket}",
              lines=[Line(name, view.line(f"latency_{name}_ms"), css) for name, css in quantiles]),
        chart("ttft", "Time to first token", fmt="ms", subtitle=f"requests that report it, {bucket}",
              lines=[Line(name, view.line(f"ttft_{name}_ms"), css) for name, css in quantiles],
              empty="no TTFT reported in this window"),
        chart("errors", "Errors by type", fmt="count", subtitle=f"errors {bucket}", empty="no errors in this window",
              stacks=[Stack(name, pts, _color(i + 3)) for i, (name, pts) in enumerate(view.errors.items())]),
        chart("model_mix", "Model mix", fmt="count", subtitle=f"requests by served model, {bucket}",
              stacks=[Stack(name, pts, _color(i)) for i, (name, pts) in enumerate(view.mix.items())]),
    ]  # fmt: skip
    return '<section class="charts">' + "".join(charts) + "</section>"


_MARK_NAMES = {"firing": "alert firing", "resolved": "alert resolved", "model": "model change", "tier-up": "tier-up",
               "gate": "gate"}  # fmt: skip


def route_events(view: RouteView) -> str:
    if not view.markers:
        return '<section class="events"><h2>Events</h2><p class="muted">No model change, alert or gate in this window.</p></section>'
    rows = "".join(
        f'<tr class="ev-{esc(m.kind)}" data-t="{m.t_ms}" data-kind="{esc(m.kind)}"><td>{esc(_iso(m.t_ms))}</td>'
        f'<td><i class="mk mk-{esc(m.kind)}"></i>{esc(_MARK_NAMES.get(m.kind, m.kind))}</td><td>{esc(m.label)}</td></tr>'
        for m in view.markers
    )  # fmt: skip
    return (f'<section class="events"><h2>Events</h2><table class="events" id="events"><thead><tr><th>time (UTC)</th>'
            f'<th>kind</th><th>what</th></tr></thead><tbody>{rows}</tbody></table></section>')  # fmt: skip


def _model_table(view: RouteView) -> str:
    rows = "".join(
        f'<tr data-model="{esc(r.model)}"><td class="model">{esc(r.model)}</td>'
        f'<td class="num" data-col="requests" data-v="{r.requests}">{r.requests:,}</td>{_pass_cell(r)}'
        f'{_num_cell("cost_per_request", r.cost_per_request, "usd")}{_num_cell("cost_per_correct", r.cost_per_correct, "usd", " strong")}'
        f'{_num_cell("latency_p95_ms", r.latency_p95_ms, "ms")}{_num_cell("error_rate", r.error_rate, "pct")}</tr>'
        for r in view.models
    )  # fmt: skip
    return ('<section><h2>Served models</h2><table class="models" id="models"><thead><tr><th>model</th>'
            '<th class="num">requests</th><th class="num">pass rate <small>[95%]</small></th><th class="num">$ / request</th>'
            '<th class="num">$ / correct</th><th class="num">p95 latency</th><th class="num">errors</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>")  # fmt: skip


def _gates_table(view: RouteView) -> str:
    if not view.gates:
        return ""
    rows = "".join(
        f'<tr data-gate="{esc(g.id)}"><td>{esc(g.id)}</td><td>{esc(g.current_model)} → {esc(g.proposed_model)}</td>'
        f"<td>{esc(g.state)}</td><td>{esc(_iso(g.opened_ms))}</td><td>{esc(_iso(g.decided_ms))}</td>"
        f"<td>{esc(_iso(g.applied_ms))}</td><td>{esc(g.author)}</td><td>{esc(g.reviewer)}</td>"
        f'<td class="wrap">{esc(g.hypothesis)}</td></tr>'
        for g in view.gates
    )  # fmt: skip
    return ('<section><h2>Tier-up gates</h2><table class="gates" id="gates"><thead><tr><th>gate</th><th>change</th>'
            '<th>state</th><th>opened</th><th>decided</th><th>applied</th><th>author</th><th>reviewer</th>'
            f"<th>hypothesis</th></tr></thead><tbody>{rows}</tbody></table></section>")  # fmt: skip


def route_summary(view: RouteView) -> str:
    total = view.total
    if total is None:
        return ""
    q = total.quality
    interval = f" <small>[{fmt_value(q.low, 'pct')}, {fmt_value(q.high, 'pct')}]</small>" if q.judged else ""
    models = ", ".join(f"{m.model} {fmt_value(m.requests / total.requests, 'pct')}" for m in view.models[:4])
    return _cards([
        ("requests", "requests", f"{total.requests:,} <small>{_rate_per_s(total.requests, view.window)}</small>"),
        ("pass_rate", "pass rate", f"{esc(fmt_value(q.rate, 'pct'))}{interval}"),
        ("cost_per_request", "$ / request", esc(fmt_value(total.cost_per_request, "usd"))),
        ("cost_per_correct", "$ / correct answer", esc(fmt_value(total.cost_per_correct, "usd"))),
        ("models", "served models", f"<small>{esc(models)}</small>"),
    ])  # fmt: skip


def route_page(view: RouteView, *, chrome: Chrome) -> str:
    """One route over the window: summary, the charts with their markers, events, models, gates."""
    w = view.window
    team = f' <small class="team">{esc(view.models[0].team)}</small>' if view.models and view.models[0].team else ""
    firing = [a for a in view.alerts if a.firing]
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in view.notes)
    if w.newest_ms is None or not view.series:
        body = '<p class="muted">No traffic on this route in this window.</p>'
    else:
        body = route_summary(view) + route_charts(view) + route_events(view) + _model_table(view) + _gates_table(view)
    main = (f'<h1><span class="crumb"><a href="{href(chrome.base, "", range=w.name)}">Routes</a> /</span> '
            f"{esc(view.route)}{team} <small>last {esc(w.name)}: {esc(_short(w.t0_ms))} – {esc(_short(w.t1_ms))} UTC</small></h1>"
            f"{_firing_list(firing, chrome.base) if firing else ''}{notes}{body}")  # fmt: skip
    return layout(f"llm-telemetry: {view.route}", main, chrome=chrome, active="route",
                  ranges=_range_links(chrome, "route/", w.name, name=view.route), status=_status(w))  # fmt: skip


# -- alerts -----------------------------------------------------------------------------------------------
def _evidence(text: str) -> str:
    try:
        pretty = orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        pretty = text
    return f"<details><summary>evidence</summary><pre>{esc(pretty)}</pre></details>" if pretty.strip() else ""


def _alert_row(a: AlertEpisode, window: Window, base: str) -> str:
    end = a.ended_ms if a.ended_ms is not None else None
    lasted = _duration((end if end is not None else (window.newest_ms or a.starts_ms)) - a.starts_ms)
    state = "firing" if a.firing else "resolved"
    route = f'<a href="{href(base, "route/", name=a.route, range=window.name)}">{esc(a.route)}</a>'
    return (f'<tr id="a-{esc(a.fingerprint)}-{a.starts_ms}" class="{state}" data-alert="{esc(a.alertname)}" '
            f'data-route="{esc(a.route)}" data-start="{a.starts_ms}" data-end="{end if end is not None else ""}">'
            f'<td><span class="state {state}">{state}</span></td><td><b>{esc(a.alertname)}</b>'
            f'<div class="sev sev-{esc(a.severity)}">{esc(a.severity)}</div></td><td>{route}<div class="muted">'
            f"{esc(a.model)}</div></td><td>{esc(_iso(a.starts_ms))}</td><td>{esc(_iso(end))}</td><td>{esc(lasted)}"
            f'</td><td class="wrap">{esc(a.first_summary)}'
            f'{"<div class=muted>" + esc(a.last_summary) + "</div>" if a.last_summary != a.first_summary else ""}'
            f"{_evidence(a.evidence)}</td></tr>")  # fmt: skip


def alerts_page(view: AlertsView, *, chrome: Chrome) -> str:
    """Firing and recent alerts with their evidence, and a timeline per route and alert."""
    w, base = view.window, chrome.base
    lanes: dict[str, list[tuple[int, int | None, str, str]]] = {}
    for a in sorted(view.episodes, key=lambda e: (e.route, e.alertname, e.starts_ms)):
        tip = f"{a.alertname} on {a.route} {a.model}: {_iso(a.starts_ms)} – {_iso(a.ended_ms) if a.ended_ms else 'now'}: {a.first_summary}"
        lanes.setdefault(f"{a.route} · {a.alertname}", []).append(
            (a.starts_ms, a.ended_ms, f"{'firing' if a.firing else 'resolved'} sev-{a.severity}", tip))
    chart = timeline("alert_timeline", "Timeline", list(lanes.items()), t0=w.t0_ms, t1=w.t1_ms)
    firing = view.firing
    rows = "".join(_alert_row(a, w, base) for a in view.episodes)
    table = ('<table class="alerts" id="alerts"><thead><tr><th>state</th><th>alert</th><th>route · model</th><th>started (UTC)</th>'
             f"<th>resolved</th><th>lasted</th><th>summary</th></tr></thead><tbody>{rows}</tbody></table>") if rows else (
             '<p class="muted">No alert in this window.</p>')  # fmt: skip
    main = (f'<h1>Alerts <small>last {esc(w.name)}: {esc(_short(w.t0_ms))} – {esc(_short(w.t1_ms))} UTC, and every one '
            f'still firing</small></h1>'
            + _cards([("firing", "firing now", f'<span class="{"hot" if firing else ""}">{len(firing)}</span>'),
                      ("episodes", f"alerts in the last {w.name}", str(len(view.episodes)))])
            + (_firing_list(firing, base) if firing else "") + chart + table)  # fmt: skip
    return layout("llm-telemetry: alerts", main, chrome=chrome, active="alerts",
                  ranges=_range_links(chrome, "alerts/", w.name), status=_status(w))  # fmt: skip
