"""Fluid links of the simulator: capacity, buffer and the utilisation they record over time."""

from __future__ import annotations

import math

from sim.des import queueing


class Link:
    """One direction of a link, as the fluid model sees it.

    Attributes:
        name: e.g. ``gp-adsl/up``.
        site: The site whose access link it is (``""`` for a shared link).
        kind: ``access`` or ``aggregation``.
        direction: ``up`` (away from the site) or ``down``.
        capacity_bps, buffer_bytes, loss, jitter_s: From the access profile or shared link.
        load_bps, saturated, queue_delay_s, queue_jitter_s, congestion_loss: The current state, set on
            each re-share.
        new_share_bps: The share a new transfer would find here (what video leaves at its minimum, split
            with the transfers already there), set on each re-share of a group whose paths are one link.
        bits: Bits carried in each utilisation bin.
    """

    __slots__ = ("name", "site", "kind", "direction", "capacity_bps", "buffer_bytes", "loss", "jitter_s",
                 "load_bps", "saturated", "queue_delay_s", "queue_jitter_s", "congestion_loss", "bits",
                 "bin0_s", "bin_s", "since_s", "full_queue", "new_share_bps")

    def __init__(self, name: str, site: str, kind: str, direction: str, capacity_bps: float,
                 buffer_bytes: float, loss: float, jitter_s: float, bin0_s: float, bin_s: float,
                 n_bins: int) -> None:
        self.name, self.site, self.kind, self.direction = name, site, kind, direction
        self.capacity_bps, self.buffer_bytes, self.loss, self.jitter_s = capacity_bps, buffer_bytes, loss, jitter_s
        self.load_bps = 0.0
        self.saturated = False
        self.queue_delay_s = self.queue_jitter_s = self.congestion_loss = 0.0
        self.bits = [0.0] * n_bins
        self.bin0_s, self.bin_s = bin0_s, bin_s
        self.since_s = bin0_s  # utilisation is settled up to here
        self.new_share_bps = capacity_bps
        self.full_queue = queueing.link_delay_s(capacity_bps, buffer_bytes, capacity_bps, True)  # when saturated

    def carry(self, load_bps: float, saturated: bool) -> None:
        """Set the load (bit/s) the link now carries, whether elastic flows saturate it, and its queues."""
        self.load_bps, self.saturated = load_bps, saturated
        if saturated:
            self.queue_delay_s, self.queue_jitter_s = self.full_queue
        elif load_bps <= 0.0:
            self.queue_delay_s = self.queue_jitter_s = 0.0
        else:
            self.queue_delay_s, self.queue_jitter_s = queueing.link_delay_s(self.capacity_bps, self.buffer_bytes,
                                                                            load_bps, False)

    @property
    def label(self) -> str:
        """The bottleneck label records use: ``access_up``, ``aggregation_down``, ..."""
        return f"{self.kind}_{self.direction}"

    def settle(self, now_s: float) -> None:
        """Add the bits carried at the current load since the last settlement to the utilisation bins."""
        t0_s, t1_s = self.since_s, now_s
        self.since_s = max(self.since_s, now_s)
        rate, bits, w, b0 = self.load_bps, self.bits, self.bin_s, self.bin0_s
        if rate <= 0.0 or t1_s <= t0_s:
            return
        k0 = max(0, int((t0_s - b0) // w))
        k1 = min(int((t1_s - b0) // w), len(bits) - 1)
        if k0 >= k1:
            bits[k0] += rate * (t1_s - t0_s)
            return
        bits[k0] += rate * (b0 + (k0 + 1) * w - t0_s)
        for k in range(k0 + 1, k1):
            bits[k] += rate * w
        bits[k1] += rate * (t1_s - (b0 + k1 * w))


def bin_count(start_s: float, end_s: float, bin_s: float) -> int:
    """Number of utilisation bins covering [start_s, end_s]."""
    return max(1, math.ceil((end_s - start_s) / bin_s) + 1)
