"""A group of links that flows connect, replayed by one SimPy process.

Sites interact only through the links they share, so each connected group of links (a site's access
link, or several sites behind one shared link) evolves on its own. Its process waits for the next change
(an arrival, a start-up ending, a completion, a call ending); between changes every rate is constant, so
the fluid model advances in one step and re-shares capacity only for this group.

Events that would change nothing observed are skipped, exactly: a transfer arriving before the next change
starts up without an event (start-up takes no share), and one that will have its link to itself until it
ends, with no session arriving before then, is replayed whole at once (:meth:`Group._run_alone`).
"""

from __future__ import annotations

import math

from sim.des import queueing, tcp
from sim.des.flows import Media, PathState, Transfer
from sim.des.sharing import NO_LINK, max_min, share_one_link
from sim.topology import FarEnd

_EPS_S = 1e-9
SKIP_UNOBSERVED_EVENTS = True  # the exact shortcuts above; switched off only by the test that they are exact


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
        self.paths: dict[tuple, PathState] = {}  # the queues media see, one per path in use
        self.next_arrival_s = math.inf  # start of the next session not yet arrived (s), set before each re-share
        self.by_id = {id(link): link for link in links}
        self.single_link_paths = all(link.kind == "access" for link in links)  # no site shares a link
        self.capacity = {id(link): link.capacity_bps for link in links}
        self.capacity.update({-id(link): link.capacity_bps * queueing.VIDEO_MAX_UTILISATION for link in links})

    def process(self, env):
        """The SimPy process: wait for the next change, apply it, re-share."""
        sessions, n, i = self.sessions, len(self.sessions), 0
        starts_s = [s["start_s"] for s in sessions]
        is_video = [s["traffic"] == "stream" for s in sessions]
        horizon_s = self.ctx.horizon_s
        while i < n or self.starting or self.transfers or self.media:
            change_s = self._next_change_s()
            # A transfer arriving before the next change finds the state as it is now and changes no share
            # while it starts up: it is started here, without an event of its own.
            while (SKIP_UNOBSERVED_EVENTS and i < n and not is_video[i] and starts_s[i] < change_s - _EPS_S
                   and starts_s[i] <= horizon_s):
                flow = self._start_transfer(sessions[i], starts_s[i])
                i += 1
                if flow is None or self.single_link_paths and self._run_alone(flow, starts_s[i] if i < n else math.inf):
                    continue
                if flow.active_at_s < change_s:
                    change_s = flow.active_at_s
            next_s = starts_s[i] if i < n and starts_s[i] < change_s else change_s
            if next_s > horizon_s:
                yield env.timeout(max(0.0, horizon_s - env.now))
                self._stop_all(horizon_s)
                return
            yield env.timeout(max(0.0, next_s - env.now))
            now_s = self.now_s = env.now
            self.events += 1
            while i < n and starts_s[i] <= now_s + _EPS_S:
                self._arrive(sessions[i], now_s)
                i += 1
            if change_s <= now_s + _EPS_S:
                self._finish_due(now_s)
            if self.dirty:
                self.next_arrival_s = starts_s[i] if i < n else math.inf
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
        if session["traffic"] == "stream":
            self._start_call(session, now_s)
        else:
            self._start_transfer(session, now_s)

    def _start_call(self, s: dict, now_s: float) -> None:
        far = self.ctx.topology.far_end(s["far_end"])
        if s["far_end"] == "home" and s["far_down_bps"] == s["far_down_bps"]:  # the call's own line, when drawn
            far = FarEnd(s["far_down_bps"], s["far_up_bps"], s["far_rtt_s"])
        base_s = (s["rtt_s"] + self.ctx.cloud_rtt_s + far.rtt_s) / 2
        end_s = now_s + s["duration_s"]
        halves = []
        up_share = s["up_share"]  # the site's upstream runs at this share of the stream's rates
        for path, far_cap_bps, scale in ((s["up"], far.down_bps, up_share), (s["down"], far.up_bps, 1.0)):
            media = Media(s["session_id"], path, far_cap_bps, s["target_rate_bps"] * scale,
                          s["min_rate_bps"] * scale, base_s, end_s)
            media.join(self._path_state(path, now_s), now_s)
            halves.append(media)
        self.media.extend(halves)
        self.calls[s["session_id"]] = halves
        self.dirty.update(s["up"], s["down"])

    def _path_state(self, path: tuple, now_s: float) -> PathState:
        state = self.paths.get(path)
        if state is None:
            state = self.paths[path] = PathState(path, now_s)
        return state

    def _start_transfer(self, s: dict, now_s: float) -> Transfer | None:
        """Start a transfer's start-up; return it, or None when it completes within its start-up."""
        path, back = (s["up"], s["down"]) if s["direction"] == "up" else (s["down"], s["up"])
        queue_s, delivered = 0.0, 1.0
        for link in path:
            queue_s += link.queue_delay_s
            delivered *= 1.0 - link.loss
        for link in back:
            queue_s += link.queue_delay_s
        rtt_s = s["rtt_s"] + self.ctx.cloud_rtt_s + queue_s
        cap_bps = tcp.window_cap_bps(rtt_s, 1.0 - delivered)
        size = max(1.0, s["size_bytes"])
        chunks = math.ceil(size / s["chunk_bytes"]) if s["chunk_bytes"] > 0 else 1
        start = tcp.slow_start(size, min(cap_bps, self._available_bps(path)), rtt_s, extra_rtts=chunks - 1)
        flow = Transfer(s["session_id"], path, size, size - start.sent_bytes, now_s + start.duration_s,
                        cap_bps, rtt_s, queue_s)
        if flow.remaining_bytes <= 0:  # done within slow start, which takes no fluid share: its end is known
            self.ctx.finish_transfer(flow, flow.active_at_s)
            return None
        self.starting.append(flow)
        return flow

    def _available_bps(self, path: tuple) -> float:
        """Estimate of the rate a new transfer will find: a fair share of what video leaves."""
        if self.single_link_paths:  # kept up to date by each re-share of the link
            return max(path[0].new_share_bps, 1.0)
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
        if self.single_link_paths:
            dirty, self.dirty = self.dirty, set()
            for link in self.links:
                if link in dirty:
                    self._reshare_link(link, now_s)
            return
        transfers, media, links = self._dirty_part()
        states = {m.state for m in media}
        for state in states:
            state.settle(now_s)
        flows = transfers + media
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
        for k in range(n_transfers):
            _set_transfer(transfers[k], rates[k], by_id.get(limiter[k]), now_s)
        backed = set(backed_off)
        for k in range(n_transfers, len(flows)):
            m = flows[k]
            cause = (next(link for link in m.path if id(link) in saturated) if k in backed else m.cause)
            _set_media(m, rates[k], by_id.get(limiter[k]), cause, saturated, now_s)
        self._update_links(links, flows, saturated, now_s)
        for state in states:
            state.observe(now_s)

    def _reshare_link(self, link, now_s: float) -> None:
        """:meth:`_reshare` when every path is one link: each changed link on its own, in closed form."""
        link.settle(now_s)
        transfers = [f for f in self.transfers if f.path[0] is link]
        media = [m for m in self.media if m.path[0] is link]
        if not media and len(transfers) < 2:
            self._reshare_elastic_alone(link, transfers, now_s)
            return
        state = media[0].state if media else None
        if state is not None:
            state.settle(now_s)
        n_transfers = len(transfers)
        is_video = [False] * n_transfers + [True] * len(media)
        video_caps = [min(m.target_bps, m.far_cap_bps) for m in media]
        capacity_bps, headroom_bps = link.capacity_bps, self.capacity[-id(link)]
        rates, limited = share_one_link(capacity_bps, headroom_bps, [f.cap_bps for f in transfers] + video_caps,
                                        is_video)
        saturated = any(limited[:n_transfers])
        if saturated and media:  # video's delay-based control yields to TCP filling the buffer: drop to minimum
            video_caps = [min(c, m.min_bps) for c, m in zip(video_caps, media)]
            rates, limited = share_one_link(capacity_bps, headroom_bps,
                                            [f.cap_bps for f in transfers] + video_caps, is_video)
        for k, flow in enumerate(transfers):
            _set_transfer(flow, rates[k], link if limited[k] else None, now_s)
        video_floor_bps = 0.0
        for k, m in enumerate(media, start=n_transfers):  # as _set_media, with this link the only one
            rate_bps, limiter = rates[k], link if limited[k] else None
            cause = link if saturated and rate_bps < m.target_bps * (1 - 1e-9) else limiter
            m.limiter = limiter
            if rate_bps != m.rate_bps or cause is not m.cause:
                m.settle(now_s)
                m.rate_bps, m.cause = rate_bps, cause
            video_floor_bps += rate_bps if rate_bps < m.min_bps else m.min_bps
        link.new_share_bps = (capacity_bps - video_floor_bps) / (n_transfers + 1)
        link.carry(sum(rates), saturated)
        link.congestion_loss = self._congestion_loss(link)
        if state is not None:
            state.observe(now_s)

    def _reshare_elastic_alone(self, link, transfers: list, now_s: float) -> None:
        """:meth:`_reshare_link` for a link with at most one transfer and no media (the common case)."""
        link.new_share_bps = link.capacity_bps / (len(transfers) + 1)
        if not transfers:
            link.carry(0.0, False)
            link.congestion_loss = 0.0
            return
        flow = transfers[0]
        _carry_alone(flow, link, now_s)
        finish_s = flow.finish_s()
        if (SKIP_UNOBSERVED_EVENTS and finish_s + _EPS_S < self.next_arrival_s and finish_s <= self.ctx.horizon_s
                and not any(f.path[0] is link for f in self.starting)):
            self._finish_alone(flow, link, finish_s)

    def _run_alone(self, flow: Transfer, next_arrival_s: float) -> bool:
        """Replay a just-started transfer whole, if it will have its link to itself; True if it did.

        It will when no other flow is on its link or starting towards it and it ends before the next session
        arrives (and before the horizon): its share is then known now, and nothing joins or looks at the link
        until it ends (see :meth:`_finish_alone`).
        """
        link = flow.path[0]
        if (any(f.path[0] is link for f in self.transfers) or any(m.path[0] is link for m in self.media)
                or any(f.path[0] is link for f in self.starting if f is not flow)):
            return False
        finish_s = flow.active_at_s + flow.remaining_bytes * 8 / (min(flow.cap_bps, link.capacity_bps)
                                                                   * tcp.GOODPUT_FACTOR)
        if not (finish_s + _EPS_S < next_arrival_s and finish_s <= self.ctx.horizon_s):
            return False
        self.starting.remove(flow)
        self.transfers.append(flow)
        link.settle(flow.active_at_s)
        _carry_alone(flow, link, flow.active_at_s)
        self._finish_alone(flow, link, flow.finish_s())
        return True

    def _finish_alone(self, flow: Transfer, link, finish_s: float) -> None:
        """Finish a transfer alone on its link now, at ``finish_s``: nothing will join or look at the link before.

        No session arrives before then and no starting flow will join the link, so until the transfer ends its
        link's state is seen by nothing; the end event would change nothing but the link's own series.
        """
        link.settle(finish_s)
        flow.settle(finish_s)
        self.transfers.remove(flow)
        self.ctx.finish_transfer(flow, finish_s)
        link.carry(0.0, False)
        link.congestion_loss = 0.0
        link.new_share_bps = link.capacity_bps

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

    def _share(self, flows: list, caps: list[float], n_transfers: int) -> tuple[list[float], list[int]]:
        """Max-min shares of transfers (the first ``n_transfers``) and media, and the link ids limiting them.

        Media also cross each link's video headroom, a virtual link keyed by the negated id.
        """
        keys = [tuple(id(link) for link in f.path) for f in flows[:n_transfers]]
        keys += [tuple(key for link in m.path for key in (id(link), -id(link))) for m in flows[n_transfers:]]
        rates, limiter = max_min(caps, keys, self.capacity)
        return rates, [abs(k) if k != NO_LINK else k for k in limiter]

    def _update_links(self, links: list, flows: list, saturated: set[int], now_s: float) -> None:
        """Give each link its new load and queues; only links whose load or saturation changed are settled."""
        loads_bps = dict.fromkeys(map(id, links), 0.0)
        for flow in flows:
            for link in flow.path:
                loads_bps[id(link)] += flow.rate_bps
        elastic: dict[int, list] = {}
        for flow in self.transfers:
            if flow.limiter is not None and id(flow.limiter) in saturated:
                elastic.setdefault(id(flow.limiter), []).append(flow)
        for link in links:
            load_bps, is_saturated = loads_bps[id(link)], id(link) in saturated
            if load_bps != link.load_bps or is_saturated != link.saturated:
                link.settle(now_s)
                link.carry(load_bps, is_saturated)
            link.congestion_loss = _congestion_loss(link, elastic.get(id(link), ()))

    def _congestion_loss(self, link) -> float:
        """Drop rate at a saturated link (see :func:`_congestion_loss`)."""
        return _congestion_loss(link, [f for f in self.transfers if f.limiter is link]) if link.saturated else 0.0


