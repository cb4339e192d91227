"""Sharing one link among its flows, in closed form (water-filling), and what a lone transfer there does.

The single-link half of :mod:`sim.des.group`: when every path of a group is one link (a site on its own line), each
link is shared on its own. Calls (delay-based senders) take their share of the video headroom the reservations leave,
max-min among themselves; transfers share max-min what is left (:func:`shares`). The group's shared-link path
(:mod:`sim.des.shared`) gives the same answer by progressive filling.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import NamedTuple

from sim.des import overflow, queueing, tcp
from sim.des.flows import Media, Transfer
from sim.des.links import Link
from sim.des.sharing import water_level

_EPS_S = 1e-9


def share_link(link: Link, transfers: list[Transfer], media: list[Media], now_s: float) -> None:
    """Share a link among its transfers and media (:func:`shares`); give the link its load and queues."""
    if media and link.media_bps <= link.free_headroom_bps and _share_beside_steady_calls(link, transfers, media, now_s):
        return
    link.media_steady = False
    if not transfers:
        _share_among_calls(link, media, now_s)
        return
    if link.weighted:
        share_generally(link, transfers, media, now_s)
    else:
        _share_unweighted(link, transfers, media, now_s)


def share_generally(link: Link, transfers: list[Transfer], media: list[Media], now_s: float) -> None:
    """:func:`share_link` of transfers (and calls) by :func:`shares`: weighted streams' way, and the plain one."""
    n_transfers = len(transfers)
    rates, limited, saturated = shares(link, link.free_bps, link.free_headroom_bps, transfers, media, now_s)
    # (set_transfer written out: every transfer of a busy line passes here at every event)
    for flow, rate_bps, is_limited in zip(transfers, rates, limited):
        limiter = link if is_limited else None
        if rate_bps != flow.rate_bps or limiter is not flow.limiter:
            flow.settle(now_s)
            flow.rate_bps, flow.limiter = rate_bps, limiter
    video_floor_bps = set_link_media(link, media, rates[n_transfers:], limited[n_transfers:], saturated, now_s)
    link.new_share_bps = (link.free_bps - video_floor_bps) / (n_transfers + 1)
    link.carry(sum(rates), saturated, sum(rates[n_transfers:]))
    link.congestion_loss = congestion_loss(link, [f for f in transfers if f.limiter is link]) if saturated else 0.0
    link.note(now_s)


def _share_unweighted(link: Link, transfers: list[Transfer], media: list[Media], now_s: float) -> None:
    """:func:`share_generally` with no weighted stream, written out.

    :func:`shares` (by :func:`fill` and :func:`saturation`), the transfers' shares, the link's load and its
    congestion loss's terms in one pass over the transfers, without the lists of limits: the same values summed by
    ``sum()`` in the same order (the load over the transfers, then the calls; ``sum()`` itself, not a running total:
    from Python 3.12 it compensates rounding). A busy line's every event passes here.
    """
    transfer_caps = [f.cap_bps for f in transfers]
    video_caps = [m.cap_bps(now_s) for m in media]
    media_rates, media_limited, media_bps = media_shares(video_caps, link.free_headroom_bps)
    level = water_level(transfer_caps, link.free_bps - media_bps)
    saturated = _saturation_at(transfers, transfer_caps, level)
    if media and link.video_yields[saturated]:  # the calls yield to TCP (as shares())
        video_caps = [m.yield_cap_bps(now_s, cap) for cap, m in zip(video_caps, media)]
        media_rates, media_limited, media_bps = media_shares(video_caps, link.free_headroom_bps)
        level = water_level(transfer_caps, link.free_bps - media_bps)
        saturated = _saturation_at(transfers, transfer_caps, level)
    rates, limited_rtts_s = [], []  # (congestion_loss()'s RTTs: of the transfers the link limits, in order)
    for flow, cap_bps in zip(transfers, transfer_caps):
        if level < cap_bps:  # (min(cap, level); cap > level)
            rate_bps, limiter = level, link
            limited_rtts_s.append(flow.rtt_s - flow.queue_delay_s)
        else:
            rate_bps, limiter = cap_bps, None
        if rate_bps != flow.rate_bps or limiter is not flow.limiter:
            flow.settle(now_s)
            flow.rate_bps, flow.limiter = rate_bps, limiter
        rates.append(rate_bps)
    video_floor_bps = set_link_media(link, media, media_rates, media_limited, saturated, now_s)
    link.new_share_bps = (link.free_bps - video_floor_bps) / (len(transfers) + 1)
    link.carry(sum(rates + media_rates) if media_rates else sum(rates), saturated, sum(media_rates))
    n_limited = len(limited_rtts_s)
    if not saturated:
        link.congestion_loss = 0.0
    elif link.streams:  # (a connection's streams are one TCP flow)
        link.congestion_loss = congestion_loss(link, [f for f in transfers if f.limiter is link])
    elif n_limited == 1:  # (the one's own rate and RTT, as congestion_loss() takes them)
        link.congestion_loss = _loss(link, 1, level, limited_rtts_s[0])
    else:  # (each rate the level: their sum() as congestion_loss() takes it)
        link.congestion_loss = _loss(link, n_limited, sum([level] * n_limited) / n_limited,
                                     sum(limited_rtts_s) / n_limited)
    link.note(now_s)


