"""A path's step functions over many intervals (:mod:`sim.des.paths`): percentiles worked out one interval at a time."""

from __future__ import annotations

import numpy as np
import pytest

from sim.des import queueing
from sim.des.links import Link
from sim.des.paths import PathHistory, p95_stacked, value_ranks
from sim.des.tcp import FRAME_BYTES


def _history(loads_bps: list[float], step_s: float = 1.0) -> PathHistory:
    """A 10 Mbit/s link whose load is ``loads_bps[k]`` from ``k * step_s`` (s) on, as a one-link path."""
    link = Link("site/up", "site", "access", "up", 10e6, 100_000.0, 0.0, 0.0, 0.0, 60.0, 10)
    for k, load_bps in enumerate(loads_bps):
        link.carry(load_bps, queueing.NOT_SATURATED)
        link.note(k * step_s)
    return PathHistory((link,), horizon_s=len(loads_bps) * step_s)


def _p95_by_hand(times_s: np.ndarray, values: np.ndarray, start_s: float, end_s: float) -> float:
    """The first value, in increasing order, below which 95% of [start_s, end_s] is spent."""
    edges_s = np.append(times_s[1:], np.inf)
    spent = [(value, min(edge_s, end_s) - max(t_s, start_s)) for t_s, edge_s, value in zip(times_s, edges_s, values)
             if min(edge_s, end_s) > max(t_s, start_s)]
    total_s = 0.0
    for value, duration_s in sorted(spent, key=lambda pair: pair[0]):
        total_s += duration_s
        if total_s >= 0.95 * (end_s - start_s) - 1e-9:
            return value
    raise AssertionError("never reached")


def test_the_95th_percentile_of_each_interval_is_the_one_worked_out_alone():
    rng = np.random.default_rng(7)
    loads_bps = rng.choice([1e6, 3e6, 5e6, 8e6], size=60)  # repeated loads: ties among the values
    history = _history(list(loads_bps))
    start_s = rng.uniform(0.0, 50.0, size=200)
    end_s = start_s + rng.uniform(0.0, 15.0, size=200)
    end_s[:5] = start_s[:5]  # empty intervals: the value at their start
    p95 = history.over(start_s, end_s).p95(history.queue_s)
    times_s = history.times_s.copy()
    for k in range(len(start_s)):
        if end_s[k] > start_s[k]:
            assert p95[k] == _p95_by_hand(times_s, history.queue_s, start_s[k], end_s[k])
        else:
            assert p95[k] == history.queue_s[np.searchsorted(times_s, start_s[k], side="right") - 1]


def test_the_pairs_come_in_lexsorts_order_ties_and_missing_values_included():
    rng = np.random.default_rng(3)
    values = rng.choice([0.0, -0.0, 0.5, 1.0, np.nan], size=40)
    k0 = rng.integers(0, 40, size=30)
    counts = rng.integers(1, 41 - k0)
    owner = np.repeat(np.arange(30), counts)
    segment = np.concatenate([np.arange(a, a + c) for a, c in zip(k0, counts)])
    keys = owner * len(values) + value_ranks(values)[segment]
    assert len(set(keys.tolist())) == len(keys)  # distinct: any sort gives the one order
    assert np.array_equal(np.argsort(keys, kind="stable"), np.lexsort((values[segment], owner)))


def test_ranks_go_by_value_then_position():
    assert value_ranks(np.array([0.3, 0.1, 0.3, 0.2, 0.1])).tolist() == [3, 0, 4, 2, 1]


def test_a_paths_delay_is_its_queue_and_shift_and_its_percentile_is_the_same_with_its_ranks_given():
    rng = np.random.default_rng(5)
    history = _history(list(rng.choice([1e6, 3e6, 5e6, 8e6], size=30)))
    assert np.array_equal(history.delay_s(), history.queue_s + history.shift_s)
    start_s = rng.uniform(0.0, 25.0, size=50)
    over = history.over(start_s, start_s + rng.uniform(0.0, 8.0, size=50))
    assert np.array_equal(over.p95(history.delay_s(), history.delay_rank()), over.p95(history.delay_s()))


@pytest.mark.parametrize("load_bps", [2e6, 9e6])
def test_a_steady_load_is_its_own_percentile(load_bps):
    history = _history([load_bps] * 5)
    p95 = history.over(np.array([0.5, 1.0]), np.array([4.5, 3.0])).p95(history.queue_s)
    rho, service_s = load_bps / 10e6, FRAME_BYTES * 8 / 10e6
    assert p95 == pytest.approx([rho * service_s / (2 * (1 - rho))] * 2, rel=1e-12)


def test_many_paths_percentiles_at_once_equal_each_paths_own_to_the_bit_and_by_hand():
    # p95_stacked lays several paths' intervals end to end (their running sums of time restarting at each path):
    # equal to the bit to each path's own p95, and to the percentile worked out by hand for each interval; some
    # intervals are empty, some start before the first load or end past the last breakpoint.
    rng = np.random.default_rng(11)
    overs, delays_s, ranks, hand = [], [], [], []
    for n_loads, n_intervals in ((1, 3), (40, 25), (7, 1), (60, 80)):
        history = _history(list(rng.choice([1e6, 3e6, 5e6, 9.5e6], size=n_loads)), step_s=float(rng.choice([0.5, 1])))
        start_s = np.round(rng.uniform(-2.0, n_loads, size=n_intervals), 1)
        end_s = start_s + np.where(rng.random(n_intervals) < 0.15, 0.0, rng.exponential(8.0, size=n_intervals))
        over = history.over(start_s, end_s)
        overs.append(over)
        delays_s.append(history.delay_s())
        ranks.append(history.delay_rank())
        times_s = over.times_s
        hand.extend(_p95_by_hand(times_s, history.delay_s(), s, e) if e > s else
                    history.delay_s()[np.searchsorted(times_s, s, side="right") - 1] for s, e in zip(start_s, end_s))
    stacked = p95_stacked(overs, delays_s, ranks)
    alone = np.concatenate([over.p95(d, r) for over, d, r in zip(overs, delays_s, ranks)])
    assert stacked.tobytes() == alone.tobytes()
    np.testing.assert_allclose(stacked, hand, rtol=0, atol=0)
    assert len(set(np.round(stacked, 9))) > 3  # percentiles that differ: the paths' intervals were told apart
