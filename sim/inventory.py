"""A site inventory (CSV or Parquet, one row per site) -> the scenario's site entries, each cell checked.

Columns (names as in :data:`COLUMNS`): ``id`` (e.g. an ODS code), ``name`` (free text: "St Mary's Surgery"),
``class`` (a site class), ``access`` (an access profile), the line length as ``distance`` (with a unit: ``1.2km``)
or ``distance_m`` (metres, a number), and optionally ``aggregation``, ``region`` and ``backup`` (the site's own
backup profile for an availability study, ``faults.yaml: backups``; blank: the scenario's). Each row becomes one site
(a site group of one) named by its ``name``; ids and names are unique. Errors name the file, row and column, and
the nearest known name for an unknown class, profile or aggregation.
"""

from __future__ import annotations

import math
from pathlib import Path

from sim import tables, text, units
from sim.model.quantities import MAX_DISTANCE_M
from sim.tables import Table, did_you_mean

REQUIRED = ("id", "name", "class", "access")
COLUMNS = REQUIRED + ("distance", "distance_m", "aggregation", "region", "backup")
MAX_SITES = 100_000  # as a site group's count: far above any estate (England has about 6,300 GP practices)
MAX_TEXT = {"id": 40, "name": 80, "region": 80}


def read(path: Path, shown: str, catalogue: dict) -> tuple[list[dict], list[int]]:
    """Read and check an inventory against the catalogue's site classes, profiles and aggregations.

    Args:
        path: The inventory file (``.csv`` or ``.parquet``).
        shown: How messages name it (the path as the scenario gives it, from the scenario's folder).
        catalogue: The merged catalogue (plain data): its ``site_classes``, ``profiles``, ``aggregations`` and
            ``backups``.

    Returns:
        One site entry per row, as a scenario's ``sites`` list holds them (``count: 1``; ``distance`` in metres,
        with its unit), and each row's line (CSV) or row number (Parquet).

    Raises:
        ScenarioError: At the file, row and column of the first problem.
    """
    table = tables.read(path, shown)
    table.check_columns(REQUIRED, COLUMNS)
    if "distance" in table.frame.columns and "distance_m" in table.frame.columns:
        raise table.error("give the line length once: 'distance' (with a unit) or 'distance_m' (metres)")
    if len(table.frame) > MAX_SITES:
        raise table.error(f"{len(table.frame):,} sites; one scenario holds at most {MAX_SITES:,}")
    known = {key: list(catalogue.get(key) or {}) for key in ("site_classes", "profiles", "aggregations", "backups")}
    known["reach_m"] = _reaches_m(catalogue.get("profiles") or {})
    entries = [_entry(table, i, row, known) for i, row in enumerate(table.frame.to_dict("records"))]
    for key in ("id", "name"):
        _check_unique(table, [entry[key] for entry in entries], key)
    return entries, table.rows.tolist()


def _entry(table: Table, i: int, row: dict, known: dict[str, list[str]]) -> dict:
    """One row as a site entry (every cell checked)."""
    entry = {"id": _text(table, i, row, "id"), "name": _text(table, i, row, "name"),
             "class": _name(table, i, row, "class", known["site_classes"], "site class"),
             "count": 1, "access": _name(table, i, row, "access", known["profiles"], "profile")}
    aggregation = _blank(row.get("aggregation"))
    if aggregation is not None:
        entry["aggregation"] = _name(table, i, row, "aggregation", known["aggregations"], "aggregation")
    if _blank(row.get("backup")) is not None:
        entry["backup"] = _name(table, i, row, "backup", known["backups"], "backup profile")
    region = _blank(row.get("region"))
    if region is not None:
        entry["region"] = _text(table, i, row, "region")
    distance_m = _distance_m(table, i, row)
    reach_m = known["reach_m"].get(entry["access"])
    if distance_m is not None and reach_m is not None and distance_m > reach_m:
        raise table.error(beyond_reach(entry["access"], reach_m, distance_m), i,
                          "distance" if "distance" in row else "distance_m")
    if distance_m is not None:
        entry["distance"] = f"{distance_m!r}m"
    return entry


def beyond_reach(access: str, reach_m: float, distance_m: float) -> str:
    """The message for a line longer than its product is sold on (m), for inventory rows and site groups alike."""
    return (f"profile {access!r} is not sold on lines beyond {reach_m / 1000:g} km (this one is "
            f"{distance_m / 1000:g} km): choose another access, or see `testbed plan` for what is sold there")


def _reaches_m(profiles: dict) -> dict[str, float]:
    """Profile -> the longest line it is sold on (m), for the profiles that state one (``reach``).

    A reach that does not parse is left to the catalogue's own validation, which names it.
    """
    reaches = {}
    for name, spec in profiles.items():
        if isinstance(spec, dict) and spec.get("reach") is not None:
            try:
                reaches[name] = units.parse(spec["reach"], "distance")
            except (ValueError, TypeError):
                continue
    return reaches


def _blank(value: object) -> object:
    """``None`` for an empty cell (blank text, or a Parquet null), else the value (text stripped)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value.strip() or None
    return value


def _text(table: Table, i: int, row: dict, column: str) -> str:
    value = _blank(row.get(column))
    if value is None:
        raise table.error(f"no {column} given", i, column)
    if not isinstance(value, str):
        value = str(value)
    if text.visible(value) != value:
        # repr writes each hidden character as one escape (\u202e); repr of text.visible's would double its backslash
        raise table.error(f"{value!r} holds a control or invisible character", i, column)
    if len(value) > MAX_TEXT[column]:
        raise table.error(f"{value[:20]!r}... is {len(value)} characters; at most {MAX_TEXT[column]}", i, column)
    return value


def _name(table: Table, i: int, row: dict, column: str, choices: list[str], what: str) -> str:
    value = _blank(row.get(column))
    if value is None:
        raise table.error(f"no {column} given", i, column)
    if str(value) not in choices:
        raise table.error(f"unknown {what} {value!r}" + did_you_mean(str(value), choices, f"known {what}s"),
                          i, column)
    return str(value)


def _distance_m(table: Table, i: int, row: dict) -> float | None:
    """The row's line length in metres, from ``distance`` (a unit string) or ``distance_m`` (a number)."""
    column = "distance" if "distance" in row else "distance_m"
    value = _blank(row.get(column))
    if value is None:
        return None
    try:
        metres = units.parse(value, "distance") if column == "distance" else _number(value)
    except ValueError as exc:
        raise table.error(str(exc), i, column) from None
    if not 0.0 <= metres <= MAX_DISTANCE_M:
        raise table.error(f"{value!r}: a line length from 0 to {MAX_DISTANCE_M / 1000:.0f} km", i, column)
    return metres


def _number(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number of metres")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of metres (e.g. 1200)") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a number of metres (e.g. 1200)")
    return number


def _check_unique(table: Table, values: list[str], column: str) -> None:
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in first:
            raise table.error(f"{value!r} is already the {column} of the site at {table.file}:"
                              f"{table.rows[first[value]]}; each site's {column} is its own", i, column)
        first[value] = i

