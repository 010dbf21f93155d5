"""Fuzzing the decode path (Hypothesis): arbitrary JSON values in every field of both contracts,
arbitrary JSON documents and arbitrary bytes as whole messages. Every message is accepted or
dead-lettered with a documented reason; nothing raises; what is accepted honours the contract;
the fast path (bytes) and the dict path (parsed, OTel names, nulls dropped) agree."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from telemetry.contracts import RequestEvent, VerdictEvent
from telemetry.contracts._text import LABEL_PATTERN
from telemetry.contracts.decode import REASONS, _drop_nulls, _load_object, _refusal
from telemetry.contracts.otel import REQUEST_ALIASES, VERDICT_ALIASES
from telemetry.errors import BadInput
from telemetry.ingest.batch import RawMessage, decode_requests, decode_verdicts
from telemetry.pricing import PriceBook

NOW = 1_767_225_600_000
SKEW = 300_000
REQ: dict[str, Any] = {"request_id": "a", "ts": NOW - 1000, "route": "support.answer", "provider": "openai",
                       "model": "gpt-4o", "input_tokens": 10, "output_tokens": 5, "latency_ms": 120.5, "status": "ok"}  # fmt: skip
VER: dict[str, Any] = {"request_id": "a", "ts": NOW - 500, "evaluator": "judge@v1", "passed": True}
LABEL = re.compile(LABEL_PATTERN)
PRICES = PriceBook()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**63, 2**64, 2**70, 10**12, NOW, NOW + 10 * SKEW, 1e999, 1e308, 5.0, -0.0]),
)
texts = st.one_of(st.text(max_size=40), st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
                  st.sampled_from(["", " ", "2026-01-01T00:00:00Z", "1767225600000", "\x1b[31m", "null", "true", "Infinity"]))  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def encode(value: Any, ascii_only: bool) -> bytes:
    """JSON text as hostile producers write it: Infinity/NaN tokens, huge integers, lone surrogates."""
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def check(out: Any, messages: list[RawMessage], accepted: list[Any]) -> None:
    assert len(accepted) + len(out.dead) == len(messages)
    for d in out.dead:
        assert d.reason in REASONS, d
        for _, value in d.headers():
            value.decode("utf-8")
    for event in accepted:
        assert NOW - 10**12 < event.ts <= NOW + SKEW
        for name, field in type(event).model_fields.items():
            value = getattr(event, name)
            if isinstance(value, str):
                assert LABEL.match(value), (name, value)
                limit = next((m.max_length for m in field.metadata if getattr(m, "max_length", None)), 256)
                assert len(value) <= limit, (name, value)


def run_requests(raws: list[bytes | None]) -> None:
    messages = [RawMessage("llm.requests", 0, i, None, raw) for i, raw in enumerate(raws)]
    out = decode_requests(messages, PRICES, max_bytes=4096, now_ms=NOW, max_future_ms=SKEW)
    check(out, messages, [p.event for p in out.requests])
    for p in out.requests:
        e = p.event
        assert e.cached_input_tokens + e.cache_write_tokens <= e.input_tokens and e.reasoning_tokens <= e.output_tokens
        assert p.cost.usd is None or p.cost.usd >= 0


def run_verdicts(raws: list[bytes | None]) -> None:
    messages = [RawMessage("llm.verdicts", 0, i, None, raw) for i, raw in enumerate(raws)]
    out = decode_verdicts(messages, max_bytes=4096, now_ms=NOW, max_future_ms=SKEW)
    check(out, messages, out.verdicts)
    assert all(isinstance(v.passed, bool) for v in out.verdicts)


REQUEST_KEYS = sorted(set(RequestEvent.model_fields) | set(REQUEST_ALIASES) | {"gen_ai.response.finish_reasons"})
VERDICT_KEYS = sorted(set(VerdictEvent.model_fields) | set(VERDICT_ALIASES) | {"name", "attributes"})


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(REQUEST_KEYS), json_values), min_size=1, max_size=4),
       ascii_only=st.booleans())  # fmt: skip
def test_any_json_value_in_any_request_field(changes: list[tuple[str, Any]], ascii_only: bool) -> None:
    run_requests([encode({**REQ, **dict(changes)}, ascii_only), encode(dict(changes), ascii_only)])


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(VERDICT_KEYS), json_values), min_size=1, max_size=4),
       ascii_only=st.booleans())  # fmt: skip
def test_any_json_value_in_any_verdict_field(changes: list[tuple[str, Any]], ascii_only: bool) -> None:
    run_verdicts([encode({**VER, **dict(changes)}, ascii_only), encode(dict(changes), ascii_only)])


@FUZZ
@given(raws=st.lists(st.one_of(st.none(), st.binary(max_size=300), json_values.map(lambda v: encode(v, False))),
                     min_size=1, max_size=8))  # fmt: skip
def test_any_bytes_as_whole_messages(raws: list[bytes | None]) -> None:
    run_requests(raws)
    run_verdicts(raws)


def _dict_path(model: type[Any], raw: bytes) -> str:
    """The reason the dict path alone gives (``ok`` when it accepts)."""
    required = frozenset(n for n, f in model.model_fields.items() if f.is_required())
    try:
        model.model_validate(_drop_nulls(_load_object(raw), required))
    except BadInput as exc:
        return exc.reason
    except ValidationError as exc:
        return _refusal(exc.errors(include_url=False)).reason
    return "ok"


@FUZZ
@given(field=st.sampled_from(sorted(RequestEvent.model_fields)), value=json_values)
def test_the_fast_and_the_dict_path_agree(field: str, value: Any) -> None:
    from telemetry.contracts.decode import decode_request

    raw = encode({**REQ, field: value}, True)
    try:
        decode_request(raw)
        fast = "ok"
    except BadInput as exc:
        fast = exc.reason
    assert fast == _dict_path(RequestEvent, raw), raw[:300]


@pytest.mark.parametrize("raw", [b"", b" ", b"{}", b"[]", b"null", b"0", b'""', b"{" * 5000, b'{"a":' * 3000,
                                 b"\xef\xbb\xbf{}", b'{"ts":1e999999}', b'{"request_id":"\\ud800"}'])  # fmt: skip
def test_edge_documents(raw: bytes) -> None:
    run_requests([raw])
    run_verdicts([raw])
