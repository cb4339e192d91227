"""The simulator's calls second by second: what :mod:`sim.failover` reads per phase of a line change.

A call replayed as flows (adaptive video, :class:`sim.des.flows.Media`, one per direction) keeps its sending
rate's history; its path's history (:mod:`sim.des.paths`) holds the queueing delay, the loss and a changed line's
longer round trip over time. Second ``k`` of a call is ``[start_s + k, start_s + k + 1)`` on the trace clock, as
the emulation's receivers count it (:mod:`sim.emu.callseries`), and only whole seconds are kept. In each:

* ``rate_bps``: the bits sent in it, less the path's loss while they were sent (what a receiver gets), over 1 s;
* ``one_way_delay_s``: the base one-way delay plus the queueing delay and round-trip shift while they were sent,
  weighted by the bits received (the call's record takes the same measures over the whole call); NaN for a
  second in which nothing arrived (an outage).

Fixed-rate streams (telephony, the aggregate sessions) have no rate history of their own and are not written.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.des.calls import Histories
from sim.des.context import ENGINE

SERIES_BIN_S = 1.0
_COLUMNS = ("engine", "session_id", "site", "direction", "bin_start_s", "bin_s", "rate_bps", "one_way_delay_s")


def frame(finished_calls: list[tuple], histories: Histories, sites: set[str]) -> pd.DataFrame:
    """One row per call at one of ``sites``, direction and whole second (:data:`sim.failover.SERIES_COLUMNS`).

    Args:
        finished_calls: ``(session, (up, down), end_s, completed)`` per call (:attr:`Context.finished_calls`).
        histories: The paths' histories (built once per path).
        sites: The sites whose calls are wanted (e.g. those whose lines change).
    """
    parts = []
    for session, pair, _, _ in finished_calls:
        site = pair[0].path[0].site
        if site not in sites:
            continue
        for direction, half in zip(("up", "down"), pair):
            parts.append(_half(session, site, direction, half, histories.of(half.path)))
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in _COLUMNS})
    return pd.concat(parts, ignore_index=True).sort_values(["session_id", "direction", "bin_start_s"],
                                                           ignore_index=True)


def _half(session: int, site: str, direction: str, half, history) -> pd.DataFrame:
    """One direction's whole seconds: rate received (bit/s) and one-way delay (s), weighted by what was sent.

    The seconds are cut further at the rate's changes, so each piece has one sending rate: its bits received are
    that rate times the piece's length times one minus the path's mean loss over it, and its delay is weighted by
    those bits (the emulation's receivers average over the packets that arrive).
    """
    n = int(math.floor((half.since_s - half.start_s) / SERIES_BIN_S + 1e-9))
    if n == 0:
        return pd.DataFrame(columns=list(_COLUMNS))
    edges_s = half.start_s + SERIES_BIN_S * np.arange(n + 1)
    changes_s = np.asarray(half.seg_start_s, dtype=float)
    cuts_s = np.union1d(edges_s, changes_s[(changes_s > edges_s[0]) & (changes_s < edges_s[-1])])
    start_s, end_s = cuts_s[:-1], cuts_s[1:]
    sent_bits = np.diff(_bits_sent(half, cuts_s))
    over = history.over(start_s, end_s)
    got_bits = sent_bits * (1.0 - over.mean(history.loss))
    delay_s = half.base_delay_s + over.mean(history.queue_s) + over.mean(history.shift_s)
    second = np.searchsorted(edges_s, start_s, side="right") - 1
    got = np.bincount(second, got_bits, minlength=n)
    weighted = np.bincount(second, got_bits * delay_s, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_delay_s = np.where(got > 0, weighted / got, np.nan)
    return pd.DataFrame({"engine": ENGINE, "session_id": session, "site": site, "direction": direction,
                         "bin_start_s": edges_s[:-1], "bin_s": SERIES_BIN_S, "rate_bps": got / SERIES_BIN_S,
                         "one_way_delay_s": mean_delay_s})


def _bits_sent(half, t_s: np.ndarray) -> np.ndarray:
    """Bits ``half`` had sent by each time ``t_s`` (its rate history is a step function; settled first)."""
    starts = np.asarray(half.seg_start_s, dtype=float)
    rates = np.asarray(half.seg_rate_bps, dtype=float)
    if not len(starts):
        return np.zeros(len(t_s))
    ends = np.append(starts[1:], half.since_s)
    times = np.append(starts, ends[-1])
    cumulative = np.concatenate([[0.0], np.cumsum(rates * (ends - starts))])
    return np.interp(t_s, times, cumulative)  # linear within a segment: the rate is constant there
