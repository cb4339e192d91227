"""Simulator against emulation on the same slice: per app and access profile, each engine's figure and the gap.

The emulation is the ground truth (real TCP and UDP on shaped links); ``difference`` is simulator minus
emulation, and ``relative`` that difference over the emulation's figure. Tolerances, and why, are in
``docs/fidelity.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim import targets as tg
from sim.model.targets import Targets

COLUMNS = ["app", "access_profile", "metric", "sessions_des", "sessions_emu", "des", "emu", "difference", "relative"]
TRANSFER_METRICS = {"median_completion_s": 0.5, "p95_completion_s": 0.95}


def table(des_records: pd.DataFrame, emu_records: pd.DataFrame, targets: Targets,
          media: dict[str, str]) -> pd.DataFrame:
    """One row per app, access profile and metric; units in the metric's name (s, or a share 0..1).

    ``media`` (app -> audio or video) names the calls whose quality score the verdicts use.
    """
    rows = []
    for (app, profile), emu_part in emu_records.groupby(["app", "access_profile"], sort=True):
        des_part = des_records[(des_records["app"] == app) & (des_records["access_profile"] == profile)]
        stream = bool((emu_part["traffic"] == "stream").any())
        for metric, (d, e) in _metrics(stream, des_part, emu_part, targets, media).items():
            rows.append((app, profile, metric, len(des_part), len(emu_part), d, e))
    frame = pd.DataFrame(rows, columns=COLUMNS[:-2])
    frame["difference"] = frame["des"] - frame["emu"]
    frame["relative"] = np.where(frame["emu"].abs() > 0, frame["difference"] / frame["emu"].abs(), np.nan)
    return frame[COLUMNS]


def _metrics(stream: bool, des_part: pd.DataFrame, emu_part: pd.DataFrame, targets: Targets,
             media: dict[str, str]) -> dict:
    if stream:
        return {"stream_compliance": (_compliance(des_part, targets, media), _compliance(emu_part, targets, media)),
                "mean_one_way_delay_s": (_mean(des_part["one_way_delay_s"]), _mean(emu_part["one_way_delay_s"])),
                "mean_rate_bps": (_mean(des_part["mean_rate_bps"]), _mean(emu_part["mean_rate_bps"]))}
    out = {}
    for metric, q in TRANSFER_METRICS.items():
        out[metric] = (_quantile(des_part, q), _quantile(emu_part, q))
    out["completed_share"] = (_mean(des_part["completed"].astype(float)), _mean(emu_part["completed"].astype(float)))
    return out


def _compliance(records: pd.DataFrame, targets: Targets, media: dict[str, str]) -> float:
    """Share of calls meeting every target of their app (the verdicts' own criteria)."""
    if records.empty:
        return float("nan")
    return float(tg.session_verdicts(records, targets, media)["passed"].mean())


def _quantile(records: pd.DataFrame, q: float) -> float:
    done = records.loc[records["completed"], "duration_s"]
    return float(done.quantile(q)) if len(done) else float("nan")


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else float("nan")
