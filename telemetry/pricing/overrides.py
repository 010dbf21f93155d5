"""User price overrides: a TOML file of ``[[price]]`` entries for private models and negotiated prices.

Format (see ``deploy/prices.example.toml``)::

    [[price]]
    provider = "internal"        # optional; any provider when omitted
    model = "acme-llm-7b"        # exact model name, or a glob ("acme-*", "gpt-4o*"); case-insensitive
    input_per_mtok = 0.10        # USD per million tokens
    output_per_mtok = 0.40
    cache_read_per_mtok = 0.01   # optional; cached tokens cost the input price without it
    cache_write_per_mtok = 0.125 # optional; same fallback
    effective_from = 2025-01-01  # optional TOML date or datetime (UTC if no offset); always when omitted

Which entry prices a request at time ``ts``: among the entries that match its provider and model
and are effective (``effective_from <= ts``), the most specific wins: an exact model name before a
glob, then an entry naming the provider before one for any provider, then the longer glob; among
equally specific entries (usually the same entry repeated with new dates) the newest
``effective_from`` wins, then the later one in the file. When no entry is effective at ``ts`` the
request falls back to genai-prices. Any problem with the file raises :class:`PriceFileError`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from telemetry.pricing.providers import normalize_provider
from telemetry.pricing.rates import Rates

__all__ = ["PriceFileError", "OverrideEntry", "Overrides", "load_overrides"]

SOURCE = "override"
_GLOB_CHARS = frozenset("*?[")


class PriceFileError(ValueError):
    """The price override file is missing, not TOML, or has an invalid entry. The message says where."""


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    provider: str | None = Field(None, min_length=1)
    model: str = Field(min_length=1)
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_read_per_mtok: float | None = Field(None, ge=0)
    cache_write_per_mtok: float | None = Field(None, ge=0)
    effective_from: datetime | None = None

    @field_validator("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("effective_from", mode="before")
    @classmethod
    def _when(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v) if "T" in v or " " in v else date.fromisoformat(v)
            except ValueError:
                raise ValueError("must be a TOML date (2025-01-01) or datetime (2025-01-01T00:00:00Z)") from None
        if isinstance(v, datetime):
            return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
        if isinstance(v, date):
            return datetime(v.year, v.month, v.day, tzinfo=UTC)
        if v is None:
            return None
        raise ValueError("must be a TOML date (2025-01-01) or datetime (2025-01-01T00:00:00Z)")


@dataclass(frozen=True, slots=True)
class OverrideEntry:
    """One validated ``[[price]]`` entry."""

    provider: str | None  # normalised; None = any provider
    model: str  # lower case, exact or glob
    is_glob: bool
    effective_from_ms: int | None
    rates: Rates
    position: int  # 0-based index in the file

    def matches(self, provider: str | None, model: str) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        model = model.lower()
        return fnmatch.fnmatchcase(model, self.model) if self.is_glob else model == self.model

    def rank(self) -> tuple[bool, bool, int, int, int]:
        literal = sum(1 for c in self.model if c not in _GLOB_CHARS)
        when = self.effective_from_ms if self.effective_from_ms is not None else -(2**63)
        return (not self.is_glob, self.provider is not None, literal, when, self.position)


@dataclass(frozen=True, slots=True)
class Overrides:
    """All entries of one override file and the version string recorded on costs it prices."""

    entries: tuple[OverrideEntry, ...]
    version: str

    def timeline(self, candidates: Sequence[tuple[str | None, str]]) -> tuple[list[int], list[Rates | None]] | None:
        """Step function of the winning entry over time for a request's lookup candidates.

        Returns ``(bounds, rates)`` with ``len(rates) == len(bounds) + 1``: the rates at ``ts`` are
        ``rates[bisect_right(bounds, ts)]`` (``None``: no entry effective, use genai-prices).
        ``None`` when no entry matches at all.
        """
        matching = [e for e in self.entries if any(e.matches(p, m) for p, m in candidates)]
        if not matching:
            return None
        bounds = sorted({e.effective_from_ms for e in matching if e.effective_from_ms is not None})
        rates: list[Rates | None] = []
        for i in range(len(bounds) + 1):
            start = bounds[i - 1] if i else None  # segment i starts at bounds[i - 1]
            effective = [
                e for e in matching
                if e.effective_from_ms is None or (start is not None and e.effective_from_ms <= start)
            ]
            rates.append(max(effective, key=OverrideEntry.rank).rates if effective else None)
        return bounds, rates


def _where(path: Path, position: int, raw: Any) -> str:
    model = raw.get("model") if isinstance(raw, dict) else None
    return f"{path}: [[price]] #{position + 1}" + (f" (model={model!r})" if model else "")


def load_overrides(path: Path) -> Overrides:
    """Read and validate an override file. Raises :class:`PriceFileError` with the file and entry."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PriceFileError(f"{path}: cannot read price overrides file: {e.strerror or e}") from e
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PriceFileError(f"{path}: not valid TOML: {e}") from e
    unknown = set(doc) - {"price"}
    if unknown:
        raise PriceFileError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected only [[price]] entries")
    raw_entries = doc.get("price", [])
    if not isinstance(raw_entries, list):
        raise PriceFileError(f"{path}: 'price' must be an array of tables, written [[price]]")
    version = f"{SOURCE} {path.name} sha256:{hashlib.sha256(data).hexdigest()[:8]}"
    entries: list[OverrideEntry] = []
    seen: dict[tuple[str | None, str, int | None], int] = {}
    for position, raw in enumerate(raw_entries):
        if not isinstance(raw, dict):
            raise PriceFileError(f"{_where(path, position, raw)}: must be a table")
        try:
            entry = _PriceEntry.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in e.errors()
            )
            raise PriceFileError(f"{_where(path, position, raw)}: {problems}") from None
        provider = normalize_provider(entry.provider)
        model = entry.model.strip().lower()
        when = int(entry.effective_from.timestamp() * 1000) if entry.effective_from is not None else None
        key = (provider, model, when)
        if key in seen:
            raise PriceFileError(
                f"{_where(path, position, raw)}: duplicates [[price]] #{seen[key] + 1} "
                "(same provider, model and effective_from)"
            )
        seen[key] = position
        rates = Rates(
            input=entry.input_per_mtok,
            output=entry.output_per_mtok,
            cache_read=entry.cache_read_per_mtok,
            cache_write=entry.cache_write_per_mtok,
            source=SOURCE,
            version=version,
            provider=provider or "*",
            model=model,
        )
        is_glob = any(c in _GLOB_CHARS for c in model)
        entries.append(OverrideEntry(provider, model, is_glob, when, rates, position))
    return Overrides(tuple(entries), version)
