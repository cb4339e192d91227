"""TCP start-up and steady-state limits for flow-level transfers.

A transfer on a new connection first pays its handshakes (``HANDSHAKE_RTTS`` round trips: TCP's, then TLS 1.3's,
with the request riding on the client's last flight, as the emulation's transfers do; a kept-alive one none), then
slow start from an initial window of
``INITIAL_WINDOW_SEGMENTS``, doubling each round trip until the window fills the path (rate x RTT); the first
round's data arrives one round trip after the request. Bytes sent in those rounds are counted; the rest of the
transfer shares
capacity as a fluid flow. This is the short-flow latency model of Cardwell, Savage & Anderson (2000) with
no loss during slow start. Under random loss, Mathis et al. (1997) bound the steady rate.
"""

from __future__ import annotations

import math
from typing import NamedTuple

MSS_BYTES = 1448           # TCP payload per segment with timestamps, on a 1500-byte MTU
FRAME_BYTES = 1514         # the Ethernet frame carrying it: what a shaped link counts
GOODPUT_FACTOR = MSS_BYTES / FRAME_BYTES
INITIAL_WINDOW_SEGMENTS = 10   # RFC 6928
HANDSHAKE_RTTS = 2         # TCP SYN/SYN-ACK, then TLS 1.3 (RFC 8446: one round trip), the request on its last flight
# Round trips of handshakes by the trace's ``connection``: a new one pays TCP's and TLS's; a kept-alive one none.
# A multiplexed app's stream on an idle connection is as ``new`` or ``reused`` (sim.des.connections).
HANDSHAKE_RTTS_BY_CONNECTION = {"new": HANDSHAKE_RTTS, "reused": 0, "multiplexed-new": HANDSHAKE_RTTS,
                                "multiplexed-reused": 0}
MAX_WINDOW_BYTES = 6 * 2**20   # Linux default tcp_rmem maximum (autotuning ceiling)
# What a slow-start round that overflows the room a standing queue leaves costs (round trips): mid-transfer, fast
# recovery (the packets sent after the dropped ones bring duplicate ACKs: one round trip, RFC 6675); in its last round,
# the drop-tail queue drops the burst's last segments, the transfer's tail, which nothing follows: the tail-loss probe
# fires after 2 SRTT (RFC 8985 7.2) and repairs it.
RECOVERY_RTTS, TAIL_PROBE_RTTS = 1, 2
# A transfer that goes on past slow start gets data at its share a round trip after its last slow-start round (or,
# with none, after its request went): that round's ACKs (or the request) take half a round trip to the sender, its next
# data half a round trip back. Measured in the emulation (docs/model.md, "The handover round trip"): a lone 200 kB
# download on a 10 Mbit/s, 20 ms line took 194 ms on a kept-alive connection and 238 ms on a new one, where the
# model without it gave 175 and 215 ms. Where a round overflowed mid-transfer, the loss's recovery is that round trip.
HANDOVER_RTTS = 1
_new_tuple = tuple.__new__  # a StartUp from its fields in order, without NamedTuple's keyword handling


class StartUp(NamedTuple):
    """What slow start costs a transfer.

    Its duration (s), the payload it delivered (bytes), the handshakes' part of the duration (s), before any
    payload moves, and its round trips: the setup's (handshakes and requests), all of them (setup, slow start and
    any recovery or handover), each ``duration_s / rounds`` long (:mod:`sim.des.rounds` follows them one by one), and
    the last ``recovery_rounds`` of them those after slow start: repairing a loss where a round overflowed the room a
    standing queue left (:func:`overflow`), or the handover to the flow's share (``HANDOVER_RTTS``).
    """

    duration_s: float
    sent_bytes: float
    setup_s: float
    setup_rounds: int = 0
    rounds: int = 0
    recovery_rounds: int = 0


def slow_start(size_bytes: float, rate_bps: float, rtt_s: float, extra_rtts: int = 0,
               handshake_rtts: int = HANDSHAKE_RTTS, room_segments: float = math.inf) -> StartUp:
    """Start-up of a transfer of ``size_bytes`` on a path with ``rate_bps`` available and ``rtt_s``.

    A transfer on a kept-alive connection (``handshake_rtts`` 0) sends its request at once, its first data one round
    trip later; it still slow-starts from the initial window, as Linux restarts the window of a connection idle for
    longer than its retransmission timeout (``net.ipv4.tcp_slow_start_after_idle`` = 1, the default; RFC 5681 4.1),
    which a kept-alive connection between requests is.

    Args:
        size_bytes: Payload to deliver (bytes).
        rate_bps: Wire rate the flow can have once its window fills the path (bit/s).
        rtt_s: Round-trip time, queueing included (s).
        extra_rtts: Further request round trips (e.g. one per extra chunk of a chunked transfer).
        handshake_rtts: Round trips before the request goes: ``HANDSHAKE_RTTS`` on a new connection, 0 on a reused
            one (:data:`HANDSHAKE_RTTS_BY_CONNECTION`).
        room_segments: The room (segments) a standing queue leaves in the data path's buffer (inf: none holds
            one): a round whose window passes it loses there (:func:`overflow`).

    Returns:
        The handshake and slow-start time (with the round trip after it: a loss's recovery, or the handover to the
        flow's share when bytes are left), and the payload sent in it. When ``sent_bytes`` reaches ``size_bytes``
        the transfer completes at the end of its start-up.
    """
    setup_rounds = handshake_rtts + extra_rtts
    setup_s = setup_rounds * rtt_s
    rounds = slow_start_rounds(size_bytes, rate_bps, rtt_s)
    recovery = 0
    if room_segments != math.inf:  # (overflow() finds nothing to overflow without a standing queue: most transfers)
        rounds, recovery = overflow(size_bytes, rounds, room_segments)
    sent_bytes = INITIAL_WINDOW_SEGMENTS * MSS_BYTES * (2**rounds - 1)  # (sent_in)
    recovery = after_slow_start(size_bytes, sent_bytes, recovery)
    return _new_tuple(StartUp, (setup_s + (rounds + recovery) * rtt_s, sent_bytes if sent_bytes < size_bytes
                                else size_bytes, setup_s, setup_rounds, setup_rounds + rounds + recovery, recovery))


