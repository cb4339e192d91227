"""Capacity planning: the least access capacity each site class needs, and the cheapest product per class and site.

For each site class, seed and direction, the planner searches (:mod:`sim.plan_search`) for the capacity of a
generic access line at which the share of the class's sites meeting every target reaches the bar, holding the
other direction at ``HIGH_BPS`` (the directions are independent links). The trace does not depend on capacity,
so it is made once per seed and replayed at every capacity. The seeds' thresholds give a geometric mean and a 95%
confidence interval; by default seeds are added until that interval is narrow enough (``HALF_WIDTH``) or
``MAX_SEEDS`` are used. Then, for each class at each line length its sites have (:mod:`sim.plan_sites`), the
products of the catalogue's ladder, cheapest first, are run for real at that length until one meets the bar
for every seed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass

import pandas as pd

from sim import plan_sites, scale, topology, workload
from sim.errors import TestbedError
from sim.model.scenario import Scenario
from sim.plan_runs import (  # noqa: F401
    EVERY,
    GENERIC_BASE,
    PLAN_PROFILE,
    Judged,
    judge,
    passing,
    planning_scenario,
    share_passing,
)
from sim.plan_search import HIGH_BPS, LOW_BPS, T_975, TOLERANCE, Found, interval, search  # noqa: F401
from sim.plan_sites import Line, ProductCheck, Step
from sim.progress import Forward

DIRECTIONS = ("down", "up")
MIN_SEEDS = 3       # seeds a plan starts with by default
SEED_STEP = 2       # seeds added at a time while an interval is too wide
MAX_SEEDS = 10      # seeds a plan stops at by default, whatever the interval
HALF_WIDTH = 0.25   # an interval is narrow enough when its upper end is within 25% of its mean


@dataclass(frozen=True)
class Need:
    """The least capacity (bit/s) a site class needs in one direction, over seeds (geometric mean, 95% CI).

    ``inversions`` are the seeds' evidence that the share passing is not monotone in capacity: (seed,
    passing_bps, passing_share, failing_bps, failing_share), a capacity meeting the bar below one that does not.
    """

    site_class: str
    direction: str
    per_seed_bps: tuple[float, ...]
    mean_bps: float
    ci_low_bps: float
    ci_high_bps: float
    seeds: tuple[int, ...] = ()
    inversions: tuple[tuple[int, float, float, float, float], ...] = ()
    # (seed, target, share of sites meeting it, the cause the site verdicts gave) for targets short at HIGH_BPS
    missed_at_high: tuple[tuple[int, str, float, str], ...] = ()
    # Per seed, at the highest capacity its search tried below its answer: (seed, capacity_bps, target, share of
    # sites meeting it, the cause the site verdicts gave), for each target some site missed there.
    short: tuple[tuple[int, float, str, float, str], ...] = ()

    @property
    def reachable(self) -> bool:
        """False when even ``HIGH_BPS`` does not meet the bar (something else than capacity limits it)."""
        return all(math.isfinite(v) for v in self.per_seed_bps)

    @property
    def floor_bps(self) -> float:
        """The least capacity (bit/s) any seed needed, less the search's tolerance (inf when unreachable).

        A product slower than this in a direction is not run: on the generic line every seed's answer lay above it.
        """
        return min(self.per_seed_bps) / (1 + TOLERANCE) if self.reachable else math.inf

    @property
    def half_width(self) -> float:
        """The interval's half width as a share of the mean (``ci_high / mean - 1``; inf when unreachable)."""
        return self.ci_high_bps / self.mean_bps - 1 if self.reachable else math.inf


@dataclass(frozen=True)
class Plan:
    """A planner's answer: needs per class and direction, each line's ladder walk, and the curve points.

    ``lines`` maps each line (a class at a length; ``distance_m`` None is the class's answer at headline rates)
    to its ladder, cheapest first, with what became of each product. ``seed_rule`` says how the seeds were chosen.
    """

    scenario: str
    target_share: float
    seeds: tuple[int, ...]
    needs: tuple[Need, ...]
    lines: dict[Line, list[Step]]
    curve: pd.DataFrame  # site_class, direction, seed, capacity_bps, share
    seed_rule: str = ""

    @property
    def products(self) -> tuple[ProductCheck, ...]:
        """Every product run for the classes' answers (at headline rates), cheapest first per class."""
        return tuple(s.check for line, steps in self.lines.items() if line.distance_m is None
                     for s in steps if s.check is not None)

    def cheapest(self, site_class: str) -> ProductCheck | None:
        """The first product on the ladder that met the bar for every seed, at headline rates, if any."""
        step = plan_sites.chosen(self.lines.get(Line(site_class, None), []))
        return step.check if step else None

    def best_tried(self, site_class: str) -> ProductCheck | None:
        """The product with the highest worst-seed share, when none met the bar."""
        step = plan_sites.best_missed(self.lines.get(Line(site_class, None), []))
        return step.check if step else None

    def need(self, site_class: str, direction: str) -> Need:
        """The class's need in one direction."""
        return next(n for n in self.needs if (n.site_class, n.direction) == (site_class, direction))


