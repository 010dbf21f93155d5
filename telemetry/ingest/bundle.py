"""Bundles: many input messages framed into one record of an internal topic. Pure.

The repartition stage forwards every input message to the shard that owns its request id.
One Kafka record per message would cost a produce and a consume per event; a bundle carries
all of a batch's messages for one shard (up to a size limit) with their original coordinates,
so dead letters, the event clock and every reason still name the topic, partition and offset
the producer wrote to.

Frame (big-endian): magic ``LTB2``, then per message: topic length (u16), partition (i32),
offset (i64), timestamp ms (i64), key length + 1 (u32, 0 = no key), value length + 1 (u32,
0 = no value), item (u32: 0 = the message itself, n = its n-th OTLP event), refusal reason
length (u16, 0 = none) and detail length (u16), then the topic, key, value, reason and detail
bytes. A refusal is decided where an OTLP message is split (``telemetry.otlp.split``) and
dead-lettered by the join stage like any other. ``LTB1`` bundles (no item, no refusal; written
before OTLP ingest) are still read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from telemetry.errors import BadInput
from telemetry.ingest.batch import RawMessage

MAGIC = b"LTB2"
_V1 = b"LTB1"
_HEAD = struct.Struct(">HiqqIIIHH")
_HEAD_V1 = struct.Struct(">HiqqII")


class BundleError(ValueError):
    """An internal record that is not a bundle this version can read (a bug or a foreign writer)."""


@dataclass(frozen=True, slots=True)
class Forward:
    """One input message on its way to ``shard``."""

    shard: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    item: int = 0
    refusal: BadInput | None = None

    @property
    def size(self) -> int:
        extra = len(self.refusal.reason) + len(self.refusal.detail) * 4 if self.refusal else 0
        return _HEAD.size + len(self.topic) + len(self.key or b"") + len(self.value or b"") + extra


def encode(messages: Iterable[Forward]) -> bytes:
    parts = [MAGIC]
    for m in messages:
        topic = m.topic.encode()
        key_len = 0 if m.key is None else len(m.key) + 1
        value_len = 0 if m.value is None else len(m.value) + 1
        reason = m.refusal.reason.encode()[:200] if m.refusal else b""
        detail = m.refusal.detail.encode("utf-8", "backslashreplace")[:2000] if m.refusal else b""
        parts.append(_HEAD.pack(len(topic), m.partition, m.offset, m.timestamp_ms, key_len, value_len,
                                m.item, len(reason), len(detail)))  # fmt: skip
        parts.append(topic)
        if m.key:
            parts.append(m.key)
        if m.value:
            parts.append(m.value)
        parts.append(reason)
        parts.append(detail)
    return b"".join(parts)


def decode(data: bytes | None, shard: int) -> list[RawMessage]:
    """The messages of one bundle, tagged with the shard it was read from. Raises BundleError."""
    if not data or data[:4] not in (MAGIC, _V1):
        raise BundleError("not a bundle (bad magic)")
    v1 = data[:4] == _V1
    out: list[RawMessage] = []
    pos, end = 4, len(data)
    view = memoryview(data)
    item, reason_len, detail_len = 0, 0, 0
    try:
        while pos < end:
            if v1:
                topic_len, partition, offset, _ts, key_len, value_len = _HEAD_V1.unpack_from(data, pos)
                pos += _HEAD_V1.size
            else:
                topic_len, partition, offset, _ts, key_len, value_len, item, reason_len, detail_len = _HEAD.unpack_from(
                    data, pos)
                pos += _HEAD.size
            topic = bytes(view[pos : pos + topic_len]).decode()
            pos += topic_len
            key = None
            if key_len:
                key = bytes(view[pos : pos + key_len - 1])
                pos += key_len - 1
            value = None
            if value_len:
                value = bytes(view[pos : pos + value_len - 1])
                pos += value_len - 1
            refusal = None
            if reason_len:
                reason = bytes(view[pos : pos + reason_len]).decode()
                pos += reason_len
                detail = bytes(view[pos : pos + detail_len]).decode("utf-8", "replace")
                pos += detail_len
                refusal = BadInput(reason, detail)
            if pos > end:
                raise BundleError("truncated bundle")
            out.append(RawMessage(topic, partition, offset, key, value, shard, item, refusal))
    except struct.error as exc:
        raise BundleError(f"truncated bundle: {exc}") from None
    return out


def plan(forwards: Sequence[Forward], max_bytes: int) -> list[tuple[int, list[Forward]]]:
    """Group forwards by shard into bundles of at most ``max_bytes`` (a larger message goes
    alone), keeping each shard's input order."""
    by_shard: dict[int, list[list[Forward]]] = {}
    sizes: dict[int, int] = {}
    for f in forwards:
        groups = by_shard.setdefault(f.shard, [[]])
        size = f.size
        if groups[-1] and sizes[f.shard] + size > max_bytes:
            groups.append([])
            sizes[f.shard] = 0
        groups[-1].append(f)
        sizes[f.shard] = sizes.get(f.shard, 0) + size
    return [(shard, group) for shard, groups in by_shard.items() for group in groups]
