"""A sharded run's shard files merged into its results folder's tables, equal to a single-process run's.

A single-process run orders sessions by start time, then site, then generation order, and numbers them in that
order. The shards' traces carry each session's site (its row label in the topology), so one stable sort of the
concatenated traces' keys (start time, site: 16 bytes a session) gives that order; the trace, records and session
verdicts are then written in it, renumbered, a block of :data:`BLOCK_ROWS` sessions at a time. Each block takes
its rows from every shard (a shard's sessions are in that order already, so a block reads the next few row
groups of each shard's files, :data:`sim.shard_files.ROW_GROUP_ROWS` rows each). Only the keys, one block and a
row group per shard and table are ever in memory: the merge's memory does not grow with the estate's sessions.
Link series need no order (each shard's, in plan order); site verdicts are put in order by
:func:`sim.targets.combine_site_verdicts`.

Each block is turned into the frame a single-process run has and written as that run's code writes it
(:func:`sim.records.conform`, pandas' Parquet schema), so the files read back equal. The merged tables are not
returned in memory: :class:`Stored` reads each from the folder when asked.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sim import records as rec
from sim import results, targets, workload
from sim.model.targets import Targets
from sim.scale import Shard

OUTCOME_COLUMNS = targets.OUTCOME_COLUMNS  # a shard's session verdicts: the rest is in its records
BLOCK_ROWS = 500_000  # sessions merged and written at a time: ~0.3 GB of frames for the three tables


@dataclass(frozen=True)
class Merged:
    """What a merge wrote (the folder's tables) and the verdicts per site and site class it kept."""

    sessions: int
    sites: pd.DataFrame
    classes: pd.DataFrame


def shards(folder: Path, plan: list[Shard], run_targets: Targets) -> Merged:
    """Merge the shards of ``plan`` into the run's tables, written into ``folder`` (where the shards are).

    Writes the tables of :func:`sim.results.write_tables` (trace, records, links, session verdicts) and returns
    the site and site-class verdicts, for :func:`sim.results.write_run` to write the rest.
    """
    folder = Path(folder)
    paths = {table: [shard.path(folder, table) for shard in plan] for table in ("trace", "records",
                                                                                 "session_verdicts", "links")}
    shard_of, local = _order(paths["trace"])
    tables = {"records": (paths["records"], rec.RECORD_COLUMNS), "outcomes": (paths["session_verdicts"],
                                                                              OUTCOME_COLUMNS),
              "trace": (paths["trace"], workload.TRACE_COLUMNS)}
    readers = {name: [_Rows(path, columns) for path in found] for name, (found, columns) in tables.items()}
    with _Writers(folder) as out:
        for first in range(0, max(len(local), 1), BLOCK_ROWS):
            rows = slice(first, first + BLOCK_ROWS)
            block = {name: _block(readers[name], tables[name][1], shard_of[rows], local[rows], first)
                     for name in tables}
            out.flush()  # the previous block's writes: one block written while the next is read
            out.write("records", rec.conform(block["records"], rec.RECORD_COLUMNS))
            out.write("sessions", block["records"][targets.SESSION_KEYS].assign(
                **{name: block["outcomes"][name] for name in OUTCOME_COLUMNS}))
            out.write("trace", block["trace"])
        for path in paths["links"]:  # one file: its writes one after another
            out.flush()
            out.write("links", rec.conform(_frame(pq.read_table(path, columns=list(rec.LINK_COLUMNS)),
                                                  rec.LINK_COLUMNS), rec.LINK_COLUMNS))
    sites = targets.combine_site_verdicts([pd.read_parquet(s.path(folder, "site_verdicts")) for s in plan])
    return Merged(len(local), sites, targets.class_verdicts(sites, run_targets))


def _order(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """For each merged row in order: the shard it comes from and its row there (a stable sort of the keys)."""
    keys = [pq.read_table(path, columns=["start_s", "site_index"]) for path in paths]
    counts = np.array([len(k) for k in keys], dtype=np.int64)
    keys = pa.concat_tables(keys)
    order = pc.sort_indices(keys, sort_keys=[("start_s", "ascending"), ("site_index", "ascending")])
    order = order.to_numpy().astype(np.int64)  # stable; Arrow gives uint64
    del keys
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    shard_of = np.repeat(np.arange(len(paths), dtype=np.int32), counts)[order]
    return shard_of, order - starts[shard_of]


class _Rows:
    """One shard's table, read a row group at a time (the last one kept: the next block starts in it).

    Text is read as stored (dictionary-encoded): blocks move small codes, decoded once when written.
    """

    def __init__(self, path: Path, columns: dict[str, str]) -> None:
        text = [name for name, dtype in columns.items() if dtype == "str"]
        self.file, self.columns = pq.ParquetFile(path, read_dictionary=text), list(columns)
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.metadata.num_row_groups)]
        self.bounds = np.concatenate([np.zeros(1, np.int64), np.cumsum(sizes, dtype=np.int64)])
        self.kept: dict[int, pa.Table] = {}

    def take(self, rows: np.ndarray) -> pa.Table:
        """The shard's ``rows`` (positions in it, any order; a contiguous run reads least), in that order."""
        first = int(np.searchsorted(self.bounds, rows.min(), side="right")) - 1
        last = int(np.searchsorted(self.bounds, rows.max(), side="right")) - 1
        groups = pa.concat_tables([self._group(g) for g in range(first, last + 1)])
        offset = int(rows[0] - self.bounds[first])
        if rows[-1] - rows[0] + 1 == len(rows) and np.all(np.diff(rows) == 1):  # a run in order: no copy
            return groups.slice(offset, len(rows))
        return groups.take(rows - self.bounds[first])

    def _group(self, g: int) -> pa.Table:
        if g not in self.kept:
            self.kept = {g: self.file.read_row_group(g, columns=self.columns)}
        return self.kept[g]


