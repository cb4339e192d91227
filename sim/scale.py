"""Estate-scale runs: the topology split into shards of sites, each replayed as a task, on Dask or in-process.

Sites interact only through the links they share, so a shard that keeps every shared link's sites together
replays exactly as it would in one process; each site's sessions come from its own generator. Sessions and
sites are judged on their own too, so each shard also evaluates its sessions and sites against the targets.
Each shard's trace, records, link series and verdicts are written to ``shards/`` of the run's partial folder
as it finishes, atomically, durably and checksummed (:mod:`sim.shard_files`); an interrupted run resumes without
redoing finished shards whose files still match their checksums, and runs any other again. Merging
(:mod:`sim.merge`) puts sessions back in the order a single-process run gives them (start time, then site,
then generation order), so the run's tables equal a single-process run's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim import des, linkchanges, shard_files, spells, targets, workload
from sim.cluster import cluster  # noqa: F401 - callers reach the cluster through here
from sim.errors import TestbedError
from sim.model.scenario import Scenario
from sim.topology import Topology

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]  # progress(done, total): shards, runs or jobs finished out of total

SHARDS_DIR = "shards"
PLAN_FILE = "shards.json"
# What a shard writes (2: verdicts too; 3: checksums; 4: Arrow files; 5: the trace's connection column; 6: records
# with transfers' setup_s and first_data_s); a partial folder of another layout is not resumed.
SHARD_LAYOUT = 6
SHARD_TABLES = ("trace", "records", "links", "session_verdicts", "site_verdicts")
# The tables only the merge reads, a row group at a time: Arrow IPC files (read without decoding). The others
# are Parquet (the backup day reads the site verdicts; the merge reads the links whole).
ARROW_TABLES = ("trace", "records", "session_verdicts")
SESSIONS_PER_SHARD = 60_000  # about 3 s of simulation: small enough to balance, large enough to amortise
# The longest the Dask tasks may go with none of them finishing before the run gives up on them (s). A shard runs
# for about 3 s and a planner's or sweep's job for under a minute on a busy 2-core machine (benchmarks/README.md),
# so 30 minutes without a single result means a worker hangs (a stuck filesystem, a deadlock), not a slow task.
TASK_STALL_S = 1800.0


@dataclass(frozen=True)
class Shard:
    """A contiguous block of sites (row labels of the topology's site table)."""

    index: int
    first: int
    last: int  # inclusive

    @property
    def name(self) -> str:
        """File stem of the shard's outputs."""
        return f"shard-{self.index:05d}"

    def path(self, folder: Path | str, table: str) -> Path:
        """Where the shard's ``table`` (one of :data:`SHARD_TABLES`) is, in the run's ``folder``."""
        return Path(folder) / SHARDS_DIR / f"{self.name}.{table}.{'arrow' if table in ARROW_TABLES else 'parquet'}"

    def done_path(self, folder: Path | str) -> Path:
        """Where the shard's record of being done (what it reported, its files' sizes and checksums) is."""
        return Path(folder) / SHARDS_DIR / f"{self.name}.done.json"


@dataclass(frozen=True)
class ShardDone:
    """What a finished shard reports back."""

    index: int
    sessions: int
    events: int
    wall_s: float


def plan_shards(scenario: Scenario, topology: Topology, sessions_per_shard: int | None = None) -> list[Shard]:
    """Split the sites into contiguous shards of about ``sessions_per_shard`` expected sessions each.

    A boundary never falls between two sites on the same shared link.
    """
    sessions_per_shard = sessions_per_shard or SESSIONS_PER_SHARD
    per_site = _expected_per_site(scenario, topology)
    aggregation = topology.sites["aggregation"].tolist()
    shards, first, load = [], 0, 0.0
    labels = topology.sites.index.tolist()
    for pos, label in enumerate(labels):
        load += per_site[pos]
        last_of_block = pos + 1 == len(labels) or not aggregation[pos] or aggregation[pos] != aggregation[pos + 1]
        if load >= sessions_per_shard and last_of_block:
            shards.append(Shard(len(shards), labels[first], label))
            first, load = pos + 1, 0.0
    if first < len(labels):
        shards.append(Shard(len(shards), labels[first], labels[-1]))
    return shards


def _expected_per_site(scenario: Scenario, topology: Topology) -> list[float]:
    per_class = {name: workload.expected_per_site(scenario, name) for name in set(topology.sites["site_class"])}
    return [per_class[c] for c in topology.sites["site_class"]]


def sub_topology(topology: Topology, shard: Shard) -> Topology:
    """The part of the topology a shard replays (its sites keep their row labels, hence their seeds)."""
    sites = topology.sites.loc[shard.first:shard.last]
    shared = {name: link for name, link in topology.shared.items() if name in set(sites["aggregation"])}
    return Topology(sites, shared, topology.cloud_rtt_s, topology.home)


def run_shard(scenario: Scenario, topology: Topology, shard: Shard, seed: int, window: des.RunWindow,
              folder: str) -> ShardDone:
    """Generate, simulate and judge one shard; write its tables (durably, checksummed) into ``folder``.

    The tables (:data:`SHARD_TABLES`): the trace (with each session's ``site_index``, its site's row label),
    records, link series, each record's ``passed`` and ``reason`` (in record order) and its sites' verdicts.
    """
    done, tables = _compute_shard(scenario, topology, shard, seed, window)
    files = {name: shard_files.write_table(frame, shard.path(folder, name)) for name, frame in tables.items()}
    shard_files.write_json(shard.done_path(folder), {**done.__dict__, "files": files})  # last: the shard is done
    return done


def run_shard_shipped(scenario: Scenario, topology: Topology, shard: Shard, seed: int, window: des.RunWindow,
                      folder: str) -> tuple[ShardDone, dict[str, bytes]]:
    """:func:`run_shard` for a worker that cannot see ``folder``: return the tables as Parquet bytes instead."""
    done, tables = _compute_shard(scenario, topology, shard, seed, window)
    return done, {name: bytes(shard_files.to_bytes(frame, shard.path(folder, name))) for name, frame in tables.items()}


def _keep_shipped(folder: Path, shards: list[Shard]) -> Callable[[tuple], ShardDone]:
    """Write what :func:`run_shard_shipped` returned into ``folder`` as :func:`run_shard` would have."""
    by_index = {shard.index: shard for shard in shards}

    def keep(result: tuple[ShardDone, dict[str, bytes]]) -> ShardDone:
        done, tables = result
        shard = by_index[done.index]
        files = {name: shard_files.write_bytes(data, shard.path(folder, name)) for name, data in tables.items()}
        shard_files.write_json(shard.done_path(folder), {**done.__dict__, "files": files})
        return done

    return keep


def _compute_shard(scenario: Scenario, topology: Topology, shard: Shard, seed: int,
                   window: des.RunWindow) -> tuple[ShardDone, dict[str, pd.DataFrame]]:
    started = time.perf_counter()
    part = sub_topology(topology, shard)
    trace = workload.generate(scenario, part, seed)
    trace["site_index"] = site_index(trace["site"], part.sites)
    changes = linkchanges.from_scenario(scenario, part) if scenario.outages else None
    result = des.run(trace.drop(columns="site_index"), part, window, seed=seed, link_changes=changes)
    sessions = targets.session_verdicts(result.records, scenario.targets, scenario.catalogue.media())
    sites = targets.site_verdicts(sessions, result.links, part.sites, scenario.targets,
                                  (scenario.window.start, scenario.window.end), result.records,
                                  spells.spells(changes, scenario.window.start))
    tables = {"trace": trace, "records": result.records, "links": result.links,
              "session_verdicts": sessions[list(targets.OUTCOME_COLUMNS)], "site_verdicts": sites}
    return ShardDone(shard.index, len(trace), result.events, time.perf_counter() - started), tables


def site_index(site: pd.Series, sites: pd.DataFrame) -> np.ndarray:
    """Each session's site's row label in the topology's site table ``sites`` (int64), from its ``site`` name.

    Raises:
        ValueError: If a site is not in ``sites``.
    """
    codes, names = pd.factorize(site)  # a hash per session; then a look-up per distinct site, no Python per row
    found = pd.Index(sites["site"]).get_indexer(names)
    positions = found[codes] if len(codes) else np.empty(0, dtype=np.intp)
    if (codes < 0).any() or (positions < 0).any():
        missing = site[codes < 0].iloc[0] if (codes < 0).any() else site[positions < 0].iloc[0]
        raise ValueError(f"site {missing!r} of the trace is not in the shard's sites")
    return sites.index.to_numpy(dtype="int64")[positions]


def finished(folder: Path, shard: Shard) -> ShardDone | None:
    """What a shard reported when it finished, if it did and its files are still as it wrote them."""
    done = shard_files.verified(shard.done_path(folder), {name: shard.path(folder, name) for name in SHARD_TABLES})
    if done is None:
        return None
    return ShardDone(**{key: done[key] for key in ("index", "sessions", "events", "wall_s")})


def is_done(folder: Path, shard: Shard) -> bool:
    """True when the shard's outputs are all written and match their recorded sizes and checksums."""
    return finished(folder, shard) is not None


def has_progress(folder: Path) -> bool:
    """True when a run's partial ``folder`` holds a finished shard: worth keeping to resume."""
    return any((Path(folder) / SHARDS_DIR).glob("*.done.json"))


@dataclass(frozen=True)
class ShardsRun:
    """A whole sharded run, counting shards finished before a resume as well as those run now."""

    shards: int
    reused: int  # shards found finished (files checked) and not run again
    sessions: int
    events: int
    compute_s: float  # the shards' own wall times added up (s), across every attempt that finished one

    def describe(self) -> dict:
        """The run's shard counts for ``meta.json``."""
        return {"total": self.shards, "reused": self.reused, "run": self.shards - self.reused,
                "compute_s": round(self.compute_s, 3)}


def run_shards(scenario: Scenario, topology: Topology, seed: int, window: des.RunWindow, folder: Path,
               client=None, progress: Progress | None = None) -> ShardsRun:
    """Run every shard not yet done (on ``client`` if given, else in-process); count the whole run.

    A shard counts as done only if its files match the sizes and checksums its ``done.json`` recorded; any
    other is run (again). ``progress(shards_done, shards_total)`` is called as shards finish.

    Raises:
        TestbedError: If ``folder`` holds shards of a different plan (another scenario, seed or split).
    """
    shards = plan_shards(scenario, topology)
    _check_plan(folder, scenario, seed, shards)
    found = {s.index: finished(folder, s) for s in shards}
    reused = [done for done in found.values() if done is not None]
    todo = [s for s in shards if found[s.index] is None]

    def step(done: float, total: float) -> None:
        if progress:
            progress(len(reused) + done, len(shards))

    jobs = [(scenario, topology, s, seed, window, str(folder)) for s in densest_first(scenario, topology, todo)]
    if client is None or workers_see(client, Path(folder) / PLAN_FILE):
        every = reused + map_ordered(client, run_shard, jobs, step, shared=2)
    else:  # workers on other machines: each shard's tables come back here, written as each finishes
        log.info("the Dask workers cannot see %s: shards send their tables back", folder)
        every = reused + map_ordered(client, run_shard_shipped, jobs, step, shared=2, each=_keep_shipped(folder, todo))
    return ShardsRun(len(shards), len(reused), sum(d.sessions for d in every), sum(d.events for d in every),
                     sum(d.wall_s for d in every))


def densest_first(scenario: Scenario, topology: Topology, shards: list[Shard]) -> list[Shard]:
    """Shards in the order to start them: the most expected sessions per site first (ties: plan order).

    A session costs more where more of them share a site's link (an acute site's shard takes about 1.5 times
    a GP shard of as many sessions), so starting the densest shards first keeps workers from idling at the end.
    """
    per_site = _expected_per_site(scenario, topology)
    labels = {label: pos for pos, label in enumerate(topology.sites.index.tolist())}

    def density(shard: Shard) -> float:
        first, last = labels[shard.first], labels[shard.last]
        return sum(per_site[first:last + 1]) / (last - first + 1)

    return sorted(shards, key=lambda shard: -density(shard))


def map_ordered(client, function: Callable, jobs: list[tuple], progress: Progress | None = None,
                shared: int = 0, each: Callable | None = None, stall_s: float = TASK_STALL_S) -> list:
    """Run ``function(*job)`` for every job on the Dask ``client`` (or here, if None); results in job order.

    ``progress(done, total)`` is called as jobs finish. The first ``shared`` arguments, the same in every job
    (e.g. the scenario and its topology), are sent to the workers once. ``each``, if given, is applied to each
    result here as it arrives (its result is kept instead, and the worker's copy released). Shards, sweeps and
    plans all run through here, on an embedded LocalCluster or ``--scheduler``. Every wait has a deadline: the run
    stops with an error when no job has finished for ``stall_s`` seconds.
    """
    each = each or (lambda result: result)
    if progress:
        progress(0, len(jobs))
    if client is None:
        out = []
        for k, job in enumerate(jobs):
            out.append(each(function(*job)))
            if progress:
                progress(k + 1, len(jobs))
        return out
    common = client.scatter(list(jobs[0][:shared]), broadcast=True) if jobs and shared else []
    futures = [client.submit(function, *common, *job[shared:], pure=False) for job in jobs]
    position, out = {future.key: k for k, future in enumerate(futures)}, [None] * len(jobs)
    for k, future in enumerate(_as_finished(futures, stall_s)):
        out[position[future.key]] = each(_result(future))
        future.release()
        if progress:
            progress(k + 1, len(jobs))
    return out


def _as_finished(futures: list, stall_s: float):
    """Yield the ``futures`` as they finish; give up when none has finished for ``stall_s`` seconds.

    Raises:
        TestbedError: If ``stall_s`` passes with tasks still running and none finishing: saying how many are left.
    """
    from dask.distributed import wait
    pending = set(futures)
    while pending:
        try:
            done, pending = wait(pending, timeout=stall_s, return_when="FIRST_COMPLETED")
        except TimeoutError:
            raise TestbedError(f"{len(pending)} of {len(futures)} Dask tasks still running and none finished in "
                               f"{stall_s:g} s: a worker hangs (check the workers' machines: a stuck disk or "
                               "filesystem, a swapped-out process); the run stops") from None
        yield from done


def _result(future):
    """A finished task's result.

    Raises:
        TestbedError: If the task's worker process died under it as often as Dask allows (it is then the machine's
            limit, almost always memory, not a fault of the task): saying what to try.
    """
    from distributed import KilledWorker
    try:
        return future.result()
    except KilledWorker:
        raise TestbedError("a task's Dask worker process died each time it ran it (usually out of memory: each "
                           "worker holds a whole shard); try fewer --workers, or a machine with more memory") from None


def workers_see(client, path: Path) -> bool:
    """True when every Dask worker reads the file at ``path`` as this process does (a shared filesystem)."""
    expected = Path(path).read_bytes()
    seen = client.run(_reads, str(path))
    return bool(seen) and all(content == expected for content in seen.values())


def _reads(path: str) -> bytes | None:
    """The bytes of the file at ``path`` on this machine, or None if there is none (run on each worker)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def discard(folder: Path) -> None:
    """Remove a merged run's shard files (the merged tables hold everything)."""
    import shutil
    shutil.rmtree(Path(folder) / SHARDS_DIR, ignore_errors=True)
    (Path(folder) / PLAN_FILE).unlink(missing_ok=True)


def _check_plan(folder: Path, scenario: Scenario, seed: int, shards: list[Shard]) -> None:
    plan = {"scenario": scenario.name, "seed": seed, "shards": [[s.first, s.last] for s in shards],
            "scenario_digest": _digest(scenario), "layout": SHARD_LAYOUT}
    path = Path(folder) / PLAN_FILE
    if path.is_file():
        found = _read_plan(path)
        if found.get("layout") != SHARD_LAYOUT:
            raise TestbedError(f"{folder}: its shards were written by another version of the testbed; "
                               "start the run afresh")
        if found != plan:
            raise TestbedError(f"{folder}: holds shards of another run ({found['scenario']}, seed {found['seed']}); "
                               "resume only the run that was interrupted, with its seed")
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    shard_files.write_json(path, plan)


def _read_plan(path: Path) -> dict:
    """A partial folder's shard plan.

    Raises:
        TestbedError: If it is not a readable plan (damaged: then the run cannot be resumed).
    """
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TestbedError(f"{path}: the shard plan of this partial run is damaged ({exc}); start the run "
                           "afresh") from None
    if not isinstance(found, dict) or not {"scenario", "seed"} <= set(found):
        raise TestbedError(f"{path}: not a shard plan; start the run afresh")
    return found


def _digest(scenario: Scenario) -> str:
    import hashlib
    return hashlib.sha256(scenario.model_dump_json().encode()).hexdigest()[:16]


def shard_count(scenario: Scenario, topology: Topology) -> int:
    """How many shards a run of this scenario is split into."""
    return len(plan_shards(scenario, topology))


def wants_cluster(scenario: Scenario) -> bool:
    """True when a scenario is large enough that parallel shards beat one process (several shards' worth)."""
    return expected_sessions(scenario) > 2 * SESSIONS_PER_SHARD


def expected_sessions(scenario: Scenario) -> float:
    """About how many sessions a run of the scenario replays (its window's share of a day's)."""
    return workload.expected_sessions(scenario) * _window_share(scenario)


def _window_share(scenario: Scenario) -> float:
    return min(1.0, (scenario.window.end - scenario.window.start) / (10 * 3600.0))


