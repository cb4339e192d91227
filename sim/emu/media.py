"""The traffic agent's video calls: media over UDP, measured where it arrives and paced from the receiver's reports.

A video call is two media directions over UDP (:class:`sim.emu.call.Call`), each measured at its receiver
(:class:`MediaReceiver`) and paced by a WebRTC-like controller fed back by that receiver (:class:`RateController`).
Part of the traffic agent (:mod:`sim.emu.agent`): it imports the standard library only.
"""

from __future__ import annotations

import math
from array import array
from collections import deque

FEEDBACK_INTERVAL_S = 0.1     # a media receiver reports to its sender this often
RATE_WINDOW_S = 0.5           # the receive rate a report carries is measured over this window
AT_TARGET_TOLERANCE = 0.95    # a call second is "at target" when its receive rate >= 95% of the target
BELOW_MIN_TOLERANCE = 0.95    # ... and "below minimum" when it is < 95% of the minimum

# Every call's packets (media and reports) carry DSCP EF (46, RFC 3246) in the TOS byte, as real-time apps mark
# them (RFC 4594 gives telephony EF; one real-time class for every stream is an assumption): a line with
# ``qos: priority`` serves them first (sim.emu.qos, which mirrors this figure), a FIFO line ignores the mark.
EF_TOS = 0xB8


class RateController:
    """WebRTC-like rate control of one media direction between its minimum and target rate (GCC's spirit).

    Starts at the target. On each receiver report (loss share, queueing delay = one-way delay minus the least seen,
    receive rate over the last ``RATE_WINDOW_S``):

    * overuse — loss > ``LOSS_BACKOFF``, or queueing delay > ``QUEUE_THRESHOLD_S`` and not falling in
      ``OVERUSE_REPORTS`` reports running (a single late report may be the host's scheduling, not the path): the rate
      becomes ``DECREASE`` x min(rate, receive rate), at most once per ``HOLD_S``;
    * loss > ``LOSS_HOLD``, or the queue above the threshold but draining: hold;
    * otherwise: increase by ``INCREASE_PER_S`` per second, to at most ``HEADROOM`` x the receive rate;
    * no report for ``SILENCE_S``: x ``DECREASE``, at most once per ``SILENCE_S``.

    The rate always stays within [min_rate_bps, target_rate_bps].
    """

    DECREASE = 0.85
    INCREASE_PER_S = 1.08
    QUEUE_THRESHOLD_S = 0.025
    DRAIN_MARGIN_S = 0.001
    LOSS_BACKOFF = 0.10
    LOSS_HOLD = 0.02
    OVERUSE_REPORTS = 2
    HOLD_S = 0.3
    SILENCE_S = 0.5
    HEADROOM = 1.5

    def __init__(self, target_rate_bps: float, min_rate_bps: float, now_s: float) -> None:
        self.target_rate_bps, self.min_rate_bps = target_rate_bps, min_rate_bps
        self.rate_bps = target_rate_bps
        self.updated_s = self.heard_s = now_s
        self.decreased_s = -math.inf
        self.queue_delay_s = 0.0
        self.overuse_reports = 0

    def on_report(self, now_s: float, loss: float, queue_delay_s: float, receive_rate_bps: float) -> float:
        """Adapt to a receiver report (loss 0..1, delay s, rate bit/s); return the new rate (bit/s)."""
        falling = queue_delay_s < self.queue_delay_s - self.DRAIN_MARGIN_S
        dt_s = min(max(now_s - self.updated_s, 0.0), 1.0)
        self.queue_delay_s, self.updated_s, self.heard_s = queue_delay_s, now_s, now_s
        delayed = queue_delay_s > self.QUEUE_THRESHOLD_S and not falling
        self.overuse_reports = self.overuse_reports + 1 if delayed else 0
        if loss > self.LOSS_BACKOFF or self.overuse_reports >= self.OVERUSE_REPORTS:
            if now_s - self.decreased_s >= self.HOLD_S:
                measured_bps = receive_rate_bps if receive_rate_bps > 0 else self.rate_bps
                self._set(self.DECREASE * min(self.rate_bps, measured_bps))
                self.decreased_s = now_s
        elif loss <= self.LOSS_HOLD and queue_delay_s <= self.QUEUE_THRESHOLD_S:
            cap_bps = max(self.HEADROOM * receive_rate_bps, self.min_rate_bps)
            if cap_bps > self.rate_bps:
                self._set(min(self.rate_bps * self.INCREASE_PER_S**dt_s, cap_bps))
        return self.rate_bps

    def on_tick(self, now_s: float) -> float:
        """Back off if no report came for ``SILENCE_S``; return the rate (bit/s)."""
        if now_s - self.heard_s >= self.SILENCE_S and now_s - self.decreased_s >= self.SILENCE_S:
            self._set(self.DECREASE * self.rate_bps)
            self.decreased_s = now_s
        return self.rate_bps

    def _set(self, rate_bps: float) -> None:
        self.rate_bps = min(self.target_rate_bps, max(self.min_rate_bps, rate_bps))


