"""Changes to sites' access lines during a window: a fault, the failover outage, the backup, the repair.

Plain data beside the topology, replayed the same way by both engines. A table of steps, one row per change:
from ``at_s`` (seconds from the window's start) until the site's next row, the site's access line runs with
the row's rates, round-trip time, loss and buffer instead of its topology's. A row whose rates are both 0 is an
outage: nothing crosses the line. A site with no rows keeps its topology's line all window. A repair is a row
carrying the topology's own values again (:func:`failover` writes one).

Columns (:data:`COLUMNS`): ``site`` (a topology site name), ``at_s`` (s from the window's start, >= 0),
``down_bps`` and ``up_bps`` (bit/s, >= 0), ``rtt_s`` (the access line's round-trip time, s), ``loss`` (a
fraction of packets, each way), ``buffer_down_bytes`` and ``buffer_up_bytes`` (the line's queue that way, bytes:
a backup's are its profile's buffers at its own rates), ``qos`` (``fifo`` or
``priority``), ``cause`` (free text for records and reports: ``fault``, ``backup``, ``repaired``).

A scenario asks for faults with its ``outages`` key; :func:`from_scenario` writes their table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sim.model.scenario import Scenario
    from sim.topology import Topology

COLUMNS = ("site", "at_s", "down_bps", "up_bps", "rtt_s", "loss", "buffer_down_bytes", "buffer_up_bytes", "qos",
           "cause")
LINE_COLUMNS = ("down_bps", "up_bps", "rtt_s", "loss", "buffer_down_bytes", "buffer_up_bytes", "qos")


@dataclass(frozen=True)
class LineState:
    """An access line's rates (bit/s), round-trip time (s), loss (fraction), buffers (bytes) and queueing.

    Rates and buffers are per direction, down then up, as a topology's site row has them.
    """

    down_bps: float
    up_bps: float
    rtt_s: float
    loss: float
    buffer_down_bytes: float
    buffer_up_bytes: float
    qos: str = "fifo"

    def buffer_bytes(self, direction: str) -> float:
        """The line's queue (bytes) in ``direction`` (``up`` or ``down``)."""
        return self.buffer_up_bytes if direction == "up" else self.buffer_down_bytes

    @property
    def is_outage(self) -> bool:
        """Whether nothing crosses the line (both rates 0)."""
        return self.down_bps == 0 and self.up_bps == 0


def empty() -> pd.DataFrame:
    """A table of no changes (every line as its topology has it)."""
    return pd.DataFrame({name: pd.Series(dtype=_dtype(name)) for name in COLUMNS})


def _dtype(name: str) -> str:
    return "object" if name in ("site", "qos", "cause") else "float64"


def line_of(site_row: dict | pd.Series) -> LineState:
    """A topology site row's own line (its columns ``down_bps``, ``up_bps``, ``rtt_s``, ``loss``, ...)."""
    return LineState(float(site_row["down_bps"]), float(site_row["up_bps"]), float(site_row["rtt_s"]),
                     float(site_row["loss"]), float(site_row["buffer_down_bytes"]), float(site_row["buffer_up_bytes"]),
                     str(site_row["qos"]))


def outage_like(line: LineState) -> LineState:
    """The line down: no rate either way, its other values kept (they describe the line once it returns)."""
    return LineState(0.0, 0.0, line.rtt_s, line.loss, line.buffer_down_bytes, line.buffer_up_bytes, line.qos)


def failover(site: str, primary: LineState, backup: LineState | None, fault_at_s: float, repaired_at_s: float,
             failover_s: float) -> pd.DataFrame:
    """The steps of one fault on a site's line.

    Down at ``fault_at_s``; on ``backup`` after ``failover_s`` (seconds of outage while the router switches;
    none when ``backup`` is None: down until the repair); back on ``primary`` at ``repaired_at_s`` (the switch
    back is taken as instant: an assumption; routers return to the primary line within seconds of it carrying
    traffic again).
    """
    if not 0 <= fault_at_s < repaired_at_s:
        raise ValueError(f"a fault must start at or after 0 s and end after it starts "
                         f"({fault_at_s} s to {repaired_at_s} s)")
    if failover_s < 0:
        raise ValueError(f"a failover time cannot be negative ({failover_s} s)")
    steps = [(fault_at_s, outage_like(primary), "fault")]
    if backup is not None and fault_at_s + failover_s < repaired_at_s:
        steps.append((fault_at_s + failover_s, backup, "backup"))
    steps.append((repaired_at_s, primary, "repaired"))
    return pd.DataFrame([_row(site, at_s, line, cause) for at_s, line, cause in steps], columns=list(COLUMNS))


def _row(site: str, at_s: float, line: LineState, cause: str) -> tuple:
    return (site, float(at_s), line.down_bps, line.up_bps, line.rtt_s, line.loss, line.buffer_down_bytes,
            line.buffer_up_bytes, line.qos, cause)


