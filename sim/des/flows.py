"""Flows of the fluid model: elastic transfers and the two media directions of a video call."""

from __future__ import annotations

import math
from typing import Any

from sim.des.links import Link
from sim.des.queueing import (
    VIDEO_CLIMB_STEP_S,
    VIDEO_DECREASE,
    VIDEO_DETECT_S,
    VIDEO_HOLD_S,
    VIDEO_INCREASE_PER_S,
    VIDEO_SILENCE_S,
)
from sim.des.tcp import GOODPUT_FACTOR

_TINY = 1e-9
YIELDED = "_tcp_queue"  # a bottleneck label's suffix when a call yielded to transfers filling that link's queue


class Transfer:
    """A TCP transfer: start-up (handshakes, slow start), then a fluid share until its bytes are sent.

    Its start-up is followed round by round (:mod:`sim.des.rounds`): ``setup_rounds`` of ``rounds`` round trips are
    the setup's; ``done_rounds`` of them are done by ``round_end_s`` (s), and every later one lasts ``round_rtt_s``
    (s); ``fixed_rtt_s`` is its RTT but for its data path's queues (s), ``key`` its data path's state when last
    planned (set only while it is followed). Its slow start delivers ``ss_bytes`` (bytes) from ``data_from_s`` (s)
    until ``active_at_s``; its last ``recovery_rounds`` round trips are those after slow start: they repair a round
    that overflowed a standing queue's room (:func:`sim.des.tcp.overflow`), or hand over to its share
    (``sim.des.tcp.HANDOVER_RTTS``).
    Its request goes at ``request_at_s`` (s: after its handshakes) and its answer's first data comes at
    ``first_data_at_s`` (s: a round trip after the request, or for a stream joining an open connection at the end of
    its setup), both moved by a re-plan until they pass.
    ``setup_loss`` is its data path's loss when it started (0..1), and ``opens`` whether it opens its connection (its
    first setup round trip a SYN's), for its tail (:mod:`sim.des.tails`). A stream of a multiplexed connection
    (``conn``, :mod:`sim.des.connections`) has ``weight`` 1/k and cap C/k while k streams share it, and ``joined``
    when it found the connection open. ``rtt_s``
    and ``queue_delay_s`` are those found at its start (s), as the records keep them.
    """

    __slots__ = ("session", "path", "size_bytes", "remaining_bytes", "active_at_s", "cap_bps", "rate_bps",
                 "limiter", "limited_bits", "rtt_s", "queue_delay_s", "since_s", "long", "fixed_rtt_s",
                 "round_rtt_s", "setup_rounds", "rounds", "round_end_s", "done_rounds", "ss_bytes", "data_from_s",
                 "key", "setup_loss", "opens", "recovery_rounds", "conn", "weight", "joined", "request_rounds",
                 "request_at_s", "first_data_rounds", "first_data_at_s")

    # set by its group as it starts (sim.des.rounds.Rounds._plan_start, _follow)
    fixed_rtt_s: float
    round_rtt_s: float
    setup_rounds: int
    rounds: int
    round_end_s: float
    done_rounds: int
    ss_bytes: float
    data_from_s: float
    key: tuple
    setup_loss: float
    opens: bool
    recovery_rounds: int
    request_rounds: int
    request_at_s: float
    first_data_rounds: int
    first_data_at_s: float

    def __init__(self, session: int, path: tuple[Link, ...], size_bytes: float, remaining_bytes: float,
                 active_at_s: float, cap_bps: float, rtt_s: float, queue_delay_s: float) -> None:
        self.session, self.path = session, path
        self.size_bytes, self.remaining_bytes = size_bytes, remaining_bytes
        self.active_at_s, self.cap_bps = active_at_s, cap_bps
        self.rtt_s, self.queue_delay_s = rtt_s, queue_delay_s
        self.rate_bps = 0.0
        self.limiter: Link | None = None
        self.limited_bits: dict[str, float] = {}
        self.since_s = active_at_s  # accounting is settled up to here
        self.long = True  # whether it goes through loss cycles, holding a standing queue (set by its group)
        self.conn: Any = None  # its multiplexed connection (sim.des.connections), if it is a stream of one
        self.weight = 1.0  # its weight in the water-filling: 1/k as one of k active streams of a connection
        self.joined = False  # whether it joined an open connection (no handshake, no slow start)
        # its start-up's rounds are given by its group (sim.des.rounds.Rounds._plan_start)

    def settle(self, now_s: float) -> None:
        """Account for sending at the current rate from the last settlement until ``now_s``."""
        dt_s = now_s - self.since_s
        if dt_s > 0 and self.rate_bps > 0:
            self.remaining_bytes -= self.rate_bps * GOODPUT_FACTOR * dt_s / 8
            label = self.limiter.label if self.limiter is not None else "window"
            self.limited_bits[label] = self.limited_bits.get(label, 0.0) + self.rate_bps * dt_s
        if now_s > self.since_s:  # (max(since_s, now_s))
            self.since_s = now_s

    def finish_s(self) -> float:
        """When the last byte is sent at the current rate (s)."""
        if self.remaining_bytes <= 0:
            return self.since_s
        if self.rate_bps <= 0:
            return math.inf
        return self.since_s + self.remaining_bytes * 8 / (self.rate_bps * GOODPUT_FACTOR)

    def bottleneck(self) -> str:
        """What limited this transfer most, by bits sent under each limit."""
        if not self.limited_bits:
            return "start-up"
        if len(self.limited_bits) == 1:  # (most often: one limit throughout)
            return next(iter(self.limited_bits))
        return max(sorted(self.limited_bits), key=self.limited_bits.__getitem__)


