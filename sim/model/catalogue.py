"""The reference catalogue scenarios draw on: access profiles, shared links, apps and site classes.

Pure data (Mininet's ``Topo`` idiom): nothing here knows of SimPy or Mininet. The shipped catalogue lives
in ``topologies/``; each figure there cites its section of the project's domain reference.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from sim.model.faults import Backup, Faults
from sim.model.quantities import (
    Buffer,
    DelayS,
    DistanceM,
    DurationDistribution,
    Fraction,
    Frozen,
    PerDay,
    Price,
    RateBps,
    SizeBytes,
    SizeDistribution,
)

Medium = Literal["copper", "fibre", "radio", "cable"]
Family = Literal["gp_practice", "acute_hospital", "community_clinic"]
# How a line queues: ``fifo`` (one drop-tail queue for everything) or ``priority`` (real-time traffic marked DSCP
# EF is served first, from its own queue; everything else shares a second one).
QueueDiscipline = Literal["fifo", "priority"]
VideoKnob = Literal["gp", "outpatient", "community"]


class DeratingPoint(Frozen):
    """Down/up rate at a copper distance from the cabinet or exchange."""

    distance: DistanceM
    down: RateBps
    up: RateBps | None = None


def _one_buffer_both_ways(data: object) -> object:
    """A mapping's old single ``buffer`` key (both directions) as ``buffer_up`` and ``buffer_down``."""
    if not isinstance(data, dict) or "buffer" not in data:
        return data
    if "buffer_up" in data or "buffer_down" in data:
        raise ValueError("give 'buffer' (both directions) or 'buffer_up' and 'buffer_down', not both")
    out = {k: v for k, v in data.items() if k != "buffer"}
    return out | {"buffer_up": data["buffer"], "buffer_down": data["buffer"]}


class Buffered(Frozen):
    """A link with a drop-tail queue each way: ``buffer_up`` and ``buffer_down``.

    Each is a time at the line's rate that way (``"200ms"``) or a size (``"150KB"``); the old ``buffer`` gives both
    at once.
    """

    buffer_up: Buffer
    buffer_down: Buffer

    @model_validator(mode="before")
    @classmethod
    def _single_buffer(cls, data: object) -> object:
        return _one_buffer_both_ways(data)

    def buffers_bytes(self, down_bps: float, up_bps: float) -> tuple[float, float]:
        """(down, up) queue sizes in bytes on a line of these rates (bit/s)."""
        return self.buffer_down.bytes_at(down_bps), self.buffer_up.bytes_at(up_bps)


class AccessProfile(Buffered):
    """One access product: rates per direction, base RTT to the network edge, buffers, loss and jitter.

    ``buffer_up`` and ``buffer_down`` are the line's drop-tail queues (:class:`Buffered`): a time is at the site's
    own rate that way (after ``derating``). ``qos`` is how the line queues: ``fifo`` (default: one drop-tail queue)
    or ``priority`` (calls' packets, marked DSCP EF, are served before everything else, each class with its own
    drop-tail queue of the direction's buffer).
    ``derating`` (optional, copper) lists rates by line length; a site's ``distance`` interpolates it.
    Where a point has no ``up``, the upstream scales by the same ratio as the downstream (an assumption).
    ``reach`` (optional, copper) is the longest line the product is sold on: the capacity planner offers it to
    no site further away. ``price`` (optional) is what the planner quotes for it.
    """

    label: str
    technology: str
    medium: Medium
    down: RateBps
    up: RateBps
    rtt: DelayS
    loss: Fraction = 0.0
    jitter: DelayS = 0.0
    qos: QueueDiscipline = "fifo"
    derating: tuple[DeratingPoint, ...] = ()
    reach: DistanceM | None = None
    price: Price | None = None

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


class Aggregation(Buffered):
    """A link shared by several sites, e.g. a GPON tree, with its capacity and buffer per direction."""

    label: str
    down: RateBps
    up: RateBps
    sites_per_link: int = Field(ge=1, le=1024)


class Core(Frozen):
    """What lies beyond the access links: the far ends and the delay to them."""

    cloud_rtt: DelayS = Field(description="RTT from a site's network edge to the cloud services (s)")
    home_profile: str = Field(description="access profile of a patient's home, the far end of a video call")
    home_mix: dict[str, Fraction] = Field(default={}, description="profile -> share of calls: a home line per call")

    @field_validator("home_mix")
    @classmethod
    def _shares_sum(cls, mix: dict[str, float]) -> dict[str, float]:
        check_shares(list(mix.values()), "home line")
        return mix

    def home_lines(self) -> dict[str, float]:
        """Profile -> share of the patients' lines a video call reaches (all ``home_profile`` without a mix)."""
        return dict(self.home_mix) or {self.home_profile: 1.0}


