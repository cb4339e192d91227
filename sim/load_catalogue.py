"""Catalogue folder and a scenario's year -> one located tree (part of :mod:`sim.load`).

A catalogue folder (``topologies/``: ``access.yaml``, ``sites.yaml``, ``apps.yaml``, ``targets.yaml``, and optionally
``faults.yaml``) supplies profiles, site classes, the app registry and default targets; the scenario's ``year`` picks
the ``volumes_by_year`` entry laid over them. Every part keeps its file and line, so a later error names them.
"""

from __future__ import annotations

from pathlib import Path

from sim import load_tree, source
from sim.errors import ScenarioError
from sim.source import Located, dotted
from sim.tables import did_you_mean as _did_you_mean

DEFAULT_CATALOGUE = Path(__file__).resolve().parent.parent / "topologies"


CATALOGUE_FILES = ("access.yaml", "apps.yaml", "sites.yaml")


TARGETS_FILE = "targets.yaml"


FAULTS_FILE = "faults.yaml"  # optional in a catalogue folder: line faults and backups (sim.model.faults)


YEARS = "volumes_by_year"  # sites.yaml: per year, the site classes' volumes and the load knobs' defaults


def load_catalogue_dir(folder: Path | str) -> Located:
    """Read a catalogue folder into one located tree (profiles, site classes, ... and targets)."""
    folder = Path(folder)
    tree = Located({}, {})
    optional = (FAULTS_FILE,) if (folder / FAULTS_FILE).is_file() else ()
    for name in CATALOGUE_FILES + optional:
        part = source.read(folder / name)
        if not isinstance(part.data, dict):
            raise ScenarioError("a catalogue file is a mapping of sections", file=str(folder / name), line=1)
        tree = load_tree.overlay(tree, part)
    return tree


def catalogue_dir(scenario_src: Located, path: Path) -> Path:
    """The scenario's ``catalogue`` folder (relative to the scenario), or the default one.

    Raises:
        ScenarioError: At ``catalogue`` if it is not a folder holding the catalogue files.
    """
    given = scenario_src.data.get("catalogue")
    if given is None:
        return DEFAULT_CATALOGUE
    file, line = scenario_src.where(("catalogue",))
    if not isinstance(given, str):
        raise ScenarioError("catalogue must be a folder path", file=file, line=line, path="catalogue")
    try:
        folder = (path.parent / given).resolve()
        found = all((folder / name).is_file() for name in CATALOGUE_FILES + (TARGETS_FILE,))
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        folder, found = path.parent / given, False
    if not found:
        raise ScenarioError(f"no catalogue folder at {folder} (one with access.yaml, sites.yaml and targets.yaml)",
                            file=file, line=line, path="catalogue")
    return folder


def merge_scenario(scenario_src: Located, catalogue_dir: Path) -> Located:
    """The scenario with its catalogue under ``catalogue`` and its targets (the catalogue's, its own over them).

    Raises:
        ScenarioError: At the scenario's ``targets`` if it is not a mapping.
    """
    catalogue = load_catalogue_dir(catalogue_dir)
    targets = source.read(catalogue_dir / TARGETS_FILE)
    overrides = scenario_src.data.get("targets", {})
    if overrides is not None and not isinstance(overrides, dict):
        file, line = scenario_src.where(("targets",))
        raise ScenarioError("targets must be a mapping of overrides", file=file, line=line, path="targets")
    if overrides:
        targets = load_tree.overlay(targets, load_tree.sub(scenario_src, ("targets",)))
    merged = Located({k: v for k, v in scenario_src.data.items() if k not in ("catalogue", "targets")},
                     {p: w for p, w in scenario_src.lines.items() if p[:1] not in (("catalogue",), ("targets",))})
    merged = load_tree.attach(merged, ("catalogue",), catalogue)
    return load_tree.attach(merged, ("targets",), targets)


