"""Markdown tables as every report writes them (sweeps, bench, robustness, compare): ``| a | b |`` lines."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def row(cells: Iterable) -> str:
    """One line of a table: ``| a | b |``."""
    return "| " + " | ".join(map(str, cells)) + " |"


def table(columns: Sequence[str], rows: Iterable[Iterable], align: str = "") -> list[str]:
    """The header, its rule (``---:``, right-aligned, under each column that ``align`` marks ``r``) and the rows."""
    return [row(columns), row("---:" if a == "r" else "---" for a in align.ljust(len(columns), "l")), *map(row, rows)]
