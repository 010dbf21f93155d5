"""Dead letters: a message that cannot be accepted, with why and where it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass

from telemetry.contracts._text import FORBIDDEN
from telemetry.errors import BadInput

_UNPRINTABLE = re.compile(f"[{FORBIDDEN}]")


def printable(text: str) -> str:
    """``text`` safe for a header, a table row and a terminal: valid UTF-8 (lone surrogates
    escaped), control and bidi characters shown as escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The original bytes of a rejected message, its reason and its source coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    received_ms: int
    item: int = 0
    """0: the whole message; n >= 1: the n-th event an OTLP message carries (telemetry.otlp.split)."""

    @classmethod
    def of(cls, error: BadInput, *, topic: str, partition: int, offset: int,
           key: bytes | None, value: bytes | None, received_ms: int, item: int = 0) -> DeadLetter:  # fmt: skip
        return cls(topic, partition, offset, key, value, error.reason, printable(error.detail), received_ms, item)

    @property
    def coordinates(self) -> tuple[str, int, int, int]:
        """(topic, partition, offset, item) of the source message: a dead letter's identity."""
        return (self.topic, self.partition, self.offset, self.item)

    @property
    def size(self) -> int:
        return len(self.value) if self.value else 0

    @property
    def key_text(self) -> str:
        if not self.key:
            return ""
        return printable(self.key[:256].decode("utf-8", "replace"))

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers of the dead-letter message (the value is the original bytes)."""
        return [
            ("dlq.reason", self.reason.encode()),
            ("dlq.detail", self.detail[:1000].encode()),
            ("dlq.source.topic", self.topic.encode()),
            ("dlq.source.partition", str(self.partition).encode()),
            ("dlq.source.offset", str(self.offset).encode()),
        ] + ([("dlq.source.item", str(self.item).encode())] if self.item else [])