def _saturation_at(transfers: list[Transfer], caps_bps: list[float], level_bps: float) -> int:
    """:func:`saturation` of transfers of caps ``caps_bps`` at the water level ``level_bps`` (bit/s)."""
    state = queueing.NOT_SATURATED
    for flow, cap_bps in zip(transfers, caps_bps):
        if cap_bps > level_bps:
            if flow.long:
                return queueing.STANDING
            state = queueing.BURSTS
    return state


def _share_among_calls(link: Link, media: list[Media], now_s: float) -> None:
    """:func:`share_link` for a link with calls and no transfer: the calls share its headroom, saturating nothing.

    (Calls on a line they ask more of than its headroom, between transfers: most re-shares of a slow upstream.)
    """
    rates, limited, _ = media_shares([m.cap_bps(now_s) for m in media], link.free_headroom_bps)
    link.new_share_bps = link.free_bps - set_link_media(link, media, rates, limited, queueing.NOT_SATURATED, now_s)
    load_bps = sum(rates)  # (as share_link's)
    link.carry(load_bps, queueing.NOT_SATURATED, load_bps)
    link.congestion_loss = 0.0
    link.note(now_s)


def _share_beside_steady_calls(link: Link, transfers: list[Transfer], media: list[Media], now_s: float) -> bool:
    """:func:`share_link` when the link's calls fit its headroom: True unless they must yield to TCP.

    The calls then get what they ask for whatever the transfers do, so the transfers share what they leave, and the
    calls are touched only when they joined or left since they last got it (``link.media_steady``). Not while a
    call is held or climbing back (:class:`sim.des.flows.Media`): it gets less than it asks for, nor while streams of
    a multiplexed connection share its window (``link.weighted``: :func:`fill` weighs them).
    """
    if link.weighted or (not link.media_steady and link.media_held and not all(m.free for m in media)):
        return False
    load_bps, saturated = link.media_bps, queueing.NOT_SATURATED
    if len(transfers) == 1:  # (the common case: water_level of one cap, the transfer's cap or all that is left)
        flow = transfers[0]
        left_bps = link.free_bps - load_bps
        if flow.cap_bps <= left_bps:
            set_transfer(flow, flow.cap_bps, None, now_s)
            load_bps += flow.cap_bps
        else:
            saturated = queueing.STANDING if flow.long else queueing.BURSTS
            if link.video_yields[saturated]:
                return False
            set_transfer(flow, left_bps, link, now_s)
            load_bps += left_bps
    elif transfers:
        transfer_caps = [f.cap_bps for f in transfers]
        level = water_level(transfer_caps, link.free_bps - link.media_bps)
        limited = [cap > level for cap in transfer_caps]
        saturated = saturation(transfers, limited)
        if link.video_yields[saturated]:
            return False
        for flow, cap_bps, is_limited in zip(transfers, transfer_caps, limited):
            rate_bps = min(cap_bps, level)
            set_transfer(flow, rate_bps, link if is_limited else None, now_s)
            load_bps += rate_bps
    steady_media(link, media, now_s)
    link.new_share_bps = (link.free_bps - link.media_floor_bps) / (len(transfers) + 1)
    link.carry(load_bps, saturated, link.media_bps)
    link.congestion_loss = congestion_loss(link, [f for f in transfers if f.limiter is link]) if saturated else 0.0
    link.note(now_s)
    return True


