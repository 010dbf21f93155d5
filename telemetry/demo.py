"""``telemetry demo``: the whole product in one command, on the real pieces.

Starts the local broker if none answers, runs the real worker (embedded ClickHouse under
``<data_dir>/demo``), streams the bundled scenario through Kafka with compressed time, prints
each alert as it fires and resolves, and ends with a summary per route and model and a line
per seeded incident (caught or missed, detection delay in simulated time). The data stays for
``telemetry sql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from telemetry.settings import Settings
from telemetry.simulate.scoring import FiredAlert, Scorecard, score
from telemetry.worker.process import WorkerProcess


def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M")


def _iso_ms(text: str | None) -> int:
    if not text:
        return 0
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def demo_settings(settings: Settings, run_id: str) -> Settings:
    """The demo's own data dir, topics and consumer group, so it never mixes with other data."""
    routes = resources.files("telemetry") / "scenarios" / "demo-routes.toml"
    return settings.model_copy(update={
        "data_dir": settings.data_dir / "demo",
        "clickhouse_dsn": None,
        "topic_prefix": f"demo.{run_id}.",
        "consumer_group": f"llm-telemetry-demo-{run_id}",
        "routes_file": Path(str(routes)),
        "batch_seconds": 0.5,
        "env": "demo",
    })  # fmt: skip


class AlertPrinter:
    """Consumes ``<prefix>alerts`` and prints one line per notification as it arrives."""

    def __init__(self, settings: Settings, out: TextIO) -> None:
        self.settings = settings
        self.out = out
        self.seen: list[dict[str, Any]] = []

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.alerts_topic, bootstrap_servers=self.settings.kafka_bootstrap,
            auto_offset_reset="earliest", enable_auto_commit=False, **self.settings.kafka_client_options(),
        )  # fmt: skip
        await consumer.start()
        try:
            async for message in consumer:
                event = orjson.loads(message.value)
                data = event["data"]
                self.seen.append(data)
                mark = "FIRING  " if data["status"] == "firing" else "resolved"
                when = _hhmm(_iso_ms(data["decidedAt"]))
                summary = data["annotations"].get("summary", "")
                print(f"\r\033[K  [{when} sim] {mark} {data['labels'].get('alertname', '')}: {summary}", file=self.out)
        finally:
            await consumer.stop()


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def summary_table(worker: WorkerProcess, database: str) -> str:
    """Per route and model for the whole run; alerts are counted per route (first firings)."""
    rows = worker.sql(
        "SELECT route, model, sum(requests) AS requests, sum(passed) / nullIf(sum(judged), 0) AS pass_rate, "
        "sum(cost_usd) / nullIf(sum(priced_requests), 0) AS cpr, cpr / pass_rate AS cpc, "
        "quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(latency_state)[2] AS p95 "
        f"FROM {database}.route_minute_state GROUP BY route, model ORDER BY route, model"
    )
    alerts = {
        r["route"]: int(r["n"])
        for r in worker.sql(
            f"SELECT route, countIf(status = 'firing' AND sequence = 1) AS n FROM {database}.alerts GROUP BY route"
        )
    }
    header = (f"{'route':<22} {'model':<26} {'requests':>8} {'pass':>6} {'$/request':>10} {'$/correct':>10} "
              f"{'p95 ms':>8} {'alerts':>6}")  # fmt: skip
    lines = [header, "-" * len(header)]
    shown: set[str] = set()
    for r in rows:
        route_alerts = "" if r["route"] in shown else str(alerts.get(r["route"], 0))
        shown.add(r["route"])
        lines.append(
            f"{r['route']:<22} {r['model'][:26]:<26} {r['requests']:>8} {_fmt(r['pass_rate'], '.1%'):>6} "
            f"{_fmt(r['cpr'], '.6f'):>10} {_fmt(r['cpc'], '.6f'):>10} {_fmt(r['p95'], '.0f'):>8} {route_alerts:>6}"
        )
    return "\n".join(lines)


def fired_alerts(worker: WorkerProcess, database: str) -> list[FiredAlert]:
    rows = worker.sql(
        f"SELECT alertname, route, model, toUnixTimestamp64Milli(starts_at) AS starts FROM {database}.alerts "
        "WHERE status = 'firing' AND sequence = 1 ORDER BY starts"
    )
    return [FiredAlert(r["alertname"], r["route"], r["model"], int(r["starts"])) for r in rows]


