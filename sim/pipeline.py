"""The main job, one way through: scenario -> trace -> engine -> records -> verdicts -> results folder."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from sim import des, engines, linkchanges, merge, native, report, results, scale, spells, targets, topology, workload
from sim import records as records_mod
from sim.des import overflow, queueing, tails
from sim.errors import CapabilityError
from sim.load import load
from sim.model.scenario import Scenario
from sim.topology import Topology

log = logging.getLogger(__name__)


class Phases(dict):
    """Wall time (s) of a run's phases by name, in the order they ran: ``with phases("engine"): ...``."""

    @contextmanager
    def __call__(self, name: str):
        """Time the body as phase ``name`` (adding to it if it ran before) and log it."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - started
            log.info("%s: %.3f s", name, self[name])


@dataclass(frozen=True)
class Outcome:
    """Everything one run produced; ``folder`` is set when it was written to disk.

    ``trace``, ``result`` and ``verdicts`` are in memory, except for a sharded run's: its session tables are in its
    folder only (millions of rows: :mod:`sim.merge`), read from there each time ``trace``, ``result.records``,
    ``result.links`` or ``verdicts.sessions`` is asked for. ``sessions`` counts them without reading.
    """

    scenario: Scenario
    topology: Topology
    seed: int
    tables: Tables | Stored
    wall_s: float
    folder: Path | None = None
    engine: str = des.ENGINE
    fidelity: pd.DataFrame | None = None
    failover: pd.DataFrame | None = None  # calls per phase of the line changes (sim.failover), with outages
    meta: dict | None = None  # the emulation's self-description (sites, window, links, verification)
    shards: dict | None = None  # a sharded run's shard counts, over every attempt (sim.scale.ShardsRun.describe)
    resumed: bool = False
    timings_s: dict | None = None  # wall time (s) of each phase: load, workload, engine, verdicts, report

    @property
    def trace(self) -> pd.DataFrame:
        """The sessions replayed (:data:`sim.workload.TRACE_COLUMNS`)."""
        return self.tables.trace

    @property
    def result(self) -> engines.Result:
        """The engine's records, link series and event count (an emulation's extras too: :mod:`sim.engines`)."""
        return self.tables.result

    @property
    def verdicts(self) -> targets.Verdicts:
        """Verdicts per session, site and site class."""
        return self.tables.verdicts

    @property
    def sessions(self) -> int:
        """How many sessions were replayed."""
        return self.tables.sessions


@dataclass(frozen=True)
class Tables:
    """A run's tables in memory."""

    trace: pd.DataFrame
    result: engines.Result
    verdicts: targets.Verdicts

    @property
    def sessions(self) -> int:
        """Rows of the trace."""
        return len(self.trace)

    @property
    def events(self) -> int:
        """Events the engine processed."""
        return self.result.events

    def trace_columns(self, names: list[str]) -> pd.DataFrame:
        """Only these columns of the trace."""
        return self.trace[names]


@dataclass(frozen=True)
class Stored:
    """A sharded run's tables in its results ``folder``, each read from there when asked (none is kept)."""

    folder: Path
    sessions: int
    events: int
    sites: pd.DataFrame
    classes: pd.DataFrame

    def _read(self, name: str) -> pd.DataFrame:
        columns = {"records": records_mod.RECORD_COLUMNS, "links": records_mod.LINK_COLUMNS}.get(name)
        path = self.folder / results.TABLE_FILES[name]
        return records_mod.read(path, columns) if columns else records_mod.read_parquet(path)

    @property
    def trace(self) -> pd.DataFrame:
        """The trace, read from the folder."""
        return self._read("trace")

    def trace_columns(self, names: list[str]) -> pd.DataFrame:
        """Only these columns of the trace, read from the folder."""
        return records_mod.read_parquet(self.folder / results.TABLE_FILES["trace"], columns=names)

    @property
    def result(self) -> engines.Result:
        """Records and link series, read from the folder."""
        return engines.Result(self._read("records"), self._read("links"), self.events)

    @property
    def verdicts(self) -> targets.Verdicts:
        """Site and site-class verdicts; session verdicts read from the folder when asked for."""
        return _StoredVerdicts(lambda: self._read("sessions"), self.sites, self.classes)


