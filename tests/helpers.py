"""Small hand-built topologies and traces for testing the engines against closed forms."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pandas as pd

from sim import des
from sim.topology import SITE_COLUMNS, FarEnd, SharedLink, Topology
from sim.workload import TRACE_COLUMNS

NAN = float("nan")
_NO_FAR_LINE = {"far_profile": "", "far_down_bps": NAN, "far_up_bps": NAN, "far_rtt_s": NAN}


def site(name: str, *, down_bps: float, up_bps: float, rtt_s: float = 0.0, buffer_bytes: float = 150_000,
         loss: float = 0.0, jitter_s: float = 0.0, aggregation: str = "", profile: str = "test",
         qos: str = "fifo", buffer_down_bytes: float | None = None) -> dict:
    """One site row of a topology: ``buffer_bytes`` each way, unless ``buffer_down_bytes`` gives the downstream's."""
    return {"site": name, "site_class": "gp_medium", "family": "gp_practice", "access_profile": profile,
            "technology": "Test", "medium": "copper", "distance_m": NAN, "down_bps": down_bps, "up_bps": up_bps,
            "rtt_s": rtt_s, "buffer_up_bytes": buffer_bytes,
            "buffer_down_bytes": buffer_bytes if buffer_down_bytes is None else buffer_down_bytes,
            "loss": loss, "jitter_s": jitter_s,
            "aggregation": aggregation, "qos": qos}


def topology(*sites: dict, cloud_rtt_s: float = 0.0, home: FarEnd | None = None,
             shared: dict[str, SharedLink] | None = None) -> Topology:
    """A topology of the given sites; the far end is fast and near unless given."""
    frame = pd.DataFrame(list(sites), columns=list(SITE_COLUMNS))
    return Topology(frame, shared or {}, cloud_rtt_s, home or FarEnd(1e9, 1e9, 0.0))


def transfer(site_name: str, start_s: float, size_bytes: float, direction: str = "down", *,
             app: str = "record_view", kind: str = "record_fetch", chunk_bytes: float = NAN,
             urgency: str = "routine", connection: str = "new") -> dict:
    """A transfer session row: on a ``new`` connection, or a ``reused`` (kept-alive) one."""
    return {"site": site_name, "app": app, "traffic": "transfer", "kind": kind, "direction": direction,
            "urgency": urgency, "start_s": start_s, "duration_s": NAN, "size_bytes": size_bytes,
            "chunk_bytes": chunk_bytes, "connection": connection, "target_rate_bps": NAN, "min_rate_bps": NAN,
            "packet_bytes": NAN,
            "up_share": 1.0, "far_end": "cloud", **_NO_FAR_LINE}


def call(site_name: str, start_s: float, duration_s: float, *, target_bps: float = 1.5e6,
         min_bps: float = 350e3, app: str = "video", up_share: float = 1.0, far_end: str = "home",
         far_line: dict | None = None) -> dict:
    """A call (stream) session row: by default a video consultation, its far end a patient's home.

    ``far_line`` (far_profile, far_down_bps, far_up_bps, far_rtt_s) gives the call its own patient's line; without
    it the topology's home is the far end.
    """
    return {"site": site_name, "app": app, "traffic": "stream", "kind": "gp_video", "direction": "both",
            "urgency": "routine", "start_s": start_s, "duration_s": duration_s, "size_bytes": NAN,
            "chunk_bytes": NAN, "connection": "", "target_rate_bps": target_bps, "min_rate_bps": min_bps,
            "packet_bytes": 1200.0,
            "up_share": up_share, "far_end": far_end, **(far_line or _NO_FAR_LINE)}


def trace(*sessions: dict) -> pd.DataFrame:
    """A trace of the given sessions, numbered in start order."""
    frame = pd.DataFrame(list(sessions)).sort_values("start_s", kind="stable").reset_index(drop=True)
    frame["session_id"] = range(len(frame))
    return frame[list(TRACE_COLUMNS)].astype(TRACE_COLUMNS)


