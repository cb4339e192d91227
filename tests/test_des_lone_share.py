"""The lone-transfer shortcut's quick share beside free calls, against hand arithmetic and the general share.

A transfer alone among transfers on its link, beside calls that get what they ask for, takes what they and the
reservations leave, up to its cap. :func:`sim.des.linkshare.lone_finish_s` takes that share from the calls' summed
demand (kept per link by its group until its calls change: ``Group._demand_bps``) rather than from each call at each
step; the answer must be the general share's (:func:`sim.des.linkshare.shares`) to the bit, and the hand arithmetic's.
Whole runs with and without the shortcuts are compared in ``test_des_shortcuts.py``.
"""

from __future__ import annotations

import math
import random

import pytest

from sim.des import queueing
from sim.des.flows import Media, Transfer, climb_step
from sim.des.group import Group
from sim.des.links import Link
from sim.des.linkshare import lone_finish_s, set_link_media, share_link, shares, steady_media
from sim.des.tcp import GOODPUT_FACTOR

LINE_BPS = 10e6


def _link(capacity_bps: float = LINE_BPS, buffer_bytes: float = 30_000.0) -> Link:
    return Link("a/down", "a", "access", "down", capacity_bps, buffer_bytes, 0.0, 0.0, 0.0, 60.0, 11)


def _call(link: Link, target_bps: float, end_s: float = 100.0, session: int = 1) -> Media:
    media = Media(session, (link,), 50e6, target_bps, 0.35e6, 0.01, 0.0, end_s)
    link.add_media(media.demand_bps, min(media.demand_bps, media.min_bps))
    return media


def _transfer(link: Link, cap_bps: float, remaining_bytes: float = 1e6, long: bool = False) -> Transfer:
    flow = Transfer(7, (link,), remaining_bytes, remaining_bytes, 0.0, cap_bps, 0.02, 0.0)
    flow.long = long
    return flow


@pytest.mark.parametrize(("cap_bps", "reserved_bps", "rate_bps"), [
    (20e6, 0.0, 7e6),   # 10 Mbit/s less the calls' 3: the line limits it
    (2e6, 0.0, 2e6),    # its own cap (a window) is less than the 7 left
    (20e6, 2e6, 5e6),   # 10 less 2 reserved less 3
])
def test_a_lone_transfer_beside_free_calls_sends_what_they_leave_until_its_last_byte(cap_bps, reserved_bps, rate_bps):
    link = _link()
    if reserved_bps:
        link.reserve([0.0], [reserved_bps])
        link.sync(0.0)
    media = [_call(link, 1.5e6), _call(link, 1.5e6, session=2)]
    flow = _transfer(link, cap_bps)
    expected_s = 1e6 * 8 / GOODPUT_FACTOR / rate_bps  # 1 MB of payload on the wire at that rate, from 0
    summed = lone_finish_s(flow, link, 0.0, media, sum(m.demand_bps for m in media))
    assert summed == pytest.approx(expected_s, rel=1e-12)
    assert summed == lone_finish_s(flow, link, 0.0, media)  # each call asked, as the general share does
    rates, _, _ = shares(link, link.free_bps, link.free_headroom_bps, [flow], media, 0.0)
    assert rates[0] == rate_bps


def test_calls_past_the_headroom_or_yielding_to_the_transfer_are_shared_the_general_way():
    # 9 Mbit/s headroom (90% of 10): calls asking for 10 do not fit, and are water-filled to 4.5 each
    link = _link()
    media = [_call(link, 5e6), _call(link, 5e6, session=2)]
    flow = _transfer(link, 20e6)
    summed = lone_finish_s(flow, link, 0.0, media, 10e6)
    assert summed == lone_finish_s(flow, link, 0.0, media) == pytest.approx(1e6 * 8 / GOODPUT_FACTOR / 1e6)
    # a long transfer's standing queue on a small buffer-heavy line passes video's threshold: the calls would yield
    deep = _link(capacity_bps=2e6, buffer_bytes=150_000.0)
    assert deep.video_yields[queueing.STANDING]
    calls = [_call(deep, 0.5e6)]
    long_flow = _transfer(deep, 20e6, long=True)
    assert lone_finish_s(long_flow, deep, 0.0, calls, 0.5e6) == lone_finish_s(long_flow, deep, 0.0, calls) == math.inf


def test_a_held_call_keeps_the_replay_off_until_a_reshare_frees_it():
    link = _link()
    media = [_call(link, 1.5e6)]
    steady_media(link, media, 0.0)
    assert link.media_steady and not link.media_held
    set_link_media(link, media, [1e6], [True], queueing.NOT_SATURATED, 1.0)  # held at 1 Mbit/s by its share
    link.media_steady = False
    assert link.media_held and not media[0].free
    assert lone_finish_s(_transfer(link, 20e6), link, 1.0, media, 1.5e6) == math.inf


