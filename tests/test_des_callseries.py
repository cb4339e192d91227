"""The simulator's per-second call series through a failover (sim.des.callseries), and its phases (sim.failover).

Each figure is worked out by hand from the line rates, round trips and change times, as tests/test_des_faults.py
does for the calls' records.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim import failover
from sim import linkchanges as lc

PRIMARY = lc.LineState(down_bps=10e6, up_bps=10e6, rtt_s=0.020, loss=0.0, buffer_down_bytes=150_000.0,
                       buffer_up_bytes=150_000.0)
BACKUP = lc.LineState(down_bps=1e6, up_bps=1e6, rtt_s=0.060, loss=0.01, buffer_down_bytes=150_000.0,
                      buffer_up_bytes=150_000.0)


def _run(changes, *sessions, horizon_s=60.0):
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.020), site("b", down_bps=10e6, up_bps=10e6))
    return simulate(topo, trace(*sessions), horizon_s, 10.0, link_changes=changes)


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
    # on the backup: 90% of 1 Mbit/s (video's headroom), less the 1% loss; one-way delay 30 ms plus the queue
    backup = rate.loc[16.0:29.0].to_numpy()
    assert backup == pytest.approx(0.9e6 * 0.99)
    # (10 ms base + half of the 40 ms longer round trip) and M/D/1 waiting of 1514-byte frames (12.112 ms at
    # 1 Mbit/s) at 90% load: 0.9 x 12.112 / (2 x 0.1) = 54.504 ms
    assert delay.loc[15.0:29.0].to_numpy() == pytest.approx(0.030 + 0.9 * 0.012112 / 0.2, rel=1e-6)
    # second 15: half a second of outage, then the backup
    assert rate.loc[15.0] == pytest.approx(0.5 * 0.9e6 * 0.99)
    # repaired: the target again, 10 ms
    assert rate.loc[30.0:39.0].to_numpy() == pytest.approx(1.5e6)
    assert delay.loc[30.0:39.0].to_numpy() == pytest.approx(0.010 + 0.15 * 0.0012112 / 1.7, rel=1e-6)
    # the series carries what the record says: its bits over its 40 s, less the backup's loss
    record = done.records.set_index("session_id").loc[int(series["session_id"].iloc[0])]
    sent_bits = record["mean_rate_bps"] * 40.0
    lost_bits = 0.9e6 * 14.5 * 0.01
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
    assert up.loc["backup", "rate_bps"] == pytest.approx(0.891e6) and up.loc["backup", "share_at_target"] == 0.0


def test_a_run_without_changes_has_no_series_and_transfers_have_none():
    assert _run(None, call("a", 0.0, 40.0)).calls is None
    changes = lc.failover("a", PRIMARY, None, fault_at_s=10.0, repaired_at_s=20.0, failover_s=5.0)
    done = _run(changes, transfer("a", 0.0, 1e6))
    assert done.calls.empty and np.isin(["rate_bps", "one_way_delay_s"], done.calls.columns).all()
