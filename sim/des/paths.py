"""What a stream saw on its path, from its links' histories, after the run.

Every link keeps the history of its fluid state (load, saturation, congestion loss) and knows its reserved rate
as a step function (:class:`sim.des.links.Link`). A path's queueing delay, jitter, loss and the share of a
fixed-rate stream's rate it carries are therefore step functions of time, known once the run is over; every
stream's delay, jitter, loss and delay percentile over its interval follow from them, for all streams of a path
at once (:class:`PathHistory`). No event is needed for a change that alters only a path's queues.
"""

from __future__ import annotations

import numpy as np

from sim.des import linkstates


class PathHistory:
    """A path's state as step functions of time.

    Breakpoints ``times_s`` and, from each on, its queueing delay and jitter (s), loss (0..1), the fraction of a
    fixed-rate stream's rate it carries (0..1), which of its links (index) limits that fraction, and how much longer
    than its streams' base delay its one-way delay is (``shift_s``: a changed line's longer round trip, halved).
    """

    def __init__(self, path: tuple, horizon_s: float, link_states: dict | None = None) -> None:
        """``link_states``: each link's state by ``id``, kept across the paths that share a link (a GPON tree's)."""
        link_states = {} if link_states is None else link_states
        add_states(link_states, path, horizon_s)
        states = [link_states[id(link)] for link in path]
        if len(states) == 1:  # a link's own breakpoints (sorted and distinct)
            times_s, at = states[0]["times_s"], [slice(None)]
        else:
            times_s = np.unique(np.concatenate([s["times_s"] for s in states]))
            at = [np.searchsorted(s["times_s"], times_s, side="right") - 1 for s in states]
        self.times_s = times_s
        self.queue_s = sum(s["queue_s"][k] for s, k in zip(states, at))
        extra_jitter_s2 = sum(link.jitter_s**2 for link in path)  # the access lines' own jitter
        self.jitter_s = np.sqrt(extra_jitter_s2 + sum(s["jitter_s"][k] ** 2 for s, k in zip(states, at)))
        delivered = np.ones(len(times_s))
        for s, k in zip(states, at):
            delivered = delivered * (1.0 - s["loss"][k])
        self.loss = 1.0 - delivered
        self.shift_s = sum(s["shift_s"][k] for s, k in zip(states, at))  # one-way delay beyond the base (s)
        fractions = np.array([s["fraction"][k] for s, k in zip(states, at)])  # links x breakpoints
        self.fraction = fractions.min(axis=0)
        self.limiter = fractions.argmin(axis=0)
        self.labels = [link.label for link in path]
        self._delay_s = self._delay_rank = None

    def delay_s(self) -> np.ndarray:
        """Its one-way delay beyond its streams' base (s): queueing delay plus ``shift_s``, from each breakpoint on."""
        if self._delay_s is None:
            self._delay_s = self.queue_s + self.shift_s
        return self._delay_s

    def delay_rank(self) -> np.ndarray:
        """Each breakpoint's rank by :meth:`delay_s` (ties by breakpoint), for :meth:`Intervals.p95`."""
        if self._delay_rank is None:
            self._delay_rank = value_ranks(self.delay_s())
        return self._delay_rank

    def over(self, start_s: np.ndarray, end_s: np.ndarray) -> Intervals:
        """The intervals [start_s, end_s] (s) on this path, for integrals and percentiles over each."""
        return Intervals(self, start_s, end_s)


