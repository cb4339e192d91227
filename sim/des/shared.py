"""Sharing when paths cross a shared link (a mixin of :class:`sim.des.group.Group`): max-min by progressive filling.

Calls share each link's video headroom (a virtual link keyed by the negated link id) among themselves; transfers
share what calls and reservations leave. Only the direction that changed is recomputed.
"""

from __future__ import annotations

from mypy_extensions import trait

from sim.des import queueing
from sim.des.flows import Media, Transfer
from sim.des.links import Link
from sim.des.linkshare import congestion_loss, set_media, set_transfer
from sim.des.sharing import NO_LINK, max_min
from sim.des.state import GroupState


@trait
class SharedLinks(GroupState):
    """Re-sharing a group whose sites share a link; uses the group's flows, links and capacities."""

    def _reshare_shared(self, now_s: float) -> None:
        """Recompute shares, queues and call rates on the directions whose flows changed."""
        transfers, media, links = self._dirty_part()
        flows = transfers + media
        n_transfers = len(transfers)
        video_caps = [m.cap_bps(now_s) for m in media]  # what each asks for, or its climb's step
        rates, limiter = self._share(transfers, media, video_caps)
        saturated: dict[int, int] = {}  # link id: how transfers saturate it (sim.des.queueing.STANDING or BURSTS)
        for k in range(n_transfers):
            if limiter[k] != NO_LINK:
                state = queueing.STANDING if transfers[k].long else queueing.BURSTS
                saturated[limiter[k]] = max(saturated.get(limiter[k], 0), state)
        yielding = {key for key, state in saturated.items() if self.by_id[key].video_yields[state]}
        backed_off = [k for k in range(n_transfers, len(flows))
                      if any(id(link) in yielding for link in flows[k].path)]
        if backed_off:  # video's delay-based control yields to TCP filling the buffer: its cuts, to its minimum
            for k in backed_off:
                video_caps[k - n_transfers] = flows[k].yield_cap_bps(now_s, video_caps[k - n_transfers])
            rates, limiter = self._share(transfers, media, video_caps)
        by_id = self.by_id
        for k in range(n_transfers):
            set_transfer(transfers[k], rates[k], by_id.get(limiter[k]), now_s)
        backed = set(backed_off)
        for k in range(n_transfers, len(flows)):
            m = flows[k]
            cause = (next(link for link in m.path if id(link) in yielding) if k in backed else m.cause)
            set_media(m, rates[k], by_id.get(limiter[k]), cause, yielding, now_s)
        self._update_links(links, flows, saturated, now_s)

    def _dirty_part(self) -> tuple[list, list, list]:
        """The transfers, media and links to recompute when paths cross a shared link.

        That is the whole of each direction that changed: a path never mixes directions, so shares, queues and
        back-off upstream never depend on downstream flows, nor the reverse.
        """
        dirty, self.dirty = self.dirty, set()
        directions = {link.direction for link in dirty}
        if len(directions) > 1:
            return self.transfers, self.media, self.links
        return ([f for f in self.transfers if f.path[0].direction in directions],
                [m for m in self.media if m.path[0].direction in directions],
                [link for link in self.links if link.direction in directions])

    def _share(self, transfers: list[Transfer], media: list[Media],
               video_caps: list[float]) -> tuple[list[float], list[int]]:
        """Shares of transfers, then media, and the link ids limiting them (as :func:`sim.des.linkshare.shares`).

        Media share each link's video headroom (a virtual link keyed by the negated id) max-min fairly among
        themselves; transfers share max-min fairly what media and reservations leave of each link.
        """
        if media:
            media_keys = [tuple(-id(link) for link in m.path) for m in media]
            media_rates, media_limiter = max_min(video_caps, media_keys, self.capacity)
            capacity = dict(self.capacity)
            for m, rate_bps in zip(media, media_rates):
                for link in m.path:
                    capacity[id(link)] -= rate_bps
        else:
            media_rates, media_limiter, capacity = [], [], self.capacity
        keys = [tuple(id(link) for link in f.path) for f in transfers]
        each = [f.weight for f in transfers]  # 1/k for each of k streams of a multiplexed connection
        weights = each if any(w != 1.0 for w in each) else None
        rates, limiter = max_min([f.cap_bps for f in transfers], keys, capacity, weights) if transfers else ([], [])
        return rates + media_rates, limiter + [abs(k) if k != NO_LINK else k for k in media_limiter]

    def _update_links(self, links: list[Link], flows: list, saturated: dict[int, int], now_s: float) -> None:
        """Give each link its new load and queues; only links whose load or saturation changed are settled."""
        loads_bps = dict.fromkeys(map(id, links), 0.0)
        media_bps = dict.fromkeys(map(id, links), 0.0)
        for flow in flows:
            is_media = isinstance(flow, Media)
            for link in flow.path:
                loads_bps[id(link)] += flow.rate_bps
                if is_media:
                    media_bps[id(link)] += flow.rate_bps
        elastic: dict[int, list[Transfer]] = {}
        for flow in self.transfers:
            if flow.limiter is not None and id(flow.limiter) in saturated:
                elastic.setdefault(id(flow.limiter), []).append(flow)
        for link in links:
            load_bps, is_saturated, calls_bps = loads_bps[id(link)], saturated.get(id(link), 0), media_bps[id(link)]
            if load_bps != link.load_bps or is_saturated != link.saturated or calls_bps != link.media_load_bps:
                link.settle(now_s)
                link.carry(load_bps, is_saturated, calls_bps)
            link.congestion_loss = congestion_loss(link, elastic.get(id(link), []))
            link.note(now_s)