def bisect(scenario: Scenario, site_class: str, seed: int, direction: str, target_share: float) -> Found:
    """The least capacity (bit/s) in ``direction`` meeting ``target_share`` for one seed (see :func:`search`)."""
    plan_scenario = planning_scenario(scenario, site_class)
    topo = topology.build(plan_scenario)
    trace = workload.generate(plan_scenario, topo, seed)

    judged: dict[float, Judged] = {}

    def share(capacity_bps: float) -> float:
        rates = {"down_bps": capacity_bps} if direction == "down" else {"up_bps": capacity_bps}
        judged[capacity_bps] = judge(plan_scenario, trace, topo, **rates)
        return judged[capacity_bps].shares[EVERY]

    found = search(share, target_share)
    high = judged[HIGH_BPS]
    below = judged.get(found.failing_below) if found.failing_below is not None else None
    short = tuple((app, below.shares.get(app, 1.0), cause) for app, cause in below.causes.items()) if below else ()
    at_high = tuple((k, v, high.causes.get(k, "")) for k, v in high.shares.items() if k != EVERY)
    return dataclasses.replace(found, at_high=at_high, short=short)


def summarise(site_class: str, direction: str, thresholds: list[float], seeds: tuple[int, ...] = (),
              inversions: tuple = ()) -> Need:
    """Geometric mean and 95% confidence interval (Student's t on the logarithms) of per-seed thresholds (bit/s)."""
    found = interval(thresholds)
    return Need(site_class, direction, tuple(float(v) for v in thresholds), found.mean_bps, found.low_bps,
                found.high_bps, seeds, inversions)


def wants_more_seeds(need: Need, seeds_used: int, max_seeds: int = MAX_SEEDS) -> bool:
    """True while a reachable need's interval is wider than ``HALF_WIDTH`` and fewer than ``max_seeds`` ran."""
    return need.reachable and need.half_width > HALF_WIDTH and seeds_used < max_seeds


def plan(scenario: Scenario, *, site_classes: list[str] | None = None, target_share: float = 0.95,
         seeds: int | None = None, client=None, progress: scale.Progress | None = None) -> Plan:
    """Find each site class's least capacity per direction and the cheapest product per class and line length.

    Args:
        scenario: The scenario whose load, sites (their line lengths), catalogue (ladder) and targets are planned.
        site_classes: The classes to plan (default: every class the scenario has).
        target_share: The share of a class's sites that must meet every target (0..1).
        seeds: How many seeds (from the scenario's seed on), at least 2; None: from ``MIN_SEEDS``, adding
            ``SEED_STEP`` while a class's interval is wider than ``HALF_WIDTH``, up to ``MAX_SEEDS``.
        client: A Dask client to run on; None runs everything in this process.
        progress: ``progress(runs_done, runs_total)``; neither ever goes back (the total is an estimate).

    Raises:
        TestbedError: If a named site class is not in the scenario, ``seeds`` is below 2, or the share is not in
            (0, 1].
    """
    classes = _classes(scenario, site_classes)
    if seeds is not None and seeds < 2:
        raise TestbedError(f"--seeds must be at least 2 for a confidence interval (got {seeds})")
    if not 0 < target_share <= 1:
        raise TestbedError(f"--target-share must be in (0, 1] (got {target_share})")
    forward = Forward(progress)
    lines = _lines(scenario, classes)
    needs, curve, done = _needs(scenario, classes, target_share, seeds, client, forward, len(lines))
    need = {(n.site_class, n.direction): n for n in needs}
    floors = {ln: (need[(ln.site_class, "down")].floor_bps, need[(ln.site_class, "up")].floor_bps) for ln in lines}
    class_seeds = {c: need[(c, "down")].seeds for c in classes}

    def step(finished: float, total: float) -> None:
        forward(done + finished, done + total)

    walked = plan_sites.walk(scenario, floors, class_seeds, target_share, client, step)
    forward(forward.done, forward.done)  # finished: whatever the estimate was
    used = tuple(sorted({s for n in needs for s in n.seeds}))
    rule = (f"{seeds} seeds (--seeds)" if seeds is not None else
            f"from {MIN_SEEDS} seeds, {SEED_STEP} more while a class's 95% interval reached beyond "
            f"{HALF_WIDTH:.0%} of its mean, at most {MAX_SEEDS}")
    curve_frame = pd.DataFrame(curve, columns=["site_class", "direction", "seed", "capacity_bps", "share"])
    return Plan(scenario.name, target_share, used, tuple(needs), walked, curve_frame, rule)


