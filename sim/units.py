"""Parse the unit strings of scenario files into SI floats.

This is the only module that understands unit strings: ``"80Mbps"`` (or ``"80Mbit/s"``) becomes ``80e6`` (bit/s),
``"20ms"`` becomes ``0.02`` (s), ``"250MB"`` becomes ``250e6`` (bytes), ``"1.2km"`` becomes
``1200.0`` (m), ``"25%"`` becomes ``0.25`` (fraction) and ``"08:30"`` becomes ``30600.0``
(seconds since midnight). Decimal prefixes are SI (k = 1e3, M = 1e6, G = 1e9); binary ones
(KiB, MiB, GiB) are 2**10, 2**20, 2**30. Rates are in bits: ``Mbps`` and ``Mbit/s`` are the same unit, and a
rate in bytes (``10MB/s``) is refused with its value in bits, so a factor of 8 never slips in unseen.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_PATTERN = re.compile(_NUMBER + r"\s*(?P<unit>[A-Za-z%/]*)$")

RATE_UNITS = {"bps": 1.0, "kbps": 1e3, "Kbps": 1e3, "Mbps": 1e6, "Gbps": 1e9, "Tbps": 1e12,
              "bit/s": 1.0, "kbit/s": 1e3, "Mbit/s": 1e6, "Gbit/s": 1e9, "Tbit/s": 1e12}
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_UNITS = {"B": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
              "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30}
DISTANCE_UNITS = {"m": 1.0, "km": 1e3}
FRACTION_UNITS = {"%": 0.01, "": 1.0}

_KINDS = {
    "rate": (RATE_UNITS, "80Mbps"),
    "time": (TIME_UNITS, "20ms"),
    "size": (SIZE_UNITS, "250MB"),
    "distance": (DISTANCE_UNITS, "1.2km"),
    "fraction": (FRACTION_UNITS, "25%"),
}


def parse(text: object, kind: str) -> float:
    """Parse a quantity of the given kind into its SI value.

    Args:
        text: The YAML value, e.g. ``"80Mbps"``. A bare number is accepted only for fractions.
        kind: One of ``rate`` (bit/s), ``time`` (s), ``size`` (bytes), ``distance`` (m),
            ``fraction`` (0..1 scale, ``%`` allowed).

    Returns:
        The value in SI units, finite.

    Raises:
        ValueError: If ``text`` is not a quantity of that kind; the message names the value and
            shows an example of the expected form.
    """
    units, example = _KINDS[kind]
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a {kind} (try {example!r})")
    if isinstance(text, (int, float)):
        if kind == "fraction":
            return _finite(float(text), text, kind, example)
        raise ValueError(f"{text!r} has no unit; a {kind} needs one (try '{text}{_unit_of(example)}')")
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a {kind} (try {example!r})")
    match = _PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a {kind} (try {example!r})")
    unit = match.group("unit")
    if unit not in units:
        raise ValueError(_bad_unit(text, match.group("num"), unit, kind, units, example))
    number = float(match.group("num"))
    # A percentage divides by 100 (95 / 100 == 0.95 exactly; 95 * 0.01 is 0.9500000000000001, which a site
    # with exactly 95% of its sessions passing would fall short of).
    value = number / 100.0 if unit == "%" else number * units[unit]
    return _finite(value, text, kind, example)


def parse_share(text: object) -> float:
    """Parse a share given on the command line, ``"95%"`` or ``"0.95"``, into a fraction in (0, 1].

    Raises:
        ValueError: If ``text`` is not a share, or is 0 or above 100% (a bare number above 1, e.g. ``95``, is
            refused, naming the percentage it may mean).
    """
    number = parse(text.strip() if isinstance(text, str) else text, "fraction")
    if not 0 < number <= 1:
        hint = f"; did you mean '{text}%'?" if 1 < number <= 100 and not str(text).strip().endswith("%") else ""
        raise ValueError(f"{text!r} is not a share in (0, 1]: write a fraction such as 0.95 or a percentage such "
                         f"as 95%{hint}")
    return number


def parse_clock(text: object) -> float:
    """Parse a time of day ``"HH:MM"`` (or ``"HH:MM:SS"``) into seconds since midnight.

    Raises:
        ValueError: If ``text`` is not a time of day from 00:00 to 24:00.
    """
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", str(text).strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a time of day (try '08:30'; quote it in YAML)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total_s = hours * 3600.0 + minutes * 60.0 + seconds
    if minutes > 59 or seconds > 59 or total_s > 86400.0:
        raise ValueError(f"{text!r} is not a time of day between '00:00' and '24:00'")
    return total_s


def format_clock(seconds: float, with_seconds: bool = False) -> str:
    """Format seconds since midnight as ``HH:MM`` (or ``HH:MM:SS``), the inverse of :func:`parse_clock`."""
    text = f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"
    return f"{text}:{int(seconds % 60):02d}" if with_seconds else text


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures for a reader, never in exponent form.

    1530 -> '1,530' (whole from ``10 ** digits``, where ``g`` would write '1.53e+03'), 6.853 -> '6.85',
    0.0123 -> '0.0123', 0.0000123 -> '0.0000123'; NaN and infinities as Python writes them.
    """
    if value != value or abs(value) == float("inf"):
        return str(value)
    if abs(value) >= 10 ** digits - 0.5:
        return f"{value:,.0f}"
    text = f"{value:.{digits}g}"
    if "e" in text:  # below 1e-4: as many decimals as the significant figures need
        text = f"{value:.{digits - 1 - math.floor(math.log10(abs(value)))}f}"
    return text


def format_rate(rate_bps: float) -> str:
    """Format a rate in bit/s the way scenario files write it, e.g. ``1.5Mbps``."""
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if abs(rate_bps) >= scale:
            return f"{rate_bps / scale:.4g}{unit}"
    return f"{rate_bps:.4g}bps"


def format_size(size_bytes: float) -> str:
    """Format a size in bytes the way scenario files write it, e.g. ``500KB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(size_bytes) >= scale:
            return f"{size_bytes / scale:.4g}{unit}"
    return f"{size_bytes:.4g}B"


def _finite(value: float, text: object, kind: str, example: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite {kind} (try {example!r})")
    return value


def _unit_of(example: str) -> str:
    return re.sub(r"^[\d.]+", "", example)


def _bits(number: str, unit: str) -> str:
    """A byte rate's value in bits, e.g. ``("10", "MB/s")`` -> ``"80Mbit/s"``."""
    size = unit.removesuffix("/s").removesuffix("ps")
    bits = float(number) * SIZE_UNITS[size] * 8.0
    for name, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(bits) >= scale:
            return f"{bits / scale:.6g}{name}"
    return f"{bits:.6g}bit/s"


def _bad_unit(text: str, number: str, unit: str, kind: str, units: dict, example: str) -> str:
    known = ", ".join(u for u in units if u)
    for other_kind, (other_units, _) in _KINDS.items():
        if other_kind != kind and unit in other_units and unit:
            return f"{text!r} is a {other_kind}, not a {kind} (units: {known}; try {example!r})"
    if kind == "rate" and unit.removesuffix("/s").removesuffix("ps") in SIZE_UNITS:
        return f"{text!r} is bytes a second; a rate is in bits (try '{_bits(number, unit)}')"
    for fixed in (unit.replace("/s", ""), unit + "/s", unit.replace("b/s", "bit/s")):
        if fixed in units and fixed:
            return f"{text!r} is not a {kind} (try '{number}{fixed}')"
    return f"{text!r} is not a {kind}: unknown unit {unit!r} (units: {known}; try {example!r})"
