"""Kafka in, ClickHouse out, through the real broker, the real worker and the real engine."""

from __future__ import annotations

import math
import random
import subprocess

import pytest

from telemetry.settings import Settings
from tests.integration.harness import Worker, produce, produce_with_kcat
from tests.integration.traffic import POISON, make_traffic

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["batch", "agents"])
def test_walking_skeleton_event_becomes_a_row(worker: Worker, test_settings: Settings, mode: str) -> None:
    worker.settings = test_settings.model_copy(update={"ingest_mode": mode})
    traffic = make_traffic(60)
    worker.start()
    produce(test_settings, test_settings.requests_topic, traffic.requests)
    worker.wait_until("SELECT count() FROM llm_telemetry.requests", 60)
    row = worker.sql("SELECT route, model, input_tokens, status, cost_source FROM llm_telemetry.requests "
                     f"WHERE request_id = '{traffic.requests[0]['request_id']}'")[0]  # fmt: skip
    first = traffic.requests[0]
    assert (row["route"], row["model"], row["input_tokens"], row["status"]) == (
        first["route"], first["model"], first["input_tokens"], first["status"])  # fmt: skip
    assert row["cost_source"] == "genai-prices"


def test_exact_totals_despite_disorder_duplicates_poison_and_sigkill(worker: Worker, test_settings: Settings) -> None:
    settings = test_settings.model_copy(update={"batch_size": 300, "max_message_bytes": 4096})
    worker.settings = settings
    traffic = make_traffic(3000, unknown_model_every=97)
    rnd = random.Random(1)
    requests = traffic.requests
    verdicts = traffic.verdicts[:]
    rnd.shuffle(verdicts)
    early, rest = verdicts[: len(verdicts) // 4], verdicts[len(verdicts) // 4 :]
    oversized = b'{"request_id": "big", "pad": "' + b"x" * 6000 + b'"}'

    worker.start()
    # Verdicts before their requests, from aiokafka; half the requests from kcat (other partitioner).
    produce(settings, settings.verdicts_topic, early)
    produce_with_kcat(settings, settings.requests_topic, requests[:1500])
    produce(settings, settings.requests_topic, POISON + [oversized])
    produce(settings, settings.verdicts_topic, [b"{oops", b'{"request_id": "x", "ts": 1767225600000, "evaluator": "j"}'])
    worker.wait_until("SELECT count() > 0 FROM llm_telemetry.requests", 1)
    worker.kill()  # SIGKILL mid-stream: nothing committed after the last stored batch

    # While the worker is down: the rest, with producer duplicates of both kinds.
    produce(settings, settings.requests_topic, requests[1500:] + rnd.sample(requests, 300))
    produce_with_kcat(settings, settings.verdicts_topic, rest + rnd.sample(verdicts, 200))
    worker.start()
    worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(requests), timeout=120)
    worker.wait_until("SELECT count() FROM llm_telemetry.verdicts", traffic.expected["verdicts"], timeout=120)

    # Redelivery after a clean restart changes nothing either.
    worker.stop()
    worker.start()
    produce(settings, settings.requests_topic, rnd.sample(requests, 100))
    worker.wait_for_counter("duplicate_requests", 100)

    assert worker.scalar("SELECT count() FROM llm_telemetry.requests") == len(requests)
    assert worker.scalar("SELECT uniqExact(request_id) FROM llm_telemetry.requests") == len(requests)
    assert worker.scalar("SELECT count() FROM llm_telemetry.verdicts") == traffic.expected["verdicts"]
    assert worker.scalar("SELECT countIf(late = 1) FROM llm_telemetry.verdicts") == traffic.expected["late"]
    assert worker.scalar("SELECT count() FROM llm_telemetry.verdicts_unjoined") == 0
    # Every poison message is dead-lettered once, with its reason.
    assert worker.scalar("SELECT count() FROM llm_telemetry.dead_letters") == len(POISON) + 1 + 2
    reasons = {r["reason"] for r in worker.sql("SELECT DISTINCT reason FROM llm_telemetry.dead_letters")}
    assert {"invalid_json", "not_an_object", "schema_violation", "oversized"} <= reasons

    rows = worker.sql("SELECT route, model, sum(requests) AS requests, sum(errors) AS errors, sum(judged) AS judged, "
                      "sum(passed) AS passed, sum(cost_usd) AS cost, sum(priced_requests) AS priced "
                      "FROM llm_telemetry.route_hour GROUP BY route, model")  # fmt: skip
    got = {(r["route"], r["model"]): r for r in rows}
    expected = traffic.expected["per_route"]
    assert set(got) == set(expected)
    for key, counts in expected.items():
        row = got[key]
        assert (row["requests"], row["errors"], row["judged"], row["passed"]) == (
            counts["requests"], counts["errors"], counts["judged"], counts["passed"]), key  # fmt: skip
        assert row["priced"] == counts["requests"] - counts["unpriced"]
        assert math.isclose(row["cost"], traffic.expected["cost"].get(key, 0.0), rel_tol=1e-9, abs_tol=1e-12), key
    unpriced = worker.sql("SELECT model, sum(requests) AS n FROM llm_telemetry.unpriced_models GROUP BY model")
    assert [(r["model"], r["n"]) for r in unpriced] == [
        ("acme-private-llm", sum(c["unpriced"] for c in expected.values()))]  # fmt: skip

    # The dead-letter topic holds the original bytes with the reason (read with kcat).
    out = subprocess.run(
        ["kcat", "-C", "-b", settings.kafka_bootstrap, "-t", settings.deadletter_topic, "-e", "-q",
         "-f", "%h\\n"], capture_output=True, timeout=60, check=True,
    ).stdout.decode()  # fmt: skip
    assert "dlq.reason=invalid_json" in out and "dlq.source.topic=" + settings.requests_topic in out