def set_link_media(link: Link, media: list[Media], rates: list[float], limited: list[bool], saturated: int,
                   now_s: float) -> float:
    """Give a link's media their shares (as :func:`set_media`, with this link the only one).

    Returns the least the media take (each its rate or its minimum, whichever is lower: bit/s).
    """
    link.media_held = True  # (following its share, a call may be held)
    video_floor_bps = 0.0
    yielding = link.video_yields[saturated]
    for m, rate_bps, is_limited in zip(media, rates, limited):
        limiter = link if is_limited else None
        yielded = yielding and rate_bps < m.target_bps * (1 - 1e-9)
        cause = link if yielded else limiter
        m.limiter = limiter
        m.follow(rate_bps, now_s, yielding)
        if rate_bps != m.rate_bps or cause is not m.cause or yielded != m.yielded:
            m.settle(now_s)
            m.rate_bps, m.cause, m.yielded = rate_bps, cause, yielded
        video_floor_bps += rate_bps if rate_bps < m.min_bps else m.min_bps
    return video_floor_bps


def steady_media(link: Link, media: list[Media], now_s: float) -> None:
    """Give a link's media what they ask for, if they joined or left since they last got it (``link.media_steady``)."""
    if not link.media_steady:
        for m in media:
            rate_bps = m.demand_bps  # min(target_bps, far_cap_bps)
            m.limiter = None
            if rate_bps != m.rate_bps or m.cause is not None:
                m.settle(now_s)
                m.rate_bps, m.cause, m.yielded = rate_bps, None, False
        link.media_steady, link.media_held = True, False


def share_elastic_alone(link: Link, transfers: Sequence[Transfer], now_s: float) -> None:
    """:func:`share_link` for a link with at most one transfer and no media (the common case)."""
    if transfers:
        link.new_share_bps = link.free_bps / 2
        carry_alone(transfers[0], link, now_s)
    else:
        idle_link(link, now_s)


def congestion_loss(link: Link, elastic: list[Transfer]) -> float:
    """Drop rate at a saturated drop-tail link (0..0.5); none when no flow saturates it.

    Where a long transfer holds Cubic's standing queue, the loss a packet joining it sees as the TCP flows it
    limits (``elastic``) overflow it in turn (:func:`sim.des.overflow.loss`); under short transfers' bursts, what
    their sawtooth implies (Mathis, inverted). The streams of a multiplexed connection are one TCP flow there
    (their rates summed).
    """
    if not elastic or not link.saturated:
        return 0.0
    flows = connection_flows(elastic) if link.streams else elastic
    if len(flows) == 1:  # (most often: the mean of one, as sum() and the division below give it)
        flow = flows[0]
        rate_bps, rtt_s = flow.rate_bps, flow.rtt_s - flow.queue_delay_s
    else:  # (sums of lists: the same additions in the same order, quicker than of generators)
        rate_bps = sum([f.rate_bps for f in flows]) / len(flows)
        rtt_s = sum([f.rtt_s - f.queue_delay_s for f in flows]) / len(flows)
    return _loss(link, len(flows), rate_bps, rtt_s)


