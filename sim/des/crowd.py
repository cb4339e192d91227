"""Crowded links: the transfers on one access link held as arrays (numpy), with the same results, bit for bit.

A site on an overloaded line (an acute site's day on a 4G backup) keeps hundreds of transfers on one link, and each
event re-shares every one of them: one object at a time that is most of the run. When a group's paths are each one
link (:mod:`sim.des.linkshare`) and a link has :data:`CROWD_FROM` active transfers or more, its transfers move into
a :class:`Crowd` until fewer than :data:`CROWD_BELOW` are left; the group (:class:`Crowds`, a mixin of
:class:`sim.des.group.Group`) then asks the crowd, not each transfer, when the next one ends and what each gets.

Exact: every per-transfer step is the IEEE operation :class:`sim.des.flows.Transfer` and
:func:`sim.des.linkshare.share_link` do one transfer at a time (numpy's element-wise arithmetic rounds as Python's
floats do), in the same order: the water level's running remainder and every sum are taken sequentially
(``np.subtract.accumulate``, ``np.add.accumulate``), as the loop and Python 3.11's ``sum`` of floats do, over the
transfers in the order the group activated them. ``tests/test_des_crowd.py`` compares whole runs with and without
crowds for equality. (From Python 3.12 ``sum`` compensates its rounding: there a link's load, summed here left to
right, may differ from :func:`~sim.des.linkshare.share_link`'s in its last bits.)
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from mypy_extensions import trait

from sim.des import overflow, queueing, tcp
from sim.des.flows import Media, Transfer
from sim.des.links import Link
from sim.des.linkshare import media_shares, set_link_media, steady_media
from sim.des.state import GroupState

# A crowd's event costs about 0.1-0.2 ms of numpy calls whatever its size, transfers held as objects about 2 us each
# (benchmarks/README.md, 2026-12-02): a link's transfers become a crowd when this many are active on it, and go back
# to being objects when fewer than CROWD_BELOW are (at least 2: a lone transfer has its own shortcut).
CROWD_FROM = 96
CROWD_BELOW = 48

_G = tcp.GOODPUT_FACTOR
_WINDOW = "window"  # the label of a transfer's own limit (its window), as Transfer.settle has it
_NUMBERS = ("cap", "rate", "rem", "since", "rtt_net", "link_bits", "win_bits")  # Crowd.numbers' rows
_FLAGS = ("limited", "long", "has_link", "has_win")  # Crowd.flags' rows


def _seq_sum(values: np.ndarray, start: float | None = None) -> float:
    """Left-to-right sum of ``values`` (after ``start``), rounded at each addition as a Python loop does."""
    if start is not None:
        values = np.concatenate(([start], values))
    return float(np.add.accumulate(values)[-1]) if len(values) else 0.0


def water_level(caps_bps: np.ndarray, capacity_bps: float) -> float:
    """:func:`sim.des.sharing.water_level`, the same float operations, for an array of caps (bit/s)."""
    return _level_of_sorted(np.sort(caps_bps), capacity_bps)


def _level_of_sorted(caps: np.ndarray, capacity_bps: float) -> float:
    """:func:`water_level` of caps already sorted (bit/s)."""
    n = len(caps)
    if n == 0:
        return math.inf
    if caps[0] * n > capacity_bps:  # the smallest cap does not fit: the level is an equal share (the common case)
        return capacity_bps / n
    remaining = np.subtract.accumulate(np.concatenate(([capacity_bps], caps)))[:-1]  # before each cap
    fits = caps * (n - np.arange(n)) <= remaining
    if fits.all():
        return math.inf
    k = int(np.argmin(fits))  # the first cap that does not fit
    return float(remaining[k] / (n - k))


class Crowd:
    """The active transfers on one link, in the order they became active, as parallel arrays.

    The :class:`~sim.des.flows.Transfer` objects (``flows``) are out of date while they are here; each is brought
    up to date (:meth:`_write_back`) when it leaves. ``limited``: whether the link (not the window) limits each;
    ``link_bits``/``win_bits`` the bits each sent under either limit, ``has_link``/``has_win`` whether it has any.
    """

    def __init__(self, link: Link, flows: list[Transfer]) -> None:
        self.link = link
        self.flows: list[Transfer] = []
        self.numbers = np.empty((len(_NUMBERS), 0))  # a row per name of _NUMBERS, a column per transfer
        self.flags = np.empty((len(_FLAGS), 0), dtype=bool)  # a row per name of _FLAGS
        self.finish: np.ndarray | None = None  # when each sends its last byte at its rate (s), kept until it changes
        self.sorted_caps: np.ndarray | None = None  # the caps in increasing order, kept until a transfer comes or goes
        self.add(flows)

    def __len__(self) -> int:
        return len(self.flows)

    # rows of numbers and flags by name (methods, not property() of lambdas: a compiled class keeps those as plain
    # class attributes)
    @property
    def cap(self) -> np.ndarray:
        """Each transfer's cap (bit/s)."""
        return self.numbers[0]

    @property
    def rate(self) -> np.ndarray:
        """Each one's rate (bit/s)."""
        return self.numbers[1]

    @property
    def rem(self) -> np.ndarray:
        """Each one's bytes still to send."""
        return self.numbers[2]

    @property
    def since(self) -> np.ndarray:
        """When each was last settled (s)."""
        return self.numbers[3]

    @property
    def rtt_net(self) -> np.ndarray:
        """Each one's round trip less its queueing (s)."""
        return self.numbers[4]

    @property
    def link_bits(self) -> np.ndarray:
        """The bits each sent while the link limited it."""
        return self.numbers[5]

    @property
    def win_bits(self) -> np.ndarray:
        """The bits each sent while its window limited it."""
        return self.numbers[6]

    @property
    def limited(self) -> np.ndarray:
        """Whether the link (not its window) limits each."""
        return self.flags[0]

    @property
    def long(self) -> np.ndarray:
        """Whether each is long (goes through loss cycles)."""
        return self.flags[1]

    @property
    def has_link(self) -> np.ndarray:
        """Whether each has sent under the link's limit."""
        return self.flags[2]

    @property
    def has_win(self) -> np.ndarray:
        """Whether each has sent under its window's limit."""
        return self.flags[3]

    def add(self, flows: list[Transfer]) -> None:
        """Take transfers that became active on the link (after those already here)."""
        label = self.link.label
        self.flows.extend(flows)
        bits = [f.limited_bits for f in flows]
        numbers = np.array([[f.cap_bps for f in flows], [f.rate_bps for f in flows], [f.remaining_bytes for f in flows],
                            [f.since_s for f in flows], [f.rtt_s - f.queue_delay_s for f in flows],
                            [b.get(label, 0.0) for b in bits], [b.get(_WINDOW, 0.0) for b in bits]], dtype=float)
        flags = np.array([[f.limiter is not None for f in flows], [f.long for f in flows], [label in b for b in bits],
                          [_WINDOW in b for b in bits]], dtype=bool)
        self.numbers = np.concatenate((self.numbers, numbers), axis=1)
        self.flags = np.concatenate((self.flags, flags), axis=1)
        self.finish = self.sorted_caps = None

    def finish_s(self) -> np.ndarray:
        """When each transfer sends its last byte at its current rate (s): :meth:`Transfer.finish_s` for each."""
        if self.finish is None:
            rem, rate, since = self.numbers[2], self.numbers[1], self.numbers[3]
            sending = rate > 0
            at_rate = since + rem * 8 / np.where(sending, rate * _G, 1.0)  # the same where it is used
            self.finish = np.where(rem <= 0, since, np.where(sending, at_rate, math.inf))
        return self.finish

    def settle(self, which: np.ndarray, now_s: float) -> None:
        """:meth:`Transfer.settle` for the transfers ``which`` (a mask).

        Whole rows at a time: a transfer not settled here has 0 subtracted or added, which leaves it as it was.
        """
        numbers, flags = self.numbers, self.flags
        rate, since = numbers[1], numbers[3]
        dt_s = now_s - since
        sending = which & (dt_s > 0) & (rate > 0)
        if sending.any():
            sent = np.where(sending, rate, 0.0)
            numbers[2] -= sent * _G * dt_s / 8
            bits, by_link = sent * dt_s, flags[0]
            numbers[5] += np.where(by_link, bits, 0.0)
            numbers[6] += np.where(by_link, 0.0, bits)
            flags[2] |= sending & by_link
            flags[3] |= sending & ~by_link
        numbers[3] = np.where(which, np.maximum(since, now_s), since)
        self.finish = None

    def take_done(self, limit_s: float, now_s: float) -> list[Transfer]:
        """Remove the transfers done by ``limit_s`` (s), settled to ``now_s`` and up to date, in order."""
        done = self.finish_s() <= limit_s
        if not done.any():
            return []
        return self._remove(done, now_s)

    def take_all(self) -> list[Transfer]:
        """Remove every transfer, up to date (not settled: each goes on as an object), in order."""
        return self._remove(np.ones(len(self.flows), dtype=bool), None)

    def _remove(self, leaving: np.ndarray, now_s: float | None) -> list[Transfer]:
        """Remove the transfers ``leaving`` (a mask), settled to ``now_s`` if given, and bring them up to date."""
        if now_s is not None:
            self.settle(leaving, now_s)
        self._write_back(np.flatnonzero(leaving))
        gone = list(itertools.compress(self.flows, leaving.tolist()))
        staying = ~leaving
        self.flows = list(itertools.compress(self.flows, staying.tolist()))
        self.numbers, self.flags = self.numbers[:, staying], self.flags[:, staying]
        self.finish = self.sorted_caps = None
        return gone

    def _write_back(self, at: np.ndarray) -> None:
        """Bring the transfers at positions ``at`` up to date with the arrays."""
        link, label = self.link, self.link.label
        for k, rate, rem, since, limited, link_bits, has_link, win_bits, has_win in zip(
                at.tolist(), self.rate[at].tolist(), self.rem[at].tolist(), self.since[at].tolist(),
                self.limited[at].tolist(), self.link_bits[at].tolist(), self.has_link[at].tolist(),
                self.win_bits[at].tolist(), self.has_win[at].tolist()):
            flow = self.flows[k]
            flow.rate_bps, flow.remaining_bytes, flow.since_s = rate, rem, since
            flow.limiter = link if limited else None
            flow.limited_bits = {**({label: link_bits} if has_link else {}), **({_WINDOW: win_bits} if has_win else {})}

    def share(self, media: list[Media], now_s: float) -> None:
        """:func:`sim.des.linkshare.share_link` for the crowd's link, its transfers these and its calls ``media``."""
        link = self.link
        if media and link.media_bps <= link.free_headroom_bps and self._share_beside_steady_calls(media, now_s):
            return
        link.media_steady = False
        free_bps, headroom_bps = link.free_bps, link.free_headroom_bps
        video_caps = [m.cap_bps(now_s) for m in media]  # what each asks for, or its climb's step
        media_rates, media_limited, level, limited, saturated = self._fill(video_caps, free_bps, headroom_bps)
        if media and link.video_yields[saturated]:  # as linkshare.shares: calls yield to TCP's queue
            video_caps = [m.yield_cap_bps(now_s, cap) for cap, m in zip(video_caps, media)]
            media_rates, media_limited, level, limited, saturated = self._fill(video_caps, free_bps, headroom_bps)
        rates = np.minimum(self.cap, level)
        self._set(rates, limited, now_s)
        video_floor_bps = set_link_media(link, media, media_rates, media_limited, saturated, now_s)
        link.new_share_bps = (free_bps - video_floor_bps) / (len(self.flows) + 1)
        media_array = np.array(media_rates, dtype=float)
        link.carry(_seq_sum(np.concatenate((rates, media_array))), saturated, _seq_sum(media_array) if media else 0)
        link.congestion_loss = self._congestion_loss()
        link.note(now_s)

    def _fill(self, video_caps: list[float], free_bps: float, headroom_bps: float) -> tuple:
        """:func:`sim.des.linkshare.fill` and :func:`~sim.des.linkshare.saturation` for the crowd.

        Returns media's rates and limits, the transfers' level (bit/s), which the link limits, how they saturate it.
        """
        media_rates, media_limited, media_bps = media_shares(video_caps, headroom_bps)
        level = self._level(free_bps - media_bps)
        limited = self.cap > level
        return media_rates, media_limited, level, limited, self._saturation(limited)

    def _level(self, capacity_bps: float) -> float:
        """The level max-min filling of the transfers' caps reaches on ``capacity_bps`` (bit/s; inf if all fit)."""
        if self.sorted_caps is None:
            self.sorted_caps = np.sort(self.cap)
        return _level_of_sorted(self.sorted_caps, capacity_bps)

    def _saturation(self, limited: np.ndarray) -> int:
        if not limited.any():
            return queueing.NOT_SATURATED
        return queueing.STANDING if (limited & self.long).any() else queueing.BURSTS

    def _share_beside_steady_calls(self, media: list[Media], now_s: float) -> bool:
        """``linkshare._share_beside_steady_calls`` for the crowd: True unless the calls must yield to TCP."""
        link = self.link
        if not link.media_steady and link.media_held and not all(m.free for m in media):  # a call held or climbing back
            return False
        level = self._level(link.free_bps - link.media_bps)
        limited = self.cap > level
        saturated = self._saturation(limited)
        if link.video_yields[saturated]:
            return False
        rates = np.minimum(self.cap, level)
        self._set(rates, limited, now_s)
        steady_media(link, media, now_s)
        link.new_share_bps = (link.free_bps - link.media_floor_bps) / (len(self.flows) + 1)
        link.carry(_seq_sum(rates, link.media_bps), saturated, link.media_bps)
        link.congestion_loss = self._congestion_loss()
        link.note(now_s)
        return True

    def _set(self, rates: np.ndarray, limited: np.ndarray, now_s: float) -> None:
        """:func:`sim.des.linkshare.set_transfer` for each: settle those whose rate or limit changes, then set."""
        changing = (rates != self.numbers[1]) | (limited != self.flags[0])
        if changing.any():
            self.settle(changing, now_s)
            self.numbers[1], self.flags[0] = rates, limited  # the others' are equal already

    def _congestion_loss(self) -> float:
        """:func:`sim.des.linkshare.congestion_loss` for the transfers the link limits."""
        link, limited = self.link, self.limited
        if not link.saturated or not limited.any():
            return 0.0
        n = int(limited.sum())
        rate_bps = _seq_sum(self.rate[limited]) / n
        rtt_s = _seq_sum(self.rtt_net[limited]) / n
        if link.saturated == queueing.STANDING:
            return overflow.loss(n, rate_bps, rtt_s, link.full_queue[0], link.queue_delay_s)
        return tcp.mathis_loss(rate_bps, rtt_s + link.queue_delay_s)


