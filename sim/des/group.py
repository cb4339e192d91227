"""A group of links that flows connect, replayed by one SimPy process.

Sites interact only through the links they share, so each connected group of links (a site's access
link, or several sites behind one shared link) evolves on its own. Its process waits for the next change
(an arrival, a start-up ending, a completion, a call ending); between changes every rate is constant, so
the fluid model advances in one step and re-shares capacity only for this group.

A site's line may change during the run (a fault, a backup, a repair: :mod:`sim.des.lines`): each change is an
event of its group, where the link takes its new capacity, buffer, loss and queueing and its flows re-share; a
transfer stalls at rate 0 through an outage and goes on after it, a call gets rate 0 there. No shortcut replays a
transfer past a change.

Fixed-rate streams are not flows here: they hold a reserved rate on their links, a step function known before
the run (:mod:`sim.des.reserved`), which fluid flows see as capacity taken. A step is an event only on a link
that fluid flows are using; elsewhere a link takes its reserved rate when something next looks at it.

This module is the general path: every arrival, start-up end, completion, call end, line change, reservation
step and step of a call climbing back after a yield (:class:`sim.des.flows.Media`) an event, and the shares
recomputed at each. Events that would change nothing observed are skipped, exactly,
when the run's ``skip_unobserved`` is on (a parameter of :func:`sim.des.run`, default on): a transfer arriving before
the next change starts up without an event (start-up takes no share), and one that will be the only transfer on its
link until it ends is replayed whole. Those shortcuts are :mod:`sim.des.shortcuts`; the property test
(``tests/test_des_shortcuts.py``) runs both ways and compares the tables.

Links are shared in closed form when every path is one link (:mod:`sim.des.linkshare`), by progressive filling when
paths cross a shared link (:mod:`sim.des.shared`). The streams of a multiplexed app's connection (HTTP/2) share one
flow's share there, by weights (:mod:`sim.des.connections`).
"""

from __future__ import annotations

import math

from sim.des import tcp
from sim.des.connections import MULTIPLEXED, Connections, joined_start
from sim.des.crowd import Crowds
from sim.des.flows import Media, Transfer, earliest_finish_s, ended_transfers
from sim.des.links import Link
from sim.des.linkshare import share_elastic_alone, share_link
from sim.des.rounds import Rounds, standing_room
from sim.des.session import Session
from sim.des.shared import SharedLinks
from sim.des.shortcuts import Shortcuts
from sim.topology import FarEnd

_EPS_S = 1e-9
_NONE: list = []  # no media on a link (never changed)


