"""A video call climbing back after a yield, at its sender's pace, against the closed-form integral.

The emulated sender (``sim.emu.media.RateController``, as GCC) climbs back by 8% a second once the queue it yielded
to is gone, so from its minimum 350 kbit/s to its 1.5 Mbit/s target takes T = ln(1.5 / 0.35) / ln(1.08) = 18.9 s
and carries (1.5e6 - 0.35e6) / ln(1.08) bits. The simulator replays that climb as steps over [0, 1], [1, 3], [3, 7],
[7, 15] s..., each at the exponential's mean over it, so the bits at every step's end (and over the whole climb)
are the closed form's.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim.des.flows import climb_step, depth_after_bps, descent_step
from sim.des.tcp import FRAME_BYTES, GOODPUT_FACTOR

GROWTH = math.log(1.08)  # 8% a second
TARGET, MINIMUM = 1.5e6, 350e3
CLIMB_S = math.log(TARGET / MINIMUM) / GROWTH  # 18.91 s
CLIMB_BITS = (TARGET - MINIMUM) / GROWTH  # the integral of 350e3 x 1.08^t over [0, T]
LINE_BPS = 2e6  # the uplink of these cases


def _cuts(from_bps: float) -> tuple[list[tuple[float, float, float]], float]:
    """A yielding sender's cuts as the fluid model follows them, by hand: ``from_bps`` for 0.2 s (two reports), then
    x 0.85 every 0.3 s while above the minimum, taken as steps of 1, 2, 4, 8 cuts, each at its cuts' mean rate; the
    (start, end, rate) of each step from the yield's start, and when the minimum is reached (s).

    From 1.5 Mbit/s the cuts are 1.275, 1.084, 0.921, 0.783, 0.666, 0.566, 0.481, 0.409 Mbit/s, and 1.5 x 0.85^9 =
    0.347 is under 350 kbit/s: steps [0.2, 0.5] at 1.275, [0.5, 1.1] at the mean of the next two, [1.1, 2.3] of the
    next four, [2.3, 2.6] at 0.409, then the minimum from 2.6 s.
    """
    rates, rate_bps = [], from_bps * 0.85
    while rate_bps > MINIMUM:
        rates.append(rate_bps)
        rate_bps *= 0.85
    segments, first, size = [(0.0, 0.2, from_bps)], 0, 1
    while first < len(rates):
        group = rates[first:first + size]
        segments.append((0.2 + 0.3 * first, 0.2 + 0.3 * (first + len(group)), sum(group) / len(group)))
        first, size = first + len(group), 2 * size
    return segments, 0.2 + 0.3 * len(rates)


def _yield(from_bps: float, upload_bits: float) -> tuple[float, float]:
    """An upload of ``upload_bits`` (on the wire) beside a call yielding from ``from_bps``: the upload takes what the
    call's cuts leave of the line; how long it takes (s) and the call's bits meanwhile."""
    segments, floor_s = _cuts(from_bps)
    left_bits, call_bits = upload_bits, 0.0
    for start_s, end_s, rate_bps in segments:
        span_s = min(end_s - start_s, left_bits / (LINE_BPS - rate_bps))
        left_bits -= (LINE_BPS - rate_bps) * span_s
        call_bits += rate_bps * span_s
        if left_bits <= 1e-6:
            return start_s + span_s, call_bits
    rest_s = left_bits / (LINE_BPS - MINIMUM)
    return floor_s + rest_s, call_bits + MINIMUM * rest_s


def test_the_steps_carry_the_exponentials_bits_and_stay_between_its_values():
    elapsed_s, bits, steps = 0.0, 0.0, 0
    while True:
        rate_bps, end_s = climb_step(MINIMUM, TARGET, elapsed_s)
        if end_s == math.inf:
            break
        # each step's rate lies between the curve's value at its start and at its end
        assert MINIMUM * 1.08**elapsed_s < rate_bps < MINIMUM * 1.08**end_s
        bits += rate_bps * (end_s - elapsed_s)
        # at every step's end the staircase has carried what the exponential has
        assert bits == pytest.approx(MINIMUM * (1.08**end_s - 1) / GROWTH, rel=1e-12)
        elapsed_s = end_s
        steps += 1
    assert steps == 5  # ends at 1, 3, 7, 15 and 18.9 s
    assert elapsed_s == pytest.approx(CLIMB_S, rel=1e-12)
    assert rate_bps == TARGET
    assert bits == pytest.approx(CLIMB_BITS, rel=1e-12)
    assert climb_step(MINIMUM, TARGET, 0.5) == climb_step(MINIMUM, TARGET, 0.0)  # one rate through a step
    assert climb_step(MINIMUM, MINIMUM, 0.0) == (MINIMUM, math.inf)  # nothing to climb


def test_a_yielding_sender_steps_down_its_cuts_to_its_minimum():
    # its rate and when that rate ends, from the yield's start: 1.5 Mbit/s until the first cut at 0.2 s, then x 0.85
    # every 0.3 s, in steps of 1, 2, 4... cuts at their mean; the ninth cut (1.5 x 0.85^9 = 347 kbit/s) would pass
    # the 350 kbit/s minimum, so the last step is the eighth cut alone, and from 2.6 s on the minimum, with no end
    assert descent_step(TARGET, MINIMUM, 0.0) == (TARGET, 0.2)
    assert descent_step(TARGET, MINIMUM, 0.19) == (TARGET, 0.2)
    rate_bps, end_s = descent_step(TARGET, MINIMUM, 0.2)
    assert (rate_bps, end_s) == (pytest.approx(1.275e6), pytest.approx(0.5))
    # the second and third cuts are one step (0.5 to 1.1 s) at their mean, the fourth to seventh the next
    rate_bps, end_s = descent_step(TARGET, MINIMUM, 0.6)
    assert (rate_bps, end_s) == (pytest.approx(TARGET * (0.85**2 + 0.85**3) / 2), pytest.approx(1.1))
    assert descent_step(TARGET, MINIMUM, 1.0) == (rate_bps, end_s)
    rate_bps, end_s = descent_step(TARGET, MINIMUM, 1.1)
    assert (rate_bps, end_s) == (pytest.approx(TARGET * sum(0.85**c for c in range(4, 8)) / 4), pytest.approx(2.3))
    rate_bps, end_s = descent_step(TARGET, MINIMUM, 2.5)
    assert (rate_bps, end_s) == (pytest.approx(TARGET * 0.85**8), pytest.approx(2.6))
    assert descent_step(TARGET, MINIMUM, 2.6) == (MINIMUM, math.inf)
    assert descent_step(MINIMUM, MINIMUM, 0.0) == (MINIMUM, math.inf)  # nothing to cut


def _line():
    # a 2 Mbit/s uplink, no round trip but its queue, 150 kB buffer: Cubic's standing queue there (0.8 x 0.6 s) is far
    # above video's 25 ms threshold, so a call yields to an upload
    return topology(site("s", down_bps=100e6, up_bps=2e6, buffer_bytes=150_000))


def _upload(start_s: float) -> dict:
    # beside a call held at 350 kbit/s the upload has 1.65 Mbit/s on the wire: this size takes it 10 s
    return transfer("s", start_s, 1.65e6 * 10 / 8 * GOODPUT_FACTOR, "up")


def _md1_s(load_bps: float, capacity_bps: float) -> float:
    rho, service_s = load_bps / capacity_bps, FRAME_BYTES * 8 / capacity_bps
    return rho * service_s / (2 * (1 - rho))


def _both_ways(sessions: pd.DataFrame) -> pd.DataFrame:
    """The records with the shortcuts on, checked equal to those without."""
    fast = simulate(_line(), sessions, horizon_s=120.0, bin_s=10.0, skip_unobserved=True).records
    plain = simulate(_line(), sessions, horizon_s=120.0, bin_s=10.0, skip_unobserved=False).records
    pd.testing.assert_frame_equal(fast, plain, rtol=1e-9)
    return fast.set_index("start_s")


def test_a_call_climbs_back_from_its_minimum_after_an_upload():
    # a call from 0 to 60 s; an upload from 10 s: its start-up is three round trips of the queues the call's 1.5
    # Mbit/s makes (M/D/1, both ways): two of handshakes and its request's (a pipe of under 10 segments: no slow start,
    # the handover round trip alone), then it takes what the call leaves. The
    # call: 1.5 Mbit/s until the upload is active, its sender's cuts down to 350 kbit/s over 2.6 s (_cuts), 350
    # kbit/s to the upload's end (the upload at 1.65 Mbit/s then), the climb (18.9 s, CLIMB_BITS), then 1.5 Mbit/s
    # to 60 s. The upstream is the call's worse direction.
    records = _both_ways(trace(call("s", 0.0, 60.0), _upload(10.0)))
    upload, video = records.loc[10.0], records.loc[0.0]
    active_s = 10.0 + 3 * (_md1_s(TARGET, 2e6) + _md1_s(TARGET, 100e6))
    took_s, yield_bits = _yield(TARGET, 1.65e6 * 10)
    assert 10.7 < took_s < 10.8  # the cuts carried 1.25 Mbit more than the minimum would have: 0.76 s more upload
    assert upload["end_s"] == pytest.approx(active_s + took_s, rel=1e-9)
    end_s = active_s + took_s
    bits = TARGET * active_s + yield_bits + CLIMB_BITS + TARGET * (60 - end_s - CLIMB_S)
    assert video["mean_rate_bps"] == pytest.approx(bits / 60, rel=1e-9)
    assert video["size_bytes"] == pytest.approx(bits / 8, rel=1e-9)
    at_target_s = active_s + 0.2 + 60 - end_s - CLIMB_S  # its first 0.2 s of yield still at its target
    assert video["share_at_target"] == pytest.approx(at_target_s / 60, rel=1e-9)
    assert video["share_below_min"] == 0.0
    assert video["bottleneck"] == "access_up_tcp_queue"  # held 10 s, then 18.9 s climbing back from that


def test_a_second_upload_cuts_the_climb_short():
    # as above, and a second upload at 25 s: the climb from the first upload's end runs its steps to 3 s (the
    # exponential's bits over 3 s) and part of the step from 3 to 7 s at that step's rate, until the second upload is
    # active (its start-up's three round trips of the queues the climbing call makes); the call then yields from the
    # exponential's value then, its cuts taking it to its minimum, until the second upload's last byte leaves, and
    # climbs all the way. The second upload's record ends a timer's wait later (a lost tail: sim.des.tails; after
    # PTO = 2 SRTT, 2 x the 0.48 s standing queue and the call's M/D/1 queues of about 1 ms), which frees no capacity.
    records = _both_ways(trace(call("s", 0.0, 60.0), _upload(10.0), _upload(25.0)))
    first_active_s = 10.0 + 3 * (_md1_s(TARGET, 2e6) + _md1_s(TARGET, 100e6))
    first_took_s, first_yield_bits = _yield(TARGET, 1.65e6 * 10)
    first_end_s = first_active_s + first_took_s
    assert records.loc[10.0, "end_s"] == pytest.approx(first_end_s, rel=1e-9)
    assert 3 < 25 - first_end_s < 7  # the climb is in its step from 3 to 7 s when the second upload arrives
    step_bps = MINIMUM * (1.08**7 - 1.08**3) / (4 * GROWTH)  # the exponential's mean over [3, 7] s
    second_active_s = 25 + 3 * (_md1_s(step_bps, 2e6) + _md1_s(TARGET, 100e6))
    climbed_s = second_active_s - first_end_s
    second_took_s, second_yield_bits = _yield(MINIMUM * 1.08**climbed_s, 1.65e6 * 10)
    second_end_s = second_active_s + second_took_s
    assert records.loc[25.0, "end_s"] == pytest.approx(second_end_s + 2 * 0.48, abs=0.003)
    bits = (TARGET * first_active_s + first_yield_bits + MINIMUM * (1.08**3 - 1) / GROWTH
            + step_bps * (climbed_s - 3) + second_yield_bits + CLIMB_BITS + TARGET * (60 - second_end_s - CLIMB_S))
    assert records.loc[0.0, "mean_rate_bps"] == pytest.approx(bits / 60, rel=1e-9)


def test_a_short_yield_costs_the_cuts_the_sender_makes_in_it():
    # the sender cuts to 0.85 x its rate 0.2 s into a queue over its threshold (two reports) and every 0.3 s after:
    # a 1 s yield from 1.5 Mbit/s costs 1 + floor(0.8 / 0.3) = 3 cuts, so it climbs back from 1.5e6 x 0.85^3
    assert depth_after_bps(1.5e6, 0.19) == 1.5e6
    assert depth_after_bps(1.5e6, 0.2) == pytest.approx(1.5e6 * 0.85)
    assert depth_after_bps(1.5e6, 1.0) == pytest.approx(1.5e6 * 0.85**3)
    # an upload of 1.65 Mbit on the wire beside the call: it takes what the call's steps leave (0.5 Mbit/s for 0.2 s,
    # 0.725 for 0.3 s, 0.998 for 0.6 s, then 1.376): 1.56 s, in which the sender made 1 + floor(1.36 / 0.3) = 5 cuts
    upload = transfer("s", 10.0, 1.65e6 * 1 / 8 * GOODPUT_FACTOR, "up")
    records = _both_ways(trace(call("s", 0.0, 60.0), upload))
    active_s = 10.0 + 3 * (_md1_s(TARGET, 2e6) + _md1_s(TARGET, 100e6))
    took_s, yield_bits = _yield(TARGET, 1.65e6)
    assert 1.4 < took_s < 1.7
    assert records.loc[10.0, "end_s"] == pytest.approx(active_s + took_s, rel=1e-9)
    depth_bps = TARGET * 0.85**5
    climb_s = math.log(TARGET / depth_bps) / GROWTH  # 10.5 s
    bits = TARGET * active_s + yield_bits + (TARGET - depth_bps) / GROWTH + TARGET * (60 - active_s - took_s - climb_s)
    assert records.loc[0.0, "mean_rate_bps"] == pytest.approx(bits / 60, rel=1e-9)


@pytest.mark.parametrize("outage_s, cuts", [(1.2, 2), (3.0, 6), (60.0, None)])
def test_after_an_outage_the_call_climbs_from_where_its_silence_cuts_took_it(outage_s, cuts):
    # a call alone on a 10 Mbit/s line (0-100 s) loses the line at 20 s for outage_s, then has it back (a repair
    # with no backup). Hearing no report, its sender cuts x 0.85 every 0.5 s of silence: after 1.2 s two cuts
    # (1.5 x 0.85^2 = 1.084 Mbit/s), after 3 s six (0.566 Mbit/s), after a minute down to its 350 kbit/s minimum.
    # From the repair it climbs at 8% a second to its target: its bits over the call are the target's for 20 s, none
    # in the outage, the climb's closed form, then the target to the end.
    from sim import linkchanges as lc

    line = lc.LineState(10e6, 10e6, 0.0, 0.0, 150e3, 150e3)
    changes = lc.failover("a", line, None, fault_at_s=20.0, repaired_at_s=20.0 + outage_s, failover_s=outage_s)
    topo = topology(site("a", down_bps=10e6, up_bps=10e6))
    done = simulate(topo, trace(call("a", 0.0, 100.0)), 100.0, 10.0, link_changes=changes).records.iloc[0]
    from_bps = MINIMUM if cuts is None else TARGET * 0.85**cuts
    climb_s = math.log(TARGET / from_bps) / GROWTH
    climb_bits = (TARGET - from_bps) / GROWTH
    back_s = 20.0 + outage_s
    bits = TARGET * 20.0 + climb_bits + TARGET * (100.0 - back_s - climb_s)
    assert done["mean_rate_bps"] == pytest.approx(bits / 100.0, rel=1e-9)
    assert done["share_at_target"] == pytest.approx((100.0 - outage_s - climb_s) / 100.0, rel=1e-9)


def test_a_reshare_within_a_cut_step_leaves_the_calls_rate():
    # A call on a 10 Mbit/s uplink (150 kB buffer: Cubic's standing queue 96 ms, over video's 25 ms threshold) yields
    # from when an upload that outlasts it is active; its cuts fit the 9 Mbit/s headroom whatever the transfers do,
    # so a second, 300 kB upload arriving within a cut's step (a re-share there) changes none of its bits.
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.02, buffer_bytes=150_000), cloud_rtt_s=0.0)
    sessions = [call("a", 0.0, 30.0), transfer("a", 1.0, 1e12, "up")]
    alone = simulate(topo, trace(*sessions)).records.iloc[0]
    beside = simulate(topo, trace(*sessions, transfer("a", 1.9, 300e3, "up"))).records.iloc[0]
    assert alone["app"] == "video" and alone["bottleneck"] == "access_up_tcp_queue"
    assert beside["size_bytes"] == pytest.approx(alone["size_bytes"], rel=1e-12)


def test_a_yield_right_after_an_outage_cuts_from_where_the_call_got_back_to():
    # Silent from 1 s (its line down), the sender has cut once by 1.6 s (x 0.85 for each 0.5 s without a report):
    # back then, its climb's first step is 1.275e6 x 0.08 / ln 1.08 = 1.325 Mbit/s. A standing queue makes it yield
    # at once: its cuts start from that rate, and the outage's clock stops. Released at 3.0 s (1.4 s of overuse: 1 +
    # floor(1.2 / 0.3) = 5 cuts), it climbs from 1.325e6 x 0.85^5 = 588 kbit/s, not from the outage's depth.
    from sim.des.flows import Media

    m = Media(0, (), 1e9, TARGET, MINIMUM, 0.0, 0.0, 100.0)
    m.follow(TARGET, 0.0)
    m.rate_bps = TARGET
    m.follow(0.0, 1.0)
    m.rate_bps = 0.0
    back_bps = 1.275e6 * 0.08 / GROWTH
    assert m.cap_bps(1.6) == pytest.approx(back_bps, rel=1e-12)
    rate_bps = m.yield_cap_bps(1.6, m.cap_bps(1.6))
    assert rate_bps == pytest.approx(back_bps, rel=1e-12)
    m.follow(rate_bps, 1.6, True)
    m.rate_bps = rate_bps
    assert m.silent_s is None and m.yield_s == 1.6
    assert m._origin(3.0)[0] == pytest.approx(back_bps * 0.85**5, rel=1e-12)
