"""Short downloads' completion in the calibration, split: set-up, the first answer's round trip, and the rest.

A median completion that misses (``docs/fidelity.md``) can err in its handshakes or in its data rounds; the split
says which. Emulated, each transfer reports its own times (:func:`sim.emu.transfers.run_transfer`): ``setup_s``
(connect and hello; about 0 on a reused connection) and ``first_data_s`` (its first answer bytes), both from its
start. Simulated, the records keep the round-trip time a transfer found at its start (``rtt_s``), not each round's
(:mod:`sim.des.rounds`), so the split is a proxy: its handshakes at that RTT (``HANDSHAKE_RTTS_BY_CONNECTION``),
then one RTT to its first data, then the rest of its completion. A stream of a multiplexed connection may have
joined it open (no handshakes, no slow start), which the records do not say: its set-up and rest are left out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.des.tcp import HANDSHAKE_RTTS_BY_CONNECTION

PARTS = ("setup_s", "first_data_s", "rest_s")  # each a median over the case's judged downloads (s)


def emulated(results: dict[str, dict], sessions: pd.Series) -> dict[str, float]:
    """Median set-up, first round trip and rest (s) of the completed downloads among ``sessions`` (ids)."""
    wanted = set(sessions.tolist())
    rows = [(e["setup_s"], e["first_data_s"], e["duration_s"]) for result in results.values()
            for e in result.get("transfers", ()) if e["session_id"] in wanted and e.get("completed")
            and e["direction"] == "down" and e.get("setup_s") is not None and e.get("first_data_s") is not None]
    if not rows:
        return dict.fromkeys(PARTS, math.nan)
    setup, first, total = (np.array(column, dtype=float) for column in zip(*rows))
    return _medians(setup, first - setup, total - first)


def simulated(records: pd.DataFrame, trace: pd.DataFrame, sessions: pd.Series) -> dict[str, float]:
    """The simulator's proxy of :func:`emulated` from its records (``rtt_s`` found at each start, s)."""
    done = records[records["session_id"].isin(sessions) & records["completed"].astype(bool)
                   & (records["direction"] == "down")]
    if done.empty:
        return dict.fromkeys(PARTS, math.nan)
    connection = done["session_id"].map(trace.set_index("session_id")["connection"])
    rtt_s = done["rtt_s"].to_numpy(dtype=float)
    setup = connection.map(HANDSHAKE_RTTS_BY_CONNECTION).to_numpy(dtype=float) * rtt_s
    setup[connection.str.startswith("multiplexed").to_numpy(dtype=bool)] = np.nan  # joined open, or not: unknown
    return _medians(setup, rtt_s, done["duration_s"].to_numpy(dtype=float) - setup - rtt_s)


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
        cells = ["-" if not math.isfinite(v) else f"{v * 1e3:+.1f} ms" if k == 2 else f"{v * 1e3:.1f} ms"
                 for k, v in enumerate(figures)]
        lines.append(f"| {r['case']} | {r['part']} | {' | '.join(cells)} |")
    return "\n".join(lines)
