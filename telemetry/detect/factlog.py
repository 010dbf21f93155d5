"""The facts log: how the joining workers hand facts to the one detection owner. Pure.

Every joining worker publishes, after a batch is stored, the batch's request and verdict facts
and its per-source event times to ``<prefix>internal.facts`` (one partition). The worker that
owns that partition runs the detectors over the whole group's traffic, so each route's
detectors see all of the route's events and an incident pages once however many workers run.

Wire format: one JSON object per record, ``{"v": 1, "t": [[topic, partition, ts_ms], ...],
"r": [[request fact fields...], ...], "q": [[verdict fact fields...], ...]}``, fields in the
dataclasses' order; at most :data:`CHUNK` facts per record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

import orjson

from telemetry.detect.facts import RequestFact, VerdictFact

VERSION = 1
CHUNK = 4000
_REQUEST_ROW = attrgetter(*(f.name for f in fields(RequestFact)))
_VERDICT_ROW = attrgetter(*(f.name for f in fields(VerdictFact)))


class FactLogError(ValueError):
    """A record of the facts topic this version cannot read."""


@dataclass(slots=True)
class FactBatch:
    requests: list[RequestFact] = field(default_factory=list)
    verdicts: list[VerdictFact] = field(default_factory=list)
    event_times: dict[tuple[str, int], int] = field(default_factory=dict)


def encode(
    requests: Sequence[RequestFact], verdicts: Sequence[VerdictFact], event_times: Mapping[tuple[str, int], int]
) -> list[bytes]:
    """Records for one stored batch (the event times go with the first). At least one record
    when there are event times, so the owner's clock advances on batches of duplicates too."""
    times = [[t, p, ts] for (t, p), ts in event_times.items()]
    if not requests and not verdicts:
        return [orjson.dumps({"v": VERSION, "t": times, "r": [], "q": []})] if times else []
    out = []
    r = [_REQUEST_ROW(f) for f in requests]
    q = [_VERDICT_ROW(f) for f in verdicts]
    first = True
    while r or q:
        take_r, r = r[:CHUNK], r[CHUNK:]
        take_q, q = q[: CHUNK - len(take_r)], q[CHUNK - len(take_r) :]
        out.append(orjson.dumps({"v": VERSION, "t": times if first else [], "r": take_r, "q": take_q}))
        first = False
    return out


def decode(data: bytes | None) -> FactBatch:
    """Raises FactLogError for anything but a record :func:`encode` wrote."""
    try:
        obj: Any = orjson.loads(data or b"")
        if not isinstance(obj, dict) or obj.get("v") != VERSION:
            raise FactLogError("not a facts record of version 1")
        return FactBatch(
            [RequestFact(*row) for row in obj["r"]],
            [VerdictFact(*row) for row in obj["q"]],
            {(str(t), int(p)): int(ts) for t, p, ts in obj["t"]},
        )
    except FactLogError:
        raise
    except Exception as exc:  # noqa: BLE001 - a foreign or corrupt record
        raise FactLogError(f"unreadable facts record: {type(exc).__name__}") from None
