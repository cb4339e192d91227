"""A transfer's start-up round by round: each round takes the round-trip time of its moment (sim.des.rounds).

Worked by hand on one line: 10 Mbit/s down, 20 ms RTT, a 125 kB buffer (82.6 packets of 1514 B, so Cubic's standing
queue is 0.8 of it: 0.8 x 125,000 x 8 / 10e6 = 80 ms). MSS 1448 B in 1514 B frames (goodput 1448/1514), initial
window 10 segments (14,480 B), 2 round trips of handshakes before data.

A bulk download of 5 MB alone from 0 s: handshakes at 20 ms (nothing queued yet), its pipe 10e6 x G x 0.02 /
(8 x 1448) = 16.5 segments, so 1 slow-start round (14,480 B) and a round trip of handover (that round's ACKs to the
sender, the next window's data back: tcp.HANDOVER_RTTS), then the line: it sends its last byte at
T = 4 x 0.02 + (5e6 - 14,480) x 8 / (10e6 x G) = 4.2502 s, holding the standing queue until then.
"""

from __future__ import annotations

import pytest
from helpers import simulate, site, topology, trace, transfer

from sim.des import rounds, tcp

G = 1448 / 1514
RATE_BPS, RTT_S, BUFFER_BYTES = 10e6, 0.020, 125_000
QUEUE_S = 0.8 * BUFFER_BYTES * 8 / RATE_BPS   # 80 ms: the bulk download's standing queue
BULK_BYTES = 5e6
BULK_END_S = 4 * RTT_S + (BULK_BYTES - 14_480) * 8 / (RATE_BPS * G)
SHORT_BYTES = 100_000


def _line():
    return topology(site("a", down_bps=RATE_BPS, up_bps=RATE_BPS, rtt_s=RTT_S, buffer_bytes=BUFFER_BYTES))


def _short_beside_bulk(start_s: float):
    records = simulate(_line(), trace(transfer("a", 0.0, BULK_BYTES), transfer("a", start_s, SHORT_BYTES))).records
    bulk, short = records.iloc[0], records.iloc[1]
    assert bulk["duration_s"] == pytest.approx(BULK_END_S, rel=1e-9)  # the short one took no share before it ended
    return short


def test_a_transfer_wholly_behind_the_standing_queue_pays_it_every_round():
    # RTT 20 + 80 = 100 ms; its share would be half the line, 5 Mbit/s: pipe 5e6 x G x 0.1 / (8 x 1448) = 41.3
    # segments, 3 rounds to fill (10, 20, 40 segments: 101,360 B), and 100 kB needs ceil(log2(100,000/14,480 + 1)) = 3.
    # The standing queue leaves 25 kB of the buffer, 16.5 frames: the third round adds 40 - 20 = 20 segments to the
    # queue and overflows it, losing its last segments, the transfer's tail: the probe repairs it after 2 SRTT. So
    # 2 + 3 + 2 round trips of 100 ms: 0.7 s, all within the bulk download (it starts at 1 s, ends by 1.7 s).
    short = _short_beside_bulk(1.0)
    assert short["duration_s"] == pytest.approx(0.7, rel=1e-9)
    assert short["rtt_s"] == pytest.approx(RTT_S + QUEUE_S, rel=1e-9)


def test_rounds_that_straddle_the_end_of_the_standing_queue_take_each_its_own_rtt():
    # It starts 150 ms before the bulk download ends: its first round trip (100 ms) and its second, begun 50 ms
    # before the end, pay the queue; every later round begins after it, at 20 ms with the whole line: pipe 16.5
    # segments, 1 slow-start round (14,480 B), the handover, then 85,520 B at 10 Mbit/s alone.
    # 2 x 0.1 + 2 x 0.02 + 85,520 x 8 / (10e6 x G) = 0.3115 s (0.7 s wholly behind the queue, above).
    short = _short_beside_bulk(BULK_END_S - 0.15)
    expected_s = 2 * 0.1 + 2 * 0.02 + (SHORT_BYTES - 14_480) * 8 / (RATE_BPS * G)
    assert short["duration_s"] == pytest.approx(expected_s, rel=1e-9)
    assert short["rtt_s"] == pytest.approx(RTT_S + QUEUE_S, rel=1e-9)  # the record keeps the RTT found at its start


