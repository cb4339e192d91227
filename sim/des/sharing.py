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
            ) -> tuple[list[float], list[int]]:
    """Share link capacities among flows max-min fairly.

    Args:
        caps_bps: Each flow's own upper limit (bit/s); ``float('inf')`` for none.
        paths: The links (ids) each flow crosses.
        capacity_bps: Capacity of each link id (bit/s).

    Returns:
        (rates_bps, limiter): each flow's rate, and the link that limited it (``NO_LINK`` when its own
        cap did).
    """
    n = len(caps_bps)
    rates = [0.0] * n
    limiter = [NO_LINK] * n
    remaining = dict(capacity_bps)
    users: dict[int, set[int]] = {link: set() for link in capacity_bps}
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
        frozen = {f for f in active if caps_bps[f] - rates[f] <= _EPS * max(1.0, caps_bps[f], rates[f])
                  and caps_bps[f] < math.inf}
        for link, fl in users.items():
            if fl and remaining[link] <= _EPS * max(1.0, capacity_bps[link]):
                for f in fl - frozen:
                    limiter[f] = link
                frozen |= fl
        if not frozen:  # cannot happen with finite step; guards against an endless loop
            raise RuntimeError("max-min sharing made no progress")
        active -= frozen
        for fl in users.values():
            fl -= frozen
    return rates, limiter
