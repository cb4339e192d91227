"""A measured trace (CSV or Parquet, one row per session) -> the trace the engines replay, each cell checked.

The table holds the trace's columns (:data:`sim.workload.TRACE_COLUMNS`, documented in docs/scenarios.md). Only
``site``, ``app`` and ``start_s`` are always required; a transfer needs ``direction`` and ``size_bytes``, a stream
``duration_s``; every other column may be left out (or a cell left empty) and is then filled from the app registry as
the generator fills it: ``traffic``, ``urgency`` and a stream's rates, packet size and ``up_share`` from the app,
``kind`` as the app's name, ``far_end`` as the app's, and a call to a patient's home reaches the catalogue's
``home_profile`` line unless ``far_profile`` names another. A transfer's ``connection`` is ``new`` unless the file says
``reused`` (a request on a kept-alive connection): what was measured, not the app's share. Sessions are numbered in
order of start (a ``session_id`` column, as a run's own ``trace.parquet`` has, is checked and renumbered), so a run's
trace replays as it ran. Errors name the file, row and column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim import tables, topology, units
from sim.model.scenario import Scenario
from sim.tables import Table, did_you_mean
from sim.workload import TRACE_COLUMNS

REQUIRED = ("site", "app", "start_s")
NUMBER_COLUMNS = tuple(name for name, dtype in TRACE_COLUMNS.items() if dtype in ("float64", "int64"))
STREAM_ONLY = ("duration_s", "target_rate_bps", "min_rate_bps", "packet_bytes")
TRANSFER_ONLY = ("size_bytes", "chunk_bytes")
FAR_LINE = ("far_down_bps", "far_up_bps", "far_rtt_s")


def replay(scenario: Scenario, topo: topology.Topology) -> pd.DataFrame:
    """The scenario's measured trace for the sites of ``topo`` (all the scenario's, or a shard's).

    Returns:
        Columns :data:`TRACE_COLUMNS`, in the order a generated trace has: by start time, then the site's row in
        the topology, then the file's order; sessions numbered from 0 in that order.

    Raises:
        ScenarioError: As :func:`read` (the file changed since the scenario was loaded).
    """
    trace = read(scenario, scenario.trace)
    position = {site: i for i, site in enumerate(topo.sites["site"])}
    trace = trace[trace["site"].isin(position)]
    order = np.lexsort((np.arange(len(trace)), trace["site"].map(position).to_numpy(), trace["start_s"].to_numpy()))
    trace = trace.iloc[order].reset_index(drop=True)
    trace["session_id"] = np.arange(len(trace), dtype="int64")
    return trace


def read(scenario: Scenario, shown: str) -> pd.DataFrame:
    """Read and check the scenario's measured trace (``scenario.trace``) against its sites, apps and window.

    Args:
        scenario: The validated scenario; ``trace`` is the file.
        shown: How messages name the file.

    Returns:
        One row per session in the file's order, columns :data:`TRACE_COLUMNS` (``session_id`` by that order).

    Raises:
        ScenarioError: At the file, row and column of the first problem: a missing or unknown column, a site or
            app the scenario does not have, a value of the wrong type, a negative or zero size, rate or duration,
            a session outside the scenario's window.
    """
    table = tables.read(Path(scenario.trace), shown)
    table.check_columns(REQUIRED, tuple(TRACE_COLUMNS))
    out = {"site": _names(table, "site", topology.site_names(scenario), "site"),
           "app": _names(table, "app", list(scenario.catalogue.apps), "app")}
    apps = [scenario.catalogue.apps[name] for name in out["app"]]
    _check_on_line(table, out["app"], apps)
    stream = np.array([app.traffic == "stream" for app in apps], dtype=bool)
    out["traffic"] = _matching(table, "traffic", np.where(stream, "stream", "transfer"))
    out["start_s"] = _start_s(table, scenario)
    for name in NUMBER_COLUMNS:
        if name not in out and name != "session_id":
            out[name] = _numbers(table, name)
    _check_session_ids(table)
    _fill_texts(table, out, apps, stream)
    _check_shapes(table, out, stream)
    _fill_rates(table, out, apps, stream)
    _fill_far_line(table, out, scenario)
    out["session_id"] = np.arange(len(table.frame), dtype="int64")
    return pd.DataFrame({name: out[name] for name in TRACE_COLUMNS}).astype(TRACE_COLUMNS)


def _texts(table: Table, column: str) -> np.ndarray:
    """The column's cells as stripped text, ``""`` where empty or absent."""
    if column not in table.frame.columns:
        return np.full(len(table.frame), "", dtype=object)
    values = table.frame[column]
    blank = values.isna().to_numpy()
    text = values.astype(str).str.strip().to_numpy(dtype=object)
    text[blank] = ""
    return text


def _names(table: Table, column: str, known: list[str], what: str) -> np.ndarray:
    """A column of names, each one of ``known`` (the nearest suggested when not)."""
    names = _texts(table, column)
    bad = ~pd.Series(names).isin(known).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        given = names[i]
        raise table.error(f"no {column} given" if not given else
                          f"unknown {what} {given!r}" + did_you_mean(given, known, f"known {what}s"), i, column)
    return names


