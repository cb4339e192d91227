"""The emulation engine: replay a slice of the trace over a Mininet network in real time, into the record table.

One run: detect what the machine can do; choose the sites and window (:mod:`sim.emu.window`); plan the network and
check the machine can carry it (:mod:`sim.emu.net`); build it, verify every link (configuration in force and a
measured probe); start one traffic agent per host (:mod:`sim.emu.agent`), all keyed to one wall-clock epoch; wait
for the window and its drain, sampling the links' counters; collect what the agents measured
(:mod:`sim.emu.traffic`); tear everything down. Records come out in the simulator's schema with ``engine = "emu"``.

The links are also checked *while* the trace replays (:mod:`sim.emu.health`): per interval, the delay shims'
release lateness, drops nobody decided, the shapers' delivered rate when backlogged, the loss applied, and the CPU
the run's processes got. Sites whose links did not hold are refused (left out of the results, named in the log
and in ``meta["health"]``); when every site is affected (as when the machine is short of CPU), the run is
refused with :class:`sim.emu.health.HealthError`, naming links, intervals and the likely cause.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim import units
from sim.emu import callseries, capabilities, changer, health, linksteps, net, traffic, window
from sim.emu.linkplan import EmuSettings
from sim.emu.utilisation import Sampler
from sim.errors import EngineError
from sim.model.scenario import Scenario
from sim.records import RECORD_COLUMNS, conform
from sim.topology import Topology

ENGINE = "emu"
START_MARGIN_S = 3.0  # between starting the agents and the window's first session (s): agents bind their sockets
STOP_GRACE_S = 10.0   # after the stop time, how long agents get to write their results before they are ended (s)
AGENT_STOP_S = 5.0    # how long all agents together get to end once told to (s); the rest are killed
MAX_BIN_S = 10.0      # link utilisation is sampled at the scenario's bin, at most this long (a replay is minutes)
SITE_COLUMNS = ("site_class", "family", "access_profile", "technology", "medium")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmuResult:
    """An emulation's records (RECORD_COLUMNS), link series (LINK_COLUMNS), slice and self-description."""

    records: pd.DataFrame
    links: pd.DataFrame
    slice: window.Slice
    topology: Topology
    meta: dict
    calls: pd.DataFrame | None = None  # per call, direction and second: rate and delay (sim.emu.failover)


def candidates(scenario: Scenario, topo: Topology) -> Topology:
    """The topology of the sites an emulation of the scenario may replay (those :func:`prepare` chooses from).

    Each site's sessions come from its own generator (:mod:`sim.workload`), so the trace of these sites alone
    holds the sessions the whole scenario's trace gives them (only their ``session_id`` differ): an emulation of
    ``england`` need not generate five million sessions to replay three sites' few hundred.
    """
    return window.sub_topology(topo, window.choose_sites(scenario, topo))


def prepare(scenario: Scenario, topo: Topology, trace: pd.DataFrame, cores: int = 2,
            method: str = "nfqueue") -> tuple[window.Slice, Topology]:
    """The slice an emulation of this scenario replays, and the topology of its sites (no side effects).

    When the sites are the default choice and the machine could not carry them all (:func:`sim.emu.net.estimate`),
    the fastest are left out, one at a time, down to one site; sites the scenario names are kept as named (the
    capacity check then refuses them, with its estimate).
    """
    chosen = window.choose(scenario, topo, trace)
    while not scenario.emulation.sites and len(chosen.sites) > 1 and _too_much(chosen, topo, cores, method):
        rates = topo.sites.set_index("site").loc[list(chosen.sites), ["down_bps", "up_bps"]].sum(axis=1)
        chosen = window.choose(scenario, topo, trace, tuple(s for s in chosen.sites if s != rates.idxmax()))
    return chosen, window.sub_topology(topo, chosen.sites)


