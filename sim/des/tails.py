"""Loss that no duplicate ACK repairs: the timeouts that give short transfers their tails.

Where loss-based TCP holds a drop-tail queue full, packets that join it when it overflows are dropped
(``Link.congestion_loss``: the loss a saturated link's queue implies). Most losses are repaired by fast
retransmit within about a round trip: the packets sent after a lost one bring duplicate ACKs. A loss with nothing
sent after it waits for a timer:

* **The transfer's last segments** (``TAIL_SEGMENTS``, fewer than three segments after them to bring three duplicate
  ACKs): the sender's tail-loss probe fires after ``PTO = 2 SRTT`` (RFC 8985, 7.2; at least ``TLP_MIN_S``, and with
  ``TCP_RTO_MIN`` more when a single segment is in flight, as Linux's ``tcp_schedule_loss_probe``) and its
  retransmission repairs the loss; if the probe is lost too, the retransmission timer fires ``RTO`` later.
* **The setup's flights** (the handshakes' and requests' single packets, a window too small for duplicate ACKs): one
  crosses the data path each round trip of the setup. A lost SYN or SYN-ACK is sent again after the initial RTO
  (``INITIAL_RTO_S``, 1 s); a later one after the RTO: ``SRTT + max(4 RTTVAR, TCP_RTO_MIN)`` (RFC 6298, 2.3, with
  Linux's 200 ms floor on the variance term), ``RTTVAR = SRTT / 2`` (RFC 6298 2.2's first sample).

The setup's packets see the data path's loss when the transfer starts, its last segments the loss when it ends.
Each transfer draws one uniform number from the run's seed and its session's key (:func:`uniforms`), and its added delay
is where that number falls (:func:`delay_s`): the chances are laid end to end (a SYN lost, another setup packet
lost, the tail lost with its probe, the tail lost), each its own exposure's, so two losses in one transfer (a chance
of the loss rate squared) are not counted twice. A transfer whose last slow-start round overflowed a queue has lost
its tail already, and its start-up counts the probe (``tcp.TAIL_PROBE_RTTS``): it draws for its setup alone.
Losses fast retransmit repairs are not modelled (about one round trip each; a long flow's are in the Mathis bound of
its steady rate).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from sim.des import tcp
from sim.des.links import Link

TAIL_SEGMENTS = 3       # RFC 5681's duplicate-ACK threshold: a loss among the last 3 segments brings fewer than 3
TLP_MIN_S = 0.010       # the probe timeout's floor (s): Linux 3.10-4.x's tcp_schedule_loss_probe (docs/sources.md)
TCP_RTO_MIN_S = 0.200   # Linux TCP_RTO_MIN: the floor of the RTO's variance term, and a lone segment's probe's extra
INITIAL_RTO_S = 1.0     # RFC 6298 2.1 and Linux TCP_TIMEOUT_INIT: a lost SYN or SYN-ACK is sent again after 1 s
RTTVAR_SHARE = 0.5      # RTTVAR / SRTT: RFC 6298 2.2's first measurement (an assumption for a short transfer: 0.1-0.5)

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)  # splitmix64's constants


def assumptions() -> dict[str, float]:
    """The loss-recovery timers a run's results carry (meta.json ``simulator``), by name, in s or as a share."""
    return {"tail_segments": TAIL_SEGMENTS, "tlp_min_s": TLP_MIN_S, "tcp_rto_min_s": TCP_RTO_MIN_S,
            "initial_rto_s": INITIAL_RTO_S, "rttvar_share": RTTVAR_SHARE}


def session_keys(sites) -> np.ndarray:
    """A key per session that names it whatever else its trace holds: its site's and its rank among the site's sessions.

    ``sites`` is the trace's site of each session, in trace order (an array or a Series). A session keeps its key in
    a shard of the estate (its site's sessions are drawn alike there, in the same order), where session ids are
    numbered anew; not in a slice of a window, which starts its sites' ranks at the slice's first session. The site's
    part is a 64-bit BLAKE2b digest of its name (stable across processes, unlike ``hash``; two of 10,000 sites share
    one with a chance of about 3e-12), to which the rank is added (unsigned, modulo 2^64).
    """
    codes, names = pd.factorize(sites)  # by hashing (sorting text is slow); names in order of first appearance
    digests = np.array([int.from_bytes(hashlib.blake2b(str(name).encode(), digest_size=8).digest(), "little")
                        for name in names], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return digests[codes] + _ranks(codes)


def _ranks(codes: np.ndarray) -> np.ndarray:
    """Each item's rank (0, 1, ...) among the items of its code, in order (unsigned 64-bit)."""
    order = np.argsort(codes, kind="stable")
    firsts = np.concatenate([[0], np.cumsum(np.bincount(codes))[:-1]])  # where each code's run starts in ``order``
    ranks = np.empty(len(codes), dtype=np.uint64)
    ranks[order] = np.arange(len(codes), dtype=np.uint64) - firsts[codes[order]].astype(np.uint64)
    return ranks


def uniforms(seed: int | None, keys: np.ndarray) -> np.ndarray:
    """One uniform number in [0, 1) per session, from the run's ``seed`` and each session's key alone.

    A hash (splitmix64 of seed and key, :func:`session_keys`), not a stream: a session draws the same number whatever
    else the run holds and in whatever order its group reaches it. ``None`` is seed 0.
    """
    with np.errstate(over="ignore"):
        x = np.asarray(keys).astype(np.uint64)
        x = x + np.uint64((int(seed or 0) * _MIX[0]) % 2**64)
        x = x * np.uint64(_MIX[0]) + np.uint64(_MIX[1])
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX[1])
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX[2])
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def pto_s(srtt_s: float, segments: int) -> float:
    """The tail-loss probe's timeout (s) for a flight of ``segments`` on a path of smoothed RTT ``srtt_s``.

    Never later than the retransmission timer would fire (RFC 8985 7.2; Linux's ``tcp_schedule_loss_probe`` takes
    the lesser of the two): a lone segment's ``2 SRTT + TCP_RTO_MIN`` is cut to the RTO when SRTT is under 0.2 s.
    """
    extra_s = TCP_RTO_MIN_S if segments <= 1 else 0.0
    return min(max(2 * srtt_s, TLP_MIN_S) + extra_s, rto_s(srtt_s))


