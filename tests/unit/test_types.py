"""``mypy --strict`` (with the pydantic plugin, configured in pyproject.toml) passes on the
product package: part of the test command, so CI runs it."""

from __future__ import annotations

from pathlib import Path

from mypy import api

REPO = Path(__file__).resolve().parents[2]


def test_mypy_strict_passes_on_the_product_package() -> None:
    stdout, stderr, status = api.run(["--config-file", str(REPO / "pyproject.toml"), "--no-error-summary",
                                      "--cache-dir", str(REPO / ".mypy_cache")])  # fmt: skip
    assert status == 0, f"mypy --strict found problems:\n{stdout}{stderr}"
