"""The dashboard without a browser: pure windows, markers, charts, pages and the token decision;
its SQL and loaders against the real embedded engine (the session ``engine``, a database of its
own filled with a small, fully known data set); the HTTP handler; the HTML reports.

The browser tests are in tests/integration/test_dashboard_browser.py.
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.dashboard import auth, charts, pages, views
from telemetry.dashboard import queries as q
from telemetry.dashboard.report import decision_chart, report_html
from telemetry.dashboard.web import Dashboard, Request, aiohttp_app
from telemetry.reports.canary import canary
from telemetry.reports.diagnostics import diagnostics
from telemetry.reports.history import TierChange, model_history
from telemetry.reports.projection import cost_projection
from telemetry.reports.query import Query
from telemetry.reports.stats import wilson
from telemetry.reports.tierdown import tier_down
from telemetry.sql import run_read_only
from telemetry.storage.migrate import migrate

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = int(datetime(2025, 4, 1, tzinfo=UTC).timestamp() * 1000)
END = T0 + 2 * DAY - MIN  # the newest request's minute
EVIL = "evil<script>alert(1)</script>\"'&route"


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# -- a known data set -------------------------------------------------------------------------------------
def dataset() -> dict[str, list[list[Any]]]:
    """Two days, T0 .. T0 + 2 days:

    - support.answer: gpt-4o-mini ($0.0005) one request a minute on day 1 (every 4th judged,
      9 in 10 of those pass) and until day 2 12:00; then gpt-4o ($0.005) one a minute (every 4th
      judged, all pass): a tier-up at day 2 12:00. Every 50th request is an error (rate_limited,
      or timeout when also a multiple of 150). TTFT 100 ms on gpt-4o only.
    - EVIL (a route named with markup): 10 requests on day 2, unpriced model.
    - alerts on support.answer: a TierSwitch firing at day 2 12:05, resolved 13:05; a CostSpike
      firing at day 2 20:00, not resolved.
    - gates: gate-1 on support.answer opened day 2 10:00, approved 11:00, applied 12:00.
    """
    requests, verdicts = [], []
    for i in range(2 * 24 * 60):
        ts = T0 + i * MIN
        model = "gpt-4o-mini" if ts < T0 + DAY + 12 * HOUR else "gpt-4o"
        status = "error" if i % 50 == 0 else "ok"
        error_type = ("timeout" if i % 150 == 0 else "rate_limited") if status == "error" else ""
        requests.append([f"r{i}", dt(ts), "support.answer", "customer", model, model, 0.0005 if model == "gpt-4o-mini" else 0.005,
                         800.0 + (i % 7) * 10, 100.0 if model == "gpt-4o" else None, status, error_type])  # fmt: skip
        if i % 4 == 0:
            passed = 1 if model == "gpt-4o" or (i // 4) % 10 != 0 else 0
            verdicts.append([f"r{i}", "judge@1", "online", passed, dt(ts), "support.answer", "customer", model, model])
    for i in range(10):
        ts = T0 + DAY + i * HOUR
        requests.append([f"e{i}", dt(ts), EVIL, "", "private-model", "private-model", None, 50.0, None, "ok", ""])
    alerts = [
        [dt(T0 + DAY + 12 * HOUR + 5 * MIN), 1, "firing", "TierSwitch", "support.answer", "gpt-4o", "fp-tier",
         "support.answer now served by gpt-4o", None, '{"cost_ratio": 10.0}', "info"],
        [dt(T0 + DAY + 12 * HOUR + 5 * MIN), 2, "resolved", "TierSwitch", "support.answer", "gpt-4o", "fp-tier",
         "resolved: <b>no longer</b>", dt(T0 + DAY + 13 * HOUR + 5 * MIN), "{}", "info"],
        [dt(T0 + DAY + 20 * HOUR), 1, "firing", "CostSpike", "support.answer", "gpt-4o", "fp-cost",
         "cost per request 10x baseline", None, '{"ratio": 10}', "warning"],
    ]  # fmt: skip
    gates = [
        ["gate-1", 1, "support.answer", "gpt-4o-mini", "gpt-4o", "open", "a tier-up <script>", "alice", "",
         dt(T0 + DAY + 10 * HOUR), None, None],
        ["gate-1", 3, "support.answer", "gpt-4o-mini", "gpt-4o", "applied", "a tier-up <script>", "alice", "bob",
         dt(T0 + DAY + 10 * HOUR), dt(T0 + DAY + 11 * HOUR), dt(T0 + DAY + 12 * HOUR)],
    ]  # fmt: skip
    return {"requests": requests, "verdicts": verdicts, "alerts": alerts, "tier_gates": gates}


COLUMNS = {
    "requests": ["request_id", "ts", "route", "team", "model", "served_model", "cost_usd", "latency_ms", "ttft_ms", "status",
                 "error_type"],
    "verdicts": ["request_id", "evaluator", "kind", "passed", "request_ts", "route", "team", "model", "served_model"],
    "alerts": ["starts_at", "sequence", "status", "alertname", "route", "model", "fingerprint", "summary", "ends_at",
               "evidence", "severity"],
    "tier_gates": ["id", "version", "route", "current_model", "proposed_model", "state", "hypothesis", "author", "reviewer",
                   "opened_at", "decided_at", "applied_at"],
}  # fmt: skip


@pytest.fixture(scope="module")
def database(engine: Client) -> Iterator[str]:
    name = f"dash_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    for table, rows in dataset().items():
        engine.insert(table, rows, column_names=COLUMNS[table], database=name)
    yield name
    engine.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="module")
def query(engine: Client) -> Query:
    return lambda sql: run_read_only(engine, sql)


# -- queries --------------------------------------------------------------------------------------------------
def test_every_template_fills_and_runs(query: Query, database: str) -> None:
    params = q.builtin_params(database, t0_ms=T0, t1_ms=T0 + 2 * DAY, bucket_s=3600, route="support.answer")
    for template in q.TEMPLATES:
        result = query(q.fill(template, params))
        assert tuple(result.columns) == template.columns, template.name
    with pytest.raises(ValueError, match="@ROUTE@"):
        q.fill(q.ROUTE_SERIES, {"@DB@": "x"})
    with pytest.raises(Exception, match="invalid database"):
        q.builtin_params("x; DROP TABLE y")
    assert "'it\\'s'" in q.builtin_params("db", route="it's")["@ROUTE@"]


def test_overview_sums_equal_route_day(query: Query, database: str) -> None:
    """OVERVIEW recomputes route_window's formulas from sums: over whole days it equals route_day."""
    params = q.builtin_params(database, t0_ms=T0, t1_ms=T0 + 2 * DAY)
    mine = {(r[0], r[1]): r for r in query(q.fill(q.OVERVIEW, params)).rows}
    day = query(f"SELECT route, model, sum(requests), sum(passed) / sum(judged), sum(cost_usd) / sum(priced_requests) "
                f"FROM {database}.route_day GROUP BY route, model")  # fmt: skip
    cols = list(q.OVERVIEW.columns)
    for route, model, requests, rate, cpr in day.rows:
        row = mine[(route, model)]
        assert row[cols.index("requests")] == requests
        if rate is None:
            assert row[cols.index("pass_rate")] is None
        else:
            assert row[cols.index("pass_rate")] == pytest.approx(rate)
        if cpr is not None:
            assert row[cols.index("cost_per_request")] == pytest.approx(cpr)


