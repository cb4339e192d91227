"""The simulator's hot paths written out, against the functions they stand for, to the bit.

Where every transfer or reservation step passes, a few helpers are written out in place (:func:`sim.des.tcp.slow_start`
without :func:`~sim.des.tcp.overflow` where no standing queue is, :meth:`sim.des.links.Link.sync` without
:func:`~sim.des.links.passed`, a lone transfer's share without :func:`~sim.des.linkshare.saturation`, a tail's round
trips only when :func:`sim.des.tails.may_wait`). Each must give what the helpers give, values and types alike, on
random inputs; whole runs with and without the shortcuts are compared in ``test_des_shortcuts.py``.
"""

from __future__ import annotations

import math
import random

import pytest

from sim.des import queueing, tails, tcp
from sim.des.flows import Media, Transfer, earliest_finish_s, ended_transfers
from sim.des.links import Link, passed
from sim.des.linkshare import (
    _share_unweighted,
    carry_alone,
    congestion_loss,
    idle_link,
    lone_finish_s,
    saturation,
    share_generally,
)


def _link(capacity_bps: float = 10e6, buffer_bytes: float = 60_000.0) -> Link:
    return Link("a/down", "a", "access", "down", capacity_bps, buffer_bytes, 0.0, 0.0, 0.0, 60.0, 11)