def _check_on_line(table: Table, names: np.ndarray, apps: list) -> None:
    for i, app in enumerate(apps):
        if not app.on_line:
            raise table.error(f"app {names[i]!r} does not cross a site's line ({app.path}); it is not replayed",
                              i, "app")


def _matching(table: Table, column: str, expected: np.ndarray) -> np.ndarray:
    """A column the app decides: empty cells take ``expected``; a given cell must equal it."""
    given = _texts(table, column)
    bad = (given != "") & (given != expected)
    if bad.any():
        i = int(np.argmax(bad))
        raise table.error(f"{given[i]!r} where the app is a {expected[i]} (leave it empty)", i, column)
    return expected


def _numbers(table: Table, column: str, skip: np.ndarray | None = None) -> np.ndarray:
    """A column of numbers (NaN where empty or absent, or where ``skip`` is true: cells read otherwise).

    Raises:
        ScenarioError: At the first cell that is not a finite number.
    """
    if column not in table.frame.columns:
        return np.full(len(table.frame), np.nan)
    values = table.frame[column]
    if values.dtype == bool:
        raise table.error(f"{values.iloc[0]!r} is not a number", 0, column)
    blank = _texts(table, column) == ""
    if skip is not None:
        blank = blank | skip
    numbers = pd.to_numeric(values.where(~blank), errors="coerce").to_numpy(dtype=float)
    bad = ~blank & ~np.isfinite(numbers)
    if bad.any():
        i = int(np.argmax(bad))
        raise table.error(f"{values.iloc[i]!r} is not a number{_unit_hint(column)}", i, column)
    return numbers


def _unit_hint(column: str) -> str:
    unit = column.rsplit("_", 1)[-1]
    return {"s": " of seconds", "bytes": " of bytes", "bps": " of bit/s"}.get(unit, "")


def _start_s(table: Table, scenario: Scenario) -> np.ndarray:
    """Start times, each cell seconds since midnight or a clock time (``08:15:30.5``), inside the scenario's window."""
    texts = _texts(table, "start_s")
    clock = np.array([":" in t for t in texts], dtype=bool)
    starts = _numbers(table, "start_s", skip=clock).copy()
    for i in np.flatnonzero(clock):
        try:
            starts[i] = _clock(texts[i])
        except ValueError as exc:
            raise table.error(str(exc), int(i), "start_s") from None
    window = scenario.window
    bad = ~((starts >= window.start) & (starts < window.end))
    if bad.any():
        i = int(np.argmax(bad))
        span = f"{units.format_clock(window.start)}-{units.format_clock(window.end)}"
        raise table.error(f"no start given; a session starts in the scenario's window ({span})" if not texts[i] else
                          f"{texts[i]!r} ({units.format_clock(starts[i], True) if np.isfinite(starts[i]) else '?'}) "
                          f"is outside the scenario's window ({span}); widen the window or cut the trace", i, "start_s")
    return starts


def _clock(text: str) -> float:
    """A time of day ``08:15`` or ``08:15:30``, the seconds optionally with a fraction (``08:15:30.5``)."""
    whole, dot, fraction = text.partition(".")
    if not dot:
        return units.parse_clock(text)
    if whole.count(":") == 2 and fraction.isascii() and fraction.isdigit():
        try:
            return units.parse_clock(whole) + float(f"0.{fraction}")
        except ValueError as exc:
            raise ValueError(str(exc).replace(repr(whole), repr(text), 1)) from None
    raise ValueError(f"{text!r} is not a time of day (try '08:30', '08:30:15' or '08:30:15.5')")


def _check_session_ids(table: Table) -> None:
    """A ``session_id`` column, if any, holds distinct whole numbers (they are renumbered in order of start)."""
    if "session_id" not in table.frame.columns:
        return
    ids = _numbers(table, "session_id")
    bad = np.isnan(ids) | (ids != np.round(ids)) | pd.Series(ids).duplicated().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise table.error(f"{table.frame['session_id'].iloc[i]!r}: session ids are distinct whole numbers", i,
                          "session_id")


def _fill_texts(table: Table, out: dict, apps: list, stream: np.ndarray) -> None:
    """``kind``, ``direction``, ``urgency``, ``far_end``: as given, or as the app's; ``connection`` (new by default)."""
    kind = _texts(table, "kind")
    out["kind"] = np.where(kind == "", out["app"], kind)
    direction = _texts(table, "direction")
    out["direction"] = _allowed(table, "direction", np.where(stream & (direction == ""), "both", direction),
                                stream, {True: ("both",), False: ("up", "down")})
    urgency = _texts(table, "urgency")
    out["urgency"] = _allowed(table, "urgency", np.where(urgency == "", [a.urgency for a in apps], urgency),
                              stream, {True: ("routine", "urgent"), False: ("routine", "urgent")})
    far_end = _texts(table, "far_end")
    default = np.where(stream, [a.far_end for a in apps], "cloud")
    out["far_end"] = _allowed(table, "far_end", np.where(far_end == "", default, far_end), stream,
                              {True: ("home", "cloud"), False: ("cloud",)})
    out["connection"] = _connections(table, stream)


