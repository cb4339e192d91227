"""Every emulated call's per-second measures, as a table: what :mod:`sim.failover` reads per phase.

Each media receiver keeps, per whole second of its call (counted from the call's start plus the least one-way delay
seen, so second ``k`` holds about what was sent in the call's ``k``-th second), the rate received and the mean
one-way delay of what arrived (:class:`sim.emu.media.MediaReceiver`). This turns the agents' results into rows of
:data:`sim.failover.SERIES_COLUMNS` on the trace clock.
"""

from __future__ import annotations

import math

import pandas as pd

from sim.failover import SERIES_COLUMNS
from sim.records import conform


def frame(trace: pd.DataFrame, results: dict[str, dict]) -> pd.DataFrame:
    """One row per call, direction (``up``: site -> far end, measured at the far end) and second of the call."""
    sites = dict(zip(trace["session_id"].tolist(), trace["site"].tolist()))
    starts = dict(zip(trace["session_id"].tolist(), trace["start_s"].tolist()))
    rows = []
    for result in results.values():
        for call in result.get("calls", []):
            received, session = call.get("received"), call["session_id"]
            if not received or session not in sites:
                continue
            direction = "up" if call["role"] == "home" else "down"
            delays = received.get("delay_s_per_s") or []
            for k, rate_bps in enumerate(received.get("rate_bps_per_s") or []):
                delay_s = delays[k] if k < len(delays) and delays[k] is not None else math.nan
                rows.append(("emu", session, sites[session], direction, starts[session] + k, 1.0, rate_bps, delay_s))
    table = pd.DataFrame(rows, columns=list(SERIES_COLUMNS))
    return conform(table.sort_values(["session_id", "direction", "bin_start_s"]).reset_index(drop=True),
                   SERIES_COLUMNS)
