"""A transfer's start-up round by round: each round trip takes the round-trip time of its moment.

A transfer's start-up is its setup round trips (handshakes, requests) then its slow-start rounds
(:func:`sim.des.tcp.slow_start`). Each round lasts the round-trip time found when it begins: the base RTT, the
queues of its ACK path as they were when the transfer started, and the queues of its data path now. A round that
begins while a long transfer holds Cubic's standing queue on the data path pays that queue; one that begins after
that transfer ended does not.

A fluid model's queues change only at its events, so the start-up is planned whole at its start with the RTT then,
and planned again from the round in progress whenever an event changes a link of its data path: whether a long
transfer holds its standing queue (tens to hundreds of ms), or its line (a fault, a repair). Rounds already begun keep
their RTT; the rest take the new one, and slow start's exit (the round whose window fills the path) is found again
from the new rate and RTT. Short transfers' burst queue coming and going re-plans it too: each round takes the burst
queue of its moment (M/D/1 at the cut-off while short transfers saturate the line), which with the handover round
trip after slow start (``sim.des.tcp.HANDOVER_RTTS``) agrees with the emulation on the calibration's short flows,
new and kept-alive (docs/fidelity.md); holding the queue found at the start had made up for that missing round trip
on new connections only. M/D/1 queueing below saturation (a reservation step, a little more load: a few ms) does not
re-plan a start-up. The ACK path's queues are those found at the start for the whole start-up (following them too would
need the lone-transfer shortcut, :mod:`sim.des.shortcuts`, to hold off while a transfer starting the other way
crosses its link).

A transfer that ends within its start-up on a data path that no other transfer uses or is starting on is finished at
once, as planned at its start: only a transfer arriving after it could bring a standing queue before it ends, and
as a rule such a one becomes active later (its own start-up on the same path is at least as long). A limitation: a
later transfer on a kept-alive connection skips two round trips of handshakes, so a long one arriving within two
round trips of an earlier new connection's start could bring its standing queue first; the earlier transfer keeps
the round trips planned at its start (at most its last rounds, tens of ms). Any other start-up is followed until
it ends, its end an event of its group.
"""

from __future__ import annotations

import math

from mypy_extensions import trait

from sim.des import queueing, tcp
from sim.des.flows import Transfer
from sim.des.links import Link
from sim.des.state import GroupState

_EPS_S = 1e-9


def advance(end_s: float, done: int, rtt_s: float, total: int, now_s: float) -> tuple[float, int]:
    """Move a start-up's cursor to ``now_s``: the end of the round in progress then and the rounds done by it.

    ``end_s`` is the end of the round in progress at the last plan, ``done`` the rounds done by then (that one
    counted), ``rtt_s`` the length of every round after it, ``total`` the start-up's rounds. A round beginning at
    ``now_s`` is not yet begun: it is the caller's to re-plan.
    """
    if now_s <= end_s + _EPS_S or rtt_s <= 0:
        return end_s, done
    begun = min(total - done, math.ceil((now_s - end_s - _EPS_S) / rtt_s))
    return end_s + begun * rtt_s, done + begun


def path_key(path: tuple[Link, ...]) -> tuple:
    """What re-plans a start-up when it changes: each data-path link's saturation, and its line.

    Saturation: a long transfer's standing queue, short transfers' bursts, or neither.
    """
    if len(path) == 1:
        link = path[0]
        return link.saturated, link.capacity_bps, link.rtt_shift_s, link.buffer_bytes
    return tuple((link.saturated, link.capacity_bps, link.rtt_shift_s, link.buffer_bytes)
                 for link in path)


def standing_room(path: tuple[Link, ...]) -> float:
    """The least room a standing queue leaves on ``path``'s links (segments; inf where none holds one)."""
    room = math.inf
    for link in path:
        if link.saturated == queueing.STANDING and link.standing_room_segments < room:
            room = link.standing_room_segments
    return room