def _congestion_loss(link, elastic: list) -> float:
    """Drop rate at a saturated drop-tail link (0..0.5).

    What the sawtooth of the TCP flows it limits (``elastic``) implies there (Mathis, inverted); none when no
    flow saturates it.
    """
    if not elastic or not link.saturated:
        return 0.0
    rate_bps = sum(f.rate_bps for f in elastic) / len(elastic)
    rtt_s = sum(f.rtt_s - f.queue_delay_s for f in elastic) / len(elastic) + link.queue_delay_s
    return tcp.mathis_loss(rate_bps, rtt_s)


def _carry_alone(flow: Transfer, link, now_s: float) -> None:
    """Give a transfer alone on its link its share from ``now_s``, and the link its load and queues."""
    saturated = flow.cap_bps > link.capacity_bps
    rate_bps = link.capacity_bps if saturated else flow.cap_bps
    _set_transfer(flow, rate_bps, link if saturated else None, now_s)
    link.carry(rate_bps, saturated)
    link.congestion_loss = _congestion_loss(link, [flow])


def _set_transfer(flow: Transfer, rate_bps: float, limiter, now_s: float) -> None:
    """Give a transfer its new share; settle it first if its rate or limit changes."""
    if rate_bps != flow.rate_bps or limiter is not flow.limiter:
        flow.settle(now_s)
        flow.rate_bps, flow.limiter = rate_bps, limiter


def _set_media(m: Media, rate_bps: float, limiter, cause, saturated: set[int], now_s: float) -> None:
    """Give a media flow its new rate and what limits it; settle it first if its rate or cause changes.

    The cause (what the call's quality is blamed on) stays a saturated link it backed off for, while the
    call is below target and that link stays saturated; otherwise it is the flow's limiter.
    """
    if cause is None or rate_bps >= m.target_bps * (1 - 1e-9) or id(cause) not in saturated:
        cause = limiter
    m.limiter = limiter
    if rate_bps != m.rate_bps or cause is not m.cause:
        m.settle(now_s)
        m.rate_bps, m.cause = rate_bps, cause
