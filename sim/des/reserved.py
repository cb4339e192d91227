"""Fixed-rate streams as reservations on their links, and their records from the links' history.

A stream whose minimum rate is its target (a fixed-rate codec: telephony; a site's aggregate of interactive
sessions) does not adapt: on each link of its path it holds its rate for its whole duration. The simulator
therefore does not replay it as a flow. Before the run, each link gets the step function of the rate its
fixed-rate streams hold (:func:`reserve`); fluid flows (transfers, adaptive video) share what is left
(:class:`sim.des.links.Link`). After the run, each stream's record follows from the queues, loss and spare
capacity of its path over its interval (:mod:`sim.des.calls`), computed for all streams at once.

What this assumes, against max-min sharing of the streams as flows: a fixed-rate stream gets its rate ahead of
elastic flows. Max-min gives the same while its rate is below the fair share (a telephone call's 87 kbit/s on a
line shared by a few transfers); when it is not, a constant-rate sender in a drop-tail queue keeps sending and
TCP yields, which is what this gives. When the reservations alone exceed a link (more calls than the line
carries), every stream on it gets the same fraction of its rate, the queue is full, and the link carries its
capacity: counted on each link alone (a stream limited at one link of a two-link path is counted at its full
rate on the other, an overestimate of that link's load).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.des import lines
from sim.topology import Topology

_RATE_DECIMALS = 3  # reserved rates are rounded to a thousandth of a bit/s, so a link's sum returns to exactly 0


def reservable(trace: pd.DataFrame, topology: Topology) -> np.ndarray:
    """Which rows of the trace are fixed-rate streams (bool per row).

    A stream is fixed-rate when its minimum is its target and its far end can carry that rate each way (a far
    end slower than the stream would hold it below target: that stream adapts, and is replayed as a flow).
    """
    is_fixed = (trace["traffic"] == "stream").to_numpy() & \
        (trace["min_rate_bps"].to_numpy() == trace["target_rate_bps"].to_numpy())
    if not is_fixed.any():
        return is_fixed
    far_down, far_up, _ = _far_ends(trace, topology)
    rate = trace["target_rate_bps"].to_numpy()
    return is_fixed & (far_down >= rate * trace["up_share"].to_numpy()) & (far_up >= rate)


def _far_ends(trace: pd.DataFrame, topology: Topology) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's far end: its down and up rates (bit/s) and its RTT to the cloud edge (s).

    A call's own patient line where the trace drew one, else the topology's far end of that name.
    """
    which, unique = pd.factorize(trace["far_end"], use_na_sentinel=False)  # each row's far end: its index in unique
    ends = [topology.far_end(name) for name in unique]
    down = np.array([end.down_bps for end in ends], dtype=float)[which]
    up = np.array([end.up_bps for end in ends], dtype=float)[which]
    rtt = np.array([end.rtt_s for end in ends], dtype=float)[which]
    is_home = np.array([name == "home" for name in unique], dtype=bool)[which]
    drawn = is_home & ~np.isnan(trace["far_down_bps"].to_numpy())
    down = np.where(drawn, trace["far_down_bps"].to_numpy(), down)
    up = np.where(drawn, trace["far_up_bps"].to_numpy(), up)
    rtt = np.where(drawn, trace["far_rtt_s"].to_numpy(), rtt)
    return down, up, rtt


class Streams:
    """The fixed-rate streams of a run, as arrays: one row per stream.

    Each stream's site is ``site_names[site_index]`` (the names sorted), whose up and down paths are ``site_links``'s.
    """

    def __init__(self, trace: pd.DataFrame, rows: np.ndarray, site_links: dict, topology: Topology,
                 horizon_s: float) -> None:
        part = trace[list(_STREAM_COLUMNS)].iloc[rows]
        start_s = part["start_s"].to_numpy()
        started = start_s <= horizon_s  # a stream starting after the horizon never starts
        self.rows, part, start_s = rows[started], part[started], start_s[started]
        self.start_s = start_s
        self.end_s = start_s + part["duration_s"].to_numpy()
        self.rate_bps = part["target_rate_bps"].to_numpy()
        self.up_share = part["up_share"].to_numpy()
        self.site_index, names = pd.factorize(part["site"], sort=True)  # by hashing, then the few names sorted
        self.site_names = list(names)
        rtt_by_site = dict(zip(topology.sites["site"], topology.sites["rtt_s"]))
        _, _, far_rtt_s = _far_ends(part, topology)
        site_rtt_s = np.array([rtt_by_site[site] for site in self.site_names], dtype=float)[self.site_index]
        self.base_delay_s = (site_rtt_s + topology.cloud_rtt_s + far_rtt_s) / 2
        self.site_links = site_links

    def by_site(self) -> list[tuple[str, np.ndarray]]:
        """Each site's name and its streams (positions, in order), sites in the order of ``site_names``."""
        order = np.argsort(self.site_index, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self.site_index, minlength=len(self.site_names)))])
        return [(site, order[bounds[k]:bounds[k + 1]]) for k, site in enumerate(self.site_names)]


