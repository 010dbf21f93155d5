"""Hostile input through the decode path (issue 9): every message is accepted or dead-lettered
with a precise reason, and nothing one message holds can raise out of a batch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from telemetry.contracts import RequestEvent, VerdictEvent
from telemetry.contracts.decode import REASONS, decode_request, decode_verdict
from telemetry.errors import BadInput
from telemetry.ingest.batch import RawMessage, decode_requests, decode_verdicts
from telemetry.pricing import PriceBook

REPO = Path(__file__).resolve().parents[2]
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the worker's clock in these tests
REQ: dict[str, Any] = {"request_id": "a", "ts": NOW - 1000, "route": "support.answer", "model": "gpt-4o",
                       "input_tokens": 10, "output_tokens": 5, "latency_ms": 120.5, "status": "ok"}  # fmt: skip
VER: dict[str, Any] = {"request_id": "a", "ts": NOW - 500, "evaluator": "judge@v1", "passed": True}

REQUEST_INTS = ["schema_version", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                "reasoning_tokens", "http_status", "attempt", "tool_calls", "tool_errors", "system_prompt_tokens"]  # fmt: skip
REQUEST_FLOATS = ["cost_usd", "latency_ms", "ttft_ms"]
VERDICT_FLOATS = ["score", "eval_cost_usd"]
REQUEST_LABELS = ["request_id", "route", "team", "provider", "model", "response_model", "error_type", "finish_reason",
                  "prompt_version", "experiment", "user_hash", "response_hash"]  # fmt: skip
VERDICT_LABELS = ["request_id", "evaluator", "label"]

NON_FINITE = ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"]
HUGE = ["9" * 400, "-" + "9" * 400, str(2**70), str(2**64), "1e300"]


@pytest.fixture(scope="module")
def prices() -> PriceBook:
    return PriceBook()


def raw_with(base: dict[str, Any], field: str, token: str, **extra: Any) -> bytes:
    """``base`` as JSON with ``field`` set to the literal JSON text ``token`` (Infinity, 400 digits...)."""
    return orjson.dumps({**base, **extra, field: "__X__"}).replace(b'"__X__"', token.encode())


def one_request(raw: bytes | None, prices: PriceBook, **kw: Any) -> tuple[list[Any], list[Any]]:
    out = decode_requests([RawMessage("llm.requests", 0, 7, b"k", raw)], prices, max_bytes=1_000_000, now_ms=NOW, **kw)
    return out.requests, out.dead


def one_verdict(raw: bytes | None, **kw: Any) -> tuple[list[Any], list[Any]]:
    out = decode_verdicts([RawMessage("llm.verdicts", 0, 7, b"k", raw)], max_bytes=1_000_000, now_ms=NOW, **kw)
    return out.verdicts, out.dead


# -- finding 1: one message can no longer crash the worker -------------------------------------------------
def test_the_issue_reproduction_is_a_dead_letter_not_a_crash() -> None:
    raw = b'{"request_id":"x","ts":Infinity,"evaluator":"e@v1","passed":true}'
    verdicts, dead = one_verdict(raw)
    assert verdicts == [] and [(d.reason, d.offset) for d in dead] == [("non_finite_number", 7)]
    assert "ts" in dead[0].detail


@pytest.mark.parametrize("token", NON_FINITE + ["9" * 400, "-" + "9" * 400, "1e20", "-5"])
@pytest.mark.parametrize("null", [False, True], ids=["fast", "with-null"])
def test_a_hostile_ts_on_either_topic_is_dead_lettered(token: str, null: bool, prices: PriceBook) -> None:
    extra = {"team": None} if null else {}
    expected = "non_finite_number" if token in NON_FINITE else "out_of_range"
    requests, dead = one_request(raw_with(REQ, "ts", token, **extra), prices)
    assert requests == [] and [d.reason for d in dead] == [expected], dead
    verdicts, dead = one_verdict(raw_with(VER, "ts", token, **({"label": None} if null else {})))
    assert verdicts == [] and [d.reason for d in dead] == [expected], dead


@pytest.mark.parametrize("field", REQUEST_INTS + REQUEST_FLOATS)
@pytest.mark.parametrize("token", NON_FINITE + HUGE)
@pytest.mark.parametrize("path", ["fast", "with-null", "otel"])
def test_every_request_number_field_refuses_non_finite_and_out_of_range(field: str, token: str, path: str,
                                                                       prices: PriceBook) -> None:  # fmt: skip
    extra: dict[str, Any] = {"team": None} if path == "with-null" else {}
    if path == "otel":
        extra = {"gen_ai.system": "openai"}
    if field in ("input_tokens",):  # keep the other counts consistent so only this field is wrong
        extra["cached_input_tokens"] = 0
    requests, dead = one_request(raw_with(REQ, field, token, **extra), prices)
    if field == "schema_version":
        expected = "unsupported_schema_version"
    elif token in NON_FINITE:
        expected = "non_finite_number"
    else:
        expected = "out_of_range"
    assert requests == [] and [d.reason for d in dead] == [expected], (dead[0].detail if dead else requests)
    assert field in dead[0].detail


@pytest.mark.parametrize("field", VERDICT_FLOATS)
@pytest.mark.parametrize("token", NON_FINITE + ["9" * 400, "1e300"])
def test_every_verdict_number_field_refuses_non_finite_and_out_of_range(field: str, token: str) -> None:
    verdicts, dead = one_verdict(raw_with(VER, field, token))
    assert verdicts == [] and [d.reason for d in dead] == ["non_finite_number" if token in NON_FINITE else "out_of_range"]


class ExplodingPrices(PriceBook):
    def cost(self, **kwargs: Any) -> Any:
        raise OverflowError("int too large to convert to float")


def test_any_exception_for_one_message_is_its_dead_letter_with_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    good = orjson.dumps(REQ)
    batch = [RawMessage("llm.requests", 0, i, None, good) for i in range(3)]
    out = decode_requests(batch, ExplodingPrices(), max_bytes=1_000_000, now_ms=NOW)
    assert out.requests == [] and [d.reason for d in out.dead] == ["decode_error"] * 3
    assert out.dead[0].detail.startswith("OverflowError: int too large")

    import telemetry.contracts.decode as decode

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(decode, "_decode", boom)
    out = decode_verdicts([RawMessage("llm.verdicts", 1, 9, None, orjson.dumps(VER))], max_bytes=1_000_000, now_ms=NOW)
    assert [(d.reason, d.detail) for d in out.dead] == [("decode_error", "ZeroDivisionError: boom")]
    with pytest.raises(BadInput) as info:
        decode_request(good)
    assert info.value.reason == "decode_error"


def test_a_bad_message_does_not_disturb_its_neighbours(prices: PriceBook) -> None:
    values = [orjson.dumps({**REQ, "request_id": f"r{i}"}) for i in range(4)]
    values[1] = raw_with(REQ, "ts", "Infinity")
    values[2] = b"\x00\xff"
    out = decode_requests([RawMessage("t", 0, i, None, v) for i, v in enumerate(values)], prices,
                          max_bytes=1_000_000, now_ms=NOW)  # fmt: skip
    assert [p.event.request_id for p in out.requests] == ["r0", "r3"]
    assert [(d.offset, d.reason) for d in out.dead] == [(1, "non_finite_number"), (2, "invalid_json")]
    assert out.event_times == {("t", 0): REQ["ts"]}


# -- finding 3: null in an optional field means absent ----------------------------------------------------
def _optional(model: type[Any]) -> list[str]:
    return [name for name, f in model.model_fields.items() if not f.is_required()]


@pytest.mark.parametrize("field", _optional(RequestEvent))
def test_null_in_any_optional_request_field_is_absent(field: str) -> None:
    event = decode_request(orjson.dumps({**REQ, field: None}))
    assert getattr(event, field) == RequestEvent.model_fields[field].get_default(call_default_factory=True)


@pytest.mark.parametrize("field", [f for f in _optional(VerdictEvent) if f != "passed"])
def test_null_in_any_optional_verdict_field_is_absent(field: str) -> None:
    verdict = decode_verdict(orjson.dumps({**VER, field: None}))
    assert getattr(verdict, field) == VerdictEvent.model_fields[field].get_default()


def test_null_as_real_producers_send_it() -> None:
    # Python None / Go nil / Jackson: every unset optional field is null, on a failed call.
    event = decode_request(orjson.dumps({
        **REQ, "status": "error", "error_type": "model_not_found", "response_model": None, "provider": None,
        "team": None, "ttft_ms": None, "cost_usd": None, "http_status": 404, "finish_reason": None,
        "tags": {"region": "eu", "canary": None}, "schema_version": None, "cached_input_tokens": None,
    }))  # fmt: skip
    assert (event.response_model, event.served_model, event.tags, event.error_type) == ("", "gpt-4o", {"region": "eu"}, "model_not_found")
    verdict = decode_verdict(orjson.dumps({**VER, "passed": None, "score": 0.9, "label": None, "kind": None}))
    assert (verdict.passed, verdict.kind, verdict.label) == (True, "online", "")
    otel = decode_request(orjson.dumps({"gen_ai.response.id": "o1", "ts": NOW, "route": "r", "gen_ai.request.model": "m",
                                        "gen_ai.response.model": None, "gen_ai.usage.input_tokens": 3,
                                        "gen_ai.usage.output_tokens": 1, "latency_ms": 5, "error.type": None}))  # fmt: skip
    assert (otel.response_model, otel.status, otel.error_type) == ("", "ok", "")


@pytest.mark.parametrize("field", [n for n, f in RequestEvent.model_fields.items() if f.is_required()])
def test_null_in_a_required_field_is_refused_clearly(field: str) -> None:
    with pytest.raises(BadInput) as info:
        decode_request(orjson.dumps({**REQ, field: None}))
    assert (info.value.reason, info.value.detail) == ("schema_violation", f"{field}: null in a required field")


def test_schemas_say_optional_fields_accept_null() -> None:
    for model in (RequestEvent, VerdictEvent):
        schema = model.model_json_schema()
        for name, prop in schema["properties"].items():
            accepts_null = any(v.get("type") == "null" for v in prop.get("anyOf", []))
            assert accepts_null == (name not in schema["required"]), name
    checked = orjson.loads((REPO / "schemas" / "request.schema.json").read_bytes())["properties"]
    assert {"type": "null"} in checked["response_model"]["anyOf"] and "anyOf" not in checked["route"]
    assert re.fullmatch(checked["route"]["pattern"], "support.answer")
    assert not re.fullmatch(checked["route"]["pattern"], "a\x1b[31mb")


# -- finding 9: lenient conversions ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [("output_tokens", True), ("output_tokens", False), ("input_tokens", "10"), ("input_tokens", 10.0),
     ("input_tokens", 10.5), ("latency_ms", "120"), ("latency_ms", True), ("attempt", "1"), ("http_status", 200.0),
     ("route", 5), ("route", True), ("model", ["gpt-4o"]), ("tags", {"k": 1}), ("tags", ["a"]), ("status", "OK"),
     ("cost_usd", "0.1"), ("ttft_ms", False)],
)  # fmt: skip
def test_no_lenient_conversions_for_requests(field: str, value: Any) -> None:
    with pytest.raises(BadInput) as info:
        decode_request(orjson.dumps({**REQ, field: value}))
    assert info.value.reason == "schema_violation", info.value.detail


@pytest.mark.parametrize(("field", "value"), [("passed", 1), ("passed", "true"), ("passed", "yes"), ("score", "0.7"),
                                              ("score", True), ("evaluator", 3), ("kind", "ONLINE")])  # fmt: skip
def test_no_lenient_conversions_for_verdicts(field: str, value: Any) -> None:
    with pytest.raises(BadInput) as info:
        decode_verdict(orjson.dumps({**VER, field: value}))
    assert info.value.reason == "schema_violation", info.value.detail


def test_the_conversions_that_are_accepted() -> None:
    event = decode_request(orjson.dumps({**REQ, "latency_ms": 120, "ttft_ms": 40, "cost_usd": 1, "route": "  r.a  "}))
    assert (event.latency_ms, event.ttft_ms, event.cost_usd, event.route) == (120.0, 40.0, 1.0, "r.a")
    assert isinstance(event.latency_ms, float)
    for ts in (NOW, NOW / 1000, NOW // 1000, str(NOW), "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00",
               "2026-01-01T00:00:00", float(NOW)):  # fmt: skip
        assert decode_request(orjson.dumps({**REQ, "ts": ts})).ts == NOW, ts
    assert decode_verdict(orjson.dumps({**VER, "passed": None, "score": 1})).score == 1.0


@pytest.mark.parametrize("version", [99, 2, 0, -1, "1", 1.0, True, [1]])
def test_unknown_schema_version_has_its_own_reason(version: Any) -> None:
    with pytest.raises(BadInput) as info:
        decode_request(orjson.dumps({**REQ, "schema_version": version}))
    assert info.value.reason == "unsupported_schema_version"
    with pytest.raises(BadInput) as info:
        decode_verdict(orjson.dumps({**VER, "schema_version": version, "evaluator": 5}))  # wins over other errors
    assert info.value.reason == "unsupported_schema_version"
    assert decode_request(orjson.dumps({**REQ, "schema_version": 1})).schema_version == 1


BAD_TEXT = ["a\x1b[31mred\x1b[0m", "line\nbreak", "tab\there", "nul\x00", "del\x7f", "csi\x9b31m", "c1\x85x",
            "bidi\u202eevil", "iso\u2066x", "sep\u2028x"]  # fmt: skip


@pytest.mark.parametrize("text", BAD_TEXT)
def test_labels_refuse_control_and_bidi_characters(text: str) -> None:
    for field in REQUEST_LABELS:
        with pytest.raises(BadInput) as info:
            decode_request(orjson.dumps({**REQ, field: text}))
        assert info.value.reason == "invalid_label", field
        assert "\x1b" not in info.value.detail and field in info.value.detail
    for tags in ({"k": text}, {text: "v"}):
        with pytest.raises(BadInput) as info:
            decode_request(orjson.dumps({**REQ, "tags": tags}))
        assert info.value.reason == "invalid_label"
    for field in VERDICT_LABELS:
        with pytest.raises(BadInput) as info:
            decode_verdict(orjson.dumps({**VER, field: text}))
        assert info.value.reason == "invalid_label", field


def test_labels_accept_unicode_text() -> None:
    event = decode_request(orjson.dumps({**REQ, "route": "поддержка.ответ 🤖", "tags": {"équipe": "日本語"}}))
    assert event.route == "поддержка.ответ 🤖" and event.tags == {"équipe": "日本語"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"route": "r" * 257}, "too_long"), ({"route": "r" * 256}, None), ({"finish_reason": "f" * 65}, "too_long"),
     ({"tags": {f"k{i}": "v" for i in range(65)}}, "too_long"), ({"tags": {f"k{i}": "v" for i in range(64)}}, None),
     ({"tags": {"k" * 129: "v"}}, "too_long"), ({"tags": {"k": "v" * 257}}, "too_long"), ({"tags": {"": "v"}}, "schema_violation"),
     ({"route": ""}, "schema_violation"), ({"route": "   "}, "schema_violation")],
)  # fmt: skip
def test_label_length_limits(change: dict[str, Any], reason: str | None) -> None:
    raw = orjson.dumps({**REQ, **change})
    if reason is None:
        decode_request(raw)
        return
    with pytest.raises(BadInput) as info:
        decode_request(raw)
    assert info.value.reason == reason


def test_dead_letter_details_are_printable(prices: PriceBook) -> None:
    _, dead = one_request(orjson.dumps({**REQ, "route": "x\x1b]0;pwned\x07\u202e"}), prices)
    assert dead[0].reason == "invalid_label"
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202e]", dead[0].detail + dead[0].key_text)
    for name, value in dead[0].headers():
        value.decode("utf-8")


# -- finding 2 (ingest side): no event from the future ------------------------------------------------------
def test_events_ahead_of_the_worker_clock_are_dead_lettered(prices: PriceBook) -> None:
    skew = 300_000
    for ts, ok in ((NOW + skew, True), (NOW + skew + 1, False), ("2031-01-01T00:00:00Z", False), (NOW - 86_400_000, True)):
        requests, dead = one_request(orjson.dumps({**REQ, "ts": ts}), prices, max_future_ms=skew)
        assert (len(requests), [d.reason for d in dead]) == ((1, []) if ok else (0, ["ts_in_future"])), ts
        verdicts, dead = one_verdict(orjson.dumps({**VER, "ts": ts}), max_future_ms=skew)
        assert (len(verdicts), [d.reason for d in dead]) == ((1, []) if ok else (0, ["ts_in_future"])), ts
    out = decode_requests([RawMessage("t", 3, 0, None, orjson.dumps({**REQ, "ts": NOW + 10 * skew}))], prices,
                          max_bytes=1_000_000, now_ms=NOW, max_future_ms=skew)  # fmt: skip
    assert out.event_times == {} and "ahead of the worker's clock" in out.dead[0].detail


# -- the documented reasons ---------------------------------------------------------------------------------
def test_every_reason_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    tables = (REPO / "docs" / "tables.md").read_text()
    for reason in REASONS:
        assert f"`{reason}`" in readme, reason
        assert f"`{reason}`" in tables, reason