class _StoredVerdicts(targets.Verdicts):
    """:class:`sim.targets.Verdicts` whose ``sessions`` are read (by ``read_sessions()``) only when asked for."""

    def __init__(self, read_sessions: Callable[[], pd.DataFrame], sites: pd.DataFrame, classes: pd.DataFrame):
        for name, value in (("_read_sessions", read_sessions), ("sites", sites), ("classes", classes)):
            object.__setattr__(self, name, value)

    @property
    def sessions(self) -> pd.DataFrame:  # noqa: D102 - as the base class's field
        return self._read_sessions()


def simulate(scenario: Scenario, seed: int | None = None,
             progress: Callable[[float], None] | None = None, phases: Phases | None = None) -> Outcome:
    """Generate the trace, simulate it and evaluate the targets (nothing is written); time it in ``phases``."""
    started = time.perf_counter()
    phases = Phases() if phases is None else phases
    seed = scenario.seed if seed is None else seed
    with phases("workload"):
        topo = topology.build(scenario)
        trace = workload.generate(scenario, topo, seed)
    with phases("engine"):
        changes = linkchanges.from_scenario(scenario, topo) if scenario.outages else None
        result = des.run(trace, topo, _window(scenario), seed=seed, progress=progress, link_changes=changes)
    with phases("verdicts"):
        verdicts = targets.evaluate(result.records, result.links, topo.sites, scenario.targets,
                                    (scenario.window.start, scenario.window.end), scenario.catalogue.media(),
                                    spells.spells(changes, scenario.window.start))
    phased = None if changes is None else _phase_table(result, changes, scenario.window.start,
                                                       scenario.window.end + scenario.drain)
    return Outcome(scenario, topo, seed, Tables(trace, result, verdicts), time.perf_counter() - started,
                   timings_s=phases, failover=phased)


def run(path: Path | str, *, seed: int | None = None, out: Path | str = "results",
        progress: Callable[..., None] | None = None, png: bool | None = None, scheduler: str | None = None,
        workers: int | None = None, resume: Path | str | None = None, engine: str = des.ENGINE,
        trace: Path | str | None = None) -> Outcome:
    """Load a scenario, run it and write its results folder (with its report) under ``out``.

    With the simulator (``engine="des"``), large scenarios (or any, given ``scheduler``, ``workers`` or
    ``resume``) run in shards on Dask. ``engine="emu"`` emulates the scenario's ``emulation`` slice over real
    packets (root); ``engine="both"`` also simulates that slice and writes ``fidelity.csv``.

    Args:
        path: The scenario file.
        seed: The workload's seed (default: the scenario's).
        out: Root of the results folders.
        progress: Called as work is done: ``progress(share)`` in one process, ``progress(shards_done, shards)``
            when sharded.
        png: Figures as PNG too: True required, False never, None when a browser is available.
        scheduler: Address of an existing Dask scheduler; default an embedded LocalCluster.
        workers: Worker processes of the embedded cluster (default: one per core; 0: shards in this process).
        resume: The partial folder of an interrupted sharded run, to finish without redoing its shards.
        engine: ``des``, ``emu`` or ``both``.
        trace: A measured trace (CSV or Parquet) replayed instead of the scenario's own or a generated one.

    Raises:
        ScenarioError: If the scenario is invalid (nothing is written).
    """
    phases = Phases()
    with phases("load"):
        scenario = load(path, trace=trace)
    if engine != des.ENGINE:
        outcome = _emulated(scenario, Path(path), seed, Path(out), progress, png, both=engine == "both")
        return Outcome(**{**outcome.__dict__, "timings_s": {**phases, "emulation (all after load)": outcome.wall_s}})
    sharded = bool(scheduler or resume) or workers is not None or scale.wants_cluster(scenario)
    seed = scenario.seed if seed is None else seed
    results.check_space(Path(out), scale.expected_sessions(scenario), sharded)
    with results.run_folder(Path(out), scenario.name, des.ENGINE, seed, keep_partial=sharded and scale.has_progress,
                            resume=Path(resume) if resume else None) as folder:
        if sharded:
            with phases("engine"):  # the shards evaluate their own sessions: verdicts are part of it
                outcome = _sharded(scenario, seed, folder.partial, progress, scheduler, workers, resumed=bool(resume))
        else:
            outcome = simulate(scenario, seed, progress, phases)
        # a sharded run's shard files (merged now) are removed meanwhile: the kernel's work, on the other core
        with _meanwhile(functools.partial(scale.discard, folder.partial) if sharded else None):
            with phases("write"):
                write(outcome, folder.partial, Path(path), tables=not sharded)  # a sharded run's are merged there
                if outcome.failover is not None:  # asked only then: a sharded run's result is read whole (GBs)
                    _write_phases(outcome.result, outcome.failover, folder.partial)
            with phases("report"):
                report.render(folder.partial, png=png)
    tables = replace(outcome.tables, folder=folder.final) if sharded else outcome.tables  # the tables' final place
    return Outcome(**{**outcome.__dict__, "tables": tables, "folder": folder.final, "timings_s": phases})


