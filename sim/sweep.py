"""Sweeps: a grid of scenario variants (``--set KEY=V1,V2,...``) x seeds, run on one executor, one flat table.

Every grid point is validated before anything runs, so a bad key or value fails in seconds with a located
message. Each run is the simulator on the whole variant; its site-class verdicts become rows of the table,
tagged with the point's values and the seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim import pipeline, scale
from sim.errors import TestbedError
from sim.load import load
from sim.model.scenario import Scenario

TABLE_COLUMNS = ["seed", "family", "site_class", "access_profile", "technology", "medium", "app", "sites",
                 "sites_passing", "sessions", "sessions_passing", "share_passing", "passed"]
MAX_RUNS = 2_000


@dataclass(frozen=True)
class Sweep:
    """A finished sweep: the grid, the seeds and the flat table (one row per run, site class, access and app)."""

    scenario: str
    grid: dict[str, list[str]]
    seeds: tuple[int, ...]
    site_bar: float
    table: pd.DataFrame


def parse_sets(sets: list[str]) -> dict[str, list[str]]:
    """``["load.gp_video_share=2%,25%", "access=adsl2plus,fttp_330_50"]`` -> ``{key: [values]}``, in order.

    Raises:
        TestbedError: For a missing ``=``, an empty key or value list, an empty value, or a key given twice.
    """
    if not sets:
        raise TestbedError("give at least one --set KEY=V1,V2,...")
    axes: dict[str, list[str]] = {}
    for item in sets:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TestbedError(f"--set {item!r}: write KEY=V1,V2,... (e.g. load.gp_video_share=2%,25%,50%)")
        listed = [v.strip() for v in values.split(",")]
        if not values.strip():
            raise TestbedError(f"--set {key}: the list of values is empty")
        if "" in listed:
            raise TestbedError(f"--set {key}: an empty value in {values!r}")
        if key in axes:
            raise TestbedError(f"--set {key} is given twice; put all its values in one list")
        axes[key] = listed
    return axes


def grid(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the axes' values, the first key varying slowest."""
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def variants(path: Path | str, axes: dict[str, list[str]]) -> list[tuple[dict[str, str], Scenario]]:
    """Load and validate the scenario at every grid point.

    Raises:
        ScenarioError: For the first point whose key or value is wrong.
    """
    return [(point, load(path, point)) for point in grid(axes)]


def run_point(scenario: Scenario, point: dict[str, str], seed: int) -> pd.DataFrame:
    """Simulate one variant with one seed; its site-class verdicts tagged with the point and seed."""
    outcome = pipeline.simulate(scenario, seed)
    rows = outcome.verdicts.classes.drop(columns=["reason"]).assign(seed=seed)
    for key, value in point.items():
        rows.insert(0, key, value)
    return rows[[*point, *TABLE_COLUMNS]]


def sweep(path: Path | str, axes: dict[str, list[str]], *, seeds: int = 1, client=None,
          progress: scale.Progress | None = None) -> Sweep:
    """Run every grid point with ``seeds`` seeds (from the scenario's own), on ``client`` or in this process.

    Raises:
        TestbedError: If ``seeds`` is below 1 or the grid is too large; ScenarioError for a bad key or value.
    """
    if seeds < 1:
        raise TestbedError(f"--seeds must be at least 1 (got {seeds})")
    points = variants(path, axes)
    runs = len(points) * seeds
    if runs > MAX_RUNS:
        raise TestbedError(f"the sweep is {runs:,} runs; at most {MAX_RUNS:,} (fewer values or seeds)")
    first = points[0][1]
    seed_list = tuple(first.seed + k for k in range(seeds))
    jobs = [(scenario, point, s) for point, scenario in points for s in seed_list]
    parts = scale.map_ordered(client, run_point, jobs, progress)
    return Sweep(first.name, axes, seed_list, first.targets.passing.sites, pd.concat(parts, ignore_index=True))