def _too_much(chosen: window.Slice, topo: Topology, cores: int, method: str) -> bool:
    sub = window.sub_topology(topo, chosen.sites)
    return bool(net.estimate(sub, list(chosen.sites), method=method, offered_bps=offered_bps(chosen, sub),
                             cores=cores).problems())


def run(scenario: Scenario, topo: Topology, trace: pd.DataFrame, seed: int, work_dir: Path,
        progress: Callable[[float], None] | None = None, *,
        link_changes: pd.DataFrame | None = None) -> EmuResult:
    """Emulate the scenario's slice; agents' specs and results are kept in ``work_dir`` as evidence.

    ``link_changes`` (:mod:`sim.linkchanges`; ``at_s`` from the scenario window's start, as the simulator reads
    them) change the emulated sites' access lines mid-run (:mod:`sim.emu.changer`): shifted to the replayed slice
    (a site's last change before it applies from its start), rows of sites not emulated left out. Each change is read
    back and listed in ``meta["link_changes"]``; one that did not take (or took over 0.25 s late) fails a
    ``link_change`` health check, which refuses its site's results. ``result.calls`` holds every call's
    per-second rate and delay (:mod:`sim.emu.failover` summarises them per phase).

    Raises:
        CapabilityError: Not root, no Mininet, no way to add delay, or more than the machine can carry.
        EngineError: A link not as configured (named), an agent that failed, or bad sites and rates.
        HealthError: No site's links held during the replay (an :class:`EngineError`; see :mod:`sim.emu.health`).
    """
    caps = capabilities.detect()
    chosen, sub = prepare(scenario, topo, trace, caps.cores, caps.delay_method or "nfqueue")
    settings = EmuSettings(congestion_control=scenario.emulation.congestion_control, seed=seed)
    emu = net.build(sub, list(chosen.sites), net.new_prefix(), settings, caps, offered_bps(chosen, sub))
    steps = _steps(emu, sub, chosen, link_changes, chosen.start_s - scenario.window.start)
    work_dir.mkdir(parents=True, exist_ok=True)
    if work_dir.parent.name.endswith(".partial"):  # a results folder being written: clean removes it if killed
        emu.results_folder = work_dir.parent
    started = time.monotonic()
    with emu:
        built_s = time.monotonic() - started
        report = net.verify(emu)
        sampler = Sampler(emu, min(scenario.utilisation_bin, MAX_BIN_S), chosen.start_s)
        change = changer.Changer(emu, steps, sampler.watch)
        results = _replay(emu, chosen, scenario.emulation.congestion_control, work_dir, progress, sampler, change)
    records = _records(chosen, sub, traffic.records(chosen.trace, results))
    calls = callseries.frame(chosen.trace, results)
    held = judge_health(sampler, chosen, sub, health.Thresholds(), change.results)
    meta = {"engine": ENGINE, "prefix": emu.prefix, "sites": list(held.kept), "window_start_s": chosen.start_s,
            "window_end_s": chosen.end_s, "drain_s": chosen.drain_s,
            "sessions": int(chosen.trace["site"].isin(held.kept).sum()),
            "congestion_control": scenario.emulation.congestion_control, "delay_method": emu.plan.method,
            "loss_method": caps.loss_method, "build_s": round(built_s, 2), "links": emu.plan.describe(),
            "verification": report.rows, "link_changes": changer.describe(change.results), "health": held.meta,
            "capabilities": caps.as_dict()}
    if held.refused:
        return _without(EmuResult(records, sampler.frame(), chosen, sub, meta, calls), held.kept)
    return EmuResult(records, sampler.frame(), chosen, sub, meta, calls)


