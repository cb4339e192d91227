"""A sharded run's shard files merged into its results folder's tables, equal to a single-process run's.

A single-process run orders sessions by start time, then site, then generation order, and numbers them in that
order. The shards' traces carry each session's site (its row label in the topology), so one stable sort of the
concatenated traces' keys (start time, site: 16 bytes a session) gives that order; the trace, records and session
verdicts are then written in it, renumbered, a block of :data:`BLOCK_ROWS` sessions at a time. Each block takes
its rows from every shard (a shard's sessions are in that order already, so a block reads the next few record
batches of each shard's Arrow files (no decoding), :data:`sim.shard_files.ROW_GROUP_ROWS` rows each). Only the
keys, one block and a batch per shard and table are ever in memory: the merge's memory does not grow with the
estate's sessions.
Link series need no order (each shard's, in plan order); site verdicts are put in order by
:func:`sim.targets.combine_site_verdicts`.

Blocks stay Arrow tables, text as the shards' dictionary codes, and are written under the schema pandas gives a
single-process run's frames (:class:`_Writers`), so the files read back equal, with the same schema. A block's
three tables are read on three threads while the previous block is written on two. The merged tables are not
returned in memory: :class:`Stored` reads each from the folder when asked.
"""

from __future__ import annotations

import base64
import functools
import mmap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
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
    columns = {"records": rec.RECORD_COLUMNS, "trace": workload.TRACE_COLUMNS, "links": rec.LINK_COLUMNS,
               "sessions": {**{key: rec.RECORD_COLUMNS[key] for key in targets.SESSION_KEYS}, **OUTCOME_COLUMNS}}
    with _Writers(folder, columns) as out:
        if not len(local):  # a run without sessions: its tables are empty, with their columns
            for name in ("records", "trace"):
                out.write(name, readers[name][0].whole())
            out.write("sessions", pa.table({name: pa.array([], _EMPTY[dtype]) for name, dtype in
                                            columns["sessions"].items()}))
        _write_blocks(out, readers, shard_of, local)
        for path in paths["links"]:  # one file: its writes one after another
            out.flush()
            out.write("links", pq.read_table(path, columns=list(rec.LINK_COLUMNS),
                                             read_dictionary=_text(rec.LINK_COLUMNS)))
    sites = targets.combine_site_verdicts(_site_verdicts([s.path(folder, "site_verdicts") for s in plan]))
    return Merged(len(local), sites, targets.class_verdicts(sites, run_targets))


def _site_verdicts(paths: list[Path]) -> list[pd.DataFrame]:
    """The shards' site verdicts as one frame, or none if they have no rows.

    Read as Arrow tables and made a frame once: the frame reading each file into its own and concatenating them
    gives (a frame a file cost more than reading them). Where the files' schemas differ, a frame a file.
    """
    found = [pq.read_table(path) for path in paths]
    try:
        whole = pa.concat_tables(found)
    except pa.ArrowInvalid:  # schemas that differ: each file read as it was before, into its own frame
        return [pd.read_parquet(path) for path in paths]
    return [whole.to_pandas()] if whole.num_rows else []


def _write_blocks(out: _Writers, readers: dict[str, list[_Rows]], shard_of: np.ndarray, local: np.ndarray) -> None:
    """Write the records, session verdicts and trace in merged order, a block of :data:`BLOCK_ROWS` at a time.

    A block's three tables are read side by side (Parquet decoding and Arrow's takes run without Python's lock),
    while the previous block is written.
    """
    names = list(readers)
    with ThreadPoolExecutor(len(names), thread_name_prefix="merge-reader") as reads:
        for first in range(0, len(local), BLOCK_ROWS):
            rows = slice(first, first + BLOCK_ROWS)
            parts = _Parts(shard_of[rows], local[rows])
            block = dict(zip(names, reads.map(parts.take, [readers[n] for n in names], [first] * len(names))))
            out.flush()  # the previous block's writes: one block written while the next is read
            out.write("records", block["records"])
            out.write("sessions", pa.table({**{key: block["records"].column(key) for key in targets.SESSION_KEYS},
                                            **{key: block["outcomes"].column(key) for key in OUTCOME_COLUMNS}}))
            out.write("trace", block["trace"])
            for reader in (reader for found in readers.values() for reader in found):
                reader.release()  # the block's rows are copied out: what the shards' files lent is handed back


