"""Registration of the CLI's traffic commands (simulate, replay, demo)."""

from __future__ import annotations

REGISTER: list = []  # type: ignore[type-arg]
