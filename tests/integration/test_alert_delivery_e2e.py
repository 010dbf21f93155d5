"""Webhook notifications survive a receiver that is down and a worker that is killed and restarted
in between: through the real broker and the real worker, every notification arrives once the
receiver is back, exactly once per channel, and ``alert_deliveries`` shows it delivered after
several attempts (the outbox recorded it before the first attempt and kept its attempts across
a SIGTERM and a SIGKILL restart)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from telemetry.settings import Settings
from telemetry.simulate import load_scenario, simulate
from tests.integration.harness import Worker, free_port

pytestmark = pytest.mark.integration
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "short.toml"
STATUS = "llm_telemetry.alert_delivery_status"


class Receiver:
    """A webhook receiver started late, on a port chosen before (down until then)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[tuple[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def wait_for(worker: Worker, query: str, predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = worker.scalar(query)
        if predicate(value):
            return value
        time.sleep(0.3)
    raise AssertionError(f"{query!r} gave {value!r}\n{worker.log_tail()}")


def test_notifications_arrive_after_an_outage_across_sigkill_and_sigterm(test_settings: Settings,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    port = free_port()
    receiver = Receiver(port)
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[defaults]\nchannels = ["hook", "am"]\n'
        f'[channels.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/generic/SECRET-TOKEN"\n'
        f'[channels.am]\nkind = "alertmanager"\nurl = "http://127.0.0.1:{port}/alertmanager/SECRET-TOKEN"\n'
    )
    settings = test_settings.model_copy(update={"routes_file": routes, "env": "test"})
    worker = Worker(settings, tmp_path / "logs").start()
    try:
        # 1. Alerts fire while the receiver is down: deliveries are recorded and retried.
        result = asyncio.run(simulate(load_scenario(SCENARIO), settings, speed=2400, progress=False))
        worker.wait_for_counter("requests_messages", result.summary.published["requests"], timeout=60)
        worker.wait_for_counter("verdicts_messages", result.summary.published["verdicts"], timeout=60)
        wait_for(worker, f"SELECT countIf(attempts >= 2) FROM {STATUS}", lambda n: n and n >= 2, timeout=30)
        attempts_before = worker.scalar(f"SELECT sum(attempts) FROM {STATUS}")

        # 2. SIGTERM: a clean stop leaves them pending; the next worker resumes them with their attempts.
        assert worker.stop() == 0
        worker.start()
        worker.wait_for_counter("deliveries.resumed", 1, timeout=30)  # when it takes detection over
        wait_for(worker, f"SELECT sum(attempts) FROM {STATUS}", lambda n: n and n > attempts_before, timeout=30)

        # 3. SIGKILL: nothing is lost either. The receiver comes back while no worker runs (a killed
        # member holds the consumer group for its session timeout, so this restart is the slow one).
        ids = {r["id"] for r in worker.sql("SELECT DISTINCT id FROM llm_telemetry.alerts")}
        before = {(r["alert_id"], r["channel"]): r for r in worker.sql(f"SELECT * FROM {STATUS}")}
        worker.kill()
        receiver.start()
        worker.start()

        keys = ", ".join(f"('{a}', '{c}')" for a, c in before)
        wait_for(worker, f"SELECT countIf(state = 'delivered') FROM {STATUS} WHERE (alert_id, channel) IN ({keys})",
                 lambda n: n == len(before), timeout=60)  # fmt: skip
        after = {(r["alert_id"], r["channel"]): r for r in worker.sql(f"SELECT * FROM {STATUS}")}
        counters = worker.stats()["counters"]
        log_text = (tmp_path / "logs" / "worker.log").read_text(errors="replace")
    finally:
        worker.stop()
        receiver.stop()

    # Recorded before delivery: every notification of the outage had its row, per channel, and
    # none was delivered while the receiver was down.
    assert len(ids) >= 2
    assert {(i, c) for i in ids for c in ("hook", "am")} <= set(before)
    assert {r["state"] for r in before.values()} == {"pending"}
    attempted = [k for k, r in before.items() if r["attempts"] >= 1]
    assert len(attempted) >= 2
    # All delivered once the receiver is back; the attempts made during the outage were kept.
    for key, old in before.items():
        new = after[key]
        assert (new["state"], new["last_status"]) == ("delivered", "200"), new
        assert new["attempts"] > old["attempts"], (old, new)
    assert all(after[k]["attempts"] > 1 for k in attempted)
    assert counters.get("deliveries.delivered", 0) >= len(before) and counters.get("deliveries.resumed", 0) >= len(before)

    # Each notification arrived exactly once per channel.
    generic = Counter(f"{b['fingerprint']}-{ms(b['starts_at'])}-{b['status']}-{b['sequence']}"
                      for p, b in receiver.bodies if p.startswith("/generic"))  # fmt: skip
    assert all(generic[i] == 1 for i in ids) and max(generic.values()) == 1, generic
    manager = Counter((a["fingerprint"], ms(a["startsAt"]), a["status"]) for p, b in receiver.bodies
                      if p.startswith("/alertmanager") for a in b["alerts"])  # fmt: skip
    assert all(manager[(i.split("-")[0], int(i.split("-")[1]), i.split("-")[2])] == 1 for i in ids), manager
    assert "SECRET-TOKEN" not in log_text
