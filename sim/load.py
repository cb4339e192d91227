"""Scenario and catalogue files -> validated model; the only place that validates user input.

A scenario names its sites and load; the catalogue (``topologies/``: ``access.yaml``, ``sites.yaml``,
``apps.yaml``, ``targets.yaml``) supplies profiles, site classes, the app registry and default targets. All are
merged into one located tree and validated at once, so every error names the file, line and field it comes from.

The parts: :mod:`sim.load_catalogue` (the catalogue folder and the year's volumes), :mod:`sim.load_tree` (located
trees and ``--set``), :mod:`sim.load_errors` (the model's errors, located), :mod:`sim.load_checks` and
:mod:`sim.load_faults` (the checks across a validated scenario).
"""

from __future__ import annotations

import json
from pathlib import Path

from sim import inventory, load_catalogue, load_checks, load_errors, load_faults, load_tree, measured, source
from sim.errors import ScenarioError
from sim.load_catalogue import CATALOGUE_FILES, FAULTS_FILE, TARGETS_FILE, YEARS, load_catalogue_dir
from sim.model.scenario import Scenario
from sim.source import Located

MAX_SESSIONS = 20_000_000


def load(path: Path | str, overrides: dict[str, str] | None = None, *, trace: Path | str | None = None) -> Scenario:
    """Load and validate a scenario file with its catalogue and targets.

    Args:
        path: The scenario file.
        overrides: ``{dotted key: YAML value}`` set on the merged scenario before validation, as ``--set``
            gives them: e.g. ``load.gp_video_share: 50%``, ``catalogue.profiles.adsl2plus.up: 2Mbps``,
            ``sites.0.count: 4``, or ``access: fttp_330_50`` for every site group's access.
        trace: A measured trace to replay instead of the scenario's own (``--trace``; relative to here).

    Raises:
        ScenarioError: Naming the file, line and field (or the ``--set`` key) of the first problem found.
    """
    scenario_src = source.read(path)
    if not isinstance(scenario_src.data, dict):
        raise ScenarioError("a scenario is a mapping of keys (name, window, sites, ...)", file=str(path), line=1)
    catalogue_dir = load_catalogue.catalogue_dir(scenario_src, Path(path))
    merged = load_catalogue.merge_scenario(scenario_src, catalogue_dir)
    overrides = dict(overrides or {})
    as_written = not overrides  # --set (a sweep, a plan) may rename the sites a known failure names
    if trace is not None:
        overrides["trace"] = json.dumps(str(Path(trace).absolute()))  # JSON text is YAML: any path, quoted
    for first in ("year", "inventory"):  # the year decides the volumes, the inventory the sites, others are set over
        if first in overrides:
            load_tree.override(merged, first, overrides.pop(first))
    load_catalogue.require_year(merged, Path(path))
    load_catalogue.apply_year(merged)
    from_inventory = _expand_inventory(merged, Path(path))
    for key, value in overrides.items():
        load_tree.override(merged, key, value, inventory_rows=from_inventory)
    _resolve_file(merged, Path(path), "trace")
    scenario = load_errors.validate(Scenario, merged)
    load_checks.check_references(scenario, merged, from_inventory)
    load_checks.check_buffers(scenario, merged)
    load_faults.check_known_failures(scenario, merged, sites=as_written)
    if scenario.trace is None:
        _check_size(scenario, merged)
    elif len(measured.read(scenario, _shown_file(merged, Path(path), "trace"))) > MAX_SESSIONS:
        file, line = merged.where(("trace",))
        raise ScenarioError(f"the trace holds more than the {MAX_SESSIONS:,} sessions one run can hold; split it "
                            "by site", file=file, line=line, path="trace")
    return scenario


def _expand_inventory(tree: Located, path: Path) -> int:
    """Put the scenario's ``inventory`` rows (one site each) after its ``sites`` groups; return how many.

    Each row's entries are located at its row of the inventory file, so a later error names it.

    Raises:
        ScenarioError: At the ``inventory`` key if the file is not there, else at the file's row and column.
    """
    if tree.data.get("inventory") is None:
        return 0
    file = _resolve_file(tree, path, "inventory")
    catalogue = tree.data["catalogue"] if isinstance(tree.data.get("catalogue"), dict) else {}
    shown = _shown_file(tree, path, "inventory")
    entries, rows = inventory.read(file, shown, catalogue)
    sites = tree.data.get("sites")
    if sites is not None and not isinstance(sites, list):
        where_file, line = tree.where(("sites",))
        raise ScenarioError("sites is a list of site groups", file=where_file, line=line, path="sites")
    sites = tree.data["sites"] = list(sites or [])
    for entry, row in zip(entries, rows):
        tree.lines.update({("sites", len(sites), *key): (shown, row) for key in ((), *((k,) for k in entry))})
        sites.append(entry)
    return len(entries)


