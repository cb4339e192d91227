"""The simulator's exact shortcuts (a mixin of :class:`sim.des.group.Group`, taken when ``skip_unobserved`` is on).

:mod:`sim.des.group` is the general path, every change an event. Two shortcuts skip events that would change
nothing observed (``tests/test_des_shortcuts.py`` compares the tables with and without them):

* **A quiet arrival.** A transfer arriving before the group's next change finds the state as it is now and takes
  no share while it starts up: it is started without an event of its own (:meth:`Shortcuts._start_quietly`).
* **A lone transfer.** A transfer that will be the only transfer on its link until it ends, with no session
  arriving, no flow starting towards the link and none of its calls ending meanwhile, has a share that changes only
  at the link's reservation steps, known in advance; so its end is known, and the events on the way would change
  nothing but this link's flows, series and history. It is replayed whole (:meth:`Shortcuts._replay_lone`,
  :meth:`Shortcuts._run_alone`).
"""

from __future__ import annotations

import math

from mypy_extensions import trait

from sim.des.flows import Media, Transfer
from sim.des.links import Link
from sim.des.linkshare import lone_finish_s, share_elastic_alone, share_link
from sim.des.session import Session
from sim.des.state import GroupState

_EPS_S = 1e-9


@trait
class Shortcuts(GroupState):
    """Quiet arrivals and lone transfers; uses the group's sessions, flows, horizon and :meth:`_reshare_link`."""

    def _start_quietly(self, i: int, change_s: float, starts_s: list[float], is_video: list[bool]) -> tuple[int, float]:
        """Start each transfer arriving before the next change (at ``change_s``, s), from session ``i``, eventless.

        Each may end within its start-up (done), be replayed whole if it will be alone on its link
        (:meth:`_run_alone`), or else become active when its start-up ends, which may be the group's next change.

        Returns:
            The index of the next session not started, and the time of the group's next change (s).
        """
        sessions, n, horizon_s = self.sessions, len(starts_s), self.ctx.horizon_s
        line_s = self._next_line_s()  # no shortcut replays a transfer past a line's change
        reserving = bool(self.reserving)
        while i < n and not is_video[i] and starts_s[i] < change_s - _EPS_S and starts_s[i] <= horizon_s:
            if reserving:
                self._sync_idle(sessions[i], starts_s[i])
            flow = self._start_transfer(sessions[i], starts_s[i])
            i += 1
            if flow is None:
                continue
            if self.single_link_paths and self._run_alone(flow, min(starts_s[i] if i < n else math.inf, line_s)):
                if flow.path[0].media_held:  # (free calls do not climb)
                    for media in self._media_on(flow.path[0]):  # a call it held back climbs from its end: a change
                        change_s = min(change_s, media.climb_next_s)  # (the replay re-shared its link's calls alone)
                continue
            if flow.active_at_s < change_s:
                change_s = flow.active_at_s
        return i, change_s

    def _sync_idle(self, s: Session, now_s: float) -> None:
        """Bring a session's links to their reserved rate at ``now_s``, before it reads them without an event.

        Any link a fluid flow uses has its next step among the group's changes, so only idle links move here:
        their queues and the share a new transfer finds follow the reserved rate alone. (Asked only of a group with
        reservations.)
        """
        for path in (s.up, s.down):
            for link in path:
                if link.next_step_s <= now_s + _EPS_S and link.sync(now_s + _EPS_S):
                    self.capacity[id(link)], self.capacity[-id(link)] = link.free_bps, link.free_headroom_bps
                    self.dirty.add(link)  # as Group._reserved_changed; idle: a new transfer finds all it leaves
                    link.carry(link.load_bps, link.saturated)
                    link.new_share_bps = link.free_bps

    def _replay_lone(self, flow: Transfer, link: Link, media: list[Media], now_s: float) -> None:
        """Replay a transfer alone among transfers on its link to its end, if nothing touches the link before.

        Nothing does when no session arrives, no flow is starting towards the link and none of its media ends
        before the transfer does (nor the horizon comes): its share then changes only at the link's reservation
        steps, known now, so its end is known, and the events on the way would change nothing but this link's
        flows, series and history, which :meth:`_finish_lone` replays.
        """
        if any(f.path[0] is link for f in self.starting):
            return
        finish_s = lone_finish_s(flow, link, now_s, media, self._demand_bps(link, media),
                                 self._quiet_bound_s(link, self.next_arrival_s))
        if self._quiet_until(finish_s, link, self.next_arrival_s):
            self._finish_lone(flow, link, finish_s, media)

    def _quiet_bound_s(self, link: Link, next_arrival_s: float) -> float:
        """A time (s) after which no lone transfer on ``link`` can end and pass :meth:`_quiet_until`.

        The next arrival, the horizon or its media's first end (its media just asked for), whichever comes first.
        """
        return min(next_arrival_s, self.ctx.horizon_s, self.end_on.get(link, math.inf))

    def _quiet_until(self, finish_s: float, link: Link, next_arrival_s: float) -> bool:
        """Whether a lone transfer ending at ``finish_s`` ends before anything else touches its link.

        Its media (``_media_on(link)``, just asked for) must all end after it: the earliest of them does.
        """
        if not (finish_s + _EPS_S < next_arrival_s and finish_s <= self.ctx.horizon_s):
            return False
        return self.end_on.get(link, math.inf) > finish_s + _EPS_S

    def _run_alone(self, flow: Transfer, next_arrival_s: float) -> bool:
        """Replay a just-started transfer whole, if it will be alone among transfers on its link; True if it did.

        As :meth:`_replay_lone`, from the end of its start-up: the link's reservation steps before then (which
        can change only its media's rates) are replayed first.
        """
        link = flow.path[0]
        if link in self.crowds or self._other_on(link, flow):
            return False
        media = self._media_on(link)
        start_s = flow.active_at_s
        finish_s = lone_finish_s(flow, link, start_s, media, self._demand_bps(link, media),
                                 self._quiet_bound_s(link, next_arrival_s))
        if not self._quiet_until(finish_s, link, next_arrival_s):
            return False
        while link.next_step_s < start_s - _EPS_S:
            step_s = link.next_step_s
            self._take_step(link, step_s)
            self._share_lone_link(link, (), media, step_s)
        starting = self.starting  # (the flow was the last to start: it is last there)
        if starting[-1] is flow:
            starting.pop()
        else:
            starting.remove(flow)
        if link.next_step_s <= start_s + _EPS_S:
            self._take_step(link, start_s)
        self._share_lone_link(link, (flow,), media, start_s)
        self._finish_lone(flow, link, finish_s, media, listed=False)
        return True

    def _other_on(self, link: Link, flow: Transfer) -> bool:
        """Whether a transfer other than ``flow`` is active or starting on ``link`` (paths of one link)."""
        for f in self.transfers:
            if f.path[0] is link:
                return True
        for f in self.starting:
            if f.path[0] is link and f is not flow:
                return True
        return False

    def _finish_lone(self, flow: Transfer, link: Link, finish_s: float, media: list[Media],
                     listed: bool = True) -> None:
        """Replay a lone transfer's link through its reservation steps to the transfer's end at ``finish_s``.

        ``media``: the link's media, which stay until then. ``listed``: whether the transfer is among the group's
        active ones (one replayed from the end of its start-up never joined them: nothing reads them meanwhile).
        """
        while link.next_step_s < finish_s - _EPS_S:
            step_s = link.next_step_s
            self._take_step(link, step_s)
            self._share_lone_link(link, (flow,), media, step_s)
        flow.settle(finish_s)
        if listed:
            self.transfers.remove(flow)
        self.ctx.finish_transfer(flow, finish_s)
        if link.next_step_s <= finish_s + _EPS_S:
            self._take_step(link, finish_s)
        self._share_lone_link(link, (), media, finish_s)

    @staticmethod
    def _share_lone_link(link: Link, transfers: tuple[Transfer, ...], media: list[Media], now_s: float) -> None:
        """:meth:`_reshare_link` without a replay, for a link whose transfers and media are known.

        Its transfers are at most the lone one (so it has no crowd), its media those the caller found on it.
        """
        link.settle(now_s)
        if media:
            share_link(link, list(transfers), media, now_s)
        else:
            share_elastic_alone(link, transfers, now_s)

    def _take_step(self, link: Link, now_s: float) -> None:
        """Take a link's reservation steps due by ``now_s``.

        Its flows are then re-shared by the caller at once, which sets its load and queues (nothing reads them
        between).
        """
        if link.next_step_s <= now_s + _EPS_S and link.sync(now_s + _EPS_S):
            self.capacity[id(link)], self.capacity[-id(link)] = link.free_bps, link.free_headroom_bps