def _order(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """For each merged row in order: the shard it comes from and its row there (a stable sort of the keys)."""
    keys = [ipc.open_file(pa.memory_map(str(path))).read_all().select(["start_s", "site_index"]) for path in paths]
    counts = np.array([len(k) for k in keys], dtype=np.int64)
    keys = pa.concat_tables(keys)
    order = sort_keys(keys.column("start_s").to_numpy(), keys.column("site_index").to_numpy())
    del keys
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    shard_of = np.repeat(np.arange(len(paths), dtype=np.int32), counts)[order]
    return shard_of, order - starts[shard_of]


def sort_keys(start_s: np.ndarray, site_index: np.ndarray) -> np.ndarray:
    """The stable sort (positions, int64) of rows by start time (s), then site: as ``np.lexsort`` of both gives.

    The shards' rows come as runs already sorted by start time, which a stable sort of the times alone merges
    fast; only the rows that share a start time with another (sessions started on the hour, of many sites) are
    then put in site order among themselves.
    """
    order = np.argsort(start_s, kind="stable")
    times = start_s[order]
    tied = np.zeros(len(times), dtype=bool)
    tied[1:] = times[1:] == times[:-1]
    tied[:-1] |= tied[1:]
    rows = np.flatnonzero(tied)  # runs of equal times, each contiguous and in stable order
    if len(rows):
        order[rows] = order[rows][np.lexsort((site_index[order[rows]], times[rows]))]
    return order


def _text(columns: dict[str, str]) -> list[str]:
    return [name for name, dtype in columns.items() if dtype == "str"]


_EMPTY = {"str": pa.large_string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}


class _Rows:
    """One shard's table (an Arrow IPC file), read a record batch at a time (only that batch in memory).

    The file is memory-mapped: a batch is read where it lies, without a copy or a system call per column. The last
    batch read is kept: the next block starts in it. Text is as the shard wrote it (dictionary-encoded): blocks
    move small codes, and are written so. :meth:`release` hands the pages read so far back (the kernel keeps them
    cached, and a later read maps them again), so what the merge holds stays about one block.
    """

    def __init__(self, path: Path, columns: dict[str, str]) -> None:
        with open(path, "rb") as handle:
            self.mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.file, self.columns = ipc.open_file(pa.BufferReader(pa.py_buffer(self.mapped))), list(columns)
        sizes = [self.file.get_batch(g).num_rows for g in range(self.file.num_record_batches)]
        self.bounds = np.concatenate([np.zeros(1, np.int64), np.cumsum(sizes, dtype=np.int64)])
        self.kept: dict[int, pa.Table] = {}

    def whole(self) -> pa.Table:
        """Every row of the table."""
        return self.file.read_all().select(self.columns)

    def take(self, rows: np.ndarray) -> pa.Table:
        """The shard's ``rows`` (positions in it, any order; a contiguous run reads least), in that order."""
        first = int(np.searchsorted(self.bounds, rows.min(), side="right")) - 1
        last = int(np.searchsorted(self.bounds, rows.max(), side="right")) - 1
        groups = pa.concat_tables([self._group(g) for g in range(first, last + 1)])
        offset = int(rows[0] - self.bounds[first])
        if rows[-1] - rows[0] + 1 == len(rows) and np.all(np.diff(rows) == 1):  # a run in order: no copy
            return groups.slice(offset, len(rows))
        return groups.take(rows - self.bounds[first])

    def release(self) -> None:
        """Unmap the pages of the file read so far (it is unchanged: a later read maps them again from the cache)."""
        self.mapped.madvise(mmap.MADV_DONTNEED)

    def _group(self, g: int) -> pa.Table:
        if g not in self.kept:
            self.kept = {g: pa.Table.from_batches([self.file.get_batch(g)]).select(self.columns)}
        return self.kept[g]


class _Parts:
    """A block of merged rows, by shard: which rows each shard gives, and where they go in the block."""

    def __init__(self, shard_of: np.ndarray, local: np.ndarray) -> None:
        # Stable: each shard's rows in order. Shard numbers as 16-bit integers when they fit: numpy sorts those by
        # radix (a tenth of the time), the same order.
        by_shard = np.argsort(shard_of.astype(np.int16) if len(shard_of) and shard_of.max() < 2 ** 15 else shard_of,
                              kind="stable")
        cuts = np.flatnonzero(np.diff(shard_of[by_shard])) + 1
        self.pieces = [(int(shard_of[part[0]]), local[part]) for part in np.split(by_shard, cuts)]
        self.back = np.empty_like(by_shard)
        self.back[by_shard] = np.arange(len(by_shard))

    def take(self, readers: list[_Rows], first: int) -> pa.Table:
        """The block's rows of one table (merged rows ``first``..), from its shards' readers; sessions renumbered."""
        table = pa.concat_tables([readers[shard].take(rows) for shard, rows in self.pieces])
        table = table.unify_dictionaries().take(self.back)
        if "session_id" in table.column_names:
            at = table.column_names.index("session_id")
            table = table.set_column(at, "session_id", pa.array(np.arange(first, first + len(table), dtype="int64")))
        return table


class _Writers:
    """One Parquet writer per table of the folder; each file reads back as the frame a single-process run writes.

    A single-process run writes its frames with pandas (text as ``large_string``, pandas' schema metadata). Here
    the blocks are Arrow tables with text still dictionary-encoded (as read from the shards): each is written with
    its codes, under the schema pandas gives the table's columns (:func:`_pandas_schema`, recorded in the file as
    the schema Arrow restores on reading), so reading the file gives that run's types, text as ``large_string``.
    Writes run on two threads (Parquet encodes without Python's lock) while the next block is read; a block's
    writes start only when the previous block's have ended (each file's blocks in order; two blocks held at most).
    """

    def __init__(self, folder: Path, columns: dict[str, dict[str, str]]) -> None:
        self.folder, self.columns, self.open, self.pending = folder, columns, {}, []
        self.threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="merge-writer")

    def write(self, name: str, table: pa.Table) -> None:
        """Append ``table`` to table ``name`` (a key of :data:`sim.results.TABLE_FILES`), on a writer thread."""
        columns = self.columns[name]
        read_as = _pandas_schema(tuple(columns.items()))
        fields = [pa.field(n, table.schema.field(n).type if pa.types.is_dictionary(table.schema.field(n).type)
                           and dtype == "str" else read_as.field(n).type) for n, dtype in columns.items()]
        metadata = {**read_as.metadata, b"ARROW:schema": base64.b64encode(read_as.serialize().to_pybytes())}
        table = table.select(list(columns)).cast(pa.schema(fields, metadata=metadata))
        if name not in self.open:
            self.open[name] = pq.ParquetWriter(self.folder / results.TABLE_FILES[name], table.schema,
                                               use_dictionary=_text(columns),  # numbers: plain (cheaper, smaller)
                                               write_statistics=_statistics(name, columns))
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


def _statistics(name: str, columns: dict[str, str]) -> bool | list[str]:
    """The columns whose min and max each row group records: all of the links', the order's in the others.

    The session tables are in start-time order (and numbered in it), so a row group's bounds of ``start_s`` and
    ``session_id`` select a stretch of the day; any other column's span nearly its whole range in every row group
    and would prune nothing (text bounds were a quarter of writing those tables, numbers' about a tenth of the
    merge's CPU). The links are in site order, and a report reads a few sites' links by their bounds.
    """
    return True if name == "links" else [column for column in ("session_id", "start_s") if column in columns]


@functools.cache
def _pandas_schema(items: tuple[tuple[str, str], ...]) -> pa.Schema:
    """The Arrow schema (with pandas' metadata) of a frame of these columns (name, dtype) written by pandas."""
    columns = dict(items)
    frame = rec.conform(pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()}), columns)
    return pa.Table.from_pandas(frame, preserve_index=False).schema
