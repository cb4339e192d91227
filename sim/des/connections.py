"""Multiplexed connections (HTTP/2): concurrent transfers of one app at a site, one way, as streams of one connection.

A transfer app whose requests are ``multiplexed`` (``apps.yaml``; the trace's ``connection`` is
``multiplexed-new`` or ``multiplexed-reused``) sends its concurrent requests at a site, in one direction, as streams
of one TCP connection (RFC 9113: one connection per origin). Its streams share that connection's one congestion
window: together they take one flow's share, split equally among the streams active on it. Each of ``k`` active
streams has weight ``1/k`` and cap ``C/k`` in the water-filling (``C`` the connection's window cap: the receive
window over the RTT, the Mathis bound), so the connection's streams together get ``min(C, its max-min share)``
(:func:`sim.des.sharing.weighted_level` derives it).

A stream that starts while its connection carries another stream (started and not finished) opens nothing and does
not slow-start: the window is open, so its request goes at once and its data follows one round trip later (or when
the connection's first data does, if it is still being opened), then it shares. One that starts on an idle
connection is a transfer as the trace's draw says: ``multiplexed-new`` pays the handshakes (the server closed the
idle connection), ``multiplexed-reused`` does not; either slow-starts (an idle connection's window restarts).

Streams in their start-up take no share, as any transfer's (:mod:`sim.des.tcp`); only active streams count in
``k``. A link that carries an active stream is never a crowd (:mod:`sim.des.crowd`, an exact speed-up): its
transfers are shared as objects.
"""

from __future__ import annotations

import math

from mypy_extensions import trait

from sim.des import tcp
from sim.des.flows import Transfer
from sim.des.links import Link
from sim.des.session import Session
from sim.des.state import GroupState

# The trace's connection of a multiplexed app's transfer, by what it does on an idle connection.
MULTIPLEXED = {"multiplexed-new": "new", "multiplexed-reused": "reused"}
_EPS_S = 1e-9


class Connection:
    """One multiplexed connection: its active streams, and whether it is open.

    ``streams`` are its streams sharing now (in the order they became active); ``live`` counts those started and not
    finished; ``busy_until_s`` is the latest end of a stream finished ahead of the clock (a start-up replayed whole,
    s); ``ready_s`` when its first data arrives (s); ``cap_bps`` its window cap (bit/s), that of the latest stream to
    become active.
    """

    __slots__ = ("streams", "live", "busy_until_s", "ready_s", "cap_bps")

    def __init__(self) -> None:
        self.streams: list = []
        self.live = 0
        self.busy_until_s = self.ready_s = -math.inf
        self.cap_bps = math.inf

    def is_open(self, now_s: float) -> bool:
        """Whether a stream of it is under way at ``now_s`` (s), so a new stream joins it."""
        return self.live > 0 or self.busy_until_s > now_s + _EPS_S

    def join(self, flow: Transfer) -> None:
        """Count a stream that starts on it (``flow.joined`` says whether it found it open)."""
        flow.conn = self
        if not flow.joined:  # it opens the connection (or wakes an idle one): its first data comes then
            self.ready_s = flow.data_from_s
        self.live += 1

    def activate(self, flow: Transfer) -> None:
        """A stream's start-up ended: it shares the connection's window from now."""
        self.cap_bps = flow.cap_bps
        self._reweigh(self.streams + [flow])

    def leave(self, flow: Transfer, end_s: float) -> None:
        """A stream sent its last byte at ``end_s`` (s): it no longer counts."""
        self.live -= 1
        if end_s > self.busy_until_s:  # (max())
            self.busy_until_s = end_s
        if flow in self.streams:
            self._reweigh([f for f in self.streams if f is not flow])

    def _reweigh(self, streams: list[Transfer]) -> None:
        """Make ``streams`` the active ones: each weight ``1/k`` and cap ``C/k``; keep the links' counts."""
        old_k, k = len(self.streams), len(streams)
        path = streams[0].path if streams else self.streams[0].path
        for link in path:
            link.streams += k - old_k
            link.weighted += (k if k > 1 else 0) - (old_k if old_k > 1 else 0)
        self.streams = streams
        for flow in streams:
            flow.weight = 1.0 / k if k > 1 else 1.0
            flow.cap_bps = self.cap_bps / k if k > 1 else self.cap_bps


def joined_start(conn: Connection, rtt_s: float, extra_rtts: int, now_s: float) -> tcp.StartUp:
    """The start-up of a stream joining an open connection at ``now_s`` (s): no handshake, no slow start.

    Its request goes at once, its data one round trip (``rtt_s``, s) later, or when the connection's first data
    arrives if that is later (in whole round trips); ``extra_rtts`` further request round trips (chunks).
    """
    wait_rtts = math.ceil((conn.ready_s - now_s) / rtt_s - _EPS_S) if rtt_s > 0 else 1
    setup_rounds = max(1, wait_rtts) + extra_rtts
    setup_s = setup_rounds * rtt_s
    return tcp.StartUp(setup_s, 0.0, setup_s, setup_rounds, setup_rounds)


@trait
class Connections(GroupState):
    """The group's multiplexed connections (a mixin of :class:`sim.des.group.Group`), by app and data path."""

    connections: dict

    def _connection(self, s: Session, path: tuple[Link, ...]) -> Connection:
        """The connection of session ``s``'s app on ``path`` (made when first asked for)."""
        key = (s.app, path)
        conn = self.connections.get(key)
        if conn is None:
            conn = self.connections[key] = Connection()
        return conn