@trait
class Rounds(GroupState):
    """A group's transfers starting up (a mixin of :class:`sim.des.group.Group`): planned, then followed."""

    def _plan_start(self, flow: Transfer, start: tcp.StartUp, fixed_rtt_s: float, setup_loss: float, now_s: float,
                    handshakes: int = 0, joins: bool = False) -> None:
        """Give a new transfer its start-up, as :func:`sim.des.tcp.slow_start` planned it at ``now_s``.

        ``fixed_rtt_s`` is its RTT but for the data path's queues (s): the site's and the core's, and the ACK
        path's queues now; ``setup_loss`` its data path's loss now (0..1). Its slow-start bytes are counted on its
        links over their rounds. Its request goes after its ``handshakes`` round trips; its first data comes a round
        trip after its setup, or at its end if it ``joins`` an open connection (the setup then is the request's own
        round trip, or the wait for the connection's first data).
        """
        flow.fixed_rtt_s, flow.round_rtt_s, flow.setup_loss = fixed_rtt_s, flow.rtt_s, setup_loss
        flow.setup_rounds, flow.rounds, flow.recovery_rounds = start.setup_rounds, start.rounds, start.recovery_rounds
        flow.round_end_s, flow.done_rounds = now_s, 0
        flow.request_rounds = handshakes
        flow.first_data_rounds = start.setup_rounds if joins else start.setup_rounds + 1
        flow.request_at_s = now_s + handshakes * flow.rtt_s
        flow.first_data_at_s = now_s + flow.first_data_rounds * flow.rtt_s
        flow.ss_bytes, flow.data_from_s = start.sent_bytes, now_s + start.setup_s
        if start.sent_bytes > 0:  # (as _count_bits: this is the path every transfer takes)
            wire_bits = start.sent_bytes * 8 / tcp.GOODPUT_FACTOR
            for link in flow.path:
                link.add_bits(flow.data_from_s, flow.active_at_s, wire_bits)

    def _follow(self, flow: Transfer, expected_bps: float) -> None:
        """Follow a transfer's start-up from now: note its data path's state, and whether it is a long one."""
        flow.key = path_key(flow.path)
        flow.long = self._is_long(flow, expected_bps, flow.rtt_s)
        self.starting.append(flow)

    @staticmethod
    def _data_rounds(flow: Transfer, ss_done: int, expected_bps: float, rtt_s: float, room: float) -> tuple[int, int]:
        """A re-planned start-up's slow-start rounds and recovery round trips, ``ss_done`` of its rounds past its setup.

        A round that overflowed a standing queue's room once begun has lost its segments: its recovery stays. Else
        the rounds not begun are planned at the rate and RTT now, and overflow the room the queue leaves now, if any
        (:func:`sim.des.tcp.overflow`).
        """
        if flow.joined:  # a stream that joined an open connection does not slow-start (sim.des.connections)
            return 0, 0
        planned = flow.rounds - flow.setup_rounds - flow.recovery_rounds
        if flow.recovery_rounds and ss_done >= planned:
            return planned, flow.recovery_rounds
        ss_rounds = max(ss_done, tcp.slow_start_rounds(flow.size_bytes, expected_bps, rtt_s))
        ss_rounds, recovery = tcp.overflow(flow.size_bytes, ss_rounds, room, first_round=ss_done + 1)
        return ss_rounds, tcp.after_slow_start(flow.size_bytes, tcp.sent_in(flow.size_bytes, ss_rounds), recovery)

    def _count_bits(self, flow: Transfer, sign: float) -> None:
        """Add (``sign`` 1) or take back (-1) the wire bits of a start-up's slow-start rounds on its links."""
        if flow.ss_bytes > 0:
            wire_bits = sign * flow.ss_bytes * 8 / tcp.GOODPUT_FACTOR
            for link in flow.path:
                link.add_bits(flow.data_from_s, flow.active_at_s, wire_bits)

    @staticmethod
    def _is_long(flow: Transfer, expected_bps: float, rtt_s: float) -> bool:
        """Whether it is long enough to go through loss cycles, holding a standing queue (``LONG_FLOW_FILLS``)."""
        path = flow.path
        buffer_bytes = path[0].buffer_bytes if len(path) == 1 else max(link.buffer_bytes for link in path)
        fill_bytes = buffer_bytes + expected_bps * rtt_s / 8
        return flow.remaining_bytes > queueing.LONG_FLOW_FILLS * fill_bytes

    def _busy(self, path: tuple[Link, ...], flow: Transfer) -> bool:
        """Whether another transfer is active or starting on a link of ``path`` (so its saturation may change)."""
        for link in path:
            if link in self.crowds:
                return True
            for other in self.transfers:
                if link in other.path:
                    return True
            for other in self.starting:
                if other is not flow and link in other.path:
                    return True
        return False

    def _follow_rounds(self, now_s: float) -> None:
        """Re-plan, from the round in progress, every start-up whose data path changed at this event (``now_s``)."""
        for flow in self.starting:
            key = path_key(flow.path)
            if key != flow.key:
                flow.key = key
                self._replan(flow, now_s)

    def _replan(self, flow: Transfer, now_s: float) -> None:
        """Plan the rest of a start-up at ``now_s`` with the data path's queues, rate and line as they are now."""
        path = flow.path
        end_s, done = advance(flow.round_end_s, flow.done_rounds, flow.round_rtt_s, flow.rounds, now_s)
        queue_s, delivered = 0.0, 1.0
        for link in path:
            queue_s += link.queue_delay_s
            delivered *= 1.0 - link.loss
        rtt_s = flow.fixed_rtt_s + path[0].rtt_shift_s + queue_s
        flow.cap_bps = tcp.window_cap_bps(rtt_s, 1.0 - delivered)
        expected_bps = min(flow.cap_bps, self._available_bps(path))
        setup = flow.setup_rounds
        ss_done = max(0, done - setup)
        ss_rounds, flow.recovery_rounds = self._data_rounds(flow, ss_done, expected_bps, rtt_s, standing_room(path))
        self._count_bits(flow, -1.0)
        if done < setup:
            flow.data_from_s = end_s + (setup - done) * rtt_s
        if done <= flow.request_rounds:  # (round ``done`` ends at end_s, each later one rtt_s after)
            flow.request_at_s = end_s + (flow.request_rounds - done) * rtt_s
        if done <= flow.first_data_rounds:
            flow.first_data_at_s = end_s + (flow.first_data_rounds - done) * rtt_s
        flow.round_end_s, flow.done_rounds, flow.round_rtt_s = end_s, done, rtt_s
        flow.rounds = setup + ss_rounds + flow.recovery_rounds
        flow.active_at_s = flow.since_s = end_s + (flow.rounds - done) * rtt_s
        flow.ss_bytes = tcp.sent_in(flow.size_bytes, ss_rounds)
        flow.remaining_bytes = flow.size_bytes - flow.ss_bytes
        flow.long = self._is_long(flow, expected_bps, rtt_s)
        self._count_bits(flow, 1.0)