# -- windows ----------------------------------------------------------------------------------------------------
def test_windows_end_after_the_newest_minute_and_start_on_a_bucket() -> None:
    w = views.window_for("day", END)
    assert (w.t1_ms, w.t0_ms, w.bucket_s) == (END + MIN, END + MIN - DAY, 900)
    w = views.window_for("week", END + 17 * MIN)
    assert w.t0_ms % HOUR == 0 and w.t1_ms == END + 18 * MIN and w.t1_ms - w.t0_ms >= 7 * DAY
    assert views.window_for("hour", None).newest_ms is None
    c = views.custom_window(T0, T0 + 2 * DAY)
    assert c.bucket_s == 900 and (c.t1_ms - c.t0_ms) / c.bucket_ms <= 200
    assert views.custom_window(T0, T0 + 30 * DAY).bucket_s == 21_600
    assert views.ms_of("2025-04-01T00:00:00") == T0 == views.ms_of("2025-04-01T00:00:00+00:00") == views.ms_of(dt(T0))
    assert views.ms_of(None) is None and views.ms_of(T0) == T0


def test_load_window_is_the_newest_data(query: Query, database: str) -> None:
    w = views.load_window(query, database, "day")
    assert w.newest_ms == END and w.t1_ms == END + MIN


# -- loaders against independent numbers ----------------------------------------------------------------------
def test_overview_numbers(query: Query, database: str) -> None:
    view = views.load_overview(query, database, "day")
    rows = {(r.route, r.model): r for r in view.rows}
    assert set(rows) == {("support.answer", "gpt-4o-mini"), ("support.answer", "gpt-4o"), (EVIL, "private-model")}
    new = rows[("support.answer", "gpt-4o")]
    assert new.requests == 12 * 60 and new.cost_per_request == pytest.approx(0.005)
    assert new.pass_rate == 1.0 and new.cost_per_correct == pytest.approx(0.005)
    old = rows[("support.answer", "gpt-4o-mini")]
    # day 2 (the window) until 12:00: 720 requests, 180 judged, 18 of them fail
    assert (old.requests, old.judged, old.passed) == (720, 180, 162)
    assert old.cost_per_correct == pytest.approx(0.0005 / 0.9)
    assert rows[(EVIL, "private-model")].cost_per_request is None  # unpriced: never 0
    assert [a.alertname for a in view.firing] == ["CostSpike"]
    spark = view.sparks[("support.answer", "gpt-4o")]
    assert len(spark.pass_rate) == 12 and all(v == 1.0 for _, v in spark.pass_rate)
    assert view.routes()[0] == "support.answer"