class MediaReceiver:
    """Measures one media direction where it arrives: delay, RFC 3550 jitter, loss, per-second receive rate.

    One-way delay is arrival time minus the send time stamped in the packet (all hosts share one clock). Jitter is
    RFC 3550's running estimate ``J += (|D| - J) / 16`` over consecutive arrivals, ``D`` the difference of their
    one-way delays (so the sender's own timing error is excluded); its mean over packets is reported.
    """

    def __init__(self, start_at_s: float, packet_bytes: int, target_rate_bps: float, min_rate_bps: float) -> None:
        self.start_at_s, self.packet_bytes = start_at_s, packet_bytes
        self.target_rate_bps, self.min_rate_bps = target_rate_bps, min_rate_bps
        self.arrivals_s, self.delays_s = array("d"), array("d")
        self.max_seq, self.min_delay_s = -1, math.inf
        self.jitter_s = self.jitter_sum_s = 0.0
        self.last_delay_s: float | None = None
        self.recent: deque[float] = deque()
        self.reported_seq, self.interval_packets, self.interval_delay_s = -1, 0, 0.0

    def on_media(self, seq: int, sent_s: float, arrival_s: float) -> None:
        """Count one media packet sent at ``sent_s`` that arrived at ``arrival_s`` (Unix time, s)."""
        delay_s = arrival_s - sent_s
        self.arrivals_s.append(arrival_s)
        self.delays_s.append(delay_s)
        self.min_delay_s = min(self.min_delay_s, delay_s)
        if self.last_delay_s is not None:
            self.jitter_s += (abs(delay_s - self.last_delay_s) - self.jitter_s) / 16
            self.jitter_sum_s += self.jitter_s
        self.last_delay_s = delay_s
        self.max_seq = max(self.max_seq, seq)
        self.interval_packets += 1
        self.interval_delay_s += delay_s
        self.recent.append(arrival_s)

    def report(self, now_s: float) -> tuple[float, float, float] | None:
        """Loss share, queueing delay (s) and receive rate (bit/s) since the last report; None if nothing arrived."""
        if self.interval_packets == 0:
            return None
        expected = self.max_seq - self.reported_seq
        loss = max(0.0, 1.0 - self.interval_packets / expected) if expected > 0 else 0.0
        queue_delay_s = self.interval_delay_s / self.interval_packets - self.min_delay_s
        while self.recent and self.recent[0] < now_s - RATE_WINDOW_S:
            self.recent.popleft()
        span_s = min(RATE_WINDOW_S, max(now_s - self.arrivals_s[0], FEEDBACK_INTERVAL_S))
        rate_bps = len(self.recent) * self.packet_bytes * 8 / span_s
        self.reported_seq, self.interval_packets, self.interval_delay_s = self.max_seq, 0, 0.0
        return loss, queue_delay_s, rate_bps

    def summary(self, elapsed_s: float) -> dict:
        """What this direction received over ``elapsed_s`` of call (rates bit/s, delays s, shares 0..1)."""
        packets = len(self.delays_s)
        bins_bps, delays_s = self._per_second(elapsed_s)
        out = {"packets": packets, "bytes": packets * self.packet_bytes, "max_seq": self.max_seq,
               "rate_bps_per_s": bins_bps, "delay_s_per_s": delays_s,
               "mean_rate_bps": packets * self.packet_bytes * 8 / elapsed_s if elapsed_s > 0 else None,
               "share_at_target": _share(bins_bps, lambda r: r >= AT_TARGET_TOLERANCE * self.target_rate_bps),
               "share_below_min": _share(bins_bps, lambda r: r < BELOW_MIN_TOLERANCE * self.min_rate_bps)}
        if packets == 0:
            return out | {"one_way_delay_s": None, "one_way_delay_p95_s": None, "min_delay_s": None,
                          "jitter_s": None, "queue_delay_s": None}
        mean_s = math.fsum(self.delays_s) / packets
        ordered = sorted(self.delays_s)
        return out | {"one_way_delay_s": mean_s, "one_way_delay_p95_s": ordered[math.ceil(0.95 * packets) - 1],
                      "min_delay_s": self.min_delay_s,
                      "jitter_s": self.jitter_sum_s / (packets - 1) if packets > 1 else 0.0,
                      "queue_delay_s": mean_s - self.min_delay_s}

    def _per_second(self, elapsed_s: float) -> tuple[list[float], list[float | None]]:
        """Receive rate (bit/s) and mean one-way delay (s; None when nothing arrived) in each second of the call.

        Seconds are counted from the call's start plus the least delay seen (bin k holds what was sent in about
        the call's k-th second).
        """
        bins, sums = [0] * max(1, int(elapsed_s + 1e-9)), [0.0] * max(1, int(elapsed_s + 1e-9))
        base_s = self.start_at_s + (self.min_delay_s if self.delays_s else 0.0)
        for arrival_s, delay_s in zip(self.arrivals_s, self.delays_s):
            index = max(0, int(arrival_s - base_s))
            if index < len(bins):
                bins[index] += 1
                sums[index] += delay_s
        return ([count * self.packet_bytes * 8.0 for count in bins],
                [total / count if count else None for total, count in zip(sums, bins)])


def _share(values: list[float], test) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0
