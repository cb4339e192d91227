"""``testbed list``: the access profiles, the app registry, site classes and shipped scenarios (part of :mod:`sim.cli`).

Each table goes out as the other commands' do (:func:`sim.cli_show.show_table`): Rich on a terminal (full width, cells
folded, never cut), plain text elsewhere (a pipe, a log), never cut.
"""

from __future__ import annotations

from sim import load
from sim.cli_show import show_table
from sim.load_catalogue import DEFAULT_CATALOGUE
from sim.text_tables import Table

SCENARIOS_DIR = DEFAULT_CATALOGUE.parent / "scenarios"


def list_profiles() -> None:
    """The catalogue's access profiles: technology, rates, RTT and buffers."""
    from sim.units import format_rate
    profiles = load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue.profiles  # noqa: SLF001
    rows = [[name, p.technology, p.medium, format_rate(p.down), format_rate(p.up), f"{p.rtt * 1e3:g} ms",
             str(p.buffer_up), str(p.buffer_down)] for name, p in profiles.items()]
    show_table(Table("Access profiles (a buffer in time is at the line's rate that way)",
                     ["profile", "technology", "medium", "down", "up", "RTT", "buffer up", "buffer down"], rows), None)


def list_apps() -> None:
    """The app registry: each app's kind, rate or size, target and source; those that do not cross a line."""
    scenario = load._validate_catalogue_only(DEFAULT_CATALOGUE)  # noqa: SLF001
    from sim.units import format_rate, format_size
    rows = []
    targets = scenario.targets
    aggregated = {name for c in scenario.catalogue.site_classes.values() for name, activity in c.activities.items()
                  if activity.aggregate}  # one stream of a site's users at once: the app's rates are per user
    for name, a in scenario.catalogue.apps.items():
        if a.rate is not None:
            figure = f"{format_rate(a.rate.target)}" + (f" (min {format_rate(a.rate.minimum)})"
                                                        if a.rate.minimum < a.rate.target else "")
            figure += " per user" if name in aggregated else ""
        else:
            centre = a.size.median or a.size.value or a.size.mean if a.size else None
            figure = f"median {format_size(centre)}" if centre else f"by {a.generator}"
        if name in targets.streams:
            target = f"delay p95 {targets.streams[name].delay_p95 * 1e3:g} ms"
        elif name in targets.transfers:
            target = f"within {targets.transfers[name]:g} s"
        else:
            target = "load only"
        rows.append([name, a.kind, "yes" if a.on_line else "no", figure, _connection_words(a), target, a.source])
    notes = [f"{name} does not cross a site's line: {a.path}"
             for name, a in scenario.catalogue.apps.items() if not a.on_line]
    show_table(Table("Apps (the registry)", ["app", "kind", "on line", "rate or size", "connection", "target",
                                             "source"], rows, notes), None)


def _connection_words(app) -> str:
    """How a transfer app's requests travel: ``new``, or ``reused`` with the share that finds a connection open."""
    if app.traffic != "transfer":
        return "-"
    if app.connection == "reused":
        share = 1.0 if app.reused_share is None else app.reused_share
        return f"reused {share:.0%}"
    if app.connection == "multiplexed":
        return f"multiplexed (idle: reused {app.reuse_share:.0%})"
    return app.connection


def list_classes() -> None:
    """The catalogue's site classes and their consultations a day."""
    classes = load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue.site_classes  # noqa: SLF001
    rows = [[name, c.family, c.label, f"{c.consultations.per_day:g}" if c.consultations else "-"]
            for name, c in classes.items()]
    show_table(Table("Site classes", ["site class", "family", "label", "consultations/day"], rows), None)


def list_scenarios() -> None:
    """The shipped scenarios (``scenarios/``): their sites and descriptions."""
    rows = []
    for path in sorted(SCENARIOS_DIR.glob("*.yaml")):
        scenario = load.load(path)
        rows.append([str(path.relative_to(SCENARIOS_DIR.parent)), str(sum(g.count for g in scenario.sites)),
                     scenario.description])
    show_table(Table("Shipped scenarios", ["scenario file", "sites", "description"], rows), None)
