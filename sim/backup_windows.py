"""How often an app fails on a backup: replayed windows on the backup, pooled per site class.

While its line is down a site runs on its backup. Whether an app works there is judged by the simulator: the
scenario's window is replayed with every site's access swapped for the backup's profile, and each site's verdict
per app in that window (:mod:`sim.targets`) is one *site-window*. On the backup, a site's day does not depend on
its primary line (its access is the backup's; line length and shared trees are gone), and the sites of a class are
alike (the same load, on the same profile): the site-windows of a class are draws of one process. So the share of
time on the backup an app fails is estimated per backup and site class, pooled over its site-windows, the same for
every primary line of the class, with a Wilson 95% interval (:func:`wilson`).

A class's first :data:`MAX_SITE_WINDOWS` sites are replayed, not all of them (:func:`capped`): more would narrow an
interval already within +-10 points, at the cost of a whole day per site (an estate's hundreds of acute sites).
One window per site leaves few site-windows in a small scenario, and one window's verdict flipped with the seed. A
class with fewer than :data:`MIN_SITE_WINDOWS` sites is topped up: one more replay on the backup, with the class's
missing site-windows as sites of their own, on a seed of the study's stream (independent of the run's sessions),
at most :data:`TOP_UP_SESSIONS` judged sessions of them (busy sites get fewer windows, and a wider interval).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from sim import pipeline, scale, targets, topology
from sim.model.scenario import Scenario
from sim.model.targets import judged_apps
from sim.targets import LINK

MIN_SITE_WINDOWS = 40  # replayed site-windows a site class's share is pooled from, at least (a choice: see the docs)
MAX_SITE_WINDOWS = 100  # and at most: a class's further sites on the backup are draws of the same process
TOP_UP_SESSIONS = 10_000  # judged sessions a class's top-up replays at most (bounds the cost for busy sites)
Z_95 = 1.959964  # the standard normal's 97.5% quantile
POOL_COLUMNS = ["site_class", "app", "windows", "failing", "sessions", "sessions_passing"]
BACKUP_WORKERS: int | None = None  # the sharded backup day's local Dask workers (None: one per core; 0: here)


def wilson(failing: np.ndarray, windows: np.ndarray, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial share ``failing / windows`` (0-1 where ``windows`` is 0)."""
    failing, windows = np.asarray(failing, float), np.asarray(windows, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = failing / windows
        centre = (share + z * z / (2 * windows)) / (1 + z * z / windows)
        half = z / (1 + z * z / windows) * np.sqrt(share * (1 - share) / windows + z * z / (4 * windows * windows))
    empty = windows <= 0
    return np.where(empty, 0.0, np.clip(centre - half, 0, 1)), np.where(empty, 1.0, np.clip(centre + half, 0, 1))


def replay(scenario: Scenario, seed: int, backup: str) -> pd.DataFrame:
    """Per site class and judged app: site-windows on ``backup`` with sessions of the app, and how many failed.

    Columns :data:`POOL_COLUMNS`: ``windows`` (site-windows with sessions of the app), ``failing`` (those where the
    site missed the app's target), ``sessions`` and ``sessions_passing`` (over those site-windows). The first
    replay is the scenario's window with the run's ``seed`` (the run's own sessions, on the backup); a class with
    fewer than :data:`MIN_SITE_WINDOWS` sites then gets its missing site-windows in one more replay (not for a
    scenario replaying a measured trace: it has only its own sites' sessions).
    """
    first = backup_site_verdicts(on_backup(capped(scenario), backup), seed)[1]
    pooled = _pool(first, scenario)
    extra = _top_up(scenario, first) if scenario.trace is None else ()  # a measured trace: only its own sessions
    if extra:
        more = scenario.model_copy(update={"sites": extra})
        pooled = pooled.add(_pool(backup_site_verdicts(on_backup(more, backup), top_up_seed(seed))[1], scenario),
                            fill_value=0)
    return pooled.astype("int64").reset_index()


def capped(scenario: Scenario, most: int = MAX_SITE_WINDOWS) -> Scenario:
    """The scenario with at most ``most`` sites of each class: its groups in order, the last one kept cut short.

    On the backup a class's sites are alike (see the module docstring), so the first ``most`` of them are as good a
    sample as any: the Wilson interval is at most +-10 points at 100 site-windows. An estate's busiest class (an
    acute site's whole day holds thousands of sessions) then costs 100 site-windows, not one per site.
    """
    kept, groups = {}, []
    for group in scenario.sites:
        room = most - kept.get(group.site_class, 0)
        if room > 0:
            groups.append(group if group.count <= room else group.model_copy(update={"count": room}))
            kept[group.site_class] = kept.get(group.site_class, 0) + min(group.count, room)
    return scenario.model_copy(update={"sites": tuple(groups)})


def top_up_seed(seed: int) -> int:
    """The seed of the top-up replay: drawn from the run's seed on the study's own stream (13, 2)."""
    return int(np.random.SeedSequence([seed, 13, 2]).generate_state(1)[0])


def _top_up(scenario: Scenario, first: pd.DataFrame) -> tuple:
    """One site group per class with fewer than :data:`MIN_SITE_WINDOWS` sites, of the missing count.

    A class whose sites are busy gets fewer: at most :data:`TOP_UP_SESSIONS` judged sessions, at the mean a site
    of it had in the ``first`` replay's verdicts (an acute site's whole day holds thousands).
    """
    counts: dict[str, int] = {}
    first_group = {}
    for group in scenario.sites:
        counts[group.site_class] = counts.get(group.site_class, 0) + group.count
        first_group.setdefault(group.site_class, group)
    sessions = first[first["app"] != LINK].groupby("site_class")["sessions"].sum()
    extra = {}
    for name, count in counts.items():
        per_site = float(sessions.get(name, 0)) / count
        budget = int(TOP_UP_SESSIONS // per_site) if per_site > 0 else MIN_SITE_WINDOWS
        if min(MIN_SITE_WINDOWS - count, budget) > 0:
            extra[name] = min(MIN_SITE_WINDOWS - count, budget)
    return tuple(first_group[c].model_copy(update={"count": n, "name": f"top-up-{c}", "site_id": None,
                                                   "region": None, "distance": None, "aggregation": None,
                                                   "backup": None})
                 for c, n in extra.items())


def _pool(verdicts: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Site verdicts (a replay's) summed per site class and judged app: :data:`POOL_COLUMNS` but the keys."""
    rows = verdicts[(verdicts["app"] != LINK) & (verdicts["sessions"] > 0)]
    rows = rows[rows["app"].isin(judged_apps(scenario.targets))]
    table = rows.assign(windows=1, failing=(~rows["passed"].astype(bool)).astype(int))
    return table.groupby(["site_class", "app"])[POOL_COLUMNS[2:]].sum()


def on_backup(scenario: Scenario, backup: str) -> Scenario:
    """The scenario with every site's access swapped for the backup's profile (calls first if it carries so)."""
    cat = scenario.catalogue
    chosen = cat.backups[backup]
    profiles, name = dict(cat.profiles), chosen.profile
    if chosen.carries == "realtime_first":
        name = f"{chosen.profile}+calls_first"
        profiles[name] = cat.profiles[chosen.profile].model_copy(update={"qos": "priority"})
    sites = tuple(group.model_copy(update={"access": name, "distance": None, "aggregation": None})
                  for group in scenario.sites)
    return scenario.model_copy(update={"sites": sites, "outages": (),  # the day on the backup has no fault of its own
                                       "catalogue": cat.model_copy(update={"profiles": profiles})})


def backup_site_verdicts(scenario: Scenario, seed: int) -> tuple[list[str], pd.DataFrame]:
    """The sites (in topology order) and their verdicts for a scenario's day (:func:`sim.targets.site_verdicts`).

    A scenario large enough for a sharded run (:func:`sim.scale.wants_cluster`) runs in shards on a local Dask
    cluster of :data:`BACKUP_WORKERS`, into a temporary folder: each shard judges its own sites, and only the
    site verdicts are read back (the same as one process gives: sites are judged on their own).
    """
    if not scale.wants_cluster(scenario):
        outcome = pipeline.simulate(scenario, seed)
        return outcome.topology.sites["site"].tolist(), outcome.verdicts.sites
    topo = topology.build(scenario)
    plan = scale.plan_shards(scenario, topo)
    with tempfile.TemporaryDirectory(prefix="testbed-backup-day-") as folder, \
            scale.cluster(None, BACKUP_WORKERS) as client:
        scale.run_shards(scenario, topo, seed, pipeline._window(scenario), Path(folder), client)
        verdicts = targets.combine_site_verdicts([pd.read_parquet(s.path(folder, "site_verdicts")) for s in plan])
    return topo.sites["site"].tolist(), verdicts


def per_class(pooled: pd.DataFrame, app: str) -> pd.DataFrame:
    """``pooled``'s rows of ``app`` by site class: windows, failing, sessions, sessions passing."""
    return pooled[pooled["app"] == app].set_index("site_class")[POOL_COLUMNS[2:]]
