"""The planner's arithmetic: the search for the least capacity meeting a bar, and the interval over seeds.

Pure functions of a response ``share(capacity_bps) -> share of sites meeting every target``; nothing here runs
a simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.measures import rate_words

LOW_BPS, HIGH_BPS = 64e3, 10e9
TOLERANCE = 0.04               # bisection stops when the bracket is narrower than 4%
VERIFY_FACTORS = (1.1, 1.25, 1.5, 2.0)  # an answer is checked at these multiples of itself (those below HIGH_BPS)
MAX_CALLS = 40                 # a search never asks for more points than this (a monotone one asks at most 15)
# Student's t, 0.975 quantile, by degrees of freedom.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131}


@dataclass(frozen=True)
class Found:
    """A search's answer (bit/s; ``inf`` when even ``HIGH_BPS`` falls short), the points tried and any inversions.

    ``points`` are (capacity_bps, share) in the order tried. ``inversions`` are (passing_bps, passing_share,
    failing_bps, failing_share): a capacity meeting the bar below one that does not, the evidence that the
    response is not monotone (the nearest passing point below each failing one). ``at_high`` is left for the
    caller: what it knows of each target at ``HIGH_BPS`` (name, share of sites meeting it, cause in words of a
    miss, '' for none); so is ``short``: at
    :attr:`failing_below`, each target some site missed (name, share of sites meeting it, cause in words).
    """

    threshold_bps: float
    points: tuple[tuple[float, float], ...]
    inversions: tuple[tuple[float, float, float, float], ...]
    at_high: tuple[tuple[str, float, str], ...] = ()
    short: tuple[tuple[str, float, str], ...] = ()

    @property
    def failing_below(self) -> float | None:
        """The highest capacity tried below the answer that fell short of the bar (None: none did, or no answer)."""
        if not math.isfinite(self.threshold_bps):
            return None
        passing = {c for c, _ in self.points if c >= self.threshold_bps}
        below = [c for c, _ in self.points if c < self.threshold_bps and c not in passing]
        return max(below, default=None)

    @property
    def monotone(self) -> bool:
        """True when no capacity tried failed the bar above one that met it."""
        return not self.inversions


def search(share: Callable[[float], float], target_share: float) -> Found:
    """The least capacity (bit/s) from which every capacity tried up to ``HIGH_BPS`` meets ``target_share``.

    Tries ``HIGH_BPS`` (``inf`` if it falls short) and ``LOW_BPS``, bisects the bracket on a log scale until its
    ends are within ``TOLERANCE``, then verifies the answer at ``VERIFY_FACTORS`` times itself. A verification
    point that falls short means the response is not monotone: the bracket becomes that point and the least
    passing point above it, and the search goes on from there, until an answer verifies or ``MAX_CALLS`` points
    were asked (the answer is then the least passing point above every failing one tried, which is always
    defined: ``HIGH_BPS`` passes). A monotone search asks at most
    ``2 + ceil(log2(ln(HIGH/LOW) / ln(1 + TOLERANCE))) + len(VERIFY_FACTORS)`` = 15 points.
    """
    tried: dict[float, float] = {}

    def at(capacity_bps: float) -> bool:
        if capacity_bps not in tried:
            tried[capacity_bps] = share(capacity_bps)
        return tried[capacity_bps] >= target_share

    if not at(HIGH_BPS):
        return Found(math.inf, tuple(tried.items()), ())
    low: float | None = LOW_BPS
    high = HIGH_BPS
    if at(LOW_BPS):
        low, high = None, LOW_BPS  # nothing to bisect: verify LOW_BPS itself
    while len(tried) < MAX_CALLS:
        if low is not None:
            low, high = _bisect(at, low, high, lambda: len(tried) < MAX_CALLS)
        if all(at(c) for c in _probes(high, tried) if len(tried) < MAX_CALLS):
            break
        low = max(c for c, v in tried.items() if v < target_share)
        high = min(c for c, v in tried.items() if v >= target_share and c > low)
    return Found(_answer(tried, target_share), tuple(tried.items()), _inversions(tried, target_share))


def _bisect(at: Callable[[float], bool], low: float, high: float, budget: Callable[[], bool]) -> tuple[float, float]:
    """Halve the log-width of (failing ``low``, passing ``high``) until within ``TOLERANCE``."""
    while high / low > 1 + TOLERANCE and budget():
        middle = math.sqrt(low * high)
        if at(middle):
            high = middle
        else:
            low = middle
    return low, high


def _probes(answer_bps: float, tried: dict[float, float]) -> list[float]:
    """The verification points above an answer (bit/s), skipping those within the tolerance of one tried."""
    probes = [answer_bps * f for f in VERIFY_FACTORS if answer_bps * f < HIGH_BPS]
    return [p for p in probes if not any(abs(math.log(p / c)) < math.log1p(TOLERANCE) / 2 for c in tried)]


def _answer(tried: dict[float, float], target_share: float) -> float:
    """The least passing capacity above every failing one (``LOW_BPS`` or less when none failed)."""
    failing = [c for c, v in tried.items() if v < target_share]
    floor = max(failing, default=-math.inf)
    return min(c for c, v in tried.items() if v >= target_share and c > floor)


def _inversions(tried: dict[float, float], target_share: float) -> tuple[tuple[float, float, float, float], ...]:
    """Each failing capacity above a passing one, with the nearest passing capacity below it."""
    found = []
    for fail_bps, fail_share in sorted(tried.items()):
        if fail_share >= target_share:
            continue
        below = [c for c, v in tried.items() if v >= target_share and c < fail_bps]
        if below:
            pass_bps = max(below)
            found.append((pass_bps, tried[pass_bps], fail_bps, fail_share))
    return tuple(found)


@dataclass(frozen=True)
class SeedInterval:
    """Geometric mean of per-seed values (bit/s) with a 95% Student-t interval on their logarithms."""

    mean_bps: float
    low_bps: float
    high_bps: float

    @property
    def half_width(self) -> float:
        """The interval's half width as a share of the mean (on the log scale: ``high / mean - 1``)."""
        return self.high_bps / self.mean_bps - 1 if math.isfinite(self.mean_bps) else math.inf