def _loss(link: Link, n_flows: int, rate_bps: float, rtt_s: float) -> float:
    """The drop rate at a link ``n_flows`` TCP flows saturate (0..0.5), as :func:`congestion_loss` gives it.

    ``rate_bps``: their mean rate (bit/s); ``rtt_s``: their mean RTT but for the link's queue (s).
    """
    if link.saturated == queueing.STANDING:
        return overflow.loss(n_flows, rate_bps, rtt_s, link.full_queue[0], link.queue_delay_s)
    return tcp.mathis_loss(rate_bps, rtt_s + link.queue_delay_s)


class _Flow(NamedTuple):
    """A TCP flow as :func:`congestion_loss` reads it: its rate (bit/s), RTT and the queueing in it (s)."""

    rate_bps: float
    rtt_s: float
    queue_delay_s: float


def connection_flows(elastic: list[Transfer]) -> list:
    """The TCP flows among transfers: each plain one, and each multiplexed connection once, its rates summed.

    A connection's flow is a :class:`_Flow`, not a transfer: the list holds both (untyped, for the compiler).
    """
    flows: list = []
    by_conn: dict[int, int] = {}
    for f in elastic:
        if f.conn is None:
            flows.append(f)
        elif id(f.conn) in by_conn:
            k = by_conn[id(f.conn)]
            flows[k] = flows[k]._replace(rate_bps=flows[k].rate_bps + f.rate_bps)
        else:
            by_conn[id(f.conn)] = len(flows)
            flows.append(_Flow(f.rate_bps, f.rtt_s, f.queue_delay_s))
    return flows


def carry_alone(flow: Transfer, link: Link, now_s: float) -> None:
    """Give a transfer alone on its link its share from ``now_s``, and the link its load and queues."""
    free_bps = link.free_bps
    if flow.cap_bps > free_bps:  # the link limits it: it saturates the link (saturation() of one transfer)
        set_transfer(flow, free_bps, link, now_s)
        link.carry(free_bps, queueing.STANDING if flow.long else queueing.BURSTS, 0.0)
        link.congestion_loss = congestion_loss(link, [flow])
    else:
        set_transfer(flow, flow.cap_bps, None, now_s)
        link.carry(flow.cap_bps, queueing.NOT_SATURATED, 0.0)
        link.congestion_loss = 0.0  # (congestion_loss() of an unsaturated link)
    link.note(now_s)


def idle_link(link: Link, now_s: float) -> None:
    """:func:`share_link` for a link with no transfer and no media: it carries nothing from ``now_s``."""
    link.new_share_bps = link.free_bps  # (a new transfer would be alone)
    link.carry(0.0, False, 0.0)
    link.congestion_loss = 0.0
    link.note(now_s)


def shares(link: Link, free_bps: float, headroom_bps: float, transfers: list[Transfer], media: list[Media],
           now_s: float) -> tuple[list[float], list[bool], int]:
    """Shares on one link (transfers, then media), whether the link limits each, and how transfers saturate it.

    Media (delay-based senders that back off only on a queue or heavy loss) share the video headroom left by the
    reservations max-min fairly among themselves; transfers share max-min fairly what is left. When transfers
    saturate the link and the queue they keep there delays more than video's overuse threshold
    (``link.video_yields``), the media yield to TCP, following their senders' cuts down to their minimum rates
    (:meth:`sim.des.flows.Media.yield_cap_bps`), and transfers take the rest.
    The saturation is :func:`saturation`'s. A call climbing back after a yield asks for its climb's step at
    ``now_s`` (s; :meth:`sim.des.flows.Media.cap_bps`).
    """
    transfer_caps = [f.cap_bps for f in transfers]
    video_caps = [m.cap_bps(now_s) for m in media]
    weights = [f.weight for f in transfers] if link.weighted else None  # streams of a multiplexed connection
    rates, limited = fill(transfer_caps, video_caps, free_bps, headroom_bps, weights)
    saturated = saturation(transfers, limited)
    if media and link.video_yields[saturated]:
        video_caps = [m.yield_cap_bps(now_s, cap) for cap, m in zip(video_caps, media)]
        rates, limited = fill(transfer_caps, video_caps, free_bps, headroom_bps, weights)
        saturated = saturation(transfers, limited)
    return rates, limited, saturated


