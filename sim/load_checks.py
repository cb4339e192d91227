"""Checks across a validated scenario: every name it points to exists, and its lines suit their sites.

Part of :mod:`sim.load`: sites, site classes, activities, targets and the emulated window; faults, backups, outages
and known failures are :mod:`sim.load_faults`'s.
"""

from __future__ import annotations

from sim import inventory, load_faults, topology, units
from sim.errors import ScenarioError
from sim.load_errors import reference_error
from sim.model.scenario import Scenario
from sim.source import Located, dotted


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


def check_buffers(scenario: Scenario, tree: Located) -> None:
    """Each line drains its buffers within a minute at its own rates (a size in bytes may not).

    The lines: each site group's (at its line length) and each backup's (at its profile's headline rates, as the
    engines carry a backup line: :func:`sim.linkchanges.backup_line`'s ``rates_at(None)``).

    Raises:
        ScenarioError: At the profile's buffer, naming the group or backup, its rate and how long the buffer takes to
            drain.
    """
    cat = scenario.catalogue
    for group in scenario.sites:
        _check_drain(tree, group.access, group.distance, f"site group {group.name or group.access!r}", cat)
    for name, backup in cat.backups.items():
        if backup.profile is not None:
            _check_drain(tree, backup.profile, None, f"backup {name!r}", cat)


def _check_drain(tree: Located, access: str, distance_m: float | None, who: str, cat) -> None:
    """The profile ``access`` at ``distance_m`` (m; None: its headline rates) drains each buffer within a minute."""
    from sim.model.quantities import MAX_BUFFER_S
    profile = cat.profiles[access]
    down_bps, up_bps = profile.rates_at(distance_m)
    for direction, rate_bps, size_bytes in zip(("down", "up"), (down_bps, up_bps),
                                               profile.buffers_bytes(down_bps, up_bps)):
        if size_bytes * 8 > MAX_BUFFER_S * rate_bps:
            where = ("catalogue", "profiles", access, f"buffer_{direction}")
            file, line = tree.where(where)
            raise ScenarioError(f"{size_bytes * 8 / rate_bps:,.0f} s to drain at the {units.format_rate(rate_bps)} "
                                f"of {who}: a buffer holds at most {MAX_BUFFER_S:g} s of its line", file=file,
                                line=line, path=dotted(where))


def check_references(scenario: Scenario, tree: Located, from_inventory: int = 0) -> None:
    """Check every name that points into the catalogue (profiles, classes, day profiles, ...).

    The last ``from_inventory`` site groups are an inventory's rows: their line lengths are kept (and shown) even
    where the profile does not derate by distance.
    """
    cat = scenario.catalogue
    profiles, classes = list(cat.profiles), list(cat.site_classes)
    first_row = len(scenario.sites) - from_inventory
    for i, group in enumerate(scenario.sites):
        if group.site_class not in cat.site_classes:
            raise reference_error(tree, ("sites", i, "class"), "site class", group.site_class, classes)
        if group.access not in cat.profiles:
            raise reference_error(tree, ("sites", i, "access"), "profile", group.access, profiles)
        if group.aggregation is not None and group.aggregation not in cat.aggregations:
            raise reference_error(tree, ("sites", i, "aggregation"), "aggregation", group.aggregation,
                                   list(cat.aggregations))
        if group.distance is not None and i < first_row:
            _check_distance(cat.profiles[group.access], group, tree, ("sites", i, "distance"))
        elif group.distance is not None:  # an inventory's row: checked as read, but --set access may change it
            _check_reach(cat.profiles[group.access], group, tree, ("sites", i, "access"))
    for i, name in enumerate(cat.ladder):
        if name not in cat.profiles:
            raise reference_error(tree, ("catalogue", "ladder", i), "profile", name, profiles)
    if cat.core.home_profile not in cat.profiles:
        raise reference_error(tree, ("catalogue", "core", "home_profile"), "profile", cat.core.home_profile,
                               profiles)
    for name in cat.core.home_mix:
        if name not in cat.profiles:
            raise reference_error(tree, ("catalogue", "core", "home_mix", name), "profile", name, profiles)
    _check_site_classes(scenario, tree)
    _check_target_apps(scenario, tree)
    _check_unique_names(scenario, tree)
    _check_emulation(scenario, tree)
    load_faults.check_faults(scenario, tree)
    load_faults.check_outages(scenario, tree)


def _check_site_classes(scenario: Scenario, tree: Located) -> None:
    """Day profiles exist; activities name registry apps of a generic generator, with what their kind needs."""
    cat = scenario.catalogue
    for name, site_class in cat.site_classes.items():
        where = ("catalogue", "site_classes", name)
        for section in ("consultations", "gp2gp", "imaging"):
            spec = getattr(site_class, section)
            if spec is not None and spec.profile not in cat.day_profiles:
                raise reference_error(tree, (*where, section, "profile"), "day profile", spec.profile,
                                       list(cat.day_profiles))
        for app_name, activity in site_class.activities.items():
            _check_activity(cat, tree, (*where, "activities", app_name), site_class, app_name, activity)


def _check_activity(cat, tree: Located, where: tuple, site_class, app_name: str, activity) -> None:
    if app_name not in cat.apps:
        raise reference_error(tree, where, "app", app_name, list(cat.apps))
    app = cat.apps[app_name]

    def fail(message: str, key: str | None = None) -> ScenarioError:
        path = (*where, key) if key else where
        file, line = tree.where(path)
        return ScenarioError(message, file=file, line=line, path=dotted(path))

    if app.generator not in ("transfers", "streams"):
        raise fail(f"app {app_name!r} is made by the {app.generator!r} generator, not from activities; "
                   f"set its volume in the site class's {app.generator!r} section")
    if activity.profile not in cat.day_profiles:
        raise reference_error(tree, (*where, "profile"), "day profile", activity.profile, list(cat.day_profiles))
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
                raise reference_error(tree, ("targets", section, name), "app", name, list(apps))
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
                raise reference_error(tree, ("emulation", "sites", i), "site", name, names)


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
