"""Years of line faults, sampled: when each site's line is down, and when it runs on its backup, in working hours.

Time is one timeline of ``years`` years of 365 days (hours since a Monday 00:00). Faults of a line (or of a
shared unit: a cabinet, an exchange, a GPON tree) arrive as a Poisson process of the catalogue's rate, uniform over
the timeline, and each lasts a repair time drawn from its distribution. The timeline is a circle (a repair running
past its end continues at its start), so every instant is alike and the expected working hours down a year are
``rate x mean repair x working share`` for one line (up to overlapping faults, counted once). Times here
are in hours; the catalogue's are in seconds.

A site's primary line is down while any of its faults is (its line's, its shared units'). With a backup, each
switch to it costs the failover time; while the backup is down too, the site has no service. A second line that
is not diverse shares the primary's units (the same cabinet, exchange and tree).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.model.faults import Backup, Faults, LineFault, WorkingHours

HOURS_PER_YEAR = 365 * 24.0
Intervals = tuple[np.ndarray, np.ndarray]  # (starts_h, ends_h), sorted and disjoint once merged
NONE: Intervals = (np.empty(0), np.empty(0))


@dataclass(frozen=True)
class SiteYears:
    """Working hours a year each site spent without service (``down_h``) and on its backup (``backup_h``).

    Both are arrays of shape (sites, years), rows in the topology's site order.
    """

    down_h: np.ndarray
    backup_h: np.ndarray
    working_h_per_year: float


def sample(fault: LineFault, years: int, rng: np.random.Generator) -> Intervals:
    """Fault intervals (h) of one line or shared unit over ``years`` years, wrapped on the circular timeline."""
    total_h = years * HOURS_PER_YEAR
    n = int(rng.poisson(fault.rate_per_year * years))
    starts_h = rng.uniform(0.0, total_h, n)
    ends_h = starts_h + fault.repair.sample(rng, n) / 3600.0
    late = ends_h > total_h
    return (np.concatenate([starts_h, np.zeros(late.sum())]),
            np.concatenate([np.minimum(ends_h, total_h), ends_h[late] - total_h]))


def cover(sets: list[Intervals], need: int = 1) -> Intervals:
    """The time covered by at least ``need`` of the intervals of ``sets`` (``need=1``: their union), merged.

    Intervals are half-open: one ending when another starts leaves no gap (they join) and no overlap.
    """
    starts = np.concatenate([s for s, _ in sets] + [np.empty(0)])
    ends = np.concatenate([e for _, e in sets] + [np.empty(0)])
    if not len(starts):
        return NONE
    times = np.concatenate([starts, ends])
    delta = np.concatenate([np.ones(len(starts), int), -np.ones(len(ends), int)])
    order = np.lexsort((-delta, times))  # at one instant, starts before ends: abutting intervals join
    times, level = times[order], np.cumsum(delta[order])
    on = level >= need
    was = np.concatenate([[False], on[:-1]])
    out_s, out_e = times[on & ~was], times[~on & was]
    keep = out_e > out_s
    return out_s[keep], out_e[keep]


def working_until(t_h: np.ndarray, hours: WorkingHours) -> np.ndarray:
    """Working hours from the timeline's start (a Monday 00:00) to each time ``t_h`` (h)."""
    start_h, end_h = hours.start / 3600.0, hours.end / 3600.0
    per_day_h = end_h - start_h
    day = np.floor(t_h / 24.0)
    week, weekday = np.divmod(day, 7.0)
    today_h = np.where(weekday < hours.days_per_week, np.clip(t_h - day * 24.0 - start_h, 0.0, per_day_h), 0.0)
    return (week * hours.days_per_week + np.minimum(weekday, hours.days_per_week)) * per_day_h + today_h


