"""Losses no duplicate ACK repairs, and the timers they wait for (sim.des.tails), against hand arithmetic.

Figures restated: RFC 8985's probe timeout 2 SRTT (at least 10 ms; 200 ms more for a lone segment in flight), RFC
6298's RTO SRTT + max(4 RTTVAR, 200 ms) with RTTVAR = SRTT / 2, a lost SYN sent again after 1 s; a loss among a
transfer's last 3 segments waits for the probe. MSS 1448 B in 1514 B frames.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import site, topology, trace, transfer

from sim import des
from sim.des import overflow, tails

G = 1448 / 1514
# The mean wait of the case below, by hand: each way's chance times its wait (0.0155 s)
EXPECTED_S = 0.01 * 1.0 + 0.01 * 0.25 + 0.029701 * 0.01 * 0.35 + 0.029701 * 0.99 * 0.1


def test_the_chances_and_the_expected_delay_on_a_made_up_loss_rate():
    # 1% loss at the start and at the end, 2 setup round trips, 100 kB (70 segments), SRTT 50 ms:
    # a SYN lost 0.01; the other setup packet 1 - 0.99 = 0.01; the last 3 segments 1 - 0.99^3 = 0.029701, with the
    # probe lost too 0.029701 x 0.01. Waits: 1 s; RTO 0.05 + max(0.1, 0.2) = 0.25 s; PTO max(0.1, 0.01) = 0.1 s, and
    # 0.1 + 0.25 = 0.35 s with the probe lost.
    syn, setup, probe_lost, tail = tails.chances(0.01, 0.01, 2, 70)
    assert (syn, setup) == (pytest.approx(0.01), pytest.approx(0.01))
    assert probe_lost == pytest.approx(0.029701 * 0.01) and tail == pytest.approx(0.029701 * 0.99)
    assert tails.delays_s(0.05, 0.05, 70) == pytest.approx((1.0, 0.25, 0.35, 0.1))
    assert sum(c * d for c, d in zip(tails.chances(0.01, 0.01, 2, 70), tails.delays_s(0.05, 0.05, 70))) == \
        pytest.approx(EXPECTED_S, rel=1e-12)
    # a request on a kept-alive connection opens none: no SYN; a chunk's extra request round trip still exposes one
    assert tails.chances(0.01, 0.01, 1, 70, opens=False)[:2] == (0.0, pytest.approx(0.01))
    assert tails.chances(0.01, 0.01, 0, 70, opens=False)[:2] == (0.0, 0.0)


def test_the_draws_give_that_mean_and_those_chances():
    draws = tails.uniforms(7, np.arange(200_000))
    delays = np.array([tails.delay_s(u, 0.01, 0.01, 2, 100e3, 0.05, 0.05) for u in draws])
    expected_s = EXPECTED_S  # 0.0155 s (above)
    sd_s = math.sqrt(0.01 * 1.0 + 0.01 * 0.25**2 + 0.000297 * 0.35**2 + 0.029404 * 0.1**2 - expected_s**2)
    assert abs(delays.mean() - expected_s) < 4 * sd_s / math.sqrt(len(draws))
    for wait_s, chance in zip((1.0, 0.25, 0.35, 0.1), (0.01, 0.01, 0.000297, 0.029404)):
        share = np.isclose(delays, wait_s).mean()
        assert abs(share - chance) < 4 * math.sqrt(chance / len(draws))
    assert np.isclose(delays, 0.0).mean() == pytest.approx(1 - 0.049701, abs=0.003)


def test_timers_follow_the_rfcs_and_linux_floors():
    assert tails.pto_s(0.002, 70) == 0.010                 # 2 SRTT under the 10 ms floor
    assert tails.pto_s(0.1, 70) == pytest.approx(0.2)
    assert tails.pto_s(0.3, 1) == pytest.approx(0.8)       # a lone segment in flight: 200 ms more, 0.8 s ...
    assert tails.pto_s(0.1, 1) == pytest.approx(0.3)       # ... but never past the RTO: 0.4 s cut to 0.1 + 0.2
    assert tails.rto_s(0.02) == pytest.approx(0.22)        # the 200 ms floor of the variance term
    assert tails.rto_s(0.3) == pytest.approx(0.9)          # 0.3 + 4 x 0.15
    assert tails.delay_s(0.0, 0.0, 0.0, 2, 1e5, 0.05, 0.05) == 0.0  # no loss, no wait, whatever the draw


def test_draws_are_the_seeds_and_each_sessions_alone():
    keys = np.arange(1000)
    whole = tails.uniforms(3, keys)
    assert np.array_equal(whole, tails.uniforms(3, keys))
    assert np.array_equal(whole[500:], tails.uniforms(3, keys[500:]))      # a part draws as the whole does
    assert not np.array_equal(whole, tails.uniforms(4, keys))
    assert ((whole >= 0) & (whole < 1)).all() and abs(whole.mean() - 0.5) < 4 * math.sqrt(1 / 12 / 1000)
    assert np.array_equal(tails.uniforms(None, keys), tails.uniforms(0, keys))


def test_a_sessions_key_is_its_site_and_its_rank_there_whatever_else_the_trace_holds():
    both = tails.session_keys(np.array(["a", "b", "a", "b", "a"]))
    alone = tails.session_keys(np.array(["b", "b"]))        # a shard of site b: its sessions numbered anew
    assert np.array_equal(alone, both[[1, 3]])
    assert len(set(both.tolist())) == 5
    assert both[2] - both[0] == 1 and both[4] - both[2] == 1  # its rank among its site's sessions, in trace order


# A 1 Mbit/s line, 10 ms RTT, a 15 kB buffer (9.9 packets: Cubic keeps 0.36 + 0.038 x 9.9 = 0.737 of 0.8 of it,
# 0.8 x 0.737 x 0.12 s = 70.8 ms). A long download holds it; 10 kB fetches (7 segments) come every 2 s: each pays
# 10 + 70.8 ms a round trip. Their window would fill their path (half the line: 0.5e6 x G x 0.0808 / (8 x 1448) =
# 3.3 segments) before the initial window's 10, so after the 2 handshakes and their request's round trip (no
# slow-start round: the handover alone) they share the line: 10 kB at 0.5 Mbit/s. At their start they see the loss
# of the download alone overflowing the buffer, at their end that of both flows at 0.5 Mbit/s (sim.des.overflow;
# worked out in the test below).
SLOW_BPS, SLOW_RTT_S, SLOW_BUFFER = 1e6, 0.010, 15_000


def _slow_line():
    return topology(site("a", down_bps=SLOW_BPS, up_bps=SLOW_BPS, rtt_s=SLOW_RTT_S, buffer_bytes=SLOW_BUFFER))


def _fetches_beside_a_download(seed: int, n: int = 300):
    sessions = trace(transfer("a", 0.0, 200e6), *(transfer("a", 5.0 + 2.0 * k, 10e3) for k in range(n)))
    window = des.RunWindow(0.0, 5.0 + 2.0 * n + 10.0, 60.0)
    return des.run(sessions, _slow_line(), window, seed=seed).records


def test_fetches_behind_an_overflowing_queue_wait_exactly_the_timer_their_draw_gives():
    packets = SLOW_BUFFER / 1514
    rtt_s = SLOW_RTT_S + 0.8 * (0.36 + 0.038 * packets) * SLOW_BUFFER * 8 / SLOW_BPS
    # The download overflows the buffer (sim.des.overflow): at the brim the round trip is 0.13 s, its window
    # 1e6 x 0.13 / 12,112 = 10.73 packets, Cubic's K = cbrt(10.73 x 0.75) = 2.004 s, the Reno-friendly cycle
    # 0.3 x 10.73 / 0.52941 x 80.7 ms = 0.4908 s, the shorter: 0.05 x 0.13 / 0.4908 at a fetch's start; at its end it
    # shares the line, two flows of 5.37 packets cycling in 0.2454 s: 0.05 x 2 x 0.13 / 0.2454.
    reno_s = 0.3 * (SLOW_BPS * 0.13 / 12112) / (0.9 / 1.7) * rtt_s
    loss, end_loss = 0.05 * 0.13 / reno_s, 0.05 * 2 * 0.13 / (reno_s / 2)
    assert (loss, end_loss) == (pytest.approx(0.01324, abs=1e-5), pytest.approx(0.05297, abs=1e-5))
    records = _fetches_beside_a_download(seed=11)
    fetches = records.iloc[1:]
    plain_s = 3 * rtt_s + 10e3 * 8 / (SLOW_BPS / 2 * G)
    draws = tails.uniforms(11, tails.session_keys(records["site"].to_numpy()))[1:]
    expected = [plain_s + tails.delay_s(u, loss, end_loss, 2, 10e3, rtt_s, rtt_s) for u in draws]
    assert fetches["duration_s"].to_numpy() == pytest.approx(np.array(expected), rel=1e-9)
    # a SYN 1.3%, the other setup packet 1.3%, the last 3 segments 1 - (1 - 0.053)^3 = 15.1%: about 18% of them
    waited = (fetches["duration_s"] > plain_s + 1e-9).mean()
    chance = sum(tails.chances(loss, end_loss, 2, 7))
    assert chance == pytest.approx(0.0132 + 0.0132 + 0.151, abs=0.002)
    assert abs(waited - chance) < 4 * math.sqrt(chance * (1 - chance) / len(fetches))
    # by hand: a draw under the SYN's chance waits the initial RTO, 1 s; one in the tail's (the probe repairs it),
    # past both setup chances and the probe-lost one, waits PTO = 2 x 80.8 ms (7 segments: no lone-segment extra)
    syn_lost = np.flatnonzero(draws < loss)
    assert len(syn_lost) and fetches["duration_s"].to_numpy()[syn_lost] == pytest.approx(plain_s + 1.0, rel=1e-9)
    tail_edge = 2 * loss + (1 - (1 - end_loss) ** 3) * end_loss
    probed = np.flatnonzero((draws > tail_edge + 1e-6) & (draws < tail_edge + 0.1))
    assert len(probed) and fetches["duration_s"].to_numpy()[probed] == pytest.approx(plain_s + 2 * rtt_s, rel=1e-9)


def test_the_same_seed_gives_the_same_tails_and_another_seed_others():
    first, again, other = (_fetches_beside_a_download(seed, 100) for seed in (5, 5, 6))
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert not np.array_equal(first["duration_s"].to_numpy(), other["duration_s"].to_numpy())


def test_no_tails_on_an_unloaded_link():
    # 10 kB fetches, one at a time, nothing else: 3 round trips of 20 ms each, whatever the seed.
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.02))
    sessions = trace(*(transfer("a", 2.0 * k, 10e3) for k in range(200)))
    for seed in (None, 1, 2):
        records = des.run(sessions, topo, des.RunWindow(0.0, 1000.0, 60.0), seed=seed).records
        assert records["duration_s"].to_numpy() == pytest.approx(np.full(200, 0.06), rel=1e-9)


@pytest.mark.parametrize("beside", [False, True])
@pytest.mark.parametrize("direction", ["down", "up"])
def test_a_transfer_ending_past_the_horizon_is_not_completed_however_it_ends(beside, direction):
    # A 10 kB fetch at 99.99 s on a 10 Mbit/s, 20 ms line needs 3 round trips (60 ms): its last byte comes at
    # 100.05 s, past the 100 s horizon, whether it is finished at its start (an idle line) or followed (a long
    # download beside it, or the other way).
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.02))
    others = [transfer("a", 0.0, 200e6)] if beside else []
    sessions = trace(*others, transfer("a", 99.99, 10e3, direction=direction))
    records = des.run(sessions, topo, des.RunWindow(0.0, 100.0, 60.0), seed=1).records
    assert not records["completed"].iloc[-1]
    assert math.isnan(records["end_s"].iloc[-1])


def test_a_sessions_rank_counts_its_sites_earlier_sessions_in_trace_order():
    sites = ["b", "a", "b", "b", "a", "c"]
    keys = tails.session_keys(np.array(sites, dtype=object))
    firsts = {site: keys[sites.index(site)] for site in set(sites)}  # each site's first session has rank 0
    assert [int(key - firsts[site]) for key, site in zip(keys, sites)] == [0, 0, 1, 2, 1, 0]
    assert np.array_equal(tails.session_keys(pd.Series(sites, dtype="str")), keys)  # a Series keys alike


def _fetches_overflowing_their_last_round(n: int = 300):
    # A 10 Mbit/s line, 50 ms, a 10 kB buffer that a long download holds: the room its standing queue leaves is less
    # than a 10 kB fetch's 7 segments, which go in one round (10 segments of initial window; the path holds
    # 10e6 x G x 0.05 / 11,584 = 41), so that round overflows and loses the fetch's tail, which the probe repairs:
    # 2 handshakes, 1 data round and 2 round trips of probe (tcp.TAIL_PROBE_RTTS), 5 round trips in all.
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.05, buffer_bytes=10_000))
    sessions = trace(transfer("a", 0.0, 2e9), *(transfer("a", 5.0 + 2.0 * k, 10e3) for k in range(n)))
    return des.run(sessions, topo, des.RunWindow(0.0, 5.0 + 2.0 * n + 10.0, 60.0), seed=11).records.iloc[1:]


def test_a_tail_lost_in_the_last_round_waits_for_one_probe_and_draws_no_second_tail_loss(monkeypatch):
    # The buffer's loss made 20 times the fitted (sim.des.overflow's FULL_SHARE 0.05 -> 1.0: about 2%), so that many
    # fetches' draws fall where a tail loss would be: none may wait for a second probe (2 round trips more) or for a
    # lost probe's RTO. Only the setup's timers remain: a lost SYN (1 s) or the other setup packet (the RTO,
    # SRTT + max(4 x SRTT / 2, 0.2 s)).
    monkeypatch.setattr(overflow, "FULL_SHARE", 1.0)
    fetches = _fetches_overflowing_their_last_round()
    rtt_s = fetches["rtt_s"].to_numpy()
    assert ((rtt_s > 0.05) & (rtt_s < 0.05 + 10_000 * 8 / 10e6)).all()  # the path and part of the buffer
    plain_s = 5 * rtt_s
    waited_s = fetches["duration_s"].to_numpy() - plain_s
    syn, other = np.isclose(waited_s, 1.0, atol=1e-9), np.isclose(waited_s, rtt_s + 0.2, atol=1e-9)
    assert (np.isclose(waited_s, 0.0, atol=1e-9) | syn | other).all()
    assert 0 < (syn | other).sum() < 0.2 * len(fetches)  # about 2 x 2% of them: the setup's two exposures