def test_route_series_markers_and_gates(query: Query, database: str) -> None:
    view = views.load_route(query, database, "support.answer", "day")
    w = view.window
    assert len(view.series) == 96 and view.series[0]["t_ms"] == w.t0_ms
    rates = dict(view.line("pass_rate"))
    first_new = T0 + DAY + 12 * HOUR
    assert rates[first_new] == 1.0
    band = dict((t, (lo, hi)) for t, lo, hi in view.band())
    row = next(r for r in view.series if r["t_ms"] == w.t0_ms)
    assert band[w.t0_ms] == pytest.approx(wilson(row["passed"], row["judged"]))
    assert set(view.mix) == {"gpt-4o-mini", "gpt-4o"} and sum(v or 0 for _, v in view.mix["gpt-4o"]) == 720
    assert set(view.errors) == {"rate_limited", "timeout"}
    assert sum(v or 0 for pts in view.errors.values() for _, v in pts) == sum(1 for i in range(1440, 2880) if i % 50 == 0)
    assert view.line("ttft_p50_ms")[0][1] is None and dict(view.line("ttft_p50_ms"))[first_new] == pytest.approx(100, rel=0.02)
    kinds = [(m.t_ms, m.kind) for m in view.markers]
    assert kinds == [
        (T0 + DAY + 10 * HOUR, "gate"), (T0 + DAY + 11 * HOUR, "gate"), (first_new, "gate"), (first_new, "tier-up"),
        (first_new + 5 * MIN, "firing"), (first_new + HOUR + 5 * MIN, "resolved"), (T0 + DAY + 20 * HOUR, "firing"),
    ]  # fmt: skip
    tier_up = next(m for m in view.markers if m.kind == "tier-up")
    assert tier_up.label == "tier-up: gpt-4o-mini -> gpt-4o (x10.00 per request)"
    assert [g.id for g in view.gates] == ["gate-1"] and view.gates[0].state == "applied"
    total = view.total
    assert total is not None and total.requests == 1440
    # the hour range: one point a minute
    assert views.load_route(query, database, "support.answer", "hour").window.bucket_s == 60


def test_alerts_episodes(query: Query, database: str) -> None:
    view = views.load_alerts(query, database, "week")
    assert [(a.alertname, a.status, a.ended_ms is None) for a in view.episodes] == [
        ("CostSpike", "firing", True), ("TierSwitch", "resolved", False)]
    assert view.episodes[1].first_summary == "support.answer now served by gpt-4o"
    assert view.episodes[1].last_summary == "resolved: <b>no longer</b>"


def test_markers_are_pure_and_clipped_to_the_window() -> None:
    w = views.Window("day", T0, T0 + DAY, 900, 3600, T0 + DAY - MIN)
    change = TierChange("big", T0 + HOUR, "small", 0.001, 0.004, 1.0)
    down = TierChange("tiny", T0 + 2 * HOUR, "big", 0.004, 0.001, 1.0)
    unknown = TierChange("alias", T0 + 3 * HOUR, "big", 0.004, None, 0.1)
    outside = TierChange("later", T0 + 2 * DAY, "big", 0.004, 0.01, 1.0)
    marks = views.markers_for(w, [change, down, unknown, outside], [], [])
    assert [(m.kind, m.label) for m in marks] == [
        ("tier-up", "tier-up: small -> big (x4.00 per request)"), ("model", "model change: big -> tiny (x0.25 per request)"),
        ("model", "model change: big -> alias (cost unknown)")]  # fmt: skip


