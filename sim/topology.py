"""Scenario -> topology: the concrete sites, their access links and the shared links, as plain data.

Both engines translate this one description (Mininet's ``Topo`` idiom): the simulator into fluid links,
the emulation into shaped interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sim.model.scenario import Scenario, SiteGroup

SITE_COLUMNS = ("site", "site_class", "family", "access_profile", "technology", "medium", "distance_m",
                "down_bps", "up_bps", "rtt_s", "buffer_down_bytes", "buffer_up_bytes", "loss", "jitter_s",
                "aggregation", "qos", "site_id", "region")


@dataclass(frozen=True)
class SharedLink:
    """A link several sites' traffic crosses (e.g. one GPON tree): rates (bit/s) and buffers (bytes) per direction."""

    name: str
    down_bps: float
    up_bps: float
    buffer_down_bytes: float
    buffer_up_bytes: float


@dataclass(frozen=True)
class FarEnd:
    """The far end of a stream beyond the cloud edge: its access rates (bit/s) and RTT (s) to its own edge.

    ``buffer_down_bytes`` and ``buffer_up_bytes`` are its line's queues (bytes; None where it has none of its own:
    the cloud). Only the emulation shapes a home's line with them; the simulator limits a call by the home's rates.
    """

    down_bps: float
    up_bps: float
    rtt_s: float
    buffer_down_bytes: float | None = None
    buffer_up_bytes: float | None = None


CLOUD = FarEnd(float("inf"), float("inf"), 0.0)  # a service in the cloud: nothing beyond cloud_rtt_s limits it


@dataclass(frozen=True)
class Topology:
    """Every site with its access link, the shared links, and the far ends.

    Attributes:
        sites: One row per site, columns :data:`SITE_COLUMNS` (rates in bit/s, delays in s, buffers in bytes per
            direction: the profile's time at the site's own rate that way, or its size,
            ``aggregation`` the shared link's name or ``""``, ``qos`` how the access link queues: ``"fifo"``
            or ``"priority"`` for calls, see :class:`sim.model.catalogue.AccessProfile`; ``site_id`` and
            ``region`` as the scenario or its inventory gives them, ``""`` where not; ``site`` the site's name, free
            text for an inventory's sites; ``distance_m`` its line length, NaN where not given).
        shared: Shared links by name.
        cloud_rtt_s: RTT from a site's network edge to the cloud services (s).
        home: The patient's home at the far end of video calls.
    """

    sites: pd.DataFrame
    shared: dict[str, SharedLink]
    cloud_rtt_s: float
    home: FarEnd

    def far_end(self, name: str) -> FarEnd:
        """The far end a stream reaches: ``home`` (a patient's line) or ``cloud`` (a service in the cloud)."""
        return self.home if name == "home" else CLOUD


def build(scenario: Scenario) -> Topology:
    """Expand a scenario's site groups into concrete sites and shared links."""
    cat = scenario.catalogue
    rows, shared, placed = [], {}, {}
    for index, group in enumerate(scenario.sites):
        prefix = _prefix(scenario, index, group)
        profile = cat.profiles[group.access]
        down_bps, up_bps = profile.rates_at(group.distance)
        buffer_down_bytes, buffer_up_bytes = profile.buffers_bytes(down_bps, up_bps)
        site_class = cat.site_classes[group.site_class]
        for j in range(group.count):
            name = _site_name(prefix, j, group.count)
            aggregation = _aggregation_name(scenario, group, prefix, j, shared, placed)
            rows.append((name, group.site_class, site_class.family, group.access, profile.technology,
                         profile.medium, group.distance if group.distance is not None else float("nan"),
                         down_bps, up_bps, profile.rtt, buffer_down_bytes, buffer_up_bytes, profile.loss,
                         profile.jitter,
                         aggregation, profile.qos,
                         _site_name(group.site_id, j, group.count) if group.site_id else "", group.region or ""))
    home = cat.profiles[cat.core.home_profile]
    return Topology(pd.DataFrame(_link_members_together(rows), columns=list(SITE_COLUMNS)), shared,
                    cat.core.cloud_rtt, FarEnd(home.down, home.up, home.rtt, *home.buffers_bytes(home.down, home.up)))


def _link_members_together(rows: list[tuple]) -> list[tuple]:
    """The rows in order, except that a shared link's sites follow its first (a shard keeps a link's sites whole).

    Only an inventory's sites, whose regions may interleave, ever move; a group's sites are together already.
    """
    column = SITE_COLUMNS.index("aggregation")
    first: dict[str, int] = {}
    keys = [first.setdefault(row[column], i) if row[column] else i for i, row in enumerate(rows)]
    return [row for _, row in sorted(zip(keys, rows), key=lambda pair: pair[0])]


def site_names(scenario: Scenario) -> list[str]:
    """The names :func:`build` gives the scenario's sites, in the scenario's order."""
    return [name for names in group_sites(scenario).values() for name in names]


def group_sites(scenario: Scenario) -> dict[str, list[str]]:
    """Each site group's name (as :func:`build` names its sites after it) and its sites' names, in order."""
    groups: dict[str, list[str]] = {}
    for index, group in enumerate(scenario.sites):
        prefix = _prefix(scenario, index, group)
        groups.setdefault(prefix, []).extend(_site_name(prefix, j, group.count) for j in range(group.count))
    return groups


def _site_name(prefix: str, j: int, count: int) -> str:
    return f"{prefix}-{j + 1:03d}" if count > 1 else prefix


def _prefix(scenario: Scenario, index: int, group: SiteGroup) -> str:
    if group.name:
        return group.name
    default = f"{group.site_class}-{group.access}"
    clashes = [g for g in scenario.sites if not g.name and f"{g.site_class}-{g.access}" == default]
    return f"{default}-g{index}" if len(clashes) > 1 else default


def _aggregation_name(scenario: Scenario, group: SiteGroup, prefix: str, j: int,
                      shared: dict[str, SharedLink], placed: dict[tuple, int]) -> str:
    """The shared link a site is on: a group's sites fill their own links, ``sites_per_link`` a link.

    Sites with an ``id`` (an inventory's rows, a group of one each) fill the links of their aggregation and region
    together instead, in order: ``gpon-<region>-1`` holds the first ``sites_per_link`` of them.
    """
    if group.aggregation is None:
        return ""
    spec = scenario.catalogue.aggregations[group.aggregation]
    if group.site_id is not None:
        key = (group.aggregation, group.region or "")
        k = placed[key] = placed.get(key, -1) + 1
        name = "-".join(part for part in (group.aggregation, group.region, str(k // spec.sites_per_link + 1))
                        if part)
    else:
        name = f"{group.aggregation}-{prefix}-{j // spec.sites_per_link + 1}"
    shared.setdefault(name, SharedLink(name, spec.down, spec.up, *spec.buffers_bytes(spec.down, spec.up)))
    return name
