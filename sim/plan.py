"""Capacity planning: the least access capacity each site class needs to meet all its targets.

For each site class, seed and direction, the planner bisects (on a log scale) the capacity of a generic access
line at which the share of the class's sites meeting every target reaches the bar, holding the other direction
at ``HIGH_BPS`` (the directions are independent links). The trace does not depend on capacity, so it is made
once per seed and replayed at every capacity. The seeds' thresholds give a geometric mean and a 95% confidence
interval.
Then the products of the catalogue's ladder, cheapest first, are run for real (their own rates, RTT and buffer)
until one meets the bar for every seed: the cheapest product that is enough.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim import des, scale, targets, topology, workload
from sim.errors import TestbedError
from sim.model.scenario import Scenario, SiteGroup

PLAN_PROFILE = "planning-line"
GENERIC_BASE = "fttp_330_50"  # the profile whose RTT and buffer the generic planning line takes
LOW_BPS, HIGH_BPS = 64e3, 10e9
TOLERANCE = 0.04              # bisection stops when the bracket is narrower than 4%
SESSIONS_PER_RUN = 12_000     # sites per planning run are chosen to keep each run about this size
MAX_SITES = 10
DIRECTIONS = ("down", "up")
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


@dataclass(frozen=True)
class Need:
    """The least capacity (bit/s) a site class needs in one direction, over seeds (geometric mean, 95% CI)."""

    site_class: str
    direction: str
    per_seed_bps: tuple[float, ...]
    mean_bps: float
    ci_low_bps: float
    ci_high_bps: float

    @property
    def reachable(self) -> bool:
        """False when even ``HIGH_BPS`` does not meet the bar (something else than capacity limits it)."""
        return all(math.isfinite(v) for v in self.per_seed_bps)


@dataclass(frozen=True)
class ProductCheck:
    """A product run for real for a site class: the share of sites meeting every target, per seed."""

    site_class: str
    product: str
    shares: tuple[float, ...]
    passed: bool


@dataclass(frozen=True)
class Plan:
    """A planner's answer: needs per class and direction, products tried, and the compliance curve points."""

    scenario: str
    target_share: float
    seeds: tuple[int, ...]
    needs: tuple[Need, ...]
    products: tuple[ProductCheck, ...]
    curve: pd.DataFrame  # site_class, direction, seed, capacity_bps, share

    def cheapest(self, site_class: str) -> ProductCheck | None:
        """The first product on the ladder that met the bar for every seed, if any."""
        return next((p for p in self.products if p.site_class == site_class and p.passed), None)

    def best_tried(self, site_class: str) -> ProductCheck | None:
        """The product with the highest worst-seed share, when none met the bar."""
        tried = [p for p in self.products if p.site_class == site_class]
        return max(tried, key=lambda p: min(p.shares), default=None)