def _resolve_file(tree: Located, path: Path, key: str) -> Path | None:
    """Make the file at ``key`` (the scenario's own: relative to its folder; ``--set``'s: to here) absolute.

    Raises:
        ScenarioError: At ``key`` if it is not text or names no file.
    """
    given = tree.data.get(key)
    if given is None:
        return None
    file, line = tree.where((key,))
    if not isinstance(given, str) or not given.strip():
        raise ScenarioError(f"{key} is the path of a .csv or .parquet file", file=file, line=line, path=key)
    base = Path.cwd() if file == "--set" else path.parent
    try:
        resolved = (base / given).resolve()
        found = resolved.is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        resolved, found = base / given, False
    if not found:
        raise ScenarioError(f"no such file: {resolved}", file=file, line=line, path=key)
    tree.data[key] = str(resolved)
    return resolved


def _shown_file(tree: Located, path: Path, key: str) -> str:
    """How messages name the file at ``key``: from here, as the user would type it (absolute if not below here)."""
    resolved = Path(tree.data[key])
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def validate_file(path: Path | str) -> str:
    """Validate a scenario or catalogue file; return a one-line description of what it holds.

    Raises:
        ScenarioError: As :func:`load`.
    """
    path = Path(path)
    if path.name in CATALOGUE_FILES + (TARGETS_FILE, FAULTS_FILE):
        scenario = _validate_catalogue_only(path.parent)
        return f"catalogue {path.parent}: {len(scenario.catalogue.profiles)} access profiles, " \
               f"{len(scenario.catalogue.site_classes)} site classes, targets valid"
    scenario = load(path)
    sites = sum(group.count for group in scenario.sites)
    listed = f" (with the inventory {Path(scenario.inventory).name})" if scenario.inventory else ""
    replay = f"; replays the measured trace {Path(scenario.trace).name}" if scenario.trace else ""
    return f"scenario {scenario.name!r}: {sites} sites in {len(scenario.sites)} groups{listed}{replay}"


def _validate_catalogue_only(folder: Path) -> Scenario:
    """Validate the catalogue on its own figures, then with each year of its ``volumes_by_year`` laid over them."""
    profile = next(iter(_catalogue_profile_names(folder)), "x")
    years = load_catalogue_dir(folder).data.get(YEARS)
    scenario = None
    for year in [None, *(int(y) for y in (years if isinstance(years, dict) else {}) if str(y).isdigit())]:
        stub = Located({"name": "catalogue-check", "window": {"start": "08:00", "end": "09:00"}, "year": year,
                        "sites": [{"class": _first_class(folder), "count": 1, "access": profile}]}, {})
        merged = load_catalogue.merge_scenario(stub, folder)
        load_catalogue.apply_year(merged)
        scenario = load_errors.validate(Scenario, merged)
        load_checks.check_references(scenario, merged)
    return scenario


def _catalogue_profile_names(folder: Path) -> list[str]:
    data = load_catalogue_dir(folder).data
    return list(data.get("profiles") or {}) if isinstance(data.get("profiles"), dict) else []


def _first_class(folder: Path) -> str:
    data = load_catalogue_dir(folder).data.get("site_classes")
    return next(iter(data), "x") if isinstance(data, dict) else "x"


def _check_size(scenario: Scenario, tree: Located) -> None:
    """Refuse a scenario whose trace would be too large to generate (a likely typo)."""
    from sim.workload import expected_sessions
    total = expected_sessions(scenario)
    if total > MAX_SESSIONS:
        file, line = tree.where(("sites",))
        raise ScenarioError(f"this scenario would generate about {total:,.0f} sessions, more than the "
                            f"{MAX_SESSIONS:,} one run can hold; reduce counts, volume_scale or the window",
                            file=file, line=line, path="sites")
