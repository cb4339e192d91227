"""A window-level fluid model of short downloads on one line: a check on the simulator, not an engine of the testbed.

docs/fidelity.md compares the simulator with the emulation on short downloads and finds it off where downloads
overlap ("Kept-alive connections", "Short downloads away from the calibration's one point"). This model is the
account of that gap it gives, written small enough to read whole, so its figures there can be reproduced
(``benchmarks/test_emu_bursts.py`` runs it on the same arrivals as both engines). What it holds, on one line of
rate ``C`` and base round trip ``R`` whose drop-tail buffer holds ``B`` frames:

* every download is one TCP connection with a congestion window ``W`` (segments), starting at 10 (RFC 6928): a new
  connection pays two round trips of handshakes (TCP, TLS 1.3), then its request's; a kept-alive one its request's;
* each delivers ``W / RTT`` segments a second, the line at most ``C``: where the windows ask more, the line is shared
  in proportion to them (each flow sends its window a round trip, and the queue serves them in turn);
* the queue is the windows' excess over the path: ``min(B, sum(W) - C R)`` frames (each flow counts at most what it
  has left to send), and every flow's RTT is ``R`` plus that queue's time; but never less than ``burst_share`` of what
  the flows in slow start have in flight: a flow in slow start sends two segments for each ACK, at twice the rate its
  ACKs come back, so in a round the bottleneck's queue grows from nothing to half the segments it sent, a quarter on
  average (``BURST_SHARE``, 0.25, from that reasoning; ``benchmarks/test_emu_bursts.py`` runs 0 to 0.75);
* slow start grows ``W`` by a segment per segment delivered until Linux's HyStart sees a round's RTT exceed the least
  RTT its connection has seen by ``clamp(least / 8, 4 ms, 16 ms)``, from a window of 16 (``net/ipv4/tcp_cubic.c``:
  ``hystart_low_window``, ``HYSTART_DELAY_MIN``/``MAX``; Ha and Rhee, 2008); the window then gains the 8 segments of
  the round's RTT samples, and grows by 0.53 segments a round (Cubic's Reno-friendly region) after;
* a queue past the buffer costs the largest slow-starting window 30% and ends its slow start (Cubic's beta 0.7);
* a kept-alive connection's least RTT is the line's at its hello ``reuse_lead_s`` before (the queue then); a new
  one's the least over its handshakes; a download ends when its last byte is delivered, plus half a base round
  trip.

Time advances in steps of ``step_s`` (at most 0.2 ms, and half a frame's time on a fast line) until every download
has ended, or 10 s after the last one started. Not modelled: loss's
timers and tails, losses to the bursts within a round, delayed ACKs, anything but downloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MSS_BYTES, FRAME_BYTES = 1448, 1514
INITIAL_WINDOW_SEGMENTS = 10
HYSTART_LOW_WINDOW_SEGMENTS = 16
HYSTART_SAMPLES_SEGMENTS = 8
HYSTART_DELAY_MIN_S, HYSTART_DELAY_MAX_S = 0.004, 0.016
CUBIC_BETA = 0.7
CUBIC_GROWTH_PER_ROUND_SEGMENTS = 0.53
HANDSHAKE_RTTS = 2
REUSE_LEAD_S = 3.0
BURST_SHARE = 0.25
STEP_MAX_S = 2e-4


@dataclass
class Flow:
    """One download's state: its phase, window (segments), segments delivered, least RTT and round's end (s)."""

    start_s: float
    kept_alive: bool
    phase: str = "waiting"        # waiting, setup, request, slow start, avoidance, done
    phase_end_s: float = 0.0
    setup_rounds_left: int = 0
    window_segments: float = INITIAL_WINDOW_SEGMENTS
    delivered_segments: float = 0.0
    least_rtt_s: float = math.inf
    round_end_s: float = 0.0
    exit_window_segments: float = math.nan
    end_s: float = math.nan


@dataclass
class Outcome:
    """Each download's completion (s; nan if unfinished) and slow start's exit window (segments; nan if none).

    ``queue_segments_by_ms``: the line's queue (segments) at each millisecond of the run; ``frame_s`` a frame's time.
    """

    completion_s: np.ndarray
    exit_window_segments: np.ndarray
    queue_segments_by_ms: dict = field(repr=False, default_factory=dict)
    frame_s: float = 0.0

    def queue(self, from_s: float, to_s: float) -> tuple[float, float, float]:
        """The queue from ``from_s`` to ``to_s`` (s), read every millisecond as the emulation's backlog is read.

        Returns its mean (s), the share of readings holding a frame or more, and its mean over those (s).
        """
        readings = np.array([q for ms, q in self.queue_segments_by_ms.items() if from_s <= ms / 1000 <= to_s])
        if not len(readings):
            return 0.0, 0.0, 0.0
        busy = readings[readings >= 1.0]
        return (float(readings.mean()) * self.frame_s, len(busy) / len(readings),
                float(busy.mean()) * self.frame_s if len(busy) else 0.0)


def run(starts_s, size_bytes: float, rate_bps: float, rtt_s: float, buffer_bytes: float, kept_alive=False,
        hystart: bool = True, reuse_lead_s: float = REUSE_LEAD_S, step_s: float | None = None,
        burst_share: float = BURST_SHARE) -> Outcome:
    """Replay downloads of ``size_bytes`` starting at ``starts_s`` on one line (see the module).

    ``kept_alive``: one flag for all, or one per download; ``burst_share``: the share of the slow-starting flows'
    segments in flight the queue holds at least (0..1).
    """
    frame_s = FRAME_BYTES * 8 / rate_bps
    step_s = step_s or min(STEP_MAX_S, frame_s / 2)
    path_segments, buffer_segments = rtt_s / frame_s, buffer_bytes / FRAME_BYTES
    total_segments = size_bytes / MSS_BYTES
    starts_s = [float(t) for t in starts_s]
    kept = list(kept_alive) if np.ndim(kept_alive) else [bool(kept_alive)] * len(starts_s)
    flows = sorted((Flow(t, k) for t, k in zip(starts_s, kept)), key=lambda f: f.start_s)
    queue_log: dict[int, float] = {}  # the queue (segments) at each millisecond, for kept-alive hellos
    live: list[Flow] = []
    arrived, queue_segments, now_s = 0, 0.0, 0.0
    horizon_s = (max(starts_s) if starts_s else 0.0) + 10.0
    while now_s < horizon_s and (live or arrived < len(flows)):
        round_trip_s = rtt_s + queue_segments * frame_s
        while arrived < len(flows) and flows[arrived].start_s <= now_s:
            flow = flows[arrived]
            _arrive(flow, now_s, round_trip_s, rtt_s, frame_s, queue_log, reuse_lead_s)
            live.append(flow)
            arrived += 1
        sending = [f for f in live if _step_phase(f, now_s, round_trip_s)]
        if sending:
            _deliver(sending, now_s, step_s, round_trip_s, frame_s, total_segments, rtt_s, hystart)
        in_flight = sum(min(f.window_segments, total_segments - f.delivered_segments) for f in sending
                        if f.phase != "done")
        excess = in_flight - path_segments
        if excess > buffer_segments:  # the buffer overflows: the largest slow-starting window loses
            starting = [f for f in sending if f.phase == "slow start"] or [f for f in sending if f.phase != "done"]
            if starting:
                loser = max(starting, key=lambda f: f.window_segments)
                loser.window_segments *= CUBIC_BETA
                loser.phase = "avoidance"
        in_slow_start = sum(min(f.window_segments, total_segments - f.delivered_segments) for f in sending
                            if f.phase == "slow start")
        queue_segments = min(buffer_segments, max(0.0, excess, burst_share * in_slow_start))
        queue_log[int(round(now_s * 1000))] = queue_segments
        live = [f for f in live if f.phase != "done"]
        now_s += step_s
    return Outcome(np.array([f.end_s - f.start_s for f in flows]), np.array([f.exit_window_segments for f in flows]),
                   queue_log, frame_s)


def _arrive(flow: Flow, now_s: float, round_trip_s: float, rtt_s: float, frame_s: float, queue_log: dict,
            reuse_lead_s: float) -> None:
    if flow.kept_alive:  # its least RTT: the line's at its hello, reuse_lead_s before
        hello_ms = int(round(max(0.0, flow.start_s - reuse_lead_s) * 1000))
        flow.least_rtt_s = rtt_s + queue_log.get(hello_ms, 0.0) * frame_s
        flow.phase, flow.phase_end_s = "request", now_s + round_trip_s
    else:
        flow.least_rtt_s = round_trip_s
        flow.phase, flow.phase_end_s, flow.setup_rounds_left = "setup", now_s + round_trip_s, HANDSHAKE_RTTS


def _step_phase(flow: Flow, now_s: float, round_trip_s: float) -> bool:
    """Move a flow through its setup and request round trips; whether it is sending data now."""
    if flow.phase == "setup" and now_s >= flow.phase_end_s:
        flow.least_rtt_s = min(flow.least_rtt_s, round_trip_s)
        flow.setup_rounds_left -= 1
        flow.phase = "setup" if flow.setup_rounds_left else "request"
        flow.phase_end_s = now_s + round_trip_s
    elif flow.phase == "request" and now_s >= flow.phase_end_s:
        flow.phase, flow.round_end_s = "slow start", now_s + round_trip_s
    return flow.phase in ("slow start", "avoidance")


def _deliver(sending: list, now_s: float, step_s: float, round_trip_s: float, frame_s: float,
             total_segments: float, rtt_s: float, hystart: bool) -> None:
    """One step's delivery: each flow its window a round trip, the line at most its rate, shared by windows."""
    rates = np.array([f.window_segments for f in sending]) / round_trip_s  # segments/s
    line_rate = 1 / frame_s
    if rates.sum() > line_rate:
        rates *= line_rate / rates.sum()
    for flow, rate in zip(sending, rates):
        delivered = min(rate * step_s, total_segments - flow.delivered_segments)
        flow.delivered_segments += delivered
        flow.least_rtt_s = min(flow.least_rtt_s, round_trip_s)
        if flow.phase == "slow start":
            flow.window_segments += delivered
            if now_s >= flow.round_end_s:
                flow.round_end_s = now_s + round_trip_s
                threshold_s = min(max(HYSTART_DELAY_MIN_S, flow.least_rtt_s / 8), HYSTART_DELAY_MAX_S)
                if hystart and flow.window_segments >= HYSTART_LOW_WINDOW_SEGMENTS \
                        and round_trip_s > flow.least_rtt_s + threshold_s:
                    flow.window_segments += HYSTART_SAMPLES_SEGMENTS
                    flow.phase, flow.exit_window_segments = "avoidance", flow.window_segments
        else:
            flow.window_segments += CUBIC_GROWTH_PER_ROUND_SEGMENTS * delivered / flow.window_segments
        if flow.delivered_segments >= total_segments - 1e-9:
            flow.phase, flow.end_s = "done", now_s + rtt_s / 2
