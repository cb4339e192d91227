"""Max-min fair sharing: hand-worked cases, and the per-link closed form against progressive filling."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.des.sharing import NO_LINK, max_min, share_one_link, water_level


def test_textbook_two_link_example():
    # Link 0 (9) carries flows 0, 1, 2; link 1 (2) carries flow 2 too. Flow 2 is held to 2 by link 1;
    # flows 0 and 1 split the 7 left on link 0: 3.5 each.
    rates, limiter = max_min([math.inf] * 3, [(0,), (0,), (0, 1)], {0: 9.0, 1: 2.0})
    assert rates == pytest.approx([3.5, 3.5, 2.0])
    assert limiter == [0, 0, 1]


def test_capped_flow_leaves_its_share_to_the_others():
    rates, limiter = max_min([1.0, math.inf], [(0,), (0,)], {0: 9.0})
    assert rates == pytest.approx([1.0, 8.0])
    assert limiter == [NO_LINK, 0]


def test_water_level():
    assert water_level([1.0, 2.0, math.inf], 9.0) == pytest.approx(6.0)
    assert water_level([1.0, 2.0], 9.0) == math.inf
    assert water_level([5.0, 5.0], 6.0) == pytest.approx(3.0)


def test_link_fills_before_the_video_headroom():
    # Link 10, headroom 9: two calls wanting 6 and one TCP flow rise together; the link fills at 10/3 each,
    # before the calls (2 x 10/3 = 6.7) reach their headroom of 9.
    rates, limited = share_one_link(10.0, 9.0, [6.0, 6.0, math.inf], [True, True, False])
    assert rates == pytest.approx([10 / 3] * 3)
    assert limited == [True, True, True]


def test_headroom_fills_first_when_tcp_wants_little():
    # TCP capped at 0.5: the link would reach level 4.75 but the calls' headroom fills at 4.5 each;
    # TCP keeps its 0.5 (own cap, not limited by the link).
    rates, limited = share_one_link(10.0, 9.0, [6.0, 6.0, 0.5], [True, True, False])
    assert rates == pytest.approx([4.5, 4.5, 0.5])
    assert limited == [True, True, False]


caps = st.one_of(st.just(math.inf), st.floats(0.01, 50.0))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(capacity=st.floats(0.5, 100.0), flows=st.lists(st.tuples(caps, st.booleans()), min_size=1, max_size=8))
def test_per_link_closed_form_equals_progressive_filling(capacity, flows):
    flow_caps = [c for c, _ in flows]
    is_video = [v for _, v in flows]
    headroom = 0.9 * capacity
    fast, limited = share_one_link(capacity, headroom, flow_caps, is_video)
    paths = [(0, 1) if v else (0,) for v in is_video]
    general, limiter = max_min(flow_caps, paths, {0: capacity, 1: headroom})
    assert fast == pytest.approx(general, rel=1e-9, abs=1e-9)
    assert sum(fast) <= capacity * (1 + 1e-9)
    assert sum(r for r, v in zip(fast, is_video) if v) <= headroom * (1 + 1e-9)
    for rate, cap, lim in zip(fast, flow_caps, limited):
        assert rate <= cap * (1 + 1e-9)
        if not lim:
            assert rate == pytest.approx(cap)