# -- charts ----------------------------------------------------------------------------------------------------
def _vertices(d: str) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = []
    for cmd, x, y in re.findall(r"([ML])(-?[\d.]+),(-?[\d.]+)", d):
        if cmd == "M":
            runs.append([])
        runs[-1].append((float(x), float(y)))
    return runs


def _attr(svg: str, name: str) -> float:
    match = re.search(rf'{name}="([^"]+)"', svg)
    assert match, name
    return float(match.group(1))


def test_time_chart_maps_points_through_its_scale_and_breaks_on_gaps() -> None:
    points = [(T0, 0.5), (T0 + HOUR, 0.75), (T0 + 2 * HOUR, None), (T0 + 3 * HOUR, 1.0), (T0 + 4 * HOUR, None)]
    svg = charts.time_chart("c", "Rate", t0=T0, t1=T0 + 4 * HOUR, lines=[charts.Line("rate", points, "pass")], fmt="pct",
                            zero=False, ceiling=1.0, marks=[charts.Mark(T0 + 2 * HOUR, "firing", "boom <b>")])  # fmt: skip
    d = re.search(r'<path class="line pass" data-series="rate" data-n="3" data-values="[^"]*" d="([^"]*)"', svg)
    assert d is not None
    runs = _vertices(d.group(1))
    assert [len(r) for r in runs] == [2, 1]  # a gap, then a lonely point (drawn as a dot too)
    assert svg.count('<circle class="dot pass"') == 1
    px0, px1, py0, py1 = (_attr(svg, f"data-{k}") for k in ("px0", "px1", "py0", "py1"))
    v0, v1 = _attr(svg, "data-v0"), _attr(svg, "data-v1")
    assert v1 == 1.0 and v0 < 0.5
    for (x, y), (t, v) in zip([p for r in runs for p in r], [(t, v) for t, v in points if v is not None], strict=True):
        assert x == pytest.approx(px0 + (t - T0) / (4 * HOUR) * (px1 - px0), abs=0.05)
        assert y == pytest.approx(py1 - (v - v0) / (v1 - v0) * (py1 - py0), abs=0.05)
    mark = re.search(r'<g class="mark mark-firing" data-t="(\d+)" data-kind="firing"><title>([^<]*)</title><line x1="([\d.]+)"', svg)
    assert mark is not None and int(mark.group(1)) == T0 + 2 * HOUR and "boom &lt;b&gt;" in mark.group(2)
    assert float(mark.group(3)) == pytest.approx((px0 + px1) / 2, abs=0.05)


def test_stacked_bars_and_empty_charts() -> None:
    stacks = [charts.Stack("a", [(T0, 2.0), (T0 + HOUR, 1.0)], "c0"), charts.Stack("b", [(T0, 3.0), (T0 + HOUR, None)], "c1")]
    svg = charts.time_chart("s", "Mix", t0=T0, t1=T0 + 2 * HOUR, stacks=stacks, bucket_ms=HOUR)
    assert svg.count("<rect ") == 3 and 'data-v="3"' in svg and _attr(svg, "data-v1") >= 5
    empty = charts.time_chart("e", "Nothing", t0=T0, t1=T0 + HOUR, empty="nothing here")
    assert "nothing here" in empty and 'data-n="' not in empty
    assert charts.nice_ticks(0, 0.93) == (0.0, 1.0, 0.25)
    assert charts.nice_ticks(0, 3, integer=True)[2] == 1.0
    assert [label for _, label in charts.time_ticks(T0, T0 + DAY)][:2] == ["Apr 01", "06:00"]
    assert charts.fmt_value(0.000123, "usd") == "$0.000123" and charts.fmt_value(None, "pct") == "-"
    assert charts.fmt_value(1234.0, "ms") == "1.23 s" and charts.fmt_value(0.912, "pct") == "91.2%"


# -- pages: escaping, links, no external resources -----------------------------------------------------------------
class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Collector()
    parser.feed(html)
    return parser.tags


