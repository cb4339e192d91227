"""The replay itself: one traffic agent per host of a built, started and verified network, all on one epoch.

The agents replay a slice's sessions in real time (:mod:`sim.emu.agent`) while the links are sampled and the link
changes applied on time; what they measured becomes the record table (:mod:`sim.records`, ``engine = "emu"``).
:func:`sim.emu.engine.run` builds the network around it; :func:`sim.calibrate.emulate` does the same for a
hand-made topology.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.emu import callseries, changer, traffic, window
from sim.emu.utilisation import Sampler
from sim.errors import EngineError
from sim.records import RECORD_COLUMNS, conform
from sim.topology import Topology

ENGINE = "emu"
START_MARGIN_S = 3.0  # between starting the agents and the window's first session (s): agents bind their sockets
STOP_GRACE_S = 10.0   # after the stop time, how long agents get to write their results before they are ended (s)
AGENT_STOP_S = 5.0    # how long all agents together get to end once told to (s); the rest are killed
SITE_COLUMNS = ("site_class", "family", "access_profile", "technology", "medium")


@dataclass(frozen=True)
class Replay:
    """What one replay's agents measured.

    Attributes:
        records: One row per session of the slice (:data:`sim.records.RECORD_COLUMNS`, ``engine = "emu"``).
        results: Each host's agent result (:mod:`sim.emu.agent`), by host name.
        calls: Per call, direction and second: rate (bit/s) and delay (s) (:mod:`sim.emu.callseries`).
        changes: Each link change as applied and read back (:mod:`sim.emu.changer`).
    """

    records: pd.DataFrame
    results: dict
    calls: pd.DataFrame
    changes: list[dict]


def replay(emu, chosen: window.Slice, sub: Topology, work_dir: Path, *, congestion_control: str, sampler: Sampler,
           steps: list | None = None, progress: Callable[[float], None] | None = None) -> Replay:
    """Replay ``chosen``'s sessions over the started, verified network ``emu`` of the sites of ``sub``.

    One traffic agent per host on one epoch; the links are sampled meanwhile (``sampler``, which the health
    judgement reads: :func:`sim.emu.engine.judge_health`) and the link changes ``steps``
    (:func:`sim.emu.engine.link_steps`) applied on time.
    Agents' specs, logs and results are kept in ``work_dir``.

    Raises:
        EngineError: An agent that failed, or was not ready when the window began.
    """
    change = changer.Changer(emu, steps or [], sampler.watch)
    results = _replay(emu, chosen, congestion_control, work_dir, progress, sampler, change)
    records = _records(chosen, sub, traffic.records(chosen.trace, results))
    return Replay(records, results, callseries.frame(chosen.trace, results), change.results)


def _replay(emu, chosen: window.Slice, congestion_control: str, work_dir: Path,
            progress: Callable[[float], None] | None, sampler: Sampler,
            change: changer.Changer | None = None) -> dict[str, dict]:
    """Start every host's agent on one epoch, wait for the window and drain, read results.

    Meanwhile the links are sampled (``sampler``) and the link changes applied on time (``change``).
    """
    epoch_s = time.time() + START_MARGIN_S
    specs = traffic.specs(chosen.trace, emu.endpoints(), epoch_s, chosen.start_s, chosen.end_s, chosen.drain_s,
                          congestion_control)
    procs, outs = {}, {}
    for host, spec in sorted(specs.items(), key=lambda item: item[1]["server"] is None):  # server first
        spec_path, outs[host] = work_dir / f"{host}.spec.json", work_dir / f"{host}.result.json"
        spec_path.write_text(json.dumps(spec, indent=1) + "\n")
        with open(work_dir / f"{host}.log", "wb") as log_file:  # never a pipe: a chatty agent would block on it
            procs[host] = emu.node(host).popen(traffic.agent_command(spec_path, outs[host]), stdout=log_file,
                                               stderr=subprocess.STDOUT)
        emu.record_pid(f"agent {host}", procs[host].pid)
    sampler.watch.watch_pids([p.pid for p in procs.values()] + [p.pid for p in emu.shims.values()])
    stop_at_s = epoch_s + chosen.duration_s + chosen.drain_s
    if change is not None:
        change.start(epoch_s)
    try:
        _wait(procs, stop_at_s, epoch_s, progress, sampler)
    finally:
        if change is not None:
            change.stop()
        # the agents get AGENT_STOP_S between them (not each) to end, then are killed: a bounded teardown
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline_s = time.monotonic() + AGENT_STOP_S
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline_s - time.monotonic()))
            except subprocess.TimeoutExpired:  # stuck: killed here; stop() would kill it by PID anyway
                proc.kill()
    failed = {h: p.returncode for h, p in procs.items() if p.returncode not in (0, None)}
    missing = [h for h, path in outs.items() if not path.is_file()]
    if failed or missing:
        raise EngineError(f"traffic agents failed: exit codes {failed}, no result from {missing} "
                          f"(their specs and logs are in {work_dir})")
    results = {host: json.loads(path.read_text()) for host, path in outs.items()}
    late = [h for h, r in results.items() if r.get("ready_at_s", 0.0) > epoch_s]
    if late:
        raise EngineError(f"traffic agents on {late} were not ready when the window began; the machine is too busy "
                          f"(agents are given {START_MARGIN_S:.0f} s)")
    return results


def _wait(procs: dict, stop_at_s: float, epoch_s: float, progress: Callable[[float], None] | None,
          sampler: Sampler) -> None:
    """Wait for the stop time, sampling link bytes at each bin boundary from the epoch, then for the agents.

    Agents get at most ``STOP_GRACE_S`` after the stop time; ``progress`` gets the share of the replay done.
    Between bins the shapers' counters are read every ``SHAPER_SAMPLE_S`` (for the health judgement).
    """
    next_sample_s = epoch_s
    while time.time() < stop_at_s + STOP_GRACE_S:
        now_s = time.time()
        if now_s >= next_sample_s and next_sample_s <= stop_at_s + 1e-6:
            sampler.sample(now_s)
            next_sample_s += sampler.bin_s
        elif epoch_s < now_s < stop_at_s:
            sampler.watch.tick(now_s)
        if now_s >= stop_at_s and all(p.poll() is not None for p in procs.values()):
            return
        if progress:
            progress(min(1.0, max(0.0, (now_s - epoch_s) / max(stop_at_s - epoch_s, 1e-9))))
        time.sleep(max(0.0, min(0.2, next_sample_s - time.time())))


def _records(chosen: window.Slice, sub: Topology, measured: pd.DataFrame) -> pd.DataFrame:
    """The agents' measurements with the trace's session columns and the sites' columns: the record table."""
    trace = chosen.trace[["session_id", "site", "app", "traffic", "kind", "direction", "urgency", "far_profile",
                          "start_s", "target_rate_bps", "min_rate_bps"]]
    video = trace["traffic"] == "stream"
    trace = trace.assign(target_rate_bps=trace["target_rate_bps"].where(video),
                         min_rate_bps=trace["min_rate_bps"].where(video))
    sites = sub.sites[["site", *SITE_COLUMNS]]
    frame = trace.merge(sites, on="site", how="left").merge(measured, on="session_id", how="left")
    frame["engine"] = ENGINE
    return conform(frame, RECORD_COLUMNS)
