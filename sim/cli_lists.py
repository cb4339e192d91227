"""``testbed list``: the access profiles, the app registry, site classes and shipped scenarios (part of :mod:`sim.cli`).
"""

from __future__ import annotations

from rich.table import Column, Table

from sim import load
from sim.cli_exits import out
from sim.load_catalogue import DEFAULT_CATALOGUE

SCENARIOS_DIR = DEFAULT_CATALOGUE.parent / "scenarios"


def list_profiles() -> None:
    """The catalogue's access profiles: technology, rates, RTT and buffers."""
    table = Table(Column("profile", no_wrap=True), "technology", "medium", "down", "up", "RTT", "buffer up",
                  "buffer down", title="Access profiles (a buffer in time is at the line's rate that way)")
    from sim.units import format_rate
    for name, p in load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue.profiles.items():  # noqa: SLF001
        table.add_row(name, p.technology, p.medium, format_rate(p.down), format_rate(p.up), f"{p.rtt * 1e3:g} ms",
                      str(p.buffer_up), str(p.buffer_down))
    out.print(table)


def list_apps() -> None:
    """The app registry: each app's kind, rate or size, target and source; those that do not cross a line."""
    scenario = load._validate_catalogue_only(DEFAULT_CATALOGUE)  # noqa: SLF001
    from sim.units import format_rate, format_size
    table = Table("app", "kind", "on line", "rate or size", "connection", "target", "source",
                  title="Apps (the registry)")
    targets = scenario.targets
    for name, a in scenario.catalogue.apps.items():
        if a.rate is not None:
            figure = f"{format_rate(a.rate.target)}" + (f" (min {format_rate(a.rate.minimum)})"
                                                        if a.rate.minimum < a.rate.target else "")
        else:
            centre = a.size.median or a.size.value or a.size.mean if a.size else None
            figure = f"median {format_size(centre)}" if centre else f"by {a.generator}"
        if name in targets.streams:
            target = f"delay p95 {targets.streams[name].delay_p95 * 1e3:g} ms"
        elif name in targets.transfers:
            target = f"within {targets.transfers[name]:g} s"
        else:
            target = "load only"
        table.add_row(name, a.kind, "yes" if a.on_line else "no", figure, _connection_words(a), target, a.source)
    out.print(table)
    for name, a in scenario.catalogue.apps.items():
        if not a.on_line:
            out.print(f"{name} does not cross a site's line: {a.path}")


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
    table = Table("site class", "family", "label", "consultations/day", title="Site classes")
    for name, c in load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue.site_classes.items():  # noqa: SLF001
        table.add_row(name, c.family, c.label, f"{c.consultations.per_day:g}" if c.consultations else "-")
    out.print(table)


def list_scenarios() -> None:
    """The shipped scenarios (``scenarios/``): their sites and descriptions."""
    table = Table("scenario file", "sites", "description", title="Shipped scenarios")
    for path in sorted(SCENARIOS_DIR.glob("*.yaml")):
        scenario = load.load(path)
        table.add_row(str(path.relative_to(SCENARIOS_DIR.parent)), str(sum(g.count for g in scenario.sites)),
                      scenario.description)
    out.print(table)
