"""Line changes in the simulator: a link-change table (:mod:`sim.linkchanges`) as each access link's line steps.

A site's row from ``at_s`` sets both its access links (up and down) to the row's rate and buffer that way, its loss
and queueing, and its round trip to the row's ``rtt_s``: from then until the site's next row. The simulator takes a
step as an event of the group the link belongs to (:class:`sim.des.group.Group`): its flows re-share the new
capacity; after the run, calls' records and the links' series read the steps as step functions
(:mod:`sim.des.paths`, :mod:`sim.des.reserved`). A shared link (a GPON tree's) never changes here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim import linkchanges
from sim.des.links import Line, Link
from sim.topology import Topology


def schedule(changes: pd.DataFrame, topology: Topology, site_links: dict[str, tuple], start_s: float,
             horizon_s: float) -> None:
    """Give every changed site's access links their line steps (``at_s`` counted from ``start_s``, s).

    Raises:
        ValueError: If a row cannot be (:func:`sim.linkchanges.validate`: an unknown site, a time outside
            ``start_s`` to ``horizon_s``, a negative rate, ...).
    """
    ordered = linkchanges.validate(changes, set(topology.sites["site"]), horizon_s - start_s)
    rtt_by_site = dict(zip(topology.sites["site"], topology.sites["rtt_s"]))
    for site, rows in ordered.groupby("site", sort=False):
        up, down = site_links[site][0][0], site_links[site][1][0]  # each path's first link is the site's line
        times_s = (start_s + rows["at_s"].to_numpy(dtype=float)).tolist()
        for link, d in ((up, "up"), (down, "down")):
            steps = [Line(float(rate), float(buffer), float(loss), qos == "priority", float(rtt) - rtt_by_site[site])
                     for rate, buffer, loss, qos, rtt in zip(rows[f"{d}_bps"], rows[f"buffer_{d}_bytes"], rows["loss"],
                                                             rows["qos"], rows["rtt_s"])]
            link.schedule_lines(times_s, steps)


def over(link: Link, times_s: np.ndarray) -> np.ndarray:
    """Which of ``link.lines()`` is in force at each time (an index per time)."""
    return np.searchsorted(np.array([-math.inf, *link.line_steps_s]), times_s, side="right") - 1


def mean_capacity_bps(link: Link, starts_s: np.ndarray, width_s: float) -> np.ndarray:
    """The link's mean capacity (bit/s) over each [start, start + width_s] (its capacity at the start if width 0)."""
    capacities = np.array([line.capacity_bps for line in link.lines()])
    if width_s <= 0:
        return capacities[over(link, starts_s)]
    return (capacity_bits(link, starts_s + width_s) - capacity_bits(link, starts_s)) / width_s


def capacity_bits(link: Link, t_s: np.ndarray) -> np.ndarray:
    """The integral of a changed link's capacity (bits) from its first line step to each time (negative before it)."""
    steps_s = np.array(link.line_steps_s, dtype=float)
    capacities = np.array([line.capacity_bps for line in link.lines()])
    cum = np.concatenate([[0.0], np.cumsum(capacities[1:-1] * np.diff(steps_s))])  # at each step
    k = np.searchsorted(steps_s, t_s, side="right") - 1
    at = np.maximum(k, 0)
    return np.where(k >= 0, cum[at] + capacities[at + 1] * (t_s - steps_s[at]), capacities[0] * (t_s - steps_s[0]))