def _steps(emu, sub: Topology, chosen: window.Slice, link_changes: pd.DataFrame | None,
           offset_s: float = 0.0) -> list:
    """The link-change steps for the emulated sites (none without a table); bad rows raise EngineError.

    ``offset_s``: how far into the table's window the slice starts (s); the table's ``at_s`` are shifted by it.
    """
    if link_changes is None or len(link_changes) == 0:
        return []
    if "site" in link_changes and "at_s" in link_changes:
        mine = link_changes[link_changes["site"].isin(chosen.sites)]
        link_changes = linksteps.to_slice(mine, offset_s, chosen.duration_s)
    return linksteps.plan_steps(emu.plan, sub, link_changes.reset_index(drop=True), chosen.duration_s)


@dataclass(frozen=True)
class Held:
    """The health judgement of a replay: the sites kept and refused, and the table for meta.json."""

    kept: tuple[str, ...]
    refused: tuple[str, ...]
    meta: dict


def judge_health(sampler: Sampler, chosen: window.Slice, sub: Topology, th: health.Thresholds,
                 changes: list[dict] | None = None) -> Held:
    """Judge the counters sampled during the replay, and each link change; refuse the sites whose links did not hold.

    Raises:
        HealthError: Every site is affected (naming links, intervals and the likely cause).
    """
    rows = sampler.watch.judge(chosen.start_s, sampler.bin_s, th)
    rows += changer.health_rows(changes or [], chosen.start_s, sampler.bin_s)
    members = {f"shared:{name}": list(group["site"]) for name, group in sub.sites.groupby("aggregation") if name}
    refused = tuple(health.affected_sites(rows, list(chosen.sites), members))
    message = health.refusal(rows, lambda s: units.format_clock(s, with_seconds=True))
    meta = {"thresholds": th.as_dict(), "interval_s": sampler.bin_s,
            "intervals": len(sampler.watch.snapshots) - 1, "checks": len(rows),
            "failed": len(health.failures(rows)), "refused_sites": list(refused), "why": message, "rows": rows}
    if len(rows) == 0:
        log.warning("no link health was measured during the replay (window shorter than one interval of %.0f s)",
                    sampler.bin_s)
    if refused and len(refused) == len(chosen.sites):
        log.warning("emulation refused: the links did not hold: %s", message)
        raise health.HealthError(f"emulated links did not hold during the replay; results refused: {message}",
                                 rows)
    if refused:
        log.warning("results of sites %s refused (their links did not hold): %s", ", ".join(refused), message)
    kept = tuple(s for s in chosen.sites if s not in refused)
    return Held(kept, refused, meta)


def _without(result: EmuResult, kept: tuple[str, ...]) -> EmuResult:
    """The result with only the ``kept`` sites: their records, link series, slice and topology."""
    chosen = result.slice
    trace = chosen.trace[chosen.trace["site"].isin(kept)].reset_index(drop=True)
    records = result.records[result.records["site"].isin(kept)].reset_index(drop=True)
    links = result.links[result.links["site"].isin(kept)].reset_index(drop=True)
    calls = None if result.calls is None else result.calls[result.calls["site"].isin(kept)].reset_index(drop=True)
    return EmuResult(records, links, window.Slice(kept, chosen.start_s, chosen.end_s, chosen.drain_s, trace),
                     window.sub_topology(result.topology, kept), result.meta, calls)


def offered_bps(chosen: window.Slice, sub: Topology) -> dict[str, float]:
    """Each site's peak offered traffic, both directions together (bit/s), for the machine-capacity check.

    A bound, not a forecast: transfers may fill the access link in each direction they use, while calls add their
    target rate both ways (all at once).
    """
    trace, rates = chosen.trace, sub.sites.set_index("site")
    out = {}
    for site in chosen.sites:
        mine = trace[trace["site"] == site]
        transfers = mine[mine["traffic"] != "stream"]
        directions = set(transfers["direction"])
        out[site] = (2 * float(mine.loc[mine["traffic"] == "stream", "target_rate_bps"].sum())
                     + ("up" in directions) * float(rates.at[site, "up_bps"])
                     + ("down" in directions) * float(rates.at[site, "down_bps"]))
    return out


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
