"""A year in minutes: each site's working hours without service and on backup through sampled years of faults.

The study samples ``years`` years of line and shared faults for every site of a scenario (:mod:`sim.faults`),
with a generator seeded by the run's seed. How often an app fails while a site runs on its backup is judged by
the simulator: the scenario's window is replayed with every site's access swapped for the backup's profile, and
the share of its site class's replayed site-windows where the app misses its target (pooled over at least 40,
with a Wilson interval: :mod:`sim.backup_windows`) is the share of its hours on backup the app fails (an
approximation: whole windows on the backup, not a link changed mid-window; docs/availability.md). Hours without an
app = hours without service + hours on backup x that share.

Per site class, access profile and app: the mean working hours a year without the app (95% interval by a
bootstrap over the sampled years), the share of working hours it is usable, and the hours lost in the worst
``years`` share of site-years (the target's quantile, with a binomial order-statistic interval, its ranks by the
normal approximation), judged against ``targets.availability``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim import backup_windows, faults, topology, workload
from sim.errors import ScenarioError
from sim.model.faults import AvailabilityStudy
from sim.model.scenario import Scenario
from sim.model.targets import judged_apps
from sim.working_time import hours_text

STREAM = 13  # the study's own generator streams: (seed, STREAM, ...) are independent of the workload's (seed, site)
BOOTSTRAP = 1000
CLASS_KEYS = ["backup", "site_class", "access_profile", "technology"]  # a class table's row: these and an app


@dataclass(frozen=True)
class Availability:
    """An availability study's results.

    ``backup``: the backups the sites ran on, comma-separated (each class row names its own). ``sites``: one row
    per site and app (its backup; mean hours a year down, on backup, without the app; whether the app works on
    the backup). ``classes``: one row per backup x site class x access profile x app, with intervals and verdicts.
    """

    backup: str
    years: int
    working_h_per_year: float
    sites: pd.DataFrame
    classes: pd.DataFrame

    @property
    def all_pass(self) -> bool:
        """True when every site class meets its availability target for every app."""
        return bool(self.classes["passed"].all())


def study(scenario: Scenario, seed: int, years: int | None = None, backup: str | None = None,
          trace: pd.DataFrame | None = None, days: dict | None = None) -> Availability:
    """Run an availability study of a scenario (its ``availability`` key, or the defaults, as overridden here).

    Each site runs on its site group's own ``backup`` (an inventory row's), or else the scenario's default.

    Args:
        scenario: A validated scenario whose sites' technologies (and its backups') have line faults.
        seed: The run's seed: the backup day's workload and the sampled faults.
        years: Years to sample (default the scenario's, or 200).
        backup: The default backup profile of the catalogue (default the scenario's, or ``none``); a site group
            naming its own keeps it.
        trace: The scenario's whole trace for ``seed``, if a run made it already (else it is generated).
        days: A cache of backup replays (backup name -> :func:`sim.backup_windows.replay`'s table for this
            scenario's sites and ``seed``), filled here: a caller studying the same sites on other primaries passes
            it again (a site's day on a backup does not depend on its primary line).

    Raises:
        ScenarioError: If the catalogue lacks what the study needs (the loader checks a scenario that asks for
            one; ``run --year`` may ask of any scenario).
    """
    spec = scenario.availability or AvailabilityStudy()
    years, backup = years or spec.years, backup or spec.backup
    topo = topology.build(scenario)
    chosen = site_backups(scenario, topo, backup)
    for name in dict.fromkeys([backup, *chosen]):
        require(scenario, name)
    apps = judged_apps(scenario.targets)
    counts = session_counts(workload.generate(scenario, topo, seed) if trace is None else trace, topo, apps)
    days = {} if days is None else days
    day = _day(scenario, seed, counts, chosen, days, topo.sites)
    sampled = _sample(scenario, topo.sites, chosen, years, seed)
    rng = np.random.default_rng([seed, STREAM, 1])
    sites = topo.sites.assign(backup=chosen.to_numpy())
    classes = _class_table(sites, sampled, day, scenario, rng)
    classes.insert(1, "working_h", sampled.working_h_per_year)
    named = ", ".join(dict.fromkeys(chosen))
    return Availability(named, years, sampled.working_h_per_year, _site_table(sites, sampled, day), classes)


def without_backups(scenario: Scenario) -> Scenario:
    """The scenario with no site group naming a backup of its own (a study of it with ``backup='none'``: bare lines)."""
    return scenario.model_copy(update={"sites": tuple(g.model_copy(update={"backup": None}) for g in scenario.sites)})


def site_backups(scenario: Scenario, topo: topology.Topology, default: str) -> pd.Series:
    """Each site's backup (rows: topology positions): its site group's own, else ``default``."""
    names = topology.site_names(scenario)
    per_group = [group.backup or default for group in scenario.sites for _ in range(group.count)]
    return topo.sites["site"].map(dict(zip(names, per_group))).rename("backup")


def _day(scenario: Scenario, seed: int, counts: pd.DataFrame, chosen: pd.Series, days: dict,
         sites: pd.DataFrame) -> Day:
    """What the replays on each site's own backup say of it (a backup of kind ``none``: every app fails, exactly).

    Each site takes its backup's pooled figures for its site class (:func:`sim.backup_windows.replay`).
    """
    shape = (len(counts), len(counts.columns))
    fail, windows, failing, sessions = np.ones(shape), np.zeros(shape), np.zeros(shape), np.ones(shape)
    bare = np.zeros(shape, dtype=bool)  # sites without a backup: every app fails on it, for certain
    for name in dict.fromkeys(chosen):
        if scenario.catalogue.backups[name].kind == "none":
            bare[(chosen == name).to_numpy()] = True
            continue
        if name not in days:
            days[name] = backup_windows.replay(scenario, seed, name)
        mask = (chosen == name).to_numpy()
        for j, app in enumerate(counts.columns):
            pooled = backup_windows.per_class(days[name], app).reindex(sites["site_class"][mask], fill_value=0)
            windows[mask, j], failing[mask, j] = pooled["windows"], pooled["failing"]
            fail[mask, j] = np.divide(pooled["failing"], pooled["windows"], out=np.zeros(len(pooled)),
                                      where=pooled["windows"].to_numpy() > 0)
            sessions[mask, j] = 1.0 - np.divide(pooled["sessions_passing"], pooled["sessions"],
                                                out=np.ones(len(pooled)), where=pooled["sessions"].to_numpy() > 0)
    low, high = backup_windows.wilson(failing, windows)  # no site-window seen: the whole 0-1 interval

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=counts.index, columns=counts.columns)

    return Day(counts, frame(fail), frame(np.where(bare, 1.0, low)), frame(np.where(bare, 1.0, high)),
               frame(windows), frame(sessions), (scenario.window.end - scenario.window.start) / 3600.0)


def _sample(scenario: Scenario, sites: pd.DataFrame, chosen: pd.Series, years: int, seed: int) -> faults.SiteYears:
    """Sampled years of every site with its own backup, the sites of each backup sampled together.

    A site's faults depend only on its position and its shared units' names, so the split changes nothing for it.
    """
    cat = scenario.catalogue
    down, on_backup, working = np.zeros((len(sites), years)), np.zeros((len(sites), years)), 0.0
    for name in dict.fromkeys(chosen):
        spare = cat.backups[name]
        technology = cat.profiles[spare.profile].technology if spare.profile else None
        mask = (chosen == name).to_numpy()
        part = faults.sample_sites(sites[mask], cat.faults, spare, technology, years, (seed, STREAM))
        down[mask], on_backup[mask], working = part.down_h, part.backup_h, part.working_h_per_year
    return faults.SiteYears(down, on_backup, working)


@dataclass(frozen=True)
class Day:
    """What the replays on the backup say of each site and judged app (rows: topology positions; columns: apps).

    ``counts``: its sessions in the scenario's window; ``fail``: the share of time on its backup the app fails
    (its site class's failing site-windows over its ``windows``; 1 with no backup), within ``low``-``high`` (Wilson
    95%); ``sessions_failing``: the share of the class's sessions failing there; ``window_h``: the window (h).
    """

    counts: pd.DataFrame
    fail: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    windows: pd.DataFrame
    sessions_failing: pd.DataFrame
    window_h: float


def session_counts(trace: pd.DataFrame, topo: topology.Topology, apps: list[str]) -> pd.DataFrame:
    """Sessions of each judged app at each site in its day's trace (rows: topology positions).

    An app a site never uses (imaging at a GP practice) is not judged for its availability there.
    """
    counts = trace.groupby(["site", "app"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=topo.sites["site"], columns=apps, fill_value=0)
    return counts.reset_index(drop=True)


def require(scenario: Scenario, backup: str | None = None) -> None:
    """The backup profile, the availability targets and every technology's line faults are in the catalogue.

    Raises:
        ScenarioError: Naming what is missing and where it belongs.
    """
    cat = scenario.catalogue
    backup = backup or (scenario.availability or AvailabilityStudy()).backup
    if backup not in cat.backups:
        raise ScenarioError(f"no backup profile {backup!r} in the catalogue's faults.yaml (backups: "
                            f"{', '.join(cat.backups) or 'none defined'})", path="availability.backup")
    if scenario.targets.availability is None:
        raise ScenarioError("the targets have no 'availability' section to judge it by (targets.yaml)",
                            path="targets.availability")
    profiles = [group.access for group in scenario.sites] + [p for p in [cat.backups[backup].profile] if p]
    missing = sorted({cat.profiles[p].technology for p in profiles} - set(cat.faults.line))
    if missing:
        raise ScenarioError(f"no line faults for {', '.join(map(repr, missing))} in the catalogue's faults.yaml "
                            "(faults.line)", path="catalogue.faults.line")


def _without(sampled: faults.SiteYears, day: Day, app: str, share: pd.DataFrame | None = None) -> np.ndarray:
    """Working hours a year without ``app``, shape (sites, years): down, and on backup the share it fails there.

    ``share``: the share of time on backup the app fails (default ``day.fail``; ``day.low`` or ``day.high`` for
    its interval's ends). Over a fault's many hours on the backup, the hours it fails come to that share.
    """
    fails = (day.fail if share is None else share)[app].to_numpy(dtype=float)
    return sampled.down_h + sampled.backup_h * fails[:, None]


def _site_table(sites: pd.DataFrame, sampled: faults.SiteYears, day: Day) -> pd.DataFrame:
    """Per site and app it uses: mean hours a year down, on backup and without the app; sessions lost a year.

    Sessions lost a year are counted at the replayed window's rate of sessions an hour (an approximation: a busy
    window overstates the rest of the day): those due while the site is down, and those due on the backup that
    fail there (its site class's share of sessions failing on the backup replays).
    """
    parts = []
    for app in day.counts.columns:
        part = sites[["site", "site_class", "family", "access_profile", "technology", "backup"]].copy()
        rate = day.counts[app].to_numpy() / day.window_h
        part["app"] = app
        part["works_on_backup"] = 1.0 - day.fail[app].to_numpy()
        part["down_h"] = sampled.down_h.mean(axis=1)
        part["backup_h"] = sampled.backup_h.mean(axis=1)
        part["without_h"] = _without(sampled, day, app).mean(axis=1)
        part["share_usable"] = 1.0 - part["without_h"] / sampled.working_h_per_year
        part["sessions_per_h"] = rate
        part["sessions_lost"] = part["down_h"] * rate
        part["sessions_failed_on_backup"] = part["backup_h"] * rate * day.sessions_failing[app].to_numpy()
        parts.append(part[day.counts[app].to_numpy() > 0])
    return pd.concat(parts, ignore_index=True)


def _class_table(sites: pd.DataFrame, sampled: faults.SiteYears, day: Day, scenario: Scenario,
                 rng: np.random.Generator) -> pd.DataFrame:
    """Per site class x access profile x app its sites use: hours, intervals and the verdict."""
    rows = []
    years = sampled.down_h.shape[1]
    resamples = rng.integers(0, years, (BOOTSTRAP, years))
    for keys, members in sites.groupby(CLASS_KEYS, sort=False):
        target = scenario.targets.availability.of(keys[1])
        for app in day.counts.columns:
            index = members.index.to_numpy()[day.counts[app].to_numpy()[members.index.to_numpy()] > 0]
            if not len(index):
                continue
            hours = _bounded(sampled, day, app, index)
            row = _summary(hours, sampled.down_h[index], sampled.backup_h[index], target.years, resamples)
            row.update(zip(CLASS_KEYS, keys))
            row.update(app=app, sites=len(index), years=years, works_on_backup=1.0 - float(day.fail[app][index].mean()),
                       backup_windows=int(day.windows[app][index].iloc[0]),
                       degraded_share=float(day.fail[app][index].iloc[0]),
                       degraded_low=float(day.low[app][index].iloc[0]),
                       degraded_high=float(day.high[app][index].iloc[0]))
            row.update(_sessions(sampled, day, app, index))
            rows.append(_judge(row, target, sampled.working_h_per_year))
    return pd.DataFrame(rows, columns=[c for c in CLASS_COLUMNS if c != "working_h"])


def _bounded(sampled: faults.SiteYears, day: Day, app: str, index: np.ndarray) -> list[np.ndarray]:
    """``index``'s site-years without ``app`` at the backup's failing share, and at its interval's low and high ends.

    Where an end equals the share (no backup: failing for certain), its hours are the point's (not computed again).
    """
    down, backup = sampled.down_h[index], sampled.backup_h[index]
    fail = day.fail[app].to_numpy()[index]
    point = down + backup * fail[:, None]
    ends = [share[app].to_numpy()[index] for share in (day.low, day.high)]
    return [point, *(point if np.array_equal(end, fail) else down + backup * end[:, None] for end in ends)]


def _sessions(sampled: faults.SiteYears, day: Day, app: str, index: np.ndarray) -> dict:
    """Sessions a site loses a year, on average over ``index``'s sites: while down, and failing on the backup."""
    rate = day.counts[app].to_numpy()[index] / day.window_h
    failing = day.sessions_failing[app].to_numpy()[index]
    return {"sessions_lost": float((sampled.down_h[index].mean(axis=1) * rate).mean()),
            "sessions_failed_on_backup": float((sampled.backup_h[index].mean(axis=1) * rate * failing).mean())}


def _summary(hours: list[np.ndarray], down: np.ndarray, backup: np.ndarray, quantile: float,
             resamples: np.ndarray) -> dict:
    """Mean hours a year (95% interval) and the ``quantile`` of site-years (with its interval).

    ``hours``: site-years without the app at the backup's failing share, and at its interval's low and high end.
    The mean's interval is a bootstrap over years (every site of a year together: shared units' faults stay
    together) of the low-end hours for its low bound and of the high-end hours for its high bound; the quantile's,
    its binomial order statistics likewise: both intervals hold the sampling of faults and of backup windows.
    """
    def ranked(values: np.ndarray, side: int) -> float:
        flat = np.sort(values.ravel())
        spread = 1.96 * np.sqrt(len(flat) * quantile * (1 - quantile))  # the rank's binomial spread, normal approx.
        rank = int(np.floor(len(flat) * quantile - spread)) - 1 if side < 0 else int(np.ceil(len(flat) * quantile
                                                                                            + spread))
        return float(flat[min(max(rank, 0), len(flat) - 1)])

    def bootstrap(values: np.ndarray, q: float) -> float:
        return float(np.quantile(values.mean(axis=0)[resamples].mean(axis=1), q))

    point, low, high = hours
    return {"down_h": float(down.mean()), "backup_h": float(backup.mean()), "without_h": float(point.mean()),
            "without_low_h": bootstrap(low, 0.025), "without_high_h": bootstrap(high, 0.975),
            "worst_h": float(np.quantile(point.ravel(), quantile)), "worst_low_h": ranked(low, -1),
            "worst_high_h": ranked(high, 1)}


def _judge(row: dict, target, working_h: float) -> dict:
    """Add the share usable and the verdict against ``target`` (an AvailabilityTarget) to a class row."""
    share = 1.0 - row["without_h"] / working_h
    limit_h = target.hours / 3600.0
    reasons = []
    if share < target.share:
        reasons.append(f"usable {share:.2%} of working hours < {target.share:.2%}")
    if row["worst_h"] > limit_h:
        reasons.append(f"{hours_text(row['worst_h'])} lost in the worst {1 - target.years:.0%} of years > "
                       f"{hours_text(limit_h)}")
    return {**row, "share_usable": share, "target_share": target.share, "target_hours": limit_h,
            "target_years": target.years, "passed": not reasons, "reason": "; ".join(reasons)}


CLASS_COLUMNS = ["backup", "working_h", *CLASS_KEYS[1:], "app", "sites", "years", "works_on_backup",
                 "backup_windows", "degraded_share", "degraded_low", "degraded_high", "down_h",
                 "backup_h", "without_h", "without_low_h", "without_high_h", "share_usable", "worst_h", "worst_low_h",
                 "worst_high_h", "sessions_lost", "sessions_failed_on_backup", "target_share", "target_hours",
                 "target_years", "passed", "reason"]