def test_a_round_begun_before_the_end_keeps_its_rtt_and_one_begun_after_does_not():
    # Started 50 ms before the end: its first round (to +100 ms) pays the queue, the second begins 50 ms after the
    # end: 0.1 + 0.02 (second handshake) + 0.02 (slow start) + 0.02 (handover) + 85,520 B alone.
    short = _short_beside_bulk(BULK_END_S - 0.05)
    expected_s = 0.1 + 3 * 0.02 + (SHORT_BYTES - 14_480) * 8 / (RATE_BPS * G)
    assert short["duration_s"] == pytest.approx(expected_s, rel=1e-9)


def test_the_records_say_when_each_request_went_and_its_first_data_came():
    # Alone: 2 handshakes of 20 ms, then the request's round trip: request at 0.04 s, first data at 0.06 s. Wholly
    # behind the standing queue: rounds of 100 ms, so 0.2 and 0.3 s. Straddling the queue's end (from 150 ms before
    # it): its first round trip (100 ms) and its second, begun 50 ms before the end, keep the queue (request at 0.2 s);
    # the third, begun after it, is 20 ms (first data at 0.22 s). On a kept-alive connection alone: no handshake,
    # first data one round trip after its start.
    records = simulate(_line(), trace(transfer("a", 0.0, BULK_BYTES))).records
    assert records.loc[0, "setup_s"] == pytest.approx(2 * RTT_S, rel=1e-9)
    assert records.loc[0, "first_data_s"] == pytest.approx(3 * RTT_S, rel=1e-9)
    behind = _short_beside_bulk(1.0)
    assert (behind["setup_s"], behind["first_data_s"]) == (pytest.approx(0.2, rel=1e-9), pytest.approx(0.3, rel=1e-9))
    straddling = _short_beside_bulk(BULK_END_S - 0.15)
    assert straddling["setup_s"] == pytest.approx(0.2, rel=1e-9)
    assert straddling["first_data_s"] == pytest.approx(0.22, rel=1e-9)
    kept = simulate(_line(), trace(transfer("a", 0.0, SHORT_BYTES, connection="reused"))).records.iloc[0]
    assert (kept["setup_s"], kept["first_data_s"]) == (0.0, pytest.approx(RTT_S, rel=1e-9))


def test_a_transfer_after_the_queue_is_gone_never_pays_it():
    # Alone after the bulk download: 2 handshakes + 1 slow-start round + the handover at 20 ms, then 85,520 B alone.
    short = _short_beside_bulk(BULK_END_S + 1.0)
    assert short["duration_s"] == pytest.approx(4 * 0.02 + (SHORT_BYTES - 14_480) * 8 / (RATE_BPS * G), rel=1e-9)
    assert short["rtt_s"] == pytest.approx(RTT_S, rel=1e-9)


def test_the_straddling_transfer_is_the_same_without_the_shortcuts():
    plain = simulate(_line(), trace(transfer("a", 0.0, BULK_BYTES), transfer("a", BULK_END_S - 0.15, SHORT_BYTES)),
                     skip_unobserved=False).records
    assert plain.iloc[1]["duration_s"] == pytest.approx(_short_beside_bulk(BULK_END_S - 0.15)["duration_s"], rel=1e-9)


def test_the_cursor_counts_rounds_begun_and_leaves_one_beginning_now_to_the_new_plan():
    # Rounds of 0.1 s from 1.0 (one done by then): by 1.25 three more have begun (at 1.0, 1.1, 1.2): it ends at 1.3.
    assert rounds.advance(1.0, 1, 0.1, 9, 1.25) == pytest.approx((1.3, 4))
    assert rounds.advance(1.0, 1, 0.1, 9, 0.95) == (1.0, 1)          # the round in progress still runs
    end_s, done = rounds.advance(1.0, 1, 0.1, 9, 1.2)                 # the round beginning at 1.2 is not begun
    assert (end_s, done) == (pytest.approx(1.2), 3)
    assert rounds.advance(1.0, 1, 0.1, 3, 5.0) == pytest.approx((1.2, 3))  # never past the start-up's rounds


def test_slow_start_rounds_agree_with_the_start_up_model():
    # a round trip of handover where bytes are left after slow start: 100 kB in 3 rounds (101,360 B) none; 100 kB
    # after 1 round (14,480 B) and 5 MB after 2 (43,440 B) one; 50 kB in 3 rounds none
    for size, rate, rtt, handover in ((100e3, 5e6, 0.1, 0), (100e3, 10e6, 0.02, 1), (5e6, 10e6, 0.03, 1),
                                      (50e3, 1e9, 0.1, 0)):
        start = tcp.slow_start(size, rate, rtt)
        ss = tcp.slow_start_rounds(size, rate, rtt)
        assert start.rounds == start.setup_rounds + ss + handover == tcp.HANDSHAKE_RTTS + ss + handover
        assert start.recovery_rounds == handover
        assert start.sent_bytes == tcp.sent_in(size, ss)
        assert start.duration_s == pytest.approx(start.rounds * rtt, rel=1e-12)


