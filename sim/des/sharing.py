"""Max-min fair sharing of link capacity among flows, by progressive filling.

All flows not yet frozen grow at the same rate until a link fills (its flows freeze there: that link is
their bottleneck) or a flow reaches its own cap (it freezes with no bottleneck link). This is the
fluid-flow sharing model of SimGrid's flow level, without its calibration factors.
"""

from __future__ import annotations

import math

NO_LINK = -1
_EPS = 1e-9


def max_min(caps_bps: list[float], paths: list[tuple[int, ...]], capacity_bps: dict[int, float],
            weights: list[float] | None = None) -> tuple[list[float], list[int]]:
    """Share link capacities among flows max-min fairly.

    Args:
        caps_bps: Each flow's own upper limit (bit/s); ``float('inf')`` for none.
        paths: The links (ids) each flow crosses.
        capacity_bps: Capacity of each link id (bit/s).
        weights: Each flow's weight, or None for all 1: a flow grows at its weight's pace (the streams of a
            multiplexed connection, :func:`weighted_level`).

    Returns:
        (rates_bps, limiter): each flow's rate, and the link that limited it (``NO_LINK`` when its own
        cap did).
    """
    if weights is not None:
        return _weighted_max_min(caps_bps, paths, capacity_bps, weights)
    n = len(caps_bps)
    rates = [0.0] * n
    limiter = [NO_LINK] * n
    remaining = dict(capacity_bps)
    used = {link for path in paths for link in path}
    # only links some flow crosses, in the order given (which claims a flow when two links fill at once)
    users: dict[int, set[int]] = {link: set() for link in capacity_bps if link in used}
    for flow, path in enumerate(paths):
        for link in path:
            users[link].add(flow)
    active = set(range(n))
    while active:
        level = min((remaining[link] / len(fl) for link, fl in users.items() if fl), default=float("inf"))
        step = min(level, min(caps_bps[f] - rates[f] for f in active))
        for f in active:
            rates[f] += step
        for link, fl in users.items():
            remaining[link] -= step * len(fl)
        frozen = _frozen(active, caps_bps, rates, users, remaining, capacity_bps, limiter)
        active -= frozen
        for link in list(users):
            users[link] -= frozen
            if not users[link]:  # every flow on it is frozen: it no longer takes part
                del users[link]
    return rates, limiter


def _weighted_max_min(caps_bps: list[float], paths: list[tuple[int, ...]], capacity_bps: dict[int, float],
                      weights: list[float]) -> tuple[list[float], list[int]]:
    """:func:`max_min` where flow ``f`` grows ``weights[f]`` for each unit the level rises (progressive filling)."""
    n = len(caps_bps)
    rates, limiter = [0.0] * n, [NO_LINK] * n
    remaining = dict(capacity_bps)
    users: dict[int, set[int]] = {}
    for flow, path in enumerate(paths):
        for link in path:
            users.setdefault(link, set()).add(flow)
    users = {link: users[link] for link in capacity_bps if link in users}  # the order given, as max_min's
    active = set(range(n))
    while active:
        level = min((remaining[link] / math.fsum(weights[f] for f in fl) for link, fl in users.items() if fl),
                    default=math.inf)
        step = min(level, min((caps_bps[f] - rates[f]) / weights[f] for f in active))
        for f in active:
            rates[f] += step * weights[f]
        for link, fl in users.items():
            remaining[link] -= step * math.fsum(weights[f] for f in fl)
        frozen = _frozen(active, caps_bps, rates, users, remaining, capacity_bps, limiter)
        active -= frozen
        users = {link: fl - frozen for link, fl in users.items() if fl - frozen}
    return rates, limiter


def water_level(caps_bps: list[float], capacity_bps: float, weights: list[float] | None = None) -> float:
    """The level max-min filling reaches when ``caps_bps`` share ``capacity_bps`` (inf if all caps fit).

    With ``weights`` (:func:`weighted_level`), flow ``i`` gets ``min(caps_bps[i], weights[i] * level)``.
    """
    if weights is not None:
        return weighted_level(caps_bps, weights, capacity_bps)
    remaining, n = capacity_bps, len(caps_bps)
    for cap in sorted(caps_bps):
        if cap * n <= remaining:
            remaining -= cap
            n -= 1
        else:
            return remaining / n
    return math.inf