def incident_lines(card: Scorecard, clean_routes: list[str]) -> list[str]:
    lines = []
    for r in card.incidents:
        w = r.incident
        if r.caught_by is not None:
            delay = (r.delay_ms or 0) / 60_000
            lines.append(f"  CAUGHT  {w.kind:<20} {w.route:<22} by {r.caught_by.alertname:<20} "
                         f"after {delay:5.1f} min (sim), started {_hhmm(w.start_ms)}")  # fmt: skip
        else:
            lines.append(f"  MISSED  {w.kind:<20} {w.route:<22} expected {'/'.join(w.expected_alertnames)}")
    for a in card.unexpected:
        lines.append(f"  UNEXPECTED {a.alertname} on {a.route} ({a.model}) at {_hhmm(a.starts_at_ms)} (sim)")
    noisy = sorted({a.route for a in card.unexpected} & set(clean_routes))
    lines.append(f"  clean routes: {', '.join(clean_routes)}: {'ALERTS RAISED on ' + ', '.join(noisy) if noisy else 'no alerts'}")
    return lines


async def _wait_drained(worker: WorkerProcess, published: int, timeout_s: float = 180.0) -> None:
    """Wait until the worker has taken every published message, its pipeline is idle and its
    detection stage has observed every stored batch's facts."""
    deadline = time.monotonic() + timeout_s
    last = -1
    stable = 0
    while time.monotonic() < deadline:
        counters = (await asyncio.to_thread(worker.stats))["counters"]
        taken = counters.get("requests_messages", 0) + counters.get("verdicts_messages", 0)
        detected = counters.get("facts.observed", 0) + counters.get("facts.already_observed", 0)
        if taken >= published and detected >= counters.get("facts.records", 0):  # the detectors saw them too
            stable = stable + 1 if taken == last else 0
            if stable >= 3:
                return
        last = taken
        await asyncio.sleep(0.5)


GATE = {"route": "billing.explain", "to": "gpt-4o", "at_ms": 9 * 3_600_000, "author": "maria", "reviewer": "kenji",
        "hypothesis": "Explanations of multi-line invoices miss a line item: gpt-4o should lift the pass rate "
                      "from 84% to 88%; we will know from helpfulness@v3 within a day."}  # fmt: skip
"""The bundled demo's gate: opened and approved at 09:00 simulated, before billing.explain moves."""


async def gate_step(s: Settings, start_ms: int, out: TextIO) -> None:
    """Once the simulated day reaches :data:`GATE`'s time, open the gate with its evidence and
    approve it, through the running worker, as two people would with ``telemetry gate``."""
    from telemetry.gates import model
    from telemetry.gates.queries import gather
    from telemetry.gates.store import WorkerWriter
    from telemetry.pricing import PriceBook
    from telemetry.routes import RoutesConfig
    from telemetry.sql import query_function

    query = query_function(s)
    route, at = str(GATE["route"]), start_ms + int(GATE["at_ms"])  # type: ignore[call-overload]
    sql = f"SELECT toUnixTimestamp64Milli(max(ts)) FROM {s.clickhouse_database}.requests WHERE route = '{route}'"
    while True:
        await asyncio.sleep(1.0)
        with contextlib.suppress(Exception):  # not ready yet
            rows = (await asyncio.to_thread(query, sql)).rows
            if rows and rows[0][0] and int(rows[0][0]) >= at:
                break

    def open_and_approve() -> str:
        now = int(time.time() * 1000)
        opening = gather(query, s.clickhouse_database, route=route, proposed_model=str(GATE["to"]),
                         book=PriceBook(s.prices_file), routes=RoutesConfig.load(s.routes_file), now_ms=now, days=1.0)  # fmt: skip
        gate = model.open_gate(route=route, current_model=opening.current_model, proposed_model=str(GATE["to"]),
                               hypothesis=str(GATE["hypothesis"]), author=str(GATE["author"]), now_ms=now,
                               evidence=opening.evidence, team=opening.team, direction=opening.direction,
                               proposed_provider=opening.proposed_provider,
                               projected_monthly_usd=opening.projected_monthly_usd)  # fmt: skip
        approved = model.approve(gate, reviewer=str(GATE["reviewer"]), now_ms=now + 1, note="ok for a day's trial")
        WorkerWriter(s).write([gate])
        WorkerWriter(s).write([approved])
        return gate.id

    try:
        gate_id = await asyncio.to_thread(open_and_approve)
    except Exception as exc:  # noqa: BLE001 - the demo goes on; the switch is then ungated
        print(f"  [gate] could not open the gate: {exc}", file=out)
        return
    print(f"  [gate] {gate_id}: {route} -> {GATE['to']} opened by {GATE['author']}, approved by {GATE['reviewer']} "
          f"(telemetry gate show {gate_id})", file=out, flush=True)  # fmt: skip


