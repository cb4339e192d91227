"""A run's line faults (:mod:`sim.linkchanges`) as spells, which a failed session's cause names.

A site's sessions that failed while its line was down or on its backup failed because of the fault, not because
of the line's own rate: the site verdict's cause names the spell (:func:`sim.measures.measures`), e.g. "the
line's fault at 10:05: no line for 90 s, then the backup (29.5 Mbit/s down, 7.6 Mbit/s up), until the repair at
10:40".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.units import format_clock

SPELL_COLUMNS = ["site", "from_s", "to_s", "words"]
REPAIRED = "repaired"  # sim.linkchanges.failover's cause of the row that brings the line back


def spells(changes: pd.DataFrame | None, start_s: float) -> pd.DataFrame:
    """Each fault of a link-changes table, from its first row to the repair, in words.

    Args:
        changes: The run's link changes (:data:`sim.linkchanges.COLUMNS`; ``at_s`` from the window's start), or
            None for none.
        start_s: The window's start (s since midnight), which the records' times count from midnight past.

    Returns:
        Columns :data:`SPELL_COLUMNS`: ``from_s`` and ``to_s`` in s since midnight (``to_s`` infinite for a fault
        not repaired in the run), ``words`` what the site's line was meanwhile.
    """
    if changes is None or len(changes) == 0:
        return pd.DataFrame({name: pd.Series(dtype="object" if name in ("site", "words") else "float64")
                             for name in SPELL_COLUMNS})
    rows = []
    for site, part in changes.sort_values(["site", "at_s"], kind="stable").groupby("site", sort=False):
        steps: list = []
        for step in part.itertuples(index=False):
            if step.cause != REPAIRED:
                steps.append(step)
            elif steps:
                rows.append(_spell(str(site), steps, float(step.at_s), start_s))
                steps = []
        if steps:
            rows.append(_spell(str(site), steps, math.inf, start_s))
    return pd.DataFrame(rows, columns=SPELL_COLUMNS)


def _spell(site: str, steps: list, repaired_s: float, start_s: float) -> tuple:
    """One spell's row: its steps in words, each lasting until the next (the last until the repair)."""
    ends = [float(s.at_s) for s in steps[1:]] + [repaired_s]
    parts = []
    for step, end_s in zip(steps, ends):
        if step.down_bps == 0 and step.up_bps == 0:
            parts.append("no line" + (f" for {_duration(end_s - step.at_s)}" if math.isfinite(end_s) else ""))
        else:
            name = "the backup" if step.cause == "backup" else f"the line ({step.cause})"
            parts.append(f"{name} ({_rate(step.down_bps)} down, {_rate(step.up_bps)} up)")
    until = (f", until the repair at {format_clock(repaired_s + start_s)}" if math.isfinite(repaired_s)
             else ", not repaired in the run")
    words = f"the line's fault at {format_clock(float(steps[0].at_s) + start_s)}: {', then '.join(parts)}{until}"
    return site, float(steps[0].at_s) + start_s, repaired_s + start_s, words


def _duration(seconds: float) -> str:
    """'90 s' below two minutes, else whole minutes: '35 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _rate(rate_bps: float) -> str:
    from sim.measures import rate_words  # sim.measures reads this module's spells
    return rate_words(rate_bps)


def fault_causes(rows: pd.DataFrame, spells_table: pd.DataFrame | None, keys: list[str]) -> dict[tuple, str]:
    """Per group of ``keys`` of failed sessions, the spell at least half of them met (its words), if any.

    Args:
        rows: Failed sessions with ``site``, ``start_s`` and ``end_s`` (s since midnight; NaN end: not finished)
            and the ``keys`` columns.
        spells_table: :func:`spells` of the run (None or empty: no faults).
        keys: The columns a cause is given per (e.g. site, app, criterion).
    """
    if spells_table is None or spells_table.empty or rows.empty or "start_s" not in rows:
        return {}
    sessions = rows[[*dict.fromkeys(["site", *keys]), "start_s", "end_s"]].reset_index(drop=True)
    joined = sessions.reset_index(names="session").merge(spells_table, on="site")
    end_s = joined["end_s"].fillna(np.inf)
    met = joined[(joined["start_s"] < joined["to_s"]) & (end_s > joined["from_s"])].drop_duplicates("session")
    totals = sessions.groupby(keys, sort=False).size()
    found = met.groupby(keys, sort=False).agg(sessions=("session", "size"), words=("words", "first"))
    return {key: row.words for key, row in found.iterrows() if 2 * row.sessions >= totals[key]}
