"""Flows of the fluid model: elastic transfers and the two media directions of a video call."""

from __future__ import annotations

import math

from sim.des.tcp import GOODPUT_FACTOR

_TINY = 1e-9


class Transfer:
    """A TCP transfer: start-up (handshakes, slow start), then a fluid share until its bytes are sent."""

    __slots__ = ("session", "path", "keys", "size_bytes", "remaining_bytes", "active_at_s", "cap_bps", "rate_bps",
                 "limiter", "limited_bits", "rtt_s", "queue_delay_s", "since_s")

    def __init__(self, session: int, path: tuple, size_bytes: float, remaining_bytes: float,
                 active_at_s: float, cap_bps: float, rtt_s: float, queue_delay_s: float) -> None:
        self.session, self.path = session, path
        self.keys = tuple(id(link) for link in path)  # the links' keys in the sharing problem
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


class Media:
    """One direction of a video call: adapts between its minimum and target rate; tracks its quality."""

    __slots__ = ("session", "path", "keys", "far_cap_bps", "target_bps", "min_bps", "base_delay_s", "extra_jitter_s",
                 "end_s", "rate_bps", "limiter", "cause", "delay_s", "jitter_s", "loss", "queue_s",
                 "bits", "lost_bits", "at_target_s", "below_min_s", "elapsed_s", "jitter_sum", "queue_sum",
                 "delay_sum", "delays", "limited_s", "since_s")

    def __init__(self, session: int, path: tuple, far_cap_bps: float, target_bps: float, min_bps: float,
                 base_delay_s: float, extra_jitter_s: float, end_s: float) -> None:
        self.session, self.path, self.far_cap_bps = session, path, far_cap_bps
        # media cross each link and its video headroom, a virtual link keyed by the negated id
        self.keys = tuple(key for link in path for key in (id(link), -id(link)))
        self.target_bps, self.min_bps = target_bps, min_bps
        self.base_delay_s, self.extra_jitter_s, self.end_s = base_delay_s, extra_jitter_s, end_s
        self.rate_bps = 0.0
        self.limiter = self.cause = None
        self.delay_s, self.jitter_s, self.loss, self.queue_s = base_delay_s, extra_jitter_s, 0.0, 0.0
        self.bits = self.lost_bits = self.at_target_s = self.below_min_s = self.elapsed_s = 0.0
        self.jitter_sum = self.queue_sum = self.delay_sum = 0.0
        self.delays: list[tuple[float, float]] = []
        self.limited_s: dict[str, float] = {}
        self.since_s = end_s  # set to the call's start when it joins a group

    def observe(self) -> None:
        """Take the path's current delay, jitter and loss after a re-share."""
        links = self.path
        queue_s = sum(link.queue_delay_s for link in links)
        self.queue_s = queue_s
        self.delay_s = self.base_delay_s + queue_s
        self.jitter_s = math.sqrt(self.extra_jitter_s**2 + sum(link.queue_jitter_s**2 for link in links))
        delivered = 1.0
        for link in links:
            delivered *= (1.0 - link.loss) * (1.0 - link.congestion_loss)
        self.loss = 1.0 - delivered

    def settle(self, now_s: float) -> None:
        """Accumulate quality from the last settlement until ``now_s`` at the current rate, delay, jitter, loss."""
        dt_s = now_s - self.since_s
        self.since_s = max(self.since_s, now_s)
        if dt_s > 0:
            self._accumulate(dt_s)

    def _accumulate(self, dt_s: float) -> None:
        rate = self.rate_bps
        self.elapsed_s += dt_s
        self.bits += rate * dt_s
        self.lost_bits += rate * dt_s * self.loss
        self.jitter_sum += self.jitter_s * dt_s
        self.queue_sum += self.queue_s * dt_s
        self.delay_sum += self.delay_s * dt_s
        if not self.delays or self.delays[-1][0] != self.delay_s:
            self.delays.append((self.delay_s, dt_s))
        else:
            self.delays[-1] = (self.delay_s, self.delays[-1][1] + dt_s)
        if rate >= self.target_bps * (1 - _TINY):
            self.at_target_s += dt_s
            return
        if rate < self.min_bps * (1 - _TINY):
            self.below_min_s += dt_s
        label = self.cause.label if self.cause is not None else "home"
        self.limited_s[label] = self.limited_s.get(label, 0.0) + dt_s

    def summary(self) -> dict[str, float | str]:
        """Quality over the call so far (rates in bit/s, delays in s, shares 0..1)."""
        t = self.elapsed_s
        if t <= 0:
            return {"bytes": 0.0, "rate": 0.0, "at_target": 0.0, "below_min": 1.0, "delay": self.delay_s,
                    "delay_p95": self.delay_s, "jitter": self.jitter_s, "loss": self.loss, "queue": self.queue_s,
                    "bottleneck": "none"}
        limited = max(sorted(self.limited_s), key=self.limited_s.get) if self.limited_s else "none"
        return {"bytes": self.bits / 8, "rate": self.bits / t, "at_target": self.at_target_s / t,
                "below_min": self.below_min_s / t, "delay": self.delay_sum / t, "delay_p95": self._p95(),
                "jitter": self.jitter_sum / t, "loss": self.lost_bits / self.bits if self.bits else 0.0,
                "queue": self.queue_sum / t, "bottleneck": limited}

    def _p95(self) -> float:
        total = sum(dt for _, dt in self.delays)
        acc = 0.0
        for delay, dt in sorted(self.delays):
            acc += dt
            if acc >= 0.95 * total:
                return delay
        return self.delays[-1][0]