def test_a_round_overflowing_the_room_a_standing_queue_leaves_ends_slow_start_there():
    # The standing queue holds 0.8 of the 125 kB buffer, leaving 25,000 / 1514 = 16.5 frames. Slow start's first
    # round arrives at once (10 segments); each later one adds what it sends beyond the round before (two segments
    # for each ACK, which come as the queue drains): 10, 20 and 40 segments add 10, 10 and 20, so the third round is
    # the first to overflow. Mid-transfer fast recovery takes one round trip; in the transfer's last round the lost
    # segments are its tail, which the probe repairs after 2 SRTT.
    from sim.des import queueing

    assert queueing.room_segments(BUFFER_BYTES, RATE_BPS) == pytest.approx(25_000 / 1514, rel=1e-12)
    assert [tcp.round_segments(100_000, k) for k in (1, 2, 3)] == [10, 20, 40]   # 70 segments: 100 kB / 1448 B
    assert tcp.overflow(100_000, 3, 16.5) == (3, tcp.TAIL_PROBE_RTTS)    # 100 kB ends in the third round
    assert tcp.overflow(150_000, 3, 16.5) == (3, tcp.RECOVERY_RTTS)      # 101,360 B sent by then, of 150 kB
    assert tcp.overflow(30_000, 2, 16.5) == (2, 0)                       # 10, then 11 segments: it adds 1
    assert tcp.overflow(14_000, 1, 4.0) == (1, tcp.TAIL_PROBE_RTTS)      # 10 segments at once into room for 4
    assert tcp.overflow(1_000, 1, 4.0) == (1, 0)                         # one segment
    assert tcp.overflow(100_000, 3, 40.0) == (3, 0)
    assert tcp.overflow(100_000, 3, float("inf")) == (3, 0)
    assert tcp.overflow(150_000, 3, 16.5, first_round=3) == (3, tcp.RECOVERY_RTTS)  # rounds 1-2 went before


def _overflow_round_by_round(size_bytes, ss_rounds, room_segments, first_round=1):
    """Slow start's overflow as its definition reads: each round's segments from the bytes sent by its end."""
    def segments(k):  # segments sent by the end of round k
        return -(-min(size_bytes, tcp.INITIAL_WINDOW_SEGMENTS * tcp.MSS_BYTES * (2**k - 1)) // tcp.MSS_BYTES)
    for k in range(max(1, first_round), ss_rounds + 1):
        added = (segments(k) - segments(k - 1)) - ((segments(k - 1) - segments(k - 2)) if k > 1 else 0)
        if added > room_segments:
            return k, tcp.TAIL_PROBE_RTTS if segments(k) * tcp.MSS_BYTES >= size_bytes else tcp.RECOVERY_RTTS
    return ss_rounds, 0


@pytest.mark.parametrize("room_segments", [-1.0, 0.0, 3.5, 4.0, 5.0, 16.5, 40.0, 80.0, 1e4])
def test_overflow_in_integers_is_the_round_by_round_definition(room_segments):
    sizes = [1, 1447, 1448, 1449, 14_480, 14_481, 43_440, 100_000, 150_000, 1_000_000, 4.6e6, 123_456.7]
    for size in sizes:
        for ss_rounds in range(0, 12):
            for first in range(0, ss_rounds + 2):
                assert tcp.overflow(size, ss_rounds, room_segments, first) == \
                    _overflow_round_by_round(size, ss_rounds, room_segments, first), (size, ss_rounds, first)


def test_a_download_whose_slow_start_overflows_mid_transfer_recovers_then_shares():
    # 150 kB behind the bulk download: 2 handshakes, 3 slow-start rounds (101,360 B), the third overflowing, one
    # round trip of recovery, then 48,640 B at half the line while the bulk download has the other half (so it ends
    # that much later: 48,640 B at the whole line).
    records = simulate(_line(), trace(transfer("a", 0.0, BULK_BYTES), transfer("a", 1.0, 150_000))).records
    rest_bits = (150_000 - 70 * 1448) * 8 / G
    assert records.iloc[1]["duration_s"] == pytest.approx(6 * (RTT_S + QUEUE_S) + rest_bits / (RATE_BPS / 2),
                                                          rel=1e-9)
    assert records.iloc[0]["duration_s"] == pytest.approx(BULK_END_S + rest_bits / RATE_BPS, rel=1e-9)
