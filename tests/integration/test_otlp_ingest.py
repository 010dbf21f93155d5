"""OTLP through the real broker: spans and log records built by the OpenTelemetry SDK's own
encoders (both encodings), unkeyed like the Collector's Kafka exporter writes them, become the
same tables an independent computation from the spans gives; the OTel path feeds the detectors."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from genai_prices import Usage, calc_price

from telemetry.settings import Settings
from tests.integration.harness import Worker
from tests.otlp_sdk import Spans, SpanSpec, encode_spans, evaluation_logs, ids_of

pytestmark = pytest.mark.integration


@dataclass
class Call:
    """One LLM call as the test knows it (the facts the spans are built from)."""

    service: str
    route: str
    provider: str
    model: str
    start_ms: int
    latency_ms: int
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    error: str = ""
    response_id: str = ""
    request_id: str = ""  # known once the span exists


def _otel(c: Call) -> dict[str, Any]:
    a: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": c.provider, "gen_ai.request.model": c.model}
    if c.response_id:
        a["gen_ai.response.id"] = c.response_id
    if not c.error:
        a.update({"gen_ai.usage.input_tokens": c.input_tokens, "gen_ai.usage.output_tokens": c.output_tokens,
                  "gen_ai.usage.cache_read.input_tokens": c.cache_read,
                  "gen_ai.usage.cache_creation.input_tokens": c.cache_write,
                  "gen_ai.usage.reasoning.output_tokens": c.reasoning,
                  "gen_ai.response.finish_reasons": ["stop"]})  # fmt: skip
    return a


def _openinference(c: Call) -> dict[str, Any]:
    a: dict[str, Any] = {"openinference.span.kind": "LLM", "llm.provider": c.provider, "llm.model_name": c.model}
    if not c.error:
        a.update({"llm.token_count.prompt": c.input_tokens, "llm.token_count.completion": c.output_tokens,
                  "llm.token_count.prompt_details.cache_read": c.cache_read})  # fmt: skip
    return a


def _openllmetry(c: Call) -> dict[str, Any]:
    a: dict[str, Any] = {"llm.request.type": "chat", "gen_ai.system": c.provider, "gen_ai.request.model": c.model,
                         "gen_ai.response.id": c.response_id, "llm.route": c.route}  # fmt: skip
    if not c.error:
        a.update({"gen_ai.usage.prompt_tokens": c.input_tokens, "llm.usage.total_tokens": c.input_tokens + c.output_tokens,
                  "gen_ai.usage.cache_read_input_tokens": c.cache_read})  # fmt: skip
    return a


SERVICES = {
    # service: (resource attributes, route, provider, models, dialect)
    "support-svc": ({"service.name": "support-svc", "llm.route": "support.answer", "llm.team": "support"},
                    "support.answer", "openai", ["gpt-4o", "gpt-4o-mini"], _otel),
    "search-svc": ({"service.name": "search-svc"}, "search-svc.chat", "anthropic", ["claude-3-5-haiku-20241022"],
                   _openinference),
    "agents-svc": ({"service.name": "agents-svc"}, "refund.agent", "openai", ["gpt-4.1-mini"], _openllmetry),
}  # fmt: skip


def make_calls(n: int, start_ms: int, rnd: random.Random) -> list[Call]:
    calls = []
    for i in range(n):
        service = list(SERVICES)[i % 3]
        _, route, provider, models, _ = SERVICES[service]
        c = Call(service, route, provider, rnd.choice(models), start_ms + i * 1000, rnd.randint(200, 4000))
        if rnd.random() < 0.06:
            c.error = "RateLimitError"
        else:
            c.input_tokens = rnd.randint(100, 5000)
            c.output_tokens = rnd.randint(10, 800)
            c.cache_read = rnd.choice([0, 0, c.input_tokens // 3])
            if service == "support-svc":
                c.cache_write = rnd.choice([0, 0, c.input_tokens // 5])
                c.reasoning = rnd.choice([0, c.output_tokens // 2])
        if service != "search-svc":  # OpenInference spans carry no response id: trace and span identify them
            c.response_id = f"resp-{i}"
        calls.append(c)
    return calls


def spans_of(calls: list[Call], service: str, bad: dict[int, dict[str, Any]] | None = None,
             judged: dict[int, float] | None = None) -> tuple[Spans, list[int]]:  # fmt: skip
    """One message's spans: each call's span (with a parent HTTP span for every fourth) and the
    judge's evaluation event where ``judged`` says."""
    resource, _, _, _, dialect = SERVICES[service]
    spans = Spans(resource=resource)
    index = []
    for i, c in enumerate(calls):
        attributes = dialect(c)
        if bad and i in bad:
            attributes.update(bad[i])
        if c.error:
            attributes["error.type"] = c.error
        events = []
        if judged and i in judged:
            events.append(("gen_ai.evaluation.result", c.start_ms + c.latency_ms + 5,
                           {"gen_ai.evaluation.name": "judge@v1", "gen_ai.evaluation.score.value": judged[i]}))  # fmt: skip
        spans.add(SpanSpec(f"chat {c.model}", c.start_ms, c.start_ms + c.latency_ms, attributes, events, error=bool(c.error)))
        index.append(i)
        if i % 4 == 0:
            spans.add(SpanSpec("POST /answer", c.start_ms - 5, c.start_ms + c.latency_ms + 5, {"http.request.method": "POST"}))
    return spans, index


