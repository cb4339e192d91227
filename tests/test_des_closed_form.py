"""The flow-level simulator against closed forms worked out by hand.

Constants used in the expected values (from the model's documented choices, restated here):
MSS 1448 B carried in 1514 B frames, so TCP goodput is 1448/1514 of the wire rate; initial window 10
segments; 2 round trips of handshakes (TCP, then TLS 1.3 with the request on its last flight) before data;
a line saturated by TCP holds Cubic's standing queue, 0.8 of its buffer (buffers of 17 packets or more).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim.topology import FarEnd, SharedLink

GOODPUT = 1448 / 1514
MSS = 1448
IW_BYTES = 10 * 1448


def test_one_transfer_completion_time_matches_slow_start_plus_fluid():
    # 5 MB down a 10 Mbit/s link, RTT 20 ms (site) + 10 ms (cloud) = 30 ms.
    # Window to fill the pipe: 10e6 * GOODPUT * 0.03 / (8 * 1448) = 24.77 segments -> 2 doublings from 10.
    # Slow start sends 10 + 20 = 30 segments = 43,440 B in those 2 round trips; the next window's data comes a round
    # trip after the second's (the handover: its ACKs to the sender, the data back).
    # Time = 2 RTT (handshakes) + 2 RTT (slow start) + 1 RTT (handover) + (5e6 - 43,440) B * 8 / (10e6 * GOODPUT).
    topo = topology(site("a", down_bps=10e6, up_bps=1e6, rtt_s=0.02), cloud_rtt_s=0.01)
    result = simulate(topo, trace(transfer("a", 100.0, 5e6)))
    expected_s = 5 * 0.03 + (5e6 - 43_440) * 8 / (10e6 * GOODPUT)
    record = result.records.iloc[0]
    assert record["completed"]
    assert record["duration_s"] == pytest.approx(expected_s, rel=1e-9)
    assert record["bottleneck"] == "access_down"


def test_short_transfer_finishes_within_slow_start_in_whole_round_trips():
    # 50 kB at RTT 100 ms on a fast link: rounds so that 14,480 * (2^k - 1) >= 50,000 -> k = 3.
    # Time = 2 handshake RTTs + 3 rounds = 0.5 s, whatever the link rate.
    topo = topology(site("a", down_bps=1e9, up_bps=1e9, rtt_s=0.1))
    record = simulate(topo, trace(transfer("a", 0.0, 50_000))).records.iloc[0]
    assert record["duration_s"] == pytest.approx(0.5, rel=1e-9)
    assert record["bottleneck"] == "start-up"


def test_chunked_transfer_pays_one_request_round_trip_per_extra_chunk():
    # 12 MB in 4.5 MB chunks = 3 chunks: 2 extra request round trips over the unchunked transfer.
    topo = topology(site("a", down_bps=20e6, up_bps=20e6, rtt_s=0.05))
    plain = simulate(topo, trace(transfer("a", 0.0, 12e6, "up", kind="gp2gp"))).records.iloc[0]
    chunked = simulate(topo, trace(transfer("a", 0.0, 12e6, "up", kind="gp2gp", chunk_bytes=4.5e6))).records.iloc[0]
    assert chunked["duration_s"] - plain["duration_s"] == pytest.approx(2 * 0.05, rel=1e-9)


@pytest.mark.parametrize("n_flows", [1, 2, 4, 7])
def test_equal_flows_share_a_link_equally_and_finish_together(n_flows):
    # With no RTT there is no start-up: N flows of S bytes each get C/N; all send their last byte at N*S*8/(C*GOODPUT).
    # The saturated queue drops packets, so a flow may also wait for a timer at its end (sim.des.tails): with no RTT
    # found at its start, its probe after the 10 ms floor, with the RTO's 200 ms after it, or a SYN's 1 s; no more.
    topo = topology(site("a", down_bps=8e6, up_bps=8e6))
    sessions = trace(*(transfer("a", 10.0, 2e6) for _ in range(n_flows)))
    records = simulate(topo, sessions).records
    expected_s = n_flows * 2e6 * 8 / (8e6 * GOODPUT)
    extra_s = records["duration_s"].to_numpy() - expected_s
    timers_s = np.array([0.0, 0.010, 0.010 + 0.200, 0.200, 1.0])
    assert np.abs(extra_s[:, None] - timers_s[None, :]).min(axis=1) == pytest.approx(np.zeros(n_flows), abs=1e-8)


def test_later_flow_gets_the_remaining_share_processor_sharing():
    # No buffer (so no queueing delay) and no RTT: pure processor sharing.
    # Flow 1 (4 MB) alone at C for 1 s, then shares with flow 2 (1 MB): both at C/2.
    # In bytes/s, r = 8e6 * GOODPUT / 8. After 1 s flow 1 has r bytes done; flow 2 needs 1e6 B at r/2
    # -> 2e6/r s; flow 1 then finishes alone.
    topo = topology(site("a", down_bps=8e6, up_bps=8e6, buffer_bytes=0))
    records = simulate(topo, trace(transfer("a", 0.0, 4e6), transfer("a", 1.0, 1e6))).records
    r = 8e6 * GOODPUT / 8
    t2_end = 1.0 + 2e6 / r
    t1_end = t2_end + (4e6 - r * 1.0 - 1e6) / r
    assert records["end_s"].to_numpy() == pytest.approx([t1_end, t2_end], rel=1e-9)


def test_a_flow_joining_a_saturated_link_pays_the_full_buffer_in_every_round_trip():
    # Flow 1 saturates an 8 Mbit/s link whose 150 kB buffer (0.15 s) then holds Cubic's 0.8: 0.12 s. Flow 2
    # arrives at t=1 with RTT 0 + 0.12 s: it spends 2 handshake RTTs (0.24 s) and slow-start rounds before joining
    # the share. At C/2 its window must reach 4e6 * GOODPUT * 0.12 / (8 * 1448) = 39.6 segments: 2 doublings
    # from 10, 0.24 s and 30 segments (43,440 B) more. Neither round overflows the 30 kB (19.8 frames) the standing
    # queue leaves: the first adds its 10 segments to the queue, the second 10 more than it drains (20 sent, two
    # for each ACK of the first). A round trip of handover (0.12 s) follows, so it joins at t = 1 + 0.6 = 1.6 s
    # with 956,560 B left.
    topo = topology(site("a", down_bps=8e6, up_bps=8e6))
    records = simulate(topo, trace(transfer("a", 0.0, 4e6), transfer("a", 1.0, 1e6))).records
    r = 8e6 * GOODPUT / 8
    t2_end = 1.6 + (1e6 - 30 * 1448) / (r / 2)
    assert records["rtt_s"].iloc[1] == pytest.approx(0.12, rel=1e-9)
    assert records["end_s"].iloc[1] == pytest.approx(t2_end, rel=1e-9)


def test_an_upload_started_during_a_download_sees_its_queue_on_the_ack_path():
    # A 50 MB download saturates the 10 Mbit/s downlink for ~40 s, so its 150 kB buffer (0.12 s) holds Cubic's 0.8:
    # 0.096 s. An upload starting at t=10 s finds its own uplink idle but its ACKs queue behind the download:
    # RTT 0.02 + 0.096 s.
    # (The download is then not alone until it ends, so it must be replayed event by event, not skipped over.)
    topo = topology(site("a", down_bps=10e6, up_bps=1e6, rtt_s=0.02))
    records = simulate(topo, trace(transfer("a", 0.0, 50e6), transfer("a", 10.0, 10e3, "up"))).records
    assert records["queue_delay_s"].iloc[1] == pytest.approx(0.096, rel=1e-9)
    assert records["rtt_s"].iloc[1] == pytest.approx(0.116, rel=1e-9)


def test_an_upload_after_a_download_ends_finds_the_downlink_idle():
    # The same download, and an upload starting after it ends (~42 s): no queue on either direction.
    topo = topology(site("a", down_bps=10e6, up_bps=1e6, rtt_s=0.02))
    records = simulate(topo, trace(transfer("a", 0.0, 50e6), transfer("a", 60.0, 10e3, "up"))).records
    assert records["end_s"].iloc[0] < 60.0
    assert records["queue_delay_s"].iloc[1] == 0.0
    assert records["rtt_s"].iloc[1] == pytest.approx(0.02, rel=1e-9)


def test_max_min_fairness_across_a_shared_aggregation_link():
    # Three sites behind a 10 Mbit/s shared uplink; site a's own uplink is 2 Mbit/s, b's and c's 20.
    # Max-min: a is held to 2 by its access link, b and c split the remaining 8 -> 4 each.
    # Sizes chosen so all finish together: a 1 MB at 2 Mbit/s, b and c 2 MB at 4 Mbit/s -> 4/GOODPUT s.
    shared = {"agg": SharedLink("agg", 10e6, 10e6, 1e6, 1e6)}
    topo = topology(site("a", down_bps=100e6, up_bps=2e6, aggregation="agg"),
                    site("b", down_bps=100e6, up_bps=20e6, aggregation="agg"),
                    site("c", down_bps=100e6, up_bps=20e6, aggregation="agg"), shared=shared)
    sessions = trace(transfer("a", 0.0, 1e6, "up"), transfer("b", 0.0, 2e6, "up"), transfer("c", 0.0, 2e6, "up"))
    records = simulate(topo, sessions).records.set_index("site")
    assert records["duration_s"].to_numpy() == pytest.approx(np.full(3, 4 / GOODPUT), rel=1e-9)
    assert records.loc["a", "bottleneck"] == "access_up"
    assert records.loc["b", "bottleneck"] == "aggregation_up"


def test_mm1_processor_sharing_mean_sojourn_time():
    # Poisson arrivals, exponential sizes, one link shared equally: M/M/1-PS, E[T] = (1/mu) / (1 - rho).
    # Link 8 Mbit/s; mean size chosen so 1/mu = 1 s; rho = 0.5 -> E[T] = 2 s.
    rng = np.random.default_rng(7)
    service_rate_bytes = 8e6 * GOODPUT / 8
    n, rho = 40_000, 0.5
    starts = np.cumsum(rng.exponential(1.0 / rho, n))
    sizes = rng.exponential(service_rate_bytes * 1.0, n)
    topo = topology(site("a", down_bps=8e6, up_bps=8e6, buffer_bytes=0))  # no RTT, no queue: pure PS
    records = simulate(topo, trace(*(transfer("a", t, s) for t, s in zip(starts, sizes)))).records
    assert records["completed"].all()
    # Standard error of the mean sojourn here is about 2% (sojourn times are correlated); allow 6%.
    assert records["duration_s"].mean() == pytest.approx(2.0, rel=0.06)


def test_mg1_processor_sharing_is_insensitive_to_the_size_distribution():
    # PS insensitivity: E[T] = E[S] / (C (1 - rho)) for any size distribution; lognormal sizes, cv 1.5.
    rng = np.random.default_rng(11)
    service_rate_bytes = 8e6 * GOODPUT / 8
    n, rho, mean_size = 40_000, 0.5, service_rate_bytes * 1.0
    sigma = np.sqrt(np.log1p(1.5**2))
    sizes = rng.lognormal(np.log(mean_size) - sigma**2 / 2, sigma, n)
    starts = np.cumsum(rng.exponential(1.0 / rho, n))
    topo = topology(site("a", down_bps=8e6, up_bps=8e6, buffer_bytes=0))
    records = simulate(topo, trace(*(transfer("a", t, s) for t, s in zip(starts, sizes)))).records
    expected_s = sizes.mean() / service_rate_bytes / (1 - rho)
    assert records["duration_s"].mean() == pytest.approx(expected_s, rel=0.08)


def test_tcps_standing_queue_hits_video_sharing_a_copper_uplink_with_an_upload():
    # ADSL-like uplink 1 Mbit/s with a 150 kB drop-tail buffer (99 packets), saturated by a bulk upload: Cubic keeps
    # it 0.8 full, queueing delay = 0.8 * 150,000 * 8 / 1e6 = 0.96 s. Base one-way delay = (site 40 + cloud 10 +
    # home 10) / 2 ms.
    # The call's delay-based control yields to TCP: it starts at what the 0.9 Mbit/s headroom gives it, then its
    # sender cuts x 0.85 0.2 s in and every 0.3 s after: 0.765, 0.650, 0.553, 0.470, 0.399 Mbit/s, then (0.339) its
    # 350 kbit/s minimum from 1.7 s on; never its target.
    topo = topology(site("a", down_bps=16e6, up_bps=1e6, rtt_s=0.04), cloud_rtt_s=0.01,
                    home=FarEnd(70e6, 18e6, 0.01))
    sessions = trace(transfer("a", 0.0, 200e6, "up", kind="gp2gp"), call("a", 60.0, 600.0))
    video = simulate(topo, sessions).records.query("app == 'video'").iloc[0]
    assert video["one_way_delay_p95_s"] == pytest.approx(0.03 + 0.96, rel=1e-9)
    assert video["queue_delay_s"] == pytest.approx(0.96, rel=1e-9)
    assert video["share_at_target"] == 0.0
    assert video["share_below_min"] == 0.0
    cuts_bits = 0.2 * 0.9e6 + 0.3 * sum(0.9e6 * 0.85**k for k in range(1, 6))
    assert video["mean_rate_bps"] == pytest.approx((cuts_bits + 350e3 * (600 - 1.7)) / 600, rel=1e-9)
    assert video["bottleneck"] == "access_up_tcp_queue"  # it yielded to the upload filling the uplink's queue


def test_video_keeps_its_rate_beside_an_upload_where_the_full_buffer_is_under_its_threshold():
    # A 100 Mbit/s uplink with a 150 kB buffer: full, it delays 150,000 * 8 / 100e6 = 12 ms, and Cubic keeps 0.8 of
    # it (9.6 ms), under the 25 ms at which the call's delay-based control sees overuse, so the call keeps 1.5 Mbit/s
    # beside a bulk upload (no RTT: no start-up). The upload takes the rest while the call runs (1 s to 6 s) and the
    # whole link otherwise.
    topo = topology(site("a", down_bps=100e6, up_bps=100e6), home=FarEnd(1e9, 1e9, 0.0))
    records = simulate(topo, trace(transfer("a", 0.0, 100e6, "up"), call("a", 1.0, 5.0))).records
    video, upload = (records.set_index("app").loc[app] for app in ("video", "record_view"))
    assert video["mean_rate_bps"] == pytest.approx(1.5e6, rel=1e-12)
    assert video["share_at_target"] == 1.0
    assert video["queue_delay_s"] == pytest.approx(0.0096, rel=1e-9)
    wire_bits = 100e6 * 8 / GOODPUT
    expected_s = 6.0 + (wire_bits - 100e6 * 1.0 - 98.5e6 * 5.0) / 100e6
    assert upload["duration_s"] == pytest.approx(expected_s, rel=1e-9)


def test_video_alone_on_a_slow_uplink_is_held_below_capacity_by_its_own_control():
    # One call wanting 1.5 Mbit/s on a 1 Mbit/s uplink: delay-based control holds the link at 90%.
    topo = topology(site("a", down_bps=16e6, up_bps=1e6))
    video = simulate(topo, trace(call("a", 0.0, 300.0))).records.iloc[0]
    assert video["mean_rate_bps"] == pytest.approx(0.9e6, rel=1e-9)
    assert video["share_at_target"] == 0.0


def test_md1_queueing_delay_for_video_below_saturation():
    # Four calls at 1.5 Mbit/s on a 10 Mbit/s link: utilisation 0.6. M/D/1 with 1514-byte frames:
    # service s = 1514 * 8 / 10e6 = 1.2112 ms; mean wait = rho s / (2 (1 - rho)) = 0.6 * 1.2112 / 0.8 ms.
    topo = topology(site("a", down_bps=10e6, up_bps=10e6))
    records = simulate(topo, trace(*(call("a", 0.0, 120.0) for _ in range(4)))).records
    wait_s = 0.6 * (1514 * 8 / 10e6) / (2 * 0.4)
    assert records["queue_delay_s"].to_numpy() == pytest.approx(np.full(4, wait_s), rel=1e-9)
    assert records["share_at_target"].to_numpy() == pytest.approx(np.ones(4))


def test_mathis_bound_limits_a_long_transfer_on_a_lossy_line():
    # 1% random loss, RTT 50 ms, 100 Mbit/s: goodput = MSS*8/RTT * 1.22/sqrt(p) = 2.827 Mbit/s (wire less).
    topo = topology(site("a", down_bps=100e6, up_bps=100e6, rtt_s=0.05, loss=0.01))
    record = simulate(topo, trace(transfer("a", 0.0, 50e6))).records.iloc[0]
    goodput_bps = MSS * 8 / 0.05 * 1.22 / 0.1
    # Start-up (2 handshake RTTs, slow start to the bound) is a few tenths of a second of ~140 s.
    assert record["duration_s"] == pytest.approx(50e6 * 8 / goodput_bps, rel=0.01)
    assert record["bottleneck"] == "window"


def test_link_utilisation_accounts_for_every_wire_bit():
    # 30 MB at 10 Mbit/s (no RTT): wire bits = 30e6 * 8 / GOODPUT; utilisation bins must add up to them.
    topo = topology(site("a", down_bps=10e6, up_bps=10e6))
    result = simulate(topo, trace(transfer("a", 5.0, 30e6)), bin_s=10.0)
    down = result.links[result.links["link"] == "a/down"]
    carried_bits = (down["utilisation"] * down["capacity_bps"] * down["bin_s"]).sum()
    assert carried_bits == pytest.approx(30e6 * 8 / GOODPUT, rel=1e-9)
    assert down["utilisation"].max() == pytest.approx(1.0)


def test_a_call_running_at_the_horizon_ends_there_and_is_judged_on_the_part_replayed():
    # A 2-hour call from 100 s with a 600 s horizon: 500 s replayed at its 1.5 Mbit/s target on a fast line.
    topo = topology(site("a", down_bps=100e6, up_bps=100e6))
    record = simulate(topo, trace(call("a", 100.0, 7200.0)), horizon_s=600.0).records.iloc[0]
    assert record["completed"] and record["end_s"] == pytest.approx(600.0)
    assert record["duration_s"] == pytest.approx(500.0)
    assert record["size_bytes"] == pytest.approx(1.5e6 * 500.0 / 8, rel=1e-9)
    assert record["share_at_target"] == pytest.approx(1.0)


def test_unfinished_transfer_at_the_horizon_is_recorded_as_not_completed():
    topo = topology(site("a", down_bps=1e6, up_bps=256e3))
    records = simulate(topo, trace(transfer("a", 0.0, 100e6, "up")), horizon_s=600.0).records
    assert not records["completed"].iloc[0]
    assert np.isnan(records["end_s"].iloc[0])
