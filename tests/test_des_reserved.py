"""Fixed-rate streams as reservations (:mod:`sim.des.reserved`), against figures worked out by hand.

Constants restated from the model: frames of 1514 B; M/D/1 mean wait rho * s / (2 (1 - rho)) for a frame time s;
queue jitter utilisation * s; a drop-tail buffer saturated by TCP holds Cubic's standing queue, 0.8 of it (buffers
of 17 packets or more), and one overfilled by fixed-rate streams the whole of it, buffer * 8 / capacity; TCP goodput
1448/1514 of the wire rate; 2 handshake round trips; a saturated link's loss is Mathis inverted for the TCP flows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim.des import reserved
from sim.des.links import Link
from sim.topology import FarEnd

GOODPUT = 1448 / 1514
FRAME_BITS = 1514 * 8


def _stream(start_s: float, duration_s: float, rate_bps: float, up_share: float = 1.0) -> dict:
    return call("s", start_s, duration_s, target_bps=rate_bps, min_bps=rate_bps, app="telephony",
                up_share=up_share, far_end="cloud")


def _md1_s(load_bps: float, capacity_bps: float) -> float:
    rho, frame_s = load_bps / capacity_bps, FRAME_BITS / capacity_bps
    return rho * frame_s / (2 * (1 - rho))


def test_a_stream_alone_sees_the_queue_of_its_own_rate():
    # 87.2 kbit/s each way on 1 Mbit/s lines with 5 ms of line jitter; RTT 40 ms site + 10 ms cloud -> 25 ms one way.
    topo = topology(site("s", down_bps=1e6, up_bps=1e6, rtt_s=0.04, jitter_s=0.005, loss=0.01), cloud_rtt_s=0.01)
    record = simulate(topo, trace(_stream(10.0, 120.0, 87.2e3)), horizon_s=600.0).records.iloc[0]
    queue_s = _md1_s(87.2e3, 1e6)
    assert record["completed"] and record["end_s"] == pytest.approx(130.0)
    assert record["one_way_delay_s"] == pytest.approx(0.025 + queue_s, rel=1e-9)
    assert record["one_way_delay_p95_s"] == pytest.approx(0.025 + queue_s, rel=1e-9)
    assert record["jitter_s"] == pytest.approx(math.hypot(0.005, 0.0872 * FRAME_BITS / 1e6), rel=1e-9)
    assert record["loss"] == pytest.approx(0.01, rel=1e-9)
    assert record["share_at_target"] == 1.0 and record["share_below_min"] == 0.0
    assert record["mean_rate_bps"] == pytest.approx(87.2e3, rel=1e-12)
    assert record["bottleneck"] == "none"


def test_an_upload_takes_what_the_stream_leaves_and_fills_the_queue_it_sees():
    # A 100 s stream at 100 kbit/s each way on a 1 Mbit/s uplink (50 kB buffer, 33 packets: 0.4 s full, 0.32 s of
    # Cubic's standing queue); an upload from 20 s
    # sized to last exactly 30 s at the 900 kbit/s the stream leaves (no RTT: no start-up).
    capacity_bps, rate_bps, buffer_bytes = 1e6, 100e3, 50_000
    size_bytes = 30.0 * (capacity_bps - rate_bps) * GOODPUT / 8
    topo = topology(site("s", down_bps=10e6, up_bps=capacity_bps, buffer_bytes=buffer_bytes))
    records = simulate(topo, trace(_stream(0.0, 100.0, rate_bps), transfer("s", 20.0, size_bytes, "up")),
                       horizon_s=600.0, bin_s=10.0)
    stream, upload = (records.records.set_index("app").loc[app] for app in ("telephony", "record_view"))
    # Its handshakes take 2 round trips of the queues the stream makes (up and down), and its request's data 1 more
    # (the pipe is under the initial window: no slow-start round, the handover alone); then it goes at its share.
    setup_s = 3 * (_md1_s(rate_bps, capacity_bps) + _md1_s(rate_bps, 10e6))
    assert upload["duration_s"] == pytest.approx(30.0 + setup_s, rel=1e-9)
    full_s = 0.8 * buffer_bytes * 8 / capacity_bps
    idle_s = _md1_s(rate_bps, capacity_bps)
    assert stream["queue_delay_s"] == pytest.approx((30 * full_s + 70 * idle_s) / 100, rel=1e-9)
    assert stream["one_way_delay_p95_s"] == pytest.approx(full_s, rel=1e-9)  # 30% of the call behind the upload
    frame_s = FRAME_BITS / capacity_bps
    assert stream["jitter_s"] == pytest.approx((30 * frame_s + 70 * 0.1 * frame_s) / 100, rel=1e-9)
    # The upload overflows the buffer (sim.des.overflow): at the brim the round trip is the buffer's 0.4 s (no RTT
    # of the line's own), its window 0.9e6 x 0.4 / 12,112 = 29.72 packets, Cubic's K = cbrt(29.72 x 0.3 / 0.4) =
    # 2.814 s (the Reno-friendly cycle 0.3 x 29.72 / 0.52941 x 0.32 s = 5.39 s is longer): 0.05 x 0.4 / 2.815, 0.71%.
    window_pkts = (capacity_bps - rate_bps) * 0.4 / FRAME_BITS
    overflow_loss = 0.05 * 0.4 / (window_pkts * 0.3 / 0.4) ** (1 / 3)
    assert overflow_loss == pytest.approx(0.00711, abs=1e-5)
    assert stream["loss"] == pytest.approx(30 * overflow_loss / 100, rel=1e-9)
    assert stream["share_at_target"] == 1.0  # the stream keeps its rate: TCP yields
    # The uplink carried the stream all along and the upload's 900 kbit/s for 30 s from 20 s + setup: bins of 10 s.
    up = records.links[records.links["direction"] == "up"]["utilisation"].to_numpy()
    late = 0.9 * setup_s / 10
    assert up[:7] == pytest.approx([0.1, 0.1, 1.0 - late, 1.0, 1.0, 0.1 + late, 0.1], rel=1e-9)


def test_streams_beyond_a_line_share_it_in_proportion_and_fill_it():
    # Three 400 kbit/s streams on a 1 Mbit/s line: 1.2 Mbit/s asked, each gets 1/1.2 of its rate; the buffer is full.
    topo = topology(site("s", down_bps=1e6, up_bps=1e6, buffer_bytes=25_000))
    result = simulate(topo, trace(*(_stream(0.0, 60.0, 400e3) for _ in range(3))), horizon_s=120.0, bin_s=30.0)
    records = result.records
    assert records["mean_rate_bps"].to_numpy() == pytest.approx(np.full(3, 400e3 / 1.2), rel=1e-9)
    assert (records["share_at_target"] == 0.0).all() and (records["share_below_min"] == 1.0).all()
    assert records["queue_delay_s"].to_numpy() == pytest.approx(np.full(3, 0.2), rel=1e-9)
    assert set(records["bottleneck"]) == {"access_up"}
    # Each direction carried the line's capacity for 60 s: two full bins, then nothing.
    for direction in ("up", "down"):
        series = result.links[result.links["direction"] == direction]["utilisation"].to_numpy()
        assert series[:4] == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=1e-12)


def test_a_transfer_beside_streams_that_come_and_go_integrates_the_capacity_they_leave():
    # A 2 Mbit/s uplink; a 1.5 MB upload from 0 s; streams of 500 kbit/s up on [2 s, 6 s] and 1 Mbit/s on [4 s, 8 s].
    # Wire bits: 1.5e6 * 8 / GOODPUT = 12.547e6. Capacity left: 2 M until 2 s (4 M bits), 1.5 M on [2, 4] (3 M),
    # 0.5 M on [4, 6] (1 M), 1 M on [6, 8] (2 M): 10 M bits by 8 s, then 2 M/s for the remaining 2.547e6 bits.
    topo = topology(site("s", down_bps=100e6, up_bps=2e6))
    sessions = trace(transfer("s", 0.0, 1.5e6, "up"), _stream(2.0, 4.0, 500e3), _stream(4.0, 4.0, 1e6))
    upload = simulate(topo, sessions, horizon_s=60.0).records.set_index("app").loc["record_view"]
    wire_bits = 1.5e6 * 8 / GOODPUT
    assert upload["duration_s"] == pytest.approx(8.0 + (wire_bits - 10e6) / 2e6, rel=1e-9)


@pytest.mark.parametrize("qos", ["fifo", "priority"])
def test_a_priority_line_serves_calls_ahead_of_an_upload(qos):
    # A 1 Mbit/s uplink (150 kB buffer: 1.2 s full, 0.96 s of Cubic's standing queue) saturated by an upload from 0 s
    # to past 60 s, a telephone call
    # (87.2 kbit/s each way) from 10 s to 40 s and a video call (1.5 Mbit/s target, 350 kbit/s minimum, to a fast
    # home) from 20 s to 50 s. FIFO: the calls wait behind Cubic's standing queue and lose what TCP's sawtooth drops;
    # the video call yields, its sender's cuts taking it to its minimum. Priority (non-preemptive; calls paced, so
    # not queueing behind each other): a call waits for the rest of the frame in service, rho * s / 2 with rho = 1
    # (the upload keeps the line busy) and s = 12.112 ms; nothing is dropped; video sees no queue of TCP's, so it
    # keeps what the headroom gives.
    topo = topology(site("s", down_bps=100e6, up_bps=1e6, buffer_bytes=150_000, qos=qos), home=FarEnd(1e9, 1e9, 0.0))
    sessions = trace(transfer("s", 0.0, 20e6, "up"), _stream(10.0, 30.0, 87.2e3),
                     call("s", 20.0, 30.0, target_bps=1.5e6, min_bps=350e3))
    records = simulate(topo, sessions, horizon_s=600.0).records.set_index("app")
    phone, video = records.loc["telephony"], records.loc["video"]
    frame_s = FRAME_BITS / 1e6
    if qos == "fifo":
        assert phone["one_way_delay_p95_s"] == pytest.approx(0.8 * 1.2, rel=1e-9)  # Cubic's standing queue
        assert phone["loss"] > 0 and video["loss"] > 0
        # it starts at what the headroom leaves it, 0.8128 Mbit/s, and its sender cuts x 0.85 from there 0.2 s in and
        # every 0.3 s after: 0.691, 0.587, 0.499, 0.424, 0.361 Mbit/s, then (0.307) its minimum from 1.7 s to 50 s
        cuts_bits = 0.2 * 812.8e3 + 0.3 * sum(812.8e3 * 0.85**k for k in range(1, 6))
        assert video["mean_rate_bps"] == pytest.approx((cuts_bits + 350e3 * (30 - 1.7)) / 30, rel=1e-9)
        return
    # The video call takes the headroom the phone call leaves (0.9 Mbit/s - 87.2 kbit/s) for 20 s; when the phone
    # call ends it climbs back at 8% a second: its first step (one second) at the exponential's mean over it,
    # r * 0.08 / ln(1.08); the next (1 to 3 s, mean r (1.08^3 - 1.08) / (2 ln 1.08)) passes the 0.9 Mbit/s
    # headroom, which it then keeps.
    held_bps = 0.9e6 - 87.2e3
    first_step_bps = held_bps * 0.08 / math.log(1.08)
    assert held_bps * (1.08**3 - 1.08) / (2 * math.log(1.08)) > 0.9e6
    assert video["mean_rate_bps"] == pytest.approx((20 * held_bps + first_step_bps + 9 * 0.9e6) / 30, rel=1e-9)
    assert phone["loss"] == 0.0 and video["loss"] == 0.0
    assert phone["queue_delay_s"] == pytest.approx(frame_s / 2, rel=1e-9)
    assert video["queue_delay_s"] == pytest.approx(frame_s / 2, rel=1e-9)
    assert video["one_way_delay_p95_s"] < 0.1  # against 0.96 s behind the upload on FIFO


def test_short_transfers_saturate_a_line_in_bursts_not_with_a_standing_queue():
    # Two 100 kB downloads at 10 s on a 10 Mbit/s line with a 150 kB buffer (no RTT: no start-up). Each has less than
    # twice (buffer + bandwidth-delay product) to send, so neither goes through loss cycles: while they share the
    # line, it queues as M/D/1 at the 0.98 cut-off, 0.98 * s / (2 * 0.02) with s = 1.2112 ms (29.7 ms), not Cubic's
    # standing 0.8 x 120 ms. A 50 kbit/s stream (down) from 0 s to 20 s sees that while they run.
    capacity_bps, rate_bps = 10e6, 50e3
    topo = topology(site("s", down_bps=capacity_bps, up_bps=capacity_bps, buffer_bytes=150_000))
    sessions = trace(_stream(0.0, 20.0, rate_bps), transfer("s", 10.0, 100e3), transfer("s", 10.0, 100e3))
    records = simulate(topo, sessions, horizon_s=60.0).records
    busy_s = 2 * 100e3 * 8 / ((capacity_bps - rate_bps) * GOODPUT)  # both share what the stream leaves
    setup_s = 3 * 2 * _md1_s(rate_bps, capacity_bps)  # 2 handshakes and the request's round trip (no slow start:
    # the pipe is under the initial window, the handover alone) over the stream's queues, each way
    downloads = records.loc[records["app"] == "record_view", "duration_s"].to_numpy()
    # their last bytes arrive together; a record may add a timer's wait for a tail lost in the bursts' overflow
    # (sim.des.tails, drawn per session: tests/test_des_tails.py), one of 2 SRTT here (59.4 ms at seed 0)
    assert downloads.min() == pytest.approx(setup_s + busy_s, rel=1e-9)
    assert (downloads >= (setup_s + busy_s) * (1 - 1e-9)).all() and downloads.max() < setup_s + busy_s + 1.0
    frame_s = FRAME_BITS / capacity_bps
    burst_s = 0.98 * frame_s / (2 * 0.02)
    stream = records.set_index("app").loc["telephony"]
    expected_s = (busy_s * burst_s + (20 - busy_s) * _md1_s(rate_bps, capacity_bps)) / 20
    assert stream["queue_delay_s"] == pytest.approx(expected_s, rel=1e-9)


def test_a_links_carried_bits_are_the_same_from_its_kept_steps():
    # 400 kbit/s reserved from 5 s to 25 s on a 1 Mbit/s line, bins of 10 s from 0: 2, 4 and 2 Mbit.
    link = Link("s/up", "s", "access", "up", 1e6, 30_000.0, 0.0, 0.0, 0.0, 10.0, 3)
    steps = reserved._steps(np.array([5.0, 25.0]), np.array([4e5, -4e5]))
    link.reserve(steps[0].tolist(), steps[1].tolist())
    from_lists = reserved.carried_bits(link, 0.0, 30.0, 3, 10.0)
    assert from_lists.tolist() == [2e6, 4e6, 2e6]
    assert np.array_equal(reserved.carried_bits(link, 0.0, 30.0, 3, 10.0, steps), from_lists)
