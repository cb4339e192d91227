"""A session as the simulator's groups replay it: its trace row's columns, then its paths and its site's RTT."""

from __future__ import annotations

from typing import NamedTuple

from sim.des.links import Link


class Session(NamedTuple):
    """One session of the trace (:data:`sim.workload.TRACE_COLUMNS`, the columns groups read), as a tuple.

    Text as the trace holds it (NaN where missing); rates in bit/s, times in s, sizes in bytes. ``up`` and ``down``
    are its site's paths (tuples of :class:`sim.des.links.Link`, away from the site and towards it), ``rtt_s`` its
    site's round trip (s). A tuple, not a dict: a shard makes some 60,000 of them, and a tuple is made from its
    columns' values at once (:func:`sim.des._sessions`) and read by name as fast.
    """

    session_id: int
    app: str
    traffic: str
    up_share: float
    far_end: str
    far_down_bps: float
    far_up_bps: float
    far_rtt_s: float
    direction: str
    start_s: float
    duration_s: float
    size_bytes: float
    chunk_bytes: float
    connection: str
    target_rate_bps: float
    min_rate_bps: float
    up: tuple[Link, ...]
    down: tuple[Link, ...]
    rtt_s: float


# What groups read of each session's trace row, in the order of Session's fields (its paths and RTT follow).
TRACE_FIELDS = Session._fields[:-3]