@pytest.mark.parametrize("seed", range(4))
def test_slow_start_is_its_rounds_overflow_and_payload_put_together(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        size = rng.choice([1.0, 1448.0, 14480.0, rng.uniform(1, 5e6), rng.uniform(1, 5e4)])
        rate_bps, rtt_s = rng.uniform(1e5, 1e9), rng.uniform(1e-3, 0.3)
        extra, handshakes = rng.randint(0, 3), rng.choice([0, 2])
        room = rng.choice([math.inf, rng.uniform(0, 200), float(rng.randint(0, 100))])
        start = tcp.slow_start(size, rate_bps, rtt_s, extra, handshakes, room)
        rounds, recovery = tcp.overflow(size, tcp.slow_start_rounds(size, rate_bps, rtt_s), room)
        if not recovery and tcp.sent_in(size, rounds) < size:  # bytes left after slow start: the handover
            recovery = tcp.HANDOVER_RTTS
        setup_s = (handshakes + extra) * rtt_s
        expected = tcp.StartUp(setup_s + (rounds + recovery) * rtt_s, tcp.sent_in(size, rounds), setup_s,
                               handshakes + extra, handshakes + extra + rounds + recovery, recovery)
        assert type(start) is tcp.StartUp and start == expected
        assert [type(v) for v in start] == [type(v) for v in expected]


def test_a_draw_past_every_chance_waits_for_nothing_and_any_other_as_before():
    rng = random.Random(1)
    for _ in range(20_000):
        setup_loss, tail_loss = rng.choice([0.0, rng.uniform(0, 0.05)]), rng.choice([0.0, rng.uniform(0, 0.3)])
        rounds, u = rng.randint(0, 4), rng.random()
        args = (u, setup_loss, tail_loss, rounds, rng.uniform(1, 1e6), rng.uniform(0.005, 0.3), rng.uniform(0.005, 0.3))
        if not tails.may_wait(u, setup_loss, tail_loss, rounds):
            assert tails.delay_s(*args) == 0.0
        edge, wait_s = 0.0, 0.0  # delay_s's definition: the first chance laid end to end that holds u
        n = tails.segments(args[4])
        for chance, way_s in zip(tails.chances(setup_loss, tail_loss, rounds, n), tails.delays_s(args[5], args[6], n)):
            edge += chance
            if u < edge:
                wait_s = way_s
                break
        assert tails.delay_s(*args) == wait_s


def test_a_links_reservation_cursor_moves_as_passed_moves_it():
    rng = random.Random(2)
    steps_s = sorted(rng.uniform(0, 100) for _ in range(200)) + [100.0, 100.0]
    steps_bps = [rng.choice([0.0, 1e5, 2e5, 3e5]) for _ in steps_s]
    link = _link()
    link.reserve(steps_s, steps_bps)
    k = 0
    for now_s in sorted(rng.uniform(-1, 101) for _ in range(300)) + [100.0, 101.0]:
        k, next_s = passed(steps_s, k, now_s)
        reserved_bps = steps_bps[k - 1] if k else 0.0
        changed = link.next_step_s <= now_s and reserved_bps != link.reserved_bps
        assert link.sync(now_s) == changed
        assert (link.step, link.next_step_s, link.reserved_bps) == (k, next_s, reserved_bps)
        assert link.free_bps == max(0.0, link.capacity_bps - reserved_bps)
        assert link.free_headroom_bps == max(0.0, link.headroom_bps - reserved_bps)


@pytest.mark.parametrize(("cap_bps", "long"), [(4e6, False), (40e6, False), (40e6, True), (10e6, True)])
@pytest.mark.parametrize("reserved_bps", [0.0, 3e6, 12e6])
def test_a_lone_transfers_share_is_its_cap_or_all_that_is_left_saturating_as_saturation_says(cap_bps, long,
                                                                                             reserved_bps):
    link = _link()
    link.reserve([0.0], [reserved_bps])
    link.sync(0.0)
    flow = Transfer(1, (link,), 1e6, 1e6, 0.0, cap_bps, 0.03, 0.0)
    flow.long = long
    carry_alone(flow, link, 0.0)
    limited = cap_bps > link.free_bps
    assert flow.rate_bps == (link.free_bps if limited else cap_bps)
    assert flow.limiter is (link if limited else None)
    assert link.saturated == saturation((flow,), (limited,)) and link.load_bps == flow.rate_bps
    assert link.congestion_loss == congestion_loss(link, [flow])
    assert link.history[1][-1] == flow.rate_bps and link.media_load_bps == 0.0
    idle_link(link, 1.0)  # the transfer gone: nothing carried, nothing saturated, the whole free rate to a newcomer
    assert (link.load_bps, link.saturated, link.congestion_loss) == (0.0, queueing.NOT_SATURATED, 0.0)
    assert link.new_share_bps == link.free_bps and link.history[0][-1] == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_a_lone_transfers_end_looked_for_until_a_time_is_its_end_or_inf_when_it_ends_after(seed):
    # a slow line's many reservation steps: the walk stops at the first step at or after until_s, and says inf only
    # for a transfer that ends after until_s (which the caller would not replay anyway)
    rng = random.Random(seed)
    link = _link(capacity_bps=2e6)
    steps_s = sorted(rng.uniform(0, 200) for _ in range(400))
    link.reserve(steps_s, [rng.choice([0.0, 0.1e6, 0.2e6, 1.9e6, 2.5e6]) for _ in steps_s])
    for _ in range(300):
        flow = Transfer(1, (link,), 1e6, rng.uniform(1e3, 2e7), 0.0, rng.uniform(0.5e6, 4e6), 0.03, 0.0)
        from_s, until_s = rng.uniform(0, 150), rng.choice([rng.uniform(0, 250), math.inf])
        whole_s = lone_finish_s(flow, link, from_s, [])
        bounded_s = lone_finish_s(flow, link, from_s, [], None, until_s)
        assert bounded_s == whole_s or (bounded_s == math.inf and whole_s > until_s)


def _transfers(rng: random.Random, n: int) -> list[Transfer]:
    """Transfers in every state finish_s tells apart: done, stalled, sending; NaN-free, ties included."""
    flows = []
    for _ in range(n):
        flow = Transfer(0, (), 1e6, 1e6, 0.0, 1e7, 0.02, 0.0)
        flow.remaining_bytes = rng.choice([0.0, -1.0, rng.uniform(1, 1e6), 1448.0])
        flow.rate_bps = rng.choice([0.0, -0.0, rng.uniform(1e3, 1e8), 1e6])
        flow.since_s = rng.choice([0.0, 1.0, rng.uniform(0, 100)])
        flows.append(flow)
    return flows


@pytest.mark.parametrize("seed", range(4))
def test_transfers_first_end_and_those_ended_are_finish_s_written_out(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        flows = _transfers(rng, rng.randint(0, 40))
        best_s = rng.choice([math.inf, rng.uniform(0, 200)])
        expected_s = min([best_s, *(f.finish_s() for f in flows)])
        got_s = earliest_finish_s(flows, best_s)
        assert got_s == expected_s and type(got_s) is type(expected_s)
        limit_s = rng.choice([math.inf, 1.0, rng.uniform(0, 200)])
        assert ended_transfers(flows, limit_s) == [f for f in flows if f.finish_s() <= limit_s]


def _busy_line(rng: random.Random) -> tuple[Link, list[Transfer], list[Media]]:
    """A line with 2-40 transfers (some already sending) and 0-3 calls, its capacity tight or ample, with a queue."""
    link = _link(rng.choice([2e6, 10e6, 50e6]), rng.choice([30_000.0, 150_000.0]))
    media = []
    for k in range(rng.randint(0, 3)):
        media.append(Media(k, (link,), 50e6, rng.choice([0.5e6, 1.5e6, 5e6]), 0.35e6, 0.01, 0.0, 100.0))
        link.add_media(media[-1].demand_bps, min(media[-1].demand_bps, media[-1].min_bps))
    transfers = []
    for _ in range(rng.randint(2, 40)):
        flow = Transfer(7, (link,), 1e6, rng.uniform(1, 1e6), 0.0, rng.choice([1e5, 1e6, rng.uniform(1e4, 6e7)]),
                        rng.uniform(0.01, 0.3), rng.choice([0.0, 0.005]))
        flow.long = rng.random() < 0.3
        flow.rate_bps = rng.choice([0.0, flow.cap_bps])
        transfers.append(flow)
    return link, transfers, media


def _state(link: Link, transfers: list[Transfer], media: list[Media]) -> tuple:
    return (link.load_bps, link.saturated, link.new_share_bps, link.congestion_loss, link.media_held,
            link.queue_delay_s, [(f.rate_bps, f.limiter is link, f.remaining_bytes, f.since_s, f.limited_bits)
                                 for f in transfers],
            [(m.rate_bps, m.cause is link, m.yielded, m.limiter is link) for m in media])


@pytest.mark.parametrize("seed", range(4))
def test_a_busy_lines_share_written_out_is_the_general_shares_to_the_bit(seed):
    rng = random.Random(seed)
    for _ in range(300):
        times_s = (1.0, rng.uniform(1.0, 3.0), rng.uniform(3.0, 40.0))  # calls yield, cut, climb back between
        state = rng.getstate()
        outcomes = []
        for share in (_share_unweighted, share_generally):
            rng.setstate(state)  # the same line for both
            link, transfers, media = _busy_line(rng)
            for now_s in times_s:
                link.media_steady = False  # (as share_link sets it before either)
                share(link, transfers, media, now_s)
                outcomes.append(_state(link, transfers, media))
        written_out, general = outcomes[:3], outcomes[3:]
        assert repr(written_out) == repr(general)
        assert [type(v) for o in written_out for v in o[:4]] == [type(v) for o in general for v in o[:4]]
