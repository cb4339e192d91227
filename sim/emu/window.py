"""Which sites and which minutes of the day the emulation replays, and the slice of the trace that covers them.

The emulation runs in real time, so it replays a few sites over a short window; the simulator can replay the same
slice (``--engine both``), which is what makes the two comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.model.scenario import Scenario
from sim.topology import Topology

GRID_S = 60.0  # candidate window starts, for the busiest window
# The default choice skips access profiles faster than this, both directions together (bit/s): one delay shim
# carries about 40,000 packets/s (EMULATION.md, re-measured in benchmarks/README.md), some 480 Mbit/s of full frames.
MAX_DEFAULT_ACCESS_BPS = 400e6
CALL_MARGIN_S = 2.0  # calls end this long before the agents stop (s): time to send the last feedback


@dataclass(frozen=True)
class Slice:
    """The sites, window (s since midnight) and sessions an emulation replays."""

    sites: tuple[str, ...]
    start_s: float
    end_s: float
    drain_s: float
    trace: pd.DataFrame

    @property
    def duration_s(self) -> float:
        """Length of the replayed window (s), without the drain."""
        return self.end_s - self.start_s


def choose_sites(scenario: Scenario, topo: Topology) -> tuple[str, ...]:
    """The scenario's ``emulation.sites``, or by default a spread of access profiles.

    The default takes one site per access profile of the most common site family, spread from the slowest
    profile to the fastest, up to ``emulation.max_sites``, leaving out profiles faster than one delay shim carries
    (``MAX_DEFAULT_ACCESS_BPS``). Copper and fibre both appear whenever the family has both: the slowest and the
    fastest are always taken.
    """
    if scenario.emulation.sites:
        return tuple(scenario.emulation.sites)
    sites = topo.sites
    family = sites["family"].value_counts().index[0]
    mine = sites[sites["family"] == family]
    carried = mine[mine["down_bps"] + mine["up_bps"] <= MAX_DEFAULT_ACCESS_BPS]
    mine = carried if len(carried) else mine
    firsts = mine.drop_duplicates("access_profile").sort_values(["down_bps", "up_bps"], kind="stable")
    n = min(scenario.emulation.max_sites, len(firsts))
    picks = np.unique(np.round(np.linspace(0, len(firsts) - 1, n)).astype(int))
    return tuple(firsts["site"].iloc[picks])


def busiest_start_s(trace: pd.DataFrame, sites: tuple[str, ...], scenario: Scenario) -> float:
    """Start (s since midnight) of the busiest ``emulation.duration`` for ``sites``: the most bits offered in it.

    A transfer offers its size if it starts in the window; a call offers its target rate, both ways, for the part
    of it that overlaps the window. Candidates are whole minutes from the scenario's window start; ties go to the
    earliest.
    """
    duration_s = scenario.emulation.duration
    first_s, last_s = scenario.window.start, scenario.window.end - duration_s
    if last_s <= first_s:
        return first_s
    rows = trace[trace["site"].isin(sites)]
    starts = rows["start_s"].to_numpy()[None, :]
    candidates = np.arange(first_s, last_s + 1e-9, GRID_S)[:, None]
    video = (rows["traffic"] == "stream").to_numpy()[None, :]
    overlap_s = np.clip(np.minimum(starts + rows["duration_s"].fillna(0).to_numpy()[None, :], candidates + duration_s)
                        - np.maximum(starts, candidates), 0, None)
    call_bits = 2 * rows["target_rate_bps"].fillna(0).to_numpy()[None, :] * overlap_s
    starts_in = (starts >= candidates) & (starts < candidates + duration_s)
    transfer_bits = 8 * rows["size_bytes"].fillna(0).to_numpy()[None, :] * starts_in
    offered_bits = np.where(video, call_bits, transfer_bits).sum(axis=1)
    return float(candidates[int(np.argmax(offered_bits)), 0])


def choose(scenario: Scenario, topo: Topology, trace: pd.DataFrame, sites: tuple[str, ...] | None = None) -> Slice:
    """The sites (``sites``, else the ``emulation`` section's or its default), window and trace slice to replay."""
    sites = sites or choose_sites(scenario, topo)
    start_s = scenario.emulation.start
    if start_s is None:
        start_s = busiest_start_s(trace, sites, scenario)
    end_s = start_s + scenario.emulation.duration
    keep = trace["site"].isin(sites) & (trace["start_s"] >= start_s) & (trace["start_s"] < end_s)
    part = trace[keep].reset_index(drop=True)
    # A call is replayed up to CALL_MARGIN_S before the end of the window and drain (it would outlast a few
    # minutes of real time), so it ends before the agents stop; both engines judge it on the part replayed.
    horizon_s = end_s + scenario.emulation.drain - CALL_MARGIN_S
    video = part["traffic"] == "stream"
    part.loc[video, "duration_s"] = np.minimum(part.loc[video, "duration_s"],
                                               np.maximum(horizon_s - part.loc[video, "start_s"], 1.0))
    return Slice(sites, start_s, end_s, scenario.emulation.drain, _one_home_line(part, scenario))


def _one_home_line(part: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Every call's patient on ``core.home_profile``: the emulation has one home host (and line) per site.

    Both engines replay this slice, so they still compare like with like; the home-line mix of the whole run is
    the simulator's alone (docs/emulation.md).
    """
    home = scenario.catalogue.core.home_profile
    profile = scenario.catalogue.profiles[home]
    calls = part["far_end"] == "home"
    return part.assign(far_profile=part["far_profile"].where(~calls, home),
                       far_down_bps=part["far_down_bps"].where(~calls, profile.down),
                       far_up_bps=part["far_up_bps"].where(~calls, profile.up),
                       far_rtt_s=part["far_rtt_s"].where(~calls, profile.rtt))


def sub_topology(topo: Topology, sites: tuple[str, ...]) -> Topology:
    """The topology of just ``sites`` (their shared links kept)."""
    rows = topo.sites[topo.sites["site"].isin(sites)]
    shared = {name: link for name, link in topo.shared.items() if name in set(rows["aggregation"])}
    return Topology(rows, shared, topo.cloud_rtt_s, topo.home)