def simulate(topo: Topology, sessions: pd.DataFrame, horizon_s: float | None = None, bin_s: float = 60.0,
             skip_unobserved: bool = True, link_changes: pd.DataFrame | None = None):
    """Run the simulator from time 0 to the horizon (default: a day after the last start), lines changing so."""
    last = float(sessions["start_s"].max()) if len(sessions) else 0.0
    window = des.RunWindow(0.0, horizon_s if horizon_s is not None else last + 86400.0, bin_s)
    return des.run(sessions, topo, window, skip_unobserved=skip_unobserved, link_changes=link_changes)


def log2ceil(x: float) -> int:
    """ceil(log2(x)), for hand-computing slow-start rounds in tests."""
    return math.ceil(math.log2(x))


def climb_steps(start_s: float, from_bps: float, to_bps: float) -> list[tuple[float, float]]:
    """A call's climb back from ``from_bps`` to ``to_bps`` at 8% a second from ``start_s``, as the simulator steps it.

    Steps over [0, 1], [1, 3], [3, 7], [7, 15] s... of the climb, each at the mean of ``from x 1.08^t`` over it, the
    last ending where the curve reaches ``to_bps``: ``(step start s, rate bit/s)`` pairs, then ``(end s, to_bps)``.
    """
    growth = math.log(1.08)
    end_s = math.log(to_bps / from_bps) / growth
    steps, lo_s, hi_s = [], 0.0, 1.0
    while lo_s < end_s:
        top_s = min(hi_s, end_s)
        steps.append((start_s + lo_s, from_bps * (1.08**top_s - 1.08**lo_s) / ((top_s - lo_s) * growth)))
        lo_s, hi_s = hi_s, 2 * hi_s + 1
    return [*steps, (start_s + end_s, to_bps)]


def mean_over(pieces: list[tuple[float, float]], t0_s: float, t1_s: float) -> float:
    """The mean over [t0_s, t1_s] of a step function given as ``(from s, value)`` pairs in order."""
    total = 0.0
    for k, (start_s, value) in enumerate(pieces):
        end_s = pieces[k + 1][0] if k + 1 < len(pieces) else math.inf
        total += value * max(0.0, min(end_s, t1_s) - max(start_s, t0_s))
    return total / (t1_s - t0_s)


def catalogue_with(topologies_dir: Path, folder: Path, file_name: str, line_starts: str, new_line: str
                   ) -> tuple[Path, int]:
    """A copy of the catalogue in ``folder / "cat"`` whose first line of ``file_name`` starting (stripped) with
    ``line_starts`` is ``new_line``; the edited file and that line's 0-based index."""
    shutil.copytree(topologies_dir, folder / "cat")
    path = folder / "cat" / file_name
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith(line_starts))
    lines[at] = new_line
    path.write_text("\n".join(lines) + "\n")
    return path, at


# How an emulation run that refused its results for the machine's sake says so (sim.emu.health.cause): the machine
# was starved of CPU, or stalled (a probe that outranks every task woke late), or a traffic agent started transfers
# late (its loop held up) while the links held. Any other refusal is a link's.
MACHINE_CAUSES = ("Likely cause: CPU starvation", "Likely cause: the machine stalled",
                  "Likely cause: late starts, not the links")


def refused_for_the_machine(why: str) -> bool:
    """Whether a run's refusal (its message, or meta.json's health ``why``) blames the machine, not a link."""
    return any(cause in why for cause in MACHINE_CAUSES)


def cannot_emulate() -> str | None:
    """Why this machine cannot run an emulation test (not root, or what it lacks), or None if it can."""
    from sim.emu import capabilities

    if os.geteuid() != 0:
        return "needs root: run `make test` as root"
    missing = capabilities.missing_for_a_run(capabilities.detect())
    return "; ".join(missing) if missing else None
