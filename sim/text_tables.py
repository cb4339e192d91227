"""Tables for a person or a log: plain text that is never cut, and Markdown (a CI job summary, a pull request).

A table is plain data (a title, column names, rows of strings); the command line draws it on a terminal with Rich
and otherwise with :func:`text` or :func:`markdown`. Every cell is shown with its hidden characters made visible
(:func:`sim.text.visible`), so a site's free-text name cannot move the cursor or reorder a line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.text import visible


@dataclass(frozen=True)
class Table:
    """A titled table of strings; ``notes`` are lines shown after it (e.g. "and 12 more failing sites")."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def cells(table: Table) -> list[list[str]]:
    """The header and rows, each cell on one line with its hidden characters visible."""
    return [[visible(str(c)).replace("\n", " ") for c in row] for row in [table.columns, *table.rows]]


def text(table: Table) -> str:
    """The table as aligned plain text: columns two spaces apart, as wide as their widest cell, never cut."""
    grid = cells(table)
    widths = [max(len(row[i]) for row in grid) for i in range(len(table.columns))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(grid[0]), rule, *(line(row) for row in grid[1:])]
    return "\n".join([table.title, *body, *table.notes]) + "\n"


def markdown(table: Table) -> str:
    """The table as GitHub-flavoured Markdown: a bold title, a pipe table (pipes in cells escaped), its notes."""
    grid = [[_md_text(cell) for cell in row] for row in cells(table)]
    head = "| " + " | ".join(grid[0]) + " |"
    rule = "|" + "|".join("---" for _ in grid[0]) + "|"
    rows = ["| " + " | ".join(row) + " |" for row in grid[1:]]
    notes = [f"\n{_md_text(note)}" for note in table.notes]
    return "\n".join([f"**{_md_text(table.title)}**", "", head, rule, *rows, *notes]) + "\n"


def _md_text(value: str) -> str:
    """Text with Markdown's special characters (emphasis, links, HTML, pipes) escaped."""
    return "".join(f"\\{c}" if c in "\\*_`[]<>#|" else c for c in visible(value))
