"""What the parts of a group share: its links, sessions, flows and state, declared once with their types.

:class:`sim.des.group.Group` is made of parts, each a module of its own (its start-ups followed round by round,
the exact shortcuts, shared links, crowded links, multiplexed connections), every one of them a trait over this
state: the group's attributes, and the few methods of the group that the parts call. The declarations change
nothing when the simulator is interpreted; they let a compiler (mypyc) lay the group out as one record with typed
fields, so that its parts read and write them directly.
"""

from __future__ import annotations

from mypy_extensions import trait

from sim.des.context import Context
from sim.des.flows import Media, Transfer
from sim.des.links import Link
from sim.des.session import Session


@trait
class GroupState:
    """A group's attributes (set by :class:`sim.des.group.Group`), and what its parts ask of it."""

    links: list[Link]
    sessions: list[Session]
    ctx: Context
    skip: bool
    reserving: list[Link]  # links that fixed-rate streams use
    changing: list[Link]  # links whose line changes (a fault)
    starting: list[Transfer]
    transfers: list[Transfer]  # active transfers, but those of crowded links (sim.des.crowd)
    crowds: dict  # a link's crowd (sim.des.crowd.Crowd), when so many transfers are active on it
    connections: dict  # multiplexed connections by app and data path (sim.des.connections)
    media: list[Media]
    calls: dict[int, list[Media]]
    now_s: float
    events: int
    dirty: set[Link]  # links whose fluid flows changed, so their shares must be recomputed
    next_arrival_s: float
    by_id: dict[int, Link]
    single_link_paths: bool
    capacity: dict[int, float]  # what max-min filling shares, by link id (and minus it: the video headroom)
    on_link: dict[Link, list[Media]]
    media_seen: tuple
    demand_on: dict[Link, float]
    end_on: dict[Link, float]

    def _next_line_s(self) -> float:
        raise NotImplementedError

    def _start_transfer(self, s: Session, now_s: float) -> Transfer | None:
        raise NotImplementedError

    def _available_bps(self, path: tuple) -> float:
        raise NotImplementedError

    def _media_on(self, link: Link) -> list[Media]:
        raise NotImplementedError

    def _demand_bps(self, link: Link, media: list[Media]) -> float | None:
        raise NotImplementedError
