"""Line faults, shared faults and backup profiles: what takes a site's line down, for how long, and what then.

Pure data, as the rest of the catalogue (``topologies/faults.yaml``); :mod:`sim.availability` samples years of
faults from it. Every figure there cites docs/sources.md (S15) or is labelled an assumption with a range.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from sim.model.quantities import ClockS, DurationDistribution, DurationS, Fraction, Frozen, Price

MAX_FAULTS_PER_YEAR = 365.0  # a fault a day on one line: far above any real figure, low enough to catch a typo


def _rate_per_year(value: object) -> float:
    """A fault rate: faults per line (or per shared unit) per year, a number 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number of faults a year")
    if not value >= 0:  # also NaN
        raise ValueError(f"{value!r} must be 0 or more (faults a year)")
    if value > MAX_FAULTS_PER_YEAR:
        raise ValueError(f"{value!r} faults a year is more than the largest allowed ({MAX_FAULTS_PER_YEAR:g})")
    return float(value)


PerYear = Annotated[float, BeforeValidator(_rate_per_year)]


class Repair(DurationDistribution):
    """Time to repair a fault, from its start to service restored (elapsed clock time, s).

    A duration distribution (``fixed``, ``exponential`` or ``lognormal``: see
    :class:`sim.model.quantities.Distribution`); zero or negative times are refused there.
    """


class LineFault(Frozen):
    """Faults of one line of a technology: ``rate_per_year`` faults a line a year, each lasting ``repair``."""

    rate_per_year: PerYear
    repair: Repair


class SharedFault(LineFault):
    """A fault of equipment several lines share: a street cabinet, a local exchange, a GPON tree.

    It takes down every line of ``technologies`` that goes through the failed unit. ``per: site`` gives each site
    its own unit (its cabinet, its exchange: the scenario does not say which sites share one); ``per:
    aggregation`` makes the sites the topology puts on one shared link (``aggregation:`` of a site group, e.g. a
    GPON tree) share one unit, and a site on no shared link its own.
    """

    technologies: tuple[str, ...] = Field(min_length=1)
    per: Literal["site", "aggregation"] = "site"


class WorkingHours(Frozen):
    """The hours availability is judged over: ``start`` to ``end`` on the first ``days_per_week`` days of a week."""

    start: ClockS
    end: ClockS
    days_per_week: int = Field(default=5, ge=1, le=7)

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if not 0 <= self.start < self.end <= 86400:
            raise ValueError("working hours: end must be after start, within one day")
        return self

    def hours_per_week(self) -> float:
        """Working hours in a week (h)."""
        return self.days_per_week * (self.end - self.start) / 3600


class Faults(Frozen):
    """Faults of access lines and of shared equipment, and the working hours availability is judged over.

    ``line`` is keyed by technology (``access.yaml`` profiles' ``technology``); ``shared`` by the unit's kind.
    """

    working_hours: WorkingHours = WorkingHours(start="08:00", end="18:30")
    line: dict[str, LineFault] = {}
    shared: dict[str, SharedFault] = {}


class Backup(Frozen):
    """What carries a site's traffic while its line is down.

    ``profile`` names the access profile of the backup link (a 4G/5G router's or a second line's rates and delay);
    none (``kind: none``) means no backup. ``failover`` is the outage at each switch to the backup; ``carries``
    says which traffic goes on it: ``all`` (one queue, as the primary line) or ``realtime_first`` (calls, marked
    EF, served before everything else: the backup link queues with ``qos: priority``). ``diverse`` false means a
    second line through the same cabinet, exchange and tree as the primary: it shares their faults. ``price`` is
    what the backup costs a month (a router's SIM and data plan with the router spread over its life; a second
    line's rental); a second line without one costs its profile's rental (``access.yaml``).
    """

    label: str = Field(min_length=1, max_length=60)
    kind: Literal["none", "mobile", "line"]
    profile: str | None = None
    failover: DurationS | None = None
    carries: Literal["all", "realtime_first"] = "all"
    diverse: bool = True
    price: Price | None = None

    @model_validator(mode="after")
    def _complete(self) -> Backup:
        if self.kind == "none" and (self.profile is not None or self.failover is not None):
            raise ValueError("a backup of kind 'none' has no 'profile' or 'failover'")
        if self.kind != "none" and (self.profile is None or self.failover is None):
            raise ValueError(f"a {self.kind} backup needs 'profile' (an access profile) and 'failover' (a time)")
        return self


class AvailabilityStudy(Frozen):
    """A scenario's request to judge availability: ``years`` sampled years of faults, with ``backup`` at every site."""

    years: int = Field(default=200, ge=2, le=100_000)
    backup: str = "none"


class AvailabilityTarget(Frozen):
    """What a site class must achieve through the year's line faults, for each judged app.

    ``share``: least mean share of working hours the app is usable. ``hours`` and ``years``: in at least
    ``years`` (a share) of sampled years, a site loses at most ``hours`` of working time without the app.
    """

    share: Fraction
    hours: DurationS
    years: Fraction


class AvailabilityTargets(Frozen):
    """The default availability target, and any site class's own (by site-class name)."""

    default: AvailabilityTarget
    site_classes: dict[str, AvailabilityTarget] = {}

    @model_validator(mode="before")
    @classmethod
    def _classes_take_the_default_for_what_they_omit(cls, data: object) -> object:
        """A site class's target may give some keys (``{hours: 4h}``): the others are the default's."""
        if not isinstance(data, dict) or not isinstance(data.get("default"), dict) \
                or not isinstance(data.get("site_classes"), dict):
            return data
        own = {name: {**data["default"], **given} if isinstance(given, dict) else given
               for name, given in data["site_classes"].items()}
        return {**data, "site_classes": own}

    def of(self, site_class: str) -> AvailabilityTarget:
        """The target a site class is judged by."""
        return self.site_classes.get(site_class, self.default)
