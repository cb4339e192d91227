"""The run-wide state groups share: the horizon, the far end, and the per-session outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mypy_extensions import mypyc_attr

from sim.des import calls, reserved, tails, tcp
from sim.des.flows import Media, Transfer
from sim.records import RECORD_COLUMNS, conform
from sim.topology import Topology

_NAN = float("nan")
ENGINE = "des"  # the records' engine column


@mypyc_attr(native_class=False)  # (pickled to Dask's workers as a plain class)
@dataclass(frozen=True)
class RunWindow:
    """Time frame of a simulation (s since midnight): series start, horizon, utilisation bin width."""

    start_s: float
    horizon_s: float
    bin_s: float


class Context:
    """Collects each session's outcome, by its position in the trace, then builds the record table.

    ``seed`` draws each transfer's chance of a loss that waits for a timer (:mod:`sim.des.tails`).
    """

    def __init__(self, trace: pd.DataFrame, topology: Topology, window: RunWindow, seed: int | None = None) -> None:
        self.trace, self.topology = trace, topology
        self.horizon_s = window.horizon_s
        self.cloud_rtt_s = topology.cloud_rtt_s
        self.home = topology.home
        ids = trace["session_id"].tolist()
        self.row = dict(zip(ids, range(len(ids))))
        self.start_s = trace["start_s"].tolist()
        self.tail_u = tails.uniforms(seed, tails.session_keys(trace["site"])).tolist()
        # lists, set an item at a time while running (quicker than an array's items), then arrays
        # (:meth:`_as_arrays`), set a column at a time after (the calls)
        self.columns: dict = {name: [_NAN] * len(ids) for name in _OUTCOME_FLOATS}
        self.completed: list | np.ndarray = [False] * len(ids)
        self.bottleneck: list | np.ndarray = ["none"] * len(ids)
        self.finished_calls: list[tuple] = []  # calls replayed as flows, recorded after the run
        self.histories = calls.Histories(self.horizon_s)  # their paths' histories, built after the run

    def _put(self, session: int, completed: bool, bottleneck: str, **values: float) -> None:
        row = self.row[session]
        self.completed[row] = completed
        self.bottleneck[row] = bottleneck
        for name, value in values.items():
            self.columns[name][row] = value

    def finish_transfer(self, flow: Transfer, now_s: float) -> None:
        """Record a transfer whose last byte is sent at ``now_s`` (s), completed once any timer it waits for fires.

        Its last segments see the congestion loss of its data path now (its links as it ends), and its timers the
        round trip now: its fixed part and its data path's queues as they are (:mod:`sim.des.tails`); one whose last
        slow-start round overflowed a queue lost its tail there, and its start-up already counts the probe that
        repaired it (``tcp.TAIL_PROBE_RTTS``), so only its setup can still wait for a timer. A transfer whose last
        byte (or timer) comes past the horizon is not completed, however it got there.
        """
        if flow.conn is not None:
            flow.conn.leave(flow, now_s)
        row = self.row[flow.session]
        path = flow.path
        if flow.recovery_rounds == tcp.TAIL_PROBE_RTTS:  # its last round overflowed: the tail was lost, and the
            tail_loss = 0.0  # probe its start-up counted repaired it (no second tail loss: only its setup's chances)
        else:
            tail_loss = path[0].congestion_loss if len(path) == 1 else tails.path_loss(path)
        # (the draw is 0 <= u < 1: with no loss, or past every chance, it waits for nothing)
        if (tail_loss > 0.0 or flow.setup_loss > 0.0) and tails.may_wait(self.tail_u[row], flow.setup_loss, tail_loss,
                                                                          flow.setup_rounds):
            tail_rtt_s = flow.fixed_rtt_s + path[0].rtt_shift_s + sum(link.queue_delay_s for link in path)
            now_s += tails.delay_s(self.tail_u[row], flow.setup_loss, tail_loss, flow.setup_rounds, flow.size_bytes,
                                   flow.rtt_s, tail_rtt_s, flow.opens)
        if now_s > self.horizon_s:
            self.abandon_transfer(flow)
            return
        duration_s = now_s - self.start_s[row]
        columns = self.columns
        self.completed[row] = True
        self.bottleneck[row] = flow.bottleneck()
        columns["end_s"][row] = now_s
        columns["duration_s"][row] = duration_s
        columns["mean_rate_bps"][row] = flow.size_bytes * 8 / duration_s if duration_s > 0 else _NAN
        columns["queue_delay_s"][row] = flow.queue_delay_s
        columns["rtt_s"][row] = flow.rtt_s
        start_s = self.start_s[row]
        columns["setup_s"][row] = flow.request_at_s - start_s
        columns["first_data_s"][row] = flow.first_data_at_s - start_s

    def abandon_transfer(self, flow: Transfer) -> None:
        """Record a transfer still unfinished at the horizon (its request and first data if they came before)."""
        start_s, horizon_s = self.start_s[self.row[flow.session]], self.horizon_s
        self._put(flow.session, False, flow.bottleneck(), queue_delay_s=flow.queue_delay_s, rtt_s=flow.rtt_s,
                  setup_s=flow.request_at_s - start_s if flow.request_at_s <= horizon_s else _NAN,
                  first_data_s=flow.first_data_at_s - start_s if flow.first_data_at_s <= horizon_s else _NAN)

    def finish_call(self, session: int, halves: list[Media], now_s: float, completed: bool) -> None:
        """Keep a call replayed as flows (its two directions, settled to ``now_s``) for :meth:`finish_streams`."""
        self.finished_calls.append((session, tuple(halves), now_s, completed))

    def finish_streams(self, streams: reserved.Streams, reservations: dict | None = None) -> None:
        """Record every call: those replayed as flows and the fixed-rate ``streams``, from their paths' histories.

        ``reservations``: the links' reservations as arrays (:func:`reserved.reserve`'s), where kept.
        """
        self._as_arrays()
        histories = self.histories
        site_paths = (streams.site_links[site][direction] for site in streams.site_names for direction in (0, 1))
        histories.prepare([*(half.path for _, pair, _, _ in self.finished_calls for half in pair), *site_paths],
                          reservations)
        sessions, columns = calls.adaptive(self.finished_calls, histories)
        self._put_columns(np.array([self.row[session] for session in sessions], dtype=np.intp), columns)
        if len(streams.rows):
            self._put_columns(streams.rows, calls.fixed_rate(streams, histories))

    def _as_arrays(self) -> None:
        """Make the outcome columns arrays (from the lists the run fills), once."""
        if isinstance(self.completed, list):
            self.columns = {name: np.array(values, dtype=float) for name, values in self.columns.items()}
            self.completed = np.array(self.completed, dtype=bool)
            self.bottleneck = np.array(self.bottleneck, dtype=object)

    def _put_columns(self, rows: np.ndarray, columns: Mapping[str, list | np.ndarray]) -> None:
        for name, values in columns.items():
            target = self.completed if name == "completed" else self.bottleneck if name == "bottleneck" \
                else self.columns[name]
            target[rows] = values

    def records(self) -> pd.DataFrame:
        """The record table, one row per session of the trace, in trace order."""
        self._as_arrays()
        trace, n = self.trace, len(self.trace)
        out = {"engine": pd.array([ENGINE], dtype="str").take(np.zeros(n, dtype=np.intp))}
        for column in ("session_id", "site", "app", "traffic", "kind", "direction", "urgency", "far_profile", "start_s",
                       "target_rate_bps", "min_rate_bps"):
            out[column] = trace[column].array  # text stays in its Arrow-backed array
        sites = self.topology.sites
        codes, names = pd.factorize(trace["site"])  # each session's site: by hashing, then the few names looked up
        where = pd.Index(sites["site"]).get_indexer(names)[codes]
        for column in ("site_class", "family", "access_profile", "technology", "medium"):
            out[column] = sites[column].array.take(where)
        columns = self.columns
        out.update(columns)
        is_video = (trace["traffic"] == "stream").to_numpy()
        out["size_bytes"] = np.where(is_video, columns["size_bytes"], trace["size_bytes"].to_numpy())
        out["duration_s"] = np.where(is_video, trace["duration_s"].to_numpy(), columns["duration_s"])
        out["completed"] = self.completed
        codes, names = pd.factorize(self.bottleneck)  # a few distinct texts
        out["bottleneck"] = pd.array(names, dtype="str").take(codes)
        return conform(pd.DataFrame(out), RECORD_COLUMNS)


_OUTCOME_FLOATS = ("end_s", "duration_s", "setup_s", "first_data_s", "size_bytes", "mean_rate_bps",
                   "share_at_target", "share_below_min", "one_way_delay_s", "one_way_delay_p95_s", "jitter_s", "loss",
                   "queue_delay_s", "rtt_s")
