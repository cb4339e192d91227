"""The run-wide state groups share: the horizon, the far end, and the per-session outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.records import RECORD_COLUMNS, conform
from sim.topology import Topology

_NAN = float("nan")


@dataclass(frozen=True)
class RunWindow:
    """Time frame of a simulation (s since midnight): series start, horizon, utilisation bin width."""

    start_s: float
    horizon_s: float
    bin_s: float


class Context:
    """Collects each session's outcome by session id, then builds the record table."""

    def __init__(self, trace: pd.DataFrame, topology: Topology, window: RunWindow) -> None:
        self.trace, self.topology = trace, topology
        self.horizon_s = window.horizon_s
        self.cloud_rtt_s = topology.cloud_rtt_s
        self.home = topology.home
        self.outcomes: dict[int, dict] = {}

    def finish_transfer(self, flow, now_s: float) -> None:
        """Record a completed transfer."""
        start_s = self._start(flow.session)
        duration_s = now_s - start_s
        self.outcomes[flow.session] = {
            "end_s": now_s, "completed": True, "duration_s": duration_s,
            "mean_rate_bps": flow.size_bytes * 8 / duration_s if duration_s > 0 else _NAN,
            "queue_delay_s": flow.queue_delay_s, "rtt_s": flow.rtt_s, "bottleneck": flow.bottleneck()}

    def abandon_transfer(self, flow) -> None:
        """Record a transfer still unfinished at the horizon."""
        self.outcomes[flow.session] = {"completed": False, "queue_delay_s": flow.queue_delay_s,
                                       "rtt_s": flow.rtt_s, "bottleneck": flow.bottleneck()}

    def finish_call(self, session: int, halves: list, now_s: float, completed: bool) -> None:
        """Record a video call from its two directions, keeping the worse value of each measure."""
        up, down = (h.summary() for h in halves)
        worse = up if (up["at_target"], -up["below_min"]) <= (down["at_target"], -down["below_min"]) else down
        self.outcomes[session] = {
            "end_s": now_s if completed else _NAN, "completed": completed,
            "size_bytes": worse["bytes"], "mean_rate_bps": min(up["rate"], down["rate"]),
            "share_at_target": worse["at_target"], "share_below_min": worse["below_min"],
            "one_way_delay_s": max(up["delay"], down["delay"]),
            "one_way_delay_p95_s": max(up["delay_p95"], down["delay_p95"]),
            "jitter_s": max(up["jitter"], down["jitter"]), "loss": max(up["loss"], down["loss"]),
            "queue_delay_s": max(up["queue"], down["queue"]),
            "rtt_s": 2 * halves[0].base_delay_s, "bottleneck": self._call_bottleneck(up, down)}

    @staticmethod
    def _call_bottleneck(up: dict, down: dict) -> str:
        worse = up if up["at_target"] <= down["at_target"] else down
        return worse["bottleneck"]

    def _start(self, session: int) -> float:
        return float(self.trace["start_s"].iat[session]) if self._ids_are_positions else \
            float(self.trace.loc[self.trace["session_id"] == session, "start_s"].iat[0])

    @property
    def _ids_are_positions(self) -> bool:
        ids = self.trace["session_id"].to_numpy()
        return bool(len(ids) == 0 or (ids[0] == 0 and ids[-1] == len(ids) - 1))

    def records(self) -> pd.DataFrame:
        """The record table, one row per session of the trace, in session order."""
        trace = self.trace
        out = pd.DataFrame(index=trace.index)
        outcome = pd.DataFrame.from_dict(self.outcomes, orient="index")
        outcome = outcome.reindex(trace["session_id"].to_numpy())
        out["engine"] = "des"
        for column in ("session_id", "site", "app", "kind", "direction", "urgency", "start_s",
                       "target_rate_bps", "min_rate_bps"):
            out[column] = trace[column].to_numpy()
        sites = self.topology.sites.set_index("site")
        for column in ("site_class", "family", "access_profile", "technology", "medium"):
            out[column] = sites.loc[trace["site"], column].to_numpy()
        is_video = (trace["app"] == "video").to_numpy()
        for column in RECORD_COLUMNS:
            if column not in out.columns:
                out[column] = outcome[column].to_numpy() if column in outcome.columns else _NAN
        out["completed"] = outcome["completed"].fillna(False).to_numpy(dtype=bool) if len(outcome) else False
        out["size_bytes"] = np.where(is_video, out["size_bytes"], trace["size_bytes"].to_numpy())
        out["duration_s"] = np.where(is_video, trace["duration_s"].to_numpy(), out["duration_s"])
        out["bottleneck"] = out["bottleneck"].fillna("none") if len(out) else out["bottleneck"]
        return conform(out, RECORD_COLUMNS)
