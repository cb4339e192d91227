"""A group of links that flows connect, replayed by one SimPy process.

Sites interact only through the links they share, so each connected group of links (a site's access
link, or several sites behind one shared link) evolves on its own. Its process waits for the next change
(an arrival, a start-up ending, a completion, a call ending); between changes every rate is constant, so
the fluid model advances in one step and re-shares capacity only for this group.
"""

from __future__ import annotations

import math

from sim.des import queueing, tcp
from sim.des.flows import Media, Transfer
from sim.des.sharing import NO_LINK, max_min, share_one_link

_EPS_S = 1e-9


class Group:
    """The links of one group, the sessions that use them, and the flows now active.

    Args:
        links: The group's links.
        sessions: Session rows (dicts from the trace, with ``up``/``down`` paths of :class:`Link`,
            ``rtt_s`` of the site and ``far`` end rates) sorted by start time.
        ctx: Shared run context (horizon, far end, outputs).
    """

    def __init__(self, links: list, sessions: list, ctx) -> None:
        self.links, self.sessions, self.ctx = links, sessions, ctx
        self.starting: list[Transfer] = []
        self.transfers: list[Transfer] = []
        self.media: list[Media] = []
        self.calls: dict[int, list[Media]] = {}
        self.now_s = sessions[0]["start_s"] if sessions else 0.0
        self.events = 0
        self.dirty: set = set()  # links whose fluid flows changed, so their shares must be recomputed
        self.by_id = {id(link): link for link in links}
        self.single_link_paths = all(len(path) == 1 for s in sessions for path in (s["up"], s["down"]))
        self.capacity = {id(link): link.capacity_bps for link in links}
        self.capacity.update({-id(link): link.capacity_bps * queueing.VIDEO_MAX_UTILISATION for link in links})

    def process(self, env):
        """The SimPy process: wait for the next change, apply it, re-share."""
        sessions, n, i = self.sessions, len(self.sessions), 0
        horizon_s = self.ctx.horizon_s
        while i < n or self.starting or self.transfers or self.media:
            next_s = min(sessions[i]["start_s"] if i < n else math.inf, self._next_change_s())
            if next_s > horizon_s:
                yield env.timeout(max(0.0, horizon_s - env.now))
                self._stop_all(horizon_s)
                return
            yield env.timeout(max(0.0, next_s - env.now))
            now_s = self.now_s = env.now
            self.events += 1
            while i < n and sessions[i]["start_s"] <= now_s + _EPS_S:
                self._arrive(sessions[i], now_s)
                i += 1
            self._finish_due(now_s)
            if self.dirty:
                self._reshare(now_s)
        self._settle_links(self.now_s)

    def _next_change_s(self) -> float:
        best_s = math.inf
        for flow in self.starting:
            if flow.active_at_s < best_s:
                best_s = flow.active_at_s
        for flow in self.transfers:
            finish_s = flow.finish_s()
            if finish_s < best_s:
                best_s = finish_s
        for media in self.media:
            if media.end_s < best_s:
                best_s = media.end_s
        return best_s

    def _settle_links(self, now_s: float) -> None:
        for link in self.links:
            link.settle(now_s)

    def _arrive(self, session: dict, now_s: float) -> None:
        if session["app"] == "video":
            self._start_call(session, now_s)
        else:
            self._start_transfer(session, now_s)

    def _start_call(self, s: dict, now_s: float) -> None:
        far = self.ctx.home
        base_s = (s["rtt_s"] + self.ctx.cloud_rtt_s + far.rtt_s) / 2
        end_s = now_s + s["duration_s"]
        halves = []
        for path, far_cap_bps in ((s["up"], far.down_bps), (s["down"], far.up_bps)):
            jitter_s = math.sqrt(sum(link.jitter_s**2 for link in path))
            media = Media(s["session_id"], path, far_cap_bps, s["target_rate_bps"], s["min_rate_bps"],
                          base_s, jitter_s, end_s)
            media.since_s = now_s
            halves.append(media)
        self.media.extend(halves)
        self.calls[s["session_id"]] = halves
        self.dirty.update(s["up"], s["down"])

    def _start_transfer(self, s: dict, now_s: float) -> None:
        path, back = (s["up"], s["down"]) if s["direction"] == "up" else (s["down"], s["up"])
        queue_s = sum(link.queue_delay_s for link in path) + sum(link.queue_delay_s for link in back)
        rtt_s = s["rtt_s"] + self.ctx.cloud_rtt_s + queue_s
        delivered = 1.0
        for link in path:
            delivered *= 1.0 - link.loss
        cap_bps = tcp.window_cap_bps(rtt_s, 1.0 - delivered)
        size = max(1.0, s["size_bytes"])
        chunks = math.ceil(size / s["chunk_bytes"]) if s["chunk_bytes"] > 0 else 1
        start = tcp.slow_start(size, min(cap_bps, self._available_bps(path)), rtt_s, extra_rtts=chunks - 1)
        flow = Transfer(s["session_id"], path, size, size - start.sent_bytes, now_s + start.duration_s,
                        cap_bps, rtt_s, queue_s)
        if flow.remaining_bytes <= 0:  # done within slow start, which takes no fluid share: its end is known
            self.ctx.finish_transfer(flow, flow.active_at_s)
        else:
            self.starting.append(flow)

    def _available_bps(self, path: tuple) -> float:
        """Estimate of the rate a new transfer will find: a fair share of what video leaves."""
        best = math.inf
        for link in path:
            video_bps = sum(min(m.rate_bps, m.min_bps) for m in self.media if link in m.path)
            elastic = sum(1 for f in self.transfers if link in f.path)
            best = min(best, (link.capacity_bps - video_bps) / (elastic + 1))
        return max(best, 1.0)

    def _finish_due(self, now_s: float) -> None:
        limit_s = now_s + _EPS_S
        if self.starting:
            due = [f for f in self.starting if f.active_at_s <= limit_s]
            if due:
                self.starting = [f for f in self.starting if f.active_at_s > limit_s]
                self.transfers.extend(due)
                for flow in due:
                    self.dirty.update(flow.path)
        if self.transfers:
            done, going = [], []
            for flow in self.transfers:
                (done if flow.finish_s() <= limit_s else going).append(flow)
            if done:
                self.transfers = going
                for flow in done:
                    self.dirty.update(flow.path)
                    flow.settle(now_s)
                    self.ctx.finish_transfer(flow, now_s)
        ended = [m for m in self.media if m.end_s <= limit_s] if self.media else None
        if ended:
            self.media = [m for m in self.media if m.end_s > limit_s]
            for media in ended:
                self.dirty.update(media.path)
                media.settle(now_s)
            for session in sorted({m.session for m in ended}):
                self.ctx.finish_call(session, self.calls.pop(session), now_s, completed=True)

    def _stop_all(self, now_s: float) -> None:
        self._settle_links(now_s)
        for flow in self.transfers + self.media:
            flow.settle(now_s)
        for flow in self.starting + self.transfers:
            self.ctx.abandon_transfer(flow)
        for session in sorted(self.calls):
            self.ctx.finish_call(session, self.calls[session], now_s, completed=False)
        self.starting, self.transfers, self.media, self.calls = [], [], [], {}

    def _reshare(self, now_s: float) -> None:
        """Recompute shares, queues and media quality on the links whose flows changed."""
        transfers, media, links = self._dirty_part()
        for link in links:
            link.settle(now_s)
        flows = transfers + media
        for flow in flows:
            flow.settle(now_s)
        n_transfers = len(transfers)
        caps = [f.cap_bps for f in transfers] + [min(m.target_bps, m.far_cap_bps) for m in media]
        rates, limiter = self._share(flows, caps, n_transfers)
        saturated = {limiter[k] for k in range(n_transfers) if limiter[k] != NO_LINK}
        backed_off = [k for k in range(n_transfers, len(flows))
                      if any(id(link) in saturated for link in flows[k].path)]
        if backed_off:  # video's delay-based control yields to TCP filling the buffer: drop to minimum
            for k in backed_off:
                caps[k] = min(caps[k], flows[k].min_bps)
            rates, limiter = self._share(flows, caps, n_transfers)
        by_id = self.by_id
        for k, flow in enumerate(flows):
            flow.rate_bps = rates[k]
            flow.limiter = by_id.get(limiter[k])
        for k in backed_off:
            flows[k].cause = next(link for link in flows[k].path if id(link) in saturated)
        for m in media:
            if m.cause is None or m.rate_bps >= m.target_bps * (1 - 1e-9) or id(m.cause) not in saturated:
                m.cause = m.limiter
        self._update_links(links, flows, saturated)
        for m in media:
            m.observe()

    def _dirty_part(self) -> tuple[list, list, list]:
        """The transfers, media and links to recompute: when every path is one link, only the changed links'.

        Otherwise (paths through a shared link) the whole of each direction that changed: a path never mixes
        directions, so shares, queues and back-off upstream never depend on downstream flows, nor the reverse.
        """
        dirty, self.dirty = self.dirty, set()
        if not self.single_link_paths:
            directions = {link.direction for link in dirty}
            if len(directions) > 1:
                return self.transfers, self.media, self.links
            return ([f for f in self.transfers if f.path[0].direction in directions],
                    [m for m in self.media if m.path[0].direction in directions],
                    [link for link in self.links if link.direction in directions])
        return ([f for f in self.transfers if f.path[0] in dirty], [m for m in self.media if m.path[0] in dirty],
                [link for link in self.links if link in dirty])

    def _share(self, flows: list, caps: list[float], n_transfers: int) -> tuple[list[float], list[int]]:
        """Max-min shares of transfers (the first ``n_transfers``) and media.

        Media also cross each link's video headroom, a virtual link keyed by the negated id.
        """
        if self.single_link_paths:
            return self._share_per_link(flows, caps, n_transfers)
        rates, limiter = max_min(caps, [f.keys for f in flows], self.capacity)
        return rates, [abs(k) if k != NO_LINK else k for k in limiter]

    def _share_per_link(self, flows: list, caps: list[float], n_transfers: int) -> tuple[list[float], list[int]]:
        """The same shares when every flow crosses one link: each link solved on its own, in closed form."""
        rates, limiter = [0.0] * len(flows), [NO_LINK] * len(flows)
        on_link: dict[int, list[int]] = {}
        for k, flow in enumerate(flows):
            on_link.setdefault(flow.keys[0], []).append(k)
        for key, members in on_link.items():
            link_rates, limited = share_one_link(self.capacity[key], self.capacity[-key], [caps[k] for k in members],
                                                 [k >= n_transfers for k in members])
            for k, rate, lim in zip(members, link_rates, limited):
                rates[k] = rate
                limiter[k] = key if lim else NO_LINK
        return rates, limiter

    def _update_links(self, links: list, flows: list, saturated: set[int]) -> None:
        for link in links:
            link.load_bps = 0.0
        for flow in flows:
            for link in flow.path:
                link.load_bps += flow.rate_bps
        for link in links:
            link.saturated = id(link) in saturated
            link.queue_delay_s, link.queue_jitter_s = queueing.link_delay_s(
                link.capacity_bps, link.buffer_bytes, link.load_bps, link.saturated)
            link.congestion_loss = self._congestion_loss(link) if link.saturated else 0.0

    def _congestion_loss(self, link) -> float:
        """Drop rate at a saturated drop-tail link: what TCP's sawtooth there implies (Mathis, inverted)."""
        elastic = [f for f in self.transfers if f.limiter is link]
        if not elastic:
            return 0.0
        rate_bps = sum(f.rate_bps for f in elastic) / len(elastic)
        rtt_s = sum(f.rtt_s - f.queue_delay_s for f in elastic) / len(elastic) + link.queue_delay_s
        return tcp.mathis_loss(rate_bps, rtt_s)
