"""Validated quantity types and distributions for the scenario model.

Every numeric field holds an SI float (bit/s, s, bytes, m, fraction); YAML writes it as a unit string.
Bounds keep a typo from turning into a simulation that never ends.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from sim import units

# Upper bounds: far above any real NHS figure, low enough that a typo is caught.
MAX_RATE_BPS = 1e12
MAX_TIME_S = 7 * 86400.0
MAX_SIZE_BYTES = 1e13
MAX_DISTANCE_M = 1e5
_Z75 = 0.6744897501960817  # the standard normal's 75th percentile


class Frozen(BaseModel):
    """Base of every model class: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _quantity(kind: str, *, lower: float, upper: float, allow_zero: bool = False):
    def check(value: object) -> float:
        number = units.parse(value, kind)
        if number < lower or (number == lower and not allow_zero):
            bound = "0 or more" if allow_zero else "more than 0"
            raise ValueError(f"{value!r} must be {bound}")
        if number > upper:
            raise ValueError(f"{value!r} is more than the largest allowed {kind}")
        return number
    return BeforeValidator(check)


def _clock(value: object) -> float:
    return units.parse_clock(value)


def _fraction_checker(value: object) -> float:
    number = units.parse(value, "fraction")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a share between 0% and 100%")
    return number


RateBps = Annotated[float, _quantity("rate", lower=0.0, upper=MAX_RATE_BPS)]
DurationS = Annotated[float, _quantity("time", lower=0.0, upper=MAX_TIME_S)]
DelayS = Annotated[float, _quantity("time", lower=0.0, upper=60.0, allow_zero=True)]
SizeBytes = Annotated[float, _quantity("size", lower=0.0, upper=MAX_SIZE_BYTES)]
DistanceM = Annotated[float, _quantity("distance", lower=0.0, upper=MAX_DISTANCE_M, allow_zero=True)]
Fraction = Annotated[float, BeforeValidator(_fraction_checker)]
ClockS = Annotated[float, BeforeValidator(_clock)]


def _positive_number(upper: float):
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number")
        if value < 0:
            raise ValueError(f"{value!r} must be 0 or more")
        if value > upper:
            raise ValueError(f"{value!r} is more than the largest allowed ({upper:g})")
        return float(value)
    return BeforeValidator(check)


def _count(upper: int):
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not a whole number")
        if not 1 <= value <= upper:
            raise ValueError(f"{value!r} is not between 1 and {upper}")
        return value
    return BeforeValidator(check)


PerDay = Annotated[float, _positive_number(1e6)]
Multiplier = Annotated[float, _positive_number(1e3)]
SiteCount = Annotated[int, _count(100_000)]


