"""Queueing delay and jitter at a link, in the two regimes a fluid model can tell apart.

* Saturated by elastic (TCP) flows: the drop-tail buffer holds Cubic's standing queue, on average a share of the
  buffer measured in the emulation (:func:`tcp_queue_s`), so every packet waits about that share of
  ``buffer_bytes * 8 / capacity_bps`` (bufferbloat), and consecutive packets' delays differ by about one frame's
  serialisation time. Fixed-rate streams beyond a line's capacity fill it to the brim (:func:`full_buffer_delay_s`).
* Below saturation: M/D/1 mean waiting for packets of ``FRAME_BYTES`` (Pollaczek-Khinchine), capped at the
  full-buffer delay.

Jitter (RFC 3550's mean difference between consecutive packets' delays) is taken as utilisation times one
frame's serialisation time: a packet's delay differs from its predecessor's by the frames that slipped in
between, about one when the link is full, none when it is idle. This is a model assumption, to be calibrated
against the emulation.

Adaptive video (WebRTC's delay-based control) backs off as soon as the queue grows, so video flows alone
never load a link beyond ``VIDEO_MAX_UTILISATION`` of its capacity (an assumption).

Beside TCP that saturates a link, a delay-based sender yields only if the queue TCP builds exceeds its delay
threshold (``VIDEO_QUEUE_THRESHOLD_S``): it then backs off to its minimum rate (the queue never drains while TCP
fills it); below the threshold it sees no overuse and keeps its rate. That is the rate control the emulation's
calls run (``sim.emu.media.RateController``, the same threshold); real WebRTC adapts its threshold (Carlucci et
al., MMSys 2016: about 6-600 ms), so the figure is an assumption a sweep can cover. Released (the queue gone, or
more share), it climbs back at ``VIDEO_INCREASE_PER_S`` (:class:`sim.des.flows.Media`), not at once.
"""

from __future__ import annotations

import math
from typing import Final

from sim.des.tcp import FRAME_BYTES

MAX_UTILISATION = 0.98  # where the M/D/1 formula is cut off; beyond it the buffer bound applies
VIDEO_MAX_UTILISATION = 0.9  # assumption: the load at which delay-based video control holds a link
VIDEO_QUEUE_THRESHOLD_S = 0.025  # assumption (range 0.006-0.6 s): the queueing delay a video sender calls overuse
# After backing off, a delay-based sender climbs back by 8% a second (multiplicative): GCC's increase factor
# eta = 1.08 per second (Holmer et al., draft-ietf-rmcat-gcc-02, 2016, section 5.5; libwebrtc's AIMD rate control),
# the emulated sender's too (sim.emu.media.RateController.INCREASE_PER_S).
VIDEO_INCREASE_PER_S = 0.08
# Its cuts while the queue stays over the threshold: x 0.85 (the same draft's beta; RateController.DECREASE), the
# first after two receiver reports 0.1 s apart (RateController.OVERUSE_REPORTS, sim.emu.media.FEEDBACK_INTERVAL_S),
# then at most every 0.3 s (RateController.HOLD_S): the emulated sender's figures. A yielding call follows these
# cuts down to its minimum (sim.des.flows.descent_step), and climbs back from where they took it when the yield ends.
VIDEO_DECREASE, VIDEO_DETECT_S, VIDEO_HOLD_S = 0.85, 0.2, 0.3
# Through an outage the sender hears no receiver report, and cuts x 0.85 for every 0.5 s of silence
# (RateController.SILENCE_S: the emulated sender's figure; an assumption of its design, GCC leaves it to the
# implementation): a call climbs back after a short outage from above its minimum, after a long one from it.
VIDEO_SILENCE_S = 0.5
# The climb is replayed as rate steps, the first this long and each next one twice as long (a modelling choice, not
# a figure of the sender: each step carries exactly the bits of the exponential over it; shorter steps would follow
# it more closely at more events: sim.des.flows.climb_step).
VIDEO_CLIMB_STEP_S = 1.0
# Cubic's mean backlog in a drop-tail buffer of 30 packets or more, as a share of it: 69-87% (mean 81%) measured in
# the emulation on 10 and 100 Mbit/s lines with 40 and 100 ms buffers under 1, 2 and 4 uploads (docs/fidelity.md,
# "Measured in the emulation", 2026-12-02, a busy machine); 0.8 is that mean, rounded.
CUBIC_OCCUPANCY = 0.8
# Buffers of a few packets hold less (each loss empties much of them): 34-50% at 4 packets and 51-61% at 9 on a
# 1 Mbit/s line (the same measurements); a share growing by 0.038 a packet from 0.36 of CUBIC_OCCUPANCY fits both
# and reaches it at 17 packets (a two-point fit, an assumption between and beyond them).
SMALL_BUFFER_SHARE_AT_ZERO, SMALL_BUFFER_SHARE_PER_PACKET = 0.36, 0.038
# Only a transfer long enough to go through loss cycles holds that standing queue: one with more than
# LONG_FLOW_FILLS x (its path's buffer + bandwidth-delay product) still to send after slow start (an assumption,
# range 1-4: two fills, so at least a cycle after the first loss). Short transfers saturating a line only queue
# in bursts, taken as M/D/1 at the cut-off utilisation: ~30 ms at 10 Mbit/s, where the emulation measured ~36 ms beside
# 200 kB downloads at 60% load (docs/fidelity.md, "call beside short flows"); the standing queue was 96 ms.
LONG_FLOW_FILLS = 2.0
# a link's saturation: none, by short transfers only, by a long one (Final: the compiled modules take their values)
NOT_SATURATED: Final = 0
BURSTS: Final = 1
STANDING: Final = 2