def overflow(size_bytes: float, ss_rounds: int, room_segments: float, first_round: int = 1) -> tuple[int, int]:
    """Slow start's data rounds and recovery round trips when its bursts meet a buffer with ``room_segments`` left.

    Behind a standing queue, whose buffer has only ``room_segments`` free, a slow-start round overflows it when what
    it adds to the queue passes that room, and loses its last segments. The first round's segments (the initial
    window, or the whole transfer if smaller) arrive at once; each later round's are sent two for each ACK of the
    round before, which arrive at the rate the queue drains them, so it adds what it sends beyond the round before
    (:func:`round_segments`). Slow start ends at the first round that overflows (the loss halves the window: the
    rest goes at the flow's share), after ``RECOVERY_RTTS`` to repair the loss, or ``TAIL_PROBE_RTTS`` when that round
    is the transfer's last (its tail is lost: nothing after it brings duplicate ACKs). Without such a round:
    ``(ss_rounds, 0)``. Rounds before ``first_round`` went before the queue stood and are not looked at.
    """
    if room_segments == math.inf:  # no standing queue: nothing to overflow (most transfers)
        return ss_rounds, 0
    total = math.ceil(size_bytes / MSS_BYTES)  # segments of the transfer; round k ends at min(total, W (2^k - 1))
    k = max(1, first_round)
    before = min(total, INITIAL_WINDOW_SEGMENTS * (2 ** (k - 1) - 1))  # segments sent before round k
    previous = before - min(total, INITIAL_WINDOW_SEGMENTS * (2 ** (k - 2) - 1)) if k > 1 else 0
    while k <= ss_rounds:
        sent = min(total, INITIAL_WINDOW_SEGMENTS * (2**k - 1))
        segments = sent - before  # round_segments(size_bytes, k), in integers
        if segments - previous > room_segments:
            return k, TAIL_PROBE_RTTS if sent_in(size_bytes, k) >= size_bytes else RECOVERY_RTTS
        before, previous = sent, segments
        k += 1
    return ss_rounds, 0


def round_segments(size_bytes: float, k: int) -> int:
    """Segments slow start's round ``k`` (from 1) sends of a transfer of ``size_bytes``: its window or what is left."""
    return math.ceil(sent_in(size_bytes, k) / MSS_BYTES) - math.ceil(sent_in(size_bytes, k - 1) / MSS_BYTES)


def slow_start_rounds(size_bytes: float, rate_bps: float, rtt_s: float) -> int:
    """Slow-start rounds a transfer of ``size_bytes`` takes on a path of ``rate_bps`` and ``rtt_s`` (no loss).

    As many as it needs to send its bytes from ``INITIAL_WINDOW_SEGMENTS``, doubling each round, but no more
    than it takes for the window to fill the path (what :func:`slow_start` takes).
    """
    first_round_bytes = INITIAL_WINDOW_SEGMENTS * MSS_BYTES
    pipe_segments = rate_bps * GOODPUT_FACTOR * rtt_s / (8 * MSS_BYTES)
    to_fill = max(0, math.ceil(math.log2(pipe_segments / INITIAL_WINDOW_SEGMENTS))) \
        if pipe_segments > INITIAL_WINDOW_SEGMENTS else 0
    if size_bytes <= first_round_bytes * (2**to_fill - 1):
        return math.ceil(math.log2(size_bytes / first_round_bytes + 1))
    return to_fill


def after_slow_start(size_bytes: float, ss_sent_bytes: float, recovery_rounds: int) -> int:
    """Round trips after slow start (which sent ``ss_sent_bytes``) and before the rest at the flow's share.

    A loss's ``recovery_rounds`` (:func:`overflow`) where a round overflowed; else ``HANDOVER_RTTS`` if bytes are left
    after slow start, and none if it sent them all.
    """
    if recovery_rounds:
        return recovery_rounds
    return HANDOVER_RTTS if ss_sent_bytes < size_bytes else 0


def sent_in(size_bytes: float, ss_rounds: int) -> float:
    """Payload (bytes) delivered by ``ss_rounds`` slow-start rounds, at most the transfer's size."""
    return min(size_bytes, INITIAL_WINDOW_SEGMENTS * MSS_BYTES * (2**ss_rounds - 1))


def window_cap_bps(rtt_s: float, loss: float) -> float:
    """Highest wire rate one TCP flow sustains: receive window over RTT, and the Mathis bound under loss."""
    if rtt_s <= 0:
        return math.inf
    cap_bps = MAX_WINDOW_BYTES * 8 / rtt_s / GOODPUT_FACTOR
    if loss > 0:
        cap_bps = min(cap_bps, MSS_BYTES * 8 / rtt_s * 1.22 / math.sqrt(loss) / GOODPUT_FACTOR)
    return cap_bps


def mathis_loss(rate_bps: float, rtt_s: float) -> float:
    """Loss rate at which a Reno-like flow settles to ``rate_bps`` (Mathis et al., inverted); at most 0.5."""
    if rate_bps <= 0 or rtt_s <= 0:
        return 0.0
    return min(0.5, (1.22 * MSS_BYTES * 8 / (rtt_s * rate_bps * GOODPUT_FACTOR)) ** 2)
