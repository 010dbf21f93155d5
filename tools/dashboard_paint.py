"""First paint of the dashboard on a week of the demo's data, measured in headless Chromium.

    python -m tools.dashboard_paint                  # build the week (~3 min), measure, keep the data
    python -m tools.dashboard_paint --reuse DIR      # measure again on a week built before

Builds the data the way ``telemetry demo`` does, on the real pieces: the bundled demo scenario
stretched to 7 simulated days (``duration = "168h"``: the same routes, diurnal traffic and the six
incidents on the first day), published as fast as possible through the local broker to a real
worker on the embedded engine. Then, with the worker still serving, Chromium opens each page
``--runs`` times (plus one cold load first) and reads the browser's own timings through the
Performance API: ``first-contentful-paint`` and the navigation's ``responseEnd`` (when the whole
HTML, rendered by the worker, had arrived). Prints a table of medians and maxima.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path

from telemetry.settings import Settings, load_settings
from telemetry.worker.process import WorkerProcess
from tools.cdp import Browser

PAGES = [
    ("overview, day", "/?range=day"),
    ("overview, week", "/?range=week"),
    ("route, day", "/route/?name=support.answer&range=day"),
    ("route, week", "/route/?name=support.answer&range=week"),
    ("route, week (tier-up)", "/route/?name=docs.summarize&range=week"),
    ("alerts, week", "/alerts/?range=week"),
]
TIMING_JS = """new Promise(resolve => {
  const done = fcp => {
    const nav = performance.getEntriesByType('navigation')[0];
    resolve({fcp: fcp, response: nav.responseEnd, size: nav.transferSize || nav.encodedBodySize,
             points: document.querySelectorAll('path.line').length + document.querySelectorAll('g.stack rect').length});
  };
  new PerformanceObserver(list => {
    const paint = list.getEntriesByName('first-contentful-paint')[0];
    if (paint) done(paint.startTime);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => done(null), 10000);
})"""
"""The first contentful paint may come after the load event: wait for it (buffered observer)."""


def week_settings(data_dir: Path, run_id: str) -> Settings:
    return load_settings(data_dir=data_dir, topic_prefix=f"paint.{run_id}.", consumer_group=f"paint-{run_id}",
                         otlp_spans_topic="", otlp_logs_topic="", batch_seconds=0.5)  # fmt: skip


async def build_week(settings: Settings, worker: WorkerProcess) -> int:
    from telemetry.demo import _wait_drained
    from telemetry.simulate import simulate
    from telemetry.simulate.scenario import parse_scenario
    from telemetry.worker.kafka_out import ensure_topics

    text = (resources.files("telemetry") / "scenarios" / "demo.toml").read_text()
    assert 'duration = "24h"' in text
    week = parse_scenario(text.replace('duration = "24h"', 'duration = "168h"'), source="demo x7")
    await ensure_topics(settings)
    started = time.monotonic()
    result = await simulate(week, settings, speed=None, progress=True)
    await _wait_drained(worker, result.summary.total, timeout_s=900)
    print(f"published and stored {result.summary.total:,} messages in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return int(result.summary.total)


def measure(base: str, runs: int) -> list[tuple[str, dict[str, float], list[dict[str, float]]]]:
    out = []
    with Browser() as browser:
        page = browser.page()
        for name, path in PAGES:
            samples = []
            for _ in range(runs + 1):
                page.goto(base + path, timeout=60)
                samples.append(page.evaluate(TIMING_JS))
            if page.errors:
                raise SystemExit(f"{name}: browser errors: {page.errors}")
            out.append((name, samples[0], samples[1:]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dashboard_paint", description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", type=Path, default=None, help="a data directory built by an earlier run")
    parser.add_argument("--runs", type=int, default=5, help="warm loads per page (default 5)")
    args = parser.parse_args(argv)
    from telemetry.localkafka import broker_answers, start_broker

    data_dir = args.reuse or Path(tempfile.mkdtemp(prefix="paint-week-"))
    settings = week_settings(data_dir, uuid.uuid4().hex[:8])
    if not broker_answers(settings.kafka_bootstrap):
        start_broker(settings, log=lambda line: print(line, file=sys.stderr))
    worker = WorkerProcess(settings, data_dir / "worker.log")
    worker.start()
    try:
        if args.reuse is None:
            asyncio.run(build_week(settings, worker))
        requests = worker.sql(f"SELECT count() AS n, min(ts) AS first, max(ts) AS last FROM {settings.clickhouse_database}.requests")[0]
        print(f"data: {requests['n']:,} requests, {requests['first']} .. {requests['last']} ({data_dir})")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPUs, load average {load}; Chromium headless, 1440x900; "
              f"{args.runs} warm loads per page after a cold one\n")
        print(f"{'page':<24} {'cold FCP':>9} {'FCP median':>11} {'FCP max':>8} {'HTML done':>10} {'KiB':>6} {'shapes':>7}")
        for name, cold, warm in measure(f"http://127.0.0.1:{settings.web_port}", args.runs):
            fcp = [s["fcp"] for s in warm]
            response = statistics.median(s["response"] for s in warm)
            print(f"{name:<24} {cold['fcp']:>7.0f}ms {statistics.median(fcp):>9.0f}ms {max(fcp):>6.0f}ms {response:>8.0f}ms "
                  f"{warm[-1]['size'] / 1024:>6.0f} {warm[-1]['points']:>7.0f}")  # fmt: skip
    finally:
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
