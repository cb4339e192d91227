"""A user's table (CSV or Parquet) read cell by cell, with where each row is, for located errors.

Site inventories (:mod:`sim.inventory`) and measured traces (:mod:`sim.measured`) are tables a user gives. A
problem in one names the file, the row and the column: ``estate.csv:14 access: unknown profile 'fttc'; ...``.
For a CSV file the row is its line in the file (lines starting ``#`` before the header are comments); for a
Parquet file it is the row's number (the first row is 1).
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.errors import ScenarioError

SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class Table:
    """A table's cells as given, by column, and where each row is in its file.

    Attributes:
        file: The file as it is shown in messages.
        frame: The cells (CSV: text; Parquet: as stored), one column per column of the file.
        rows: Per row, its line (CSV) or row number (Parquet), 1-based.
        header_line: Where the column names are (CSV: its line, after any ``#`` comment lines; Parquet: None).
    """

    file: str
    frame: pd.DataFrame
    rows: np.ndarray
    header_line: int | None

    def error(self, message: str, row: int | None = None, column: str | None = None) -> ScenarioError:
        """A :class:`ScenarioError` at the ``row``-th row (0-based position) and ``column``, or at the header."""
        line = int(self.rows[row]) if row is not None else self.header_line
        return ScenarioError(message, file=self.file, line=line, path=column)

    def check_columns(self, required: tuple[str, ...], allowed: tuple[str, ...]) -> None:
        """Every ``required`` column is there, and no column outside ``allowed`` (nearest names suggested).

        Raises:
            ScenarioError: At the header, naming the first missing or unknown column.
        """
        for name in self.frame.columns:
            if name not in allowed:
                raise self.error(f"unknown column {name!r}" + did_you_mean(str(name), list(allowed), "columns"))
        for name in required:
            if name not in self.frame.columns:
                raise self.error(f"missing column {name!r} (required: {', '.join(required)})")


def read(path: Path | str, shown: str | None = None) -> Table:
    """Read a CSV (UTF-8, a header row) or Parquet file.

    Args:
        path: The file.
        shown: How messages name it (default: ``path``).

    Raises:
        ScenarioError: The file is missing, not of a known kind, unreadable, empty, or a CSV row has more or
            fewer cells than the header.
    """
    path, shown = Path(path), shown or str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ScenarioError(f"a table is a .csv or .parquet file, not {suffix or 'a file without a suffix'!r}",
                            file=shown)
    if not path.is_file():
        raise ScenarioError("no such file" if not path.exists() else "is not a file", file=shown)
    table = _read_csv(path, shown) if suffix == ".csv" else _read_parquet(path, shown)
    if table.frame.empty:
        raise ScenarioError("the table has no rows", file=shown, line=table.header_line)
    return table


def _read_csv(path: Path, shown: str) -> Table:
    """A CSV file's cells as text; lines starting ``#`` before the header are comments (who made it, and how)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # utf-8-sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text (byte {exc.start}); save it as CSV UTF-8", file=shown) from None
    except OSError as exc:
        raise ScenarioError(f"cannot be read: {exc.strerror or exc}", file=shown) from None
    lines = text.splitlines(keepends=True)
    skipped = next((n for n, line in enumerate(lines) if not line.startswith("#")), len(lines))
    reader = csv.reader(io.StringIO("".join(lines[skipped:]), newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise ScenarioError("empty: a CSV table starts with a row of column names", file=shown,
                                line=skipped + 1)
        cells, rows = [], []
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # a blank line (a spreadsheet's trailing rows)
            if len(record) != len(header):
                raise ScenarioError(f"{len(record)} cells where the header has {len(header)}",
                                    file=shown, line=skipped + reader.line_num)
            cells.append(record)
            rows.append(skipped + reader.line_num)
    except csv.Error as exc:
        raise ScenarioError(f"not readable as CSV: {exc}", file=shown, line=skipped + reader.line_num) from None
    header = [name.strip() for name in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ScenarioError(f"column {repeated[0]!r} appears twice", file=shown, line=skipped + 1)
    frame = pd.DataFrame(cells, columns=header, dtype=object)
    return Table(shown, frame, np.asarray(rows, dtype=np.int64), skipped + 1)


def _read_parquet(path: Path, shown: str) -> Table:
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise ScenarioError(f"not readable as Parquet: {exc}".splitlines()[0], file=shown) from None
    return Table(shown, frame.reset_index(drop=True), np.arange(1, len(frame) + 1, dtype=np.int64), None)


def did_you_mean(word: str, choices: list[str], what: str) -> str:
    """``"; did you mean 'x'?"`` for the nearest of ``choices`` to ``word``, else ``"; <what>: a, b, ..."``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; {what}: {', '.join(sorted(choices))}" if choices else ""
