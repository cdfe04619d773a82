"""The names shared by the document model and the gate runner."""

from __future__ import annotations

from typing import Final

GATE_NAMES: Final[tuple[str, ...]] = (
    "lint",
    "types",
    "tests",
    "migrations",
    "acceptance",
    "deliverables",
)
"""Every gate an OS may require, in the order the runner runs them."""

DEFAULT_TIMEZONE: Final = "America/Sao_Paulo"
