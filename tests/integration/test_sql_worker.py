"""The worker's HTTP pages as a hostile analyst meets them, through the real worker, broker and engine:
a bearer token, 400 for malformed bodies, a health page for probes, and a runaway statement that is
cancelled after TELEMETRY_SQL_MAX_SECONDS while valid traffic keeps being stored."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from telemetry.settings import Settings
from telemetry.sql import SqlError, WriteRefused, query_function, render
from telemetry.worker.process import WorkerProcessError
from tests.integration.harness import Worker, produce

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TOKEN = "tok-3f9a1c"


def requests(n: int, prefix: str, route: str = "support.answer") -> list[dict[str, Any]]:
    return [{"request_id": f"{prefix}-{i}", "ts": START_MS + i * 10, "route": route, "provider": "openai",
             "model": "gpt-4o-mini", "input_tokens": 100 + i % 50, "output_tokens": 20, "latency_ms": 200.0,
             "status": "ok"} for i in range(n)]  # fmt: skip


def call(settings: Settings, page: str, body: bytes | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{settings.web_port}/telemetry/{page}/", data=body,
                                 headers=headers)  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def worker(tmp_path: Path):
    holder: list[Worker] = []
    yield holder
    for w in holder:
        if w.proc is not None:
            w.stop()


def test_pages_want_the_token_and_answer_400_to_malformed_bodies(worker: list[Worker], test_settings: Settings,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    settings = test_settings.model_copy(update={"web_token": SecretStr(TOKEN)})
    w = Worker(settings, tmp_path / "logs")
    worker.append(w)
    w.start()  # polls the stats page with the token (WorkerProcess sends it)
    produce(settings, settings.requests_topic, requests(5, "tok"))
    w.wait_for_counter("requests_stored", 5)

    # health: no token, for probes; Faust's own unauthenticated /router/ and /table/ pages are off
    assert call(settings, "health") == (200, {"ready": True})
    for path in ("/router/", "/table/"):
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}{path}", timeout=10)
    # stats and sql: 401 without the token or with a wrong one
    sql = json.dumps({"sql": "SELECT 1"}).encode()
    for page, body in (("stats", None), ("sql", sql)):
        assert call(settings, page, body)[0] == 401
        assert call(settings, page, body, token="wrong")[0] == 401
        assert call(settings, page, body, token=TOKEN)[0] == 200

    # malformed bodies: 400 with a JSON error, never a 500 with a traceback
    for body in (b"not json", b"[1, 2]", b'"SELECT 1"', b'{"query": "SELECT 1"}', b'{"sql": 5}', b'{"sql": ""}',
                 b'{"sql": ["SELECT 1"]}', b"\xff\xfe", b'{"sql": "' + b"x" * (2 * 1024 * 1024) + b'"}'):  # fmt: skip
        status, answer = call(settings, "sql", body, token=TOKEN)
        assert status == 400 and isinstance(answer.get("error"), str), (body[:40], status, answer)

    # the page refuses files and the network; the answer does not leak the environment
    for statement in ("SELECT * FROM file('/proc/self/environ', 'RawBLOB')", "SELECT file('/proc/self/environ')",
                      "SELECT * FROM url('http://127.0.0.1:9/', 'RawBLOB')", "SELECT * FROM system.processes"):  # fmt: skip
        status, answer = call(settings, "sql", json.dumps({"sql": statement}).encode(), token=TOKEN)
        assert status == 400 and answer["refused"] is True and TOKEN not in json.dumps(answer)

    # telemetry sql (and the reports' query path) send the token; output is escaped
    query = query_function(settings)
    result = query("SELECT concat(route, char(27), '[2J', char(27), ']0;x', char(7)) AS v FROM llm_telemetry.requests "
                   "LIMIT 1")  # fmt: skip
    assert result.rows == [["support.answer\x1b[2J\x1b]0;x\x07"]]
    assert "\x1b" not in render(result) and "\\x1b[2J" in render(result)
    with pytest.raises(WriteRefused):
        query("SELECT * FROM file('/etc/passwd', 'LineAsString')")
    with pytest.raises(SqlError, match="TELEMETRY_WEB_TOKEN"):
        query_function(test_settings)("SELECT 1")


def test_a_runaway_statement_is_cancelled_and_ingest_goes_on(worker: list[Worker], test_settings: Settings,
                                                            tmp_path: Path) -> None:  # fmt: skip
    limit_s = 10.0
    settings = test_settings.model_copy(update={"sql_max_seconds": limit_s})
    w = Worker(settings, tmp_path / "logs")
    worker.append(w)
    w.start()
    n = 20_000

    def stored() -> int:
        return int(w.stats()["counters"].get("requests_stored", 0))

    # Baseline: how fast this worker stores n requests with no analyst statement running.
    t0 = time.monotonic()
    produce(settings, settings.requests_topic, requests(n, "base"))
    w.wait_for_counter("requests_stored", n, timeout=120)
    baseline_s = time.monotonic() - t0

    # A runaway statement through the SQL page, then another n requests while it runs.
    outcome: dict[str, Any] = {}

    def runaway() -> None:
        started = time.monotonic()
        try:
            w.sql("SELECT count() FROM numbers(1e12)")
            outcome["error"] = "it finished"
        except WorkerProcessError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=runaway)
    thread.start()
    time.sleep(0.5)
    before = stored()
    t1 = time.monotonic()
    produce(settings, settings.requests_topic, requests(n, "during"))
    during_s = None
    while thread.is_alive():
        if during_s is None and stored() >= 2 * n:
            during_s = time.monotonic() - t1
        time.sleep(0.1)
    thread.join()
    at_cancel = stored()
    assert "TELEMETRY_SQL_MAX_SECONDS=10" in outcome["error"], outcome
    assert at_cancel > before, f"nothing stored while the analyst statement ran ({outcome})"
    w.wait_for_counter("requests_stored", 2 * n, timeout=120)
    assert w.scalar("SELECT count() FROM llm_telemetry.requests") == 2 * n
    print(f"\nMEASURED: baseline {n} requests stored in {baseline_s:.2f} s ({n / baseline_s:,.0f}/s); "
          f"with a runaway statement running: {at_cancel - before} stored in the {outcome['seconds']:.1f} s it ran"
          + (f", all {n} in {during_s:.2f} s ({n / during_s:,.0f}/s)" if during_s else ""))


def test_the_gate_write_page_wants_the_token_and_checks_every_record(worker: list[Worker], test_settings: Settings,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    """``POST /telemetry/gates/`` (the CLI's writes with the embedded engine) is as closed as the SQL page."""
    from telemetry.gates.model import open_gate
    from telemetry.gates.store import fields_of

    settings = test_settings.model_copy(update={"web_token": SecretStr(TOKEN)})
    w = Worker(settings, tmp_path / "logs")
    worker.append(w)
    w.start()
    gate = open_gate(route="r", current_model="a", proposed_model="b", hypothesis="h", author="x", now_ms=1, evidence={})
    body = json.dumps({"gates": [fields_of(gate)]}).encode()
    assert call(settings, "gates", body)[0] == 401
    assert call(settings, "gates", body, token="wrong")[0] == 401
    for bad in (b"not json", b'{"gates": []}', b'{"gates": [{"id": "x"}]}',
                json.dumps({"gates": [{**fields_of(gate), "state": "merged"}]}).encode()):  # fmt: skip
        status, answer = call(settings, "gates", bad, token=TOKEN)
        assert status == 400 and isinstance(answer.get("error"), str), (bad[:40], status, answer)
    assert w.scalar("SELECT count() FROM llm_telemetry.tier_gates") == 0  # nothing written by a refused body
    assert call(settings, "gates", body, token=TOKEN) == (200, {"written": [f"{gate.id}@1"]})
    assert w.scalar(f"SELECT state FROM llm_telemetry.tier_gate_status WHERE id = '{gate.id}'") == "open"