class Distribution(Frozen):
    """A positive random quantity: ``fixed``, ``exponential`` or ``lognormal``.

    A lognormal is given by ``median`` and ``p75`` (its 75th percentile), ``median`` and ``cv``,
    or ``mean`` and ``cv`` (coefficient of variation). ``max`` clips samples. A bare value such as
    ``15MB`` means a fixed quantity. Values are in the SI unit of the subclass's kind.
    """

    kind: ClassVar[str] = "size"
    dist: Literal["fixed", "exponential", "lognormal"] = "lognormal"
    value: float | None = None
    mean: float | None = None
    median: float | None = None
    p75: float | None = None
    cv: float | None = None
    max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand_and_units(cls, data: object) -> object:
        if isinstance(data, (str, int, float)) and not isinstance(data, bool):
            data = {"dist": "fixed", "value": data}
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key in ("value", "mean", "median", "p75", "max"):
            if out.get(key) is not None:
                try:
                    out[key] = units.parse(out[key], cls.kind)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
                if not 0 < out[key] <= cls._upper():
                    raise ValueError(f"{key}: {data[key]!r} must be more than 0 and at most {cls._upper():g}")
        if out.get("cv") is not None:
            try:
                out["cv"] = units.parse(out["cv"], "fraction")
            except ValueError as exc:
                raise ValueError(f"cv: {exc}") from None
            if not 0 < out["cv"] <= 10:
                raise ValueError(f"cv: {data['cv']!r} must be more than 0 and at most 10")
        return out

    @classmethod
    def _upper(cls) -> float:
        return MAX_SIZE_BYTES if cls.kind == "size" else MAX_TIME_S

    @model_validator(mode="after")
    def _complete(self) -> Distribution:
        needs = {"fixed": "value", "exponential": "mean"}
        if self.dist in needs and getattr(self, needs[self.dist]) is None:
            raise ValueError(f"a {self.dist} distribution needs '{needs[self.dist]}'")
        if self.dist == "lognormal":
            if not ((self.median and self.p75) or (self.median and self.cv) or (self.mean and self.cv)):
                raise ValueError("a lognormal needs 'median' and 'p75', 'median' and 'cv', or 'mean' and 'cv'")
            if self.median and self.p75 and self.p75 <= self.median:
                raise ValueError("p75 must be larger than median")
        typical = self.value if self.dist == "fixed" else self.median or self.mean
        if self.max is not None and typical is not None and typical > self.max:
            raise ValueError(f"max ({self.max:g}) is below the distribution's {self.dist} centre ({typical:g}): "
                             "it cannot hold")
        return self

    def lognormal_params(self) -> tuple[float, float]:
        """Return (mu, sigma) of the underlying normal, for a lognormal."""
        if self.median and self.p75:
            return math.log(self.median), math.log(self.p75 / self.median) / _Z75
        sigma = math.sqrt(math.log1p(self.cv**2))
        if self.median:
            return math.log(self.median), sigma
        return math.log(self.mean) - sigma**2 / 2, sigma

    def expected(self) -> float:
        """The analytic mean, ignoring ``max`` clipping (SI units of the kind)."""
        if self.dist == "fixed":
            return self.value
        if self.dist == "exponential":
            return self.mean
        mu, sigma = self.lognormal_params()
        return math.exp(mu + sigma**2 / 2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values (SI units) with the run's generator."""
        if self.dist == "fixed":
            values = np.full(n, self.value)
        elif self.dist == "exponential":
            values = rng.exponential(self.mean, n)
        else:
            values = rng.lognormal(*self.lognormal_params(), n)
        return np.minimum(values, self.max) if self.max else values


class SizeDistribution(Distribution):
    """A distribution of sizes in bytes."""

    kind: ClassVar[str] = "size"


class DurationDistribution(Distribution):
    """A distribution of durations in seconds."""

    kind: ClassVar[str] = "time"


class Price(Frozen):
    """A product's rental (GBP a month, excluding VAT and installation) and where the figure comes from."""

    gbp_per_month: float = Field(ge=0.0, le=1e6)
    source: str = Field(min_length=1, description="a docs/sources.md section (e.g. S1) or 'assumption'")


MAX_BUFFER_S = 60.0  # a queue longer than a minute at its line's rate is a typo


class Buffer(Frozen):
    """A drop-tail queue's size: a time at the line's rate in its direction (``"200ms"``) or bytes (``"150KB"``).

    A time is how long the full queue takes to drain at the line's rate: ``seconds * rate_bps / 8`` bytes, so one
    figure suits every tier of a technology. A size in bytes is the same whatever the line's rate.
    """

    seconds: float | None = None
    size_bytes: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: object) -> object:
        return data if isinstance(data, dict) else parse_buffer(data)

    @model_validator(mode="after")
    def _one_kind(self) -> Buffer:
        if (self.seconds is None) == (self.size_bytes is None):
            raise ValueError("give a time at the line's rate ('200ms') or a size ('150KB')")
        value, upper = (self.seconds, MAX_BUFFER_S) if self.seconds is not None else (self.size_bytes, MAX_SIZE_BYTES)
        if not 0 < value <= upper:
            raise ValueError(f"a buffer must be more than 0 and at most {upper:g} ({value!r} given)")
        return self

    def bytes_at(self, rate_bps: float) -> float:
        """The queue in bytes on a line of ``rate_bps`` (bit/s): the time's worth of the rate, or the fixed size."""
        return self.size_bytes if self.size_bytes is not None else self.seconds * rate_bps / 8

    def __str__(self) -> str:
        """As a catalogue writes it: ``"250ms"``, ``"1s"``, ``"150kB"``."""
        if self.seconds is not None:
            return f"{self.seconds:g}s" if self.seconds >= 1 else f"{self.seconds * 1e3:.4g}ms"
        return f"{self.size_bytes / 1e3:.4g}kB"


def parse_buffer(text: object) -> dict[str, float]:
    """``"200ms"`` -> ``{"seconds": 0.2}``; ``"150KB"`` -> ``{"size_bytes": 150000.0}``.

    Raises:
        ValueError: For no unit, a unit neither of time nor of size, or a value of 0 or less.
    """
    example = "a time at the line's rate ('200ms') or a size ('150KB')"
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"{text!r} is not a buffer: give {example}")
    if not isinstance(text, str) or re.fullmatch(r"\s*[+-]?[\d.]+(?:[eE][+-]?\d+)?\s*", text):
        raise ValueError(f"{text!r} has no unit: give {example}")
    for kind, key in (("time", "seconds"), ("size", "size_bytes")):
        try:
            value = units.parse(text, kind)
        except ValueError:
            continue
        if value <= 0:
            raise ValueError(f"{text!r} must be more than 0")
        return {key: value}
    raise ValueError(f"{text!r} is not a buffer: give {example} (time units: "
                     f"{', '.join(units.TIME_UNITS)}; sizes: {', '.join(units.SIZE_UNITS)})")