def test_pages_escape_everything_and_load_nothing_from_elsewhere(query: Query, database: str) -> None:
    chrome = pages.served("")
    overview = pages.overview_page(views.load_overview(query, database, "day"), chrome=chrome)
    route = pages.route_page(views.load_route(query, database, EVIL, "day"), chrome=pages.served("../"))
    alerts = pages.alerts_page(views.load_alerts(query, database, "week"), chrome=pages.served("../"))
    route_sa = pages.route_page(views.load_route(query, database, "support.answer", "day"), chrome=pages.served("../"))
    for html in (overview, route, alerts, route_sa):
        assert "<script>alert" not in html and "<b>no longer" not in html
        tags = _tags(html)
        assert [t for t, _ in tags if t == "script"] == ["script"]  # only our own file
        for tag, attrs in tags:
            for key in ("href", "src", "action"):
                value = attrs.get(key) or ""
                assert not re.match(r"^[a-z]+:", value), (tag, key, value)  # relative links only
            assert not any(k.startswith("on") for k in attrs), (tag, attrs)  # no inline handlers (CSP)
            assert "style" not in attrs, (tag, attrs)
    assert "evil&lt;script&gt;" in overview
    link = next(a["href"] for t, a in _tags(overview) if t == "a" and "evil" in (a.get("href") or ""))
    assert link == "route/?name=evil%3Cscript%3Ealert%281%29%3C%2Fscript%3E%22%27%26route&range=day"
    assert 'id="a-fp-cost-' in alerts and "&quot;ratio&quot;: 10" in alerts


def test_inline_pages_embed_their_assets() -> None:
    html = pages.message_page("t", "x", chrome=pages.inline())
    assert "<style>" in html and "<script>" in html and "static/" not in html and 'data-refresh="0"' in html
    assert pages.asset("dashboard.js").startswith(b"/*") and len(pages.asset_version()) == 10


# -- the token --------------------------------------------------------------------------------------------------
def test_token_decision() -> None:
    assert auth.decide(None, params=[]).allowed
    assert not auth.decide("s3cret", params=[]).allowed
    assert auth.decide("s3cret", params=[], authorization="Bearer s3cret").allowed
    assert not auth.decide("s3cret", params=[], authorization="Bearer s3cre").allowed
    assert auth.decide("s3cret", params=[], cookie=auth.session_value("s3cret")).allowed
    assert not auth.decide("s3cret", params=[], cookie="s3cret").allowed  # the cookie is never the token itself
    assert not auth.decide("other", params=[], cookie=auth.session_value("s3cret")).allowed  # a new token: new cookie
    d = auth.decide("s3cret", params=[("name", "a b"), ("token", "s3cret"), ("range", "week")], secure=True)
    assert not d.allowed and d.redirect == "?name=a+b&range=week"
    assert d.set_cookie is not None and d.set_cookie.startswith(f"{auth.COOKIE}={auth.session_value('s3cret')};")
    assert all(a in d.set_cookie for a in ("HttpOnly", "SameSite=Strict", "Path=/", "Secure", "Max-Age="))
    assert auth.decide("s3cret", params=[("token", "s3cret")]).redirect == "./"
    wrong = auth.decide("s3cret", params=[("token", "nope")])
    assert not wrong.allowed and wrong.redirect is None and wrong.set_cookie is None


