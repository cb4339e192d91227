"""The simulator's per-second call series through a failover (sim.des.callseries), and its phases (sim.failover).

Each figure is worked out by hand from the line rates, round trips and change times, as tests/test_des_faults.py
does for the calls' records.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import call, climb_steps, mean_over, simulate, site, topology, trace, transfer

from sim import failover
from sim import linkchanges as lc

PRIMARY = lc.LineState(down_bps=10e6, up_bps=10e6, rtt_s=0.020, loss=0.0, buffer_down_bytes=150_000.0,
                       buffer_up_bytes=150_000.0)
BACKUP = lc.LineState(down_bps=1e6, up_bps=1e6, rtt_s=0.060, loss=0.01, buffer_down_bytes=150_000.0,
                      buffer_up_bytes=150_000.0)


def _run(changes, *sessions, horizon_s=60.0):
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.020), site("b", down_bps=10e6, up_bps=10e6))
    return simulate(topo, trace(*sessions), horizon_s, 10.0, link_changes=changes)


def _md1_s(rate_bps: float, capacity_bps: float) -> float:
    """M/D/1 mean wait of 1514-byte frames at ``rate_bps`` on a line of ``capacity_bps`` (s)."""
    rho, frame_s = rate_bps / capacity_bps, 1514 * 8 / capacity_bps
    return rho * frame_s / (2 * (1 - rho))


# The call's upstream through the failover below: 1.5 Mbit/s, nothing through the outage (10.5-15.5 s), then, from
# its minimum on the backup, the climb back at 8% a second (steps over [0, 1], [1, 3], [3, 7], [7, 15] s of it, each
# at the exponential's mean: helpers.climb_steps), on through the repair at 30 s to 1.5 Mbit/s at 15.5 + 18.9 s.
CLIMB = climb_steps(15.5, 350e3, 1.5e6)
SENT = [(0.0, 1.5e6), (10.5, 0.0), *CLIMB]


def _second(k: int) -> tuple[float, float]:
    """Second ``k`` of the call by hand: the rate received (bit/s) and the one-way delay weighted by it (s).

    Until the repair at 30 s the call is on the 1 Mbit/s backup (1% loss; 30 ms: 10 ms and half the 40 ms longer
    round trip; M/D/1 at its rate), after it on the 10 Mbit/s primary (10 ms, M/D/1).
    """
    bits = weighted = 0.0
    for j, (start_s, rate_bps) in enumerate(SENT):
        end_s = SENT[j + 1][0] if j + 1 < len(SENT) else math.inf
        for lo_s, hi_s, backup in ((max(start_s, k), min(end_s, k + 1, 30.0), True),
                                   (max(start_s, k, 30.0), min(end_s, k + 1), False)):
            if hi_s <= lo_s or rate_bps == 0.0 or (backup and lo_s < 15.5):
                continue
            got = rate_bps * (hi_s - lo_s) * (0.99 if backup else 1.0)
            delay_s = 0.030 + _md1_s(rate_bps, 1e6) if backup else 0.010 + _md1_s(rate_bps, 10e6)
            bits, weighted = bits + got, weighted + got * delay_s
    return bits, weighted / bits if bits else math.nan


def test_a_call_through_a_failover_second_by_second():
    # a video call 0-40 s (1.5 Mbit/s target, 350 kbit/s minimum) on a 10 Mbit/s, 20 ms line: down at 10.5 s, on a
    # 1 Mbit/s, 60 ms backup with 1% loss from 15.5 s, repaired at 30 s
    changes = lc.failover("a", PRIMARY, BACKUP, fault_at_s=10.5, repaired_at_s=30.0, failover_s=5.0)
    done = _run(changes, call("a", 0.0, 40.0), call("b", 0.0, 40.0))
    series = done.calls
    assert set(series["site"]) == {"a"}  # only the changed site's calls
    up = series[series["direction"] == "up"].set_index("bin_start_s")
    assert list(up.index) == [float(k) for k in range(40)]  # 40 whole seconds from the call's start
    rate, delay = up["rate_bps"], up["one_way_delay_s"]
    # before: the target, one-way delay 10 ms (half the 20 ms round trip; no queue: the call alone, far below line)
    assert rate.loc[0.0:9.0].to_numpy() == pytest.approx(1.5e6)
    # 10 ms and M/D/1 waiting at 15% of 10 Mbit/s: 0.15 x 1.2112 ms / (2 x 0.85) = 0.1069 ms
    assert delay.loc[0.0:10.0].to_numpy() == pytest.approx(0.010 + 0.15 * 0.0012112 / 1.7, rel=1e-6)
    # second 10: half of it at 1.5 Mbit/s, then the outage
    assert rate.loc[10.0] == pytest.approx(0.75e6)
    # the outage's whole seconds: nothing sent, no delay
    assert rate.loc[11.0:14.0].to_numpy() == pytest.approx(0.0) and delay.loc[11.0:14.0].isna().all()
    # on the backup the climb stays under video's headroom there (90% of 1 Mbit/s), so nothing but it limits the call
    assert max(r for t, r in CLIMB if t < 30.0) < 0.9e6
    # each second from the backup on: the climb's bits in it, less the backup's loss, and its delay by hand
    by_hand = [_second(k) for k in range(15, 40)]
    assert rate.loc[15.0:39.0].to_numpy() == pytest.approx([r for r, _ in by_hand], rel=1e-9)
    assert delay.loc[15.0:39.0].to_numpy() == pytest.approx([d for _, d in by_hand], rel=1e-6)
    assert rate.loc[35.0:39.0].to_numpy() == pytest.approx(1.5e6)  # back at its target from 34.4 s
    # the series carries what the record says: its bits over its 40 s, less the backup's loss
    record = done.records.set_index("session_id").loc[int(series["session_id"].iloc[0])]
    sent_bits = record["mean_rate_bps"] * 40.0
    lost_bits = mean_over(SENT, 15.5, 30.0) * 14.5 * 0.01
    assert rate.sum() == pytest.approx(sent_bits - lost_bits, rel=1e-9)


def test_the_phase_table_reads_the_series_as_the_emulations():
    changes = lc.failover("a", PRIMARY, BACKUP, fault_at_s=10.5, repaired_at_s=30.0, failover_s=5.0)
    done = _run(changes, call("a", 0.0, 40.0))
    table = failover.summary(done.calls, changes, 0.0, 60.0, done.records, settle_s=1.0)
    up = table[table["direction"] == "up"].set_index("name")
    assert list(up.index) == ["before", "fault", "backup", "repaired"]
    # before: seconds 1-9 wholly inside [0+1, 10.5); fault: 12-14 inside [11.5, 15.5); backup: 17-29; repaired 31-39
    assert list(up["seconds"]) == [9, 3, 13, 9]
    assert up.loc["fault", "silent_s"] == 3 and math.isnan(up.loc["fault", "one_way_delay_s"])
    assert up.loc["before", "rate_bps"] == pytest.approx(1.5e6) and up.loc["before", "share_at_target"] == 1.0
    # on the backup the call climbs from its minimum (seconds 17-29, each below 95% of its target)
    assert up.loc["backup", "rate_bps"] == pytest.approx(np.mean([_second(k)[0] for k in range(17, 30)]), rel=1e-9)
    assert up.loc["backup", "share_at_target"] == 0.0
    # repaired: 1.296 Mbit/s (the climb's step from 15 s of it to 18.9 s) from 30.5 s, 1.5 Mbit/s from 34.4 s; second 34
    # gets 1.416 Mbit/s, under 95% of the target (1.425): seconds 35-39 of 31-39 are at target
    assert CLIMB[-2][1] == pytest.approx(1.296e6, rel=1e-3) and _second(34)[0] < 0.95 * 1.5e6 <= _second(35)[0]
    assert up.loc["repaired", "share_at_target"] == pytest.approx(5 / 9)


def test_a_run_without_changes_has_no_series_and_transfers_have_none():
    assert _run(None, call("a", 0.0, 40.0)).calls is None
    changes = lc.failover("a", PRIMARY, None, fault_at_s=10.0, repaired_at_s=20.0, failover_s=5.0)
    done = _run(changes, transfer("a", 0.0, 1e6))
    assert done.calls.empty and np.isin(["rate_bps", "one_way_delay_s"], done.calls.columns).all()
