"""The detection owner's reads of storage: the detectors' inputs (``telemetry.detect.inputs``).

Every ``REFRESH_EVERY_S`` of wall time (and at take-over) the owner runs each source of
:func:`sources` in a thread against the store and hands the merged result to the engine. A
source is a function ``(store, settings, routes, now_ms) -> fields`` returning some fields of
:class:`~telemetry.detect.inputs.StoredInputs` (``extra`` entries are merged by key); ``now_ms``
is the detectors' event time. A source may also write (the gate keeper records the transitions
it decides). A failing source is logged and counted; the others' inputs still arrive and the
failing one keeps its previous value.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from telemetry.detect.inputs import PromptVersion, StoredInputs
from telemetry.routes import RoutesConfig
from telemetry.settings import Settings
from telemetry.storage.store import Store

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 10.0

Source = Callable[[Store, Settings, RoutesConfig, int], Mapping[str, Any]]

PROMPT_LOOKBACK_MS = 7 * 86_400_000


def prompt_versions(store: Store, settings: Settings, routes: RoutesConfig, now_ms: int) -> Mapping[str, Any]:
    """Per route, when each prompt version was first served in the last 7 days (oldest first)."""
    rows = store.client.query(
        f"SELECT route, prompt_version, toUnixTimestamp64Milli(min(ts)) AS first_ms, count() AS n "
        f"FROM {store.db}.requests WHERE ts >= fromUnixTimestamp64Milli(%(since)s) AND ts <= fromUnixTimestamp64Milli(%(now)s) "
        f"AND prompt_version != '' GROUP BY route, prompt_version ORDER BY route, first_ms",
        parameters={"since": now_ms - PROMPT_LOOKBACK_MS, "now": now_ms},
    ).result_rows
    out: dict[str, list[PromptVersion]] = {}
    for route, version, first_ms, n in rows:
        out.setdefault(str(route), []).append(PromptVersion(str(version), int(first_ms), int(n)))
    return {"prompt_versions": {route: tuple(vs) for route, vs in out.items()}}


def sources() -> list[tuple[str, Source]]:
    """The sources, in the order they run: a new list (and a new tier-down review source, which
    caches its hourly content) for each refresher. One line per source."""
    from telemetry.worker.agreement_source import agreement_source
    from telemetry.worker.canary_source import canary_source
    from telemetry.worker.gate_keeper import TierDownReviewSource, gates_source

    return [
        ("gates", gates_source),
        ("prompt_versions", prompt_versions),
        ("tier_down_review", TierDownReviewSource()),
        ("judge_agreement", agreement_source),
        ("canary", canary_source),
    ]


class InputsRefresher:
    """Runs the sources; keeps the last good value of each."""

    def __init__(self, settings: Settings, routes: RoutesConfig) -> None:
        self.settings = settings
        self.routes = routes
        self.sources = sources()
        self.parts: dict[str, Mapping[str, Any]] = {}
        self.failures: dict[str, int] = {}

    def refresh(self, store: Store, now_ms: int) -> StoredInputs:
        """Blocks (run it in a thread)."""
        for name, source in self.sources:
            try:
                self.parts[name] = source(store, self.settings, self.routes, now_ms)
            except Exception:
                self.failures[name] = self.failures.get(name, 0) + 1
                log.exception("reading the detectors' inputs failed; keeping the previous ones",
                              extra={"source": name})  # fmt: skip
        fields: dict[str, Any] = {"as_of_ms": now_ms}
        extra: dict[str, Any] = {}
        for part in self.parts.values():
            for key, value in part.items():
                if key == "extra":
                    extra.update(value)
                else:
                    fields[key] = value
        fields["extra"] = extra
        known = {f.name for f in dataclasses.fields(StoredInputs)}
        return StoredInputs(**{k: v for k, v in fields.items() if k in known})
