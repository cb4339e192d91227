"""Every link's state through the run as step functions of time, after the run, for all links at once.

A link's history of fluid load, saturation and congestion loss, its reserved rate and its line (capacity, buffer,
random loss, priority queueing, round-trip shift) change at known times (:class:`sim.des.links.Link`). Its queueing
delay and jitter, loss, the fraction of a fixed-rate stream's rate it carries and its delay shift follow at each of
those breakpoints (:func:`states`); :mod:`sim.des.paths` combines a path's links. The formulas are elementwise, so
they run once over every link's breakpoints laid end to end, with each breakpoint's line's figures beside it.
"""

from __future__ import annotations

import math

import numpy as np

from sim.des import lines, queueing
from sim.des.tcp import FRAME_BYTES

_TINY = 1e-9
STATE_NAMES = ("queue_s", "jitter_s", "loss", "fraction", "shift_s")


def states(links: list, horizon_s: float, reservations: dict | None = None) -> list[dict[str, np.ndarray]]:
    """Each link's state at the union of its changes up to ``horizon_s`` (s): a dict per link, in order.

    ``times_s``: its breakpoints (the first minus infinity, the idle state); from each on, ``queue_s`` and
    ``jitter_s`` (s), ``loss`` (0..1), ``fraction`` (0..1) and ``shift_s``, how much longer than the topology's the
    one-way delay across it is (s: half the change of its site's round trip; 0 but on a changed line). The arrays of
    a link are views of arrays shared by all. ``reservations``: links' reservations as arrays, by ``id``
    (:func:`sim.des.reserved.reserve`), where kept; else they are read from the link.
    """
    if not links:
        return []
    reservations = reservations or {}
    parts = [_breakpoints(link, horizon_s, reservations.get(id(link))) for link in links]
    table = [line for link in links for line in link.lines()]  # every line of every link, each link's in order
    first_line = np.cumsum([0] + [len(link.lines()) for link in links])[:-1]
    load_bps, saturated, congestion, reserved_bps = (np.concatenate([part[k] for part in parts]) for k in range(1, 5))
    line = np.concatenate([first + part[5] for first, part in zip(first_line, parts)])
    out = _state(table, line, load_bps, saturated, congestion, reserved_bps)
    bounds = np.cumsum([0] + [len(part[0]) for part in parts])
    return [{"times_s": part[0], **{name: out[name][a:b] for name in STATE_NAMES}}
            for part, a, b in zip(parts, bounds[:-1], bounds[1:])]


def _breakpoints(link, horizon_s: float, steps: tuple[np.ndarray, np.ndarray] | None = None,
                 ) -> tuple[np.ndarray, ...]:
    """A link's breakpoints (s) up to ``horizon_s``, and the state of its history, reservations and line at each.

    In order: the breakpoints, load (bit/s), saturation, congestion loss, reserved rate (bit/s) and which of its
    lines is in force (an index into ``link.lines()``).
    """
    # each series starts from the idle state, at minus infinity
    hist_s, loads_bps, saturated, losses = (np.array([start, *v], dtype=float) for start, v in
                                            zip((-math.inf, 0.0, 0.0, 0.0), link.history[:4]))
    if steps is None:
        steps = (np.array(link.steps_s, dtype=float), np.array(link.steps_bps, dtype=float))
    steps_s, steps_bps = np.concatenate([[-math.inf], steps[0]]), np.concatenate([[0.0], steps[1]])
    times_s = np.unique(np.concatenate([hist_s, steps_s, link.line_steps_s]))
    times_s = times_s[times_s <= horizon_s]
    h = np.searchsorted(hist_s, times_s, side="right") - 1
    r = np.searchsorted(steps_s, times_s, side="right") - 1
    which = lines.over(link, times_s) if link.line_steps_s else np.zeros(len(times_s), dtype=np.intp)
    return times_s, loads_bps[h], saturated[h], losses[h], steps_bps[r], which


