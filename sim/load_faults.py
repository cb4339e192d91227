"""Checks of a validated scenario's faults, backups, availability study, outages and known failures.

Part of :mod:`sim.load`: every name they give exists in the catalogue or the scenario, and every time lies in the run.
"""

from __future__ import annotations

from sim import topology, units
from sim.errors import ScenarioError
from sim.load_errors import reference_error
from sim.model.scenario import Scenario
from sim.model.targets import judged_apps
from sim.source import Located, dotted


def check_known_failures(scenario: Scenario, tree: Located, sites: bool = True) -> None:
    """Every known failure names a class, profile and target the scenario has, and (``sites``) a site it has."""
    cat, names = scenario.catalogue, None
    for i, known in enumerate(scenario.known_failures):
        where = ("known_failures", i)
        if known.site_class is not None and known.site_class not in cat.site_classes:
            raise reference_error(tree, (*where, "class"), "site class", known.site_class, list(cat.site_classes))
        if known.access is not None and known.access not in cat.profiles:
            raise reference_error(tree, (*where, "access"), "profile", known.access, list(cat.profiles))
        targets = [*judged_apps(scenario.targets), *([] if known.availability else ["link"])]
        if known.target is not None and known.target not in targets:
            raise reference_error(tree, (*where, "target"), "target", known.target, targets)
        if known.availability is not None:
            _check_known_availability(known, tree, where, cat)
        if known.site is not None and sites:
            names = topology.site_names(scenario) if names is None else names
            if known.site not in names:
                raise reference_error(tree, (*where, "site"), "site", known.site, names)


def _check_known_availability(known, tree: Located, where: tuple, cat) -> None:
    """An availability known failure names a measure, a technology and a backup the catalogue has."""
    if known.availability not in AVAILABILITY_MEASURES:
        raise reference_error(tree, (*where, "availability"), "availability measure", known.availability,
                               list(AVAILABILITY_MEASURES))
    technologies = list(dict.fromkeys(p.technology for p in cat.profiles.values()))
    if known.technology is not None and known.technology not in technologies:
        raise reference_error(tree, (*where, "technology"), "technology", known.technology, technologies)
    if known.backup is not None and known.backup not in cat.backups:
        raise reference_error(tree, (*where, "backup"), "backup profile", known.backup, list(cat.backups))


AVAILABILITY_MEASURES = ("share", "hours", "all")  # what an availability known failure excuses (sim.gate)


def check_faults(scenario: Scenario, tree: Located) -> None:
    """Faults name technologies of the profiles, and backups profiles; an availability study names a backup.

    Every technology a study meets (the sites' and the backup's) must have its line faults in the catalogue.
    """
    cat, targets = scenario.catalogue, scenario.targets
    technologies = sorted({profile.technology for profile in cat.profiles.values()})
    for name in cat.faults.line:
        if name not in technologies:
            raise reference_error(tree, ("catalogue", "faults", "line", name), "technology", name, technologies)
    for kind, shared in cat.faults.shared.items():
        for i, name in enumerate(shared.technologies):
            if name not in technologies:
                raise reference_error(tree, ("catalogue", "faults", "shared", kind, "technologies", i),
                                       "technology", name, technologies)
    for name, backup in cat.backups.items():
        if backup.profile is not None and backup.profile not in cat.profiles:
            raise reference_error(tree, ("catalogue", "backups", name, "profile"), "profile", backup.profile,
                                   list(cat.profiles))
    for name in (targets.availability.site_classes if targets.availability else {}):
        if name not in cat.site_classes:
            raise reference_error(tree, ("targets", "availability", "site_classes", name), "site class", name,
                                   list(cat.site_classes))
    for i, group in enumerate(scenario.sites):
        if group.backup is not None and group.backup not in cat.backups:
            raise reference_error(tree, ("sites", i, "backup"), "backup profile", group.backup, list(cat.backups))
    if scenario.availability is not None:
        _check_availability_study(scenario, tree)


def _check_availability_study(scenario: Scenario, tree: Located) -> None:
    cat, study = scenario.catalogue, scenario.availability
    if study.backup not in cat.backups:
        raise reference_error(tree, ("availability", "backup"), "backup profile", study.backup, list(cat.backups))
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


def check_outages(scenario: Scenario, tree: Located) -> None:
    """Each outage names a site or site group and a backup, falls in the run, and no two of a site's overlap."""
    if not scenario.outages:
        return
    groups = topology.group_sites(scenario)
    names = list(dict.fromkeys([*groups, *(n for members in groups.values() for n in members)]))
    down: dict[str, list[tuple[float, float, int]]] = {}  # each site's outages so far: (at, repaired, index)
    for i, outage in enumerate(scenario.outages):
        where = ("outages", i)
        if outage.site not in names:
            raise reference_error(tree, (*where, "site"), "site", outage.site, names)
        if outage.backup is not None and outage.backup not in scenario.catalogue.backups:
            raise reference_error(tree, (*where, "backup"), "backup profile", outage.backup,
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
