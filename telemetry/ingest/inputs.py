"""Where every input message goes: the events it carries and the shard of each. Pure.

Input topics and what their messages hold:

- ``<prefix>requests`` / ``<prefix>verdicts``: one contract JSON event per message (forwarded
  as is: the join stage decodes it); an OTLP/JSON export request published there by mistake is
  read as OTLP (a ``resourceSpans`` / ``resourceLogs`` envelope), not refused as a bad event;
- ``TELEMETRY_OTLP_SPANS_TOPIC`` / ``TELEMETRY_OTLP_LOGS_TOPIC``: one OTLP export request per
  message, many events each (``telemetry.otlp.split``).

Every event goes to the shard of its request id (:func:`telemetry.ingest.shard.shard_of`); one
without a readable id (it will be a dead letter) goes to a shard picked by its offset, so a
flood of them spreads over the shards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from telemetry.ingest.bundle import Forward
from telemetry.ingest.shard import Kind, routing_id, shard_of
from telemetry.otlp.split import Split, split_logs, split_traces
from telemetry.settings import Settings

_ENVELOPES = (b'"resourceSpans"', b'"resource_spans"', b'"resourceLogs"', b'"resource_logs"')


def otlp_envelope(value: bytes | None) -> Literal["traces", "logs"] | None:
    """``traces`` / ``logs`` when ``value`` is an OTLP/JSON export request (its top-level key
    within the first bytes), else None. A byte scan: contract events never start that way."""
    if not value or value[:1] != b"{":
        return None
    head = value[:48]
    if _ENVELOPES[0] in head or _ENVELOPES[1] in head:
        return "traces"
    if _ENVELOPES[2] in head or _ENVELOPES[3] in head:
        return "logs"
    return None


class InputRouter:
    """Routes records of every input topic of ``settings`` to ``shards`` join shards."""

    def __init__(self, settings: Settings, shards: int) -> None:
        self.settings = settings
        self.shards = shards
        self.mapping = settings.span_mapping()
        self.counters: Counter[str] = Counter()

    def otlp_kind(self, topic: str, value: bytes | None) -> Literal["traces", "logs"] | None:
        """Whether a record is read as OTLP, and which signal."""
        s = self.settings
        if topic == s.otlp_spans_topic:
            return "traces"
        if topic == s.otlp_logs_topic:
            return "logs"
        return otlp_envelope(value)

    def split(self, value: bytes | None, signal: Literal["traces", "logs"]) -> Split:
        """The items of one OTLP message. Never raises."""
        s = self.settings
        split = split_traces if signal == "traces" else split_logs
        out = split(value, self.mapping, encoding=s.otlp_encoding, max_bytes=s.max_message_bytes)
        c = self.counters
        c["otlp.messages"] += 1
        c["otlp.spans"] += out.spans
        c["otlp.log_records"] += out.log_records
        c["otlp.events"] += sum(1 for i in out.items if i.refusal is None)
        for reason, n in out.skipped.items():
            c[f"otlp.skipped.{reason}"] += n
        return out

    def contract_forward(self, r: Any) -> tuple[Kind, Forward]:
        """A contract JSON record of the requests or verdicts topic, as is."""
        kind: Kind = "requests" if r.topic == self.settings.requests_topic else "verdicts"
        shard = 0
        if self.shards > 1:
            rid = routing_id(kind, r.value)
            shard = shard_of(rid, self.shards) if rid is not None else r.offset % self.shards
        return kind, Forward(shard, r.topic, r.partition, r.offset, int(r.timestamp or 0), r.key, r.value)

    def otlp_forwards(self, r: Any, split: Split) -> list[tuple[Kind, Forward]]:
        """The items of one OTLP record, each to its shard, with the record's coordinates."""
        out: list[tuple[Kind, Forward]] = []
        for item in split.items:
            rid = item.routing_id
            shard = shard_of(rid, self.shards) if rid is not None else (r.offset + item.item) % self.shards
            out.append((item.kind, Forward(shard, r.topic, r.partition, r.offset, int(r.timestamp or 0), r.key,
                                           item.value, item.item, item.refusal)))  # fmt: skip
        return out

    def route(self, records: Sequence[Any]) -> list[tuple[Kind, Forward]]:
        """Every event of ``records`` (any input topic), in input order. Never raises."""
        out: list[tuple[Kind, Forward]] = []
        for r in records:
            signal = self.otlp_kind(r.topic, r.value)
            if signal is None:
                out.append(self.contract_forward(r))
            else:
                out.extend(self.otlp_forwards(r, self.split(r.value, signal)))
        return out