def _needs(scenario: Scenario, classes: list[str], target_share: float, seeds: int | None, client,
           forward: Forward, lines: int) -> tuple[list[Need], list[tuple], int]:
    """Search each class and direction over seeds, adding seeds while an interval is too wide (``seeds`` None).

    Returns the needs, the curve rows and the count of runs done (searches), for the progress to go on from.
    """
    first = seeds if seeds is not None else MIN_SEEDS
    seed_of = {c: [scenario.seed + k for k in range(first)] for c in classes}
    found: dict[tuple[str, str, int], Found] = {}
    pending, done = list(classes), 0
    while pending:
        jobs = [(c, d, s) for c in pending for d in DIRECTIONS for s in seed_of[c] if (c, d, s) not in found]
        # The total: these jobs, those a widening might add, and at least one product run per line and seed.
        later = sum(2 * (MAX_SEEDS - len(seed_of[c])) for c in pending) if seeds is None else 0
        guess = done + len(jobs) + later + lines * first

        def step(finished: float, total: float, base: int = done, guess: int = guess) -> None:
            forward(base + finished, guess)

        results = scale.map_ordered(client, bisect, [(scenario, c, s, d, target_share) for c, d, s in jobs], step)
        found.update({job: r for job, r in zip(jobs, results)})
        done += len(jobs)
        needs = {c: [_need(c, d, seed_of[c], found) for d in DIRECTIONS] for c in pending}
        pending = [c for c in pending if seeds is None and any(wants_more_seeds(n, len(seed_of[c])) for n in needs[c])]
        for c in pending:
            last = seed_of[c][-1]
            seed_of[c] += [last + 1 + k for k in range(min(SEED_STEP, MAX_SEEDS - len(seed_of[c])))]
    needs = [_need(c, d, seed_of[c], found) for c in classes for d in DIRECTIONS]
    curve = [(c, d, s, cap, share) for (c, d, s), r in found.items() for cap, share in r.points]
    return needs, curve, done


def _need(site_class: str, direction: str, seeds: list[int], found: dict) -> Need:
    results = [found[(site_class, direction, s)] for s in seeds]
    inversions = tuple((s, *inv) for s, r in zip(seeds, results) for inv in r.inversions)
    need = summarise(site_class, direction, [r.threshold_bps for r in results], tuple(seeds), inversions)
    missed = tuple((s, app, share, cause) for s, r in zip(seeds, results) if not math.isfinite(r.threshold_bps)
                   for app, share, cause in r.at_high if share < 1.0)
    short = tuple((s, r.failing_below, app, share, cause) for s, r in zip(seeds, results) if r.failing_below
                  for app, share, cause in r.short)
    return dataclasses.replace(need, missed_at_high=missed, short=short)


def _lines(scenario: Scenario, classes: list[str]) -> list[Line]:
    """Each class at headline rates (its answer), then each class at each line length its sites state."""
    lengths = [Line(g.site_class, g.distance) for g in scenario.sites
               if g.site_class in classes and g.distance is not None]
    return list(dict.fromkeys([Line(c, None) for c in classes] + lengths))


def _classes(scenario: Scenario, wanted: list[str] | None) -> list[str]:
    present = list(dict.fromkeys(g.site_class for g in scenario.sites))
    for name in wanted or []:
        if name not in present:
            close = difflib.get_close_matches(name, present, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the scenario has: {', '.join(present)}"
            raise TestbedError(f"--site-class {name!r} is not in scenario {scenario.name!r}{hint}")
    return list(dict.fromkeys(wanted)) if wanted else present
