"""Shard files that prove themselves: written whole or not at all, on disk before they count, checked on resume.

Each file is written under a temporary name, flushed to disk (``fsync``), renamed into place, and its folder
flushed too, so a crash or power cut leaves either the old state or the new one. A shard's ``done.json``, written
the same way and last, records each of its files' size (bytes) and SHA-256; a shard counts as done only while
its files still match (a truncated, altered or missing file makes it run again).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

CHUNK_BYTES = 1 << 20  # read a file in 1 MiB pieces to hash it
# Rows per Parquet row group of a shard's tables: the merge reads each shard a row group at a time, in blocks of
# sessions spread over every shard (sim.merge), so what it holds is about this many rows per shard and table.
ROW_GROUP_ROWS = 4096


def write_parquet(frame: pd.DataFrame, path: Path) -> dict:
    """Write ``frame`` to ``path`` durably and atomically; return its ``{"bytes", "sha256"}``."""
    return write_bytes(to_parquet(frame), path)


def write_table(frame: pd.DataFrame, path: Path) -> dict:
    """:func:`write_parquet`, or for a ``.arrow`` path :func:`to_arrow`'s file; return its ``{"bytes", "sha256"}``."""
    return write_bytes(to_bytes(frame, path), path)


def to_bytes(frame: pd.DataFrame, path: Path) -> bytes | pa.Buffer:
    """``frame`` as the bytes of the file ``path`` names: Arrow IPC for ``.arrow``, else Parquet."""
    return to_arrow(frame) if Path(path).suffix == ".arrow" else to_parquet(frame)


def to_arrow(frame: pd.DataFrame) -> pa.Buffer:
    """``frame`` as an Arrow IPC file: uncompressed, text as codes, batches of :data:`ROW_GROUP_ROWS` rows.

    Each text column has one dictionary for the whole file. Read a batch at a time, such a file costs almost nothing to
    read (Parquet's decoding was most of the merge's reading), at about 2.5 times Parquet's bytes. The file is written
    twice: once only to count its bytes, then into a buffer of that size (a growing buffer was copied over and over,
    and then copied out: 40% of a shard's writing).
    """
    # One thread: a shard's columns are converted without a copy, and pyarrow would start a pool of threads per
    # table for them (as many as the machine's cores, beside the cluster's workers on them).
    table = pa.Table.from_pandas(frame, preserve_index=False, nthreads=1).combine_chunks()
    columns = [column.dictionary_encode() if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
               else column for column in table.columns]
    table = pa.table(columns, names=table.column_names).replace_schema_metadata(table.schema.metadata)
    counted = pa.MockOutputStream()
    _write_ipc(counted, table)
    buffer = pa.allocate_buffer(counted.size())
    _write_ipc(pa.FixedSizeBufferWriter(buffer), table)
    return buffer


def _write_ipc(sink, table: pa.Table) -> None:
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=ROW_GROUP_ROWS)


def to_parquet(frame: pd.DataFrame) -> bytes:
    """``frame`` as the bytes of a Parquet file (what :func:`write_parquet` writes), e.g. to send elsewhere."""
    buffer = io.BytesIO()
    text = [name for name, column in frame.items() if not pd.api.types.is_numeric_dtype(column)
            and not pd.api.types.is_bool_dtype(column)]
    # Dictionary pages for text only: numbers rarely repeat, and trying them costs time and bytes.
    frame.to_parquet(buffer, index=False, row_group_size=ROW_GROUP_ROWS, use_dictionary=text)
    return buffer.getvalue()


def write_bytes(data: bytes | pa.Buffer, path: Path) -> dict:
    """Write ``data`` to ``path`` durably and atomically; return its ``{"bytes", "sha256"}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    _commit(tmp, path)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` as JSON to ``path`` durably and atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(doc, indent=1) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    _commit(tmp, path)


def file_digest(path: Path) -> dict:
    """The size (bytes) and SHA-256 (hex) of the file at ``path``."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sha.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def verified(done_path: Path, files: dict[str, Path]) -> dict | None:
    """The done record at ``done_path`` if every one of ``files`` (name -> path) matches it, else None.

    None also for a missing or unreadable record, or one that does not list every file.
    """
    try:
        done = json.loads(done_path.read_text(encoding="utf-8"))
        recorded = done["files"]
        matches = all(path.is_file() and recorded[name] == file_digest(path) for name, path in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return done if matches else None


def _commit(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path`` and flush their folder, so the rename itself survives a crash."""
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