def rto_s(srtt_s: float) -> float:
    """The retransmission timeout (s): ``SRTT + max(4 RTTVAR, TCP_RTO_MIN)``, ``RTTVAR = RTTVAR_SHARE x SRTT``."""
    return srtt_s + max(4 * RTTVAR_SHARE * srtt_s, TCP_RTO_MIN_S)


def segments(size_bytes: float) -> int:
    """Segments of ``tcp.MSS_BYTES`` a payload of ``size_bytes`` takes (at least one)."""
    return max(1, math.ceil(size_bytes / tcp.MSS_BYTES))


def chances(setup_loss: float, tail_loss: float, setup_rounds: int, n_segments: int, opens: bool = True,
            ) -> tuple[float, float, float, float]:
    """The chances (0..1) of each way a transfer waits for a timer, laid end to end.

    A lost SYN or SYN-ACK (``opens``: the transfer opens its connection; its first setup round trip), a lost later
    setup packet (one each other setup round trip), a lost tail whose probe is lost too, a lost tail the probe
    repairs. ``setup_loss`` and ``tail_loss`` are the data path's loss (0..1) at the start and at the end.
    """
    syn = setup_loss if opens and setup_rounds > 0 else 0.0
    later = setup_rounds - 1 if opens else setup_rounds
    setup = 1.0 - (1.0 - setup_loss) ** max(0, later)
    tail = 1.0 - (1.0 - tail_loss) ** min(TAIL_SEGMENTS, n_segments)
    return syn, setup, tail * tail_loss, tail * (1.0 - tail_loss)


def delays_s(setup_rtt_s: float, tail_rtt_s: float, n_segments: int) -> tuple[float, float, float, float]:
    """What each way of :func:`chances` adds to the transfer's completion (s), in the same order."""
    pto = pto_s(tail_rtt_s, min(TAIL_SEGMENTS, n_segments))
    return INITIAL_RTO_S, rto_s(setup_rtt_s), pto + rto_s(tail_rtt_s), pto


def delay_s(u: float, setup_loss: float, tail_loss: float, setup_rounds: int, size_bytes: float,
            setup_rtt_s: float, tail_rtt_s: float, opens: bool = True) -> float:
    """The delay (s) a transfer whose uniform draw is ``u`` waits for timers: 0 unless a timer-repaired loss hits it.

    ``u`` falls in the first of :func:`chances`'s intervals laid end to end from 0 that holds it, and the transfer
    waits that way's delay (:func:`delays_s`); past them all, for none. ``opens``: the transfer opens its connection
    (its first setup round trip is the SYN's); a request on a kept-alive connection does not.
    """
    if not may_wait(u, setup_loss, tail_loss, setup_rounds):
        return 0.0
    n = segments(size_bytes)
    edge = 0.0
    ways = zip(chances(setup_loss, tail_loss, setup_rounds, n, opens), delays_s(setup_rtt_s, tail_rtt_s, n))
    for chance, wait_s in ways:
        edge += chance
        if u < edge:
            return wait_s
    return 0.0


def may_wait(u: float, setup_loss: float, tail_loss: float, setup_rounds: int) -> bool:
    """Whether a draw ``u`` can fall within :func:`chances`'s intervals: False where :func:`delay_s` is 0 at once.

    Each chance is at most ``n p`` of its ``n`` packets' loss ``p``, so ``u`` past their sum waits for nothing (the
    caller need not work out the round trips :func:`delay_s` takes).
    """
    return u < (1 + setup_rounds) * setup_loss + TAIL_SEGMENTS * tail_loss


def path_loss(path: tuple[Link, ...]) -> float:
    """The congestion loss (0..1) a packet crossing ``path``'s links now sees."""
    if len(path) == 1:
        return path[0].congestion_loss
    delivered = 1.0
    for link in path:
        delivered *= 1.0 - link.congestion_loss
    return 1.0 - delivered
