"""Flows of the fluid model: elastic transfers and the two media directions of a video call."""

from __future__ import annotations

import math

import numpy as np

from sim.des.tcp import GOODPUT_FACTOR

_TINY = 1e-9


class Transfer:
    """A TCP transfer: start-up (handshakes, slow start), then a fluid share until its bytes are sent."""

    __slots__ = ("session", "path", "size_bytes", "remaining_bytes", "active_at_s", "cap_bps", "rate_bps",
                 "limiter", "limited_bits", "rtt_s", "queue_delay_s", "since_s")

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


class PathState:
    """The queueing a path's media see: delay, jitter and loss now, and their integrals over time.

    Every media flow on the same path sees the same queues, so the path keeps them once: it is observed
    after each re-share of its links, and keeps running integrals (s x s) and the history of its queueing
    delay. A call's mean delay, jitter and loss and its delay percentile then come from differences of the
    integrals and a slice of the history, and a media flow settles only when its own rate or cause changes.
    """

    __slots__ = ("links", "extra_jitter_s", "queue_s", "jitter_s", "loss", "since_s", "queue_int", "jitter_int",
                 "loss_int", "times_s", "queues_s")

    def __init__(self, links: tuple, now_s: float) -> None:
        self.links = links
        self.extra_jitter_s = math.sqrt(sum(link.jitter_s**2 for link in links))  # the access lines' own jitter
        self.queue_s = self.jitter_s = self.loss = 0.0
        self.since_s = now_s
        self.queue_int = self.jitter_int = self.loss_int = 0.0
        self.times_s: list[float] = []
        self.queues_s: list[float] = []
        self.observe(now_s)

    def settle(self, now_s: float) -> None:
        """Integrate the current queueing delay, jitter and loss up to ``now_s``."""
        dt_s = now_s - self.since_s
        if dt_s > 0:
            self.queue_int += self.queue_s * dt_s
            self.jitter_int += self.jitter_s * dt_s
            self.loss_int += self.loss * dt_s
            self.since_s = now_s

    def observe(self, now_s: float) -> None:
        """Take the links' state after a re-share (the path must be settled to ``now_s``)."""
        links = self.links
        if len(links) == 1:
            link = links[0]
            queue_s = link.queue_delay_s
            self.jitter_s = math.sqrt(self.extra_jitter_s**2 + link.queue_jitter_s**2)
            self.loss = 1.0 - (1.0 - link.loss) * (1.0 - link.congestion_loss)
        else:
            queue_s = sum(link.queue_delay_s for link in links)
            self.jitter_s = math.sqrt(self.extra_jitter_s**2 + sum(link.queue_jitter_s**2 for link in links))
            delivered = 1.0
            for link in links:
                delivered *= (1.0 - link.loss) * (1.0 - link.congestion_loss)
            self.loss = 1.0 - delivered
        self.queue_s = queue_s
        if not self.queues_s or self.queues_s[-1] != queue_s:
            if self.times_s and self.times_s[-1] == now_s:
                self.queues_s[-1] = queue_s
            else:
                self.times_s.append(now_s)
                self.queues_s.append(queue_s)

    def queue_p95_s(self, start_s: float, end_s: float, first: int) -> float:
        """95th percentile of the queueing delay over [start_s, end_s], weighted by time (s).

        ``first`` is the index of the history entry in force at ``start_s``.
        """
        times, queues = self.times_s[first:], self.queues_s[first:]
        if len(times) > 256:
            return self._queue_p95_long_s(start_s, end_s, times, queues)
        # the history runs to now (the call's end); only its first entry can start before the call
        ends = times[1:]
        ends.append(end_s)
        durations_s = [t1 - t0 for t0, t1 in zip(times, ends)]
        durations_s[0] = ends[0] - max(times[0], start_s)
        goal_s = 0.95 * sum(durations_s)
        if goal_s <= 0:
            return self.queue_s
        reached_s = 0.0
        for queue_s, dt_s in sorted(zip(queues, durations_s)):
            reached_s += dt_s
            if reached_s >= goal_s:
                return queue_s
        return max(queues)

    def _queue_p95_long_s(self, start_s: float, end_s: float, times: list, queues: list) -> float:
        """:meth:`queue_p95_s` for a long history, with numpy."""
        durations_s = np.diff(np.clip(np.array(times + [end_s]), start_s, end_s))
        keep = durations_s > 0
        values, durations_s = np.array(queues)[keep], durations_s[keep]
        if not len(values):
            return self.queue_s
        order = np.argsort(values, kind="stable")
        reached_s = np.cumsum(durations_s[order])
        k = int(np.searchsorted(reached_s, 0.95 * reached_s[-1]))
        return float(values[order[min(k, len(order) - 1)]])


