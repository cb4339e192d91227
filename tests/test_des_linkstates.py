"""Every link's state at once (:func:`sim.des.linkstates.states`) is each link's alone, to the bit.

The reference below is the one-link-at-a-time implementation the simulator had before (its formulas as they were),
kept here only to check the arrays laid end to end against it: random histories, reservations and line changes,
with outages (capacity 0), priority lines and longer round trips.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.des import lines, linkstates, queueing
from sim.des.links import Line, Link
from sim.des.tcp import FRAME_BYTES

_TINY = 1e-9
HORIZON_S = 600.0
times = st.lists(st.floats(0.0, HORIZON_S), min_size=0, max_size=10, unique=True).map(sorted)
line_specs = st.builds(Line, st.sampled_from([0.0, 5e5, 2e6]), st.sampled_from([10_000.0, 60_000.0]),
                       st.sampled_from([0.0, 0.01]), st.booleans(), st.sampled_from([0.0, 0.03]))


def _link(data: st.DataObject, priority: bool) -> Link:
    link = Link("a/up", "a", "access", "up", 1e6, 30_000.0, 0.01, 0.002, 0.0, 60.0, 11, priority=priority)
    change_s, steps_s = data.draw(times), data.draw(times)
    n = len(change_s)
    draw = lambda values, size: data.draw(st.lists(st.sampled_from(values), min_size=size, max_size=size))  # noqa: E731
    link.history = (list(change_s), draw([0.0, 2e5, 6e5, 1e6], n),
                    draw([queueing.NOT_SATURATED, queueing.BURSTS, queueing.STANDING], n), draw([0.0, 1e-3, 0.02], n),
                    [0.0] * n)
    link.reserve(list(steps_s), draw([0.0, 4e5, 1.2e6], len(steps_s)))
    line_steps_s = data.draw(times)
    if line_steps_s:
        link.schedule_lines(line_steps_s, data.draw(st.lists(line_specs, min_size=len(line_steps_s),
                                                             max_size=len(line_steps_s))))
    return link


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n_links=st.integers(1, 4), priority=st.booleans())
def test_every_links_state_at_once_is_its_state_alone_to_the_bit(data, n_links, priority):
    links = [_link(data, priority) for _ in range(n_links)]
    kept = {id(link): (np.array(link.steps_s, dtype=float), np.array(link.steps_bps, dtype=float)) for link in links}
    for link, state, given_steps in zip(links, linkstates.states(links, HORIZON_S),
                                        linkstates.states(links, HORIZON_S, kept)):
        reference = _reference_state(link, HORIZON_S)
        assert set(state) == set(reference) == set(given_steps)
        for name, values in reference.items():
            assert np.array_equal(state[name], values), name
            assert np.array_equal(given_steps[name], values), name


def test_no_links_no_states():
    assert linkstates.states([], HORIZON_S) == []


def test_a_link_alone_by_hand():
    # 500 kbit/s of load on a 1 Mbit/s line from 10 s: M/D/1 at rho 0.5, frames of 1514 B: 6.056 ms of service.
    link = Link("a/up", "a", "access", "up", 1e6, 30_000.0, 0.01, 0.0, 0.0, 60.0, 11)
    link.history = ([10.0], [5e5], [queueing.NOT_SATURATED], [0.0], [0.0])
    state = linkstates.states([link], HORIZON_S)[0]
    frame_s = FRAME_BYTES * 8 / 1e6
    assert state["times_s"].tolist() == [-math.inf, 10.0]
    assert state["queue_s"].tolist() == [0.0, 0.5 * frame_s / (2 * 0.5)]
    assert state["jitter_s"].tolist() == [0.0, 0.5 * frame_s]
    assert state["loss"].tolist() == [1.0 - (1.0 - 0.01), 1.0 - (1.0 - 0.01)]
    assert state["fraction"].tolist() == [1.0, 1.0] and state["shift_s"].tolist() == [0.0, 0.0]


# The one-link-at-a-time reference (the simulator's implementation until 2026-12-02)


def _reference_state(link, horizon_s: float) -> dict[str, np.ndarray]:
    """One link's state from its history of fluid load, its reservations and its line, at the union of their changes.

    Besides queue, jitter, loss and fraction: ``shift_s``, how much longer than the topology's the one-way delay
    across it is (half the change of its site's round trip; 0 but on a changed line).
    """
    # each series starts from the idle state, at minus infinity
    hist_s, loads_bps, saturated, losses, media_bps = (np.array([start, *v], dtype=float) for start, v in
                                                       zip((-math.inf, 0.0, 0.0, 0.0, 0.0), link.history))
    steps_s = np.array([-math.inf, *link.steps_s], dtype=float)
    steps_bps = np.array([0.0, *link.steps_bps], dtype=float)
    times_s = np.unique(np.concatenate([hist_s, steps_s, link.line_steps_s]))
    times_s = times_s[times_s <= horizon_s]
    h = np.searchsorted(hist_s, times_s, side="right") - 1
    r = np.searchsorted(steps_s, times_s, side="right") - 1
    load_bps, state, congestion, reserved_bps = loads_bps[h], saturated[h], losses[h], steps_bps[r]
    if not link.line_steps_s:
        return {"times_s": times_s, **_reference_line_state(link.line0, load_bps, state, congestion, reserved_bps)}
    which = lines.over(link, times_s)
    out = {name: np.zeros(len(times_s)) for name in ("queue_s", "jitter_s", "loss", "fraction", "shift_s")}
    for k, line in enumerate(link.lines()):
        part = which == k
        if part.any():
            for name, values in _reference_line_state(line, load_bps[part], state[part], congestion[part],
                                            reserved_bps[part]).items():
                out[name][part] = values
    return {"times_s": times_s, **out}


def _reference_line_state(line, load_bps: np.ndarray, state: np.ndarray, congestion: np.ndarray,
                          reserved_bps: np.ndarray) -> dict[str, np.ndarray]:
    """Queue and jitter (s), loss (0..1), fraction carried and delay shift (s) on a link while it is ``line``.

    In an outage (capacity 0) nothing crosses: a fixed-rate stream gets no part of its rate, and nothing queues.
    """
    capacity_bps = line.capacity_bps
    shift_s = np.full(len(load_bps), line.rtt_shift_s / 2)
    if capacity_bps <= 0.0:
        none = np.zeros(len(load_bps))
        return {"queue_s": none, "jitter_s": none, "loss": np.full(len(load_bps), line.loss),
                "fraction": np.where(reserved_bps > 0, 0.0, 1.0), "shift_s": shift_s}
    is_saturated = state > 0
    over = reserved_bps > capacity_bps  # the reservations alone exceed the link: it is full
    queue_s, jitter_s = _reference_queues(capacity_bps, line.buffer_bytes, load_bps + reserved_bps, state, over)
    if line.priority:  # calls wait only behind calls and the frame in service; their queue never overflows
        queue_s = np.where(over, queue_s,
                           _reference_priority_queue_s(capacity_bps, load_bps + reserved_bps, is_saturated))
        congestion = np.zeros_like(congestion)
    loss = 1.0 - (1.0 - line.loss) * (1.0 - congestion)
    fraction = np.where(over, capacity_bps / np.maximum(reserved_bps, _TINY), 1.0)
    return {"queue_s": queue_s, "jitter_s": jitter_s, "loss": loss, "fraction": fraction, "shift_s": shift_s}


def _reference_priority_queue_s(capacity_bps: float, load_bps: np.ndarray, saturated: np.ndarray) -> np.ndarray:
    """Mean wait (s) of calls served first, without pre-emption: the rest of the frame in service, ``rho * s / 2``.

    For frames of time s, with rho the whole link's utilisation (1 when TCP saturates it). Calls' packets are paced,
    so they hardly queue behind each other: the emulation measured 0.4 ms of queue for a 1.5 Mbit/s call on a
    2 Mbit/s priority line beside an upload, where M/D/1 with non-preemptive priority (Cobham) gives 12 ms
    (docs/fidelity.md, "call beside an upload, priority queue").
    """
    frame_s = FRAME_BYTES * 8 / capacity_bps
    rho = np.where(saturated, 1.0, np.minimum(load_bps / capacity_bps, 1.0))
    return rho * frame_s / 2


def _reference_queues(capacity_bps: float, buffer_bytes: float, load_bps: np.ndarray, saturated: np.ndarray,
            over: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sim.des.queueing.link_delay_s` for arrays of loads (bit/s): queueing delay and jitter (s).

    ``saturated`` by TCP (``queueing.STANDING``: a long transfer's standing queue; ``BURSTS``: short transfers'),
    or ``over``: fixed-rate streams beyond the line (a full buffer).
    """
    full_s = queueing.full_buffer_delay_s(buffer_bytes, capacity_bps)
    tcp_s = queueing.tcp_queue_s(buffer_bytes, capacity_bps)
    burst_s = queueing.burst_queue_s(buffer_bytes, capacity_bps)
    frame_s = FRAME_BYTES * 8 / capacity_bps
    utilisation = np.minimum(load_bps / capacity_bps, 1.0)
    rho = np.clip(utilisation, 0.0, queueing.MAX_UTILISATION)
    md1_s = rho * frame_s / (2 * (1 - rho))
    busy = load_bps > 0
    queue_s = np.where(over, full_s, np.where(saturated == queueing.STANDING, tcp_s, np.where(
        saturated == queueing.BURSTS, burst_s, np.where(busy, np.minimum(md1_s, full_s), 0.0))))
    full = (saturated > 0) | over
    jitter_s = np.where(full, min(full_s, frame_s), np.where(busy, np.minimum(full_s, utilisation * frame_s), 0.0))
    return queue_s, jitter_s
