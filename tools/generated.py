"""A block of a document generated from the code, between two marker lines, and the command
line of the tools that write it (``python -m tools.<name> [--check]``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with what stands between the markers ``begin`` and ``end`` replaced by ``body``."""
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + "\n" + body + "\n" + text[stop:]


def main(doc: Path, updated: Callable[[str], str], module: str, argv: list[str]) -> int:
    """Rewrite ``doc``'s generated block; with ``--check`` exit 1 when it is out of date."""
    text = doc.read_text()
    new = updated(text)
    if "--check" in argv:
        if new != text:
            print(f"{doc} is out of date: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    doc.write_text(new)
    return 0
