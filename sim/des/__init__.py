"""The flow-level discrete-event simulator (SimPy): replay a trace over a topology, emit records.

Public entry point: :func:`run`, with the engines' one contract (:mod:`sim.engines`). The engine knows nothing of
targets or reports; its only output is the record table and the links' utilisation series (:mod:`sim.records`).
"""

from __future__ import annotations

# ruff: noqa: E402 - the compiled modules go on the search path before any of them is imported
from sim import native

native.enable(__path__)  # the hot modules compiled, if built from these very sources (sim.native)

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import simpy

from sim.des import callseries, lines, reserved
from sim.des.context import ENGINE, Context, RunWindow
from sim.des.group import Group
from sim.des.links import Link, bin_count
from sim.des.session import TRACE_FIELDS, Session
from sim.engines import Result
from sim.topology import Topology

__all__ = ["ENGINE", "Result", "RunWindow", "run"]


def run(trace: pd.DataFrame, topology: Topology, window: RunWindow, *, seed: int | None = None,
        work_dir: Path | None = None, link_changes: pd.DataFrame | None = None,
        progress: Callable[[float], None] | None = None, skip_unobserved: bool = True) -> Result:
    """Simulate every session of ``trace`` on ``topology``.

    Args:
        trace: Sessions to replay (:data:`sim.workload.TRACE_COLUMNS`).
        topology: Sites, their links and the far ends.
        window: Start of the utilisation series, horizon and bin width, all in seconds. A transfer unfinished
            at the horizon is recorded as not completed; a call still running then ends there, and is recorded
            and judged on the part replayed (as the emulation does: its length is the run's, not the network's).
        seed: Draws, per session, whether a transfer's loss waits for a timer where a queue overflows
            (:mod:`sim.des.tails`: a hash of seed, site and the session's rank there, so a shard draws as the
            whole run does; None is 0). Every other draw is in the trace: the same trace and seed give the same
            records.
        work_dir: Unused: the simulator keeps no evidence files. Taken for the same contract.
        progress: Called now and then with the share of simulated time done (0..1).
        link_changes: Sites' access lines changing through the run (a fault, a backup, a repair): the table of
            :mod:`sim.linkchanges`, ``at_s`` counted from ``window.start_s`` (:mod:`sim.des.lines`). None: every
            line as the topology has it.
        skip_unobserved: Take the exact shortcuts of :mod:`sim.des.group` (the same tables either way; off
            only to test that).

    Returns:
        Records (:data:`sim.records.RECORD_COLUMNS`), link series (:data:`sim.records.LINK_COLUMNS`),
        the number of events and, with ``link_changes``, the per-second series of the adaptive calls at the
        changed sites (:mod:`sim.des.callseries`) (a :class:`sim.engines.Result`). A link's ``capacity_bps``
        in the series is its mean over each bin.

    Raises:
        ValueError: If ``link_changes`` has a row that cannot be (:func:`sim.linkchanges.validate`).
    """
    del work_dir  # see above: nothing kept
    trace = _calls_cut_at(trace, window.horizon_s)
    with _collector_paused():
        return _run(trace, topology, window, seed, link_changes, progress, skip_unobserved)


def _run(trace: pd.DataFrame, topology: Topology, window: RunWindow, seed: int | None,
         link_changes: pd.DataFrame | None, progress: Callable[[float], None] | None,
         skip_unobserved: bool) -> Result:
    """:func:`run`'s body, with the collector paused.

    A function of its own, so the run's objects are let go when it returns, before the collector resumes.
    """
    links, site_links = _links(topology, window)
    if link_changes is not None and len(link_changes):
        lines.schedule(link_changes, topology, site_links, window.start_s, window.horizon_s)
    fixed = reserved.reservable(trace, topology)
    streams = reserved.Streams(trace, np.flatnonzero(fixed), site_links, topology, window.horizon_s)
    reservations = reserved.reserve(streams)
    ctx = Context(trace, topology, window, seed)
    groups = _groups(topology, trace, ~fixed, site_links, ctx, skip_unobserved)
    env = simpy.Environment(initial_time=min(window.start_s, float(trace["start_s"].min()))
                            if len(trace) else window.start_s)
    for group in groups:
        env.process(group.process(env))
    _run_with_progress(env, window, progress)
    ctx.finish_streams(streams, reservations)
    series = None
    if link_changes is not None and len(link_changes):
        series = callseries.frame(ctx.finished_calls, ctx.histories, set(link_changes["site"]))
    return Result(ctx.records(), _link_frame(links, window, reservations), sum(g.events for g in groups),
                  series)


