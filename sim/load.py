"""Scenario and catalogue files -> validated model; the only place that validates user input.

A scenario names its sites and load; the catalogue (``topologies/``: ``access.yaml``, ``sites.yaml``,
``apps.yaml``, ``targets.yaml``) supplies profiles, site classes, the app registry and default targets. All are
merged into one located tree and validated at once, so every error names the file, line and field it comes from.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from pathlib import Path

import pydantic

from sim import inventory, measured, source, topology, units
from sim.errors import ScenarioError
from sim.model.scenario import Scenario
from sim.model.targets import judged_apps
from sim.source import Located, dotted
from sim.tables import did_you_mean as _did_you_mean

DEFAULT_CATALOGUE = Path(__file__).resolve().parent.parent / "topologies"
CATALOGUE_FILES = ("access.yaml", "apps.yaml", "sites.yaml")
TARGETS_FILE = "targets.yaml"
FAULTS_FILE = "faults.yaml"  # optional in a catalogue folder: line faults and backups (sim.model.faults)
YEARS = "volumes_by_year"  # sites.yaml: per year, the site classes' volumes and the load knobs' defaults
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
    catalogue_dir = _catalogue_dir(scenario_src, Path(path))
    merged = _merge_scenario(scenario_src, catalogue_dir)
    overrides = dict(overrides or {})
    as_written = not overrides  # --set (a sweep, a plan) may rename the sites a known failure names
    if trace is not None:
        overrides["trace"] = json.dumps(str(Path(trace).absolute()))  # JSON text is YAML: any path, quoted
    for first in ("year", "inventory"):  # the year decides the volumes, the inventory the sites, others are set over
        if first in overrides:
            _override(merged, first, overrides.pop(first))
    _require_year(merged, Path(path))
    _apply_year(merged)
    from_inventory = _expand_inventory(merged, Path(path))
    for key, value in overrides.items():
        _override(merged, key, value, inventory_rows=from_inventory)
    _resolve_file(merged, Path(path), "trace")
    scenario = _validate(Scenario, merged)
    _check_references(scenario, merged, from_inventory)
    _check_buffers(scenario, merged)
    _check_known_failures(scenario, merged, sites=as_written)
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


def load_catalogue_dir(folder: Path | str) -> Located:
    """Read a catalogue folder into one located tree (profiles, site classes, ... and targets)."""
    folder = Path(folder)
    tree = Located({}, {})
    optional = (FAULTS_FILE,) if (folder / FAULTS_FILE).is_file() else ()
    for name in CATALOGUE_FILES + optional:
        part = source.read(folder / name)
        if not isinstance(part.data, dict):
            raise ScenarioError("a catalogue file is a mapping of sections", file=str(folder / name), line=1)
        tree = _overlay(tree, part)
    return tree


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
        merged = _merge_scenario(stub, folder)
        _apply_year(merged)
        scenario = _validate(Scenario, merged)
        _check_references(scenario, merged)
    return scenario


def _catalogue_profile_names(folder: Path) -> list[str]:
    data = load_catalogue_dir(folder).data
    return list(data.get("profiles") or {}) if isinstance(data.get("profiles"), dict) else []


def _first_class(folder: Path) -> str:
    data = load_catalogue_dir(folder).data.get("site_classes")
    return next(iter(data), "x") if isinstance(data, dict) else "x"


def _catalogue_dir(scenario_src: Located, path: Path) -> Path:
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


def _merge_scenario(scenario_src: Located, catalogue_dir: Path) -> Located:
    catalogue = load_catalogue_dir(catalogue_dir)
    targets = source.read(catalogue_dir / TARGETS_FILE)
    overrides = scenario_src.data.get("targets", {})
    if overrides is not None and not isinstance(overrides, dict):
        file, line = scenario_src.where(("targets",))
        raise ScenarioError("targets must be a mapping of overrides", file=file, line=line, path="targets")
    if overrides:
        targets = _overlay(targets, _sub(scenario_src, ("targets",)))
    merged = Located({k: v for k, v in scenario_src.data.items() if k not in ("catalogue", "targets")},
                     {p: w for p, w in scenario_src.lines.items() if p[:1] not in (("catalogue",), ("targets",))})
    merged = _attach(merged, ("catalogue",), catalogue)
    return _attach(merged, ("targets",), targets)


def _require_year(tree: Located, path: Path) -> None:
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


def _apply_year(tree: Located) -> None:
    """Lay the scenario's year of the catalogue's ``volumes_by_year`` over the site classes and under ``load``.

    The year's site-class figures replace the catalogue's; its load knobs are defaults the scenario's own ``load``
    (and ``--set load.*``) override. No ``year`` (only the catalogue's own check, :func:`_validate_catalogue_only`;
    a scenario must give one, :func:`_require_year`): the catalogue's own figures and the model's knob defaults.

    Raises:
        ScenarioError: At the scenario's ``year`` if no volumes are published for it, or at the ``volumes_by_year``
            entry that is not a mapping of known site classes and load knobs.
    """
    catalogue = tree.data["catalogue"]
    years = catalogue.pop(YEARS, None)
    block = _cut(tree, ("catalogue", YEARS))
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
        given, base = _sub(entry, (section,)), _cut(tree, base_path)
        if base.data is None:
            base = Located({}, {})
        _put(tree, base_path, _overlay(base, given) if on_top else _overlay(given, base))


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


def _cut(tree: Located, prefix: tuple) -> Located:
    """Take the part of ``tree`` under ``prefix`` (its data, if any, and its lines) out of ``tree.lines``."""
    data = tree.data
    for key in prefix:
        data = data.get(key) if isinstance(data, dict) else None
    n = len(prefix)
    lines = {p[n:]: w for p, w in tree.lines.items() if p[:n] == prefix}
    for path in [p for p in tree.lines if p[:n] == prefix and len(p) > n]:
        del tree.lines[path]
    return Located(data, lines)


def _put(tree: Located, prefix: tuple, part: Located) -> None:
    """Set ``part`` at ``prefix`` of ``tree`` (a mapping path), with its lines."""
    data = tree.data
    for key in prefix[:-1]:
        data = data[key]
    data[prefix[-1]] = part.data
    tree.lines.update({prefix + p: w for p, w in part.lines.items() if p})


def _sub(tree: Located, prefix: tuple) -> Located:
    data = tree.data
    for key in prefix:
        data = data[key]
    n = len(prefix)
    return Located(data, {p[n:]: w for p, w in tree.lines.items() if p[:n] == prefix})


def _attach(tree: Located, prefix: tuple, part: Located) -> Located:
    tree.data[prefix[0]] = part.data
    tree.lines.update({prefix + p: w for p, w in part.lines.items()})
    return tree


def _overlay(base: Located, top: Located) -> Located:
    """Deep-merge ``top`` over ``base`` (mappings merge, anything else replaces), keeping lines."""
    data = _merge_data(base.data, top.data)
    lines = dict(base.lines)
    for path in [p for p in lines if any(p[:len(q)] == q for q in _replaced_paths(base.data, top.data, ()))]:
        del lines[path]
    lines.update(top.lines)
    return Located(data, lines)


def _merge_data(base: object, top: object) -> object:
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for key, value in top.items():
            out[key] = _merge_data(base[key], value) if key in base else value
        return out
    return top


def _replaced_paths(base: object, top: object, path: tuple) -> list[tuple]:
    if isinstance(base, dict) and isinstance(top, dict):
        return [q for key in top if key in base for q in _replaced_paths(base[key], top[key], path + (key,))]
    return [path]


def _validate(model: type[pydantic.BaseModel], tree: Located):
    try:
        return model.model_validate(tree.data)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        errors.sort(key=lambda error: error["type"] != "extra_forbidden")  # a misspelt key: name it first
        raise _located_error(errors[0], tree, model, len(errors) - 1) from None


def _located_error(error: dict, tree: Located, model: type, more: int) -> ScenarioError:
    loc = _data_loc(error["loc"], tree.data)
    file, line = tree.where(loc)
    message = _message(error, loc, model)
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ScenarioError(message, file=file, line=line, path=dotted(loc) or None)


def _data_loc(loc: tuple, data: object) -> tuple:
    """Drop pydantic's union tags from ``loc``, but never a part that is a key in the data (e.g. 'Foo')."""
    out = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif _is_union_tag(part):
            continue
        else:
            data = None
        out.append(part)
    return tuple(out)


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)


