"""The emulation engine: replay a slice of the trace over a Mininet network in real time, into the record table.

One run: detect what the machine can do; choose the sites and window (:mod:`sim.emu.window`); plan the network and
check the machine can carry it (:mod:`sim.emu.net`); build it, verify every link (configuration in force and a
measured probe); start one traffic agent per host (:mod:`sim.emu.agent`), all keyed to one wall-clock epoch; wait
for the window and its drain, sampling the links' counters; collect what the agents measured
(:mod:`sim.emu.playback`); tear everything down. It returns the engines' shared result (:mod:`sim.engines`): records
and link series in the shared schema with ``engine = "emu"``, with the emulation's own extras (:class:`EmuResult`).
:func:`sim.emu.playback.replay` is the step in the middle, which :func:`sim.calibrate.emulate` also uses.

The links are also checked *while* the trace replays (:mod:`sim.emu.health`): per interval, the delay shims'
release lateness, drops nobody decided, the shapers' delivered rate when backlogged, the loss applied, and the CPU
the run's processes got. Sites whose links did not hold are refused (left out of the results, named in the log
and in ``meta["health"]``); when every site is affected (as when the machine is short of CPU), the run is
refused with :class:`sim.emu.health.HealthError`, naming links, intervals and the likely cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim import engines, units
from sim.emu import capabilities, changer, health, linksteps, net, traffic, window
from sim.emu.linkplan import EmuSettings
from sim.emu.playback import ENGINE, replay
from sim.emu.utilisation import Sampler
from sim.model.scenario import Scenario
from sim.topology import Topology

MAX_BIN_S = 10.0      # link utilisation is sampled at the scenario's bin, at most this long (a replay is minutes)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EmuResult(engines.Result):
    """An emulation's records and link series (:class:`sim.engines.Result`, ``events`` 0), and its own extras.

    Attributes:
        slice: The sites, window (s since midnight) and sessions replayed.
        topology: The emulated sites' topology.
        meta: The run's self-description (``meta.json``'s ``emulation``: links, verification, health, changes).
    """

    slice: window.Slice
    topology: Topology
    meta: dict


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


def run(trace: pd.DataFrame, topo: Topology, scenario: Scenario, *, seed: int, work_dir: Path,
        link_changes: pd.DataFrame | None = None, progress: Callable[[float], None] | None = None) -> EmuResult:
    """Emulate the scenario's slice of ``trace``; agents' specs and results are kept in ``work_dir`` as evidence.

    The engines' contract (:mod:`sim.engines`) with the scenario in the window's place: the emulation chooses its
    sites and window from the scenario's ``emulation`` section (:func:`prepare`), samples its links at the
    scenario's ``utilisation_bin`` (at most ``MAX_BIN_S``) and runs its transfers with ``congestion_control``.
    ``seed`` seeds the delay shims' jitter.

    ``link_changes`` (:mod:`sim.linkchanges`; ``at_s`` from the scenario window's start, as the simulator reads
    them) change the emulated sites' access lines mid-run (:mod:`sim.emu.changer`): shifted to the replayed slice
    (a site's last change before it applies from its start), rows of sites not emulated left out. Each change is read
    back and listed in ``meta["link_changes"]``; one that did not take (or took over 0.25 s late) fails a
    ``link_change`` health check, which refuses its site's results. ``result.calls`` holds every call's
    per-second rate and delay (:mod:`sim.failover` summarises them per phase).

    Raises:
        CapabilityError: Not root, no Mininet, no way to add delay, or more than the machine can carry.
        EngineError: A link not as configured (named), an agent that failed, or bad sites and rates.
        HealthError: No site's links held during the replay (an :class:`EngineError`; see :mod:`sim.emu.health`).
    """
    caps = capabilities.detect()
    chosen, sub = prepare(scenario, topo, trace, caps.cores, caps.delay_method or "nfqueue")
    cc = scenario.emulation.congestion_control
    emu = net.build(sub, list(chosen.sites), net.new_prefix(), EmuSettings(congestion_control=cc, seed=seed), caps,
                    offered_bps(chosen, sub))
    steps = link_steps(emu, sub, chosen, link_changes, chosen.start_s - scenario.window.start)
    work_dir.mkdir(parents=True, exist_ok=True)
    if work_dir.parent.name.endswith(".partial"):  # a results folder being written: clean removes it if killed
        emu.results_folder = work_dir.parent
    started = time.monotonic()
    with emu:
        built_s = time.monotonic() - started
        report = net.verify(emu)
        sampler = Sampler(emu, min(scenario.utilisation_bin, MAX_BIN_S), chosen.start_s)
        done = replay(emu, chosen, sub, work_dir, congestion_control=cc, sampler=sampler, steps=steps,
                      progress=progress)
    held = judge_health(sampler, chosen, sub, health.Thresholds(), done.changes, done.results)
    meta = {"engine": ENGINE, "prefix": emu.prefix, "sites": list(held.kept), "window_start_s": chosen.start_s,
            "window_end_s": chosen.end_s, "drain_s": chosen.drain_s,
            "sessions": int(chosen.trace["site"].isin(held.kept).sum()),
            "congestion_control": cc, "delay_method": emu.plan.method,
            "loss_method": caps.loss_method, "build_s": round(built_s, 2), "links": emu.plan.describe(),
            "verification": report.rows, "link_changes": changer.describe(done.changes), "health": held.meta,
            "capabilities": caps.as_dict()}
    result = EmuResult(done.records, sampler.frame(), slice=chosen, topology=sub, meta=meta, calls=done.calls)
    return _without(result, held.kept) if held.refused else result


def link_steps(emu, sub: Topology, chosen: window.Slice, link_changes: pd.DataFrame | None,
               offset_s: float = 0.0) -> list:
    """The link-change steps for the emulated sites of a built network ``emu`` (none without a table).

    ``offset_s``: how far into the table's window the slice starts (s); the table's ``at_s`` are shifted by it.
    Planned before the network starts, so a bad row costs no build.

    Raises:
        EngineError: A row that cannot be applied (naming it).
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
                 changes: list[dict] | None = None, results: dict | None = None) -> Held:
    """Judge the replay's sampled counters, link changes and transfer starts; refuse the sites that did not hold.

    ``results``: the agents' results by host, whose transfers' start lateness is judged (a site whose transfers
    started late is refused as one whose links did not hold).

    Raises:
        HealthError: Every site is affected (naming links, intervals and the likely cause).
    """
    rows = sampler.watch.judge(chosen.start_s, sampler.bin_s, th)
    rows += changer.health_rows(changes or [], chosen.start_s, sampler.bin_s)
    rows += health.judge_starts(traffic.transfer_starts(chosen.trace, results or {}), chosen.start_s, sampler.bin_s,
                                th)
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
    return EmuResult(records, links, slice=window.Slice(kept, chosen.start_s, chosen.end_s, chosen.drain_s, trace),
                     topology=window.sub_topology(result.topology, kept), meta=result.meta, calls=calls)


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
