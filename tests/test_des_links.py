"""A link's remembered answers (:class:`sim.des.links.Link`) are the fresh ones after whatever changed.

The binding reservation step resumes where its last look stopped, and the M/D/1 queue is remembered per load: each
check here changes what the answer depends on between two calls (the media's demand, the reserved rate, the line,
the bound, the load) and compares with the value worked out by hand.
"""

from __future__ import annotations

import math

import pytest

from sim.des import queueing
from sim.des.links import Line, Link
from sim.des.tcp import FRAME_BYTES


def _link(capacity_bps: float = 10e6, buffer_bytes: float = 100_000.0) -> Link:
    return Link("site/up", "site", "access", "up", capacity_bps, buffer_bytes, 0.0, 0.0, 0.0, 60.0, 10)


def _reserving_link() -> Link:
    """10 Mbit/s: a headroom of 9 Mbit/s for video; reservations of 1, 2, 8.5 and 1 Mbit/s from 1, 2, 3 and 4 s."""
    link = _link()
    link.reserve([1.0, 2.0, 3.0, 4.0], [1e6, 2e6, 8.5e6, 1e6])
    return link


def test_the_binding_step_follows_the_media_demand_between_two_looks():
    link = _reserving_link()
    link.add_media(1e6, 1e6)  # 8 Mbit/s left of the headroom: only 8.5 Mbit/s (and the step after it) binds
    assert link.binding_step_s(10.0) == 3.0
    link.add_media(6.5e6, 1e6)  # 1.5 Mbit/s left: 2 Mbit/s binds now, an earlier step than the last answer
    assert link.binding_step_s(10.0) == 2.0
    link.remove_media(6.5e6, 1e6)  # back to 8 Mbit/s
    assert link.binding_step_s(10.0) == 3.0
    link.add_media(7.9e6, 1e6)  # 0.1 Mbit/s left: the first step, 1 Mbit/s, binds
    assert link.binding_step_s(10.0) == 1.0


def test_a_look_stopped_by_its_bound_does_not_hide_a_later_binding_step():
    link = _reserving_link()
    link.add_media(1e6, 1e6)
    assert link.binding_step_s(2.5) == math.inf  # the steps at 1 and 2 s fit
    assert link.binding_step_s(3.0) == math.inf  # the step at 3 s is not before the bound
    assert link.binding_step_s(10.0) == 3.0


def test_the_binding_step_follows_the_reserved_rate_taken_and_the_line():
    link = _reserving_link()
    link.add_media(1e6, 1e6)
    assert link.binding_step_s(10.0) == 3.0
    assert link.sync(3.5)  # 8.5 Mbit/s reserved: the step down to 1 Mbit/s at 4 s changes what video may take
    assert link.binding_step_s(10.0) == 4.0
    link.schedule_lines([3.6], [Line(20e6, 100_000.0, 0.0, False)])
    assert link.take_line(3.6)  # a headroom of 18 Mbit/s: 17 left, nothing binds
    assert link.binding_step_s(10.0) == math.inf
    assert link.sync(4.5)
    assert link.binding_step_s(10.0) == math.inf  # no step is left


def test_new_reservations_restart_the_look():
    link = _reserving_link()
    link.add_media(1e6, 1e6)
    assert link.binding_step_s(10.0) == 3.0
    link.reserve([0.5, 5.0], [0.5e6, 8.1e6])
    assert link.binding_step_s(10.0) == 5.0


def _md1_queue_s(load_bps: float, capacity_bps: float) -> float:
    """Pollaczek-Khinchine mean wait for frames of FRAME_BYTES at load/capacity (by hand)."""
    rho, service_s = load_bps / capacity_bps, FRAME_BYTES * 8 / capacity_bps
    return rho * service_s / (2 * (1 - rho))


@pytest.mark.parametrize("reserved_first", [False, True])
def test_the_queue_follows_the_load_the_reserved_rate_and_the_line(reserved_first):
    link = _link()
    if reserved_first:
        link.reserve([0.0], [2e6])
        assert link.sync(0.0)
    reserved_bps = link.reserved_bps
    for load_bps in (5e6, 3e6, 5e6):  # the same load twice, another between
        link.carry(load_bps, queueing.NOT_SATURATED)
        assert link.queue_delay_s == pytest.approx(_md1_queue_s(load_bps + reserved_bps, 10e6), rel=1e-12)
        assert link.queue_jitter_s == pytest.approx((load_bps + reserved_bps) / 10e6 * FRAME_BYTES * 8 / 10e6)
    link.schedule_lines([1.0, 2.0], [Line(20e6, 100_000.0, 0.0, False), Line(20e6, 1_500.0, 0.0, False)])
    assert link.take_line(1.0)  # the same load on a line twice as fast
    assert link.queue_delay_s == pytest.approx(_md1_queue_s(5e6 + reserved_bps, 20e6), rel=1e-12)
    link.carry(17e6, queueing.NOT_SATURATED)
    assert link.queue_delay_s == pytest.approx(_md1_queue_s(17e6 + reserved_bps, 20e6), rel=1e-12)
    assert link.take_line(2.0)  # the same load with a one-frame buffer: the queue is capped at its 0.6 ms
    assert link.queue_delay_s == pytest.approx(1_500.0 * 8 / 20e6, rel=1e-12)
    link.carry(5e6, queueing.NOT_SATURATED)  # a load the first line queued the same on: below the cap
    assert link.queue_delay_s == pytest.approx(_md1_queue_s(5e6 + reserved_bps, 20e6), rel=1e-12)