@contextmanager
def _meanwhile(work: Callable[[], None] | None) -> Iterator[None]:
    """Run ``work`` (if any) on a thread of its own while the block runs; after it, wait for it and raise its error."""
    if work is None:
        yield
        return
    failed: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, raised there
            failed.append(exc)

    thread = threading.Thread(target=body, name="testbed-meanwhile", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failed:
        raise failed[0]


def _sharded(scenario: Scenario, seed: int, folder: Path, progress, scheduler: str | None,
             workers: int | None, resumed: bool = False) -> Outcome:
    """Run a scenario in shards (see :mod:`sim.scale`); merge them into the run's tables, written into ``folder``.

    The shards evaluate their own sessions and sites; their files stay, for the caller to remove
    (:func:`sim.scale.discard`).
    """
    started = time.perf_counter()
    topo = topology.build(scenario)
    with scale.cluster(scheduler, workers) as client:
        done = scale.run_shards(scenario, topo, seed, _window(scenario), folder, client, progress)
    merged = merge.shards(folder, scale.plan_shards(scenario, topo), scenario.targets)
    tables = Stored(folder, merged.sessions, done.events, merged.sites, merged.classes)
    return Outcome(scenario, topo, seed, tables, time.perf_counter() - started, shards=done.describe(),
                   resumed=resumed)


def _emulated(scenario: Scenario, path: Path, seed: int | None, out: Path, progress, png: bool | None,
              both: bool) -> Outcome:
    """Emulate the scenario's slice (and, with ``both``, simulate the same slice); write one results folder.

    The folder's ``records.parquet`` is the emulation's (the ground truth); with ``both``, ``records-des.parquet``
    is the simulator's on the same sites, window and sessions, and ``fidelity.csv`` compares them.
    """
    from sim import fidelity
    from sim.emu import engine as emu
    started = time.perf_counter()
    seed = scenario.seed if seed is None else seed
    topo = topology.build(scenario)
    changes = _emulated_changes(scenario, topo, emu.run)
    trace = workload.generate(scenario, emu.candidates(scenario, topo), seed)
    name = "both" if both else emu.ENGINE
    results.check_space(out, 0, sharded=False)  # a slice of minutes: its tables are small beside the report
    with results.run_folder(out, scenario.name, name, seed) as folder:
        done = emu.run(trace, topo, scenario, seed=seed, work_dir=folder.partial / "agents", progress=progress,
                       **({} if changes is None else {"link_changes": changes}))
        chosen = done.slice
        window_s = (chosen.start_s, chosen.end_s)
        verdicts = targets.evaluate(done.records, done.links, done.topology.sites, scenario.targets, window_s,
                                    scenario.catalogue.media(), spells.spells(changes, scenario.window.start))
        table = None
        if both:
            # The simulator's horizon is one second past the emulation's stop, so a call clipped to end exactly
            # there (see sim.emu.window) finishes in both engines.
            horizon = des.RunWindow(chosen.start_s, chosen.end_s + chosen.drain_s + 1.0, scenario.utilisation_bin)
            sliced = _slice_changes(changes, done.topology, chosen.start_s - scenario.window.start,
                                    horizon.horizon_s - horizon.start_s)
            simulated = des.run(chosen.trace, done.topology, horizon, seed=seed, link_changes=sliced)
            records_mod.write(simulated.records, folder.partial / "records-des.parquet", records_mod.RECORD_COLUMNS)
            table = fidelity.table(simulated.records, done.records, scenario.targets, scenario.catalogue.media())
            table.to_csv(folder.partial / "fidelity.csv", index=False)
        phases = None if changes is None else _phase_table(done, changes, scenario.window.start,
                                                           done.slice.end_s + done.slice.drain_s)
        _write_phases(done, phases, folder.partial)
        outcome = Outcome(scenario, done.topology, seed, Tables(chosen.trace, done, verdicts),
                          time.perf_counter() - started, engine=name, fidelity=table, meta=done.meta,
                          failover=phases)
        write(outcome, folder.partial, path)
        report.render(folder.partial, png=png)
    return Outcome(**{**outcome.__dict__, "folder": folder.final})


def _phase_table(result, changes: pd.DataFrame, window_start_s: float, window_end_s: float) -> pd.DataFrame | None:
    """Each call's rate and delay per phase of its site's line changes (:mod:`sim.failover`), or None.

    From either engine's per-second call series (``result.calls``); None when it has none.
    """
    from sim import failover
    if result.calls is None or result.calls.empty:
        return None
    return failover.summary(result.calls, changes, window_start_s, window_end_s, result.records,
                            settle_s=FAILOVER_SETTLE_S)


def _write_phases(result, table: pd.DataFrame | None, folder: Path) -> None:
    """Write the per-phase table (``failover.csv``) and the per-second series it comes from (``calls.parquet``)."""
    if table is None:
        return
    result.calls.to_parquet(folder / "calls.parquet", index=False)
    table.to_csv(folder / "failover.csv", index=False)


FAILOVER_SETTLE_S = 1.0  # seconds left out at each phase's start: the queue a change leaves drains (sim.failover)


def _emulated_changes(scenario: Scenario, topo: Topology, emu_run: Callable) -> pd.DataFrame | None:
    """The link changes of the scenario's outages for the emulation (``at_s`` from the scenario's window start).

    Raises:
        CapabilityError: If the scenario has outages and the emulation engine cannot replay them.
    """
    if not scenario.outages:
        return None
    if "link_changes" not in inspect.signature(emu_run).parameters:
        raise CapabilityError("the emulation cannot replay the scenario's 'outages' yet: run it in the simulator "
                              "(--engine des), or remove them")
    return linkchanges.from_scenario(scenario, topo)


def _slice_changes(changes: pd.DataFrame | None, topo: Topology, by_s: float, window_s: float) -> pd.DataFrame | None:
    """The link changes of the emulated slice's sites, ``at_s`` from the slice's start (``by_s`` s later)."""
    if changes is None:
        return None
    return linkchanges.shifted(changes[changes["site"].isin(topo.sites["site"])], by_s, window_s)


def _window(scenario: Scenario) -> des.RunWindow:
    return des.RunWindow(scenario.window.start, scenario.window.end + scenario.drain, scenario.utilisation_bin)


def _simulator_assumptions() -> dict[str, float]:
    """The simulator's assumed figures a run's meta.json carries: its queues, loss recovery and overflow loss."""
    return queueing.assumptions() | tails.assumptions() | overflow.assumptions()


def write(outcome: Outcome, folder: Path, scenario_file: Path, *, tables: bool = True) -> None:
    """Write an outcome's files into ``folder`` (``tables=False``: all but its tables, which are there already)."""
    meta = results.meta(scenario=outcome.scenario.name, scenario_file=str(scenario_file), engine=outcome.engine,
                        seed=outcome.seed, sessions=outcome.sessions, events=outcome.tables.events,
                        wall_s=outcome.wall_s, extra={"emulation": outcome.meta, "shards": outcome.shards,
                                                      "simulator": _simulator_assumptions(),
                                                      "simulator_compiled": native.in_use(),
                                                      "resumed": outcome.resumed})
    held = {"trace": outcome.trace, "records": outcome.result.records, "links": outcome.result.links} if tables \
        else {"trace": None, "records": None, "links": None}  # a sharded run's: in the folder, not read here
    results.write_run(folder, scenario_text=scenario_file.read_text(encoding="utf-8"),
                      resolved=outcome.scenario.model_dump(mode="json", by_alias=True), meta=meta,
                      sites=outcome.topology.sites, verdicts=outcome.verdicts, tables=tables, **held)