def _connections(table: Table, stream: np.ndarray) -> np.ndarray:
    """A transfer's ``connection`` (``new`` where empty); a stream's is empty (it makes no request).

    A transfer's is ``new``, ``reused``, or a multiplexed app's ``multiplexed-new`` or ``multiplexed-reused`` (as new or
    reused when it finds its connection idle).
    """
    connection = _texts(table, "connection")
    given = stream & (connection != "")
    if given.any():
        raise table.error("a stream has no connection (only transfers make requests); leave it empty",
                          int(np.argmax(given)), "connection")
    return _allowed(table, "connection", np.where(~stream & (connection == ""), "new", connection), stream,
                    {True: ("",), False: ("new", "reused", "multiplexed-new", "multiplexed-reused")})


def _allowed(table: Table, column: str, values: np.ndarray, stream: np.ndarray, allowed: dict) -> np.ndarray:
    bad = np.array([v not in allowed[bool(s)] for v, s in zip(values, stream)], dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        what, choices = "stream" if stream[i] else "transfer", ", ".join(allowed[bool(stream[i])])
        raise table.error(f"{values[i]!r} for a {what}: one of {choices}" if values[i] else
                          f"a {what} needs its {column}: one of {choices}", i, column)
    return values


def _check_shapes(table: Table, out: dict, stream: np.ndarray) -> None:
    """What each kind of session needs (and does not take), and no number that must be positive is not."""
    for columns, mine, what in ((STREAM_ONLY, ~stream, "a transfer"), (TRANSFER_ONLY, stream, "a stream")):
        for column in columns:
            given = mine & np.isfinite(out[column])
            if given.any():
                raise table.error(f"{what} has no {column}; leave it empty", int(np.argmax(given)), column)
    for column, mine in (("size_bytes", ~stream), ("duration_s", stream)):
        missing = mine & np.isnan(out[column])
        if missing.any():
            what = "transfer" if column == "size_bytes" else "stream"
            raise table.error(f"a {what} needs its {column}", int(np.argmax(missing)), column)
    for column in NUMBER_COLUMNS:
        if column in ("session_id", "start_s"):
            continue
        bad = out[column] < 0 if column == "far_rtt_s" else out[column] <= 0
        if bad.any():
            i = int(np.argmax(bad))
            bound = "0 or more" if column == "far_rtt_s" else "more than 0"
            raise table.error(f"{_texts(table, column)[i]!r}: must be {bound}", i, column)
    if (~stream & np.isfinite(out["up_share"]) & (out["up_share"] != 1.0)).any():
        i = int(np.argmax(~stream & np.isfinite(out["up_share"]) & (out["up_share"] != 1.0)))
        raise table.error("a transfer's up_share is 1 (it moves its size one way); leave it empty", i, "up_share")
    if (out["up_share"] > 1.0).any():
        raise table.error("up_share is a share from 0 to 1", int(np.argmax(out["up_share"] > 1.0)), "up_share")


def _fill_rates(table: Table, out: dict, apps: list, stream: np.ndarray) -> None:
    """A stream's rates, packet size and ``up_share`` from its app where not given; a transfer's up_share 1."""
    for column, field in (("target_rate_bps", "target"), ("min_rate_bps", "minimum"), ("packet_bytes", "packet"),
                          ("up_share", "up_share")):
        default = np.array([getattr(a.rate, field) if a.rate is not None else np.nan for a in apps], dtype=float)
        default = np.where(stream, default, 1.0 if column == "up_share" else np.nan)
        out[column] = np.where(np.isnan(out[column]), default, out[column])
    bad = stream & (out["min_rate_bps"] > out["target_rate_bps"])
    if bad.any():
        raise table.error("min_rate_bps is more than target_rate_bps", int(np.argmax(bad)), "min_rate_bps")


def _fill_far_line(table: Table, out: dict, scenario: Scenario) -> None:
    """A call to a home reaches ``far_profile`` (default the catalogue's home line); the cloud has no far line."""
    profiles = scenario.catalogue.profiles
    home = out["far_end"] == "home"
    named = _texts(table, "far_profile")
    bad = ~home & (named != "")
    if bad.any():
        raise table.error("only a call to a home has a far_profile; leave it empty", int(np.argmax(bad)),
                          "far_profile")
    far = np.where(home & (named == ""), scenario.catalogue.core.home_profile, named)
    for i in np.flatnonzero(home & ~pd.Series(far).isin(list(profiles)).to_numpy()):
        raise table.error(f"unknown profile {far[i]!r}" + did_you_mean(far[i], list(profiles), "known profiles"),
                          int(i), "far_profile")
    out["far_profile"] = far
    for column, field in zip(FAR_LINE, ("down", "up", "rtt")):
        given = np.isfinite(out[column])
        if (~home & given).any():
            raise table.error(f"only a call to a home has a {column}; leave it empty", int(np.argmax(~home & given)),
                              column)
        default = np.array([getattr(profiles[p], field) if h else np.nan for p, h in zip(far, home)], dtype=float)
        out[column] = np.where(given, out[column], default)