def _calls_cut_at(trace: pd.DataFrame, horizon_s: float) -> pd.DataFrame:
    """The trace with every call that would outlast the horizon (s) ending at it."""
    over = ((trace["traffic"] == "stream") & (trace["start_s"] < horizon_s)
            & (trace["start_s"] + trace["duration_s"] > horizon_s))
    if not over.any():
        return trace
    cut = trace.copy()
    cut.loc[over, "duration_s"] = horizon_s - cut.loc[over, "start_s"]
    return cut


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the run (it resumes after, if it was on).

    A run builds a dict per session and an object per flow, all alive until it ends; the collector's passes
    over them, triggered by that allocation, find nothing to free and cost about a tenth of the run. It resumes
    once they are let go (by reference counts, nearly all of them): resumed while they were still held, its first
    pass visited them all, for nothing (25-95 ms on a 60,000-session shard, 3% of a shard's task).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _links(topology: Topology, window: RunWindow) -> tuple[list[Link], dict[str, tuple]]:
    n_bins = bin_count(window.start_s, window.horizon_s, window.bin_s)
    links, site_links, shared = [], {}, {}
    for name, spec in topology.shared.items():
        pair = tuple(Link(f"{name}/{d}", "", "aggregation", d, rate, buffer_bytes, 0.0, 0.0,
                          window.start_s, window.bin_s, n_bins)
                     for d, rate, buffer_bytes in (("up", spec.up_bps, spec.buffer_up_bytes),
                                                   ("down", spec.down_bps, spec.buffer_down_bytes)))
        shared[name] = pair
        links.extend(pair)
    for row in topology.sites.itertuples(index=False):
        up, down = (Link(f"{row.site}/{d}", row.site, "access", d, rate, buffer_bytes, row.loss,
                         row.jitter_s, window.start_s, window.bin_s, n_bins, priority=row.qos == "priority")
                    for d, rate, buffer_bytes in (("up", row.up_bps, row.buffer_up_bytes),
                                                  ("down", row.down_bps, row.buffer_down_bytes)))
        links.extend((up, down))
        agg = shared.get(row.aggregation)
        site_links[row.site] = ((up, agg[0]) if agg else (up,), (down, agg[1]) if agg else (down,))
    return links, site_links


def _groups(topology: Topology, trace: pd.DataFrame, as_flows: np.ndarray, site_links: dict, ctx: Context,
            skip_unobserved: bool) -> list[Group]:
    """One group per set of sites sharing links (a site alone when it shares none), replaying the rows ``as_flows``."""
    trace = trace.loc[as_flows, ["site", *_SESSION_COLUMNS]]  # (only the columns read: the rest is not copied)
    members: dict[str, list[str]] = {}
    for site, aggregation in zip(topology.sites["site"], topology.sites["aggregation"]):
        members.setdefault(aggregation or f"site:{site}", []).append(site)
    rtt = dict(zip(topology.sites["site"], topology.sites["rtt_s"]))
    by_site = {site: [] for site in topology.sites["site"]}
    sites = _as_list(trace["site"])
    columns = [_as_list(trace[name]) for name in _SESSION_COLUMNS]
    columns += [[site_links[site][0] for site in sites], [site_links[site][1] for site in sites],
                [rtt[site] for site in sites]]
    for site, row in zip(sites, _sessions(columns)):
        by_site[site].append(row)
    start_s, ids = trace["start_s"].to_numpy(), trace["session_id"].to_numpy()
    in_order = bool(np.all((start_s[1:] > start_s[:-1]) | ((start_s[1:] == start_s[:-1]) & (ids[1:] > ids[:-1]))))
    groups = []
    for sites in members.values():
        sessions = (by_site[sites[0]] if in_order and len(sites) == 1 else
                    sorted((s for site in sites for s in by_site[site]), key=lambda s: (s.start_s, s.session_id)))
        links = list(dict.fromkeys(link for site in sites for path in site_links[site] for link in path))
        groups.append(Group(links, sessions, ctx, skip_unobserved))
    return groups


# What groups read of each session (with its paths and RTT), in the order of _sessions's columns.
_SESSION_COLUMNS = TRACE_FIELDS


def _sessions(columns: list[list]) -> list[Session]:
    """A :class:`Session` per session from the columns of _SESSION_COLUMNS, then its up and down paths and RTT (s).

    Each made from its row's values at once (``tuple.__new__``: NamedTuple's own constructor takes them one by one).
    """
    new = tuple.__new__
    return [new(Session, row) for row in zip(*columns)]


def _as_list(column: pd.Series) -> list:
    """The column's values as Python objects; text through its few distinct values (one string object each)."""
    if column.dtype.kind in "biuf":
        return column.tolist()
    codes, names = pd.factorize(column, use_na_sentinel=False)
    return np.array(list(names), dtype=object)[codes].tolist()


def _run_with_progress(env: simpy.Environment, window: RunWindow, progress) -> None:
    if progress is None:
        env.run()
        return
    span_s = window.horizon_s - env.now
    steps = 50
    for k in range(1, steps + 1):
        until = env.now + span_s / steps if k < steps else None
        if until is None or not env._queue:  # noqa: SLF001 - SimPy has no public "is empty"
            env.run()
            break
        env.run(until=until)
        progress(k / steps)
    progress(1.0)


def _link_frame(links: list[Link], window: RunWindow, reservations: dict | None = None) -> pd.DataFrame:
    """The utilisation series of every link, one row per link and bin (``reservations``: :func:`reserved.reserve`'s)."""
    n_bins = len(links[0].bits) if links else 0
    capacity = np.repeat(np.array([link.line0.capacity_bps for link in links])[:, None], n_bins, axis=1)
    bits = np.array([link.bits for link in links]).reshape(len(links), n_bins)
    bin_starts_s = window.start_s + window.bin_s * np.arange(n_bins)
    for k, link in enumerate(links):
        if link.steps_s:
            bits[k] += reserved.carried_bits(link, window.start_s, window.horizon_s, n_bins, window.bin_s,
                                             (reservations or {}).get(id(link)))
        if link.line_steps_s:
            capacity[k] = lines.mean_capacity_bps(link, bin_starts_s, window.bin_s)
    offered_bits = capacity * window.bin_s
    utilisation = np.divide(bits, offered_bits, out=np.zeros_like(bits), where=offered_bits > 0)  # none in an outage
    rows = np.repeat(np.arange(len(links)), n_bins)

    def per_link(values: list) -> pd.api.extensions.ExtensionArray:
        return pd.array(values, dtype="str").take(rows)  # one string per link, repeated in Arrow

    return pd.DataFrame({
        "engine": per_link([ENGINE] * len(links)), "link": per_link([link.name for link in links]),
        "site": per_link([link.site for link in links]),
        "kind": per_link([link.kind for link in links]), "direction": per_link([link.direction for link in links]),
        "capacity_bps": capacity.ravel(), "bin_start_s": np.tile(bin_starts_s, len(links)),
        "bin_s": window.bin_s, "utilisation": utilisation.ravel(),
    })