# -- HTTP -------------------------------------------------------------------------------------------------------
def test_handler_answers_every_page_status_and_header(query: Query, database: str) -> None:
    executor = ThreadPoolExecutor(1)
    board = Dashboard(query=query, database=database, token="tok", executor=executor)

    async def run() -> dict[str, Any]:
        bearer = "Bearer tok"
        out = {
            "anon": await board.respond(Request("/")),
            "root": await board.respond(Request("/", [("range", "week")], bearer)),
            "route": await board.respond(Request("/route/", [("name", "support.answer")], bearer)),
            "noname": await board.respond(Request("/route/", [], bearer)),
            "alerts": await board.respond(Request("/alerts/", [("range", "bogus")], bearer)),
            "css": await board.respond(Request("/static/dashboard.css", [("v", pages.asset_version())])),
            "nope": await board.respond(Request("/static/../../etc/passwd")),
            "other": await board.respond(Request("/telemetry/anything", [], bearer)),
            "login": await board.respond(Request("/alerts/", [("token", "tok")])),
        }
        broken = Dashboard(query=lambda sql: (_ for _ in ()).throw(RuntimeError("engine away\nmore")), database=database,
                           token=None, executor=executor)  # fmt: skip
        out["broken"] = await broken.respond(Request("/"))
        starting = Dashboard(query=query, database=database, token=None, executor=executor, ready=lambda: False)
        out["starting"] = await starting.respond(Request("/"))
        return out

    r = asyncio.run(run())
    executor.shutdown()
    assert r["anon"].status == 401 and b'name="token"' in r["anon"].body
    assert r["root"].status == 200 and b'id="overview"' in r["root"].body
    assert r["route"].status == 200 and b'id="pass_rate"' in r["route"].body
    assert r["noname"].status == 400 and r["alerts"].status == 200
    assert r["css"].status == 200 and "immutable" in r["css"].headers["Cache-Control"]
    assert r["nope"].status == 404 and r["other"].status == 404
    assert r["login"].status == 303 and r["login"].headers["Location"] == "./" and "HttpOnly" in r["login"].headers["Set-Cookie"]
    assert r["broken"].status == 500 and b"engine away" in r["broken"].body and b"more" not in r["broken"].body
    assert r["starting"].status == 503 and r["starting"].headers["Retry-After"] == "5"
    for reply in r.values():
        assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_aiohttp_app_serves_the_handler(query: Query, database: str) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    async def run() -> tuple[int, str, str, int]:
        board = Dashboard(query=query, database=database, token=None, executor=ThreadPoolExecutor(1))
        async with TestClient(TestServer(aiohttp_app(board))) as client:
            page = await client.get("/route/?name=support.answer&range=hour")
            js = await client.get("/static/dashboard.js")
            post = await client.post("/")
            return page.status, page.headers["Content-Type"], js.headers["Content-Type"], post.status

    status, html_type, js_type, post = asyncio.run(run())
    assert status == 200 and html_type == "text/html; charset=utf-8" and js_type.startswith("text/javascript")
    assert post == 405  # read-only: GET only


# -- HTML reports -----------------------------------------------------------------------------------------------
def test_every_report_renders_as_a_self_contained_page(query: Query, database: str) -> None:
    from telemetry.pricing import PriceBook

    results = [
        model_history(query, database, route="support.answer"),
        cost_projection(query, database, route="support.answer", model="gpt-4o", book=PriceBook()),
        diagnostics(query, database, route="support.answer", model="all"),
        tier_down(query, database),
    ]
    for result in results:
        html = report_html(result, query, database)
        name = result.to_report().report
        tags = _tags(html)
        assert not any(t in ("link", "img") or (t == "script" and a.get("src")) for t, a in tags), name
        assert "http://" not in html and "https://" not in html, name
        sections = [a.get("data-section") for t, a in tags if t == "table" and a.get("data-section")]
        assert sections == [s.name for s in result.to_report().sections], name
        if name == "tier-down":
            assert 'id="overview"' in html and "/route/" not in html
        else:
            assert 'id="pass_rate"' in html and 'data-kind="tier-up"' in html, name
    assert 'id="decision"' in decision_chart(results[1]) and 'class="target"' in decision_chart(results[2])


def test_report_html_option_writes_the_file(query: Query, database: str, engine: Client, tmp_path: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import argparse

    from telemetry.reports.cli import register_report
    from telemetry.settings import load_settings
    from telemetry.storage import clickhouse

    path = next(p for p, client in clickhouse._embedded_clients.items() if client is engine)
    with socket.socket() as s:  # a port nothing listens on: the report opens the data path itself
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = load_settings(clickhouse_dsn=f"chdb://{path}", clickhouse_database=database, web_port=port)
    parser = argparse.ArgumentParser(prog="telemetry")
    register_report(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "sub" / "history.html"
    args = parser.parse_args(["report", "model-history", "--route", "support.answer", "--html", str(out)])
    assert args.func(args, settings) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("model-history: route support.answer") and f"wrote {out}" in captured.err
    assert out.read_text().startswith("<!doctype html>") and not list(out.parent.glob(".history.html.*"))


# -- docs ---------------------------------------------------------------------------------------------------------
def test_docs_name_every_query_and_page_and_the_readme_pictures_exist() -> None:
    from pathlib import Path

    from telemetry.dashboard.web import PAGES

    repo = Path(__file__).resolve().parents[2]
    text = (repo / "docs" / "dashboard.md").read_text()
    missing = [t.name.upper() for t in q.TEMPLATES if f"`{t.name.upper()}`" not in text]
    assert not missing, f"docs/dashboard.md does not describe {missing}"
    assert all(f"`{path}" in text for path in PAGES)
    readme = (repo / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\((docs/img/[^)]+)\)", readme)
    assert {"docs/img/overview.png", "docs/img/route.png"} <= set(pictures)
    for picture in pictures:
        assert (repo / picture).read_bytes().startswith(b"\x89PNG"), picture
