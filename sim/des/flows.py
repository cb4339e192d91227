"""Flows of the fluid model: elastic transfers and the two media directions of a video call."""

from __future__ import annotations

import math

from sim.des.tcp import GOODPUT_FACTOR

_TINY = 1e-9
YIELDED = "_tcp_queue"  # a bottleneck label's suffix when a call yielded to transfers filling that link's queue


class Transfer:
    """A TCP transfer: start-up (handshakes, slow start), then a fluid share until its bytes are sent."""

    __slots__ = ("session", "path", "size_bytes", "remaining_bytes", "active_at_s", "cap_bps", "rate_bps",
                 "limiter", "limited_bits", "rtt_s", "queue_delay_s", "since_s", "long")

    def __init__(self, session: int, path: tuple, size_bytes: float, remaining_bytes: float,
                 active_at_s: float, cap_bps: float, rtt_s: float, queue_delay_s: float) -> None:
        self.session, self.path = session, path
        self.size_bytes, self.remaining_bytes = size_bytes, remaining_bytes
        self.active_at_s, self.cap_bps = active_at_s, cap_bps
        self.rtt_s, self.queue_delay_s = rtt_s, queue_delay_s
        self.rate_bps = 0.0
        self.limiter = None
        self.limited_bits: dict[str, float] = {}
        self.since_s = active_at_s  # accounting is settled up to here
        self.long = True  # whether it goes through loss cycles, holding a standing queue (set by its group)

    def settle(self, now_s: float) -> None:
        """Account for sending at the current rate from the last settlement until ``now_s``."""
        dt_s = now_s - self.since_s
        if dt_s > 0 and self.rate_bps > 0:
            self.remaining_bytes -= self.rate_bps * GOODPUT_FACTOR * dt_s / 8
            label = self.limiter.label if self.limiter is not None else "window"
            self.limited_bits[label] = self.limited_bits.get(label, 0.0) + self.rate_bps * dt_s
        self.since_s = max(self.since_s, now_s)

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
        return max(sorted(self.limited_bits), key=self.limited_bits.get)


class Media:
    """One direction of a video call: adapts between its minimum and target rate; tracks its rate.

    Rate-dependent measures (bits, time at target, below minimum, what limited it) accumulate here when the
    rate or cause changes, with the rate's history (``seg_start_s``, ``seg_rate_bps``); delay, jitter and loss
    come from its path's history after the run (:mod:`sim.des.calls`).
    """

    __slots__ = ("session", "path", "far_cap_bps", "target_bps", "min_bps", "base_delay_s", "end_s", "rate_bps",
                 "limiter", "cause", "yielded", "bits", "at_target_s", "below_min_s", "elapsed_s", "limited_s",
                 "since_s",
                 "start_s", "seg_start_s", "seg_rate_bps")

    def __init__(self, session: int, path: tuple, far_cap_bps: float, target_bps: float, min_bps: float,
                 base_delay_s: float, start_s: float, end_s: float) -> None:
        self.session, self.path, self.far_cap_bps = session, path, far_cap_bps
        self.target_bps, self.min_bps = target_bps, min_bps
        self.base_delay_s, self.end_s = base_delay_s, end_s
        self.rate_bps = 0.0
        self.limiter = self.cause = None
        self.yielded = False  # whether its cause is TCP's queue on that link (it yielded to transfers there)
        self.bits = self.at_target_s = self.below_min_s = self.elapsed_s = 0.0
        self.limited_s: dict[str, float] = {}
        self.since_s = self.start_s = start_s
        self.seg_start_s: list[float] = []
        self.seg_rate_bps: list[float] = []

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
        label = "home" if self.cause is None else f"{self.cause.label}{YIELDED}" if self.yielded else self.cause.label
        self.limited_s[label] = self.limited_s.get(label, 0.0) + dt_s

    def rate_summary(self) -> dict[str, float | str]:
        """Its rate over the call so far (bit/s; shares 0..1) and what limited it most; settle it first."""
        t = self.elapsed_s
        if t <= 0:
            return {"bytes": 0.0, "rate": 0.0, "at_target": 0.0, "below_min": 1.0, "bottleneck": "none"}
        limited = max(sorted(self.limited_s), key=self.limited_s.get) if self.limited_s else "none"
        return {"bytes": self.bits / 8, "rate": self.bits / t, "at_target": self.at_target_s / t,
                "below_min": self.below_min_s / t, "bottleneck": limited}
