"""Every call's record after the run: its rate from the run, its path's delay, jitter and loss from history.

A call replayed as flows (adaptive video: :class:`sim.des.flows.Media`, one per direction) brings its rate
history; a fixed-rate stream (:mod:`sim.des.reserved`) has its rate, less what an oversubscribed link could not
carry. Both see their path's queues, jitter and loss over their interval (:mod:`sim.des.paths`), and a
changed line's longer or shorter round trip while it runs (a backup's: the path's ``shift_s``). A call's
record keeps the worse direction's rate measures and the worse value of each delay measure.
"""

from __future__ import annotations

import numpy as np

from sim.des.paths import Intervals, PathHistory, add_states, p95_stacked
from sim.des.reserved import Streams

_TINY = 1e-9


class Histories:
    """The history of every path a call used, built once per path (links are keyed by identity)."""

    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self._by_path: dict[tuple, PathHistory] = {}
        self._link_states: dict[int, dict] = {}  # each link's state, by id, for the paths that share it

    def prepare(self, paths, reservations: dict | None = None) -> None:
        """Build the states of every link of ``paths`` at once (:func:`sim.des.linkstates.states`)."""
        add_states(self._link_states, (link for path in paths for link in path), self.horizon_s, reservations)

    def of(self, path: tuple) -> PathHistory:
        """The history of ``path`` (a tuple of links)."""
        key = tuple(map(id, path))
        history = self._by_path.get(key)
        if history is None:
            history = self._by_path[key] = PathHistory(path, self.horizon_s, self._link_states)
        return history


def _by_path(paths: list[tuple]) -> dict[tuple, tuple[tuple, list[int]]]:
    """Positions of each distinct path (links keyed by identity) in ``paths``."""
    groups: dict[tuple, tuple[tuple, list[int]]] = {}
    for k, path in enumerate(paths):
        key = tuple(map(id, path))
        entry = groups.get(key)
        if entry is None:
            entry = groups[key] = (path, [])
        entry[1].append(k)
    return groups


def adaptive(finished: list, histories: Histories) -> tuple[list[int], dict[str, np.ndarray]]:
    """Records of the calls replayed as flows.

    Args:
        finished: ``(session, (up, down), end_s, completed)`` per call, its directions settled to ``end_s``.
        histories: The paths' histories.

    Returns:
        The calls' session ids and their record columns (rates in bit/s, delays in s, shares 0..1).
    """
    halves = [h for _, pair, _, _ in finished for h in pair]
    if not halves:
        return [], {}
    queue, jitter, p95, loss, shift = (np.zeros(len(halves)) for _ in range(5))
    overs, delays_s, ranks, indexes = [], [], [], []
    for path, index in _by_path([h.path for h in halves]).values():
        history = histories.of(path)
        members = [halves[k] for k in index]
        start_s = np.array([h.start_s for h in members])
        end_s = np.array([h.since_s for h in members])
        over = history.over(start_s, end_s)
        index = np.array(index)
        queue[index], jitter[index], shift[index], at_start_loss = _means(
            over, np.array([history.queue_s, history.jitter_s, history.shift_s, history.loss]))
        loss[index] = _rate_weighted_loss(members, history, at_start_loss)
        overs.append(over)
        delays_s.append(history.delay_s())
        ranks.append(history.delay_rank())
        indexes.append(index)
    p95[np.concatenate(indexes)] = p95_stacked(overs, delays_s, ranks)  # every path's at once
    base_s = np.array([h.base_delay_s for h in halves])
    delays = {"delay": base_s + queue + shift, "delay_p95": base_s + p95, "jitter": jitter, "loss": loss,
              "queue": queue}
    sessions = [session for session, _, _, _ in finished]
    return sessions, _worse_of_two(finished, [h.rate_summary() for h in halves], delays, base_s, shift)


