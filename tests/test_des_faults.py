"""A site's line failing and failing over mid-window in the simulator, against hand arithmetic.

The link-change table (:mod:`sim.linkchanges`) steps a site's access line: down (both rates 0), on a backup, then
repaired. A transfer stalls through the outage and goes on at the backup's rate; a fixed-rate call gets none of its
rate in the outage; an adaptive call drops to 0 and then to what the backup's headroom allows; the line's round trip
follows the backup. Every figure below is worked out by hand from the line rates and times; both ways through the
simulator (shortcuts on and off) must give it.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim import linkchanges as lc
from sim.des.tcp import GOODPUT_FACTOR

PRIMARY = lc.LineState(down_bps=10e6, up_bps=10e6, rtt_s=0.0, loss=0.0, buffer_down_bytes=150_000.0,
                       buffer_up_bytes=150_000.0)
BACKUP = lc.LineState(down_bps=4e6, up_bps=1e6, rtt_s=0.042, loss=0.0, buffer_down_bytes=150_000.0,
                      buffer_up_bytes=150_000.0)


def _topology(rtt_s: float = 0.0):
    return topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=rtt_s), site("b", down_bps=10e6, up_bps=10e6,
                                                                             rtt_s=rtt_s))


def _records(topo, sessions, changes, horizon_s=600.0, bin_s=10.0):
    """The records both ways (shortcuts on and off), checked equal; the tables of the shortcut run."""
    fast = simulate(topo, sessions, horizon_s, bin_s, skip_unobserved=True, link_changes=changes)
    plain = simulate(topo, sessions, horizon_s, bin_s, skip_unobserved=False, link_changes=changes)
    pd.testing.assert_frame_equal(fast.records, plain.records, rtol=1e-9)
    return fast


@pytest.mark.parametrize("skip", [True, False])
def test_a_transfer_stalls_through_the_outage_and_finishes_on_the_backup(skip):
    # 25 MB down on 10 Mbit/s from 0 s (no round trip: no slow start); the line fails at 10 s, the router takes 60 s
    # to switch to a 4 Mbit/s backup. Wire bits W = 25e6 * 8 / (1448/1514); 10 s x 10 Mbit/s sent before the fault,
    # the rest at 4 Mbit/s from 70 s.
    changes = lc.failover("a", PRIMARY, BACKUP, fault_at_s=10.0, repaired_at_s=500.0, failover_s=60.0)
    sessions = trace(transfer("a", 0.0, 25e6), transfer("a", 30.0, 1e6, "up"))
    done = simulate(_topology(), sessions, 600.0, 10.0, skip_unobserved=skip, link_changes=changes).records
    wire_bits = 25e6 * 8 / GOODPUT_FACTOR
    assert done["end_s"][0] == pytest.approx(70.0 + (wire_bits - 10e6 * 10.0) / 4e6, rel=1e-9)  # 97.279 s
    assert done["mean_rate_bps"][0] == pytest.approx(25e6 * 8 / done["duration_s"][0], rel=1e-12)
    # 1 MB up, asked for in the outage: nothing moves until the backup's 1 Mbit/s up at 70 s
    assert done["end_s"][1] == pytest.approx(70.0 + 1e6 * 8 / GOODPUT_FACTOR / 1e6, rel=1e-9)  # 78.365 s
    assert done["completed"].all()


def test_without_a_backup_a_transfer_waits_for_the_repair():
    changes = lc.failover("a", PRIMARY, None, fault_at_s=10.0, repaired_at_s=300.0, failover_s=60.0)
    done = _records(_topology(), trace(transfer("a", 0.0, 25e6)), changes).records
    assert done["end_s"][0] == pytest.approx(300.0 + (25e6 * 8 / GOODPUT_FACTOR - 10e6 * 10.0) / 10e6, rel=1e-9)


def test_a_transfer_started_on_the_backup_sees_its_round_trip():
    # an upload on the backup's idle upstream: the 42 ms round trip of the backup, no queue (cloud 0 ms)
    changes = lc.failover("a", PRIMARY, BACKUP, fault_at_s=10.0, repaired_at_s=500.0, failover_s=60.0)
    done = _records(_topology(), trace(transfer("a", 100.0, 1e6, "up"), transfer("a", 520.0, 1e6, "up")),
                    changes).records
    assert list(done["rtt_s"]) == pytest.approx([0.042, 0.0])  # on the backup; after the repair, the primary's


FIXED = {"target_bps": 1e6, "min_bps": 1e6, "app": "telephony", "far_end": "cloud"}


def test_a_fixed_rate_call_through_a_failover_before_during_and_after():
    # 12 ms primary, 10/10 Mbit/s; down at 100 s, on a 4/4 Mbit/s 42 ms backup from 160 s, repaired at 250 s.
    # One call spans it all (0-300 s); four calls each hold one phase (before, outage, backup, after).
    primary = dataclasses.replace(PRIMARY, rtt_s=0.012)
    backup = lc.LineState(4e6, 4e6, 0.042, 0.0, 150_000.0, 150_000.0)
    changes = lc.failover("a", primary, backup, fault_at_s=100.0, repaired_at_s=250.0, failover_s=60.0)
    sessions = trace(call("a", 0.0, 300.0, **FIXED), call("a", 0.0, 100.0, **FIXED), call("a", 100.0, 60.0, **FIXED),
                     call("a", 160.0, 90.0, **FIXED), call("a", 250.0, 50.0, **FIXED))
    done = _records(_topology(rtt_s=0.012), sessions, changes).records.set_index("start_s", append=True)
    spanning, before, outage, backup_call, after = (done.iloc[k] for k in range(5))
    # the whole call: its rate for 240 of its 300 s, none for the 60 s outage
    assert spanning["mean_rate_bps"] == pytest.approx(1e6 * 240 / 300)
    assert (spanning["share_at_target"], spanning["share_below_min"]) == pytest.approx((0.8, 0.2))
    # its round trip: 12 ms, and 42 ms for the 90 s on the backup (the outage keeps the line's own)
    assert spanning["rtt_s"] == pytest.approx(0.012 + 0.030 * 90 / 300)
    assert [c["mean_rate_bps"] for c in (before, outage, backup_call, after)] == pytest.approx([1e6, 0.0, 1e6, 1e6])
    assert [c["share_at_target"] for c in (before, outage, backup_call, after)] == pytest.approx([1, 0, 1, 1])
    assert [c["rtt_s"] for c in (before, backup_call, after)] == pytest.approx([0.012, 0.042, 0.012])
    # on the backup: 6 ms + 15 ms base each way, plus M/D/1 for two 1 Mbit/s calls on 4 Mbit/s: rho 0.5, frames
    # of 1514 B take 3.028 ms, wait rho * s / (2 (1 - rho)) = 1.514 ms
    assert backup_call["one_way_delay_s"] == pytest.approx(0.006 + 0.015 + 0.001514, rel=1e-9)


def test_an_adaptive_call_drops_to_nothing_then_to_the_backup_headroom():
    # a 1.5 Mbit/s video call (minimum 350 kbit/s) alone on its line: 1.5 Mbit/s for 100 s, 0 for the 60 s outage;
    # on a 1 Mbit/s backup from 160 s it climbs from its minimum at 8% a second, in steps over [0, 1], [1, 3], [3, 7],
    # [7, 15] s... each at the exponential's mean, until a step passes 0.9 Mbit/s (90% of the backup, video's
    # headroom): the four steps to 15 s carry 350e3 (1.08^15 - 1) / ln 1.08 bits, the fifth (15 s to the curve's
    # 1.5 Mbit/s at 18.9 s) passes 0.9 Mbit/s. It then keeps 0.9 Mbit/s to the repair at 250 s, and climbs from there
    # to 1.5 Mbit/s, reached after T = ln(1.5 / 0.9) / ln 1.08 = 6.64 s carrying (1.5e6 - 0.9e6) / ln 1.08 bits;
    # 1.5 Mbit/s to the end at 300 s.
    backup = lc.LineState(1e6, 1e6, 0.0, 0.0, 150_000.0, 150_000.0)
    changes = lc.failover("a", PRIMARY, backup, fault_at_s=100.0, repaired_at_s=250.0, failover_s=60.0)
    done = _records(_topology(), trace(call("a", 0.0, 300.0)), changes).records.iloc[0]
    growth = math.log(1.08)
    top_s = math.log(1.5 / 0.35) / growth
    assert 350e3 * (1.08**15 - 1.08**7) / (8 * growth) < 0.9e6 < (1.5e6 - 350e3 * 1.08**15) / ((top_s - 15) * growth)
    climb_s = math.log(1.5 / 0.9) / growth
    bits = (1.5e6 * 100 + 350e3 * (1.08**15 - 1) / growth + 0.9e6 * 75 + 0.6e6 / growth
            + 1.5e6 * (50 - climb_s))
    assert done["mean_rate_bps"] == pytest.approx(bits / 300, rel=1e-9)
    assert (done["share_at_target"], done["share_below_min"]) == pytest.approx(((150 - climb_s) / 300, 60 / 300))


def test_the_link_series_shows_the_capacity_of_each_bin():
    # 10 s bins; down at 105 s, on the 4 Mbit/s backup at 125 s, repaired at 200 s
    changes = lc.failover("a", PRIMARY, BACKUP, fault_at_s=105.0, repaired_at_s=200.0, failover_s=20.0)
    links = _records(_topology(), trace(transfer("a", 0.0, 1e3)), changes).links
    down = links[links["link"] == "a/down"].set_index("bin_start_s")["capacity_bps"]
    assert list(down.loc[90.0:130.0]) == pytest.approx([10e6, 5e6, 0.0, 2e6, 4e6])
    assert list(down.loc[190.0:200.0]) == pytest.approx([4e6, 10e6])
    other = links[links["link"] == "b/down"]
    assert (other["capacity_bps"] == 10e6).all()


SESSIONS = (transfer("a", 5.0, 5e6), transfer("b", 5.0, 5e6), call("a", 50.0, 200.0), call("b", 50.0, 200.0),
            call("a", 60.0, 100.0, **FIXED), call("b", 60.0, 100.0, **FIXED), transfer("b", 120.0, 2e6, "up"))


def test_a_fault_on_one_site_leaves_the_other_as_it_was():
    changes = lc.failover("a", PRIMARY, BACKUP, fault_at_s=100.0, repaired_at_s=250.0, failover_s=60.0)
    sessions = trace(*SESSIONS)
    faulty, clean = _records(_topology(), sessions, changes), _records(_topology(), sessions, None)
    b = faulty.records["site"] == "b"
    pd.testing.assert_frame_equal(faulty.records[b], clean.records[b])
    pd.testing.assert_frame_equal(faulty.links[faulty.links["site"] == "b"], clean.links[clean.links["site"] == "b"])
    assert (faulty.records[~b]["mean_rate_bps"] < clean.records[~b]["mean_rate_bps"]).any()


def test_no_changes_give_the_tables_of_a_run_without_them():
    sessions = trace(*SESSIONS)
    without = simulate(_topology(), sessions, 600.0, 10.0)
    empty = simulate(_topology(), sessions, 600.0, 10.0, link_changes=lc.empty())
    pd.testing.assert_frame_equal(empty.records, without.records, check_exact=True)
    pd.testing.assert_frame_equal(empty.links, without.links, check_exact=True)


def test_a_change_that_cannot_be_is_refused():
    changes = lc.failover("a", PRIMARY, BACKUP, fault_at_s=100.0, repaired_at_s=700.0, failover_s=60.0)
    with pytest.raises(ValueError, match=r"row 3 \(site 'a'\): at_s 700.0 is outside the window"):
        simulate(_topology(), trace(*SESSIONS), 600.0, 10.0, link_changes=changes)