def produce_raw(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks="all",
                                    max_request_size=4 * 1024 * 1024)  # fmt: skip
        await producer.start()
        try:
            for topic, value in messages:
                await producer.send(topic, value)  # unkeyed, as the Collector's exporter writes
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def cost_of(c: Call) -> float:
    usage = Usage(input_tokens=c.input_tokens, output_tokens=c.output_tokens, cache_read_tokens=c.cache_read,
                  cache_write_tokens=c.cache_write)  # fmt: skip
    when = datetime.fromtimestamp(c.start_ms / 1000, tz=UTC)
    return float(calc_price(usage, model_ref=c.model, provider_id=c.provider, genai_request_timestamp=when).total_price)


def test_otlp_spans_and_logs_fill_the_tables_exactly(worker: Worker, test_settings: Settings) -> None:
    s = worker.settings = test_settings.model_copy(update={"batch_size": 400})
    rnd = random.Random(11)
    start_ms = int(time.time() * 1000) - 3 * 3600 * 1000
    calls = make_calls(900, start_ms, rnd)
    by_service: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_service[c.service].append(c)

    # Traces: 20 calls per message, encodings alternating; the judge evaluates 40% in span events.
    trace_messages: list[bytes] = []
    judged: dict[tuple[str, str], bool] = {}  # (request_id, evaluator) -> passed
    bad_letters: list[str] = []
    http_spans: list[int] = []  # per traces message
    for service, group in by_service.items():
        for m, at in enumerate(range(0, len(group), 20)):
            chunk = group[at : at + 20]
            scores = {i: round(rnd.random(), 3) for i in range(len(chunk)) if rnd.random() < 0.4}
            bad = None
            if service == "support-svc" and m == 3:  # one message with two bad spans among good ones
                bad = {2: {"gen_ai.usage.input_tokens": "lots"}, 5: {"llm.route": "r" * 300_000}}
                bad[5]["gen_ai.operation.name"] = "chat"
            spans, _ = spans_of(chunk, service, bad, scores)
            finished = spans.finished()
            chat_spans = [sp for sp in finished if sp.name.startswith("chat ")]
            http_spans.append(len(finished) - len(chat_spans))
            for i, (c, sp) in enumerate(zip(chunk, chat_spans, strict=True)):
                trace_id, span_id = ids_of(sp)
                c.request_id = c.response_id or f"{trace_id}-{span_id}"
                if bad and i in bad:
                    bad_letters.append(c.request_id)
                    c.request_id = ""  # refused: not a request
                    continue
                if i in scores:
                    judged[(c.request_id, "judge@v1")] = scores[i] >= 0.5
            trace_messages.append(encode_spans(finished, "otlp_proto" if m % 2 == 0 else "otlp_json"))

    # Logs: human labels by response id, and by span context for the spans without one.
    stored = [c for c in calls if c.request_id]
    records = []
    for c in rnd.sample(stored, 200):
        passed = rnd.random() < 0.7
        attributes: dict[str, Any] = {"gen_ai.evaluation.name": "human", "llm.evaluation.kind": "human",
                                      "gen_ai.evaluation.score.label": "pass" if passed else "fail"}  # fmt: skip
        link = None
        if c.response_id:
            attributes["gen_ai.response.id"] = c.response_id
        else:
            trace_id, span_id = c.request_id.split("-")
            link = (int(trace_id, 16), int(span_id, 16))
        records.append((c.start_ms + 60_000, attributes, link))
        judged[(c.request_id, "human")] = passed
    log_messages = [evaluation_logs(records[i : i + 50], "otlp_json" if i % 100 else "otlp_proto")
                    for i in range(0, len(records), 50)]  # fmt: skip
    truncated = trace_messages[1][: len(trace_messages[1]) // 2]

    worker.start()
    # Evaluations before their spans; then half the traces, a kill, the rest with repeats.
    produce_raw(s, [(s.otlp_logs_topic, m) for m in log_messages[:2]] + [(s.otlp_logs_topic, b"{not otlp")])
    half = len(trace_messages) // 2
    produce_raw(s, [(s.otlp_spans_topic, m) for m in trace_messages[:half]] + [(s.otlp_spans_topic, truncated)])
    worker.wait_until("SELECT count() > 0 FROM llm_telemetry.requests", 1, timeout=90)
    worker.kill()
    produce_raw(s, [(s.otlp_spans_topic, m) for m in trace_messages[half:] + trace_messages[:3]])
    produce_raw(s, [(s.otlp_logs_topic, m) for m in log_messages[2:] + log_messages[:1]])
    worker.start()

    expected_requests = {c.request_id: c for c in stored}
    worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(expected_requests), timeout=120)
    worker.wait_until("SELECT count() FROM llm_telemetry.verdicts", len(judged), timeout=120)
    worker.wait_until("SELECT count() FROM llm_telemetry.dead_letters", 4, timeout=60)
    time.sleep(2)  # a repeat would show now

    q = worker.scalar
    assert q("SELECT uniqExact(request_id) FROM llm_telemetry.requests") == len(expected_requests)
    assert q("SELECT count() FROM llm_telemetry.verdicts") == len(judged)
    assert q("SELECT count() FROM llm_telemetry.verdicts_unjoined") == 0

    # Each request as the spans say: ids, tokens, latency, status.
    rows = {r["request_id"]: r for r in worker.sql(
        "SELECT request_id, route, team, model, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, "
        "reasoning_tokens, latency_ms, status, error_type, toUnixTimestamp64Milli(ts) AS ts FROM llm_telemetry.requests")}
    assert set(rows) == set(expected_requests)
    for rid, c in expected_requests.items():
        r = rows[rid]
        got = (r["route"], r["model"], r["input_tokens"], r["output_tokens"], r["cached_input_tokens"],
               r["cache_write_tokens"], r["reasoning_tokens"], r["status"], r["error_type"], r["ts"])
        want = (c.route, c.model, c.input_tokens, c.output_tokens, c.cache_read, c.cache_write, c.reasoning,
                "error" if c.error else "ok", c.error, c.start_ms)  # fmt: skip
        assert got == want, rid
        assert r["latency_ms"] == pytest.approx(c.latency_ms, abs=1e-3), rid
    assert {r["team"] for r in rows.values() if r["route"] == "support.answer"} == {"support"}

    # The rolling tables: per route x model, counts, tokens, cost (genai-prices) and pass rate.
    per: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    cost: dict[tuple[str, str], float] = defaultdict(float)
    for c in expected_requests.values():
        key = (c.route, c.model)
        per[key]["requests"] += 1
        per[key]["errors"] += bool(c.error)
        per[key]["input_tokens"] += c.input_tokens
        per[key]["output_tokens"] += c.output_tokens
        cost[key] += cost_of(c)
    by_evaluator: dict[tuple[str, str, str, str], Counter[str]] = defaultdict(Counter)
    for (rid, evaluator), passed in judged.items():
        c = expected_requests[rid]
        if evaluator == "judge@v1":  # the route tables' pass rate is the online judge's
            per[(c.route, c.model)]["judged"] += 1
            per[(c.route, c.model)]["passed"] += passed
        kind = "online" if evaluator == "judge@v1" else "human"
        by_evaluator[(c.route, c.model, evaluator, kind)]["judged"] += 1
        by_evaluator[(c.route, c.model, evaluator, kind)]["passed"] += passed
    got_rows = {(r["route"], r["model"]): r for r in worker.sql(
        "SELECT route, model, sum(requests) AS requests, sum(errors) AS errors, sum(input_tokens) AS input_tokens, "
        "sum(output_tokens) AS output_tokens, sum(judged) AS judged, sum(passed) AS passed, sum(cost_usd) AS cost "
        "FROM llm_telemetry.route_hour GROUP BY route, model")}  # fmt: skip
    assert set(got_rows) == set(per)
    for key, counts in per.items():
        row = got_rows[key]
        assert {k: row[k] for k in counts} == dict(counts), key
        assert row["cost"] == pytest.approx(cost[key], rel=1e-9, abs=1e-12), key

    got_evaluators = {(r["route"], r["model"], r["evaluator"], r["kind"]): {"judged": r["judged"], "passed": r["passed"]}
                      for r in worker.sql("SELECT route, model, evaluator, kind, sum(judged) AS judged, sum(passed) AS passed "
                                          "FROM llm_telemetry.route_evaluator_hour GROUP BY route, model, evaluator, kind")}
    assert got_evaluators == {k: dict(v) for k, v in by_evaluator.items()}

    # Dead letters: the unreadable messages whole, the two bad spans each on its own.
    dead = worker.sql("SELECT source_topic, source_item, reason FROM llm_telemetry.dead_letters ORDER BY reason, source_item")
    assert sorted((d["source_topic"], d["reason"], d["source_item"] > 0) for d in dead) == sorted([
        (s.otlp_logs_topic, "otlp_invalid", False), (s.otlp_spans_topic, "otlp_invalid", False),
        (s.otlp_spans_topic, "schema_violation", True), (s.otlp_spans_topic, "too_long", True)])  # fmt: skip
    # Non-GenAI spans are skipped and counted (since the restart: counters are per process).
    after_restart = sum(http_spans[half:]) + sum(http_spans[:3])
    assert worker.stats()["counters"].get("otlp.skipped.not_genai", 0) >= after_restart > 0
    assert len(bad_letters) == 2