def saturation(transfers, limited) -> int:
    """How transfers the link limits saturate it: a long one holds Cubic's standing queue, short ones burst.

    :data:`sim.des.queueing.STANDING`, ``BURSTS`` or ``NOT_SATURATED``.
    """
    state = queueing.NOT_SATURATED
    for flow, is_limited in zip(transfers, limited):
        if is_limited:
            if flow.long:
                return queueing.STANDING
            state = queueing.BURSTS
    return state


def fill(transfer_caps: list[float], video_caps: list[float], free_bps: float, headroom_bps: float,
         weights: list[float] | None = None) -> tuple[list[float], list[bool]]:
    """:func:`shares` for given caps (bit/s): media over the headroom first, then transfers over the rest.

    ``weights``: the transfers' weights (None: all 1), 1/k for each of k streams of a multiplexed connection
    (:func:`sim.des.sharing.weighted_level`).
    """
    media_rates, media_limited, media_bps = media_shares(video_caps, headroom_bps)
    level = water_level(transfer_caps, free_bps - media_bps, weights) if transfer_caps else math.inf
    if weights is not None:
        levels = [level * w for w in weights]
        limited = [cap > lv for cap, lv in zip(transfer_caps, levels)]
        return [min(cap, lv) for cap, lv in zip(transfer_caps, levels)] + media_rates, limited + media_limited
    limited = [cap > level for cap in transfer_caps]
    return [level if level < cap else cap for cap in transfer_caps] + media_rates, limited + media_limited


def media_shares(video_caps: list[float], headroom_bps: float) -> tuple[list[float], list[bool], float]:
    """Media's shares of a link's video headroom (bit/s), whether it limits each, and their total (bit/s)."""
    if not video_caps:
        return [], [], 0.0
    demand_bps = sum(video_caps)
    if demand_bps <= headroom_bps:  # every call gets what it asks for: the common case
        return video_caps, [False] * len(video_caps), demand_bps
    media_level = water_level(video_caps, headroom_bps)
    media_rates = [media_level if media_level < cap else cap for cap in video_caps]  # (min(cap, media_level))
    return media_rates, [cap > media_level for cap in video_caps], sum(media_rates)


def lone_finish_s(flow: Transfer, link: Link, from_s: float, media: list[Media], demand_bps: float | None = None,
                  until_s: float = math.inf) -> float:
    """When a transfer alone among transfers on its link from ``from_s`` sends its last byte (s).

    Until ``from_s`` it sends at its current rate; from there at its share beside the link's ``media`` (which
    stay) and what the reserved rate leaves, through each coming step. Reads the link's steps without moving it.
    ``demand_bps``: ``sum()`` of what the media ask for, as kept per link (None: summed here). ``until_s``: the
    steps are followed no further than the first at or after it; a transfer still sending there ends later, and is
    inf (its caller replays it only if it ends before then: on a slow line's many steps, most do not).

    Inf (not to be replayed) beside media held, climbing back or yielding to it, or beside media with a reservation
    step to take before the end: their climb or cuts would add events of their own (:class:`sim.des.flows.Media`).
    Media given what they ask for since they last joined or left (``link.media_steady``), or on a link whose last
    re-share left none held (``link.media_held``), are none of these.
    """
    if media and not link.media_steady and link.media_held and not all(m.free for m in media):
        return math.inf
    finish_s = _lone_finish_s(flow, link, from_s, media, demand_bps, until_s)
    return math.inf if media and link.next_step_s < finish_s - _EPS_S else finish_s


