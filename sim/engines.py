"""What both engines return: the record table and link series of :mod:`sim.records`, and what only one engine knows.

The contract: ``run(trace, topology, window, *, seed, work_dir, link_changes=None)`` (the simulator,
:func:`sim.des.run`) returns a :class:`Result`; the emulation (:func:`sim.emu.engine.run`) takes the scenario in the
window's place, because it chooses its own sites and minutes from the scenario's ``emulation`` section, and returns
a :class:`Result` with its own extras (:class:`sim.emu.engine.EmuResult`). Everything after the engines (verdicts,
reports, comparisons) reads ``records`` and ``links`` only, whichever engine wrote them (their ``engine`` column
says which).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Result:
    """One engine's output.

    Attributes:
        records: One row per session (:data:`sim.records.RECORD_COLUMNS`).
        links: Each link's utilisation per bin (:data:`sim.records.LINK_COLUMNS`).
        events: Events the simulator processed; 0 from the emulation, which replays in real time.
        calls: Per call, direction and second: rate received (bit/s) and one-way delay (s)
            (:data:`sim.failover.SERIES_COLUMNS`), or None. The emulation writes every call's; the simulator
            those of adaptive calls at sites whose lines change (:mod:`sim.des.callseries`).
    """

    records: pd.DataFrame
    links: pd.DataFrame
    events: int = 0
    calls: pd.DataFrame | None = None