def _worse_of_two(finished: list, summaries: list[dict], delays: dict[str, np.ndarray], base_s: np.ndarray,
                  shift_s: np.ndarray) -> dict[str, np.ndarray]:
    """Each call's record columns from its two directions (up, down: alternate items of every array).

    The worse direction (the lesser share at target, then the greater share below the minimum; up on a tie) gives
    the rate measures; each delay measure is the greater of the two (``max(up, down)``'s: up unless down is greater),
    the mean rate the lesser.
    """
    at_target, below_min, size_bytes, rate_bps = (np.array([s[name] for s in summaries], dtype=float)
                                                  for name in ("at_target", "below_min", "bytes", "rate"))
    bottleneck = np.array([s["bottleneck"] for s in summaries], dtype=object)
    up, down = slice(0, None, 2), slice(1, None, 2)
    up_worse = (at_target[up] < at_target[down]) | (
        (at_target[up] == at_target[down]) & (-below_min[up] <= -below_min[down]))

    def worse(values: np.ndarray) -> np.ndarray:
        return np.where(up_worse, values[up], values[down])

    def greater(values: np.ndarray) -> np.ndarray:
        return np.where(values[down] > values[up], values[down], values[up])

    completed = np.array([completed for _, _, _, completed in finished], dtype=bool)
    end_s = np.array([end_s for _, _, end_s, _ in finished], dtype=float)
    return {"completed": completed, "bottleneck": worse(bottleneck), "end_s": np.where(completed, end_s, np.nan),
            "size_bytes": worse(size_bytes),
            "mean_rate_bps": np.where(rate_bps[down] < rate_bps[up], rate_bps[down], rate_bps[up]),
            "share_at_target": worse(at_target), "share_below_min": worse(below_min),
            "one_way_delay_s": greater(delays["delay"]), "one_way_delay_p95_s": greater(delays["delay_p95"]),
            "jitter_s": greater(delays["jitter"]), "loss": greater(delays["loss"]),
            "queue_delay_s": greater(delays["queue"]), "rtt_s": 2 * (base_s[up] + shift_s[up])}


def _rate_weighted_loss(members: list, history: PathHistory, loss_at_start: np.ndarray) -> np.ndarray:
    """Each direction's lost bits over bits sent: its rate history against its path's loss (0..1).

    A direction that sent nothing has the loss in force at its start, or none if it ran without sending.
    """
    owners, starts_s, ends_s, rates_bps = [], [], [], []
    for k, h in enumerate(members):
        n = len(h.seg_start_s)
        owners.extend([k] * n)
        starts_s.extend(h.seg_start_s)
        ends_s.extend(h.seg_start_s[1:])
        if n:
            ends_s.append(h.since_s)
        rates_bps.extend(h.seg_rate_bps)
    bits = np.array([h.bits for h in members])
    elapsed_s = np.array([h.elapsed_s for h in members])
    if owners:
        segments = history.over(np.array(starts_s), np.array(ends_s))
        lost = np.bincount(np.array(owners), weights=np.array(rates_bps) * segments.integral(history.loss),
                           minlength=len(members))
    else:
        lost = np.zeros(len(members))
    return np.where(bits > 0, lost / np.where(bits > 0, bits, 1.0), np.where(elapsed_s > 0, 0.0, loss_at_start))


def fixed_rate(streams: Streams, histories: Histories) -> dict[str, np.ndarray]:
    """Records of the fixed-rate streams, from their paths over their intervals (cut at the horizon)."""
    horizon_s = histories.horizon_s
    n = len(streams.rows)
    end_s = np.minimum(streams.end_s, horizon_s)
    halves = [_FixedHalves(n), _FixedHalves(n)]  # up, down
    by_site = streams.by_site()  # a site's streams share its two paths
    for direction in (0, 1):
        halves[direction].fill([(index, histories.of(streams.site_links[site][direction])) for site, index in by_site],
                               streams.start_s, end_s)
    return _combine(streams, halves, horizon_s)