AppKind = Literal["transfer", "stream", "session", "bulk"]
# What each kind of app is to the engines: a TCP transfer of a size, or a two-way stream at a rate for a duration.
TRAFFIC: dict[str, str] = {"transfer": "transfer", "bulk": "transfer", "stream": "stream", "session": "stream"}
# The workload's generators (sim.workload.GENERATORS implements each; a test pins that the two agree).
Generator = Literal["consultations", "gp2gp", "imaging", "transfers", "streams"]
# How a transfer's request travels: on a ``new`` connection (TCP, then TLS 1.3 with the request on its last flight)
# or on a ``reused`` one, kept alive from the app's earlier requests (RFC 9112 9.3 persistent connections), or
# ``multiplexed``: concurrent requests as streams of one kept-alive connection (RFC 9113, HTTP/2).
Connection = Literal["new", "reused", "multiplexed"]


class StreamRate(Frozen):
    """Rates of a two-way stream, per direction: a call adapts between ``minimum`` and ``target``.

    A fixed-rate stream (telephony, an interactive session's steady load) has ``minimum`` equal to ``target``.
    """

    target: RateBps
    minimum: RateBps
    packet: SizeBytes
    up_share: Fraction = Field(default=1.0, gt=0.0, description="the site's upstream rates as a share of these")

    @model_validator(mode="after")
    def _ordered(self) -> StreamRate:
        if self.minimum > self.target:
            raise ValueError("minimum must not exceed target")
        return self


class App(Frozen):
    """One application of the registry: what it is, how it is generated, how it is drawn.

    ``kind`` says what it is to a site's line (``transfer``: a size to move; ``bulk``: a transfer no target
    judges, only load; ``stream``: a call at a rate; ``session``: an interactive session's steady two-way load).
    ``generator`` names the workload function that makes its sessions from the site classes' activities.
    ``on_line`` false means its traffic does not cross a site's access line (e.g. GP2GP between the hosted
    clinical systems' data centres): it is listed, with ``path`` saying where it goes, but not replayed.
    ``far_end`` is where a stream's other end is: a patient's ``home`` line, or a service in the ``cloud``.
    ``media`` (calls only) makes each call get a quality score after the records (:mod:`sim.quality`): speech by
    the E-model, and for ``video`` also G.1070's video quality.
    ``connection`` (transfers only) is how its requests travel: each on a ``new`` connection (the default), or
    ``reused``: on a connection kept alive from the app's earlier requests, which a server closes once it has been
    idle past its keep-alive timeout, so only ``reused_share`` of them (default all) find it open; the rest open a
    new one; or ``multiplexed``: concurrent requests of the app at a site, one way, are streams of one connection
    (HTTP/2), sharing its window; one that finds the connection idle is as ``reused`` (``reused_share`` of them) or
    ``new``. The workload draws each transfer's connection with the run's seed.
    """

    kind: AppKind
    label: str = Field(min_length=1, max_length=60)
    colour: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")
    generator: Generator
    source: str = Field(min_length=1, description="where its figures come from (docs/sources.md)")
    on_line: bool = True
    path: str = "the site's access line"
    urgency: Literal["routine", "urgent"] = "routine"
    far_end: Literal["home", "cloud"] = "cloud"
    media: Literal["audio", "video"] | None = None
    rate: StreamRate | None = None
    size: SizeDistribution | None = None
    connection: Connection = "new"
    reused_share: Fraction | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> App:
        if self.traffic == "stream" and self.rate is None:
            raise ValueError(f"a {self.kind} app needs 'rate' (target, minimum, packet)")
        if self.traffic == "transfer" and self.rate is not None:
            raise ValueError(f"a {self.kind} app has no 'rate' (it moves a size)")
        if self.media is not None and self.kind != "stream":
            raise ValueError("only calls (kind: stream) have 'media' to score")
        if self.traffic == "stream" and (self.connection != "new" or self.reused_share is not None):
            raise ValueError(f"a {self.kind} app has no 'connection' or 'reused_share' (only transfers make "
                             "requests)")
        if self.connection == "new" and self.reused_share is not None:
            raise ValueError("'reused_share' is for 'connection: reused' (a new connection is never reused)")
        return self

    @property
    def traffic(self) -> str:
        """``transfer`` or ``stream``: how the engines replay it."""
        return TRAFFIC[self.kind]

    @property
    def reuse_share(self) -> float:
        """The share (0..1) of its transfers that find a kept-alive connection: 0 on ``new`` connections."""
        if self.connection == "new":
            return 0.0
        return 1.0 if self.reused_share is None else self.reused_share

    @property
    def multiplexed(self) -> bool:
        """Whether its concurrent requests at a site are streams of one connection (HTTP/2)."""
        return self.connection == "multiplexed"


