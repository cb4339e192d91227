"""The scenario: which sites, on which access, under which load, judged by which targets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sim import text
from sim.model.catalogue import Catalogue, VideoKnob
from sim.model.faults import AvailabilityStudy
from sim.model.quantities import (
    ClockS,
    DistanceM,
    DurationS,
    Fraction,
    Frozen,
    Multiplier,
    SiteCount,
)
from sim.model.targets import Targets


class Window(Frozen):
    """The part of the working day whose sessions are generated and replayed (clock times)."""

    start: ClockS
    end: ClockS

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("window end must be after its start")
        return self


class Load(Frozen):
    """The growth knobs the policy is about (shares are fractions).

    The defaults here apply to a scenario with no ``year``; with one, the loader puts that year's published values
    (``volumes_by_year`` in ``topologies/sites.yaml``) under the scenario's own.
    """

    gp_video_share: Fraction = 0.021
    outpatient_remote_share: Fraction = 0.25
    outpatient_video_of_remote: Fraction = 0.5
    community_video_share: Fraction = 0.05
    volume_scale: Multiplier = 1.0

    def video_share(self, knob: VideoKnob) -> float:
        """Share of a site family's consultations held by video."""
        if knob == "gp":
            return self.gp_video_share
        if knob == "outpatient":
            return self.outpatient_remote_share * self.outpatient_video_of_remote
        return self.community_video_share


class SiteGroup(Frozen):
    """``count`` sites of one class on one access profile (and line length, for copper).

    ``name`` is free text ("St Mary's Surgery"): a group of one site is named by it, a larger group's sites by it
    and a number. ``id`` (e.g. an ODS code) and ``region`` describe the site; an inventory's rows
    (:mod:`sim.inventory`) are groups of one with both, and with their line length even where the profile does
    not derate by distance (it is then only shown). ``backup`` names the group's own backup profile
    (``faults.yaml: backups``) for an availability study; None: the scenario's (``availability.backup``).
    """

    site_class: str = Field(alias="class")
    count: SiteCount
    access: str
    distance: DistanceM | None = None
    name: str | None = Field(default=None, min_length=1, max_length=80)
    site_id: str | None = Field(default=None, alias="id", min_length=1, max_length=40)
    region: str | None = Field(default=None, min_length=1, max_length=80)
    aggregation: str | None = None
    backup: str | None = None

    @field_validator("name", "site_id", "region")
    @classmethod
    def _shown_as_given(cls, value: str | None) -> str | None:
        if value is not None and (value != value.strip() or text.visible(value) != value):
            raise ValueError(f"{value!r}: no leading or trailing spaces, control or invisible "
                             "characters")
        return value


class Emulation(Frozen):
    """What the emulation replays: a few sites over a short window of the day, in real time.

    ``sites`` are site names as the topology expands them (``gp-adsl``, ``gp_medium-adsl2plus-003``); by default
    one site per access profile, copper first, up to ``max_sites``. ``start`` is a clock time; by default the
    busiest ``duration`` of the scenario's window for those sites (most sessions starting in it).
    """

    sites: tuple[str, ...] | None = Field(default=None, min_length=1)
    max_sites: int = Field(default=3, ge=1, le=50)
    start: ClockS | None = None
    duration: DurationS = 300.0
    drain: DurationS = 60.0
    congestion_control: Literal["cubic", "reno", "bbr"] = "cubic"

    @model_validator(mode="after")
    def _short(self) -> Emulation:
        if not 1.0 <= self.duration <= 3600.0:
            raise ValueError("an emulated window runs in real time: give a duration from 1 s to 1 h")
        if self.drain > 3600.0:
            raise ValueError("drain: at most 1 h (the emulation runs in real time)")
        return self


class KnownFailure(Frozen):
    """A failure the scenario expects and accepts: ``check`` reports it but does not fail on it.

    It matches verdicts by any of ``site`` (a site's name), ``class`` and ``access`` (a site class, an access
    profile), and ``target`` (an app with a target, or ``link`` for the busy-hour limit; none: every target).
    With ``availability`` it names an availability verdict instead (:mod:`sim.availability`): the measure it
    excuses (``share``: the share of working hours usable; ``hours``: the hours lost in the worst years; ``all``:
    both), matched by ``class``, ``access``, ``technology`` (e.g. ``FTTC``), ``backup`` and ``target`` (an app).
    """

    site: str | None = Field(default=None, min_length=1)
    site_class: str | None = Field(default=None, alias="class")
    access: str | None = None
    technology: str | None = None
    backup: str | None = None
    availability: str | None = None
    target: str | None = None
    reason: str = Field(min_length=1, max_length=500, description="why it is accepted (shown with it)")

    @model_validator(mode="after")
    def _names_something(self) -> KnownFailure:
        if self.availability is None:
            if self.technology is not None or self.backup is not None:
                raise ValueError("'technology' and 'backup' name an availability verdict: add 'availability: share' "
                                 "(or hours, or all)")
            if self.site is None and self.site_class is None and self.access is None:
                raise ValueError("a known failure names a site, or a class and/or an access profile")
            return self
        if self.site is not None:
            raise ValueError("availability is judged per site class, not per site: name its class, access or "
                             "technology instead of 'site'")
        if self.site_class is None and self.access is None and self.technology is None:
            raise ValueError("an availability known failure names a class, an access profile and/or a technology")
        return self


class Outage(Frozen):
    """A fault on a site's line during the run: down at ``at``, on ``backup`` after its failover time, repaired.

    ``site`` is a site's name or a site group's (each of its sites fails at once); ``backup`` a backup of the
    catalogue's ``faults.yaml`` (``none``: down until repaired; None: the site group's own ``backup``, else the
    availability study's, else none); ``repaired`` a clock time (None: not within the run).
    The loader checks the names and times against the scenario (:mod:`sim.load`); :func:`sim.linkchanges.from_scenario`
    turns the outages into the link-change table both engines replay.
    """

    site: str = Field(min_length=1)
    at: ClockS
    repaired: ClockS | None = None
    backup: str | None = None


class Scenario(Frozen):
    """A validated scenario with its catalogue and targets resolved.

    ``year`` is the year whose published volumes the scenario replays (the catalogue's ``volumes_by_year``, in
    ``topologies/sites.yaml``): it sets the site classes' per-day volumes and the load knobs' defaults, which the
    scenario's own ``load`` overrides. ``None``: the site classes' own figures and the knobs' defaults below.

    ``inventory`` is the site file whose rows the loader put in ``sites`` (after the scenario's own groups), and
    ``trace`` a measured trace replayed instead of a generated one (:mod:`sim.measured`): both as absolute paths.
    """

    # It names the results folder: never ".", "..", or hidden (a leading dot is a partial run's).
    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    year: int | None = Field(default=None, ge=2000, le=2100)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    window: Window
    drain: DurationS = 6 * 3600.0
    utilisation_bin: DurationS = 60.0
    load: Load = Load()
    sites: tuple[SiteGroup, ...] = Field(min_length=1)
    inventory: str | None = None
    trace: str | None = None
    catalogue: Catalogue
    targets: Targets
    emulation: Emulation = Emulation()
    availability: AvailabilityStudy | None = None  # a year of line faults (sim.availability), judged by check
    outages: tuple[Outage, ...] = ()  # line faults replayed mid-window by the engines (sim.linkchanges)
    known_failures: tuple[KnownFailure, ...] = ()