def test_a_404_storm_sent_as_error_spans_raises_error_storm(worker: Worker, test_settings: Settings) -> None:
    worker.settings = test_settings.model_copy(update={"event_time_idle_seconds": 2.0})
    now_ms = int(time.time() * 1000)
    start = now_ms - 40 * 60_000
    spans = Spans(resource={"service.name": "sales-svc", "llm.route": "sales.email"})
    for i in range(40 * 12):  # a request every 5 s for 40 minutes; the last 10 minutes storm
        at = start + i * 5000
        storm = at >= now_ms - 10 * 60_000 and i % 10 != 0
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                      "gen_ai.request.model": "gpt-5-mini-v2" if storm else "gpt-4o-mini",
                                      "gen_ai.response.id": f"sales-{i}"}  # fmt: skip
        if storm:
            attributes.update({"error.type": "model_not_found", "http.response.status_code": 404})
        else:
            attributes.update({"gen_ai.usage.input_tokens": 800, "gen_ai.usage.output_tokens": 120})
        spans.add(SpanSpec("chat", at, at + 700, attributes, error=storm))
    finished = spans.finished()
    messages = [encode_spans(finished[i : i + 40], "otlp_proto") for i in range(0, len(finished), 40)]

    worker.start()
    produce_raw(worker.settings, [(worker.settings.otlp_spans_topic, m) for m in messages])
    worker.wait_until("SELECT count() FROM llm_telemetry.requests", len(finished), timeout=90)
    deadline = time.monotonic() + 90
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not alerts:
        alerts = worker.sql("SELECT alertname, route, status, evidence FROM llm_telemetry.alerts "
                            "WHERE alertname = 'ErrorStorm' AND status = 'firing'")  # fmt: skip
        time.sleep(0.5)
    assert alerts, worker.log_tail()
    assert alerts[0]["route"] == "sales.email"
    assert "model_not_found" in str(alerts[0]["evidence"])