def earliest_finish_s(transfers: list[Transfer], best_s: float) -> float:
    """The earlier of ``best_s`` and the first end among ``transfers`` at their current rates (s).

    :meth:`Transfer.finish_s` written out (the same operations): a busy line's group asks it of every transfer at
    every event. One that sends nothing never ends (inf): it cannot be earlier.
    """
    for flow in transfers:
        remaining_bytes = flow.remaining_bytes
        if remaining_bytes <= 0:
            end_s = flow.since_s
        else:
            rate_bps = flow.rate_bps
            if rate_bps <= 0:
                continue
            end_s = flow.since_s + remaining_bytes * 8 / (rate_bps * GOODPUT_FACTOR)
        if end_s < best_s:
            best_s = end_s
    return best_s


def ended_transfers(transfers: list[Transfer], limit_s: float) -> list[Transfer]:
    """The transfers among ``transfers`` whose :meth:`Transfer.finish_s` is at most ``limit_s`` (s), in order.

    :meth:`Transfer.finish_s` written out (the same operations), as in :func:`earliest_finish_s`.
    """
    done = []
    for flow in transfers:
        remaining_bytes = flow.remaining_bytes
        if remaining_bytes <= 0:
            end_s = flow.since_s
        else:
            rate_bps = flow.rate_bps
            end_s = flow.since_s + remaining_bytes * 8 / (rate_bps * GOODPUT_FACTOR) if rate_bps > 0 else math.inf
        if end_s <= limit_s:
            done.append(flow)
    return done


_CLIMB_GROWTH = math.log1p(VIDEO_INCREASE_PER_S)  # the climb's exponential rate (1/s)


