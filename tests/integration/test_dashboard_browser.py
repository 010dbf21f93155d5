"""The dashboard in a real browser: a real worker on a populated store, headless Chromium through
every page.

One module-wide stack: a local ClickHouse server (so this process can add tier-up gate records
next to the worker), the real broker, the real worker with a token, and six simulated hours with
a silent tier-up and a 404 storm sent through Kafka. Chromium (Debian's ``chromium``) is driven
over the DevTools protocol (``tools/cdp.py``). Each page is checked from the DOM against numbers
computed here from the base tables (``requests``, ``verdicts``, ``alerts``), not from the
dashboard's own queries: the points of each series, the bars, the markers at their times; and no
console error, failed resource or CSP violation. Screenshots are written to
``$TELEMETRY_TEST_ARTIFACTS`` (default ``.telemetry/test-artifacts``) under ``dashboard/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.httputil import get_pool_manager

from telemetry.localclickhouse import start_server, stop_server
from telemetry.settings import Settings, load_settings
from telemetry.simulate import simulate
from telemetry.simulate.scenario import parse_scenario
from tests.integration.harness import Worker, free_port
from tools.cdp import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TELEMETRY_TEST_ARTIFACTS", REPO / ".telemetry" / "test-artifacts")) / "dashboard"
TOKEN = "dashboard-test-token-" + uuid.uuid4().hex[:8]
ROUTE = "docs.summarize"
DB = "llm_telemetry"
START_MS = int(datetime(2025, 6, 3, tzinfo=UTC).timestamp() * 1000)
MINUTE, HOUR = 60_000, 3_600_000

SCENARIO = """
[scenario]
name = "dashboard"
seed = 1313
start = "2025-06-03T00:00:00Z"
duration = "24h"

[route_defaults]
shape = "diurnal"
min_fraction = 0.3
peak_hour = 15
judged_fraction = 0.15
evaluator = "helpfulness@v3"
error_rate = 0.003
retry_rate = 0.5
max_attempts = 3
truncation_rate = 0.005
judge_delay = { median = "30s", sigma = 0.8, max = "30m" }

[[route]]
name = "support.answer"
team = "customer"
provider = "openai"
model = "gpt-4o-mini"
peak_rps = 0.25
latency_ms = { median = 1400, sigma = 0.35 }
ttft_ms = { median = 380, sigma = 0.4 }
input_tokens = { median = 1400, sigma = 0.5 }
output_tokens = { median = 260, sigma = 0.5 }
pass_rate = 0.91

[[route]]
name = "sales.email"
team = "customer"
provider = "openai"
model = "gpt-4o-mini"
peak_rps = 0.2
latency_ms = { median = 1500, sigma = 0.3 }
ttft_ms = { median = 400, sigma = 0.3 }
input_tokens = { median = 900, sigma = 0.5 }
output_tokens = { median = 300, sigma = 0.4 }
pass_rate = 0.9

[[route]]
name = "docs.summarize"
team = "search"
provider = "anthropic"
model = "claude-3-5-haiku-latest"
peak_rps = 0.2
latency_ms = { median = 2000, sigma = 0.3 }
ttft_ms = { median = 500, sigma = 0.3 }
input_tokens = { median = 3000, sigma = 0.4 }
output_tokens = { median = 400, sigma = 0.4 }
pass_rate = 0.88

[[route]]
name = "search.query_rewrite"
team = "search"
provider = "google"
model = "gemini-2.0-flash-lite"
peak_rps = 0.3
latency_ms = { median = 250, sigma = 0.3 }
ttft_ms = { median = 120, sigma = 0.3 }
input_tokens = { median = 120, sigma = 0.4 }
output_tokens = { median = 30, sigma = 0.4 }
pass_rate = 0.95

[[incident]]
route = "sales.email"
kind = "alias_404_storm"
at = "9h"
duration = "45m"
alias = "gpt-5-mini-v2"
error_fraction = 0.9