class _FixedHalves:
    """One direction of every fixed-rate stream, as arrays.

    The measures of :meth:`sim.des.flows.Media.rate_summary` and of its path.
    """

    NAMES = ("fraction", "at_target", "delay_p95", "jitter", "loss", "queue", "shift")

    def __init__(self, n: int) -> None:
        for name in self.NAMES:
            setattr(self, name, np.zeros(n))
        self.bottleneck = np.full(n, "none", dtype=object)

    def fill(self, batches: list[tuple[np.ndarray, PathHistory]], start_s: np.ndarray, end_s: np.ndarray) -> None:
        """Compute the measures of the streams of each batch ``(index, history)``, every batch's at once.

        A batch's streams are those at ``index`` (positions in ``start_s`` and ``end_s``, s), on the path ``history``.
        """
        overs = [history.over(start_s[index], end_s[index]) for index, history in batches]
        self.delay_p95[np.concatenate([index for index, _ in batches])] = p95_stacked(
            overs, [history.delay_s() for _, history in batches], [history.delay_rank() for _, history in batches])
        paths = _Stacked(batches, overs)
        index = paths.index
        span_s = end_s[index] - start_s[index]
        integrals = paths.integrals(start_s[index], end_s[index])
        carried, lost, below_s = integrals[3], integrals[4], integrals[5]  # below_s: exactly 0 when never below
        has_span = span_s > 0
        self.fraction[index] = np.where(has_span, carried / np.where(has_span, span_s, 1.0), 0.0)
        self.at_target[index] = np.where(has_span, 1.0 - below_s / np.where(has_span, span_s, 1.0), 0.0)
        self.loss[index] = np.where(carried > 0, lost / np.where(carried > 0, carried, 1.0),
                                    np.where(has_span, 0.0, paths.loss[paths.k0]))
        self.queue[index], self.jitter[index], self.shift[index] = np.where(
            span_s > 0, integrals[:3] / np.where(span_s > 0, span_s, 1.0), paths.values[:3, paths.k0])  # _means
        below_by_link = integrals[6:]  # as Intervals.below_by_link: the link holding each longest, -1 if none
        limiter = np.where(below_by_link.max(axis=0) > 0, below_by_link.argmax(axis=0), paths.n_links)
        self.bottleneck[index] = paths.labels[paths.first_label + limiter]  # n_links: none


