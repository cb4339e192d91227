"""Service targets: what a session, a site and a site class must achieve to pass.

Defaults live in ``topologies/targets.yaml`` (from the domain reference, section H3); a scenario's
``targets:`` section overrides any of them.
"""

from __future__ import annotations

from pydantic import Field

from sim.model.quantities import DelayS, DurationS, Fraction, Frozen


class VideoTargets(Frozen):
    """A video call passes when every one of these holds for its worse direction."""

    delay_p95: DelayS = Field(description="95th percentile of one-way delay over the call (s)")
    jitter: DelayS = Field(description="mean interarrival jitter (s)")
    loss: Fraction = Field(description="share of media packets lost")
    share_at_target: Fraction = Field(description="least share of call time at the recommended bitrate")
    share_below_minimum: Fraction = Field(description="most share of call time below the minimum bitrate")


class TransferTargets(Frozen):
    """Longest completion time (s) for each kind of transfer."""

    image_routine: DurationS
    image_urgent: DurationS
    gp2gp: DurationS
    record_fetch: DurationS
    record_sync: DurationS

    def limit_s(self, app: str, kind: str, urgency: str) -> float:
        """Return the completion-time limit (s) for a transfer session."""
        return getattr(self, f"image_{urgency}" if app == "image" else kind)


class LinkTargets(Frozen):
    """Access links: the busiest hour's mean utilisation must stay at or below this share."""

    busy_hour_utilisation: Fraction


class PassBars(Frozen):
    """How many must pass: sessions of a site (per app), and sites of a class (per app)."""

    sessions: Fraction
    sites: Fraction


class Targets(Frozen):
    """All service targets of a scenario."""

    video: VideoTargets
    transfers: TransferTargets
    link: LinkTargets
    passing: PassBars
