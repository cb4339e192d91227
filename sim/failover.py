"""A call through a line fault, phase by phase: its rate and one-way delay before, during and after each change.

Engine-neutral: it reads a per-second call series (:data:`SERIES_COLUMNS`; the emulation's is
:func:`sim.emu.callseries.frame`, ``EmuResult.calls``) and a link-changes table (:mod:`sim.linkchanges`), and
imports neither engine, so a simulator that writes the same series can use it as is. A site's *phases* are cut at
its changes' times: ``before`` (the topology's line) from the window's start, then one per change, named by its
``cause`` (``fault``: the outage while the router fails over; ``backup``; ``repaired``). A second of the series
counts in a phase when it lies wholly inside it, after the phase's first ``settle_s`` (a call's rate controller
takes a few seconds to climb back after an outage; the queue a line change leaves drains).

Usage::

    table = failover.summary(result.calls, changes, window_start_s, window_end_s, result.records, settle_s=3)
    print(failover.text(table))
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SERIES_COLUMNS = {
    "engine": "str",
    "session_id": "int64",
    "site": "str",
    "direction": "str",          # up (site -> far end, measured at the far end) or down
    "bin_start_s": "float64",    # s since midnight (the trace clock)
    "bin_s": "float64",
    "rate_bps": "float64",       # received in the bin
    "one_way_delay_s": "float64",  # mean over the packets received in the bin; NaN when none arrived
}
SUMMARY_COLUMNS = ("site", "session_id", "direction", "phase", "name", "from_s", "to_s", "first_s", "last_s",
                   "seconds", "silent_s",
                   "rate_bps", "one_way_delay_s", "target_rate_bps", "share_at_target")
AT_TARGET = 0.95  # a second is at target when it received >= 95% of the target (as the records' share_at_target)


def phases(changes: pd.DataFrame, site: str, window_start_s: float, window_end_s: float) -> pd.DataFrame:
    """A site's phases on the trace clock: ``phase`` (0, 1, ...), ``name``, ``from_s``, ``to_s``, ``outage``.

    Args:
        changes: The link-changes table (``at_s`` from the window's start).
        site: The site.
        window_start_s: The window's start on the trace clock (s since midnight).
        window_end_s: Its end (s since midnight).
    """
    mine = changes[changes["site"] == site].sort_values("at_s")
    starts = [window_start_s] + [window_start_s + float(a) for a in mine["at_s"]]
    names = ["before"] + [str(c) for c in mine["cause"]]
    outage = [False] + [bool(d == 0 and u == 0) for d, u in zip(mine["down_bps"], mine["up_bps"])]
    if len(starts) > 1 and starts[1] == window_start_s:  # a change at 0 s replaces the topology's line
        starts, names, outage = starts[1:], names[1:], outage[1:]
    ends = starts[1:] + [window_end_s]
    return pd.DataFrame({"phase": range(len(starts)), "name": names, "from_s": starts, "to_s": ends,
                         "outage": outage})


def summary(series: pd.DataFrame, changes: pd.DataFrame, window_start_s: float, window_end_s: float,
            records: pd.DataFrame | None = None, settle_s: float = 0.0) -> pd.DataFrame:
    """Each call's rate (bit/s) and one-way delay (s) per direction and phase (:data:`SUMMARY_COLUMNS`).

    ``rate_bps`` is the mean received rate over the call's whole seconds in the phase (``seconds`` of them, from
    ``first_s`` to ``last_s`` on the trace clock; ``silent_s`` had nothing arrive), ``one_way_delay_s`` the mean
    delay weighted by what arrived (NaN when nothing did). ``target_rate_bps`` comes from ``records`` (when
    given), and ``share_at_target`` is the share of those seconds at >= 95% of it.
    """
    targets = {} if records is None else dict(zip(records["session_id"], records["target_rate_bps"]))
    rows = []
    for (site, session, direction), calls in series.groupby(["site", "session_id", "direction"], sort=True):
        for p in phases(changes, site, window_start_s, window_end_s).itertuples(index=False):
            inside = calls[(calls["bin_start_s"] >= p.from_s + settle_s)
                           & (calls["bin_start_s"] + calls["bin_s"] <= p.to_s + 1e-9)]
            if inside.empty:
                continue
            rows.append(_phase_row(site, int(session), direction, p, inside, targets.get(session, math.nan)))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _phase_row(site: str, session: int, direction: str, p, inside: pd.DataFrame, target_bps: float) -> tuple:
    rate = inside["rate_bps"].to_numpy(float)
    delay = inside["one_way_delay_s"].to_numpy(float)
    heard = np.isfinite(delay) & (rate > 0)
    delay_s = float(np.average(delay[heard], weights=rate[heard])) if heard.any() else math.nan
    at_target = float(np.mean(rate >= AT_TARGET * target_bps)) if math.isfinite(target_bps) else math.nan
    first_s = float(inside["bin_start_s"].min())
    last_s = float((inside["bin_start_s"] + inside["bin_s"]).max())
    return (site, session, direction, p.phase, p.name, p.from_s, p.to_s, first_s, last_s, float(inside["bin_s"].sum()),
            float(inside.loc[~heard, "bin_s"].sum()), float(rate.mean()), delay_s, target_bps, at_target)


def text(table: pd.DataFrame) -> str:
    """The summary as a plain-text table (the call's seconds counted in each phase, h:mm:ss; Mbit/s; ms)."""
    head = (f"{'site':<14} {'call':>4} {'dir':<4} {'phase':<9} {'from':>8} {'to':>8} {'s':>4} {'silent':>6} "
            f"{'Mbit/s':>7} {'delay ms':>8} {'at target':>9}")
    lines = [head, "-" * len(head)]
    for r in table.itertuples(index=False):
        delay = "-" if math.isnan(r.one_way_delay_s) else f"{r.one_way_delay_s * 1e3:.1f}"
        share = "-" if math.isnan(r.share_at_target) else f"{r.share_at_target:.0%}"
        lines.append(f"{r.site:<14} {r.session_id:>4} {r.direction:<4} {r.name:<9} {_clock(r.first_s):>8} "
                     f"{_clock(r.last_s):>8} {r.seconds:>4.0f} {r.silent_s:>6.0f} {r.rate_bps / 1e6:>7.2f} "
                     f"{delay:>8} {share:>9}")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
