"""Sweeps: a grid of scenario variants (``--set KEY=V1,V2,...``) x seeds, run on one executor, one flat table.

Every grid point is validated before anything runs, so a bad key or value fails in seconds with a located
message. Each run is the simulator on the whole variant; its site-class verdicts become rows of the table,
tagged with the point's values and the seed. A key's values are stored as numbers in SI units where they have a
unit, the unit in the column's name (``load.gp_video_share=2%,10%`` -> ``load.gp_video_share_fraction``: 0.02,
0.1; ``catalogue.profiles.adsl2plus.up=1Mbps`` -> ``..._bps``; ``window.end="18:30"`` -> ``window.end_s``, seconds
since midnight), so they sort as numbers; plain numbers stay numbers and names stay text, under the key's name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim import pipeline, scale, units
from sim.errors import TestbedError
from sim.load import load
from sim.model.scenario import Scenario

TABLE_COLUMNS = ["seed", "family", "site_class", "access_profile", "technology", "medium", "app", "sites",
                 "sites_passing", "sessions", "sessions_passing", "share_passing", "passed"]
MAX_RUNS = 2_000
UNIT_SUFFIXES = {"rate": "_bps", "time": "_s", "size": "_bytes", "distance": "_m", "fraction": "_fraction",
                 "clock": "_s"}


@dataclass(frozen=True)
class Axis:
    """One swept key: its column in the table, its values as stored there and as written (in the same order)."""

    key: str
    column: str
    kind: str  # rate, time, size, distance, fraction, clock (a unit: SI values), number, or text
    values: tuple[float | int | str, ...]
    labels: tuple[str, ...]

    def as_dict(self) -> dict:
        """The axis as plain data, for a study's meta.json (a report reads it there)."""
        return {"key": self.key, "column": self.column, "kind": self.kind, "values": list(self.values),
                "labels": list(self.labels)}


@dataclass(frozen=True)
class Sweep:
    """A finished sweep: the grid, the seeds and the flat table (one row per run, site class, access and app)."""

    scenario: str
    grid: dict[str, list[str]]
    axes: tuple[Axis, ...]
    seeds: tuple[int, ...]
    site_bar: float
    table: pd.DataFrame


def parse_sets(sets: list[str]) -> dict[str, list[str]]:
    """``["load.gp_video_share=2%,25%", "access=adsl2plus,fttp_330_50"]`` -> ``{key: [values]}``, in order.

    Raises:
        TestbedError: For a missing ``=``, an empty key or value list, an empty value, a key given twice, or
            ``seed`` (seeds are ``--seeds``).
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
        if key == "seed":  # every point runs the same seeds, and the table's seed column names them
            raise TestbedError("--set seed: a sweep runs each point with --seeds N seeds from the scenario's own")
        axes[key] = listed
    return axes


def axis(key: str, texts: list[str]) -> Axis:
    """How a key's values are stored: numbers in SI units where every value has a unit of one kind.

    A percentage makes the values fractions (``2%`` -> 0.02; a bare ``0.5`` beside it is 0.5); times of day
    (``"18:30"``) become seconds since midnight; values that are all plain numbers stay numbers (whole ones as
    integers); anything else (profile names, a mix of kinds) stays text, as written.
    """
    for kind in ("rate", "time", "size", "distance", "fraction", "clock", "number"):
        values = _all_as(kind, texts)
        if values is not None:
            return Axis(key, key + UNIT_SUFFIXES.get(kind, ""), kind, values, tuple(texts))
    return Axis(key, key, "text", tuple(texts), tuple(texts))


def _all_as(kind: str, texts: list[str]) -> tuple[float | int, ...] | None:
    """Every text read as ``kind``, or None if one is not."""
    if kind == "fraction" and not any(t.strip().endswith("%") for t in texts):
        return None  # bare numbers are numbers; a percentage makes the axis a share
    try:
        if kind == "clock":
            return tuple(units.parse_clock(t) for t in texts)
        if kind == "number":
            numbers = [float(t) for t in texts]
            whole = all(n.is_integer() for n in numbers)
            return tuple(int(n) if whole else n for n in numbers)
        return tuple(units.parse(t, kind) for t in texts)
    except (ValueError, OverflowError):
        return None


def grid(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the axes' values, the first key varying slowest."""
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def variants(path: Path | str, axes: dict[str, list[str]]) -> list[tuple[dict[str, str], Scenario]]:
    """Load and validate the scenario at every grid point.

    Raises:
        ScenarioError: For the first point whose key or value is wrong.
    """
    return [(point, load(path, point)) for point in grid(axes)]


def run_point(scenario: Scenario, values: dict[str, float | int | str], seed: int) -> pd.DataFrame:
    """Simulate one variant with one seed; its site-class verdicts tagged with the point's values and the seed.

    ``values`` maps each axis's column to the point's value as stored (see :func:`axis`).
    """
    outcome = pipeline.simulate(scenario, seed)
    rows = outcome.verdicts.classes.drop(columns=["reason"]).assign(seed=seed)
    for column, value in reversed(values.items()):
        rows.insert(0, column, value)
    return rows[[*values, *TABLE_COLUMNS]]


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
    stored = tuple(axis(key, texts) for key, texts in axes.items())
    jobs = [(scenario, _stored_values(stored, point), s) for point, scenario in points for s in seed_list]
    parts = scale.map_ordered(client, run_point, jobs, progress)
    return Sweep(first.name, axes, stored, seed_list, first.targets.passing.sites,
                 pd.concat(parts, ignore_index=True))


def _stored_values(stored: tuple[Axis, ...], point: dict[str, str]) -> dict[str, float | int | str]:
    """A grid point's values as the table stores them, by column."""
    return {a.column: a.values[a.labels.index(point[a.key])] for a in stored}