def _lone_finish_s(flow: Transfer, link: Link, from_s: float, media: list[Media], demand_bps: float | None = None,
                   until_s: float = math.inf) -> float:
    """:func:`lone_finish_s` through the link's steps, the media's state as it is (every one of them free).

    Free media ask for their demand whenever they are re-shared, so while the headroom the reservations leave holds
    all of them they take that sum (``demand_bps``), and the transfer's share is what is left up to its cap: the
    value :func:`shares` finds, without looking at each call again at every step.
    """
    remaining_bits = flow.remaining_bytes * 8 / tcp.GOODPUT_FACTOR
    if flow.since_s < from_s:
        remaining_bits -= flow.rate_bps * (from_s - flow.since_s)
    steps_s, steps_bps, capacity_bps, headroom_bps = link.steps_s, link.steps_bps, link.capacity_bps, link.headroom_bps
    k = bisect_right(steps_s, from_s + _EPS_S)
    reserved_bps = steps_bps[k - 1] if k else 0.0
    t_s, cap_bps, n_steps = from_s, flow.cap_bps, len(steps_s)
    while remaining_bits > 0:  # (max() and min() written out: at every step of every lone transfer)
        free_bps = capacity_bps - reserved_bps
        if not free_bps > 0.0:  # max(0.0, ...)
            free_bps = 0.0
        if media:
            rate_bps = _beside_free_calls_bps(flow, link, free_bps, headroom_bps - reserved_bps, demand_bps)
            if rate_bps is None:
                rates, _, saturated = shares(link, free_bps, max(0.0, headroom_bps - reserved_bps), [flow], media, t_s)
                if link.video_yields[saturated]:  # its calls would follow their senders' cuts: events of their own
                    return math.inf
                rate_bps = rates[0]
        else:
            rate_bps = free_bps if free_bps < cap_bps else cap_bps  # min(cap_bps, free_bps)
        next_s = steps_s[k] if k < n_steps else math.inf
        if rate_bps > 0 and t_s + remaining_bits / rate_bps <= next_s:
            return t_s + remaining_bits / rate_bps
        if next_s >= until_s:  # still sending at or after until_s (with none given: no step left)
            return math.inf
        remaining_bits -= rate_bps * (next_s - t_s)
        t_s, reserved_bps = next_s, steps_bps[k]
        k += 1
    return t_s


def _beside_free_calls_bps(flow: Transfer, link: Link, free_bps: float, headroom_bps: float, demand_bps: float | None,
                           ) -> float | None:
    """:func:`shares`'s rate for a lone transfer beside free calls asking for ``demand_bps`` in all, if it is quick.

    None (:func:`shares` must tell) unless the calls fit the ``headroom_bps`` left, the transfer leaves them be (its
    saturation makes no call yield) and the link has no weighted streams. Then every call takes what it asks for
    (:func:`media_shares`) and the transfer its cap or all that is left (:func:`water_level` of one cap), as
    :func:`fill` finds them.
    """
    if demand_bps is None or link.weighted or demand_bps > max(0.0, headroom_bps):
        return None
    left_bps = free_bps - demand_bps
    cap_bps = flow.cap_bps
    if cap_bps <= left_bps:
        return None if link.video_yields[queueing.NOT_SATURATED] else cap_bps
    if link.video_yields[queueing.STANDING if flow.long else queueing.BURSTS]:
        return None
    return left_bps


def set_transfer(flow: Transfer, rate_bps: float, limiter, now_s: float) -> None:
    """Give a transfer its new share; settle it first if its rate or limit changes."""
    if rate_bps != flow.rate_bps or limiter is not flow.limiter:
        flow.settle(now_s)
        flow.rate_bps, flow.limiter = rate_bps, limiter


def set_media(m: Media, rate_bps: float, limiter, cause, saturated: set[int], now_s: float) -> None:
    """Give a media flow its new rate and what limits it; settle it first if its rate or cause changes.

    The cause (what the call's quality is blamed on) stays a saturated link it backed off for, while the
    call is below target and that link stays saturated; otherwise it is the flow's limiter.
    """
    yielding = cause is not None and id(cause) in saturated
    yielded = yielding and rate_bps < m.target_bps * (1 - 1e-9)
    if not yielded:
        cause = limiter
    m.limiter = limiter
    m.follow(rate_bps, now_s, yielding)
    if rate_bps != m.rate_bps or cause is not m.cause or yielded != m.yielded:
        m.settle(now_s)
        m.rate_bps, m.cause, m.yielded = rate_bps, cause, yielded
