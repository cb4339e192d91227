"""Capacity planning per line: the cheapest product a site can have at its own line length that is enough.

A *line* is a site class at a line length (``None``: not stated, so products run at their headline rates; the
per-class answer is the line of each class with no length). Along the catalogue's ladder, cheapest first, a
product is *offered* on a line unless the line is longer than the product's ``reach``; it gives the rates of the
catalogue's derating table at that length (:meth:`AccessProfile.rates_at`, as the topology derives a site's
line); it is *run* unless a rate is below the least any seed needed on the generic line (less the search's
tolerance: :attr:`sim.plan.Need.floor_bps`); and it is
*enough* when the share of the sites meeting every target reaches the bar in every seed. Products without a
derating table run at their headline rates, so their runs are shared by every line of the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim import scale
from sim.model.catalogue import AccessProfile
from sim.model.scenario import Scenario
from sim.plan_runs import EVERY, Judged, check_product

LINK = "link"  # the verdict on busy-hour utilisation of the access links (sim.targets)


@dataclass(frozen=True)
class Line:
    """A site class at a line length (m; None: not stated)."""

    site_class: str
    distance_m: float | None


@dataclass(frozen=True)
class ProductCheck:
    """A product run for real on a line: the share of sites meeting every target per seed, and each target's.

    ``distance_m`` is the line length it ran at (None: headline rates). ``app_shares`` holds, per target (app
    name, or ``link`` for busy-hour utilisation), the share of sites meeting it in the worst seed; ``causes``, per
    target some site missed, the cause the site verdicts gave in that target's worst seed
    (:func:`sim.plan_runs.cause_of`). ``sites`` is how many sites each run had.
    """

    site_class: str
    product: str
    distance_m: float | None
    shares: tuple[float, ...]
    app_shares: tuple[tuple[str, float], ...]
    passed: bool
    causes: tuple[tuple[str, str], ...] = ()
    sites: int = 0


@dataclass(frozen=True)
class Step:
    """One product of the ladder considered for a line: what it gives there and what became of it.

    ``outcome`` is ``not sold`` (beyond its reach), ``too slow`` (below the least any seed needed), ``missed``
    (run, short of the bar) or ``enough``; ``check`` is its run, if it ran.
    """

    product: str
    rates_bps: tuple[float, float] | None
    outcome: str
    check: ProductCheck | None = None


def offer(profile: AccessProfile, distance_m: float | None) -> tuple[float, float] | None:
    """(down_bps, up_bps) a product gives at a line length in metres, or None when it is not sold that far."""
    if distance_m is not None and profile.reach is not None and distance_m > profile.reach:
        return None
    return profile.rates_at(distance_m)


def run_distance(profile: AccessProfile, distance_m: float | None) -> float | None:
    """The line length a product's run needs (m): None for a product whose rates do not depend on it."""
    return distance_m if profile.derating else None


def first_steps(scenario: Scenario, line: Line, floor_bps: tuple[float, float]) -> list[Step]:
    """The ladder for a line, cheapest first: products not sold there, too slow for the need, or to run.

    ``floor_bps`` is (down, up): the least any seed of the class needed, less the search's tolerance.
    """
    steps = []
    for name in scenario.catalogue.ladder:
        rates = offer(scenario.catalogue.profiles[name], line.distance_m)
        if rates is None:
            outcome = "not sold"
        elif rates[0] < floor_bps[0] or rates[1] < floor_bps[1]:
            outcome = "too slow"
        else:
            outcome = "to run"
        steps.append(Step(name, rates, outcome))
    return steps


