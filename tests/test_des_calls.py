"""Calls' records from their paths' histories: the measures computed as rows of one array are the vectors' to the bit.

:func:`sim.des.calls._integrals` and :func:`sim.des.calls._means` integrate several step functions of a path over
many intervals at once; :meth:`sim.des.paths.Intervals.integral` and ``mean`` do one at a time. Random links
(a history of loads, saturation and losses; reservations; calls' intervals, some empty, some past the history) must
give the same numbers to the bit, and :class:`sim.des.calls._FixedHalves` the measures the one-at-a-time formulas
give.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.des import calls, queueing
from sim.des.links import Link
from sim.des.paths import PathHistory

HORIZON_S = 600.0
times = st.lists(st.floats(0.0, HORIZON_S), min_size=0, max_size=12, unique=True).map(sorted)


def _link(name: str, change_s: list[float], steps_s: list[float], data: st.DataObject) -> Link:
    link = Link(f"{name}/up", name, "access", "up", 1e6, 30_000.0, 0.01, 0.002, 0.0, 60.0, 11)
    n = len(change_s)
    loads = data.draw(st.lists(st.sampled_from([0.0, 2e5, 6e5, 1e6]), min_size=n, max_size=n))
    states = data.draw(st.lists(st.sampled_from([queueing.NOT_SATURATED, queueing.BURSTS, queueing.STANDING]),
                                min_size=n, max_size=n))
    losses = data.draw(st.lists(st.sampled_from([0.0, 1e-3, 0.02]), min_size=n, max_size=n))
    link.history = (list(change_s), loads, states, losses, [0.0] * n)
    link.reserve(list(steps_s), data.draw(st.lists(st.sampled_from([0.0, 4e5, 1.2e6]), min_size=len(steps_s),
                                                   max_size=len(steps_s))))
    return link


@settings(max_examples=150, deadline=None)
@given(change_s=times, steps_s=times, two_links=st.booleans(), data=st.data())
def test_rows_at_once_are_the_vectors_to_the_bit(change_s, steps_s, two_links, data):
    path = (_link("a", change_s, steps_s, data),)
    if two_links:
        path = (*path, _link("b", data.draw(times), data.draw(times), data))
    history = PathHistory(path, HORIZON_S)
    n = data.draw(st.integers(1, 8))
    start_s = np.array(data.draw(st.lists(st.floats(0.0, HORIZON_S), min_size=n, max_size=n)))
    end_s = np.minimum(start_s + np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 30.0, 400.0]), min_size=n,
                                                                 max_size=n))), HORIZON_S)
    over = history.over(start_s, end_s)
    rows = [history.queue_s, history.jitter_s, history.loss, history.fraction * history.loss]
    for row, integral, mean in zip(rows, calls._integrals(over, np.array(rows)), calls._means(over, np.array(rows))):
        assert np.array_equal(integral, over.integral(row))
        assert np.array_equal(mean, over.mean(row))

    halves = calls._FixedHalves(n)
    halves.fill([(np.arange(n), history)], start_s, end_s)
    at_rate = (history.fraction >= 1 - calls._TINY).astype(float)
    span_s = end_s - start_s
    carried = over.integral(history.fraction)
    assert np.array_equal(halves.fraction, np.where(span_s > 0, carried / np.where(span_s > 0, span_s, 1.0), 0.0))
    below_s = over.integral(1.0 - at_rate)
    assert np.array_equal(halves.at_target, np.where(span_s > 0, 1.0 - below_s / np.where(span_s > 0, span_s, 1.0),
                                                     0.0))
    lost = over.integral(history.fraction * history.loss)
    assert np.array_equal(halves.loss, np.where(carried > 0, lost / np.where(carried > 0, carried, 1.0),
                                                np.where(span_s > 0, 0.0, history.loss[over.k0])))
    for name, values in (("queue", history.queue_s), ("jitter", history.jitter_s), ("shift", history.shift_s)):
        assert np.array_equal(getattr(halves, name), over.mean(values))
    labels = np.array([*history.labels, "none"], dtype=object)
    assert list(halves.bottleneck) == list(labels[over.below_by_link(1.0 - at_rate)])


@settings(max_examples=100, deadline=None)
@given(change_s=times, steps_s=times, data=st.data())
def test_paths_filled_together_are_each_filled_alone_to_the_bit(change_s, steps_s, data):
    # a one-link path and a two-link one (a shared link behind an access line), their streams interleaved
    histories = [PathHistory((_link("a", change_s, steps_s, data),), HORIZON_S),
                 PathHistory((_link("b", data.draw(times), data.draw(times), data),
                              _link("c", data.draw(times), data.draw(times), data)), HORIZON_S)]
    n = data.draw(st.integers(2, 10))
    start_s = np.array(data.draw(st.lists(st.floats(0.0, HORIZON_S), min_size=n, max_size=n)))
    end_s = np.minimum(start_s + np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 30.0, 400.0]), min_size=n,
                                                                 max_size=n))), HORIZON_S)
    batches = [(np.arange(0, n, 2), histories[0]), (np.arange(1, n, 2), histories[1])]
    together, alone = calls._FixedHalves(n), calls._FixedHalves(n)
    together.fill(batches, start_s, end_s)
    for batch in batches:
        alone.fill([batch], start_s, end_s)
    for name in (*calls._FixedHalves.NAMES, "bottleneck"):
        assert np.array_equal(getattr(together, name), getattr(alone, name)), name


def test_a_fixed_stream_on_a_line_its_reservations_overfill_half_the_time_carries_three_quarters():
    """1.2 Mbit/s reserved on a 1 Mbit/s line for 30 of 60 s: 1/1.2 of the rate then, all of it before (hand)."""
    link = Link("a/up", "a", "access", "up", 1e6, 30_000.0, 0.0, 0.0, 0.0, 60.0, 11)
    link.reserve([30.0, 60.0], [1.2e6, 0.0])
    history = PathHistory((link,), HORIZON_S)
    halves = calls._FixedHalves(1)
    halves.fill([(np.arange(1), history)], np.array([0.0]), np.array([60.0]))
    assert abs(halves.fraction[0] - (30.0 + 30.0 / 1.2) / 60.0) < 1e-12
    assert halves.at_target[0] == 0.5
    assert halves.bottleneck[0] == "access_up"


def test_a_calls_record_keeps_its_worse_direction_and_the_greater_delay():
    # Call 0: up at target half the time, down 80% -> up is worse. Call 1: both always at target, below the minimum
    # never -> a tie, up. Call 2: both at target 60%, down below the minimum longer (30% to 10%) -> down.
    def summary(at_target, below_min, size_bytes, rate_bps, bottleneck):
        return {"at_target": at_target, "below_min": below_min, "bytes": size_bytes, "rate": rate_bps,
                "bottleneck": bottleneck}

    summaries = [summary(0.5, 0.2, 100.0, 800.0, "up link"), summary(0.8, 0.0, 300.0, 900.0, "down link"),
                 summary(1.0, 0.0, 400.0, 1000.0, "none"), summary(1.0, 0.0, 500.0, 1000.0, "down link"),
                 summary(0.6, 0.1, 600.0, 700.0, "up link"), summary(0.6, 0.3, 700.0, 600.0, "down link")]
    finished = [(10, (), 50.0, True), (11, (), 60.0, False), (12, (), 70.0, True)]
    queue = np.array([0.01, 0.02, 0.03, 0.03, 0.05, 0.0])
    shift = np.array([0.0, 0.0, 0.1, 0.1, 0.0, 0.0])
    base = np.array([0.02, 0.02, 0.03, 0.03, 0.04, 0.04])
    delays = {"delay": base + queue + shift, "delay_p95": base + 2 * queue, "jitter": queue / 10,
              "loss": np.array([0.0, 0.01, 0.02, 0.0, 0.0, 0.0]), "queue": queue}
    record = calls._worse_of_two(finished, summaries, delays, base, shift)
    assert record["bottleneck"].tolist() == ["up link", "none", "down link"]
    assert record["share_at_target"].tolist() == [0.5, 1.0, 0.6]
    assert record["share_below_min"].tolist() == [0.2, 0.0, 0.3]
    assert record["size_bytes"].tolist() == [100.0, 400.0, 700.0]
    assert record["mean_rate_bps"].tolist() == [800.0, 1000.0, 600.0]
    assert record["queue_delay_s"].tolist() == [0.02, 0.03, 0.05]
    assert record["loss"].tolist() == [0.01, 0.02, 0.0]
    assert np.isnan(record["end_s"][1]) and record["end_s"][[0, 2]].tolist() == [50.0, 70.0]
    assert record["completed"].tolist() == [True, False, True]
    assert record["rtt_s"].tolist() == [2 * 0.02, 2 * (0.03 + 0.1), 2 * 0.04]
    assert record["one_way_delay_s"].tolist() == [0.02 + 0.02, 0.03 + 0.03 + 0.1, 0.04 + 0.05]
