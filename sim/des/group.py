"""A group of links that flows connect, replayed by one SimPy process.

Sites interact only through the links they share, so each connected group of links (a site's access
link, or several sites behind one shared link) evolves on its own. Its process waits for the next change
(an arrival, a start-up ending, a completion, a call ending); between changes every rate is constant, so
the fluid model advances in one step and re-shares capacity only for this group.

Fixed-rate streams are not flows here: they hold a reserved rate on their links, a step function known before
the run (:mod:`sim.des.reserved`), which fluid flows see as capacity taken. A step is an event only on a link
that fluid flows are using; elsewhere a link takes its reserved rate when something next looks at it.

Events that would change nothing observed are skipped, exactly, when ``skip_unobserved`` is on: a transfer
arriving before the next change starts up without an event (start-up takes no share), and one that will have
its link to itself (beside the reservations) until it ends, with no session arriving before then, is replayed
whole at once (:meth:`Group._run_alone`). The property test runs both ways and compares the tables.
"""

from __future__ import annotations

import math
from bisect import bisect_right

from sim.des import tcp
from sim.des.flows import Media, Transfer
from sim.des.sharing import NO_LINK, max_min, water_level
from sim.topology import FarEnd

_EPS_S = 1e-9


class Group:
    """The links of one group, the sessions that use them, and the flows now active.

    Args:
        links: The group's links.
        sessions: Session rows (dicts from the trace, with ``up``/``down`` paths of :class:`Link`,
            ``rtt_s`` of the site and ``far`` end rates) sorted by start time.
        ctx: Shared run context (horizon, far end, outputs).
        skip_unobserved: Take the exact shortcuts (off only to test that they are exact).
    """

    def __init__(self, links: list, sessions: list, ctx, skip_unobserved: bool = True) -> None:
        self.links, self.sessions, self.ctx = links, sessions, ctx
        self.skip = skip_unobserved
        self.reserving = [link for link in links if link.steps_s]  # links that fixed-rate streams use
        self.starting: list[Transfer] = []
        self.transfers: list[Transfer] = []
        self.media: list[Media] = []
        self.calls: dict[int, list[Media]] = {}
        self.now_s = sessions[0]["start_s"] if sessions else 0.0
        self.events = 0
        self.dirty: set = set()  # links whose fluid flows changed, so their shares must be recomputed
        self.next_arrival_s = math.inf  # start of the next session not yet arrived (s), set before each re-share
        self.by_id = {id(link): link for link in links}
        self.single_link_paths = all(link.kind == "access" for link in links)  # no site shares a link
        self.capacity = {id(link): link.free_bps for link in links}  # what max-min filling shares
        self.capacity.update({-id(link): link.free_headroom_bps for link in links})

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
            while (self.skip and i < n and not is_video[i] and starts_s[i] < change_s - _EPS_S
                   and starts_s[i] <= horizon_s):
                self._sync_idle(sessions[i], starts_s[i])
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
            for link in self.reserving:
                if link.next_step_s <= now_s + _EPS_S and link.sync(now_s + _EPS_S):
                    self._reserved_changed(link)
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
        if self.reserving:  # a reservation step on a link that fluid flows use changes their shares
            for flow in self.transfers:
                for link in flow.path:
                    if link.next_step_s < best_s:
                        best_s = link.next_step_s
            for media in self.media:
                for link in media.path:
                    if link.next_step_s < best_s and link.step_binds_media():
                        best_s = link.next_step_s
        return best_s

    def _reserved_changed(self, link) -> None:
        """A link's reserved rate changed: fluid flows share what is left; its queues change now."""
        self.capacity[id(link)], self.capacity[-id(link)] = link.free_bps, link.free_headroom_bps
        self.dirty.add(link)
        link.carry(link.load_bps, link.saturated)

    def _sync_idle(self, s: dict, now_s: float) -> None:
        """Bring a session's links to their reserved rate at ``now_s``, before it reads them without an event.

        Any link a fluid flow uses has its next step among the group's changes, so only idle links move here:
        their queues and the share a new transfer finds follow the reserved rate alone.
        """
        if not self.reserving:
            return
        for path in (s["up"], s["down"]):
            for link in path:
                if link.next_step_s <= now_s + _EPS_S and link.sync(now_s + _EPS_S):
                    self._reserved_changed(link)
                    link.new_share_bps = link.free_bps
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
                          s["min_rate_bps"] * scale, base_s, now_s, end_s)
            demand_bps = min(media.target_bps, far_cap_bps)
            for link in path:
                link.add_media(demand_bps)
            halves.append(media)
        self.media.extend(halves)
        self.calls[s["session_id"]] = halves
        self.dirty.update(s["up"], s["down"])

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
            best = min(best, (link.free_bps - video_bps) / (elastic + 1))
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
                for link in media.path:
                    link.remove_media(min(media.target_bps, media.far_cap_bps))
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
        flows = transfers + media
        n_transfers = len(transfers)
        video_caps = [min(m.target_bps, m.far_cap_bps) for m in media]
        rates, limiter = self._share(transfers, media, video_caps)
        saturated = {limiter[k] for k in range(n_transfers) if limiter[k] != NO_LINK}
        yielding = {key for key in saturated if self.by_id[key].video_yields}
        backed_off = [k for k in range(n_transfers, len(flows))
                      if any(id(link) in yielding for link in flows[k].path)]
        if backed_off:  # video's delay-based control yields to TCP filling the buffer: drop to minimum
            for k in backed_off:
                video_caps[k - n_transfers] = min(video_caps[k - n_transfers], flows[k].min_bps)
            rates, limiter = self._share(transfers, media, video_caps)
        by_id = self.by_id
        for k in range(n_transfers):
            _set_transfer(transfers[k], rates[k], by_id.get(limiter[k]), now_s)
        backed = set(backed_off)
        for k in range(n_transfers, len(flows)):
            m = flows[k]
            cause = (next(link for link in m.path if id(link) in yielding) if k in backed else m.cause)
            _set_media(m, rates[k], by_id.get(limiter[k]), cause, yielding, now_s)
        self._update_links(links, flows, saturated, now_s)

    def _reshare_link(self, link, now_s: float, replay: bool = True) -> None:
        """:meth:`_reshare` when every path is one link: each changed link on its own, in closed form.

        With ``replay`` (and the shortcuts on), a transfer left alone among transfers on the link is replayed to
        its end when nothing else will touch the link before then (:meth:`_replay_lone`).
        """
        link.settle(now_s)
        transfers = [f for f in self.transfers if f.path[0] is link]
        media = [m for m in self.media if m.path[0] is link]
        if not media and len(transfers) < 2:
            self._share_elastic_alone(link, transfers, now_s)
        else:
            self._share_link(link, transfers, media, now_s)
        if replay and self.skip and len(transfers) == 1:
            self._replay_lone(transfers[0], link, media, now_s)

    def _share_link(self, link, transfers: list, media: list, now_s: float) -> None:
        """Share a link among its transfers and media: max-min, video backing off when TCP fills the buffer."""
        n_transfers = len(transfers)
        rates, limited, saturated = _shares(link, link.free_bps, link.free_headroom_bps, transfers, media)
        for k, flow in enumerate(transfers):
            _set_transfer(flow, rates[k], link if limited[k] else None, now_s)
        video_floor_bps = 0.0
        for k, m in enumerate(media, start=n_transfers):  # as _set_media, with this link the only one
            rate_bps, limiter = rates[k], link if limited[k] else None
            cause = link if saturated and link.video_yields and rate_bps < m.target_bps * (1 - 1e-9) else limiter
            m.limiter = limiter
            if rate_bps != m.rate_bps or cause is not m.cause:
                m.settle(now_s)
                m.rate_bps, m.cause = rate_bps, cause
            video_floor_bps += rate_bps if rate_bps < m.min_bps else m.min_bps
        link.new_share_bps = (link.free_bps - video_floor_bps) / (n_transfers + 1)
        link.carry(sum(rates), saturated)
        link.congestion_loss = self._congestion_loss(link)
        link.note(now_s)

    def _share_elastic_alone(self, link, transfers: list, now_s: float) -> None:
        """:meth:`_share_link` for a link with at most one transfer and no media (the common case)."""
        link.new_share_bps = link.free_bps / (len(transfers) + 1)
        if transfers:
            _carry_alone(transfers[0], link, now_s)
            return
        link.carry(0.0, False)
        link.congestion_loss = 0.0
        link.note(now_s)

    def _replay_lone(self, flow: Transfer, link, media: list, now_s: float) -> None:
        """Replay a transfer alone among transfers on its link to its end, if nothing touches the link before.

        Nothing does when no session arrives, no flow is starting towards the link and none of its media ends
        before the transfer does (nor the horizon comes): its share then changes only at the link's reservation
        steps, known now, so its end is known, and the events on the way would change nothing but this link's
        flows, series and history, which :meth:`_finish_lone` replays.
        """
        if any(f.path[0] is link for f in self.starting):
            return
        finish_s = _lone_finish_s(flow, link, now_s, media)
        if self._quiet_until(finish_s, media, self.next_arrival_s):
            self._finish_lone(flow, link, finish_s)

    def _quiet_until(self, finish_s: float, media: list, next_arrival_s: float) -> bool:
        """Whether a lone transfer ending at ``finish_s`` ends before anything else touches its link."""
        if not (finish_s + _EPS_S < next_arrival_s and finish_s <= self.ctx.horizon_s):
            return False
        return all(m.end_s > finish_s + _EPS_S for m in media)

    def _run_alone(self, flow: Transfer, next_arrival_s: float) -> bool:
        """Replay a just-started transfer whole, if it will be alone among transfers on its link; True if it did.

        As :meth:`_replay_lone`, from the end of its start-up: the link's reservation steps before then (which
        can change only its media's rates) are replayed first.
        """
        link = flow.path[0]
        if (any(f.path[0] is link for f in self.transfers)
                or any(f.path[0] is link for f in self.starting if f is not flow)):
            return False
        media = [m for m in self.media if m.path[0] is link]
        start_s = flow.active_at_s
        finish_s = _lone_finish_s(flow, link, start_s, media)
        if not self._quiet_until(finish_s, media, next_arrival_s):
            return False
        while link.next_step_s < start_s - _EPS_S:
            step_s = link.next_step_s
            self._take_step(link, step_s)
            self._reshare_link(link, step_s, replay=False)
        self.starting.remove(flow)
        self.transfers.append(flow)
        self._take_step(link, start_s)
        self._reshare_link(link, start_s, replay=False)
        self._finish_lone(flow, link, finish_s)
        return True

    def _finish_lone(self, flow: Transfer, link, finish_s: float) -> None:
        """Replay a lone transfer's link through its reservation steps to the transfer's end at ``finish_s``."""
        while link.next_step_s < finish_s - _EPS_S:
            step_s = link.next_step_s
            self._take_step(link, step_s)
            self._reshare_link(link, step_s, replay=False)
        flow.settle(finish_s)
        self.transfers.remove(flow)
        self.ctx.finish_transfer(flow, finish_s)
        self._take_step(link, finish_s)
        self._reshare_link(link, finish_s, replay=False)

    def _take_step(self, link, now_s: float) -> None:
        """Take a link's reservation steps due by ``now_s`` (its flows are then re-shared by the caller)."""
        if link.next_step_s <= now_s + _EPS_S and link.sync(now_s + _EPS_S):
            self.capacity[id(link)], self.capacity[-id(link)] = link.free_bps, link.free_headroom_bps
            link.carry(link.load_bps, link.saturated)

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

    def _share(self, transfers: list, media: list, video_caps: list[float]) -> tuple[list[float], list[int]]:
        """Shares of transfers, then media, and the link ids limiting them (as :func:`_shares` on one link).

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
        rates, limiter = max_min([f.cap_bps for f in transfers], keys, capacity) if transfers else ([], [])
        return rates + media_rates, limiter + [abs(k) if k != NO_LINK else k for k in media_limiter]

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
            link.note(now_s)

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
    free_bps = link.free_bps
    saturated = flow.cap_bps > free_bps
    rate_bps = free_bps if saturated else flow.cap_bps
    _set_transfer(flow, rate_bps, link if saturated else None, now_s)
    link.carry(rate_bps, saturated)
    link.congestion_loss = _congestion_loss(link, [flow])
    link.note(now_s)


def _shares(link, free_bps: float, headroom_bps: float, transfers: list, media: list,
            ) -> tuple[list[float], list[bool], bool]:
    """Shares on one link (transfers, then media), whether the link limits each, and whether transfers saturate it.

    Media (delay-based senders that back off only on a queue or heavy loss) share the video headroom left by the
    reservations max-min fairly among themselves; transfers share max-min fairly what is left. When transfers
    saturate the link and its full buffer delays more than video's overuse threshold (``link.video_yields``),
    the media yield to TCP, down to their minimum rates, and transfers take the rest.
    """
    transfer_caps = [f.cap_bps for f in transfers]
    video_caps = [min(m.target_bps, m.far_cap_bps) for m in media]
    rates, limited, saturated = _fill(transfer_caps, video_caps, free_bps, headroom_bps)
    if saturated and media and link.video_yields:
        video_caps = [min(cap, m.min_bps) for cap, m in zip(video_caps, media)]
        rates, limited, saturated = _fill(transfer_caps, video_caps, free_bps, headroom_bps)
    return rates, limited, saturated


def _fill(transfer_caps: list[float], video_caps: list[float], free_bps: float, headroom_bps: float,
          ) -> tuple[list[float], list[bool], bool]:
    """:func:`_shares` for given caps (bit/s): media over the headroom first, then transfers over the rest."""
    if not video_caps:
        media_rates, media_limited, media_bps = [], [], 0.0
    elif sum(video_caps) <= headroom_bps:  # every call gets what it asks for: the common case
        media_rates, media_limited, media_bps = video_caps, [False] * len(video_caps), sum(video_caps)
    else:
        media_level = water_level(video_caps, headroom_bps)
        media_rates = [min(cap, media_level) for cap in video_caps]
        media_limited = [cap > media_level for cap in video_caps]
        media_bps = sum(media_rates)
    level = water_level(transfer_caps, free_bps - media_bps) if transfer_caps else math.inf
    limited = [cap > level for cap in transfer_caps]
    return [min(cap, level) for cap in transfer_caps] + media_rates, limited + media_limited, any(limited)


def _lone_finish_s(flow: Transfer, link, from_s: float, media: list) -> float:
    """When a transfer alone among transfers on its link from ``from_s`` sends its last byte (s).

    Until ``from_s`` it sends at its current rate; from there at its share beside the link's ``media`` (which
    stay) and what the reserved rate leaves, through each coming step. Reads the link's steps without moving it.
    """
    remaining_bits = flow.remaining_bytes * 8 / tcp.GOODPUT_FACTOR
    if flow.since_s < from_s:
        remaining_bits -= flow.rate_bps * (from_s - flow.since_s)
    steps_s, steps_bps, capacity_bps, headroom_bps = link.steps_s, link.steps_bps, link.capacity_bps, link.headroom_bps
    k = bisect_right(steps_s, from_s + _EPS_S)
    reserved_bps = steps_bps[k - 1] if k else 0.0
    t_s = from_s
    while remaining_bits > 0:
        free_bps = max(0.0, capacity_bps - reserved_bps)
        if media:
            rate_bps = _shares(link, free_bps, max(0.0, headroom_bps - reserved_bps), [flow], media)[0][0]
        else:
            rate_bps = min(flow.cap_bps, free_bps)
        next_s = steps_s[k] if k < len(steps_s) else math.inf
        if rate_bps > 0 and t_s + remaining_bits / rate_bps <= next_s:
            return t_s + remaining_bits / rate_bps
        if next_s == math.inf:
            return math.inf
        remaining_bits -= rate_bps * (next_s - t_s)
        t_s, reserved_bps = next_s, steps_bps[k]
        k += 1
    return t_s


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

