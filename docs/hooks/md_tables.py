"""Markdown helpers of the generated reference tables (``reference_tables``,
``interface_tables``)."""

from __future__ import annotations

from typing import Any


class DocsError(RuntimeError):
    """Something in the code has no documentation the tables can show."""


def cell(text: Any) -> str:
    """``text`` safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def num(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        return f"{x:g}" if abs(x) < 1e6 else f"{x:.0e}".replace("e+", "e")
    if isinstance(x, int) and abs(x) >= 10_000:
        return f"{x:,}"
    return str(x)