def _message(error: dict, loc: tuple, model: type) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return f"unknown key {loc[-1]!r}" + _did_you_mean(str(loc[-1]), allowed, "allowed keys")
    if kind == "missing":
        return f"missing required key {loc[-1]!r}" if loc else "missing required keys"
    if kind in ("value_error", "assertion_error"):
        return msg.split(", ", 1)[1] if ", " in msg else msg
    return f"{msg} (got {error.get('input')!r})" if not isinstance(error.get("input"), (dict, list)) else msg


def _fields_at(model: object, loc: tuple) -> list[str]:
    """Names (aliases where set) of the keys allowed at ``loc`` inside ``model``."""
    current = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: object, part: object) -> object:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        fields = {f.alias or name: f for name, f in annotation.model_fields.items()}
        return _plain(fields[part].annotation) if part in fields else None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) and isinstance(part, int):
        return _plain(args[0])
    if origin is dict:
        return _plain(args[1])
    return None


def _plain(annotation: object) -> object:
    """Strip Optional/Annotated wrappers from a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation


def _override(tree: Located, key: str, value: str, inventory_rows: int = 0) -> None:
    """Set ``key`` (dotted; list items by index) to ``value`` (read as YAML) in the merged tree.

    ``access`` sets every site group's access. A group's line length is dropped where the new profile does not
    derate by distance (a scenario's group may not give one there); the last ``inventory_rows`` groups, an
    inventory's sites, keep theirs, as an inventory keeps every site's length (shown, and used by the planner).
    """
    where = f"--set {key}"
    parsed = source.parse(value, where).data if value.strip() else None
    if parsed is None:
        raise ScenarioError(f"no value given for {key!r}", file=where)
    if key == "access":  # every site group's access; line lengths dropped where the profile has no derating
        profile = (tree.data.get("catalogue") or {}).get("profiles", {}).get(parsed)
        groups = tree.data.get("sites") or []
        for i, group in enumerate(groups):
            _override(tree, f"sites.{i}.access", value)
            written = i < len(groups) - inventory_rows
            if written and isinstance(group, dict) and isinstance(profile, dict) and not profile.get("derating"):
                group.pop("distance", None)
        return
    parts = [int(p) if p.isdigit() else p for p in key.split(".")]
    if len(parts) == 4 and parts[0] == "catalogue" and parts[1] in ("profiles", "aggregations") \
            and parts[3] == "buffer":  # the old single buffer: both directions' (sim.model.catalogue.Buffered)
        for direction in ("buffer_up", "buffer_down"):
            _override(tree, ".".join(map(str, parts[:3] + [direction])), value)
        return
    data, path = tree.data, ()
    for part in parts[:-1]:
        data = _child(data, part, path, key)
        path += (part,)
    last = parts[-1]
    _child(data, last, path, key, creating=True)
    data[last] = parsed
    tree.lines = {p: w for p, w in tree.lines.items() if p[:len(path) + 1] != path + (last,)}
    tree.lines[path + (last,)] = ("--set", None)


def _child(data: object, part: object, path: tuple, key: str, creating: bool = False) -> object:
    """The item ``part`` of ``data`` (a mapping or list) on the way along ``--set key``, or a located error."""
    if isinstance(data, list) and isinstance(part, int):
        if part < len(data):
            return data[part]
        raise ScenarioError(f"{dotted(path) or 'the scenario'} has {len(data)} items; no item {part}",
                            file=f"--set {key}")
    if isinstance(data, dict) and isinstance(part, str):
        if part in data:
            return data[part]
        known = sorted(set(data) | set(_fields_at(Scenario, path)))
        if part in known:  # a key the model allows, not given: created (a section as an empty mapping)
            if not creating:
                data[part] = {}
            return data.get(part)
        near = difflib.get_close_matches(part, known, n=1, cutoff=0.5)
        hint = f"; did you mean {'.'.join(map(str, path + (near[0],)))!r}?" if near else \
            (f"; keys there: {', '.join(known)}" if known else "")
        raise ScenarioError(f"no key {'.'.join(map(str, path + (part,)))!r} in the scenario{hint}",
                            file=f"--set {key}")
    raise ScenarioError(f"{dotted(path) or 'the scenario'} is a single value; it has no {part!r}",
                        file=f"--set {key}")


def _reference_error(tree: Located, path: tuple, what: str, name: str, choices: list[str]) -> ScenarioError:
    file, line = tree.where(path)
    return ScenarioError(f"unknown {what} {name!r}" + _did_you_mean(name, choices, f"known {what}s"),
                         file=file, line=line, path=dotted(path))


def _check_distance(profile, group, tree: Located, where: tuple) -> None:
    """A site group's line length suits its profile: one that derates by distance, and within its reach."""
    message = None
    if not profile.derating:
        message = f"profile {group.access!r} has no derating by distance; remove 'distance'"
    elif profile.reach is not None and group.distance > profile.reach:
        message = inventory.beyond_reach(group.access, profile.reach, group.distance)
    if message:
        file, line = tree.where(where)
        raise ScenarioError(message, file=file, line=line, path=dotted(where))


def _check_reach(profile, group, tree: Located, where: tuple) -> None:
    """An inventory site's line is within its profile's reach (a profile sold only on short lines)."""
    if profile.reach is not None and group.distance > profile.reach:
        file, line = tree.where(where)
        raise ScenarioError(inventory.beyond_reach(group.access, profile.reach, group.distance), file=file, line=line,
                            path=dotted(where))


def _check_buffers(scenario: Scenario, tree: Located) -> None:
    """Each site group's line drains its buffers within a minute at its own rates (a size in bytes may not).

    Raises:
        ScenarioError: At the profile's buffer, naming the group, its rate and how long the buffer takes to drain.
    """
    from sim.model.quantities import MAX_BUFFER_S
    for group in scenario.sites:
        profile = scenario.catalogue.profiles[group.access]
        down_bps, up_bps = profile.rates_at(group.distance)
        for direction, rate_bps, size_bytes in zip(("down", "up"), (down_bps, up_bps),
                                                   profile.buffers_bytes(down_bps, up_bps)):
            if size_bytes * 8 > MAX_BUFFER_S * rate_bps:
                where = ("catalogue", "profiles", group.access, f"buffer_{direction}")
                file, line = tree.where(where)
                raise ScenarioError(f"{size_bytes * 8 / rate_bps:,.0f} s to drain at the {units.format_rate(rate_bps)} "
                                    f"of site group {group.name or group.access!r}: a buffer holds at most "
                                    f"{MAX_BUFFER_S:g} s of its line", file=file, line=line, path=dotted(where))


def _check_references(scenario: Scenario, tree: Located, from_inventory: int = 0) -> None:
    """Check every name that points into the catalogue (profiles, classes, day profiles, ...).

    The last ``from_inventory`` site groups are an inventory's rows: their line lengths are kept (and shown) even
    where the profile does not derate by distance.
    """
    cat = scenario.catalogue
    profiles, classes = list(cat.profiles), list(cat.site_classes)
    first_row = len(scenario.sites) - from_inventory
    for i, group in enumerate(scenario.sites):
        if group.site_class not in cat.site_classes:
            raise _reference_error(tree, ("sites", i, "class"), "site class", group.site_class, classes)
        if group.access not in cat.profiles:
            raise _reference_error(tree, ("sites", i, "access"), "profile", group.access, profiles)
        if group.aggregation is not None and group.aggregation not in cat.aggregations:
            raise _reference_error(tree, ("sites", i, "aggregation"), "aggregation", group.aggregation,
                                   list(cat.aggregations))
        if group.distance is not None and i < first_row:
            _check_distance(cat.profiles[group.access], group, tree, ("sites", i, "distance"))
        elif group.distance is not None:  # an inventory's row: checked as read, but --set access may change it
            _check_reach(cat.profiles[group.access], group, tree, ("sites", i, "access"))
    for i, name in enumerate(cat.ladder):
        if name not in cat.profiles:
            raise _reference_error(tree, ("catalogue", "ladder", i), "profile", name, profiles)
    if cat.core.home_profile not in cat.profiles:
        raise _reference_error(tree, ("catalogue", "core", "home_profile"), "profile", cat.core.home_profile,
                               profiles)
    for name in cat.core.home_mix:
        if name not in cat.profiles:
            raise _reference_error(tree, ("catalogue", "core", "home_mix", name), "profile", name, profiles)
    _check_site_classes(scenario, tree)
    _check_target_apps(scenario, tree)
    _check_unique_names(scenario, tree)
    _check_emulation(scenario, tree)
    _check_faults(scenario, tree)
    _check_outages(scenario, tree)


def _check_site_classes(scenario: Scenario, tree: Located) -> None:
    """Day profiles exist; activities name registry apps of a generic generator, with what their kind needs."""
    cat = scenario.catalogue
    for name, site_class in cat.site_classes.items():
        where = ("catalogue", "site_classes", name)
        for section in ("consultations", "gp2gp", "imaging"):
            spec = getattr(site_class, section)
            if spec is not None and spec.profile not in cat.day_profiles:
                raise _reference_error(tree, (*where, section, "profile"), "day profile", spec.profile,
                                       list(cat.day_profiles))
        for app_name, activity in site_class.activities.items():
            _check_activity(cat, tree, (*where, "activities", app_name), site_class, app_name, activity)


def _check_activity(cat, tree: Located, where: tuple, site_class, app_name: str, activity) -> None:
    if app_name not in cat.apps:
        raise _reference_error(tree, where, "app", app_name, list(cat.apps))
    app = cat.apps[app_name]

    def fail(message: str, key: str | None = None) -> ScenarioError:
        path = (*where, key) if key else where
        file, line = tree.where(path)
        return ScenarioError(message, file=file, line=line, path=dotted(path))

    if app.generator not in ("transfers", "streams"):
        raise fail(f"app {app_name!r} is made by the {app.generator!r} generator, not from activities; "
                   f"set its volume in the site class's {app.generator!r} section")
    if activity.profile not in cat.day_profiles:
        raise _reference_error(tree, (*where, "profile"), "day profile", activity.profile, list(cat.day_profiles))
    if activity.per_staff is not None and site_class.staff is None:
        raise fail("per_staff needs the site class's 'staff'", "per_staff")
    if app.traffic == "transfer" and activity.size is None and app.size is None:
        raise fail(f"transfer app {app_name!r} has no size here or in apps.yaml")
    if app.traffic == "stream" and activity.duration is None and not activity.aggregate:
        raise fail(f"stream app {app_name!r} needs a 'duration' (or 'aggregate: true')")
    if app.traffic == "transfer" and activity.aggregate:
        raise fail("only streams are aggregated; remove 'aggregate'", "aggregate")


def _check_target_apps(scenario: Scenario, tree: Located) -> None:
    """Every target names a registry app of its traffic (streams under ``streams``, transfers under ``transfers``)."""
    apps = scenario.catalogue.apps
    for section, traffic in (("streams", "stream"), ("transfers", "transfer")):
        for name in getattr(scenario.targets, section):
            if name not in apps:
                raise _reference_error(tree, ("targets", section, name), "app", name, list(apps))
            if apps[name].traffic != traffic:
                file, line = tree.where(("targets", section, name))
                raise ScenarioError(f"app {name!r} is a {apps[name].kind}: its target belongs under "
                                    f"{'streams' if apps[name].traffic == 'stream' else 'transfers'}",
                                    file=file, line=line, path=dotted(("targets", section, name)))


def _check_emulation(scenario: Scenario, tree: Located) -> None:
    """The emulated sites exist and the emulated window lies inside the scenario's window."""
    emu = scenario.emulation
    if emu.start is not None and not (scenario.window.start <= emu.start
                                      and emu.start + emu.duration <= scenario.window.end):
        file, line = tree.where(("emulation", "start"))
        raise ScenarioError("the emulated window (start + duration) must lie inside the scenario's window "
                            f"({units.format_clock(scenario.window.start)}-"
                            f"{units.format_clock(scenario.window.end)})",
                            file=file, line=line, path="emulation.start")
    if emu.sites:
        names = topology.site_names(scenario)
        for i, name in enumerate(emu.sites):
            if name not in names:
                raise _reference_error(tree, ("emulation", "sites", i), "site", name, names)


def _check_known_failures(scenario: Scenario, tree: Located, sites: bool = True) -> None:
    """Every known failure names a class, profile and target the scenario has, and (``sites``) a site it has."""
    cat, names = scenario.catalogue, None
    for i, known in enumerate(scenario.known_failures):
        where = ("known_failures", i)
        if known.site_class is not None and known.site_class not in cat.site_classes:
            raise _reference_error(tree, (*where, "class"), "site class", known.site_class, list(cat.site_classes))
        if known.access is not None and known.access not in cat.profiles:
            raise _reference_error(tree, (*where, "access"), "profile", known.access, list(cat.profiles))
        targets = [*judged_apps(scenario.targets), *([] if known.availability else ["link"])]
        if known.target is not None and known.target not in targets:
            raise _reference_error(tree, (*where, "target"), "target", known.target, targets)
        if known.availability is not None:
            _check_known_availability(known, tree, where, cat)
        if known.site is not None and sites:
            names = topology.site_names(scenario) if names is None else names
            if known.site not in names:
                raise _reference_error(tree, (*where, "site"), "site", known.site, names)


def _check_known_availability(known, tree: Located, where: tuple, cat) -> None:
    """An availability known failure names a measure, a technology and a backup the catalogue has."""
    if known.availability not in AVAILABILITY_MEASURES:
        raise _reference_error(tree, (*where, "availability"), "availability measure", known.availability,
                               list(AVAILABILITY_MEASURES))
    technologies = list(dict.fromkeys(p.technology for p in cat.profiles.values()))
    if known.technology is not None and known.technology not in technologies:
        raise _reference_error(tree, (*where, "technology"), "technology", known.technology, technologies)
    if known.backup is not None and known.backup not in cat.backups:
        raise _reference_error(tree, (*where, "backup"), "backup profile", known.backup, list(cat.backups))


AVAILABILITY_MEASURES = ("share", "hours", "all")  # what an availability known failure excuses (sim.gate)


def _check_unique_names(scenario: Scenario, tree: Located) -> None:
    seen: dict[str, int] = {}
    for i, group in enumerate(scenario.sites):
        if group.name is None:
            continue
        if group.name in seen:
            file, line = tree.where(("sites", i, "name"))
            raise ScenarioError(f"name {group.name!r} is already used by sites[{seen[group.name]}]",
                                file=file, line=line, path=dotted(("sites", i, "name")))
        seen[group.name] = i


def _check_size(scenario: Scenario, tree: Located) -> None:
    """Refuse a scenario whose trace would be too large to generate (a likely typo)."""
    from sim.workload import expected_sessions
    total = expected_sessions(scenario)
    if total > MAX_SESSIONS:
        file, line = tree.where(("sites",))
        raise ScenarioError(f"this scenario would generate about {total:,.0f} sessions, more than the "
                            f"{MAX_SESSIONS:,} one run can hold; reduce counts, volume_scale or the window",
                            file=file, line=line, path="sites")


def _check_faults(scenario: Scenario, tree: Located) -> None:
    """Faults name technologies of the profiles, and backups profiles; an availability study names a backup.

    Every technology a study meets (the sites' and the backup's) must have its line faults in the catalogue.
    """
    cat, targets = scenario.catalogue, scenario.targets
    technologies = sorted({profile.technology for profile in cat.profiles.values()})
    for name in cat.faults.line:
        if name not in technologies:
            raise _reference_error(tree, ("catalogue", "faults", "line", name), "technology", name, technologies)
    for kind, shared in cat.faults.shared.items():
        for i, name in enumerate(shared.technologies):
            if name not in technologies:
                raise _reference_error(tree, ("catalogue", "faults", "shared", kind, "technologies", i),
                                       "technology", name, technologies)
    for name, backup in cat.backups.items():
        if backup.profile is not None and backup.profile not in cat.profiles:
            raise _reference_error(tree, ("catalogue", "backups", name, "profile"), "profile", backup.profile,
                                   list(cat.profiles))
    for name in (targets.availability.site_classes if targets.availability else {}):
        if name not in cat.site_classes:
            raise _reference_error(tree, ("targets", "availability", "site_classes", name), "site class", name,
                                   list(cat.site_classes))
    for i, group in enumerate(scenario.sites):
        if group.backup is not None and group.backup not in cat.backups:
            raise _reference_error(tree, ("sites", i, "backup"), "backup profile", group.backup, list(cat.backups))
    if scenario.availability is not None:
        _check_availability_study(scenario, tree)


def _check_availability_study(scenario: Scenario, tree: Located) -> None:
    cat, study = scenario.catalogue, scenario.availability
    if study.backup not in cat.backups:
        raise _reference_error(tree, ("availability", "backup"), "backup profile", study.backup, list(cat.backups))
    file, line = tree.where(("availability",))
    if scenario.targets.availability is None:
        raise ScenarioError("the targets have no 'availability' section to judge it by (topologies/targets.yaml)",
                            file=file, line=line, path="availability")
    backup = cat.backups[study.backup]
    needs = [(("sites", i, "access"), group.access) for i, group in enumerate(scenario.sites)]
    needs += [(("availability", "backup"), backup.profile)] if backup.profile else []
    needs += [(("sites", i, "backup"), cat.backups[group.backup].profile) for i, group in enumerate(scenario.sites)
              if group.backup is not None and cat.backups[group.backup].profile]
    for path, profile in needs:
        technology = cat.profiles[profile].technology
        if technology not in cat.faults.line:
            file, line = tree.where(path)
            raise ScenarioError(f"profile {profile!r} is {technology!r}, which has no line faults in the catalogue "
                                f"(faults.yaml: faults.line.{technology})", file=file, line=line, path=dotted(path))


def _check_outages(scenario: Scenario, tree: Located) -> None:
    """Each outage names a site or site group and a backup, falls in the run, and no two of a site's overlap."""
    if not scenario.outages:
        return
    groups = topology.group_sites(scenario)
    names = list(dict.fromkeys([*groups, *(n for members in groups.values() for n in members)]))
    down: dict[str, list[tuple[float, float, int]]] = {}  # each site's outages so far: (at, repaired, index)
    for i, outage in enumerate(scenario.outages):
        where = ("outages", i)
        if outage.site not in names:
            raise _reference_error(tree, (*where, "site"), "site", outage.site, names)
        if outage.backup is not None and outage.backup not in scenario.catalogue.backups:
            raise _reference_error(tree, (*where, "backup"), "backup profile", outage.backup,
                                   list(scenario.catalogue.backups))
        problem = _outage_time_problem(scenario, outage)
        repaired_s = outage.repaired if outage.repaired is not None else scenario.window.end + scenario.drain
        for site in groups.get(outage.site, [outage.site]):
            clash = next((k for at_s, end_s, k in down.get(site, []) if outage.at < end_s and at_s < repaired_s), None)
            if problem is None and clash is not None:
                problem = ("at", f"site {site!r} is already down then (outages[{clash}])")
            down.setdefault(site, []).append((outage.at, repaired_s, i))
        if problem:
            file, line = tree.where((*where, problem[0]))
            raise ScenarioError(problem[1], file=file, line=line, path=dotted((*where, problem[0])))


def _outage_time_problem(scenario: Scenario, outage) -> tuple[str, str] | None:
    """(field, message) if an outage's fault is outside the window or its repair not after it, within the run."""
    clock = units.format_clock
    start_s, end_s, horizon_s = scenario.window.start, scenario.window.end, scenario.window.end + scenario.drain
    if not start_s <= outage.at < end_s:
        return "at", f"{clock(outage.at)} is outside the window ({clock(start_s)}-{clock(end_s)})"
    if outage.repaired is not None and outage.repaired <= outage.at:
        return "repaired", f"the repair ({clock(outage.repaired)}) must come after the fault ({clock(outage.at)})"
    if outage.repaired is not None and outage.repaired > horizon_s:
        return "repaired", (f"{clock(outage.repaired)} is after the run ends (its window and drain: "
                            f"{clock(horizon_s)}); leave 'repaired' out for a line down to the end")
    return None