def weighted_level(caps_bps: list[float], weights: list[float], capacity_bps: float) -> float:
    """The level of weighted max-min filling: flow ``i`` gets ``min(caps_bps[i], weights[i] * level)`` (bit/s).

    Every flow's rate grows in proportion to its weight until a flow reaches its cap (at level ``cap / weight``) or
    the capacity is used up. The streams of one multiplexed connection (:mod:`sim.des.connections`) with ``k``
    active streams each have weight ``1/k`` and cap ``C/k`` (``C`` the connection's window cap), so each reaches its
    cap at level ``C``, all at once, and together they take ``k * min(C/k, level/k) = min(C, level)``: what one flow
    of cap ``C`` takes at the same level. A plain flow has weight 1, so the connection as a whole gets exactly the
    max-min share one flow would, split equally among its streams (a 3-stream connection beside a plain transfer on
    10 Mbit/s: level 10 / (3 x 1/3 + 1) = 5 Mbit/s, each stream 5/3). With every weight 1 it is
    :func:`water_level`.

    Returns:
        The level (bit/s; inf if every cap fits).
    """
    remaining, weight_sum = capacity_bps, math.fsum(weights)
    for cap, weight in sorted(zip(caps_bps, weights), key=lambda pair: pair[0] / pair[1]):
        if cap / weight * weight_sum <= remaining:
            remaining -= cap
            weight_sum -= weight
        else:
            return remaining / weight_sum
    return math.inf


def share_one_link(capacity_bps: float, headroom_bps: float, caps_bps: list[float], is_video: list[bool],
                   ) -> tuple[list[float], list[bool]]:
    """Max-min shares on one link where video flows also share a headroom below its capacity.

    The same answer as :func:`max_min` on the link plus a virtual headroom link crossed by video only, in
    closed form: every flow rises to a common level until the headroom or the link fills first.

    Returns:
        (rates_bps, limited): each flow's rate, and whether the link (not its own cap) limited it.
    """
    if len(caps_bps) == 1:  # the common case: one flow alone on its link
        bound_bps = headroom_bps if is_video[0] else capacity_bps
        return [min(caps_bps[0], bound_bps)], [caps_bps[0] > bound_bps]
    video_caps = [c for c, v in zip(caps_bps, is_video) if v]
    headroom_level = water_level(video_caps, headroom_bps) if video_caps else math.inf
    link_level = water_level(caps_bps, capacity_bps)
    if link_level <= headroom_level:
        return [min(c, link_level) for c in caps_bps], [c > link_level for c in caps_bps]
    video_bps = sum(min(c, headroom_level) for c in video_caps)
    elastic_level = water_level([c for c, v in zip(caps_bps, is_video) if not v], capacity_bps - video_bps)
    levels = [headroom_level if v else elastic_level for v in is_video]
    return [min(c, lv) for c, lv in zip(caps_bps, levels)], [c > lv for c, lv in zip(caps_bps, levels)]


def _frozen(active: set[int], caps_bps: list[float], rates: list[float], users: dict[int, set[int]],
            remaining: dict[int, float], capacity_bps: dict[int, float], limiter: list[int]) -> set[int]:
    """The flows a filling step stops: those at their cap, and those on a link it filled (their ``limiter`` set).

    Raises:
        RuntimeError: If it stops none (cannot happen with a finite step; guards against an endless loop).
    """
    frozen = {f for f in active if caps_bps[f] - rates[f] <= _EPS * max(1.0, caps_bps[f], rates[f])
              and caps_bps[f] < math.inf}
    for link, fl in users.items():
        if fl and remaining[link] <= _EPS * max(1.0, capacity_bps[link]):
            for f in fl - frozen:
                limiter[f] = link
            frozen |= fl
    if not frozen:
        raise RuntimeError("max-min sharing made no progress")
    return frozen