def planning_scenario(scenario: Scenario, site_class: str, access: str = PLAN_PROFILE) -> Scenario:
    """A scenario of a few sites of one class on one access profile, with the original load and targets."""
    per_site = workload.expected_per_site(scenario, site_class)
    count = max(1, min(MAX_SITES, int(SESSIONS_PER_RUN // max(per_site, 1.0))))
    group = SiteGroup.model_validate({"class": site_class, "count": count, "access": access,
                                      "name": f"plan-{site_class}"})
    cat = scenario.catalogue
    # A generic line with FTTP's RTT and buffer (an assumption of the planner), at whatever rates are tried.
    generic = cat.profiles[GENERIC_BASE].model_copy(update={
        "label": "Generic line (planning)", "technology": "Planning", "down": HIGH_BPS, "up": HIGH_BPS,
        "derating": ()})
    catalogue = cat.model_copy(update={"profiles": {**cat.profiles, PLAN_PROFILE: generic}})
    return scenario.model_copy(update={"sites": (group,), "catalogue": catalogue})


def share_passing(scenario: Scenario, trace: pd.DataFrame, topo: topology.Topology,
                  down_bps: float | None = None, up_bps: float | None = None) -> float:
    """Share of the sites meeting every target when their access runs at the given rates (bit/s)."""
    sites = topo.sites.copy()
    if down_bps is not None:
        sites["down_bps"] = down_bps
    if up_bps is not None:
        sites["up_bps"] = up_bps
    topo = topology.Topology(sites, topo.shared, topo.cloud_rtt_s, topo.home)
    window = des.RunWindow(scenario.window.start, scenario.window.end + scenario.drain, scenario.utilisation_bin)
    result = des.run(trace, topo, window)
    verdicts = targets.evaluate(result.records, result.links, sites, scenario.targets,
                                (scenario.window.start, scenario.window.end), scenario.catalogue.media())
    every = verdicts.sites.groupby("site")["passed"].all().reindex(sites["site"], fill_value=True)
    return float(every.mean())


def bisect(scenario: Scenario, site_class: str, seed: int, direction: str, target_share: float,
           ) -> tuple[float, list[tuple[float, float]]]:
    """The least capacity (bit/s) in ``direction`` meeting ``target_share``, and the (capacity, share) tried.

    Returns ``inf`` when even ``HIGH_BPS`` falls short.
    """
    plan_scenario = planning_scenario(scenario, site_class)
    topo = topology.build(plan_scenario)
    trace = workload.generate(plan_scenario, topo, seed)

    def share(capacity_bps: float) -> float:
        rates = {"down_bps": capacity_bps} if direction == "down" else {"up_bps": capacity_bps}
        return share_passing(plan_scenario, trace, topo, **rates)

    return search(share, target_share)


def search(share: Callable[[float], float], target_share: float) -> tuple[float, list[tuple[float, float]]]:
    """Bisect on a log scale for the least capacity (bit/s) with ``share(capacity) >= target_share``.

    Tries ``HIGH_BPS`` first (``inf`` if it falls short), then ``LOW_BPS`` (returned if it is enough), then
    halves the bracket's log-width until its ends are within ``TOLERANCE``: at most
    ``2 + ceil(log2(ln(HIGH/LOW) / ln(1 + TOLERANCE)))`` calls. Returns the threshold and the points tried.
    """
    points: list[tuple[float, float]] = []

    def tried(capacity_bps: float) -> float:
        value = share(capacity_bps)
        points.append((capacity_bps, value))
        return value

    if tried(HIGH_BPS) < target_share:
        return math.inf, points
    low, high = LOW_BPS, HIGH_BPS
    if tried(low) >= target_share:
        return low, points
    while high / low > 1 + TOLERANCE:
        middle = math.sqrt(low * high)
        if tried(middle) >= target_share:
            high = middle
        else:
            low = middle
    return high, points


def summarise(site_class: str, direction: str, thresholds: list[float]) -> Need:
    """Geometric mean and 95% confidence interval (Student's t on the logarithms) of per-seed thresholds (bit/s).

    Capacities are searched and compared on a log scale, so the interval is taken there too: it is never below 0
    and is as wide in ratio on both sides of the mean.
    """
    values = np.asarray(thresholds, dtype=float)
    per_seed = tuple(float(v) for v in values)
    if not np.isfinite(values).all():
        return Need(site_class, direction, per_seed, math.inf, math.inf, math.inf)
    logs = np.log(values)
    mean = float(logs.mean())
    half = T_975.get(len(values) - 1, 1.96) * float(logs.std(ddof=1)) / math.sqrt(len(values)) \
        if len(values) > 1 else 0.0
    return Need(site_class, direction, per_seed, math.exp(mean), math.exp(mean - half), math.exp(mean + half))


def check_product(scenario: Scenario, site_class: str, product: str, seed: int) -> float:
    """Share of a class's sites meeting every target on a real product, for one seed."""
    plan_scenario = planning_scenario(scenario, site_class, access=product)
    topo = topology.build(plan_scenario)
    return share_passing(plan_scenario, workload.generate(plan_scenario, topo, seed), topo)


def plan(scenario: Scenario, *, site_classes: list[str] | None = None, target_share: float = 0.95,
         seeds: int = 5, client=None, progress: scale.Progress | None = None) -> Plan:
    """Find each site class's least capacity per direction and the cheapest product that is enough.

    Args:
        scenario: The scenario whose load, catalogue (ladder) and targets are planned for.
        site_classes: The classes to plan (default: every class the scenario has).
        target_share: The share of a class's sites that must meet every target (0..1).
        seeds: How many seeds (from the scenario's seed on); at least 2, for a confidence interval.
        client: A Dask client to run on; None runs everything in this process.
        progress: ``progress(runs_done, runs_total)``.

    Raises:
        TestbedError: If a named site class is not in the scenario, ``seeds`` is below 2, or the share is not in
            (0, 1].
    """
    classes = _classes(scenario, site_classes)
    if seeds < 2:
        raise TestbedError(f"--seeds must be at least 2 for a confidence interval (got {seeds})")
    if not 0 < target_share <= 1:
        raise TestbedError(f"--target-share must be in (0, 1] (got {target_share})")
    seed_list = tuple(scenario.seed + k for k in range(seeds))
    jobs = [(c, s, d) for c in classes for d in DIRECTIONS for s in seed_list]
    found = scale.map_ordered(client, bisect, [(scenario, c, s, d, target_share) for c, s, d in jobs], progress)
    needs, curve = [], []
    for c in classes:
        for d in DIRECTIONS:
            rows = [(s, r) for (jc, s, jd), r in zip(jobs, found) if (jc, jd) == (c, d)]
            needs.append(summarise(c, d, [r[0] for _, r in rows]))
            curve += [(c, d, s, cap, share) for s, r in rows for cap, share in r[1]]
    products = _products(scenario, classes, needs, seed_list, target_share, client, progress, len(jobs))
    curve_frame = pd.DataFrame(curve, columns=["site_class", "direction", "seed", "capacity_bps", "share"])
    return Plan(scenario.name, target_share, seed_list, tuple(needs), tuple(products), curve_frame)


def _classes(scenario: Scenario, wanted: list[str] | None) -> list[str]:
    present = list(dict.fromkeys(g.site_class for g in scenario.sites))
    for name in wanted or []:
        if name not in present:
            close = difflib.get_close_matches(name, present, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the scenario has: {', '.join(present)}"
            raise TestbedError(f"--site-class {name!r} is not in scenario {scenario.name!r}{hint}")
    return list(dict.fromkeys(wanted)) if wanted else present


def candidates(scenario: Scenario, need: Need, need_up: Need) -> list[str]:
    """Ladder products, cheapest first, whose rates reach the lower ends of the class's confidence intervals."""
    profiles = scenario.catalogue.profiles
    return [p for p in scenario.catalogue.ladder
            if profiles[p].down >= need.ci_low_bps and profiles[p].up >= need_up.ci_low_bps]


def _products(scenario: Scenario, classes: list[str], needs: list[Need], seeds: tuple[int, ...],
              target_share: float, client, progress, runs_done: int) -> list[ProductCheck]:
    """Run ladder products, cheapest first, for each class until one meets the bar for every seed."""
    need = {(n.site_class, n.direction): n for n in needs}
    pending = {c: candidates(scenario, need[(c, "down")], need[(c, "up")]) for c in classes}
    checks: list[ProductCheck] = []
    while any(pending.values()):
        batch = [(c, products.pop(0)) for c, products in pending.items() if products]
        left = sum(len(v) for v in pending.values()) * len(seeds)

        def step(done: float, total: float, base: int = runs_done, left: int = left) -> None:
            if progress:
                progress(base + done, base + total + left)

        shares = scale.map_ordered(client, check_product, [(scenario, c, p, s) for c, p in batch for s in seeds],
                                   step)
        runs_done += len(batch) * len(seeds)
        for i, (c, p) in enumerate(batch):
            values = tuple(float(v) for v in shares[i * len(seeds):(i + 1) * len(seeds)])
            checks.append(ProductCheck(c, p, values, min(values) >= target_share))
            if checks[-1].passed:
                pending[c] = []
    return checks


def summary(result: Plan, scenario: Scenario) -> pd.DataFrame:
    """One row per site class: the least capacity per direction (mean, 95% CI; bit/s) and the cheapest product.

    ``product`` is empty when no product on the ladder met the bar; ``best_product`` and ``best_worst_share``
    then say the best that was found. When capacity alone cannot meet the bar (``reachable`` False),
    ``share_at_high`` is the share of sites meeting every target at ``HIGH_BPS`` in the worst seed.
    """
    profiles, rows = scenario.catalogue.profiles, []
    need = {(n.site_class, n.direction): n for n in result.needs}
    at_high = result.curve[result.curve["capacity_bps"] >= HIGH_BPS].groupby("site_class")["share"].min()
    for c in dict.fromkeys(n.site_class for n in result.needs):
        down, up = need[(c, "down")], need[(c, "up")]
        chosen, best = result.cheapest(c), result.best_tried(c)
        product = chosen.product if chosen else ""
        rows.append({
            "site_class": c, "seeds": len(result.seeds), "target_share": result.target_share,
            "down_need_bps": down.mean_bps, "down_ci_low_bps": down.ci_low_bps, "down_ci_high_bps": down.ci_high_bps,
            "up_need_bps": up.mean_bps, "up_ci_low_bps": up.ci_low_bps, "up_ci_high_bps": up.ci_high_bps,
            "product": product, "product_label": profiles[product].label if product else "",
            "product_down_bps": profiles[product].down if product else math.nan,
            "product_up_bps": profiles[product].up if product else math.nan,
            "best_product": best.product if best else "", "best_worst_share": min(best.shares) if best else math.nan,
            "reachable": down.reachable and up.reachable,
            "share_at_high": float(at_high.get(c, math.nan)),  # worst seed, at HIGH_BPS both ways
        })
    return pd.DataFrame(rows)


def product_table(result: Plan) -> pd.DataFrame:
    """Every product run: one row per site class, product and seed, with the share of sites meeting every target."""
    rows = [(p.site_class, p.product, seed, share, p.passed)
            for p in result.products for seed, share in zip(result.seeds, p.shares)]
    return pd.DataFrame(rows, columns=["site_class", "product", "seed", "share", "passed_all_seeds"])