def _state(table: list, line: np.ndarray, load_bps: np.ndarray, saturated: np.ndarray, congestion: np.ndarray,
           reserved_bps: np.ndarray) -> dict[str, np.ndarray]:
    """Queue and jitter (s), loss (0..1), fraction carried and delay shift (s) at breakpoints on lines ``table[line]``.

    :func:`sim.des.queueing.link_delay_s` for arrays of loads (bit/s): saturated by TCP (``queueing.STANDING``: a
    long transfer's standing queue; ``BURSTS``: short transfers'), or fixed-rate streams beyond the line (a full
    buffer), else M/D/1. On a priority line calls wait only behind calls and the frame in service
    (:func:`_priority_queue_s`) and never see its congestion loss. In an outage (capacity 0) nothing crosses: a
    fixed-rate stream gets no part of its rate, and nothing queues.
    """
    def column(values: list) -> np.ndarray:
        return np.array(values, dtype=float)[line]

    live = [spec.capacity_bps > 0.0 for spec in table]  # the queueing figures divide by the capacity
    capacity_bps = column([spec.capacity_bps for spec in table])
    full_s, tcp_s, burst_s, frame_s = (column([figure(spec) if ok else math.nan for spec, ok in zip(table, live)])
                                       for figure in _LINE_FIGURES)
    line_loss = column([spec.loss for spec in table])
    priority = np.array([spec.priority for spec in table], dtype=bool)[line]
    offered_bps = load_bps + reserved_bps
    over = reserved_bps > capacity_bps  # the reservations alone exceed the link: it is full
    with np.errstate(divide="ignore", invalid="ignore"):  # outages' breakpoints: replaced below
        utilisation = np.minimum(offered_bps / capacity_bps, 1.0)
        rho = np.clip(utilisation, 0.0, queueing.MAX_UTILISATION)
        md1_s = rho * frame_s / (2 * (1 - rho))
        busy = offered_bps > 0
        queue_s = np.where(over, full_s, np.where(saturated == queueing.STANDING, tcp_s, np.where(
            saturated == queueing.BURSTS, burst_s, np.where(busy, np.minimum(md1_s, full_s), 0.0))))
        jitter_s = np.where((saturated > 0) | over, np.minimum(full_s, frame_s),
                            np.where(busy, np.minimum(full_s, utilisation * frame_s), 0.0))
        queue_s = np.where(priority & ~over, _priority_queue_s(utilisation, saturated > 0, frame_s), queue_s)
        loss = 1.0 - (1.0 - line_loss) * (1.0 - np.where(priority, 0.0, congestion))
        fraction = np.where(over, capacity_bps / np.maximum(reserved_bps, _TINY), 1.0)
    outage = capacity_bps <= 0.0
    return {"queue_s": np.where(outage, 0.0, queue_s), "jitter_s": np.where(outage, 0.0, jitter_s),
            "loss": np.where(outage, line_loss, loss),
            "fraction": np.where(outage, np.where(reserved_bps > 0, 0.0, 1.0), fraction),
            "shift_s": column([spec.rtt_shift_s / 2 for spec in table])}


# A line's figures (s): a full buffer's delay, TCP's standing queue, short transfers' bursts, a frame's time
_LINE_FIGURES = (lambda spec: queueing.full_buffer_delay_s(spec.buffer_bytes, spec.capacity_bps),
                 lambda spec: queueing.tcp_queue_s(spec.buffer_bytes, spec.capacity_bps),
                 lambda spec: queueing.burst_queue_s(spec.buffer_bytes, spec.capacity_bps),
                 lambda spec: FRAME_BYTES * 8 / spec.capacity_bps)


def _priority_queue_s(utilisation: np.ndarray, saturated: np.ndarray, frame_s: np.ndarray) -> np.ndarray:
    """Mean wait (s) of calls served first, without pre-emption: the rest of the frame in service, ``rho * s / 2``.

    For frames of time s, with rho the whole link's utilisation (1 when TCP saturates it). Calls' packets are paced,
    so they hardly queue behind each other: the emulation measured 0.4 ms of queue for a 1.5 Mbit/s call on a
    2 Mbit/s priority line beside an upload, where M/D/1 with non-preemptive priority (Cobham) gives 12 ms
    (docs/fidelity.md, "call beside an upload, priority queue").
    """
    return np.where(saturated, 1.0, utilisation) * frame_s / 2