def climb_step(from_bps: float, to_bps: float, elapsed_s: float) -> tuple[float, float]:
    """The rate of a climb from ``from_bps`` to ``to_bps`` ``elapsed_s`` into it, and when its step ends.

    The sender's rate grows as ``from_bps * (1 + VIDEO_INCREASE_PER_S) ** t`` until it reaches ``to_bps`` at
    ``T = ln(to / from) / ln(1.08)`` (about 19 s from 350 kbit/s to 1.5 Mbit/s). The fluid model needs rates that
    hold between events, so the climb is a staircase, each step at the exponential's mean over it: the bits carried
    to every step's end, and so over the whole climb ``(to - from) / ln(1.08)``, are exactly the exponential's, and
    the rate never falls below the curve's at the step's start nor passes its value at the step's end. The steps
    double in length (``VIDEO_CLIMB_STEP_S`` = 1 s, then 2, 4, 8 s...; the last one ends at ``T``): the first
    seconds, where a burst or the next upload most often cuts a climb short, are followed closely, and a whole
    climb costs ``log2(T / step + 1)`` events (5 from 350 kbit/s to 1.5 Mbit/s, where one-second steps would cost
    19 and slow a whole run by about a sixth). A climb cut within a step has carried that step's mean rate.

    Returns:
        The step's rate (bit/s; ``to_bps`` once the climb is over) and the elapsed time at which the step ends
        (s from the climb's start; inf once the climb is over).
    """
    if from_bps <= 0 or from_bps >= to_bps:
        return to_bps, math.inf
    end_s = math.log(to_bps / from_bps) / _CLIMB_GROWTH
    if elapsed_s >= end_s - _TINY:
        return to_bps, math.inf
    k = math.floor(math.log2(max(elapsed_s, 0.0) / VIDEO_CLIMB_STEP_S + 1) + _TINY)  # steps double in length
    lo_s = VIDEO_CLIMB_STEP_S * (2**k - 1)
    hi_s = min(VIDEO_CLIMB_STEP_S * (2 ** (k + 1) - 1), end_s)
    span_s = hi_s - lo_s
    mean_bps = from_bps * math.exp(_CLIMB_GROWTH * lo_s) * math.expm1(_CLIMB_GROWTH * span_s) / (_CLIMB_GROWTH * span_s)
    return mean_bps, hi_s


def depth_after_bps(from_bps: float, yield_s: float) -> float:
    """The rate a delay-based sender at ``from_bps`` has cut itself to after ``yield_s`` of overuse (bit/s).

    It calls overuse after ``VIDEO_DETECT_S`` (two receiver reports running over the threshold), then cuts to
    ``VIDEO_DECREASE`` x its rate, and again every ``VIDEO_HOLD_S`` while the overuse lasts (not held at a minimum:
    the caller floors it).
    """
    if yield_s < VIDEO_DETECT_S - _TINY:
        return from_bps
    cuts = 1 + math.floor((yield_s - VIDEO_DETECT_S) / VIDEO_HOLD_S + _TINY)
    return from_bps * VIDEO_DECREASE**cuts


def descent_step(from_bps: float, floor_bps: float, yield_s: float) -> tuple[float, float]:
    """A yielding sender's rate ``yield_s`` into its yield from ``from_bps``, and when that rate ends (bit/s; s).

    The sender sends ``from_bps`` until it calls overuse (``VIDEO_DETECT_S``), then cuts x ``VIDEO_DECREASE`` every
    ``VIDEO_HOLD_S`` (:func:`depth_after_bps`) until a cut would take it under ``floor_bps``, where it stays. The
    fluid model follows the cuts as steps, as it follows a climb (:func:`climb_step`): the first cut, then the next
    two, four, eight... each step at the mean of its cuts' rates, so the bits at every step's end are exactly the
    sender's, and a whole descent from 1.5 Mbit/s to 350 kbit/s (eight cuts, then the minimum) costs 5 events
    rather than 9. A yield ending within a step has carried that step's mean; the climb after it starts from the
    sender's true depth. A re-share within a step leaves the step's rate as it is (:meth:`Media.yield_cap_bps`).

    Returns:
        The step's rate (bit/s; ``floor_bps`` once the cuts reach it) and when the step ends (s from the yield's
        start; inf at the floor: the call stays there while the yield lasts).
    """
    if depth_after_bps(from_bps, yield_s) <= floor_bps * (1 + _TINY):
        return floor_bps, math.inf
    if yield_s < VIDEO_DETECT_S - _TINY:
        return from_bps, VIDEO_DETECT_S
    cuts = 1 + math.floor((yield_s - VIDEO_DETECT_S) / VIDEO_HOLD_S + _TINY)  # made by now (cut c holds from
    first = 1 << (cuts.bit_length() - 1)  # VIDEO_DETECT_S + (c - 1) x VIDEO_HOLD_S); this step's cuts: 1, 2-3, 4-7...
    last = first
    while last < 2 * first - 1 and from_bps * VIDEO_DECREASE ** (last + 1) > floor_bps * (1 + _TINY):
        last += 1
    mean_bps = sum(from_bps * VIDEO_DECREASE**c for c in range(first, last + 1)) / (last - first + 1)
    return mean_bps, VIDEO_DETECT_S + last * VIDEO_HOLD_S