def require_year(tree: Located, path: Path) -> None:
    """A scenario states the year whose published volumes it replays (``year: 2024``).

    Raises:
        ScenarioError: At the scenario's ``year`` if it is empty, else at the file's first line, naming the years
            the catalogue publishes.
    """
    if tree.data.get("year") is not None:
        return
    years = (tree.data.get("catalogue") or {}).get(YEARS)
    published = ", ".join(str(y) for y in years) if isinstance(years, dict) and years else "none in the catalogue"
    file, line = tree.where(("year",)) if "year" in tree.data else (str(path), 1)
    raise ScenarioError(f"a scenario states the year of its volumes: add 'year: <year>' (years with published "
                        f"volumes: {published})", file=file, line=line, path="year")


def apply_year(tree: Located) -> None:
    """Lay the scenario's year of the catalogue's ``volumes_by_year`` over the site classes and under ``load``.

    The year's site-class figures replace the catalogue's; its load knobs are defaults the scenario's own ``load``
    (and ``--set load.*``) override. No ``year`` (only the catalogue's own check,
    :func:`sim.load._validate_catalogue_only`; a scenario must give one, :func:`require_year`): the catalogue's own
    figures and the model's knob defaults.

    Raises:
        ScenarioError: At the scenario's ``year`` if no volumes are published for it, or at the ``volumes_by_year``
            entry that is not a mapping of known site classes and load knobs.
    """
    catalogue = tree.data["catalogue"]
    years = catalogue.pop(YEARS, None)
    block = load_tree.cut(tree, ("catalogue", YEARS))
    year = tree.data.get("year")
    if year is None:
        tree.data.pop("year", None)
        return
    file, line = tree.where(("year",))
    if not isinstance(years, dict) or not years:
        raise ScenarioError(f"the catalogue has no {YEARS} to choose from (topologies/sites.yaml); remove 'year'",
                            file=file, line=line, path="year")
    published = ", ".join(str(y) for y in years)
    if isinstance(year, bool) or not isinstance(year, int) or str(year) not in years:  # YAML keys are read as text
        raise ScenarioError(f"no volumes for the year {year!r}; years with published volumes: {published}",
                            file=file, line=line, path="year")
    key = str(year)
    entry = Located(years[key], {p[1:]: w for p, w in block.lines.items() if p[:1] == (key,)})
    _check_year_entry(entry, tree, (YEARS, key))
    for section, base_path, on_top in (("site_classes", ("catalogue", "site_classes"), True),
                                       ("modalities", ("catalogue", "modalities"), True),
                                       ("load", ("load",), False)):
        if not entry.data.get(section):
            continue
        given, base = load_tree.sub(entry, (section,)), load_tree.cut(tree, base_path)
        if base.data is None:
            base = Located({}, {})
        load_tree.put(tree, base_path, load_tree.overlay(base, given) if on_top else load_tree.overlay(given, base))


def _check_year_entry(entry: Located, tree: Located, where: tuple) -> None:
    """A year of ``volumes_by_year`` holds ``site_classes`` and ``modalities`` (of the catalogue's) and ``load``."""
    def fail(message: str, path: tuple) -> ScenarioError:
        file, line = entry.where(path)
        return ScenarioError(message, file=file, line=line, path=dotted(("catalogue", *where, *path)))

    if not isinstance(entry.data, dict):
        raise fail("a year's volumes are a mapping: site_classes, modalities and load", ())
    sections = {"site_classes": ("site class", "site classes"), "modalities": ("modality", "modalities"), "load": None}
    for key, value in entry.data.items():
        if key not in sections:
            raise fail(f"unknown key {key!r}" + _did_you_mean(str(key), list(sections), "allowed keys"), (key,))
        if value is not None and not isinstance(value, dict):
            raise fail(f"{key} is a mapping", (key,))
    for section, names in sections.items():
        known = tree.data["catalogue"].get(section) if names else None
        for name in (entry.data.get(section) or {}) if names else ():
            if not isinstance(known, dict) or name not in known:
                raise fail(f"unknown {names[0]} {name!r}" + _did_you_mean(str(name), list(known or {}),
                                                                         f"known {names[1]}"), (section, name))
