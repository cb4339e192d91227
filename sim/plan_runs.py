"""The planner's runs: a few sites of one class on one line, replayed at given rates and judged.

Every run of the planner (a capacity tried on the generic line, a product at a line length) comes through here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sim import des, targets, topology, workload
from sim.model.scenario import Scenario, SiteGroup

PLAN_PROFILE = "planning-line"
GENERIC_BASE = "fttp_330_50"  # the profile whose RTT and buffers (in time: at the rates tried) the generic line takes
GENERIC_BPS = 10e9            # the generic line's rate each way until a rate is tried
SESSIONS_PER_RUN = 12_000     # sites per planning run are chosen to keep each run about this size
MAX_SITES = 10
EVERY = "every target"        # the key of the share of sites meeting every target, beside each app's


def planning_scenario(scenario: Scenario, site_class: str, access: str = PLAN_PROFILE,
                      distance_m: float | None = None) -> Scenario:
    """A scenario of a few sites of one class on one access profile (at a line length, in metres, if given).

    The original load and targets are kept. The ``planning-line`` profile is a generic line with FTTP's RTT and
    buffer (an assumption of the planner) at whatever rates are tried.
    """
    per_site = workload.expected_per_site(scenario, site_class)
    count = max(1, min(MAX_SITES, int(SESSIONS_PER_RUN // max(per_site, 1.0))))
    group = SiteGroup.model_validate({"class": site_class, "count": count, "access": access,
                                      "name": f"plan-{site_class}"}).model_copy(update={"distance": distance_m})
    cat = scenario.catalogue
    generic = cat.profiles[GENERIC_BASE].model_copy(update={
        "label": "Generic line (planning)", "technology": "Planning", "down": GENERIC_BPS, "up": GENERIC_BPS,
        "derating": (), "reach": None, "price": None})
    catalogue = cat.model_copy(update={"profiles": {**cat.profiles, PLAN_PROFILE: generic}})
    return scenario.model_copy(update={"sites": (group,), "catalogue": catalogue})


@dataclass(frozen=True)
class Judged:
    """A planning run's verdicts: the share of its sites meeting each target and every target, and why some did not.

    ``shares`` maps each target (app name, ``link`` for busy-hour utilisation) and ``EVERY`` to the share of the
    sites meeting it. ``causes`` maps each target some site missed to the cause the site verdicts give for it (see
    :func:`cause_of`). ``sites`` is how many sites ran.
    """

    shares: dict[str, float]
    causes: dict[str, str]
    sites: int


def judge(scenario: Scenario, trace: pd.DataFrame, topo: topology.Topology,
          down_bps: float | None = None, up_bps: float | None = None) -> Judged:
    """The sites' verdicts when their access runs at the given rates (bit/s): shares passing and causes of misses.

    The sites' access runs at the given rates (bit/s) where given, else at the topology's own; its buffers are its
    profile's at those rates (a buffer given in time holds that many seconds of the rate tried).
    """
    sites = topo.sites.copy()
    for direction, rate_bps in (("down", down_bps), ("up", up_bps)):
        if rate_bps is not None:
            sites[f"{direction}_bps"] = rate_bps
            buffers = [getattr(scenario.catalogue.profiles[p], f"buffer_{direction}") for p in sites["access_profile"]]
            sites[f"buffer_{direction}_bytes"] = [b.bytes_at(rate_bps) for b in buffers]
    topo = topology.Topology(sites, topo.shared, topo.cloud_rtt_s, topo.home)
    window = des.RunWindow(scenario.window.start, scenario.window.end + scenario.drain, scenario.utilisation_bin)
    result = des.run(trace, topo, window)
    verdicts = targets.evaluate(result.records, result.links, sites, scenario.targets,
                                (scenario.window.start, scenario.window.end), scenario.catalogue.media())
    rows = verdicts.sites
    names = pd.Index(sites["site"])
    shares = {app: float(part.groupby("site")["passed"].all().reindex(names, fill_value=True).mean())
              for app, part in rows.groupby("app", sort=True)}
    every = rows.groupby("site")["passed"].all().reindex(names, fill_value=True)
    return Judged({EVERY: float(every.mean()), **shares}, cause_of(rows), len(names))


def cause_of(site_rows: pd.DataFrame) -> dict[str, str]:
    """Per target missed at some site: the failed criterion and the engines' cause most of its failing sites share.

    ``site_rows`` are site verdicts (:func:`sim.targets.site_verdicts`: ``app``, ``passed``, ``criterion``,
    ``cause``); the words are theirs, e.g. "bitrate below target, limited by transfers filling the queue of the
    1 Gbit/s downlink" (ties: alphabetical). A row without a cause gives its criterion alone.
    """
    failed = site_rows[~site_rows["passed"]]
    out = {}
    for app, rows in failed.groupby("app", sort=True):
        criterion = rows["criterion"].fillna("").astype(str) if "criterion" in rows else rows["reason"].astype(str)
        cause = rows["cause"].fillna("").astype(str) if "cause" in rows else pd.Series("", index=rows.index)
        counts = pd.DataFrame({"criterion": criterion, "cause": cause}).value_counts().rename("n").reset_index()
        top = counts.sort_values(["n", "criterion", "cause"], ascending=[False, True, True], kind="stable").iloc[0]
        words = top["criterion"] or "missed"
        out[str(app)] = f"{words}, limited by {top['cause']}" if top["cause"] else words
    return out


def passing(scenario: Scenario, trace: pd.DataFrame, topo: topology.Topology,
            down_bps: float | None = None, up_bps: float | None = None) -> dict[str, float]:
    """Share of the sites meeting each target (app name -> share) and every target (``EVERY``) (see :func:`judge`)."""
    return judge(scenario, trace, topo, down_bps, up_bps).shares


def share_passing(scenario: Scenario, trace: pd.DataFrame, topo: topology.Topology,
                  down_bps: float | None = None, up_bps: float | None = None) -> float:
    """Share of the sites meeting every target when their access runs at the given rates (bit/s)."""
    return passing(scenario, trace, topo, down_bps, up_bps)[EVERY]


def check_product(scenario: Scenario, site_class: str, product: str, distance_m: float | None,
                  seed: int) -> Judged:
    """A product run for real for a class's sites at a line length (m; None: headline rates), for one seed.

    Returns the share of the sites meeting each target and every target, and the causes of misses (:func:`judge`).
    """
    plan_scenario = planning_scenario(scenario, site_class, access=product, distance_m=distance_m)
    topo = topology.build(plan_scenario)
    return judge(plan_scenario, workload.generate(plan_scenario, topo, seed), topo)
