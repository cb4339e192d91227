"""Results folders: ``results/<scenario>/<timestamp>-<engine>-s<seed>/``, never half-written.

A run that did not finish never looks like one that did: it is written into a hidden ``.<name>.partial``
folder beside its final place and renamed only when everything (records, verdicts, ``meta.json``) is in it;
on any error or interrupt the partial folder is removed. A report can be redrawn from a finished folder alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import sim
from sim import records as rec
from sim.errors import TestbedError, mark_kept
from sim.targets import Verdicts

META_FILE = "meta.json"
TABLE_FILES = {"trace": "trace.parquet", "records": "records.parquet", "links": "links.parquet",
               "sessions": "session_verdicts.parquet"}  # a run's tables (session verdicts: ``sessions``)


@dataclass(frozen=True)
class RunFolder:
    """Where a run is being written (``partial``) and where it lands when finished (``final``)."""

    partial: Path
    final: Path


@contextlib.contextmanager
def run_folder(root: Path, scenario: str, engine: str, seed: int, *,
               keep_partial: bool | Callable[[Path], bool] = False, resume: Path | None = None) -> Iterator[RunFolder]:
    """Yield a partial folder; rename it to its final name only if the block finishes.

    Args:
        root: Root of the results folders.
        scenario: The scenario's name (the folder's parent): a plain name, never a path.
        engine: The engine's name (part of the folder's name).
        seed: The seed (part of the folder's name).
        keep_partial: Keep the partial folder on error or interrupt (a sharded run can resume from it); a
            function of the partial folder: keep it only if that says it holds work worth resuming.
        resume: An existing partial folder to carry on with, instead of a new one (kept on error).

    Raises:
        TestbedError: If ``resume`` is not an unfinished run's partial folder, ``scenario`` is not a plain
            name, or the folder cannot be created under ``root`` (a file in the way, no permission).

    An error or interrupt that ends the block leaves with the kept partial folder recorded on it
    (:func:`sim.errors.kept_folder`).
    """
    folder = _resumed(Path(resume)) if resume else _fresh(Path(root), scenario, engine, seed)
    created = _create(folder.partial, Path(root)) if resume is None else []
    kept = False
    try:
        yield folder
        if folder.final.exists():
            raise FileExistsError(f"results folder {folder.final} already exists")
        os.replace(folder.partial, folder.final)
    except BaseException as exc:
        _locate_disk_error(exc, folder.final.parent)
        kept = folder.partial.exists() and (resume is not None or _worth_keeping(keep_partial, folder.partial))
        if kept:
            mark_kept(exc, folder.partial)
        raise
    finally:
        if folder.partial.exists() and not kept:
            shutil.rmtree(folder.partial, ignore_errors=True)
            _remove_empty(created)


# What a run writes, to check the space before it starts. Its tables take about 130 bytes a session (Parquet;
# measured: full-fibre, 37,485 sessions, 4.7 MB of tables); a sharded run holds its shards' files and the merged
# tables at once, the shards' about 345 bytes a session (uncompressed Arrow files for the merge: measured, england,
# 5,268,122 sessions, 1.81 GB). The report is about 5 MB (plotly inline) with its figures' CSVs; 8 MB leaves a margin.
BYTES_PER_SESSION = 130
SHARD_BYTES_PER_SESSION = 345
REPORT_BYTES = 8e6


def check_space(root: Path, sessions: float, sharded: bool) -> None:
    """Refuse to start a run whose files would not fit where ``root`` is.

    Raises:
        TestbedError: If the filesystem of ``root`` (or of its nearest existing parent) has less free space than
            the run needs: saying how much it has and needs.
    """
    where = next((p for p in (Path(root), *Path(root).absolute().parents) if p.exists()), Path("/"))
    need_bytes = REPORT_BYTES + sessions * (BYTES_PER_SESSION + (SHARD_BYTES_PER_SESSION if sharded else 0))
    free_bytes = shutil.disk_usage(where).free
    if free_bytes < need_bytes:
        raise TestbedError(f"{root}: {free_bytes / 1e6:.1f} MB free, and this run writes about "
                           f"{need_bytes / 1e6:.0f} MB (its tables and report); free some space or choose another "
                           "--out")


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def _locate_disk_error(exc: BaseException, where: Path) -> None:
    """Name ``where`` (the folder the run writes in) on a disk error that names no file.

    Parquet and CSV writers report a full disk as an ``OSError`` with its errno but no file name.
    """
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS and not exc.filename:
        exc.filename = str(where)


def _worth_keeping(keep_partial: bool | Callable[[Path], bool], partial: Path) -> bool:
    return keep_partial(partial) if callable(keep_partial) else bool(keep_partial)


def _create(partial: Path, root: Path) -> list[Path]:
    """Create a new run's partial folder (and ``root`` if missing), or say why it cannot be.

    Returns the folders above it that this created, deepest first (to remove again if the run leaves nothing).
    """
    created = []
    for parent in partial.parents:
        if parent.exists() or parent.is_symlink():
            break
        created.append(parent)
    try:
        partial.mkdir(parents=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (partial.parent, *partial.parent.parents) if p.exists() and not p.is_dir()), root)
        raise TestbedError(f"{root}: cannot hold results folders: {blocker} is a file, not a folder; choose "
                           "another results root (--out)") from None
    except OSError as exc:
        raise TestbedError(f"{root}: cannot create a results folder there ({exc.strerror}); choose a results "
                           "root you can write to (--out)") from None
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: a failed run leaves no trace of itself."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _fresh(root: Path, scenario: str, engine: str, seed: int) -> RunFolder:
    _require_plain_name(scenario)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    final = root / scenario / f"{stamp}-{engine}-s{seed}"
    for n in range(2, 100):  # two runs of one scenario in the same second get distinct folders
        if not final.exists() and not final.with_name(f".{final.name}.partial").exists():
            break
        final = root / scenario / f"{stamp}-{engine}-s{seed}-{n}"
    return RunFolder(final.with_name(f".{final.name}.partial"), final)


def _require_plain_name(name: str) -> None:
    """Refuse a scenario name that would name a folder outside its place (``..``, ``a/b``) or a hidden one.

    Raises:
        TestbedError: If ``name`` is empty, ``.`` or ``..``, starts with a dot, or holds a path separator.
    """
    if not name or name.startswith(".") or any(char in name for char in "/\\\0"):
        raise TestbedError(f"scenario name {name!r} cannot name a results folder: use letters, digits, '_', '-' "
                           "and '.', starting with a letter or digit")


def _resumed(partial: Path) -> RunFolder:
    if is_complete(partial):
        raise TestbedError(f"{partial}: this run finished already; nothing to resume")
    if not (partial.is_dir() and partial.name.startswith(".") and partial.name.endswith(".partial")):
        raise TestbedError(f"{partial}: not an interrupted run's folder (those are named .<run>.partial)")
    return RunFolder(partial, partial.with_name(partial.name[1:-len(".partial")]))


def write_run(folder: Path, *, scenario_text: str, resolved: dict, meta: dict, trace: pd.DataFrame, sites: pd.DataFrame,
              records: pd.DataFrame, links: pd.DataFrame, verdicts: Verdicts, tables: bool = True) -> None:
    """Write every file of a run: scenario as given and resolved (SI units), trace, records, verdicts; meta last.

    With ``tables=False`` the files of :func:`write_tables` are in the folder already (a sharded run merges its
    shards there) and the rest is written beside them.
    """
    if tables:
        write_tables(folder, trace=trace, records=records, links=links, sessions=verdicts.sessions)
    (folder / "scenario.yaml").write_text(scenario_text)
    (folder / "resolved.json").write_text(json.dumps(resolved, indent=1) + "\n")
    sites.to_csv(folder / "sites.csv", index=False)
    write_verdicts(folder, verdicts)
    write_meta(folder, meta)


def write_tables(folder: Path, *, trace: pd.DataFrame, records: pd.DataFrame, links: pd.DataFrame,
                 sessions: pd.DataFrame) -> None:
    """Write a run's tables of sessions and link bins (Parquet): trace, records, links and session verdicts."""
    for name, frame in {"trace": trace, "records": records, "links": links, "sessions": sessions}.items():
        write_table(folder, name, frame)


def write_table(folder: Path, name: str, frame: pd.DataFrame) -> None:
    """Write one of a run's tables (a key of :data:`TABLE_FILES`); records and links after checking their schema.

    Raises:
        ValueError: If records or links do not have their schema's columns.
    """
    path = folder / TABLE_FILES[name]
    schema = {"records": rec.RECORD_COLUMNS, "links": rec.LINK_COLUMNS}.get(name)
    if schema:
        rec.write(frame, path, schema)
    else:
        frame.to_parquet(path, index=False)


def write_meta(folder: Path, meta: dict) -> None:
    """Write ``meta.json``, last of a folder's files: its presence marks the folder finished."""
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def write_verdicts(folder: Path, verdicts: Verdicts) -> None:
    """Write verdicts per site class (``verdicts.csv``) and per site, and both in JSON (sessions: a table)."""
    verdicts.classes.to_csv(folder / "verdicts.csv", index=False)
    verdicts.sites.to_csv(folder / "site_verdicts.csv", index=False)
    doc = {"all_pass": verdicts.all_pass,
           "site_classes": json.loads(verdicts.classes.to_json(orient="records")),
           "sites": json.loads(verdicts.sites.to_json(orient="records"))}
    (folder / "verdicts.json").write_text(dumps_indented(doc) + "\n")


def dumps_indented(doc: dict) -> str:
    """``json.dumps(doc, indent=1)``, the same text, for a dict of scalars and of lists of flat dicts of scalars.

    Python's JSON encoder is written in Python when it indents (an estate's site verdicts: 1.7 million values, over
    a second); here each list is encoded by the C encoder with a line break as its separator, then indented. A line
    break inside a string is always escaped, so the text's line breaks are the separators'. Any other shape is
    left to ``json.dumps``.
    """
    def flat(value) -> bool:  # a dict of scalars only (a set of the values' types: no Python loop per value)
        return type(value) is dict and bool(value) and _SCALARS.issuperset(map(type, value.values()))

    if not all(not isinstance(v, (dict, list)) or (isinstance(v, list) and all(map(flat, v)))
               for v in doc.values()) or not doc:
        return json.dumps(doc, indent=1)
    items = []
    for key, value in doc.items():
        text = json.dumps(value, separators=(",\n", ": ")) if isinstance(value, list) and value else json.dumps(value)
        if isinstance(value, list) and value:  # [{"k": v,\n"k2": v2},\n{...}]: each record's items a line apart
            # every separator indented, then those between records (after a record's "}", before the next's "{":
            # values are scalars, so nowhere else) opened into their own lines
            records = text[2:-2].replace(",\n", ",\n   ").replace("},\n   {", "\n  },\n  {\n   ")
            text = "[\n  {\n   " + records + "\n  }\n ]"
        items.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(items) + "\n}"


_SCALARS = frozenset({str, int, float, bool, type(None)})  # what JSON's scalars read back as


def meta(*, scenario: str, scenario_file: str, engine: str, seed: int, sessions: int, events: int,
         wall_s: float, extra: dict | None = None) -> dict:
    """The self-description of a run: versions, seed, engine, host and what was run."""
    return {
        "format_version": rec.FORMAT_VERSION, "package_version": sim.__version__, "git_revision": _git_revision(),
        "scenario": scenario, "scenario_file": scenario_file, "engine": engine, "seed": seed,
        "sessions": sessions, "events": events, "wall_s": round(wall_s, 3),
        "host": platform.node(), "kernel": platform.release(), "python": platform.python_version(),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "emulation": None, **(extra or {}),
    }


def latest(folder: Path) -> Path:
    """A run folder as given, or, for a scenario's results folder, its latest finished run.

    Raises:
        TestbedError: If there is no finished run there.
    """
    folder = Path(folder)
    if is_complete(folder):
        return folder
    runs = sorted(p for p in folder.glob("*") if p.is_dir() and is_complete(p) and (p / "records.parquet").is_file()
                  ) if folder.is_dir() else []
    if not runs:
        raise TestbedError(f"{folder}: no finished run here (give a run folder or a scenario's results folder)")
    return runs[-1]


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished run."""
    return (Path(folder) / META_FILE).is_file() and not Path(folder).name.endswith(".partial")


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
