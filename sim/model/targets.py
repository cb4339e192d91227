"""Service targets: what a session, a site and a site class must achieve to pass.

Defaults live in ``topologies/targets.yaml`` (from the domain reference, section H3); a scenario's
``targets:`` section overrides any of them.
"""

from __future__ import annotations

from pydantic import Field

from sim.model.faults import AvailabilityTargets
from sim.model.quantities import DelayS, DurationS, Fraction, Frozen


class StreamTargets(Frozen):
    """A stream (a call, an interactive session) passes when every one of these holds for its worse direction."""

    delay_p95: DelayS = Field(description="95th percentile of one-way delay over the call (s)")
    jitter: DelayS = Field(description="mean interarrival jitter (s)")
    loss: Fraction = Field(description="share of media packets lost")
    share_at_target: Fraction = Field(description="least share of call time at the recommended bitrate")
    share_below_minimum: Fraction = Field(description="most share of call time below the minimum bitrate")
    mos: float | None = Field(default=None, ge=1.0, le=4.5,
                              description="least call quality (MOS 1-4.5, sim.quality) for a call with media")


class LinkTargets(Frozen):
    """Access links: the busiest hour's mean utilisation must stay at or below this share."""

    busy_hour_utilisation: Fraction


class PassBars(Frozen):
    """How many must pass: sessions of a site (per app), and sites of a class (per app)."""

    sessions: Fraction
    sites: Fraction


class Targets(Frozen):
    """All service targets of a scenario: per app (by its registry name), per access link, and the pass bars.

    An app with no target here (a ``bulk`` app such as updates) is load only: it is replayed, never judged.
    """

    streams: dict[str, StreamTargets] = Field(description="per stream or session app of the registry")
    transfers: dict[str, DurationS] = Field(description="longest completion time (s) per transfer app")
    link: LinkTargets
    passing: PassBars
    availability: AvailabilityTargets | None = None  # judged when a scenario asks for an availability study


def judged_apps(targets: Targets) -> list[str]:
    """The apps that get verdicts: those with a stream or transfer target, streams first."""
    return [*targets.streams, *targets.transfers]
