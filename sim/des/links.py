"""Fluid links of the simulator: capacity, buffer, reserved rate, and what they record over time."""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import NamedTuple

from sim.des import queueing


class Line(NamedTuple):
    """What a link's line is at some time: its capacity, buffer, loss, queueing and round trip.

    Capacity in bit/s, buffer in bytes, random loss 0..1, ``priority`` whether calls are served first (``qos:
    priority``), ``rtt_shift_s`` how much longer its site's round trip is than the topology's (s).
    A capacity of 0 is an outage: nothing crosses the link, and it holds no queue.
    """

    capacity_bps: float
    buffer_bytes: float
    loss: float
    priority: bool
    rtt_shift_s: float = 0.0


class Link:
    """One direction of a link, as the fluid model sees it.

    Attributes:
        name: e.g. ``gp-adsl/up``.
        label: The bottleneck label records use: ``access_up``, ``aggregation_down``, ...
        site: The site whose access link it is (``""`` for a shared link).
        kind: ``access`` or ``aggregation``.
        direction: ``up`` (away from the site) or ``down``.
        capacity_bps, buffer_bytes, loss, jitter_s: From the access profile or shared link.
        load_bps, saturated, queue_delay_s, queue_jitter_s, congestion_loss: The current state, set on
            each re-share. ``load_bps`` is the fluid flows' load (transfers and adaptive media); the queues
            also count the reserved rate.
        free_bps, free_headroom_bps: What the reserved rate leaves of the capacity to fluid flows, and of the
            video headroom to adaptive video (bit/s).
        reserved_bps: The rate fixed-rate streams hold on the link now (:mod:`sim.des.reserved`): a step
            function known before the run (``steps_s``, ``steps_bps``), followed lazily by :meth:`sync`.
        new_share_bps: The share a new transfer would find here (what video leaves at its minimum, split
            with the transfers already there), set on each re-share of a group whose paths are one link.
        bits: Bits the fluid flows carried in each utilisation bin (reserved bits are added after the run).
        media_bps, media_floor_bps, media_count: What the adaptive media on it ask for (bit/s), the least
            they take (their demand or minimum, whichever is lower: bit/s), and how many there are.
        media_steady: Whether its media have what they ask for since they last joined or left.
        media_held: Whether a re-share may have left one of its media held, climbing back, yielding or silenced
            (not :attr:`sim.des.flows.Media.free`); False only when none is (set by :mod:`sim.des.linkshare`).
        video_yields: By saturation state (none, short transfers' bursts, a long transfer's standing queue),
            whether video backs off to its minimum: the queue then delays more than video's overuse threshold
            (:mod:`sim.des.queueing`).
        priority: Whether calls' packets (DSCP EF) are served first from their own queue (``qos: priority``):
            they then see only the queue of the calls ahead of them and the frame in service, never TCP's.
        media_load_bps: The adaptive media's part of ``load_bps``.
        history: Its fluid state after each change, as parallel lists ``(times_s, load_bps, saturated,
            congestion_loss, media_load_bps)``: what calls' delay, jitter and loss are computed from
            (:mod:`sim.des.paths`).
        line0, line_steps_s, line_steps: Its line as the topology has it, and the changes to it (a fault, a
            backup, a repair: :mod:`sim.linkchanges`): from ``line_steps_s[k]`` on, it is ``line_steps[k]``, a
            step function known before the run, taken by :meth:`take_line` as its group reaches each step.
        rtt_shift_s: How much longer than the topology's its site's round trip is now (s; 0 but on a changed line).
        standing_room_segments: The room a standing queue leaves in its buffer (segments; inf in an outage), which a
            slow-start round's burst overflows (:func:`sim.des.tcp.overflow`).
        bind_limit_bps, bind_next: Where :meth:`binding_step_s` last stopped looking (a step index) and for which
            limit (bit/s): every step after the next one up to it does not bind under that limit.
        queues_at: The M/D/1 queue (delay, jitter: s) below saturation by total load (bit/s) on the present line,
            as :meth:`carry` found it: a pure function of the line and the load, so remembered exactly (it grows
            by at most one entry a call, as the history does, and is emptied when the line changes).
    """

    __slots__ = ("name", "site", "kind", "direction", "capacity_bps", "buffer_bytes", "loss", "jitter_s",
                 "load_bps", "saturated", "queue_delay_s", "queue_jitter_s", "congestion_loss", "bits",
                 "bin0_s", "bin_s", "since_s", "full_queue", "tcp_queue", "burst_queue", "new_share_bps",
                 "headroom_bps", "reserved_bps", "steps_s", "steps_bps", "step", "next_step_s", "history",
                 "media_bps", "media_count", "video_yields", "media_floor_bps", "media_steady", "media_held",
                 "priority",
                 "media_load_bps", "line0", "line_steps_s", "line_steps", "line_step", "next_line_s",
                 "rtt_shift_s", "bind_limit_bps", "bind_next", "queues_at", "free_bps", "free_headroom_bps",
                 "standing_room_segments", "streams", "weighted", "label")

    def __init__(self, name: str, site: str, kind: str, direction: str, capacity_bps: float,
                 buffer_bytes: float, loss: float, jitter_s: float, bin0_s: float, bin_s: float,
                 n_bins: int, priority: bool = False) -> None:
        self.name, self.site, self.kind, self.direction = name, site, kind, direction
        self.label = f"{kind}_{direction}"  # (made once: a flow's settlement reads it each time)
        self.jitter_s = jitter_s
        self.load_bps = 0.0
        self.saturated = queueing.NOT_SATURATED
        self.queue_delay_s = self.queue_jitter_s = self.congestion_loss = 0.0
        self.bits = [0.0] * n_bins
        self.bin0_s, self.bin_s = bin0_s, bin_s
        self.since_s = bin0_s  # utilisation is settled up to here
        self.new_share_bps = capacity_bps
        self.reserved_bps = 0.0
        self.line0 = Line(capacity_bps, buffer_bytes, loss, priority)
        self._set_line(self.line0)
        self.line_steps_s: list[float] = []  # (none: its line stays as the topology has it)
        self.line_steps: list[Line] = []
        self.line_step, self.next_line_s = 0, math.inf
        self.media_load_bps = 0.0
        self.steps_s: list[float] = []  # (none: no fixed-rate stream uses it)
        self.steps_bps: list[float] = []
        self.step, self.next_step_s = 0, math.inf
        self.bind_limit_bps, self.bind_next = math.nan, 0
        self.history: tuple[list, ...] = ([], [], [], [], [])
        self.media_bps, self.media_floor_bps, self.media_count, self.media_steady = 0.0, 0.0, 0, False
        self.media_held = False  # (a call joins free)
        self.streams = self.weighted = 0  # active streams of multiplexed connections; those sharing with others

    def _set_line(self, line: Line) -> None:
        """Take ``line``'s capacity, buffer, loss, queueing and round trip, and the queues they imply."""
        capacity_bps, buffer_bytes, priority = line.capacity_bps, line.buffer_bytes, line.priority
        self.capacity_bps, self.buffer_bytes, self.loss, self.priority = capacity_bps, buffer_bytes, line.loss, priority
        self.rtt_shift_s = line.rtt_shift_s
        self.queues_at: dict[float, tuple[float, float]] = {}  # the line's M/D/1 queues by load (see carry)
        self.headroom_bps = capacity_bps * queueing.VIDEO_MAX_UTILISATION
        self._set_free()
        if capacity_bps <= 0.0:  # an outage: nothing crosses, nothing queues
            self.tcp_queue = self.burst_queue = self.full_queue = (0.0, 0.0)
            self.video_yields = (False, False, False)
            self.standing_room_segments = math.inf
            return
        self.tcp_queue = queueing.link_delay_s(capacity_bps, buffer_bytes, capacity_bps, queueing.STANDING)
        self.standing_room_segments = queueing.room_segments(buffer_bytes, capacity_bps)
        self.burst_queue = queueing.link_delay_s(capacity_bps, buffer_bytes, capacity_bps, queueing.BURSTS)
        full_s = queueing.full_buffer_delay_s(buffer_bytes, capacity_bps)
        self.full_queue = (full_s, self.tcp_queue[1])  # filled by streams that do not back off
        # beside TCP's queue, calls see overuse and yield where it passes their threshold (never on a priority line)
        threshold_s = queueing.VIDEO_QUEUE_THRESHOLD_S
        self.video_yields = (False, not priority and self.burst_queue[0] > threshold_s,
                             not priority and self.tcp_queue[0] > threshold_s)  # by saturation state

    def schedule_lines(self, steps_s: list[float], lines: list[Line]) -> None:
        """Give the link its line changes: from ``steps_s[k]`` (s, increasing) on, it is ``lines[k]``."""
        self.line_steps_s, self.line_steps = steps_s, lines
        self.line_step, self.next_line_s = 0, steps_s[0] if steps_s else math.inf

    def take_line(self, now_s: float) -> bool:
        """Take the line in force at ``now_s``; True if it changed (its flows must then be re-shared).

        Its queues follow the new line at the present load (:meth:`carry`); its load is the caller's to settle.
        """
        if self.next_line_s > now_s:
            return False
        k, self.next_line_s = passed(self.line_steps_s, self.line_step, now_s)
        self.line_step = k
        line = self.line_steps[k - 1]
        if line == self.line_now():
            return False
        self._set_line(line)
        self.carry(self.load_bps, self.saturated)
        return True

    def line_now(self) -> Line:
        """The line the link is now."""
        return Line(self.capacity_bps, self.buffer_bytes, self.loss, self.priority, self.rtt_shift_s)

    def lines(self) -> list[Line]:
        """Every line it is through the run, in order: the topology's first, then each change's."""
        return [self.line0, *self.line_steps]

    def reserve(self, steps_s: list[float], steps_bps: list[float]) -> None:
        """Give the link its reservations: from ``steps_s[k]`` on, fixed-rate streams hold ``steps_bps[k]``."""
        self.steps_s, self.steps_bps = steps_s, steps_bps
        self.step, self.next_step_s = 0, steps_s[0] if steps_s else math.inf
        self.bind_limit_bps, self.bind_next = math.nan, 0

    def _set_free(self) -> None:
        """What the reserved rate leaves of the capacity to fluid flows, and of the headroom to video (bit/s).

        Kept as attributes (``free_bps``, ``free_headroom_bps``), set wherever the line or the reserved rate changes.
        """
        free_bps, free_headroom_bps = self.capacity_bps - self.reserved_bps, self.headroom_bps - self.reserved_bps
        self.free_bps = free_bps if free_bps > 0.0 else 0.0  # (max(0.0, ...), as often as a reservation steps)
        self.free_headroom_bps = free_headroom_bps if free_headroom_bps > 0.0 else 0.0

    def add_media(self, demand_bps: float, floor_bps: float) -> None:
        """An adaptive media flow asking for ``demand_bps`` and needing at least ``floor_bps`` joins the link."""
        self.media_bps += demand_bps
        self.media_floor_bps += floor_bps
        self.media_count += 1
        self.media_steady = False

    def remove_media(self, demand_bps: float, floor_bps: float) -> None:
        """An adaptive media flow asking for ``demand_bps`` and needing at least ``floor_bps`` leaves the link."""
        self.media_count -= 1
        self.media_bps = self.media_bps - demand_bps if self.media_count else 0.0
        self.media_floor_bps = self.media_floor_bps - floor_bps if self.media_count else 0.0
        self.media_steady = False

    def binding_step_s(self, until_s: float) -> float:
        """When the first coming reservation step before ``until_s`` can change its media's rates (s; inf if none).

        A step cannot while what they ask for fits in the headroom the reservations leave, before and after it. The
        steps not taken yet are looked through in order (a step that does not bind waits, untaken, for the next
        event: it must not hide a later one that does).

        Whether a step after the next one binds depends only on its rate, the one before it and the limit (the
        headroom less what the media ask for), so the look resumes where the last one with the same limit stopped
        (``bind_next``: every step between the next one and it was found not to bind).
        """
        steps_s, steps_bps, k = self.steps_s, self.steps_bps, self.step
        n = len(steps_s)
        if k >= n:
            return math.inf
        limit_bps = self.headroom_bps - self.media_bps - 1e-6
        if max(self.reserved_bps, steps_bps[k]) > limit_bps:  # the next step, after the reserved rate now
            return steps_s[k] if steps_s[k] < until_s else math.inf
        j = self.bind_next if limit_bps == self.bind_limit_bps and self.bind_next > k else k + 1
        while j < n and steps_s[j] < until_s and max(steps_bps[j - 1], steps_bps[j]) <= limit_bps:
            j += 1
        self.bind_limit_bps, self.bind_next = limit_bps, j
        return steps_s[j] if j < n and steps_s[j] < until_s else math.inf

    def sync(self, now_s: float) -> bool:
        """Take the reserved rate in force at ``now_s``; True if it changed (the link must then be re-shared)."""
        if self.next_step_s > now_s:
            return False
        steps_s = self.steps_s  # (passed(), written out: a link's every step comes here)
        n, k = len(steps_s), bisect_right(steps_s, now_s, self.step)
        self.step, self.next_step_s = k, steps_s[k] if k < n else math.inf
        reserved_bps = self.steps_bps[k - 1]
        if reserved_bps == self.reserved_bps:
            return False
        self.reserved_bps = reserved_bps
        self._set_free()
        return True

    def carry(self, load_bps: float, saturated: int, media_load_bps: float | None = None) -> None:
        """Set the fluid load (bit/s) the link now carries, how elastic flows saturate it, and its queues.

        ``saturated``: :data:`sim.des.queueing.STANDING` (a long transfer), ``BURSTS`` (short ones only) or 0.

        ``media_load_bps`` is the adaptive media's part of the load (unchanged when not given). The queues are
        what transfers see (the common queue, or on a priority line the best-effort one).
        """
        self.load_bps, self.saturated = load_bps, saturated
        if media_load_bps is not None:
            self.media_load_bps = media_load_bps
        total_bps = load_bps + self.reserved_bps
        if self.reserved_bps > self.capacity_bps:
            self.queue_delay_s, self.queue_jitter_s = self.full_queue
        elif saturated:
            self.queue_delay_s, self.queue_jitter_s = self.tcp_queue if saturated == queueing.STANDING \
                else self.burst_queue
        elif total_bps <= 0.0 or self.capacity_bps <= 0.0:  # idle, or an outage
            self.queue_delay_s = self.queue_jitter_s = 0.0
        else:  # a pure function of the line and the load: remembered per load until the line changes
            queues = self.queues_at.get(total_bps)
            if queues is None:
                queues = self.queues_at[total_bps] = queueing.link_delay_s(self.capacity_bps, self.buffer_bytes,
                                                                           total_bps, False)
            self.queue_delay_s, self.queue_jitter_s = queues

    def note(self, now_s: float) -> None:
        """Write the fluid state into the history, if it changed."""
        times_s, loads, saturated, losses, media = self.history
        if times_s and loads[-1] == self.load_bps and saturated[-1] == self.saturated \
                and losses[-1] == self.congestion_loss and media[-1] == self.media_load_bps:
            return
        if times_s and times_s[-1] == now_s:
            loads[-1], saturated[-1], losses[-1] = self.load_bps, self.saturated, self.congestion_loss
            media[-1] = self.media_load_bps
            return
        times_s.append(now_s)
        loads.append(self.load_bps)
        saturated.append(self.saturated)
        losses.append(self.congestion_loss)
        media.append(self.media_load_bps)

    def settle(self, now_s: float) -> None:
        """Add the bits carried at the current load since the last settlement to the utilisation bins."""
        t0_s = self.since_s
        if now_s > t0_s:
            self.since_s = now_s
            if self.load_bps > 0.0:
                self._spread(t0_s, now_s, self.load_bps)

    def add_bits(self, t0_s: float, t1_s: float, bits: float) -> None:
        """Add ``bits`` carried evenly over [t0_s, t1_s] outside the fluid load (a transfer's slow-start rounds)."""
        if t1_s > t0_s:
            self._spread(t0_s, t1_s, bits / (t1_s - t0_s))
        else:  # no time at all (no round-trip time): the bits land in the bin of their moment
            self.bits[min(max(0, int((t0_s - self.bin0_s) // self.bin_s)), len(self.bits) - 1)] += bits

    def _spread(self, t0_s: float, t1_s: float, rate: float) -> None:
        """Add ``rate`` (bit/s) over [t0_s, t1_s] to the utilisation bins (the last bin takes any time beyond)."""
        bits, w, b0 = self.bits, self.bin_s, self.bin0_s
        k0, k1 = int((t0_s - b0) // w), int((t1_s - b0) // w)
        if k0 < 0:
            k0 = 0
        if k1 >= len(bits):
            k1 = len(bits) - 1
        if k0 >= k1:
            bits[k0] += rate * (t1_s - t0_s)
            return
        bits[k0] += rate * (b0 + (k0 + 1) * w - t0_s)
        for k in range(k0 + 1, k1):
            bits[k] += rate * w
        bits[k1] += rate * (t1_s - (b0 + k1 * w))


def passed(steps_s: list[float], k: int, now_s: float) -> tuple[int, float]:
    """A cursor over step times moved past every step at or before ``now_s`` (s), from index ``k`` on.

    Returns the index of the first step still to come and its time (inf when none is left).
    """
    k = bisect_right(steps_s, now_s, k)  # (steps are in time order)
    return k, steps_s[k] if k < len(steps_s) else math.inf


def bin_count(start_s: float, end_s: float, bin_s: float) -> int:
    """Number of utilisation bins covering [start_s, end_s]."""
    return max(1, math.ceil((end_s - start_s) / bin_s) + 1)