def interval(values_bps: list[float]) -> SeedInterval:
    """Geometric mean and 95% interval (Student's t on the logarithms) of positive values (bit/s).

    Capacities are searched and compared on a log scale, so the interval is taken there too: it is never below 0
    and is as wide in ratio on both sides of the mean. Any infinite value makes all three infinite.
    """
    values = np.asarray(values_bps, dtype=float)
    if not np.isfinite(values).all():
        return SeedInterval(math.inf, math.inf, math.inf)
    logs = np.log(values)
    mean = float(logs.mean())
    half = (T_975.get(len(values) - 1, 1.96) * float(logs.std(ddof=1)) / math.sqrt(len(values))
            if len(values) > 1 else 0.0)
    return SeedInterval(math.exp(mean), math.exp(mean - half), math.exp(mean + half))


WIDE_RATIO = 10.0  # an interval whose ends differ more than tenfold: the seeds disagree on the order of magnitude


def need_text(mean_bps: float, low_bps: float, high_bps: float) -> str:
    """A least capacity and its 95% interval for people, e.g. ``20.5 Mbit/s [15.1-27.8 Mbit/s]``.

    The interval is shown within the searched range (:data:`LOW_BPS` to :data:`HIGH_BPS`): beyond it the log-scale
    interval extrapolates to capacities never tried, so an end past it reads ``<64 kbit/s`` or ``>10 Gbit/s``.
    An interval wider than :data:`WIDE_RATIO` says that the seeds disagree, rather than passing as a figure.
    """
    if not mean_bps < math.inf:
        return "not reachable by capacity"
    low = f"<{rate_words(LOW_BPS)}" if low_bps < LOW_BPS else rate_words(low_bps)
    high = f">{rate_words(HIGH_BPS)}" if high_bps > HIGH_BPS else rate_words(high_bps)
    text = f"{rate_words(mean_bps)} [{low} to {high}]"
    return text + " (the seeds disagree)" if high_bps > WIDE_RATIO * low_bps else text
