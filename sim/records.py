"""The record table: one row per session, the same columns from every engine; and link utilisation series.

This schema is the contract between the engines and everything after them (evaluation, reports,
comparisons). A test pins it; change it only with a new ``FORMAT_VERSION``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

FORMAT_VERSION = 3  # 2: app names from the registry, the traffic column; 3: transfers' setup_s, first_data_s

RECORD_COLUMNS = {
    "engine": "str",              # "des" or "emu"
    "session_id": "int64",
    "site": "str",
    "site_class": "str",
    "family": "str",
    "access_profile": "str",
    "technology": "str",
    "medium": "str",              # copper, fibre, radio, cable
    "app": "str",                 # the registry's name: video, telephony, record_view, image_urgent, ...
    "traffic": "str",             # stream (a call or session, both ways) or transfer (a size, one way)
    "kind": "str",                # within the app: gp_video, ct, record_fetch, aggregate, ...
    "direction": "str",           # up (from the site), down (to it), both (video)
    "urgency": "str",             # routine, urgent
    "far_profile": "str",         # a call's far end: the patient's line (an access profile), "" for the cloud
    "start_s": "float64",         # seconds since midnight
    "end_s": "float64",           # NaN when not completed
    "completed": "bool",
    "duration_s": "float64",      # transfer: completion time; stream: call length
    "setup_s": "float64",         # transfer: from its start until its request went (handshakes; 0 kept-alive)
    "first_data_s": "float64",    # transfer: from its start until its answer's first data came (NaN: not measured)
    "size_bytes": "float64",      # transfer: payload; stream: bytes received in the worse direction
    "mean_rate_bps": "float64",   # transfer: size / duration; stream: mean rate, worse direction
    "target_rate_bps": "float64",  # stream: recommended bitrate, the far end's direction (NaN for transfers)
    "min_rate_bps": "float64",    # stream: minimum bitrate, the far end's direction (NaN for transfers)
    "share_at_target": "float64",  # stream: share of call time at the target rate, worse direction
    "share_below_min": "float64",  # stream: share of call time below the minimum, worse direction
    "one_way_delay_s": "float64",  # stream: mean one-way delay, worse direction
    "one_way_delay_p95_s": "float64",  # stream: 95th percentile over call time, worse direction
    "jitter_s": "float64",        # stream: mean interarrival jitter, worse direction
    "loss": "float64",            # stream: share of media lost, worse direction
    "queue_delay_s": "float64",   # mean queueing delay on the path (transfer: at its start), worse direction
    "rtt_s": "float64",           # round-trip time (transfer: at its start, queueing included)
    "bottleneck": "str",          # what limited it most: access_up, access_down, aggregation_up, home, ...;
    #                               a call that yielded to transfers filling a link's queue: access_up_tcp_queue, ...
}

LINK_COLUMNS = {
    "engine": "str",
    "link": "str",                # e.g. "gp-adsl/up"
    "site": "str",                # "" for a shared link
    "kind": "str",                # access or aggregation
    "direction": "str",           # up or down
    "capacity_bps": "float64",
    "bin_start_s": "float64",     # seconds since midnight
    "bin_s": "float64",
    "utilisation": "float64",     # mean share of capacity in use over the bin
}


def conform(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Return ``frame`` with exactly ``columns``, in order and of their dtypes.

    Raises:
        ValueError: If a column is missing or extra.
    """
    check_names(list(frame.columns), columns)
    frame = frame[list(columns)]
    differ = {name: dtype for name, dtype in columns.items() if str(frame[name].dtype) != dtype}
    return frame.astype(differ) if differ else frame


def check_names(names: list[str], columns: dict[str, str]) -> None:
    """Check that a table has exactly the schema's column names (in any order).

    Raises:
        ValueError: If a column is missing or extra.
    """
    missing = [c for c in columns if c not in names]
    extra = [c for c in names if c not in columns]
    if missing or extra:
        raise ValueError(f"record table columns differ: missing {missing}, unexpected {extra}")


def write(frame: pd.DataFrame, path: Path, columns: dict[str, str]) -> None:
    """Write a record or link table as Parquet, after checking its schema."""
    conform(frame, columns).to_parquet(path, index=False)


def read(path: Path, columns: dict[str, str], only: list[str] | None = None, filters: list[tuple] | None = None,
         categories: bool = False) -> pd.DataFrame:
    """Read a record or link table from Parquet and check its schema.

    Args:
        path: The Parquet file.
        columns: The table's schema (every column must be in the file, and no other).
        only: Read just these of its columns (default: all), e.g. the few a report draws.
        filters: Read just the rows these conditions select (``pandas.read_parquet``'s filters, e.g.
            ``[("site", "in", names)]``), in the file's order.
        categories: Text columns as pandas categoricals, as stored (for millions of rows of a few distinct
            values: a fraction of the memory, and quicker to group by).

    Raises:
        ValueError: If the file's columns differ from ``columns``, or ``only`` names one not in it.
    """
    check_names(pq.read_schema(path).names, columns)
    wanted = list(columns) if only is None else list(only)
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise ValueError(f"no such record table columns: {unknown}")
    dtypes = {c: "category" if categories and columns[c] == "str" else columns[c] for c in wanted}
    text = [c for c, dtype in dtypes.items() if dtype == "category"]
    return conform(read_parquet(path, columns=wanted, filters=filters, read_dictionary=text or None), dtypes)


def read_parquet(path: Path, columns: list[str] | None = None, filters: list[tuple] | None = None,
                 read_dictionary: list[str] | None = None) -> pd.DataFrame:
    """``pandas.read_parquet(path, ...)``'s frame, read by Arrow and made a frame by Arrow's own conversion.

    The same frame, column types and all (``tests/test_records.py``), in a third to a half of the time on an
    estate's millions of rows: pandas' reader converts the same Arrow table column by column through its own type
    mapping (benchmarks/README.md, 2026-12-04).
    """
    return pq.read_table(path, columns=columns, filters=filters, read_dictionary=read_dictionary).to_pandas()