async def run_demo(settings: Settings, *, speed: float, scenario: str = "demo", out: TextIO = sys.stdout) -> int:
    """Run the demo; return 0 when every incident was caught and the clean routes stayed quiet."""
    from telemetry.localkafka import broker_answers, start_broker
    from telemetry.simulate import load_scenario, simulate
    from telemetry.worker.kafka_out import ensure_topics

    run_id = uuid.uuid4().hex[:8]
    s = demo_settings(settings, run_id)
    loaded = load_scenario(scenario)
    print(f"llm-telemetry demo: scenario {loaded.name!r}, one simulated day at x{speed:g} "
          f"(~{86400 / speed / 60:.0f} min)", file=out)  # fmt: skip
    started_broker = False
    if not broker_answers(s.kafka_bootstrap):
        print(f"- starting the local Kafka broker on {s.kafka_bootstrap}", file=out)
        await asyncio.to_thread(start_broker, settings, log=lambda line: print(f"  {line}", file=out))
        started_broker = True
    else:
        print(f"- Kafka answers at {s.kafka_bootstrap}", file=out)
    shutil.rmtree(s.data_dir / "clickhouse", ignore_errors=True)
    await ensure_topics(s)
    print(f"- starting the worker (embedded ClickHouse in {s.data_dir / 'clickhouse'}, log {s.data_dir / 'worker.log'})", file=out)
    worker = WorkerProcess(s, s.data_dir / "worker.log")
    await asyncio.to_thread(worker.start)
    from telemetry.sql import worker_base_url

    dashboard = f"{worker_base_url(s)}/" + ("?token=<TELEMETRY_WEB_TOKEN>" if s.web_token else "")
    print(f"- dashboard: {dashboard} (live while the demo runs)", file=out)
    printer = AlertPrinter(s, out)
    printing = asyncio.create_task(printer.run())
    gating = asyncio.create_task(gate_step(s, loaded.start_ms, out)) if any(
        r.name == GATE["route"] for r in loaded.routes) else None  # fmt: skip
    try:
        print("- streaming traffic; alerts appear below as the worker raises them", file=out)
        result = await simulate(loaded, s, speed=speed, progress=True, raise_on_cancel=True)
        await _wait_drained(worker, result.summary.total)
        await asyncio.sleep(2.0)  # last alerts reach the topic
        alerts = await asyncio.to_thread(fired_alerts, worker, s.clickhouse_database)
        card = score(result.incidents, alerts)
        incident_routes = {w.route for w in result.incidents}
        clean = sorted(r.name for r in loaded.routes if r.name not in incident_routes)
        table = await asyncio.to_thread(summary_table, worker, s.clickhouse_database)
        print("\nPer route and model (whole day):", file=out)
        print(table, file=out)
        print("\nSeeded incidents:", file=out)
        for line in incident_lines(card, clean):
            print(line, file=out)
        ok = card.all_caught and not card.unexpected
        print(f"\n{'All incidents caught, no false alarms.' if ok else 'Not every incident was caught cleanly.'}", file=out)
        print(f"The data stays in {s.data_dir}. Query it with:\n"
              f"  TELEMETRY_DATA_DIR={s.data_dir} telemetry sql \"SELECT * FROM llm_telemetry.route_hour LIMIT 10\"",
              file=out)  # fmt: skip
        if started_broker:
            print("The local Kafka broker keeps running; stop it with: telemetry kafka stop", file=out)
        if sys.stdin.isatty():  # a person is watching: leave the dashboard up
            print(f"The dashboard stays up at {dashboard}; Ctrl-C stops the worker.", file=out, flush=True)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        else:
            print(f"See it again with: TELEMETRY_DATA_DIR={s.data_dir} telemetry ui", file=out)
        return 0 if ok else 1
    finally:
        for task in (printing, gating):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await asyncio.to_thread(worker.stop)
