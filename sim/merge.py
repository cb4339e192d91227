"""A sharded run's shard files merged into its results folder's tables, equal to a single-process run's.

A single-process run orders sessions by start time, then site, then generation order, and numbers them in that
order. The shards' traces carry each session's site (its row label in the topology), so one stable sort of the
concatenated traces gives that order; the trace, records and session verdicts are taken in it and renumbered.
Link series need no order; site verdicts are put in order by :func:`sim.targets.combine_site_verdicts`.

Tables are read in Arrow, text as stored (dictionary-encoded, so reordering rows moves small codes), and
turned a column at a time into the frames a single-process run has: no table is ever held twice. Each is
written by the same code as a single-process run's (:func:`sim.results.write_table`), on two threads while
the next table is read.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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


@dataclass(frozen=True)
class Merged:
    """A sharded run's tables and verdicts, as a single-process run gives them."""

    trace: pd.DataFrame
    records: pd.DataFrame
    links: pd.DataFrame
    verdicts: targets.Verdicts


def shards(folder: Path, plan: list[Shard], run_targets: Targets) -> Merged:
    """Merge the shards of ``plan`` into the run's tables, written into ``folder`` (where the shards are).

    Writes the tables of :func:`sim.results.write_tables` (trace, records, links, session verdicts) and returns
    them, with the site and site-class verdicts, for :func:`sim.results.write_run` to write the rest.
    """
    folder = Path(folder)
    paths = {table: [shard.path(folder, table) for shard in plan] for table in ("trace", "records",
                                                                                 "session_verdicts", "links")}
    keys = _read(paths["trace"], {"start_s": "float64", "site_index": "int64"})
    order = pc.sort_indices(keys, sort_keys=[("start_s", "ascending"), ("site_index", "ascending")])  # stable
    del keys
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="merge-writer") as writer:
        writes: list[Future] = []

        def written(name: str, frame: pd.DataFrame) -> pd.DataFrame:
            writes.append(writer.submit(results.write_table, folder, name, frame))
            return frame

        records = written("records", _ordered(paths["records"], rec.RECORD_COLUMNS, order))  # largest first
        outcomes = _ordered(paths["session_verdicts"], OUTCOME_COLUMNS, order)
        sessions = written("sessions", records[targets.SESSION_KEYS].assign(
            **{name: outcomes[name] for name in OUTCOME_COLUMNS}))
        trace = written("trace", _ordered(paths["trace"], workload.TRACE_COLUMNS, order))
        links = written("links", _frame(_read(paths["links"], rec.LINK_COLUMNS), rec.LINK_COLUMNS))
        sites = targets.combine_site_verdicts([pd.read_parquet(s.path(folder, "site_verdicts")) for s in plan])
        _wait(writes)
    return Merged(trace, records, links, targets.Verdicts(sessions, sites, targets.class_verdicts(sites, run_targets)))


def _read(paths: list[Path], columns: dict[str, str], *, encoded: bool = False) -> pa.Table:
    """The shards' tables (only ``columns``) one after another.

    With ``encoded``, text columns stay dictionary-encoded as stored (one dictionary each): cheaper to take.
    """
    text = [name for name, dtype in columns.items() if dtype == "str"] if encoded else None
    table = pa.concat_tables([pq.read_table(path, columns=list(columns), read_dictionary=text) for path in paths])
    return table.unify_dictionaries() if encoded else table


def _ordered(paths: list[Path], columns: dict[str, str], order: pa.Array) -> pd.DataFrame:
    """The shards' tables (only ``columns``) as one frame with its rows in ``order``, sessions renumbered."""
    frame = _frame(_read(paths, columns, encoded=True), columns, order.to_numpy())
    if "session_id" in frame:
        frame["session_id"] = np.arange(len(frame), dtype="int64")
    return frame


def _frame(table: pa.Table, columns: dict[str, str], rows: np.ndarray | None = None) -> pd.DataFrame:
    """The table's rows (all, or ``rows`` in that order) as the frame ``pandas.read_parquet`` would give.

    Numbers go to writable arrays of their own (pandas writes into them), text stays in Arrow's memory (taken
    as codes, decoded once). A column at a time: each source column is freed once converted.
    """
    out = {}
    for name in columns:
        column = table.column(name)
        if columns[name] == "str":
            taken = column if rows is None else column.take(rows)
            out[name] = taken.cast(pa.large_string()).to_pandas()
        else:
            values = column.to_numpy()  # a view of Arrow's memory (read-only) when the column is one chunk
            out[name] = values[rows] if rows is not None else values if values.flags.writeable else values.copy()
        table = table.drop_columns(name)
    return pd.DataFrame(out, copy=False)


def _wait(writes: list[Future]) -> None:
    """Wait for every write; raise the first one's error, if any failed."""
    for write in writes:
        write.result()