class Group(Rounds, Shortcuts, SharedLinks, Crowds, Connections):
    """The links of one group, the sessions that use them, and the flows now active.

    Args:
        links: The group's links.
        sessions: Its sessions (:class:`sim.des.session.Session`: trace rows with their ``up``/``down`` paths of
            :class:`Link` and ``rtt_s`` of the site) sorted by start time.
        ctx: Shared run context (horizon, far end, outputs).
        skip_unobserved: Take the exact shortcuts of :mod:`sim.des.shortcuts` (off only to test that they are
            exact).
    """

    def __init__(self, links: list[Link], sessions: list[Session], ctx, skip_unobserved: bool = True) -> None:
        self.links, self.sessions, self.ctx = links, sessions, ctx
        self.skip = skip_unobserved
        self.reserving = [link for link in links if link.steps_s]  # links that fixed-rate streams use
        self.changing = [link for link in links if link.line_steps_s]  # links whose line changes (a fault)
        self.starting: list[Transfer] = []
        self.transfers: list[Transfer] = []  # active transfers, but those of crowded links (sim.des.crowd)
        self.crowds: dict = {}  # a link's crowd, when so many transfers are active on it (one-link paths only)
        self.connections: dict = {}  # multiplexed connections by app and data path (sim.des.connections)
        self.media: list[Media] = []
        self.calls: dict[int, list[Media]] = {}
        self.now_s = sessions[0].start_s if sessions else 0.0
        self.events = 0
        self.dirty: set = set()  # links whose fluid flows changed, so their shares must be recomputed
        self.next_arrival_s = math.inf  # start of the next session not yet arrived (s), set before each re-share
        self.by_id = {id(link): link for link in links}
        self.single_link_paths = all(link.kind == "access" for link in links)  # no site shares a link
        self.capacity = {id(link): link.free_bps for link in links}  # what max-min filling shares
        self.capacity.update({-id(link): link.free_headroom_bps for link in links})
        self.on_link: dict = {}  # each link's media (by first link, in ``media`` order), built from ``media_seen``
        self.media_seen: tuple = (None, 0)  # the ``media`` list ``on_link`` was built from, and its length then
        self.demand_on: dict = {}  # sum() of what each link's media (``on_link``) ask for (bit/s), once asked for
        self.end_on: dict = {}  # when each link's first media to end ends (s; -inf if one's end is not a number)

    def process(self, env):
        """The SimPy process: wait for the next change, apply it, re-share."""
        sessions, n, i = self.sessions, len(self.sessions), 0
        starts_s = [s.start_s for s in sessions]
        is_video = [s.traffic == "stream" for s in sessions]
        horizon_s = self.ctx.horizon_s
        while i < n or self.starting or self.transfers or self.media or self.crowds:
            change_s = self._next_change_s()
            if self.skip and i < n and not is_video[i] and starts_s[i] < change_s - _EPS_S:
                i, change_s = self._start_quietly(i, change_s, starts_s, is_video)
            next_s = starts_s[i] if i < n and starts_s[i] < change_s else change_s
            if next_s > horizon_s:
                yield env.timeout(max(0.0, horizon_s - env.now))
                self._stop_all(horizon_s)
                return
            wait_s = next_s - env.now
            yield env.timeout(wait_s if wait_s > 0.0 else 0.0)  # (max(0.0, wait_s))
            now_s = self.now_s = env.now
            self.events += 1
            for link in self.changing:
                if link.next_line_s <= now_s + _EPS_S and link.take_line(now_s + _EPS_S):
                    self._line_changed(link)
            arriving = i < n and starts_s[i] <= now_s + _EPS_S
            for link in self.reserving:
                if link.next_step_s <= now_s + _EPS_S and link.sync(now_s + _EPS_S):
                    self._reserved_changed(link, arriving)
            while i < n and starts_s[i] <= now_s + _EPS_S:
                self._arrive(sessions[i], now_s)
                i += 1
            if change_s <= now_s + _EPS_S:
                self._finish_due(now_s)
            if self.dirty:
                self.next_arrival_s = min(starts_s[i] if i < n else math.inf, self._next_line_s())
                self._reshare(now_s)
                if self.starting:  # a start-up whose data path changed goes on at the RTT now
                    self._follow_rounds(now_s)
        self._settle_links(self.now_s)

    def _next_line_s(self) -> float:
        """When the next line of the group's links changes (s; inf if none will)."""
        if not self.changing:
            return math.inf
        return min(link.next_line_s for link in self.changing)

    def _next_change_s(self) -> float:
        best_s = self._next_line_s()  # a line's change is an event: the state every arrival reads follows it
        for flow in self.starting:
            if flow.active_at_s < best_s:
                best_s = flow.active_at_s
        reserving = bool(self.reserving)  # a reservation step on a link that fluid flows use changes their shares
        best_s = earliest_finish_s(self.transfers, best_s)  # (the least of them all, in whatever order, is the same)
        if reserving:
            for flow in self.transfers:
                for link in flow.path:
                    if link.next_step_s < best_s:
                        best_s = link.next_step_s
        if self.crowds:
            best_s = self._crowds_next_s(best_s)
        for media in self.media:
            if media.end_s < best_s:
                best_s = media.end_s
            if media.climb_next_s < best_s:  # a call climbing back after a yield takes its next step
                best_s = media.climb_next_s
        if reserving:
            best_s = self._binding_step_s(best_s)
        return best_s

    def _binding_step_s(self, best_s: float) -> float:
        """The earlier of ``best_s`` and the first step that can change the rates of media on its link (s).

        Each link is looked at once, however many media use it: a second look, with a bound no later, cannot find a
        step the first did not (:meth:`sim.des.links.Link.binding_step_s` returns the first binding step).
        """
        seen = set()
        for media in self.media:
            for link in media.path:
                if link.next_step_s < best_s and link not in seen:
                    seen.add(link)
                    best_s = min(best_s, link.binding_step_s(best_s))
        return best_s

    def _line_changed(self, link: Link) -> None:
        """A link's line changed (:meth:`sim.des.links.Link.take_line`): its flows share its new capacity.

        A transfer arriving at this instant finds the share the change leaves it, as at a reservation step.
        """
        freed_bps = link.free_bps - self.capacity[id(link)]
        self.capacity[id(link)], self.capacity[-id(link)] = link.free_bps, link.free_headroom_bps
        self.dirty.add(link)
        if self.single_link_paths:
            link.new_share_bps = max(0.0, link.new_share_bps + freed_bps / (self._on_link(link) + 1))

    def _reserved_changed(self, link: Link, arriving: bool = True) -> None:
        """A link's reserved rate changed: fluid flows share what is left; its queues change now.

        A transfer arriving at this instant, before the link is re-shared, finds the share the change leaves it:
        what the change freed (or took), split as the re-share will split it among the link's transfers and it.
        With no session ``arriving`` before the re-share, nothing reads the queues or that share until the re-share
        of this event sets both again (every path one link), so with the shortcuts on they are left to it.
        """
        freed_bps = link.free_bps - self.capacity[id(link)]
        self.capacity[id(link)], self.capacity[-id(link)] = link.free_bps, link.free_headroom_bps
        self.dirty.add(link)
        if not arriving and self.single_link_paths and self.skip:
            return
        link.carry(link.load_bps, link.saturated)
        if self.single_link_paths:
            link.new_share_bps = max(0.0, link.new_share_bps + freed_bps / (self._on_link(link) + 1))

    def _settle_links(self, now_s: float) -> None:
        for link in self.links:
            link.settle(now_s)

    def _arrive(self, session: Session, now_s: float) -> None:
        if session.traffic == "stream":
            self._start_call(session, now_s)
        else:
            self._start_transfer(session, now_s)

    def _start_call(self, s: Session, now_s: float) -> None:
        far = self.ctx.topology.far_end(s.far_end)
        if s.far_end == "home" and s.far_down_bps == s.far_down_bps:  # the call's own line, when drawn
            far = FarEnd(s.far_down_bps, s.far_up_bps, s.far_rtt_s)
        base_s = (s.rtt_s + self.ctx.cloud_rtt_s + far.rtt_s) / 2
        end_s = now_s + s.duration_s
        halves = []
        up_share = s.up_share  # the site's upstream runs at this share of the stream's rates
        for path, far_cap_bps, scale in ((s.up, far.down_bps, up_share), (s.down, far.up_bps, 1.0)):
            media = Media(s.session_id, path, far_cap_bps, s.target_rate_bps * scale,
                          s.min_rate_bps * scale, base_s, now_s, end_s)
            demand_bps = min(media.target_bps, far_cap_bps)
            for link in path:
                link.add_media(demand_bps, min(demand_bps, media.min_bps))
            halves.append(media)
        self.media.extend(halves)
        self.calls[s.session_id] = halves
        self.dirty.update(s.up, s.down)

    def _start_transfer(self, s: Session, now_s: float) -> Transfer | None:
        """Start a transfer's start-up; return it, or None when it completes within its start-up.

        Its start-up is planned with the round-trip time now and followed round by round (:mod:`sim.des.rounds`),
        its slow start ending where a round's burst overflows the room a standing queue on its path leaves
        (:func:`sim.des.tcp.overflow`);
        one that ends within it on a path no other transfer uses or starts on (nor a line's change comes first) is
        finished at once.
        """
        path, back = (s.up, s.down) if s.direction == "up" else (s.down, s.up)
        queue_s, delivered, loss = 0.0, 1.0, 0.0
        for link in path:
            queue_s += link.queue_delay_s
            delivered *= 1.0 - link.loss
            loss = 1.0 - (1.0 - loss) * (1.0 - link.congestion_loss)
        back_s = 0.0
        for link in back:
            back_s += link.queue_delay_s
        fixed_rtt_s = s.rtt_s + self.ctx.cloud_rtt_s + back_s
        rtt_s = fixed_rtt_s + path[0].rtt_shift_s + queue_s  # the site's line as it is now
        cap_bps = tcp.window_cap_bps(rtt_s, 1.0 - delivered)
        size = s.size_bytes if s.size_bytes > 1.0 else 1.0  # (max(1.0, ...))
        chunks = math.ceil(size / s.chunk_bytes) if s.chunk_bytes > 0 else 1
        expected_bps = min(cap_bps, self._available_bps(path))
        handshakes = tcp.HANDSHAKE_RTTS_BY_CONNECTION[s.connection]
        conn = self._connection(s, path) if s.connection in MULTIPLEXED else None
        joins = conn is not None and conn.is_open(now_s)
        if joins and conn is not None:  # a stream on its open connection: its request, then it shares the open window
            start, handshakes = joined_start(conn, rtt_s, chunks - 1, now_s), 0
        else:
            start = tcp.slow_start(size, expected_bps, rtt_s, chunks - 1, handshakes, standing_room(path))
        flow = Transfer(s.session_id, path, size, size - start.sent_bytes, now_s + start.duration_s,
                        cap_bps, rtt_s, queue_s + back_s)
        self._plan_start(flow, start, fixed_rtt_s, loss, now_s, handshakes, joins)
        flow.opens = handshakes > 0
        if conn is not None:
            flow.joined = joins
            conn.join(flow)
        if flow.remaining_bytes <= 0 and (not self.changing or flow.active_at_s < self._next_line_s()) \
                and not self._busy(path, flow):
            # done within its start-up, and nothing can change its rounds before it ends
            self.ctx.finish_transfer(flow, flow.active_at_s)
            return None
        self._follow(flow, expected_bps)
        return flow

    def _available_bps(self, path: tuple[Link, ...]) -> float:
        """Estimate of the rate a new transfer will find: a fair share of what video leaves."""
        if self.single_link_paths:  # kept up to date by each re-share of the link
            share_bps = path[0].new_share_bps
            return 1.0 if 1.0 > share_bps else share_bps  # (max(share_bps, 1.0))
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
                for flow in due:
                    if flow.remaining_bytes <= 0:  # done within its start-up, which took no share
                        self.ctx.finish_transfer(flow, flow.active_at_s)
                due = [f for f in due if f.remaining_bytes > 0]
                for flow in due:
                    if flow.conn is not None:
                        flow.conn.activate(flow)
                self._activate(due)
                for flow in due:
                    self.dirty.update(flow.path)
        if self.transfers:
            done = ended_transfers(self.transfers, limit_s)
            if done:  # (seldom: most events of a busy line are steps; the rest then kept as they are)
                ended_ids = {id(f) for f in done}
                self.transfers = [f for f in self.transfers if id(f) not in ended_ids]
                for flow in done:
                    self.dirty.update(flow.path)
                    flow.settle(now_s)
                    self.ctx.finish_transfer(flow, now_s)
        for media in self.media:
            if media.climb_next_s <= limit_s:
                self.dirty.update(media.path)
        if self.crowds:
            for flow in self._crowds_done(limit_s, now_s):
                self.ctx.finish_transfer(flow, now_s)
        ended = [m for m in self.media if m.end_s <= limit_s] if self.media else None
        if ended:
            before, self.media = self.media, [m for m in self.media if m.end_s > limit_s]
            self._media_left(before, ended)
            for media in ended:
                self.dirty.update(media.path)
                media.settle(now_s)
                demand_bps = min(media.target_bps, media.far_cap_bps)
                for link in media.path:
                    link.remove_media(demand_bps, min(demand_bps, media.min_bps))
            for session in sorted({m.session for m in ended}):
                self.ctx.finish_call(session, self.calls.pop(session), now_s, completed=True)

    def _stop_all(self, now_s: float) -> None:
        self._break_up_crowds()
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
        self._reshare_shared(now_s)

    def _reshare_link(self, link: Link, now_s: float, replay: bool = True) -> None:
        """:meth:`_reshare` when every path is one link: each changed link on its own, in closed form.

        With ``replay`` (and the shortcuts on), a transfer left alone among transfers on the link is replayed to
        its end when nothing else will touch the link before then (:meth:`_replay_lone`).
        """
        link.settle(now_s)
        media = self._media_on(link)
        if link in self.crowds:  # many transfers: shared as arrays, the same way
            self.crowds[link].share(media, now_s)
            return
        transfers = [f for f in self.transfers if f.path[0] is link]
        if not media and len(transfers) < 2:
            share_elastic_alone(link, transfers, now_s)
        else:
            share_link(link, transfers, media, now_s)
        if replay and self.skip and len(transfers) == 1:
            self._replay_lone(transfers[0], link, media, now_s)

    def _media_on(self, link: Link) -> list[Media]:
        """The media whose path begins with ``link``, in ``media`` order (to read, not to change).

        Kept per link as ``media`` grows (calls join at its end: the list given grows with it); rebuilt when it is
        replaced (calls ended). ``end_on`` follows it: the earliest end among them; and ``demand_on`` forgets the
        link's summed demand (:meth:`_demand_bps`) when its media change.
        """
        media, (seen, count) = self.media, self.media_seen
        if seen is media and count == len(media):  # (most often: no call joined or left since)
            return self.on_link.get(link, _NONE)
        if seen is not media or count > len(media):
            self.on_link, self.demand_on, self.end_on, count = {}, {}, {}, 0
        if count < len(media):
            on_link, demand_on, end_on = self.on_link, self.demand_on, self.end_on
            for m in media[count:]:
                first = m.path[0]
                on_link.setdefault(first, []).append(m)
                demand_on.pop(first, None)
                end_s = m.end_s if m.end_s == m.end_s else -math.inf
                if end_s < end_on.get(first, math.inf):
                    end_on[first] = end_s
            self.media_seen = (media, len(media))
        return self.on_link.get(link, _NONE)

    def _media_left(self, before: list[Media], ended: list[Media]) -> None:
        """Keep ``on_link`` for ``media`` now that the calls ``ended`` left it (``before``: the list as it was).

        Each link's list loses those calls in place (the rest keep their order, as a rebuild from the new list would
        give them), its earliest end is found again among the rest and its summed demand forgotten. Only where
        ``on_link`` was built from the whole of ``before``; else :meth:`_media_on` rebuilds it.
        """
        seen, count = self.media_seen
        if seen is not before or count != len(before):
            return
        on_link, end_on = self.on_link, self.end_on
        for m in ended:
            first = m.path[0]
            on = on_link[first]
            on.remove(m)
            self.demand_on.pop(first, None)
            end_on.pop(first, None)
            if not on:
                del on_link[first]
                continue
            for other in on:  # (as _media_on finds it)
                end_s = other.end_s if other.end_s == other.end_s else -math.inf
                if end_s < end_on.get(first, math.inf):
                    end_on[first] = end_s
        self.media_seen = (self.media, len(self.media))

    def _demand_bps(self, link: Link, media: list[Media]) -> float | None:
        """``sum()`` of what the media whose path begins with ``link`` ask for (bit/s; None without media).

        ``media``: :meth:`_media_on` of the link, just asked for (which brought ``demand_on`` up to date with the
        calls). Summed when first asked for after they changed, then kept (``demand_on``) until they change again:
        ``sum()`` itself, not a running total (from Python 3.12 ``sum()`` compensates rounding).
        """
        if not media:
            return None
        demand_bps = self.demand_on.get(link)
        if demand_bps is None:
            demand_bps = self.demand_on[link] = sum(m.demand_bps for m in media)
        return demand_bps