class Modality(Frozen):
    """An imaging modality: its share of studies, study size and urgent share."""

    share: Fraction
    size: SizeDistribution
    urgent_share: Fraction = 0.0


class Gp2gpSizes(Frozen):
    """Sizes of GP2GP record transfers: the structured extract, and attachments on a share of them."""

    extract: SizeDistribution
    attachments: SizeDistribution
    with_attachments: Fraction
    chunk: SizeBytes


def check_shares(shares: list[float], what: str) -> None:
    """Shares of a whole (a mix) must add up to 100%, to half a percentage point.

    Raises:
        ValueError: Naming ``what`` and the total.
    """
    total = sum(shares)
    if shares and abs(total - 1.0) > 0.005:
        raise ValueError(f"{what} shares add up to {total:.1%}, not 100%")


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


class Activity(Frozen):
    """A site's sessions of one app made by a generic generator (``transfers`` or ``streams``), per working day.

    Give ``per_day`` (sessions a site starts a day) or ``per_staff`` (a day per member of staff: the site class's
    ``staff`` times it). A transfer app takes ``size`` (or the app's own) and ``direction``; a stream app takes
    ``duration``. ``aggregate`` (streams only) reads the volume as users connected at once through every hour
    of the day profile with any share (an interactive session per member of staff on duty), and makes one stream
    per such hour at that many times the app's rate: the line carries the same load, and in the flow model every
    one of those users' packets waits in the same queue, so one aggregate stream is exact for what is judged
    (its delay, jitter and loss) at a fraction of the cost.
    """

    per_day: PerDay | None = None
    per_staff: PerDay | None = None
    size: SizeDistribution | None = None
    duration: DurationDistribution | None = None
    direction: Literal["up", "down"] = "up"
    profile: str = "clinic"
    aggregate: bool = False

    @model_validator(mode="after")
    def _one_volume(self) -> Activity:
        if (self.per_day is None) == (self.per_staff is None):
            raise ValueError("give one of 'per_day' or 'per_staff'")
        return self

    def sessions_per_day(self, staff: float | None) -> float:
        """Sessions a site starts a day (``per_staff`` times the site's staff)."""
        if self.per_day is not None:
            return self.per_day
        if staff is None:
            raise ValueError("an activity given per_staff needs the site class's 'staff'")
        return self.per_staff * staff


class SiteClass(Frozen):
    """A class of NHS site and the load it generates.

    ``activities`` maps an app of the registry to its volume at this class of site (apps with a generic
    generator); consultations, GP2GP and imaging drive their own apps' generators.
    """

    family: Family
    label: str
    staff: PerDay | None = None
    consultations: Consultations | None = None
    gp2gp: Gp2gp | None = None
    imaging: Imaging | None = None
    activities: dict[str, Activity] = {}


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
    """Everything in ``topologies/``: profiles, shared links, core, apps, day profiles, site classes, faults."""

    profiles: dict[str, AccessProfile]
    aggregations: dict[str, Aggregation] = {}
    core: Core
    apps: dict[str, App]
    gp2gp: Gp2gpSizes
    modalities: dict[str, Modality]
    day_profiles: dict[str, DayProfile]
    site_classes: dict[str, SiteClass]
    ladder: tuple[str, ...] = ()  # products the planner may recommend, cheapest first
    faults: Faults = Faults()  # faults.yaml: line and shared faults per technology (none without the file)
    backups: dict[str, Backup] = {}  # faults.yaml: what carries a site's traffic while its line is down

    @field_validator("modalities")
    @classmethod
    def _shares_sum(cls, modalities: dict[str, Modality]) -> dict[str, Modality]:
        check_shares([m.share for m in modalities.values()], "modality")
        return modalities

    @field_validator("apps")
    @classmethod
    def _app_names(cls, apps: dict[str, App]) -> dict[str, App]:
        if "link" in apps:
            raise ValueError("'link' names the access links' verdict; choose another app name")
        for generator in ("consultations", "gp2gp"):
            mine = [name for name, app in apps.items() if app.generator == generator]
            if len({apps[n].traffic for n in mine}) < len(mine):
                raise ValueError(f"the {generator} generator makes one app of each traffic; it has {mine}")
        return apps

    def media(self) -> dict[str, str]:
        """App name -> ``audio`` or ``video``, for the calls whose quality is scored."""
        return {name: app.media for name, app in self.apps.items() if app.media}

    def apps_of(self, generator: str) -> dict[str, App]:
        """The apps a generator makes whose traffic crosses a site's line, in registry order."""
        return {name: app for name, app in self.apps.items() if app.generator == generator and app.on_line}
