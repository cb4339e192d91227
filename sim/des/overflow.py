"""Loss at a drop-tail buffer that loss-based TCP (Cubic) keeps overflowing: what a packet joining it sees.

Each of ``flows`` Cubic flows the link limits grows its window until the buffer overflows, loses, cuts its window to
``CUBIC_BETA`` of it and grows again: a sawtooth whose period (:func:`cycle_s`) is Cubic's ``K``, the time its
cubic curve takes back to the window it lost at, ``cbrt(W (1 - beta) / C)`` (RFC 8312, 4.1, eq. 1-2; RFC 9438
keeps it), or, where that is shorter, the time its Reno-friendly estimate takes, ``(1 - beta) W / alpha`` round
trips with ``alpha = 3 (1 - beta) / (1 + beta)`` packets a round trip (RFC 8312, 4.2, eq. 4). ``W`` is the flow's
window when the buffer overflows: its share of the line times the round trip with the buffer full.

The buffer overflows once per cycle of each flow (the flows' cycles interleave, docs/fidelity.md (a)), and stays
at its brim until the sender hears of the loss: about one round trip with the buffer full. A packet joining the
buffer (a probe's, a call's, another transfer's) is dropped if it comes at the brim, so the loss it sees is the
share of time the buffer is at the brim:

    loss = FULL_SHARE x flows x full_rtt_s / cycle_s

``FULL_SHARE`` is the part of each such round trip in which an arriving packet finds the buffer at its limit (a
packet-limited FIFO at the brim alternates between full and one below as frames leave and the ACK-clocked flows
refill it); it is fitted to the emulation's measurements (``benchmarks/results/emu_queues.json``: a probe beside
1, 2 and 4 Cubic uploads on 1, 10 and 100 Mbit/s lines with 40 and 100 ms buffers, and a call beside one upload on
1-50 Mbit/s lines with a 100-packet buffer; the fit and its error, row by row, in docs/fidelity.md). Cubic's
cycle is counted in seconds, not round trips, so the loss falls with the line's rate at a given buffer in packets
(3.3% at 1 Mbit/s, 0.26% at 10 Mbit/s, 0.02% at 50 Mbit/s beside one upload, measured), which the Mathis
inversion (a loss in round trips: 0.03% at 2 Mbit/s where the emulation measured 1.0%) does not give.
"""

from __future__ import annotations

from sim.des.tcp import FRAME_BYTES

CUBIC_C = 0.4       # Cubic's scaling constant (packets/s^3): RFC 8312 5.1 (RFC 9438 keeps it), Linux's default
CUBIC_BETA = 0.7    # Cubic's multiplicative decrease: the window after a loss (RFC 8312 4.5, Linux's 717/1024)
RENO_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)  # RFC 8312 4.2: the Reno-friendly increase, packets a round trip
# The share of each overflow round trip in which a joining packet finds the buffer at its limit: fitted (maximum
# likelihood on the binomial counts of lost packets) to the measured rows with buffers of 30 packets or more (the
# catalogue's buffers hold about 60 packets or more: topologies/access.yaml): 0.050; all rows, the 4- and 9-packet
# buffers of 1 Mbit/s lines too, give 0.030, the quiet machine's alone 0.028 (docs/fidelity.md, "Loss where Cubic
# overflows"). An assumption within 0.03-0.05 (a sweep can cover it).
FULL_SHARE = 0.05
MAX_LOSS = 0.5      # at most every other packet: beyond the fit's range (18-21% measured at its worst)


def cycle_s(window_pkts: float, rtt_s: float) -> float:
    """One Cubic flow's sawtooth period (s) from a loss at ``window_pkts`` (packets) to the next, at ``rtt_s``.

    Cubic's ``K`` (its curve back to the window it lost at), or the Reno-friendly estimate's time back there
    (``rtt_s``: the mean round trip over the cycle, s), whichever is shorter: Cubic takes the larger window.
    """
    cubic_s = (window_pkts * (1 - CUBIC_BETA) / CUBIC_C) ** (1 / 3)
    reno_s = (1 - CUBIC_BETA) * window_pkts / RENO_ALPHA * rtt_s
    return min(cubic_s, reno_s)


def loss(flows: int, rate_bps: float, base_rtt_s: float, buffer_s: float, queue_s: float) -> float:
    """Loss (0..``MAX_LOSS``) a packet joining a drop-tail buffer that ``flows`` Cubic flows keep overflowing sees.

    Args:
        flows: The loss-based flows the link limits (at least 1).
        rate_bps: Each one's mean wire rate there (bit/s).
        base_rtt_s: Their mean round trip without this link's queue (s).
        buffer_s: The buffer's time at the line's rate, full (s).
        queue_s: Its mean queue under those flows (s): Cubic's standing queue.
    """
    full_rtt_s = base_rtt_s + buffer_s
    if flows <= 0 or rate_bps <= 0 or full_rtt_s <= 0:
        return 0.0
    window_pkts = rate_bps * full_rtt_s / (8 * FRAME_BYTES)
    return min(MAX_LOSS, FULL_SHARE * flows * full_rtt_s / cycle_s(window_pkts, base_rtt_s + queue_s))


def assumptions() -> dict[str, float]:
    """The overflow-loss model's figures a run's results carry (meta.json ``simulator``), by name."""
    return {"overflow_full_share": FULL_SHARE, "cubic_c": CUBIC_C, "cubic_beta": CUBIC_BETA}