# What a stream's record and reservations read of the trace
_STREAM_COLUMNS = ("start_s", "duration_s", "target_rate_bps", "up_share", "site", "far_end", "far_down_bps",
                   "far_up_bps", "far_rtt_s")


def reserve(streams: Streams) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Give every link the step function of the rate fixed-rate streams hold on it (:meth:`Link.reserve`).

    Returns:
        Each reserved link's steps as arrays, by ``id``: the times (s) and the rates from each on (bit/s), as the
        link has them in lists (for the histories and utilisation after the run).
    """
    steps: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    per_link: dict[int, tuple[object, list, list]] = {}
    names, site_index = streams.site_names, streams.site_index
    # every start, then every end, grouped by site (in the order of names), each site's in that order
    by_site = np.argsort(np.tile(site_index, 2), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(2 * np.bincount(site_index, minlength=len(names)))])
    times_s = np.concatenate([streams.start_s, streams.end_s])[by_site]
    for direction, rate_bps in ((0, streams.rate_bps * streams.up_share), (1, streams.rate_bps)):
        deltas_bps = np.concatenate([rate_bps, -rate_bps])[by_site]
        for k, site in enumerate(names):
            mine = slice(bounds[k], bounds[k + 1])
            for link in streams.site_links[site][direction]:
                entry = per_link.setdefault(id(link), (link, [], []))
                entry[1].append(times_s[mine])
                entry[2].append(deltas_bps[mine])
    for link, times, deltas in per_link.values():
        steps_s, steps_bps = _steps(np.concatenate(times), np.concatenate(deltas))
        link.reserve(steps_s.tolist(), steps_bps.tolist())
        steps[id(link)] = (steps_s, steps_bps)
    return steps


def _steps(times_s: np.ndarray, deltas_bps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A step function from rate changes: the times it changes, and its value from each on."""
    order = np.argsort(times_s, kind="stable")
    times_s, level = times_s[order], np.cumsum(deltas_bps[order])
    last = np.append(times_s[1:] != times_s[:-1], True)  # the level after every change at one time
    times_s, level = times_s[last], np.maximum(np.round(level[last], _RATE_DECIMALS), 0.0)
    changed = np.append(True, level[1:] != level[:-1])
    return times_s[changed], level[changed]


def carried_bits(link, start_s: float, horizon_s: float, n_bins: int, bin_s: float,
                 steps: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Bits the reservations carried on a link in each utilisation bin (at most its capacity at any time).

    Bins as :meth:`sim.des.links.Link.settle` fills them: the first also takes anything before the window. On a
    changed line, at most its capacity at each moment (none in an outage). ``steps``: the link's reservations as
    arrays (:func:`reserve`), where kept.
    """
    times_s, steps_bps = steps if steps is not None else (np.array(link.steps_s, dtype=float),
                                                           np.array(link.steps_bps, dtype=float))
    carried_bps = np.minimum(steps_bps, link.line0.capacity_bps)
    if link.line_steps_s:
        times_s, carried_bps = _carried_on_lines(link, times_s)
    edges_s = np.minimum(start_s + bin_s * np.arange(1, n_bins), horizon_s)
    edges_s = np.concatenate([[min(times_s[0], start_s)], edges_s, [horizon_s]])
    cum = np.concatenate([[0.0], np.cumsum(carried_bps[:-1] * np.diff(times_s))])

    def integral_to(t_s: np.ndarray) -> np.ndarray:
        k = np.searchsorted(times_s, t_s, side="right") - 1
        at = np.maximum(k, 0)
        return np.where(k >= 0, cum[at] + carried_bps[at] * (t_s - times_s[at]), 0.0)

    return np.diff(integral_to(edges_s))


def _carried_on_lines(link, steps_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rate reservations carry on a changed line (bit/s): a step function at its reservation and line steps."""
    times_s = np.union1d(steps_s, np.array(link.line_steps_s, dtype=float))
    k = np.searchsorted(steps_s, times_s, side="right") - 1
    reserved_bps = np.where(k >= 0, np.array([0.0, *link.steps_bps])[k + 1], 0.0)
    capacity_bps = np.array([line.capacity_bps for line in link.lines()])[lines.over(link, times_s)]
    return times_s, np.minimum(reserved_bps, capacity_bps)