def full_buffer_delay_s(buffer_bytes: float, capacity_bps: float) -> float:
    """Delay (s) of a packet joining a full drop-tail buffer."""
    return buffer_bytes * 8 / capacity_bps


def tcp_queue_s(buffer_bytes: float, capacity_bps: float) -> float:
    """Mean queueing delay (s) in a drop-tail buffer that loss-based TCP (Cubic) keeps saturated."""
    packets = buffer_bytes / FRAME_BYTES
    share = min(1.0, SMALL_BUFFER_SHARE_AT_ZERO + SMALL_BUFFER_SHARE_PER_PACKET * packets)
    return CUBIC_OCCUPANCY * share * full_buffer_delay_s(buffer_bytes, capacity_bps)


def room_segments(buffer_bytes: float, capacity_bps: float) -> float:
    """The room (segments of ``FRAME_BYTES``) loss-based TCP's standing queue leaves in a drop-tail buffer (mean)."""
    return (buffer_bytes - tcp_queue_s(buffer_bytes, capacity_bps) * capacity_bps / 8) / FRAME_BYTES


def burst_queue_s(buffer_bytes: float, capacity_bps: float) -> float:
    """Mean queueing delay (s) at a line short transfers keep busy: M/D/1 at the cut-off, within the buffer."""
    return min(md1_wait_s(MAX_UTILISATION, capacity_bps)[0], full_buffer_delay_s(buffer_bytes, capacity_bps))


def md1_wait_s(utilisation: float, capacity_bps: float) -> tuple[float, float]:
    """Mean and standard deviation (s) of the M/D/1 waiting time at ``utilisation`` (0..1)."""
    rho = min(max(utilisation, 0.0), MAX_UTILISATION)
    service_s = FRAME_BYTES * 8 / capacity_bps
    mean_s = rho * service_s / (2 * (1 - rho))
    variance = mean_s**2 + rho * service_s**2 / (3 * (1 - rho))
    return mean_s, math.sqrt(variance)


def link_delay_s(capacity_bps: float, buffer_bytes: float, load_bps: float, saturated: int,
                 ) -> tuple[float, float]:
    """Queueing delay and jitter (s) at a link carrying ``load_bps``; ``saturated`` by elastic flows.

    ``saturated`` is ``STANDING`` (a long transfer: Cubic's standing queue), ``BURSTS`` (short ones) or not.
    """
    full_s = full_buffer_delay_s(buffer_bytes, capacity_bps)
    frame_s = FRAME_BYTES * 8 / capacity_bps
    if saturated == STANDING:
        return tcp_queue_s(buffer_bytes, capacity_bps), min(full_s, frame_s)
    if saturated == BURSTS:
        return burst_queue_s(buffer_bytes, capacity_bps), min(full_s, frame_s)
    utilisation = min(load_bps / capacity_bps, 1.0)
    mean_s, _ = md1_wait_s(utilisation, capacity_bps)
    return min(mean_s, full_s), min(full_s, utilisation * frame_s)


def assumptions() -> dict[str, float]:
    """The model's assumed figures a run's results should carry (meta.json), by name, in SI units."""
    return {"video_max_utilisation": VIDEO_MAX_UTILISATION, "video_queue_threshold_s": VIDEO_QUEUE_THRESHOLD_S,
            "video_increase_per_s": VIDEO_INCREASE_PER_S, "cubic_occupancy": CUBIC_OCCUPANCY}
