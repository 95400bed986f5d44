"""Markdown tables for the reports the kit writes (the GPU check, the chat-ratio sweep)."""

from __future__ import annotations


def cell(value, fmt: str = "") -> str:
    """A value as a table cell: `-` where there is none."""
    return "-" if value is None else format(value, fmt)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])