[[incident]]
route = "docs.summarize"
kind = "silent_tier_up"
at = "12h"
duration = "4h"
model = "claude-sonnet-4-0"
pass_rate_delta = 0.01
"""

# Tier-up gates of docs.summarize, written as the gate commands would (tier_gates, one row per version).
GATES = [
    # id, version, state, opened (h after start), decided, applied
    ("gate-0001", 1, "open", 10.0, None, None),
    ("gate-0001", 2, "approved", 10.0, 11.0, None),
    ("gate-0001", 3, "applied", 10.0, 11.0, 12.0),
    ("gate-0002", 1, "open", 17.0, None, None),
    ("gate-0002", 2, "rejected", 17.0, 17.5, None),
]


@dataclass
class Stack:
    settings: Settings
    worker: Worker
    url: str
    browser: Browser
    page: Page

    def sql(self, query: str) -> list[dict[str, Any]]:
        return self.worker.sql(query)

    def scalar(self, query: str) -> Any:
        return self.worker.scalar(query)


def _dt(hours: float | None) -> datetime | None:
    return None if hours is None else datetime.fromtimestamp((START_MS + hours * HOUR) / 1000, UTC)


def _insert_gates(dsn: str) -> None:
    pool = get_pool_manager()
    client = clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False, pool_mgr=pool)
    try:
        rows = [[gid, version, ROUTE, "search", "up", "claude-3-5-haiku-latest", "claude-sonnet-4-0", "anthropic", state,
                 "summaries miss key facts; a stronger model should keep them", "alice",
                 "bob" if decided is not None else "", _dt(opened), _dt(decided), _dt(applied), _dt(opened)]
                for gid, version, state, opened, decided, applied in GATES]  # fmt: skip
        client.insert("tier_gates", rows, database=DB, column_names=[
            "id", "version", "route", "team", "direction", "current_model", "proposed_model", "proposed_provider", "state",
            "hypothesis", "author", "reviewer", "opened_at", "decided_at", "applied_at", "updated_at"])  # fmt: skip
    finally:
        client.close()
        pool.clear()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Stack]:
    unique = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp("dashboard")
    server_settings = load_settings(data_dir=root / "server")
    status = start_server(server_settings, http_port=free_port(), tcp_port=free_port(), log=lambda _: None)
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{unique}.", otlp_spans_topic=f"t{unique}.otlp_spans",
        otlp_logs_topic=f"t{unique}.otlp_logs", consumer_group=f"g{unique}", data_dir=root / "data",
        web_port=free_port(), batch_seconds=0.5, clickhouse_dsn=status.dsn, web_token=TOKEN, env="test",
    )  # fmt: skip
    worker = Worker(settings, root / "logs")
    try:
        worker.start()
        _insert_gates(status.dsn)  # the worker has migrated the database
        result = asyncio.run(simulate(parse_scenario(SCENARIO), settings, speed=6000, progress=False))
        worker.wait_for_counter("requests_messages", result.summary.published["requests"], timeout=120)
        worker.wait_for_counter("verdicts_messages", result.summary.published["verdicts"], timeout=120)
        worker.wait_until(f"SELECT countIf(status = 'resolved' AND alertname = 'TierSwitch') > 0 FROM {DB}.alerts",
                          True, timeout=90)  # fmt: skip
        with Browser() as browser:
            yield Stack(settings, worker, f"http://127.0.0.1:{settings.web_port}", browser, browser.page())
    finally:
        worker.stop()
        stop_server(server_settings)


# -- DOM readers ----------------------------------------------------------------------------------------------
CHARTS_JS = """(() => Array.from(document.querySelectorAll('figure.chart[data-fmt]')).map(f => ({
  id: f.id, fmt: f.dataset.fmt, t0: +f.dataset.t0, t1: +f.dataset.t1, v0: +f.dataset.v0, v1: +f.dataset.v1,
  px0: +f.dataset.px0, px1: +f.dataset.px1, py0: +f.dataset.py0, py1: +f.dataset.py1, bucket: +f.dataset.bucket,
  width: f.querySelector('svg').getBoundingClientRect().width,
  lines: Array.from(f.querySelectorAll('path.line')).map(p => ({name: p.dataset.series, n: +p.dataset.n,
    d: p.getAttribute('d'), length: p.getTotalLength()})),
  bands: Array.from(f.querySelectorAll('path.band')).map(p => ({name: p.dataset.series, n: +p.dataset.n})),
  stacks: Array.from(f.querySelectorAll('g.stack')).map(g => ({name: g.dataset.series,
    rects: Array.from(g.querySelectorAll('rect')).map(r => [+r.dataset.t, +r.dataset.v, +r.getAttribute('height')])})),
  marks: Array.from(f.querySelectorAll('g.mark')).map(g => ({t: +g.dataset.t, kind: g.dataset.kind,
    x: +g.querySelector('line').getAttribute('x1'), title: g.querySelector('title').textContent})),
})))()"""


def vertices(d: str) -> list[list[tuple[float, float]]]:
    """The runs of an SVG path ``d`` made of M and L commands."""
    runs: list[list[tuple[float, float]]] = []
    for cmd, x, y in re.findall(r"([ML])(-?[\d.]+),(-?[\d.]+)", d):
        if cmd == "M":
            runs.append([])
        runs[-1].append((float(x), float(y)))
    return runs


def to_data(chart: dict[str, Any], x: float, y: float) -> tuple[float, float]:
    t = chart["t0"] + (x - chart["px0"]) / (chart["px1"] - chart["px0"]) * (chart["t1"] - chart["t0"])
    v = chart["v0"] + (chart["py1"] - y) / (chart["py1"] - chart["py0"]) * (chart["v1"] - chart["v0"])
    return t, v


def x_of(chart: dict[str, Any], t: float) -> float:
    return chart["px0"] + (t - chart["t0"]) / (chart["t1"] - chart["t0"]) * (chart["px1"] - chart["px0"])


def px_per_value(chart: dict[str, Any]) -> float:
    return (chart["py1"] - chart["py0"]) / (chart["v1"] - chart["v0"])


def open_page(stack: Stack, path: str, shot: str | None = None) -> Page:
    page = stack.page
    page.errors.clear()
    page.goto(stack.url + path)
    ready = page.evaluate("document.readyState")
    assert ready == "complete"
    if shot:
        page.screenshot(ARTIFACTS / f"{shot}.png")
    assert page.errors == [], page.errors
    return page


def window(stack: Stack, span_ms: int, bucket_s: int) -> tuple[int, int]:
    """The window the dashboard must show, computed from ``requests``: it ends after the newest minute."""
    newest = int(stack.scalar(f"SELECT toUnixTimestamp(toStartOfMinute(max(ts))) * 1000 FROM {DB}.requests"))
    t1 = newest + MINUTE
    return ((t1 - span_ms) // (bucket_s * 1000)) * bucket_s * 1000, t1


def between(column: str, t0: int, t1: int) -> str:
    return (f"{column} >= fromUnixTimestamp64Milli(toInt64({t0}), 'UTC') "
            f"AND {column} < fromUnixTimestamp64Milli(toInt64({t1}), 'UTC')")  # fmt: skip


# -- tests ----------------------------------------------------------------------------------------------------
def test_a_token_in_the_address_becomes_a_strict_http_only_cookie(stack: Stack) -> None:
    def status(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        opener = urllib.request.build_opener(NoRedirect())
        try:
            with opener.open(urllib.request.Request(stack.url + path, headers=headers or {}), timeout=30) as r:
                return r.status, dict(r.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers)

    assert status("/")[0] == 401
    assert status("/route/?name=x&token=wrong")[0] == 401
    assert status("/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert status("/static/dashboard.css")[0] == 200  # no data in it: no token needed
    code, headers = status(f"/route/?name={ROUTE}&token={TOKEN}&range=day")
    assert code == 303 and headers["Location"] == f"?name={ROUTE}&range=day"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert status("/", {"Cookie": cookie.split(";")[0]})[0] == 200
    code, headers = status("/", {"Authorization": f"Bearer {TOKEN}"})
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["Referrer-Policy"] == "no-referrer"

    # The browser: one visit with the token, then plain addresses.
    page = stack.page
    page.goto(f"{stack.url}/?token={TOKEN}")
    assert page.evaluate("location.search") == ""
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read it
    assert page.evaluate("document.querySelector('#overview') !== null")
    assert page.errors == [], page.errors


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_overview_shows_every_route_and_model_with_its_numbers(stack: Stack) -> None:
    page = open_page(stack, "/", shot="overview")
    t0, t1 = window(stack, 86_400_000, 900)
    expected = {(r["route"], r["sm"]): r for r in stack.sql(
        f"SELECT route, served_model AS sm, count() AS n FROM {DB}.requests WHERE {between('ts', t0, t1)} GROUP BY route, sm")}
    quality = {(r["route"], r["sm"]): (r["p"], r["n"]) for r in stack.sql(
        f"SELECT route, served_model AS sm, countIf(passed = 1) AS p, count() AS n FROM {DB}.verdicts "
        f"WHERE kind = 'online' AND {between('request_ts', t0, t1)} GROUP BY route, sm")}  # fmt: skip
    rows = page.evaluate("""Array.from(document.querySelectorAll('#overview tbody tr')).map(tr => ({
        route: tr.dataset.route, model: tr.dataset.model,
        requests: +tr.querySelector('[data-col=requests]').dataset.v,
        pass: tr.querySelector('[data-col=pass_rate]').dataset.v,
        spark: Array.from(tr.querySelectorAll('svg.sparkline path')).map(p => [p.dataset.series, +p.dataset.n])}))""")
    assert {(r["route"], r["model"]) for r in rows} == set(expected)
    for r in rows:
        key = (r["route"], r["model"])
        assert r["requests"] == expected[key]["n"], key
        if key in quality:
            p, n = quality[key]
            assert float(r["pass"]) == pytest.approx(p / n, abs=1e-6), key
        assert [name for name, _ in r["spark"]] == ["cost per correct", "pass rate"]
    # sparkline: one point per hour with verdicts, for the busiest model of each route
    hours = stack.scalar(f"SELECT uniqExact(toStartOfHour(request_ts)) FROM {DB}.verdicts WHERE route = 'support.answer' "
                         f"AND kind = 'online' AND {between('request_ts', t0, t1)}")  # fmt: skip
    spark = next(r["spark"] for r in rows if r["route"] == "support.answer")
    assert dict(spark)["pass rate"] == hours
    assert page.evaluate("document.querySelectorAll('#overview th.route a').length") == 4


def test_route_page_draws_every_series_and_marker_where_the_data_says(stack: Stack) -> None:
    page = open_page(stack, f"/route/?name={ROUTE}&range=day", shot="route")
    t0, t1 = window(stack, 86_400_000, 900)
    charts = {c["id"]: c for c in page.evaluate(CHARTS_JS)}
    assert set(charts) == {"pass_rate", "cost_per_correct", "cost_per_request", "latency", "ttft", "errors", "model_mix"}
    for c in charts.values():
        assert (c["t0"], c["t1"], c["bucket"]) == (t0, t1, 900_000), c["id"]
        assert c["width"] > 300, f"{c['id']} is not laid out"

    bucket = "toUnixTimestamp(toStartOfInterval({col}, INTERVAL 900 SECOND)) * 1000"
    # pass rate: one vertex per bucket with verdicts, at passed / judged of the verdicts table
    rates = {int(r["t"]): r["p"] / r["n"] for r in stack.sql(
        f"SELECT {bucket.format(col='request_ts')} AS t, countIf(passed = 1) AS p, count() AS n FROM {DB}.verdicts "
        f"WHERE route = '{ROUTE}' AND kind = 'online' AND {between('request_ts', t0, t1)} GROUP BY t")}  # fmt: skip
    _assert_line(charts["pass_rate"], "pass rate", rates)
    assert charts["pass_rate"]["bands"] == [{"name": "95% interval", "n": len(rates)}]
    # cost per request: cost of the priced requests / their number
    cpr = {int(r["t"]): r["c"] / r["n"] for r in stack.sql(
        f"SELECT {bucket.format(col='ts')} AS t, sum(cost_usd) AS c, countIf(cost_usd IS NOT NULL) AS n FROM {DB}.requests "
        f"WHERE route = '{ROUTE}' AND {between('ts', t0, t1)} GROUP BY t HAVING n > 0")}  # fmt: skip
    _assert_line(charts["cost_per_request"], "$ / request", cpr)
    cpc = {t: cpr[t] / rates[t] for t in rates if t in cpr and rates[t] > 0}
    _assert_line(charts["cost_per_correct"], "$ / correct", cpc, rel=1e-6)
    # latency and TTFT quantiles: one vertex per bucket with requests, p50 <= p95 <= p99
    buckets = stack.scalar(f"SELECT uniqExact({bucket.format(col='ts')}) FROM {DB}.requests WHERE route = '{ROUTE}' "
                           f"AND {between('ts', t0, t1)}")  # fmt: skip
    for chart in ("latency", "ttft"):
        lines = {line["name"]: vertices(line["d"]) for line in charts[chart]["lines"]}
        assert sorted(lines) == ["p50", "p95", "p99"]
        flat = {name: [v for run in runs for v in run] for name, runs in lines.items()}
        assert all(len(v) == buckets for v in flat.values()), (chart, {k: len(v) for k, v in flat.items()})
        for a, b, c in zip(flat["p50"], flat["p95"], flat["p99"], strict=True):
            assert a[1] >= b[1] - 0.11 >= c[1] - 0.22  # SVG y grows downwards
    # model mix and errors: one bar per (bucket, model or error type), exactly the counts
    mix = {(r["m"], int(r["t"])): r["n"] for r in stack.sql(
        f"SELECT served_model AS m, {bucket.format(col='ts')} AS t, count() AS n FROM {DB}.requests "
        f"WHERE route = '{ROUTE}' AND {between('ts', t0, t1)} GROUP BY m, t")}  # fmt: skip
    drawn = {(s["name"], int(t)): v for s in charts["model_mix"]["stacks"] for t, v, _ in s["rects"]}
    assert drawn == mix
    assert {s["name"] for s in charts["model_mix"]["stacks"]} == {"claude-3-5-haiku-latest", "claude-sonnet-4-0"}
    errors = {(r["e"], int(r["t"])): r["n"] for r in stack.sql(
        f"SELECT error_type AS e, {bucket.format(col='ts')} AS t, count() AS n FROM {DB}.requests "
        f"WHERE route = '{ROUTE}' AND status = 'error' AND {between('ts', t0, t1)} GROUP BY e, t")}  # fmt: skip
    assert {(s["name"], int(t)): v for s in charts["errors"]["stacks"] for t, v, _ in s["rects"]} == errors

    # markers: the tier-up when Sonnet first served, each alert's firing and resolution, each gate record
    first = stack.scalar(f"SELECT toUnixTimestamp(toStartOfMinute(min(ts))) * 1000 FROM {DB}.requests "
                         f"WHERE route = '{ROUTE}' AND served_model = 'claude-sonnet-4-0'")  # fmt: skip
    expected = Counter({(int(first), "tier-up"): 1})
    episodes = stack.sql(f"SELECT toUnixTimestamp64Milli(starts_at) AS s, toUnixTimestamp64Milli(max(ends_at)) AS e, "
                         f"alertname FROM {DB}.alerts WHERE route = '{ROUTE}' GROUP BY fingerprint, starts_at, alertname")  # fmt: skip
    assert {e["alertname"] for e in episodes} >= {"TierSwitch"}
    for e in episodes:
        expected[(int(e["s"]), "firing")] += 1
        if e["e"] is not None:
            expected[(int(e["e"]), "resolved")] += 1
    final = {gid: (opened, decided, applied) for gid, _, _, opened, decided, applied in GATES}  # the last version wins
    for times in final.values():
        for hours in times:
            if hours is not None:
                expected[(int(START_MS + hours * HOUR), "gate")] += 1
    expected = Counter({k: n for k, n in expected.items() if t0 <= k[0] < t1})
    assert sum(1 for t, kind in expected if kind == "resolved") >= 1
    for c in charts.values():
        assert Counter((m["t"], m["kind"]) for m in c["marks"]) == expected, c["id"]
        for m in c["marks"]:
            assert m["x"] == pytest.approx(x_of(c, m["t"]), abs=0.06), (c["id"], m)
    tier_up = next(m for m in charts["cost_per_request"]["marks"] if m["kind"] == "tier-up")
    assert "claude-3-5-haiku-latest -> claude-sonnet-4-0" in tier_up["title"]
    events = page.evaluate("Array.from(document.querySelectorAll('#events tbody tr')).map(r => [+r.dataset.t, r.dataset.kind])")
    assert Counter(map(tuple, events)) == expected
    gates = page.evaluate("Array.from(document.querySelectorAll('#gates tbody tr')).map(r => r.dataset.gate)")
    assert sorted(gates) == ["gate-0001", "gate-0002"]
    # the readout under the cursor names the bucket and the value
    tip = page.evaluate("""(() => {
        const svg = document.querySelector('#pass_rate svg'), box = svg.getBoundingClientRect();
        svg.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + box.width * 0.6, clientY: box.top + 40, bubbles: true}));
        const tip = document.querySelector('#pass_rate .tip');
        return tip.hidden ? null : tip.textContent;
    })()""")
    assert tip is not None and "UTC" in tip and "pass rate:" in tip and "%" in tip
    assert page.errors == [], page.errors


def _assert_line(chart: dict[str, Any], name: str, expected: dict[int, float], rel: float = 0.0) -> None:
    line = next(line for line in chart["lines"] if line["name"] == name)
    points = [to_data(chart, x, y) for run in vertices(line["d"]) for x, y in run]
    assert line["n"] == len(points) == len(expected), (chart["id"], line["n"], len(points), len(expected))
    assert line["length"] > 0
    tolerance = 0.11 / px_per_value(chart)  # coordinates are rounded to 0.1 px
    for (t, v), want_t in zip(points, sorted(expected), strict=True):
        assert abs(t - want_t) < (chart["t1"] - chart["t0"]) / 5000, (chart["id"], t, want_t)
        assert v == pytest.approx(expected[want_t], abs=tolerance + rel * abs(expected[want_t])), (chart["id"], want_t)


def test_range_picker_changes_the_window_and_the_buckets(stack: Stack) -> None:
    page = open_page(stack, f"/route/?name={ROUTE}&range=day")
    page.evaluate("document.querySelector('header .ranges a[data-range=week]').click()")
    deadline = time.monotonic() + 20
    while "range=week" not in page.evaluate("location.search") or page.evaluate("document.readyState") != "complete":
        assert time.monotonic() < deadline, "the week link did not load"
        time.sleep(0.1)
    time.sleep(0.3)
    t0, t1 = window(stack, 7 * 86_400_000, 3600)
    charts = {c["id"]: c for c in page.evaluate(CHARTS_JS)}
    assert (charts["model_mix"]["t0"], charts["model_mix"]["t1"], charts["model_mix"]["bucket"]) == (t0, t1, 3_600_000)
    hours = stack.scalar(f"SELECT uniqExact(toStartOfHour(ts)) FROM {DB}.requests WHERE route = '{ROUTE}'")
    assert max(len(s["rects"]) for s in charts["model_mix"]["stacks"]) <= hours
    assert sum(len(s["rects"]) for s in charts["model_mix"]["stacks"]) >= hours
    assert page.evaluate("document.querySelector('header .ranges a[aria-current]').dataset.range") == "week"
    page.goto(f"{stack.url}/route/?name={ROUTE}&range=hour")
    assert {c["bucket"] for c in page.evaluate(CHARTS_JS)} == {60_000}
    assert page.errors == [], page.errors


def test_alerts_page_lists_episodes_with_evidence_and_a_timeline(stack: Stack) -> None:
    page = open_page(stack, "/alerts/", shot="alerts")
    _, t1 = window(stack, 86_400_000, 900)
    # Episodes of the simulated day. Once traffic stops, the detectors' clock follows the wall
    # clock: an alert it raises then (months after the data) is listed as firing, outside the window.
    episodes = stack.sql(f"SELECT fingerprint, toUnixTimestamp64Milli(starts_at) AS s, argMax(status, sequence) AS st "
                         f"FROM {DB}.alerts GROUP BY fingerprint, starts_at HAVING s < {t1}")  # fmt: skip
    assert len(episodes) >= 2
    rows = page.evaluate("""Array.from(document.querySelectorAll('#alerts tbody tr')).map(r => ({
        id: r.id, start: +r.dataset.start, state: r.querySelector('.state').textContent,
        evidence: (r.querySelector('details pre') || {}).textContent || ''}))""")
    later = [r for r in rows if r["start"] >= t1]
    assert all(r["state"] == "firing" for r in later), later
    assert sorted((r["id"], r["state"]) for r in rows if r["start"] < t1) == sorted(
        (f"a-{e['fingerprint']}-{e['s']}", "firing" if e["st"] == "firing" else "resolved") for e in episodes)  # fmt: skip
    for r in rows:
        assert isinstance(json.loads(r["evidence"]), dict), r["id"]
    spans = page.evaluate("Array.from(document.querySelectorAll('#alert_timeline rect.span')).map(r => +r.dataset.t0)")
    assert sorted(spans) == sorted(int(e["s"]) for e in episodes)  # all start inside the simulated day
    # the evidence opens
    page.evaluate("document.querySelector('#alerts details').open = true")
    assert page.evaluate("document.querySelector('#alerts details pre').getBoundingClientRect().height") > 0
    assert page.errors == [], page.errors


def test_pages_refresh_themselves_without_errors(stack: Stack) -> None:
    page = open_page(stack, "/")
    assert page.evaluate("+document.body.dataset.refresh") == 30
    before = page.evaluate("document.getElementById('main')")
    refreshed = page.evaluate("""new Promise(resolve => {
        document.addEventListener('dashboard:refreshed', () => resolve(true), {once: true});
        document.dispatchEvent(new Event('visibilitychange'));
        setTimeout(() => resolve(false), 10000);
    })""")
    assert refreshed is True and before is not None
    assert "refreshed" in page.evaluate("document.getElementById('refreshed').textContent")
    assert page.evaluate("document.querySelectorAll('#overview tbody tr').length") >= 5
    assert page.errors == [], page.errors


def test_html_report_is_self_contained_with_the_same_charts(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "model-history.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update({"TELEMETRY_CLICKHOUSE_DSN": str(stack.settings.clickhouse_dsn),
                "TELEMETRY_DATA_DIR": str(stack.settings.data_dir)})  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "telemetry", "report", "model-history", "--route", ROUTE, "--html", str(out)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    stack.page.errors.clear()
    stack.page.goto(out.as_uri())
    stack.page.screenshot(ARTIFACTS / "report-model-history.png")
    charts = {c["id"]: c for c in stack.page.evaluate(CHARTS_JS)}
    assert {"pass_rate", "cost_per_correct", "model_mix"} <= set(charts)
    assert any(m["kind"] == "tier-up" for m in charts["model_mix"]["marks"])
    sections = stack.page.evaluate("Array.from(document.querySelectorAll('table.section')).map(t => t.dataset.section)")
    assert sections == ["daily", "tier_changes", "tier_switch_alerts_90d"]
    assert stack.page.errors == [], stack.page.errors


def test_telemetry_ui_serves_the_same_pages_without_a_worker(stack: Stack) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update({"TELEMETRY_CLICKHOUSE_DSN": str(stack.settings.clickhouse_dsn), "TELEMETRY_WEB_TOKEN": TOKEN,
                "TELEMETRY_DATA_DIR": str(stack.settings.data_dir)})  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "telemetry", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        while not (lines and lines[-1].startswith("dashboard: ")):
            line = proc.stdout.readline()
            assert line, f"telemetry ui exited: {''.join(lines)}"
            lines.append(line)
        assert lines[-1].startswith(f"dashboard: http://127.0.0.1:{port}/"), lines
        page = stack.page
        page.errors.clear()
        page.goto(f"http://127.0.0.1:{port}/alerts/?token={TOKEN}")
        assert page.evaluate("location.search") == ""
        assert page.evaluate("document.querySelectorAll('#alerts tbody tr').length") >= 2
        page.goto(f"http://127.0.0.1:{port}/route/?name={ROUTE}")
        assert len(page.evaluate(CHARTS_JS)) == 7
        assert page.errors == [], page.errors
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
