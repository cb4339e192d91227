"""The planner weighs backup: per site class, the cheapest primary line + backup meeting every target.

A *combination* is a product of the ladder (the primary line) and a backup of the catalogue (``faults.yaml:
backups``, ``none`` included), costing a year twelve times the primary's rental and the backup's price (a second
line without a price of its own: its profile's rental). Combinations are walked cheapest first. Each is judged on

* **performance**: the primary's verdict from the plan's ladder walk at headline rates (:mod:`sim.plan_sites`);
  a dearer product the walk did not need is run now, for every seed of the class, as the walk would have;
* **availability**: an availability study (:mod:`sim.availability`) of the class's planning sites on the
  primary with that backup, over the scenario's sampled years (``availability.years``), with the class's first
  seed. A site's day on a backup does not depend on its primary, so each backup's day is run once per class.

The first combination meeting both is the answer; the cheaper ones are listed with the reason each fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from sim import availability, topology, workload
from sim.model.faults import AvailabilityStudy
from sim.model.scenario import Scenario
from sim.plan import Plan
from sim.plan_runs import planning_scenario
from sim.plan_sites import Line, Step, run_step
from sim.plan_tables import explain, unreachable_text

ASSUMPTION = "assumption"  # a price's source when no docs/sources.md section gives it
FOCUS_APP = "video"  # the app whose hours a year the table shows (video consultations), where the class has it
MONTHS = 12


@dataclass(frozen=True)
class Option:
    """One primary + backup combination for a site class, its cost a year (GBP) and its verdicts.

    ``app`` is the app whose working hours a year without it (a site's mean, with its 95% interval) are shown:
    video consultations where the class has them, else the app losing most. ``primary_source`` and
    ``backup_source`` say where each price comes from: a docs/sources.md section ("S1", "S15"), ``assumption``,
    or '' for no backup (it costs nothing).
    """

    site_class: str
    primary: str
    backup: str
    gbp_per_year: float
    primary_gbp_per_year: float
    backup_gbp_per_year: float
    primary_source: str
    backup_source: str
    performance_passed: bool
    app: str
    without_h: float
    without_low_h: float
    without_high_h: float
    availability_passed: bool
    reason: str

    @property
    def passed(self) -> bool:
        """True when the combination meets the performance and the availability targets."""
        return self.performance_passed and self.availability_passed


def backup_gbp_per_month(scenario: Scenario, name: str) -> float | None:
    """What a backup costs a month (GBP): its own price, a second line's profile rental, 0 for none; None: unpriced."""
    cat = scenario.catalogue
    backup = cat.backups[name]
    if backup.kind == "none":
        return 0.0
    if backup.price is not None:
        return backup.price.gbp_per_month
    profile = cat.profiles[backup.profile]
    return profile.price.gbp_per_month if backup.kind == "line" and profile.price is not None else None


def backup_price_source(scenario: Scenario, name: str) -> str:
    """Where a backup's price comes from: its own price's source, a second line's rental's, '' for none."""
    cat = scenario.catalogue
    backup = cat.backups[name]
    if backup.kind == "none":
        return ""
    if backup.price is not None:
        return backup.price.source
    price = cat.profiles[backup.profile].price if backup.profile is not None else None
    return price.source if price is not None else ""


def assumed_prices(scenario: Scenario, primary: str, backup: str) -> list[str]:
    """The parts of a combination priced by assumption, in words.

    E.g. "FTTP 80/20's rental, GBP 85 a month (its range: topologies/access.yaml)".
    """
    cat = scenario.catalogue
    out = []
    price = cat.profiles[primary].price
    if price is not None and price.source == ASSUMPTION:
        out.append(f"{cat.profiles[primary].label}'s rental, GBP {price.gbp_per_month:,.0f} a month (its range: "
                   "topologies/access.yaml)")
    if backup_price_source(scenario, backup) == ASSUMPTION:
        out.append(f"{cat.backups[backup].label}, GBP {backup_gbp_per_month(scenario, backup):,.0f} a month (its "
                   "range: topologies/faults.yaml)")
    return out


def combinations(scenario: Scenario) -> list[tuple[float, str, str]]:
    """(GBP a year, primary, backup) for every priced product of the ladder with faults and every priced backup.

    Cheapest first; ties in the ladder's order, then the catalogue's order of backups.
    """
    cat = scenario.catalogue
    primaries = [p for p in cat.ladder if cat.profiles[p].price is not None
                 and cat.profiles[p].technology in cat.faults.line]
    backups = [b for b in cat.backups if backup_gbp_per_month(scenario, b) is not None]
    found = [(MONTHS * (cat.profiles[p].price.gbp_per_month + backup_gbp_per_month(scenario, b)), i, j, p, b)
             for i, p in enumerate(primaries) for j, b in enumerate(backups)]
    return [(cost, p, b) for cost, _, _, p, b in sorted(found)]


def weigh(scenario: Scenario, result: Plan, years: int | None = None) -> pd.DataFrame:
    """Per site class of the plan, the combinations cheapest first up to the first meeting every target.

    One row per combination (:class:`Option`'s fields, ``passed`` and ``chosen``); a class whose targets capacity
    alone cannot meet, or with no combination to weigh, has one row saying so (no primary). Products without a
    price or whose technology has no line faults, and backups without a price, are not weighed.
    """
    years = years or (scenario.availability or AvailabilityStudy()).years
    rows = []
    for site_class in dict.fromkeys(n.site_class for n in result.needs):
        options = class_options(scenario, result, site_class, years)
        if options is None:
            down, up = result.need(site_class, "down"), result.need(site_class, "up")
            rows.append({"site_class": site_class, "passed": False, "chosen": False,
                         "reason": unreachable_text(scenario, down, up)})
            continue
        if not options:
            rows.append({"site_class": site_class, "passed": False, "chosen": False,
                         "reason": "no product of the ladder has both a price and line-fault figures (faults.yaml)"})
        rows += [{**asdict(o), "passed": o.passed, "chosen": o.passed} for o in options]
    return pd.DataFrame(rows, columns=COLUMNS)


def class_options(scenario: Scenario, result: Plan, site_class: str, years: int) -> list[Option] | None:
    """A class's combinations cheapest first, up to the first meeting every target (None: capacity cannot)."""
    down, up = result.need(site_class, "down"), result.need(site_class, "up")
    if not (down.reachable and up.reachable):
        return None
    line = Line(site_class, None)
    steps = {s.product: s for s in result.lines[line]}
    seed = down.seeds[0]
    sites = planning_scenario(scenario, site_class)
    trace = workload.generate(sites, topology.build(sites), seed)
    days: dict = {}
    options = []
    for cost, primary, backup in combinations(scenario):
        if steps[primary].outcome == "not needed":
            steps[primary] = run_step(scenario, line, steps[primary], down.seeds, result.target_share)
        step = steps[primary]
        study = availability.study(planning_scenario(scenario, site_class, access=primary), seed, years=years,
                                   backup=backup, trace=trace, days=days)
        options.append(_option(scenario, result, line, step, backup, cost, study.classes))
        if options[-1].passed:
            break
    return options


def _option(scenario: Scenario, result: Plan, line: Line, step: Step, backup: str, cost: float,
            classes: pd.DataFrame) -> Option:
    """A combination's verdicts and the reason, in words, from its product step and its availability rows."""
    down, up = result.need(line.site_class, "down"), result.need(line.site_class, "up")
    performance = step.outcome == "enough"
    focus = classes[classes["app"] == FOCUS_APP]
    row = (focus if len(focus) else classes.loc[[classes["without_h"].idxmax()]]).iloc[0]
    failed = classes[~classes["passed"]]
    reasons = [] if performance else [explain(scenario, line, step, down, up, result.target_share)]
    reasons += [f"{_app_label(scenario, r.app)}: {r.reason}" for r in failed.itertuples()][:2]
    reasons += [f"and {len(failed) - 2} more apps miss their availability targets"] if len(failed) > 2 else []
    price = scenario.catalogue.profiles[step.product].price
    primary_cost = MONTHS * price.gbp_per_month
    return Option(line.site_class, step.product, backup, cost, primary_cost, cost - primary_cost, price.source,
                  backup_price_source(scenario, backup), performance, str(row["app"]), float(row["without_h"]),
                  float(row["without_low_h"]), float(row["without_high_h"]), failed.empty,
                  "; ".join(reasons) or _meets(scenario, step, backup))


def _meets(scenario: Scenario, step: Step, backup: str) -> str:
    """Why a combination is the answer, flagging a price that is an assumption (the choice rests on it)."""
    cat = scenario.catalogue
    said = (f"{cat.profiles[step.product].label} + {cat.backups[backup].label}: every performance "
            f"target met at {min(step.check.shares):.0%} of sites in the worst seed, and every availability target")
    assumed = assumed_prices(scenario, step.product, backup)
    if assumed:
        said += (f"; priced by assumption, not a source: {' and '.join(assumed)}; a dearer figure within the "
                 "range may change the choice")
    return said


def _app_label(scenario: Scenario, app: str) -> str:
    apps = scenario.catalogue.apps
    return apps[app].label if app in apps else app


COLUMNS = ["site_class", "primary", "backup", "gbp_per_year", "primary_gbp_per_year", "backup_gbp_per_year",
           "primary_source", "backup_source", "performance_passed", "app", "without_h", "without_low_h",
           "without_high_h", "availability_passed", "passed", "chosen", "reason"]
