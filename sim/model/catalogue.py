"""The reference catalogue scenarios draw on: access profiles, shared links, apps and site classes.

Pure data (Mininet's ``Topo`` idiom): nothing here knows of SimPy or Mininet. The shipped catalogue lives
in ``topologies/``; each figure there cites its section of the project's domain reference.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from sim.model.quantities import (
    DelayS,
    DistanceM,
    DurationDistribution,
    Fraction,
    Frozen,
    PerDay,
    RateBps,
    SizeBytes,
    SizeDistribution,
)

Medium = Literal["copper", "fibre", "radio", "cable"]
Family = Literal["gp_practice", "acute_hospital", "community_clinic"]
VideoKnob = Literal["gp", "outpatient", "community"]


class DeratingPoint(Frozen):
    """Down/up rate at a copper distance from the cabinet or exchange."""

    distance: DistanceM
    down: RateBps
    up: RateBps | None = None


class AccessProfile(Frozen):
    """One access product: rates per direction, base RTT to the network edge, buffer, loss and jitter.

    ``derating`` (optional, copper) lists rates by line length; a site's ``distance`` interpolates it.
    Where a point has no ``up``, the upstream scales by the same ratio as the downstream (an assumption).
    """

    label: str
    technology: str
    medium: Medium
    down: RateBps
    up: RateBps
    rtt: DelayS
    buffer: SizeBytes
    loss: Fraction = 0.0
    jitter: DelayS = 0.0
    derating: tuple[DeratingPoint, ...] = ()

    @field_validator("derating")
    @classmethod
    def _sorted(cls, points: tuple[DeratingPoint, ...]) -> tuple[DeratingPoint, ...]:
        if any(b.distance <= a.distance for a, b in zip(points, points[1:])):
            raise ValueError("derating points must be in order of increasing distance")
        return points

    def rates_at(self, distance_m: float | None) -> tuple[float, float]:
        """Return (down_bps, up_bps) at a line length in metres (the headline rates if none given)."""
        if distance_m is None or not self.derating:
            return self.down, self.up
        distances = [p.distance for p in self.derating]
        down_bps = float(np.interp(distance_m, distances, [p.down for p in self.derating]))
        ups = [p.up if p.up is not None else self.up * p.down / self.down for p in self.derating]
        return down_bps, float(np.interp(distance_m, distances, ups))


class Aggregation(Frozen):
    """A link shared by several sites, e.g. a GPON tree, with its capacity per direction."""

    label: str
    down: RateBps
    up: RateBps
    buffer: SizeBytes
    sites_per_link: int = Field(ge=1, le=1024)


class Core(Frozen):
    """What lies beyond the access links: the far ends and the delay to them."""

    cloud_rtt: DelayS = Field(description="RTT from a site's network edge to the cloud services (s)")
    home_profile: str = Field(description="access profile of a patient's home, the far end of a video call")


class Video(Frozen):
    """Media of one video consultation, per direction."""

    target: RateBps
    minimum: RateBps
    packet: SizeBytes

    @model_validator(mode="after")
    def _ordered(self) -> Video:
        if self.minimum > self.target:
            raise ValueError("video minimum must not exceed target")
        return self


class Modality(Frozen):
    """An imaging modality: its share of studies, study size and urgent share."""

    share: Fraction
    size: SizeDistribution
    urgent_share: Fraction = 0.0


class Records(Frozen):
    """Sizes of record traffic: GP2GP transfers and in-consultation record fetches."""

    gp2gp_extract: SizeDistribution
    gp2gp_attachments: SizeDistribution
    gp2gp_with_attachments: Fraction
    gp2gp_chunk: SizeBytes
    fetch: SizeDistribution


class Apps(Frozen):
    """Application figures shared by all site classes."""

    video: Video
    records: Records
    modalities: dict[str, Modality]

    @field_validator("modalities")
    @classmethod
    def _shares_sum(cls, modalities: dict[str, Modality]) -> dict[str, Modality]:
        total = sum(m.share for m in modalities.values())
        if modalities and abs(total - 1.0) > 0.005:
            raise ValueError(f"modality shares add up to {total:.1%}, not 100%")
        return modalities


class Consultations(Frozen):
    """Consultations a site holds per working day; a share of them by video, each fetching records."""

    per_day: PerDay
    duration: DurationDistribution
    video_share_from: VideoKnob
    record_fetches: PerDay = 1.0
    profile: str = "clinic"


class Gp2gp(Frozen):
    """GP2GP record transfers per working day, in each direction."""

    send_per_day: PerDay
    receive_per_day: PerDay
    profile: str = "clinic"


class Imaging(Frozen):
    """Imaging studies acquired per day, sent to the archive; a share also pulled back for viewing."""

    per_day: PerDay
    download_share: Fraction = 0.0
    profile: str = "imaging"


class RecordSyncs(Frozen):
    """Periodic record syncs (e.g. community staff's visit notes), per working day."""

    per_day: PerDay
    size: SizeDistribution
    direction: Literal["up", "down"] = "up"
    profile: str = "clinic"


class SiteClass(Frozen):
    """A class of NHS site and the load it generates."""

    family: Family
    label: str
    consultations: Consultations | None = None
    gp2gp: Gp2gp | None = None
    imaging: Imaging | None = None
    record_syncs: RecordSyncs | None = None


class DayProfile(Frozen):
    """Share of a day's sessions starting in each hour, keyed by the hour's start ('08:00')."""

    hours: dict[int, float]

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, data: object) -> object:
        from sim import units
        if not isinstance(data, dict) or "hours" in data:
            return data
        hours = {}
        for key, share in data.items():
            start_s = units.parse_clock(key)
            if start_s % 3600 or start_s >= 86400:
                raise ValueError(f"{key!r}: hours start on the hour, '00:00' to '23:00'")
            hours[int(start_s // 3600)] = units.parse(share, "fraction")
        return {"hours": hours}

    @model_validator(mode="after")
    def _sums_to_one(self) -> DayProfile:
        total = sum(self.hours.values())
        if any(v < 0 for v in self.hours.values()) or abs(total - 1.0) > 0.005:
            raise ValueError(f"hourly shares must be 0 or more and add up to 100% (they add up to {total:.1%})")
        return self


class Catalogue(Frozen):
    """Everything in ``topologies/``: profiles, shared links, core, apps, day profiles, site classes."""

    profiles: dict[str, AccessProfile]
    aggregations: dict[str, Aggregation] = {}
    core: Core
    apps: Apps
    day_profiles: dict[str, DayProfile]
    site_classes: dict[str, SiteClass]
    ladder: tuple[str, ...] = ()  # products the planner may recommend, cheapest first