def _block(readers: list[_Rows], columns: dict[str, str], shard_of: np.ndarray, local: np.ndarray,
           first: int) -> pd.DataFrame:
    """Merged rows ``first``.. of one table, from the shards' rows ``local`` of ``shard_of``; sessions renumbered."""
    if not len(local):  # a run without sessions: its tables are empty, with their columns
        return _frame(readers[0].file.read(columns=readers[0].columns), columns)
    by_shard = np.argsort(shard_of, kind="stable")
    cuts = np.flatnonzero(np.diff(shard_of[by_shard])) + 1
    pieces = [readers[int(shard_of[part[0]])].take(local[part]) for part in np.split(by_shard, cuts)]
    back = np.empty_like(by_shard)
    back[by_shard] = np.arange(len(by_shard))
    frame = _frame(pa.concat_tables(pieces).unify_dictionaries().take(back), columns)
    if "session_id" in frame:
        frame["session_id"] = np.arange(first, first + len(frame), dtype="int64")
    return frame


def _frame(table: pa.Table, columns: dict[str, str]) -> pd.DataFrame:
    """The table as the frame ``pandas.read_parquet`` would give (text as pandas strings, numbers as numpy)."""
    out = {}
    for name in columns:
        column = table.column(name)
        out[name] = (column.cast(pa.large_string()).to_pandas() if columns[name] == "str"
                     else column.to_numpy())
    return pd.DataFrame(out, copy=False)


class _Writers:
    """One Parquet writer per table of the folder, each opened with its first block's schema.

    Writes run on two threads (Parquet encodes without Python's lock) while the next block is read; a block's
    writes start only when the previous block's have ended (each file's blocks in order; two blocks held at most).
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.open, self.pending = folder, {}, []
        self.threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="merge-writer")

    def write(self, name: str, frame: pd.DataFrame) -> None:
        """Append ``frame`` to table ``name`` (a key of :data:`sim.results.TABLE_FILES`), on a writer thread."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if name not in self.open:
            self.open[name] = pq.ParquetWriter(self.folder / results.TABLE_FILES[name], table.schema)
        self.pending.append(self.threads.submit(self.open[name].write_table, table))

    def flush(self) -> None:
        """Wait for every write submitted; raise the first one's error, if any failed."""
        pending, self.pending = self.pending, []
        for write in pending:
            write.result()

    def __enter__(self) -> _Writers:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flush()
        finally:
            self.threads.shutdown(wait=True)
            for writer in self.open.values():
                writer.close()