def walk(scenario: Scenario, lines: dict[Line, tuple[float, float]], seeds: dict[str, tuple[int, ...]],
         target_share: float, client=None, progress: scale.Progress | None = None) -> dict[Line, list[Step]]:
    """Run each line's offered products, cheapest first, until one is enough for every seed of its class.

    ``lines`` maps each line to its class's need floors (down, up; bit/s); ``seeds`` maps each class to its seeds.
    Lines advance together, one product each per round; runs that would be identical (same class, product and
    length that matters) run once. ``progress(runs_done, runs_total)``: the total is what would be left if every
    line had to try all its products, so it only shrinks.
    """
    profiles = scenario.catalogue.profiles
    steps = {line: first_steps(scenario, line, floors) for line, floors in lines.items()}
    checks: dict[tuple, ProductCheck] = {}

    def key(line: Line, step: Step) -> tuple:
        return line.site_class, step.product, run_distance(profiles[step.product], line.distance_m)

    done = 0
    while True:
        todo = {line: next((s for s in ss if s.outcome == "to run"), None) for line, ss in steps.items()}
        if not any(todo.values()):
            return steps
        keys = [k for k in dict.fromkeys(key(ln, s) for ln, s in todo.items() if s is not None) if k not in checks]
        left = sum(len(seeds[k[0]]) for k in {key(ln, s) for ln, ss in steps.items() for s in ss
                                              if s.outcome == "to run"} - set(checks))

        def step(finished: float, total: float, base: int = done, left: int = left) -> None:
            if progress:
                progress(base + finished, base + left)

        found = scale.map_ordered(client, check_product, [(scenario, *k, s) for k in keys for s in seeds[k[0]]],
                                  step)
        for k in keys:
            count = len(seeds[k[0]])
            checks[k], found = _check(k, found[:count], target_share), found[count:]
            done += count
        for line, s in todo.items():
            if s is not None:
                _settle(steps[line], s, checks[key(line, s)])


def _check(key: tuple, per_seed: list[Judged], target_share: float) -> ProductCheck:
    shares = tuple(float(r.shares[EVERY]) for r in per_seed)
    apps = sorted({a for r in per_seed for a in r.shares if a != EVERY})
    app_shares = tuple((a, min(float(r.shares.get(a, 1.0)) for r in per_seed)) for a in apps)
    causes = []
    for app in sorted({a for r in per_seed for a in r.causes}):
        worst = min((r for r in per_seed if app in r.causes), key=lambda r: r.shares.get(app, 1.0))
        causes.append((app, worst.causes[app]))
    return ProductCheck(*key, shares, app_shares, min(shares) >= target_share, tuple(causes),
                        max((r.sites for r in per_seed), default=0))


def _settle(steps: list[Step], step: Step, check: ProductCheck) -> None:
    """Record a run's outcome on a line; once one is enough, the dearer products are not tried."""
    k = steps.index(step)
    steps[k] = Step(step.product, step.rates_bps, "enough" if check.passed else "missed", check)
    if check.passed:
        steps[k + 1:] = [Step(s.product, s.rates_bps, "not needed") for s in steps[k + 1:]]


def chosen(steps: list[Step]) -> Step | None:
    """The cheapest product that was enough on a line, if any."""
    return next((s for s in steps if s.outcome == "enough"), None)


def best_missed(steps: list[Step]) -> Step | None:
    """The product run with the highest worst-seed share, when none was enough."""
    ran = [s for s in steps if s.check is not None]
    return max(ran, key=lambda s: min(s.check.shares), default=None)


def length_text(distance_m: float | None) -> str:
    """A line length for people: '1.8 km', or 'length not stated'."""
    return "length not stated" if distance_m is None or not math.isfinite(distance_m) else \
        f"{distance_m / 1000:.3g} km"


def run_step(scenario: Scenario, line: Line, step: Step, seeds: tuple[int, ...], target_share: float) -> Step:
    """Run a product the ladder walk did not need (``not needed``) on a line for every seed, and settle it.

    The backup planner asks this of a dearer primary (:mod:`sim.plan_backup`); the answer is what the walk would
    have found had it got there.
    """
    distance_m = run_distance(scenario.catalogue.profiles[step.product], line.distance_m)
    per_seed = [check_product(scenario, line.site_class, step.product, distance_m, seed) for seed in seeds]
    check = _check((line.site_class, step.product, distance_m), per_seed, target_share)
    return Step(step.product, step.rates_bps, "enough" if check.passed else "missed", check)