def silence_after_bps(from_bps: float, silent_s: float) -> float:
    """The rate a sender at ``from_bps`` has cut itself to after ``silent_s`` without a receiver report (bit/s).

    ``VIDEO_DECREASE`` for every whole ``VIDEO_SILENCE_S`` (not held at a minimum: the caller floors it).
    """
    return from_bps * VIDEO_DECREASE ** math.floor(silent_s / VIDEO_SILENCE_S + _TINY)


class Media:
    """One direction of a video call: adapts between its minimum and target rate; tracks its rate.

    Rate-dependent measures (bits, time at target, below minimum, what limited it) accumulate here when the
    rate or cause changes, with the rate's history (``seg_start_s``, ``seg_rate_bps``); delay, jitter and loss
    come from its path's history after the run (:mod:`sim.des.calls`).

    A call held below what it asks for (``demand_bps``: its target, or less if its far end cannot take it) does not
    jump back when released: it climbs back at its sender's pace (:func:`climb_step`) from ``climb_from_bps``;
    ``climb_s`` is when the climb began (None while it is still held), ``climb_next_s`` when its rate next steps (a
    climb's step or a yield's cut: an event of its group; inf when it is neither climbing nor cutting).
    Held by its share, it climbs from the rate it was held at (at least its minimum); through an outage (rate 0, from
    ``silent_s``, at ``silent_from_bps`` then) from where the sender's cuts for silence would have taken it
    (:func:`silence_after_bps`). Held by a yield to TCP's queue (from ``yield_s``, at ``yield_from_bps`` then), it
    follows its sender's cuts down to its minimum (:func:`descent_step`, :meth:`yield_cap_bps`), and climbs from
    where they took it by the yield's end: a short burst costs a cut or two, a long upload the minimum. A call starts
    at what it asks for, as the sender does. Time spent climbing back counts against what held it (``held_label``) in
    what limited it.
    """

    __slots__ = ("session", "path", "far_cap_bps", "target_bps", "min_bps", "base_delay_s", "end_s", "rate_bps",
                 "limiter", "cause", "yielded", "bits", "at_target_s", "below_min_s", "elapsed_s", "limited_s",
                 "since_s", "demand_bps", "climb_from_bps", "climb_s", "climb_next_s", "held_label", "yield_s",
                 "yield_from_bps", "silent_s", "silent_from_bps", "start_s", "seg_start_s", "seg_rate_bps",
                 "climb_memo")

    def __init__(self, session: int, path: tuple[Link, ...], far_cap_bps: float, target_bps: float, min_bps: float,
                 base_delay_s: float, start_s: float, end_s: float) -> None:
        self.session, self.path, self.far_cap_bps = session, path, far_cap_bps
        self.target_bps, self.min_bps = target_bps, min_bps
        self.base_delay_s, self.end_s = base_delay_s, end_s
        self.rate_bps = 0.0
        self.limiter: Link | None = None
        self.cause: Link | None = None
        self.yielded = False  # whether its cause is TCP's queue on that link (it yielded to transfers there)
        self.bits = self.at_target_s = self.below_min_s = self.elapsed_s = 0.0
        self.limited_s: dict[str, float] = {}
        self.since_s = self.start_s = start_s
        self.seg_start_s: list[float] = []
        self.seg_rate_bps: list[float] = []
        self.demand_bps = min(target_bps, far_cap_bps)
        self.climb_from_bps: float | None = None
        self.climb_s: float | None = None
        self.climb_next_s = math.inf
        self.held_label = ""  # what last held it below what it asks for (a bottleneck label)
        self.yield_s: float | None = None
        self.yield_from_bps = 0.0
        self.silent_s: float | None = None
        self.silent_from_bps = 0.0
        self.climb_memo: tuple | None = None  # the last climb step worked out: (from_bps, elapsed_s, step)

    @property
    def free(self) -> bool:
        """Whether it is neither held, climbing back, yielding nor silenced (it gets what it asks for while it can)."""
        return self.climb_from_bps is None and self.yield_s is None and self.silent_s is None

    def _origin(self, now_s: float) -> tuple[float | None, float]:
        """Where a climb stands at ``now_s``: the rate it climbs from (None: no climb) and when it began (s)."""
        if self.silent_s is not None:  # back from an outage: from where its cuts for silence took it
            floor_bps = min(self.min_bps, self.demand_bps)
            return max(floor_bps, silence_after_bps(self.silent_from_bps, now_s - self.silent_s)), now_s
        if self.yield_s is not None:  # released now, it climbs from where the sender's cuts took it
            floor_bps = min(self.min_bps, self.demand_bps)
            return max(floor_bps, depth_after_bps(self.yield_from_bps, now_s - self.yield_s)), now_s
        if self.climb_from_bps is None:
            return None, now_s
        return self.climb_from_bps, now_s if self.climb_s is None else self.climb_s

    def _sending_bps(self, now_s: float) -> float:
        """The sender's own rate at ``now_s`` (bit/s): on a climb the exponential's value, not its step's mean."""
        if self.climb_from_bps is not None and self.climb_s is not None:
            return min(self.demand_bps, self.climb_from_bps * math.exp(_CLIMB_GROWTH * (now_s - self.climb_s)))
        return self.rate_bps if self.rate_bps > 0 else self.demand_bps

    def cap_bps(self, now_s: float) -> float:
        """The most a re-share at ``now_s`` may give it (bit/s): what it asks for, or its climb's step.

        A call still held (or yielding) would begin its climb now, at the first step.
        """
        if self.climb_from_bps is None and self.yield_s is None and self.silent_s is None:  # free (the common case)
            return self.demand_bps
        from_bps, start_s = self._origin(now_s)
        if from_bps is None:
            return self.demand_bps
        return self._climb(from_bps, now_s - start_s)[0]

    def _climb(self, from_bps: float, elapsed_s: float) -> tuple[float, float]:
        """:func:`climb_step` from ``from_bps`` to what it asks for, ``elapsed_s`` in; remembered for the next ask.

        A re-share asks twice at the same moment (for its cap, then to follow the rate it got).
        """
        memo = self.climb_memo
        if memo is not None and memo[0] == from_bps and memo[1] == elapsed_s:
            return memo[2]
        step = climb_step(from_bps, self.demand_bps, elapsed_s)
        self.climb_memo = (from_bps, elapsed_s, step)
        return step

    def yield_cap_bps(self, now_s: float, cap_bps: float) -> float:
        """The most it sends at ``now_s`` yielding to TCP's queue (bit/s): its sender's cuts, down to its minimum.

        A yield under way: its cut's step (:func:`descent_step`), whatever else a re-share finds. A yield not yet
        begun begins now at what it sends, at most ``cap_bps`` (:meth:`cap_bps`'s: what it asks for, or its climb's
        step).
        """
        floor_bps = min(self.min_bps, self.demand_bps)
        if self.yield_s is None:
            return min(cap_bps, max(floor_bps, self._sending_bps(now_s)))
        return descent_step(self.yield_from_bps, floor_bps, now_s - self.yield_s)[0]

    def follow(self, rate_bps: float, now_s: float, yielded: bool = False) -> None:
        """Update its climb after a re-share at ``now_s`` gave it ``rate_bps`` (from :meth:`cap_bps`'s cap).

        Its link's queue making it yield to TCP (``yielded``, whatever its rate: before its first cut it still sends
        what it did): the yield begins, or goes on, its next cut an event. Otherwise, at what it asks for: no climb;
        at its climb's step: the climb goes on (beginning now if it was held or yielding); below it (its share, an
        outage): held, to climb from there (at least its minimum) once released.
        """
        demand_bps = self.demand_bps
        if not yielded and rate_bps > 0 and rate_bps >= demand_bps * (1 - _TINY) and self.climb_from_bps is None \
                and self.yield_s is None and self.silent_s is None:  # free, and at what it asks for: it stays so
            self.climb_s, self.climb_next_s = None, math.inf
            return
        if yielded:
            floor_bps = min(self.min_bps, demand_bps)
            if rate_bps < demand_bps * (1 - _TINY) or floor_bps < demand_bps * (1 - _TINY):
                if self.yield_s is None:  # the sender cuts from what reaches its receiver: the rate it gets now
                    self.yield_s, self.yield_from_bps = now_s, rate_bps
                # (after an outage, from where it got back to)
                self.climb_from_bps = self.climb_s = self.silent_s = None
                self.climb_next_s = self.yield_s + descent_step(self.yield_from_bps, floor_bps,
                                                                now_s - self.yield_s)[1]
                return
        if rate_bps <= 0:  # an outage: nothing crosses, no report comes back
            if self.silent_s is None:
                from_bps, start_s = self._origin(now_s)
                sending_bps = self._sending_bps(now_s) if from_bps is None or self.yield_s is None else from_bps
                self.silent_s, self.silent_from_bps = now_s, sending_bps
            self.yield_s = self.climb_from_bps = self.climb_s = None
            self.climb_next_s = math.inf
            return
        from_bps, start_s = self._origin(now_s)
        self.yield_s = self.silent_s = None
        if rate_bps >= demand_bps * (1 - _TINY):
            self.climb_from_bps = self.climb_s = None
            self.climb_next_s = math.inf
            return
        if from_bps is not None:
            step_bps, step_end_s = self._climb(from_bps, now_s - start_s)
            if rate_bps >= step_bps * (1 - _TINY):
                self.climb_from_bps, self.climb_s, self.climb_next_s = from_bps, start_s, start_s + step_end_s
                return
        self.climb_from_bps = max(rate_bps, min(self.min_bps, demand_bps))
        self.climb_s, self.climb_next_s = None, math.inf

    def settle(self, now_s: float) -> None:
        """Accumulate the rate-dependent measures from the last settlement until ``now_s`` at the current rate."""
        dt_s = now_s - self.since_s
        if dt_s <= 0:
            return
        rate = self.rate_bps
        self.seg_start_s.append(self.since_s)
        self.seg_rate_bps.append(rate)
        self.since_s = now_s
        self.elapsed_s += dt_s
        self.bits += rate * dt_s
        if rate >= self.target_bps * (1 - _TINY):
            self.at_target_s += dt_s
            return
        if rate < self.min_bps * (1 - _TINY):
            self.below_min_s += dt_s
        if self.cause is not None:
            label = self.held_label = f"{self.cause.label}{YIELDED}" if self.yielded else self.cause.label
        elif self.climb_s is not None and self.held_label:  # climbing back: still what held it back
            label = self.held_label
        else:
            label = "home"
        self.limited_s[label] = self.limited_s.get(label, 0.0) + dt_s

    def rate_summary(self) -> dict[str, float | str]:
        """Its rate over the call so far (bit/s; shares 0..1) and what limited it most; settle it first."""
        t = self.elapsed_s
        if t <= 0:
            return {"bytes": 0.0, "rate": 0.0, "at_target": 0.0, "below_min": 1.0, "bottleneck": "none"}
        limited = max(sorted(self.limited_s), key=self.limited_s.__getitem__) if self.limited_s else "none"
        return {"bytes": self.bits / 8, "rate": self.bits / t, "at_target": self.at_target_s / t,
                "below_min": self.below_min_s / t, "bottleneck": limited}