@trait
class Crowds(GroupState):
    """The group's crowded links (a mixin of :class:`sim.des.group.Group`, for groups whose paths are one link)."""

    crowds: dict

    def _on_link(self, link: Link) -> int:
        """How many transfers are active on ``link`` (one-link paths)."""
        crowd = self.crowds.get(link)
        return len(crowd) if crowd is not None else sum(1 for f in self.transfers if f.path[0] is link)

    def _activate(self, due: list[Transfer]) -> None:
        """Make transfers whose start-up ended active: a crowd's if their link has one, or now becomes one."""
        if not self.single_link_paths:
            self.transfers.extend(due)
            return
        crowds = self.crowds
        for flow in due:
            crowd = crowds.get(flow.path[0])
            if crowd is not None:
                crowd.add([flow])
            else:
                self.transfers.append(flow)
        for link in {f.path[0] for f in due}:
            if link in crowds and link.streams:  # a multiplexed connection's streams are shared as objects
                self.transfers.extend(crowds.pop(link).take_all())
            elif link not in crowds and not link.streams and self._on_link(link) >= CROWD_FROM:
                crowds[link] = Crowd(link, [f for f in self.transfers if f.path[0] is link])
                self.transfers = [f for f in self.transfers if f.path[0] is not link]

    def _crowds_done(self, limit_s: float, now_s: float) -> list[Transfer]:
        """The crowds' transfers done by ``limit_s`` (s), settled and removed; a crowd grown small breaks up."""
        done = []
        for link, crowd in list(self.crowds.items()):
            gone = crowd.take_done(limit_s, now_s)
            if gone:
                done.extend(gone)
                self.dirty.add(link)
                if len(crowd) < CROWD_BELOW:
                    self.transfers.extend(crowd.take_all())
                    del self.crowds[link]
        return done

    def _break_up_crowds(self) -> None:
        """Make every crowd's transfers objects again (not settled: each goes on as it was)."""
        for crowd in self.crowds.values():
            self.transfers.extend(crowd.take_all())
        self.crowds = {}

    def _crowds_next_s(self, best_s: float) -> float:
        """The earlier of ``best_s`` and the crowds' next change (a transfer's end, a step on their links; s)."""
        for link, crowd in self.crowds.items():
            finish_s = float(crowd.finish_s().min())
            best_s = min(best_s, finish_s, link.next_step_s if self.reserving else math.inf)
        return best_s