class Media:
    """One direction of a video call: adapts between its minimum and target rate; tracks its quality.

    Rate-dependent measures (bits, time at target, below minimum, what limited it) accumulate here when
    the rate or cause changes; delay, jitter and loss come from the path's integrals (:class:`PathState`).
    """

    __slots__ = ("session", "path", "state", "far_cap_bps", "target_bps", "min_bps", "base_delay_s",
                 "end_s", "rate_bps", "limiter", "cause", "bits", "lost_bits", "at_target_s", "below_min_s",
                 "elapsed_s", "limited_s", "since_s", "start_s", "first", "queue_mark", "jitter_mark",
                 "loss_mark")

    def __init__(self, session: int, path: tuple, far_cap_bps: float, target_bps: float, min_bps: float,
                 base_delay_s: float, end_s: float) -> None:
        self.session, self.path, self.far_cap_bps = session, path, far_cap_bps
        self.target_bps, self.min_bps = target_bps, min_bps
        self.base_delay_s, self.end_s = base_delay_s, end_s
        self.rate_bps = 0.0
        self.limiter = self.cause = self.state = None
        self.bits = self.lost_bits = self.at_target_s = self.below_min_s = self.elapsed_s = 0.0
        self.limited_s: dict[str, float] = {}
        self.since_s = self.start_s = end_s  # set to the call's start when it joins a group
        self.first = 0
        self.queue_mark = self.jitter_mark = self.loss_mark = 0.0

    def join(self, state: PathState, now_s: float) -> None:
        """Start the call on its path at ``now_s``: the integrals count from here."""
        state.settle(now_s)
        self.state, self.since_s, self.start_s = state, now_s, now_s
        self.first = max(0, len(state.times_s) - 1)
        self.queue_mark, self.jitter_mark, self.loss_mark = state.queue_int, state.jitter_int, state.loss_int

    def settle(self, now_s: float) -> None:
        """Accumulate the rate-dependent measures from the last settlement until ``now_s`` at the current rate."""
        dt_s = now_s - self.since_s
        if dt_s <= 0:
            return
        self.since_s = now_s
        state = self.state
        state.settle(now_s)
        rate = self.rate_bps
        self.elapsed_s += dt_s
        self.bits += rate * dt_s
        self.lost_bits += rate * (state.loss_int - self.loss_mark)
        self.loss_mark = state.loss_int
        if rate >= self.target_bps * (1 - _TINY):
            self.at_target_s += dt_s
            return
        if rate < self.min_bps * (1 - _TINY):
            self.below_min_s += dt_s
        label = self.cause.label if self.cause is not None else "home"
        self.limited_s[label] = self.limited_s.get(label, 0.0) + dt_s

    def summary(self) -> dict[str, float | str]:
        """Quality over the call so far (rates in bit/s, delays in s, shares 0..1); settle it first."""
        t = self.elapsed_s
        state = self.state
        if t <= 0:
            delay_s = self.base_delay_s + state.queue_s
            return {"bytes": 0.0, "rate": 0.0, "at_target": 0.0, "below_min": 1.0, "delay": delay_s,
                    "delay_p95": delay_s, "jitter": state.jitter_s, "loss": state.loss, "queue": state.queue_s,
                    "bottleneck": "none"}
        queue_s = (state.queue_int - self.queue_mark) / t
        limited = max(sorted(self.limited_s), key=self.limited_s.get) if self.limited_s else "none"
        p95_s = state.queue_p95_s(self.start_s, self.since_s, self.first)
        return {"bytes": self.bits / 8, "rate": self.bits / t, "at_target": self.at_target_s / t,
                "below_min": self.below_min_s / t, "delay": self.base_delay_s + queue_s,
                "delay_p95": self.base_delay_s + p95_s, "jitter": (state.jitter_int - self.jitter_mark) / t,
                "loss": self.lost_bits / self.bits if self.bits else 0.0, "queue": queue_s, "bottleneck": limited}
