"""Crowded links (transfers held as arrays, :mod:`sim.des.crowd`) give the same tables as transfers held one by one.

The crowd's arithmetic is claimed to be the same IEEE operations in the same order, so the tables must be equal
exactly, not to a tolerance: random practices and loads, calls, fixed-rate streams and line changes are run with a
crowd forming wherever two transfers share a link, and with none. Closed forms check the default thresholds on a
link crowded enough to use them.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from helpers import simulate, site, topology, trace, transfer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_des_shortcuts import calls, changes, fixed_streams, sites

from sim.des import crowd, sharing

GOODPUT = 1448 / 1514

many_transfers = st.builds(transfer, st.sampled_from(["a", "b"]), st.floats(0.0, 8.0),  # close together
                           st.sampled_from([2e3, 40e3, 300e3, 1e6, 5e6]), st.sampled_from(["up", "down"]))


@contextmanager
def _crowds(from_count: float, below_count: int):
    """Run with crowds formed at ``from_count`` transfers on a link (inf: never) and broken up below ``below_count``."""
    saved = crowd.CROWD_FROM, crowd.CROWD_BELOW
    crowd.CROWD_FROM, crowd.CROWD_BELOW = from_count, below_count
    try:
        yield
    finally:
        crowd.CROWD_FROM, crowd.CROWD_BELOW = saved


@settings(max_examples=300, deadline=None)
@given(caps=st.lists(st.one_of(st.floats(0.0, 1e9), st.just(math.inf), st.sampled_from([1e6, 2e6])), min_size=1,
                     max_size=60),
       capacity_bps=st.one_of(st.floats(0.0, 2e9), st.sampled_from([0.0, 3e6])))
def test_the_crowds_water_level_is_the_loops_to_the_bit(caps, capacity_bps):
    assert crowd.water_level(np.array(caps), capacity_bps) == sharing.water_level(caps, capacity_bps)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=sites, b=sites, skip=st.booleans(), link_changes=changes,
       sessions=st.lists(st.one_of(many_transfers, many_transfers, many_transfers, calls, fixed_streams), min_size=8,
                         max_size=40))
def test_crowds_change_no_table_to_the_bit(a, b, skip, sessions, link_changes):
    """Two practices on their own lines; a crowd forms wherever two transfers are active on a link."""
    topo = topology(a | {"site": "a"}, b | {"site": "b"}, cloud_rtt_s=0.01)
    frame = trace(*sessions)
    with _crowds(math.inf, 2):
        plain = simulate(topo, frame, horizon_s=400.0, bin_s=10.0, skip_unobserved=skip, link_changes=link_changes)
    with _crowds(2, 2):
        crowded = simulate(topo, frame, horizon_s=400.0, bin_s=10.0, skip_unobserved=skip, link_changes=link_changes)
    pd.testing.assert_frame_equal(crowded.records, plain.records, check_exact=True)
    pd.testing.assert_frame_equal(crowded.links, plain.links, check_exact=True)
    assert crowded.events == plain.events


def test_a_hundred_and_twenty_equal_transfers_on_a_crowded_link_share_it_equally_and_finish_together():
    # No RTT, no buffer: no start-up, pure processor sharing. 120 transfers of 100 kB (a crowd at the default
    # threshold) each get C/120 and all end at 120 * 100e3 * 8 / (C * GOODPUT) = 12.55 s on 8 Mbit/s.
    n = 120
    assert n >= crowd.CROWD_FROM
    topo = topology(site("a", down_bps=8e6, up_bps=8e6, buffer_bytes=0))
    records = simulate(topo, trace(*(transfer("a", 0.0, 100e3) for _ in range(n)))).records
    expected_s = n * 100e3 * 8 / (8e6 * GOODPUT)
    assert records["duration_s"].to_numpy() == pytest.approx(np.full(n, expected_s), rel=1e-9)
    assert (records["bottleneck"] == "access_down").all()


def test_a_burst_of_unequal_transfers_leaves_in_size_order_at_processor_sharings_times():
    # 150 transfers arriving together, sizes 10, 20, ..., 1,500 kB, on 4 Mbit/s with no RTT or buffer. Under
    # processor sharing the k-th smallest ends when the n - k + 1 still there have each sent its size:
    # T_k = T_(k-1) + (s_k - s_(k-1)) * (n - k + 1) * 8 / (C * GOODPUT). The link is a crowd from 150 transfers down
    # to the default CROWD_BELOW and then objects again, so both halves are checked.
    n, capacity_bps = 150, 4e6
    assert n >= crowd.CROWD_FROM > crowd.CROWD_BELOW > 1
    sizes = [10e3 * (k + 1) for k in range(n)]
    topo = topology(site("a", down_bps=capacity_bps, up_bps=capacity_bps, buffer_bytes=0))
    records = simulate(topo, trace(*(transfer("a", 0.0, size) for size in reversed(sizes)))).records
    expected, t_s, previous = [], 0.0, 0.0
    for k, size in enumerate(sizes):
        t_s += (size - previous) * (n - k) * 8 / (capacity_bps * GOODPUT)
        expected.append(t_s)
        previous = size
    ends = records.sort_values("size_bytes")["end_s"].to_numpy()
    assert ends == pytest.approx(np.array(expected), rel=1e-9)