def validate(changes: pd.DataFrame, sites: set[str], window_s: float) -> pd.DataFrame:
    """The changes sorted by site and time, or ValueError naming the first row that cannot be.

    A row must name a known site, start within the window, carry rates and buffers >= 0, a loss in [0, 1) and a
    round-trip time >= 0; two rows of one site may not share a time.
    """
    missing = [name for name in COLUMNS if name not in changes.columns]
    if missing:
        raise ValueError(f"link changes lack column(s) {', '.join(missing)}")
    for i, row in enumerate(changes.itertuples(index=False)):
        problem = _row_problem(row, sites, window_s)
        if problem:
            raise ValueError(f"link change row {i + 1} (site {row.site!r}): {problem}")
    ordered = changes.sort_values(["site", "at_s"], kind="stable").reset_index(drop=True)
    same = ordered.duplicated(["site", "at_s"])
    if same.any():
        row = ordered[same].iloc[0]
        raise ValueError(f"link changes: site {row.site!r} has two changes at {row.at_s} s")
    return ordered


def _row_problem(row, sites: set[str], window_s: float) -> str:
    if row.site not in sites:
        return "no such site in the topology"
    if not 0 <= row.at_s <= window_s:
        return f"at_s {row.at_s} is outside the window (0 to {window_s} s)"
    values = np.array([row.down_bps, row.up_bps, row.rtt_s, row.buffer_down_bytes, row.buffer_up_bytes], dtype=float)
    if not np.isfinite(values).all() or (values < 0).any():
        return "rates, round-trip time and buffers must be finite and >= 0"
    if not 0 <= row.loss < 1:
        return f"loss {row.loss} is not in [0, 1)"
    if row.qos not in ("fifo", "priority"):
        return f"qos {row.qos!r} is neither 'fifo' nor 'priority'"
    return ""


def from_scenario(scenario: Scenario, topology: Topology) -> pd.DataFrame:
    """The steps of a scenario's ``outages`` on the sites of ``topology`` (a shard's, or the whole scenario's).

    ``at_s`` counts from the scenario's window start. An outage names a site, or a site group (each of its sites
    fails at once); it runs on its backup (:func:`backup_line`: the outage's, else the site group's, else the
    availability study's, else none) after the backup's failover time, and is repaired at ``repaired`` or, if none
    is given, at the end of the run (its window and drain). The loader has checked the names and times
    (:mod:`sim.load`).

    Raises:
        ValueError: If an outage names no site or site group of the scenario (one derived from a loaded scenario
            may have renamed its sites).
    """
    from sim.topology import group_sites, site_names
    groups = group_sites(scenario)
    default = scenario.availability.backup if scenario.availability is not None else "none"
    own = dict(zip(site_names(scenario), [g.backup or default for g in scenario.sites for _ in range(g.count)]))
    rows = topology.sites.set_index("site", drop=False)
    start_s, horizon_s = scenario.window.start, scenario.window.end + scenario.drain
    parts = [empty()]
    for outage in scenario.outages:
        repaired_s = outage.repaired if outage.repaired is not None else horizon_s
        if outage.site not in groups and outage.site not in own:
            raise ValueError(f"outage of {outage.site!r}: no such site or site group in scenario {scenario.name!r}")
        for site in groups.get(outage.site, [outage.site]):
            if site in rows.index:
                spare, failover_s = backup_line(scenario, outage.backup or own[site])
                parts.append(failover(site, line_of(rows.loc[site]), spare, outage.at - start_s,
                                      repaired_s - start_s, failover_s))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def backup_line(scenario: Scenario, name: str) -> tuple[LineState | None, float]:
    """A backup's line (None for ``none``) and its failover time (s), from the catalogue's ``backups``.

    The backup's access profile gives its headline rates, round trip, loss and buffers (a time at the backup's own
    rate that way); one carrying calls first
    (``carries: realtime_first``) queues them with priority.
    """
    backup = scenario.catalogue.backups[name]
    if backup.kind == "none" or backup.profile is None:
        return None, 0.0
    profile = scenario.catalogue.profiles[backup.profile]
    down_bps, up_bps = profile.rates_at(None)
    qos = "priority" if backup.carries == "realtime_first" else profile.qos
    line = LineState(down_bps, up_bps, profile.rtt, profile.loss, *profile.buffers_bytes(down_bps, up_bps), qos)
    return line, float(backup.failover or 0.0)


def shifted(changes: pd.DataFrame, by_s: float, window_s: float) -> pd.DataFrame:
    """The table for a window starting ``by_s`` later and lasting ``window_s`` (s): a slice of the run.

    Each site's line at the slice's start becomes a row at 0 s (its last earlier row), later rows move back by
    ``by_s``, and rows past the slice are dropped.
    """
    moved = changes.sort_values(["site", "at_s"], kind="stable").assign(at_s=lambda f: f["at_s"] - by_s)
    before = moved[moved["at_s"] <= 0].groupby("site", sort=False).tail(1).assign(at_s=0.0)
    inside = moved[(moved["at_s"] > 0) & (moved["at_s"] <= window_s)]
    both = pd.concat([before, inside]).sort_values(["site", "at_s"], kind="stable")
    return both.reset_index(drop=True)[list(COLUMNS)]