class Intervals:
    """Many intervals on one path: integrals, means and the 95th percentile of its step functions over each."""

    def __init__(self, history: PathHistory, start_s: np.ndarray, end_s: np.ndarray) -> None:
        times_s = history.times_s.copy()  # the first breakpoint is minus infinity: start it with the first interval
        times_s[0] = min(start_s.min(), times_s[1]) if len(times_s) > 1 else start_s.min()
        self.history, self.times_s, self.start_s, self.end_s = history, times_s, start_s, end_s
        self.k0 = np.searchsorted(times_s, start_s, side="right") - 1
        self.k1 = np.searchsorted(times_s, end_s, side="right") - 1
        self.span_s = end_s - start_s

    def cumulative(self, values: np.ndarray) -> np.ndarray:
        """The integral of a step function from the first breakpoint to each breakpoint."""
        return np.concatenate([[0.0], np.cumsum(values[:-1] * np.diff(self.times_s))])

    def at(self, values: np.ndarray, cum: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """The integral of ``values`` (with its ``cumulative``) from the first breakpoint to each time ``t_s``."""
        k = np.searchsorted(self.times_s, t_s, side="right") - 1
        return cum[k] + values[k] * (t_s - self.times_s[k])

    def integral(self, values: np.ndarray) -> np.ndarray:
        """The integral of a step function over each interval."""
        cum = self.cumulative(values)
        k0, k1 = self.k0, self.k1
        return (cum[k1] + values[k1] * (self.end_s - self.times_s[k1])) - \
            (cum[k0] + values[k0] * (self.start_s - self.times_s[k0]))

    def mean(self, values: np.ndarray) -> np.ndarray:
        """The time-mean over each interval (the value at its start for an empty one)."""
        span_s = self.span_s
        return np.where(span_s > 0, self.integral(values) / np.where(span_s > 0, span_s, 1.0), values[self.k0])

    def p95(self, values: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
        """Time-weighted 95th percentile over each interval (the value at its start for an empty one).

        Every (interval, segment) pair is laid out flat, sorted by interval then value; the percentile is the
        first value whose cumulative time reaches 95% of its interval's. ``rank``: :func:`value_ranks` of
        ``values``, where already known.
        """
        return p95_stacked([self], [values], [value_ranks(values) if rank is None else rank])

    def below_by_link(self, below: np.ndarray) -> np.ndarray:
        """Which link of the path (index) held each interval below its rate longest, or -1 if none did."""
        history = self.history
        times = np.array([self.integral(below * (history.limiter == j)) for j in range(len(history.labels))])
        return np.where(times.max(axis=0) > 0, times.argmax(axis=0), -1)


def p95_stacked(overs: list[Intervals], values: list[np.ndarray], ranks: list[np.ndarray]) -> np.ndarray:
    """:meth:`Intervals.p95` of many paths' intervals at once: ``overs[b]`` over ``values[b]`` (with its ``ranks[b]``).

    Returns every interval's 95th percentile, batch after batch, equal to the bit to each batch computed alone:
    the batches' (interval, segment) pairs are laid end to end and sorted by one key (interval, then rank), and the
    running sum of time restarts at each batch (one cumulative sum per batch, adding as that batch alone would).
    Within an interval's pairs the running sum never falls, so the first pair that reaches its goal is found by
    counting the pairs below it.
    """
    if not overs:
        return np.zeros(0)
    sizes = np.array([len(v) for v in values])
    base = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # each batch's first breakpoint in the stack
    times_s = np.concatenate([over.times_s for over in overs])
    value = np.concatenate(values)
    rank = np.concatenate(ranks)
    n_each = np.array([len(over.k0) for over in overs])
    k0 = np.concatenate([over.k0 for over in overs]) + np.repeat(base, n_each)
    k1 = np.concatenate([over.k1 for over in overs]) + np.repeat(base, n_each)
    start_s = np.concatenate([over.start_s for over in overs])
    end_s = np.concatenate([over.end_s for over in overs])
    counts = k1 - k0 + 1
    offsets = np.cumsum(counts) - counts
    segment = np.arange(counts.sum()) - np.repeat(offsets - k0, counts)
    seg_end_s = np.append(times_s[1:], np.inf)
    seg_end_s[base + sizes - 1] = np.inf  # each batch's last breakpoint lasts for ever, as in its own
    durations_s = _overlaps_s(times_s, start_s, end_s, k0, k1, segment, offsets, seg_end_s)
    keys = np.repeat(np.arange(len(k0), dtype=np.int64) * int(sizes.max()), counts) + rank[segment]
    order = np.argsort(keys, kind="stable")
    ordered_s = durations_s[order]
    reached_s = np.empty_like(ordered_s)
    # each batch's pairs, in order: from its first interval's first pair to the next batch's
    pair_bounds = np.append(offsets, len(ordered_s))[np.concatenate([[0], np.cumsum(n_each)])]
    for a, b in zip(pair_bounds[:-1].tolist(), pair_bounds[1:].tolist()):
        np.cumsum(ordered_s[a:b], out=reached_s[a:b])
    first_of_batch = offsets == np.repeat(pair_bounds[:-1], n_each)  # nothing counted before it in its batch
    before_s = np.where(first_of_batch, 0.0, reached_s[offsets - 1])
    goal_s = before_s + 0.95 * (end_s - start_s)
    threshold_s = goal_s - 1e-12 * np.maximum(1.0, goal_s)
    below = np.add.reduceat((reached_s < np.repeat(threshold_s, counts)).astype(np.int64), offsets)
    pick = offsets + np.minimum(below, counts - 1)
    return np.where(end_s > start_s, value[segment[order[pick]]], value[k0])


def _overlaps_s(times_s: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, k0: np.ndarray, k1: np.ndarray,
                segment: np.ndarray, offsets: np.ndarray, seg_end_s: np.ndarray | None = None) -> np.ndarray:
    """How long (s) each (interval, segment) pair overlaps: its segment's clipped to its interval.

    A segment inside its interval (neither its first nor its last) overlaps it whole: its length, the same
    subtraction as the clipped one. Only each interval's first and last pairs are clipped. ``seg_end_s``: where
    each segment ends (s), if not at the next breakpoint (the last: never).
    """
    if seg_end_s is None:
        seg_end_s = np.append(times_s[1:], np.inf)
    durations_s = np.append(np.diff(times_s), np.inf)[segment]
    for at, k in ((offsets, k0), (offsets + (k1 - k0), k1)):  # first pairs, then last pairs (one pair: both)
        durations_s[at] = np.clip(seg_end_s[k], start_s, end_s) - np.clip(times_s[k], start_s, end_s)
    return durations_s


def value_ranks(values: np.ndarray) -> np.ndarray:
    """Each item's rank (0, 1, ...) by value, ties by position.

    :meth:`Intervals.p95` keys each (interval, segment) pair by its interval, then the rank of its segment's value:
    keys are distinct, so one sort of integers gives ``np.lexsort((values[segment], owner))``'s order, ties and all.
    """
    rank = np.empty(len(values), dtype=np.int64)
    rank[np.argsort(values, kind="stable")] = np.arange(len(values))
    return rank


def add_states(link_states: dict, links, horizon_s: float, reservations: dict | None = None) -> None:
    """Put the state of each of ``links`` not yet in ``link_states`` (by ``id``) there, all at once.

    ``reservations``: the links' reservations as arrays, by ``id`` (:func:`sim.des.reserved.reserve`), where kept.
    """
    missing = list({id(link): link for link in links if id(link) not in link_states}.values())
    link_states.update(zip(map(id, missing), linkstates.states(missing, horizon_s, reservations)))