def test_a_group_keeps_each_links_calls_demand_sum_and_earliest_end_as_they_join_and_leave():
    up, down = _link(), _link()
    group = Group([up, down], [], ctx=None)
    group.media = [_call(down, 1.1e6, end_s=50.0), _call(up, 0.7e6, end_s=30.0), _call(down, 0.3e6, end_s=40.0)]
    assert group._media_on(down) == [group.media[0], group.media[2]]
    assert group._demand_bps(down, group._media_on(down)) == sum([1.1e6, 0.3e6]) and group.end_on[down] == 40.0
    group.media.append(_call(down, 2.9e6, end_s=20.0))  # a call joins: the list grows
    assert group._media_on(down)[-1] is group.media[-1]
    assert group._demand_bps(down, group._media_on(down)) == sum([1.1e6, 0.3e6, 2.9e6])
    assert group.end_on[down] == 20.0
    group.media = group.media[1:]  # a call ended: the list is replaced, and the sums are made again
    assert group._media_on(down) == group.media[1:]
    assert group._demand_bps(down, group._media_on(down)) == sum([0.3e6, 2.9e6]) and group.end_on[down] == 20.0
    assert group.end_on[up] == 30.0 and down not in group._media_on(up)



def test_calls_ending_leave_each_links_calls_ends_and_demand_as_a_rebuild_from_the_calls_left_gives_them():
    rng = random.Random(5)
    links = [_link(), _link()]
    group = Group(links, [], ctx=None)
    group.media = [_call(rng.choice(links), rng.uniform(0.2e6, 2e6) / 3, end_s=float(rng.randint(10, 60)),
                         session=k) for k in range(20)]
    group.media[3].end_s = math.nan  # an end that is not a number counts as the earliest (-inf)
    for link in links:
        group._media_on(link)
    for limit_s in (15.0, 30.0, 45.0, 60.0):  # as Group._finish_due: the list replaced, less the calls ended
        ended = [m for m in group.media if m.end_s <= limit_s]
        before, group.media = group.media, [m for m in group.media if not m.end_s <= limit_s]
        group._media_left(before, ended)
        fresh = Group(links, [], ctx=None)
        fresh.media = group.media
        for link in links:
            kept, built = group._media_on(link), fresh._media_on(link)
            assert kept == built and (link in group.on_link) == (link in fresh.on_link)
            assert group.end_on.get(link, math.inf) == fresh.end_on.get(link, math.inf)
            assert group._demand_bps(link, kept) == fresh._demand_bps(link, built)
    nan_call = [m for m in group.media if m.session == 3]  # never ends: the only one left
    assert group.media == nan_call and group.end_on == {nan_call[0].path[0]: -math.inf}


def test_the_kept_demand_is_sums_value_and_the_shortcut_the_general_share_to_the_bit_with_ragged_demands():
    # Demands that do not add exactly in binary (a third of a target, random): the kept sum must be sum()'s value
    # over the link's calls as they stand (from Python 3.12 sum() compensates rounding, so a running total would
    # differ from it in the last bit), and the transfer's finish the same with it as with each call asked.
    rng = random.Random(3)
    link = _link(capacity_bps=100e6)
    group = Group([link], [], ctx=None)
    flow = _transfer(link, 60e6, remaining_bytes=2.5e6)
    for k in range(12):
        group.media.append(_call(link, rng.uniform(0.1e6, 2e6) / 3, end_s=200.0 - k, session=k + 1))
        media = group._media_on(link)
        assert group._demand_bps(link, media) == sum(m.demand_bps for m in media)
        demand_bps = group._demand_bps(link, media)
        assert lone_finish_s(flow, link, 0.0, media, demand_bps) == lone_finish_s(flow, link, 0.0, media)
    group.media = group.media[::2]  # calls ended: the list replaced, the sums made again
    media = group._media_on(link)
    assert group._demand_bps(link, media) == sum(m.demand_bps for m in media)
    demand_bps = group._demand_bps(link, media)
    assert lone_finish_s(flow, link, 0.0, media, demand_bps) == lone_finish_s(flow, link, 0.0, media)

def test_a_climbing_calls_cap_follows_the_climb_at_each_moment_asked():
    link = _link()
    media = _call(link, 1.5e6)
    media.climb_from_bps, media.climb_s = 0.35e6, 10.0
    for now_s in (10.5, 10.5, 12.0, 10.5, 30.0):  # asked twice at a moment, then at others (no stale answer)
        assert media.cap_bps(now_s) == climb_step(0.35e6, 1.5e6, now_s - 10.0)[0]
    assert media.cap_bps(30.0) == 1.5e6  # the climb (18.9 s) is over


def test_calls_alone_past_the_headroom_share_it_and_leave_a_new_transfer_the_rest_above_their_minimums():
    # two calls asking 5 Mbit/s of a 10 Mbit/s line's 9 Mbit/s headroom: 4.5 each, held there (to climb later); a
    # transfer arriving would find the line less what the calls must keep (their 0.35 Mbit/s minimums): 9.3 Mbit/s
    link = _link()
    media = [_call(link, 5e6), _call(link, 5e6, session=2)]
    share_link(link, [], media, 1.0)
    assert [m.rate_bps for m in media] == [4.5e6, 4.5e6] and not any(m.free for m in media)
    assert link.load_bps == link.media_load_bps == 9e6 and link.saturated == queueing.NOT_SATURATED
    assert link.new_share_bps == pytest.approx(9.3e6, rel=1e-12) and link.congestion_loss == 0.0
    assert link.history[0][-1] == 1.0 and link.history[1][-1] == 9e6
