"""Working time for people: hours lost a year in the unit that reads best, intervals, and the worst years in words.

Shared by the availability study's reasons, the command line and the report (plain functions of numbers).
"""

from __future__ import annotations


def hours_text(hours: float) -> str:
    """Working time for people, in the unit that reads best: '12 h', '3.4 h', '41 min', '3.1 s', '0 s'.

    Hours from an hour up (whole hours from 10), minutes from a minute, seconds below; two significant figures
    below 10 of a unit.
    """
    for unit_h, unit in ((1.0, "h"), (1 / 60, "min"), (1 / 3600, "s")):
        if hours >= unit_h or unit == "s":
            value = hours / unit_h
            return f"{value:.0f} {unit}" if value >= 10 or value == 0 else f"{_two_figures(value)} {unit}"
    raise AssertionError("unreachable")  # the loop's last unit always returns


def _two_figures(value: float) -> str:
    """Two significant figures, trailing zero kept from 1 up ('9.0', '1.5', '0.41', '0.0052')."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def span_text(low_h: float, high_h: float) -> str:
    """An interval of working time: '31-75 min' (one unit), '31 min-1.2 h' (two)."""
    low, high = hours_text(low_h), hours_text(high_h)
    low_value, low_unit = low.split(" ")
    return f"{low_value}-{high}" if high.endswith(f" {low_unit}") else f"{low}-{high}"


def worst_years_text(share_of_years: float, worst_h: float) -> str:
    """The hours lost in the worst ``share_of_years`` of sampled years, in words.

    E.g. '5% of years lose 9.3 h or more'; when fewer than that share of years lose anything at all (the quantile
    is 0): 'fewer than 5% of years lose any working time'.
    """
    if worst_h <= 0:
        return f"fewer than {share_of_years:.0%} of years lose any working time"
    return f"{share_of_years:.0%} of years lose {hours_text(worst_h)} or more"