def per_year(intervals: Intervals, years: int, hours: WorkingHours) -> np.ndarray:
    """Working hours of disjoint ``intervals`` falling in each year of the timeline (array of ``years``)."""
    starts_h, ends_h = intervals
    out = np.zeros(years)
    if not len(starts_h):
        return out
    first = np.floor(starts_h / HOURS_PER_YEAR)
    last = np.floor(ends_h / HOURS_PER_YEAR)
    for offset in range(int((last - first).max()) + 1):
        year = first + offset
        lo = np.clip(starts_h, year * HOURS_PER_YEAR, (year + 1) * HOURS_PER_YEAR)
        hi = np.clip(ends_h, year * HOURS_PER_YEAR, (year + 1) * HOURS_PER_YEAR)
        inside = (year < years) & (hi > lo)
        worked = working_until(hi, hours) - working_until(lo, hours)
        out += np.bincount(year[inside].astype(int), weights=worked[inside], minlength=years)
    return out


def site_hours(primary: list[Intervals], backup: list[Intervals] | None, failover_h: float, years: int,
               hours: WorkingHours) -> tuple[np.ndarray, np.ndarray]:
    """Working hours a year without service and on the backup, for one site.

    Args:
        primary: Fault intervals (h) that take the primary line down.
        backup: Those that take the backup down (an empty list: a backup that never fails); None: no backup.
        failover_h: The outage at each switch to the backup (h).
        years: Years of the timeline.
        hours: The working hours counted.
    """
    down = cover(primary)
    if backup is None:
        return per_year(down, years, hours), np.zeros(years)
    both = cover([down, cover(backup)], need=2)
    switching = (down[0], np.minimum(down[0] + failover_h, down[1]))
    lost = cover([both, switching])
    lost_h = per_year(lost, years, hours)
    return lost_h, per_year(down, years, hours) - lost_h


def sample_sites(sites: pd.DataFrame, faults: Faults, backup: Backup, backup_technology: str | None, years: int,
                 seed: Sequence[int]) -> SiteYears:
    """Sample ``years`` years of faults for every site of a topology's site table.

    Each line and shared unit draws from its own generator, seeded by ``seed`` and the unit's identity (a site's
    position in the topology, a shared link's name), so a site's years do not depend on the other sites: two
    scenarios differing in one group's access sample the same faults for every other site (paired comparisons),
    and the same seed gives the same years. A site's technology with no line faults in ``faults`` raises KeyError
    (the loader refuses such a scenario first).
    """
    units: dict[tuple, Intervals] = {}

    def unit(key: tuple, fault: LineFault) -> Intervals:
        if key not in units:
            units[key] = sample(fault, years, np.random.default_rng([*seed, *key]))
        return units[key]

    kinds = {kind: k for k, kind in enumerate(faults.shared)}
    down, on_backup = np.zeros((len(sites), years)), np.zeros((len(sites), years))
    rows = zip(sites.index.tolist(), sites["technology"], sites["aggregation"])
    for i, (position, technology, aggregation) in enumerate(rows):
        primary = [unit((0, position), faults.line[technology])]
        primary += [unit(_unit_key(kinds[kind], spec.per, position, aggregation), spec)
                    for kind, spec in faults.shared.items() if technology in spec.technologies]
        spare = None
        if backup.kind != "none":
            spare = [unit((1, position), faults.line[backup_technology])]
            spare += [unit(_unit_key(kinds[kind], spec.per, position, aggregation) if not backup.diverse
                           else (4, kinds[kind], position), spec)
                      for kind, spec in faults.shared.items() if backup_technology in spec.technologies]
        failover_h = (backup.failover or 0.0) / 3600.0
        down[i], on_backup[i] = site_hours(primary, spare, failover_h, years, faults.working_hours)
    working = float(working_until(np.array([years * HOURS_PER_YEAR]), faults.working_hours)[0]) / years
    return SiteYears(down, on_backup, working)


def _unit_key(kind: int, per: str, position: int, aggregation: str) -> tuple:
    """The shared unit a site's line goes through: its own, or its aggregation link's (a GPON tree's)."""
    if per == "aggregation" and aggregation:
        return (3, kind, zlib.crc32(aggregation.encode("utf-8")))
    return (2, kind, position)