class _Stacked:
    """The step functions a fixed-rate direction integrates, of many paths laid end to end, with their intervals.

    Rows of ``values``: queueing delay, jitter and shift (s), fraction carried, fraction x loss, time below rate, then
    below rate while each link (by position, up to the longest path's) limits it. Each path's cumulative sums start
    at its own first breakpoint, as :func:`_integrals` for that path alone gives them, so the numbers are the same.
    """

    def __init__(self, batches: list[tuple[np.ndarray, PathHistory]], overs: list[Intervals]) -> None:
        histories = [history for _, history in batches]
        n_links = max(len(history.labels) for history in histories)
        self.times_s = np.concatenate([over.times_s for over in overs])
        fraction, loss, limiter = (np.concatenate([getattr(h, name) for h in histories])
                                   for name in ("fraction", "loss", "limiter"))
        below = 1.0 - (fraction >= 1 - _TINY).astype(float)
        self.values = np.array([*(np.concatenate([getattr(h, name) for h in histories])
                                  for name in ("queue_s", "jitter_s", "shift_s")),
                                fraction, fraction * loss, below, *(below * (limiter == j) for j in range(n_links))])
        self.loss = loss
        bounds = np.cumsum([0] + [len(over.times_s) for over in overs])
        self.cum = np.zeros_like(self.values)
        for a, b in zip(bounds[:-1], bounds[1:]):  # each path's from its first breakpoint
            self.cum[:, a + 1:b] = np.cumsum(self.values[:, a:b - 1] * np.diff(self.times_s[a:b]), axis=1)
        counts = [len(index) for index, _ in batches]
        self.index = np.concatenate([index for index, _ in batches])
        self.k0 = np.concatenate([a + over.k0 for a, over in zip(bounds, overs)])
        self.k1 = np.concatenate([a + over.k1 for a, over in zip(bounds, overs)])
        path_labels = [[*history.labels, "none"] for history in histories]
        self.labels = np.array([label for labels in path_labels for label in labels], dtype=object)
        firsts = np.cumsum([0] + [len(labels) for labels in path_labels])[:-1]
        self.first_label = np.repeat(firsts, counts)
        self.n_links = np.repeat([len(history.labels) for history in histories], counts)

    def integrals(self, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
        """Each row's integral over each interval [start_s, end_s] (s), as :func:`_integrals`."""
        times_s, values, cum, k0, k1 = self.times_s, self.values, self.cum, self.k0, self.k1
        return (cum[:, k1] + values[:, k1] * (end_s - times_s[k1])) - \
            (cum[:, k0] + values[:, k0] * (start_s - times_s[k0]))


def _integrals(over: Intervals, values: np.ndarray) -> np.ndarray:
    """:meth:`Intervals.integral` of each row of ``values`` (step functions x breakpoints) at once.

    The same operations on each row as the method's, so the same numbers to the bit (a cumulative sum along a row
    adds in the same order as along a vector).
    """
    times_s, k0, k1 = over.times_s, over.k0, over.k1
    cum = np.concatenate([np.zeros((len(values), 1)), np.cumsum(values[:, :-1] * np.diff(times_s), axis=1)], axis=1)
    return (cum[:, k1] + values[:, k1] * (over.end_s - times_s[k1])) - \
        (cum[:, k0] + values[:, k0] * (over.start_s - times_s[k0]))


def _means(over: Intervals, values: np.ndarray, integrals: np.ndarray | None = None) -> np.ndarray:
    """:meth:`Intervals.mean` of each row of ``values`` at once (the same numbers: :func:`_integrals`).

    ``integrals``: the rows' :func:`_integrals` where already computed.
    """
    span_s = over.span_s
    if integrals is None:
        integrals = _integrals(over, values)
    return np.where(span_s > 0, integrals / np.where(span_s > 0, span_s, 1.0), values[:, over.k0])


def _combine(streams: Streams, halves: list[_FixedHalves], horizon_s: float) -> dict[str, np.ndarray]:
    """One record per stream from its two directions, keeping the worse value of each measure."""
    up, down = halves
    rate_up, rate_down = streams.rate_bps * streams.up_share, streams.rate_bps
    base_s = streams.base_delay_s
    span_s = np.minimum(streams.end_s, horizon_s) - streams.start_s
    up_worse = up.at_target <= down.at_target  # below target is the rest of the time: the same order
    completed = streams.end_s <= horizon_s
    bits_up, bits_down = rate_up * up.fraction * span_s, rate_down * down.fraction * span_s
    return {
        "completed": completed,
        "bottleneck": np.where(up_worse, up.bottleneck, down.bottleneck),
        "end_s": np.where(completed, streams.end_s, np.nan),
        "size_bytes": np.where(up_worse, bits_up, bits_down) / 8,
        "mean_rate_bps": np.minimum(rate_up * up.fraction, rate_down * down.fraction),
        "share_at_target": np.where(up_worse, up.at_target, down.at_target),
        "share_below_min": 1.0 - np.where(up_worse, up.at_target, down.at_target),
        "one_way_delay_s": base_s + np.maximum(up.queue + up.shift, down.queue + down.shift),
        "one_way_delay_p95_s": base_s + np.maximum(up.delay_p95, down.delay_p95),
        "jitter_s": np.maximum(up.jitter, down.jitter),
        "loss": np.maximum(up.loss, down.loss),
        "queue_delay_s": np.maximum(up.queue, down.queue),
        "rtt_s": 2 * (base_s + up.shift),
    }