@pytest.mark.parametrize("mode", ["batch", "agents"])
def test_otlp_in_both_ingest_modes_and_an_envelope_on_the_requests_topic(worker: Worker, test_settings: Settings,
                                                                          mode: str) -> None:  # fmt: skip
    s = worker.settings = test_settings.model_copy(update={"ingest_mode": mode})
    now_ms = int(time.time() * 1000) - 60_000
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                  "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 3, "llm.route": "faq.answer"}  # fmt: skip
    proto = Spans().add(SpanSpec("chat", now_ms, now_ms + 30, {**attributes, "gen_ai.response.id": "p-1"})).encode("otlp_proto")
    envelope = Spans().add(SpanSpec("chat", now_ms, now_ms + 30, {**attributes, "gen_ai.response.id": "j-1"})).encode("otlp_json")
    # 10,000 spans in one message: 9,990 that are not GenAI, 10 that are (and the rest flows on).
    crowd = Spans()
    for i in range(10_000):
        genai = i % 1000 == 0
        crowd.add(SpanSpec("chat" if genai else "s", now_ms + i, now_ms + i + 20,
                           {**attributes, "gen_ai.response.id": f"crowd-{i}"} if genai else {}))  # fmt: skip
    crowded = crowd.encode("otlp_proto")
    assert len(crowded) < s.max_message_bytes
    worker.start()
    produce_raw(s, [(s.otlp_spans_topic, proto), (s.requests_topic, envelope), (s.otlp_spans_topic, crowded)])
    worker.wait_until("SELECT count() FROM llm_telemetry.requests", 12, timeout=60)
    assert worker.sql("SELECT request_id, route, output_tokens FROM llm_telemetry.requests "
                      "WHERE request_id NOT LIKE 'crowd-%' ORDER BY request_id") == [
        {"request_id": "j-1", "route": "faq.answer", "output_tokens": 3},
        {"request_id": "p-1", "route": "faq.answer", "output_tokens": 3}]  # fmt: skip
    assert worker.scalar("SELECT count() FROM llm_telemetry.dead_letters") == 0
    assert worker.stats()["counters"]["otlp.skipped.not_genai"] == 9_990
