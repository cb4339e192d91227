"""The window-level check (``benchmarks/window_check.py``) against closed forms worked by hand.

It is a check on the simulator, so it is held to what its docstring says it does: fluid slow start, shares by
window, a queue made of the windows' excess, HyStart's delay test. Runs under ``make test`` (a few seconds).
"""

from __future__ import annotations

import math

import pytest
import window_check as wc

RTT_S = 0.020
SIZE_BYTES = 200e3


def test_an_unqueued_download_slow_starts_as_the_fluid_closed_form():
    # On 1 Gbit/s the path holds 1,651 segments: a 200 kB download's window (at most 148) never fills it, so nothing
    # queues and HyStart never fires. Fluid slow start delivers dW/dt = W / R from W = 10: S segments take
    # R ln(1 + S / 10). A new connection first pays 3 round trips (2 of handshakes, its request's), a kept-alive one 1;
    # the end is half a round trip after the last byte leaves. (Without the bursts' queue: see the next test.)
    segments = SIZE_BYTES / wc.MSS_BYTES
    slow_start_s = RTT_S * math.log(1 + segments / wc.INITIAL_WINDOW_SEGMENTS)  # 53.9 ms
    for kept_alive, before_rtts in ((False, 3), (True, 1)):
        outcome = wc.run([0.1], SIZE_BYTES, 1e9, RTT_S, 1e6, kept_alive=kept_alive, burst_share=0.0)
        expected_s = before_rtts * RTT_S + slow_start_s + RTT_S / 2  # 123.9 ms new, 83.9 ms kept alive
        assert outcome.completion_s[0] == pytest.approx(expected_s, abs=1e-4)
        assert math.isnan(outcome.exit_window_segments[0]) and outcome.queue(0.0, 1.0) == (0.0, 0.0, 0.0)


def test_slow_starts_bursts_hold_their_share_of_what_is_in_flight():
    # The same unqueued download: in flight are min(W, S - delivered) segments, W = 10 + delivered, largest where the
    # two meet, at delivered = (S - 10) / 2: (S + 10) / 2 = 74.1 segments. The queue's largest reading is the burst
    # share of that (18.5 segments at 0.25), read once a millisecond: in flight then moves by the flow's rate, W / R =
    # 3.7 segments a millisecond, so the reading is within the share of that of the peak.
    segments = SIZE_BYTES / wc.MSS_BYTES
    peak = (segments + 10) / 2
    for share in (0.25, 0.5):
        outcome = wc.run([0.1], SIZE_BYTES, 1e9, RTT_S, 1e6, burst_share=share)
        largest = max(outcome.queue_segments_by_ms.values())
        assert share * (peak - peak / RTT_S * 1e-3) <= largest <= share * peak + 1e-9


def test_a_lone_bulk_download_past_the_path_runs_at_the_line_rate():
    # 10 Mbit/s, 20 ms: a frame takes f = 1.2112 ms and the path holds P = R / f = 16.5 segments. Slow start reaches
    # P after R ln(P / 10) (10.0 ms; P - 10 segments delivered); from then a window W past P sends W / (R + (W - P) f)
    # = 1 / f: the line's rate, whatever W is. With HyStart off and a buffer it never fills, 1 MB (690.6 segments)
    # ends at 3 R + R ln(P / 10) + (S - P + 10) f + R / 2 = 908.6 ms.
    frame_s = wc.FRAME_BYTES * 8 / 10e6
    path = RTT_S / frame_s
    segments = 1e6 / wc.MSS_BYTES
    expected_s = 3 * RTT_S + RTT_S * math.log(path / 10) + (segments - path + 10) * frame_s + RTT_S / 2
    outcome = wc.run([0.1], 1e6, 10e6, RTT_S, 10e6, hystart=False, burst_share=0.0)
    assert outcome.completion_s[0] == pytest.approx(expected_s, abs=5e-4)


def test_hystart_ends_slow_start_at_the_first_round_whose_delay_passes_its_threshold():
    # The same line, a new connection: its least RTT is 20 ms (no queue at its handshakes), its threshold
    # max(4 ms, 20 / 8 ms) = 4 ms. Its first round ends R after slow start began: W filled the path (16.5) at 10.0 ms,
    # then grew at the line's rate (1 / f = 825.6 segments/s) for 10.0 ms more, to 24.7 segments; the queue, 8.2
    # segments (10.0 ms), is over the threshold, so slow start ends there, the window + 8: 32.7 segments (within a
    # time step: 0.2 ms, 0.17 segments).
    frame_s = wc.FRAME_BYTES * 8 / 10e6
    path = RTT_S / frame_s
    at_fill_s = RTT_S * math.log(path / 10)
    window = path + (RTT_S - at_fill_s) / frame_s
    outcome = wc.run([0.1], 1e6, 10e6, RTT_S, 10e6, burst_share=0.0)
    assert outcome.exit_window_segments[0] == pytest.approx(window + wc.HYSTART_SAMPLES_SEGMENTS, abs=0.2)


def test_flows_on_a_full_line_share_it_by_their_windows():
    # Two flows past slow start, windows of 10 and 30 segments, with a round trip that asks 40 / R of a line that
    # carries 1 / f: the line delivers 1 / f a second, split 1 : 3.
    frame_s = wc.FRAME_BYTES * 8 / 10e6
    small, large = (wc.Flow(0.0, False, phase="avoidance", window_segments=w) for w in (10.0, 30.0))
    step_s = 1e-3
    wc._deliver([small, large], 0.0, step_s, RTT_S, frame_s, 1e6, RTT_S, True)
    assert small.delivered_segments + large.delivered_segments == pytest.approx(step_s / frame_s)
    assert large.delivered_segments == pytest.approx(3 * small.delivered_segments)
