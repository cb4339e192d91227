"""Short downloads' completion in the calibration, split: set-up, the first answer's round trip, and the rest.

A median completion that misses (``docs/fidelity.md``) can err in its handshakes or in its data rounds; the split
says which. Both engines record, per transfer, when its request went (``setup_s``: connect and hello, about 0 on a
reused connection or a stream joining an open one) and when its answer's first data came (``first_data_s``), both
from its start (:data:`sim.records.RECORD_COLUMNS`): the emulation as each transfer measured them
(:func:`sim.emu.transfers.run_transfer`), the simulator as its start-up's rounds went (:mod:`sim.des.rounds`). The
split reads them from each engine's records alike.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PARTS = ("setup_s", "first_data_s", "rest_s")  # each a median over the case's judged downloads (s)


def split(records: pd.DataFrame, sessions: pd.Series) -> dict[str, float]:
    """Median set-up, first round trip and rest (s) of the completed downloads among ``sessions`` (ids).

    The first round trip is from the request to the first data, the rest from the first data to the end.
    """
    done = records[records["session_id"].isin(sessions) & records["completed"].astype(bool)
                   & (records["direction"] == "down")]
    if done.empty:
        return dict.fromkeys(PARTS, math.nan)
    setup, first, total = (done[name].to_numpy(dtype=float) for name in ("setup_s", "first_data_s", "duration_s"))
    return _medians(setup, first - setup, total - first)


def _medians(setup_s: np.ndarray, first_s: np.ndarray, rest_s: np.ndarray) -> dict[str, float]:
    """Each part's median over the transfers that have it (s; NaN when none has)."""
    out = {}
    for name, values in zip(PARTS, (setup_s, first_s, rest_s)):
        known = values[~np.isnan(values)]
        out[name] = float(np.median(known)) if len(known) else math.nan
    return out


def rows(case_name: str, emu: dict[str, float], des_: dict[str, float]) -> list[dict]:
    """One row per part: both engines' medians (s) and the difference (simulator minus emulation, s)."""
    return [{"case": case_name, "part": part, "emulation_s": emu[part], "simulator_s": des_[part],
             "difference_s": des_[part] - emu[part]} for part in PARTS]


def table(split_rows: list[dict]) -> str:
    """The split as a Markdown table (ms)."""
    lines = ["| case | part (median) | emulation | simulator | difference |", "|---|---|---|---|---|"]
    for r in split_rows:
        figures = [r["emulation_s"], r["simulator_s"], r["difference_s"]]
        if round(figures[2] * 1e3, 1) == 0:  # a difference under 0.05 ms: no sign
            figures[2] = 0.0
        cells = ["-" if not math.isfinite(v) else f"{v * 1e3:+.1f} ms" if k == 2 else f"{v * 1e3:.1f} ms"
                 for k, v in enumerate(figures)]
        lines.append(f"| {r['case']} | {r['part']} | {' | '.join(cells)} |")
    return "\n".join(lines)
