"""Prompt versions: the prompt-history report and the detectors' prompt history, on the real engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.cli import main
from telemetry.reports.output import render_report
from telemetry.reports.prompts import prompt_history
from telemetry.routes import RoutesConfig
from telemetry.settings import load_settings
from telemetry.sql import run_read_only
from telemetry.storage.migrate import migrate
from telemetry.storage.store import Store
from telemetry.worker.stored_inputs import prompt_versions

T0 = int(datetime(2025, 5, 1, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.fixture
def database(engine: Client) -> Iterator[str]:
    name = f"prompts_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    requests, verdicts = [], []
    for i in range(400):
        version = "v1" if i < 200 else "v2"
        ts = T0 + i * MIN
        passed = (i % 10 != 0) if version == "v1" else (i % 10 < 6)  # 90% then 60%
        requests.append([f"r{i}", _dt(ts), "support.answer", "gpt-4o-mini", "gpt-4o-mini", 0.001, version])
        verdicts.append([f"r{i}", "judge@3", "online", int(passed), _dt(ts), "support.answer", "gpt-4o-mini", "gpt-4o-mini"])
        if i % 50 == 0:
            verdicts.append([f"r{i}", "judge@2", "online", 1, _dt(ts), "support.answer", "gpt-4o-mini", "gpt-4o-mini"])
    requests.append(["other", _dt(T0), "other.route", "m", "m", None, ""])
    engine.insert("requests", requests, database=name,
                  column_names=["request_id", "ts", "route", "model", "served_model", "cost_usd", "prompt_version"])  # fmt: skip
    engine.insert("verdicts", verdicts, database=name, column_names=[
        "request_id", "evaluator", "kind", "passed", "request_ts", "route", "model", "served_model"])  # fmt: skip
    yield name
    engine.command(f"DROP DATABASE IF EXISTS {name}")


def test_prompt_history_shows_each_version_and_flags_the_worse_one(engine: Client, database: str) -> None:
    res = prompt_history(lambda sql: run_read_only(engine, sql, server=False), database, route="support.answer")
    assert res.evaluator == "judge@3"  # the busiest judge, versions never mixed
    v1, v2 = res.versions
    assert (v1.version, v1.requests, v1.quality.judged, v1.quality.rate) == ("v1", 200, 200, 0.9)
    assert (v2.version, v2.requests, v2.quality.rate, v2.first_ms) == ("v2", 200, 0.6, T0 + 200 * MIN)
    assert v1.cost_per_request == pytest.approx(0.001) and v2.cost_per_correct == pytest.approx(0.001 / 0.6)
    report = res.to_report()
    row = report.sections[0].rows[1]
    assert row[11] < row[12] < 0 and row[13] == pytest.approx(1.5)  # significantly worse; cpc x1.5
    assert any("significantly worse than the version before: v2" in n for n in report.notes)
    assert "prompt_version" in render_report(report, "csv")


def test_the_detectors_read_when_each_version_started(engine: Client, database: str) -> None:
    found = prompt_versions(Store(engine, database), load_settings(), RoutesConfig(), T0 + 400 * MIN)["prompt_versions"]
    assert [(v.version, v.first_ms, v.requests) for v in found["support.answer"]] == [
        ("v1", T0, 200), ("v2", T0 + 200 * MIN, 200)]
    assert "other.route" not in found  # no prompt version: nothing to attribute


def test_the_cli_writes_it_as_html_too(engine: Client, engine_dsn: str, database: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from tests.integration.harness import free_port

    for key, value in (("CLICKHOUSE_DSN", engine_dsn), ("CLICKHOUSE_DATABASE", database), ("WEB_PORT", str(free_port())),
                       ("DATA_DIR", str(tmp_path))):  # fmt: skip
        monkeypatch.setenv(f"TELEMETRY_{key}", value)
    page = tmp_path / "prompts.html"
    assert main(["report", "prompt-history", "--route", "support.answer", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "v2" in out and "prompt-history: route support.answer, 2 version(s)" in out
    assert "<svg" in page.read_text() and "v2" in page.read_text()
