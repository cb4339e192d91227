"""Estate-scale runs: the topology split into shards of sites, each replayed as a task, on Dask or in-process.

Sites interact only through the links they share, so a shard that keeps every shared link's sites together
replays exactly as it would in one process; each site's sessions come from its own generator. Sessions and
sites are judged on their own too, so each shard also evaluates its sessions and sites against the targets.
Each shard's trace, records, link series and verdicts are written atomically to ``shards/`` of the run's
partial folder as it finishes; an interrupted run resumes without redoing finished shards. Merging
(:mod:`sim.merge`) puts sessions back in the order a single-process run gives them (start time, then site,
then generation order), so the run's tables equal a single-process run's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim import des, targets, workload
from sim.errors import TestbedError
from sim.model.scenario import Scenario
from sim.topology import Topology

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]  # progress(done, total): shards, runs or jobs finished out of total

SHARDS_DIR = "shards"
PLAN_FILE = "shards.json"
SHARD_LAYOUT = 2  # what a shard writes (2: verdicts too); a partial folder of another layout is not resumed
SHARD_TABLES = ("trace", "records", "links", "session_verdicts", "site_verdicts")
SESSIONS_PER_SHARD = 60_000  # about 3 s of simulation: small enough to balance, large enough to amortise


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
        return Path(folder) / SHARDS_DIR / f"{self.name}.{table}.parquet"


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
    """Generate, simulate and judge one shard; write its tables atomically; report back.

    The tables (:data:`SHARD_TABLES`): the trace (with each session's ``site_index``, its site's row label),
    records, link series, each record's ``passed`` and ``reason`` (in record order) and its sites' verdicts.
    """
    started = time.perf_counter()
    part = sub_topology(topology, shard)
    trace = workload.generate(scenario, part, seed)
    trace["site_index"] = trace["site"].map(dict(zip(part.sites["site"], part.sites.index))).astype("int64")
    result = des.run(trace.drop(columns="site_index"), part, window)
    sessions = targets.session_verdicts(result.records, scenario.targets, scenario.catalogue.media())
    sites = targets.site_verdicts(sessions, result.links, part.sites, scenario.targets,
                                  (scenario.window.start, scenario.window.end))
    tables = {"trace": trace, "records": result.records, "links": result.links,
              "session_verdicts": sessions[list(targets.OUTCOME_COLUMNS)], "site_verdicts": sites}
    for name, frame in tables.items():
        _write_parquet(frame, shard.path(folder, name))
    done = ShardDone(shard.index, len(trace), result.events, time.perf_counter() - started)
    _write_json(Path(folder) / SHARDS_DIR / f"{shard.name}.done.json", done.__dict__)  # last: the shard is done
    return done


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically (a reader sees the whole file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def is_done(folder: Path, shard: Shard) -> bool:
    """True when the shard's outputs are all written."""
    return (Path(folder) / SHARDS_DIR / f"{shard.name}.done.json").is_file()


def has_progress(folder: Path) -> bool:
    """True when a run's partial ``folder`` holds a finished shard: worth keeping to resume."""
    return any((Path(folder) / SHARDS_DIR).glob("*.done.json"))


def run_shards(scenario: Scenario, topology: Topology, seed: int, window: des.RunWindow, folder: Path,
               client=None, progress: Progress | None = None) -> int:
    """Run every shard not yet done (on ``client`` if given, else in-process); return the events processed.

    ``progress(shards_done, shards_total)`` is called as shards finish.

    Raises:
        TestbedError: If ``folder`` holds shards of a different plan (another scenario, seed or split).
    """
    shards = plan_shards(scenario, topology)
    _check_plan(folder, scenario, seed, shards)
    todo = [s for s in shards if not is_done(folder, s)]
    finished = len(shards) - len(todo)

    def step(done: float, total: float) -> None:
        if progress:
            progress(finished + done, len(shards))

    jobs = [(scenario, topology, s, seed, window, str(folder)) for s in densest_first(scenario, topology, todo)]
    return sum(done.events for done in map_ordered(client, run_shard, jobs, step, shared=2))


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
                shared: int = 0) -> list:
    """Run ``function(*job)`` for every job on the Dask ``client`` (or here, if None); results in job order.

    ``progress(done, total)`` is called as jobs finish. The first ``shared`` arguments, the same in every job
    (e.g. the scenario and its topology), are sent to the workers once. Shards, sweeps and plans all run through
    here, on an embedded LocalCluster or ``--scheduler``.
    """
    if progress:
        progress(0, len(jobs))
    if client is None:
        out = []
        for k, job in enumerate(jobs):
            out.append(function(*job))
            if progress:
                progress(k + 1, len(jobs))
        return out
    from dask.distributed import as_completed
    common = client.scatter(list(jobs[0][:shared]), broadcast=True) if jobs and shared else []
    futures = [client.submit(function, *common, *job[shared:], pure=False) for job in jobs]
    for k, _ in enumerate(as_completed(futures)):
        if progress:
            progress(k + 1, len(jobs))
    return [f.result() for f in futures]


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
        found = json.loads(path.read_text())
        if found.get("layout") != SHARD_LAYOUT:
            raise TestbedError(f"{folder}: its shards were written by another version of the testbed; "
                               "start the run afresh")
        if found != plan:
            raise TestbedError(f"{folder}: holds shards of another run ({found['scenario']}, seed {found['seed']}); "
                               "resume only the run that was interrupted, with its seed")
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    _write_json(path, plan)


def _digest(scenario: Scenario) -> str:
    import hashlib
    return hashlib.sha256(scenario.model_dump_json().encode()).hexdigest()[:16]


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


@contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None) -> Iterator[object]:
    """A Dask client: on an existing scheduler (``tcp://host:8786``) or an embedded LocalCluster.

    ``workers=0`` yields None: shards then run one after another in this process.

    Raises:
        TestbedError: If ``scheduler`` is not an address, nothing answers there as a Dask scheduler within
            :data:`CONNECT_TIMEOUT_S` (refused, unroutable, or another kind of server), or ``workers`` is negative
            or more than :data:`WORKERS_PER_CORE_MAX` per core.
    """
    if workers == 0 and not scheduler:
        yield None
        return
    if scheduler:
        client = _connect(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    with _local_client(_worker_count(workers)) as client:
        yield client


CONNECT_TIMEOUT_S = 5.0  # to reach a scheduler and hear its greeting: a LAN or a tunnel answers well within it
GREETING_MAX_BYTES = 1 << 20  # a Dask greeting (handshake frame) is a few hundred bytes; other servers send text
WORKERS_PER_CORE_MAX = 4  # more processes than that only share the same cores, each with its own copy of the data


def _connect(scheduler: str):
    """A client of the scheduler at ``scheduler``, or a TestbedError saying why there is none."""
    from dask.distributed import Client
    protocol, host, port = _scheduler_address(scheduler)
    if protocol == "tcp":
        _check_greeting(scheduler, host, port)
    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except Exception as exc:  # noqa: BLE001 - whatever a wrong peer makes Dask raise, the fix is the address
        raise TestbedError(f"cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S:g} s "
                           f"({type(exc).__name__}: {exc}); check the address and that `dask scheduler` runs "
                           "there") from None


def _scheduler_address(scheduler: str) -> tuple[str, str, int]:
    """``(protocol, host, port)`` of a scheduler address (``tcp://host:8786``; the protocol defaults to tcp).

    Addresses of other protocols (``inproc://``, ``ucx://``) are Dask's to check: ``(protocol, "", 0)``.

    Raises:
        TestbedError: If it is not such an address.
    """
    from distributed.comm.addressing import parse_address, parse_host_port
    try:
        protocol, location = parse_address(scheduler)
        if protocol not in ("tcp", "tls"):
            return protocol, "", 0
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise TestbedError(f"--scheduler {scheduler!r}: not a scheduler address ({exc}); give one like "
                           "tcp://host:8786") from None
    if not host or not 0 < int(port) < 65536:
        raise TestbedError(f"--scheduler {scheduler!r}: needs a host and a port from 1 to 65535, like "
                           "tcp://host:8786")
    return protocol, host, int(port)


def _check_greeting(scheduler: str, host: str, port: int) -> None:
    """Connect and read the greeting a Dask server sends first (an 8-byte frame length, then the frame).

    Raises:
        TestbedError: If nothing accepts the connection, nothing is said within :data:`CONNECT_TIMEOUT_S`, or
            what is said is not a Dask frame (a web server, another service).
    """
    import socket
    import struct
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as conn:
            header = b""
            while len(header) < 8:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = conn.recv(8 - len(header))
                if not chunk:
                    break
                header += chunk
    except TimeoutError:
        raise TestbedError(f"the Dask scheduler at {scheduler!r} did not answer within {CONNECT_TIMEOUT_S:g} s "
                           "(an unroutable address, a firewall, or not a Dask scheduler); check the address") from None
    except OSError as exc:
        raise TestbedError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc.strerror or exc}; check the "
                           "address and that `dask scheduler` runs there") from None
    (length_bytes,) = struct.unpack("<Q", header) if len(header) == 8 else (0,)
    if not 0 < length_bytes <= GREETING_MAX_BYTES:
        raise TestbedError(f"{scheduler!r} answers, but not as a Dask scheduler (no Dask greeting); check the "
                           "address and port (a scheduler listens on 8786 by default)")


def _worker_count(workers: int | None) -> int:
    """The embedded cluster's worker processes: ``workers``, or one per core.

    Raises:
        TestbedError: If ``workers`` is negative or more than :data:`WORKERS_PER_CORE_MAX` per core.
    """
    cores = max(1, os.cpu_count() or 1)
    if workers is None:
        return cores
    if workers < 0 or workers > WORKERS_PER_CORE_MAX * cores:
        raise TestbedError(f"--workers {workers}: give 0 (everything in this process) to "
                           f"{WORKERS_PER_CORE_MAX * cores} ({WORKERS_PER_CORE_MAX} per core of this machine)")
    return workers


@contextmanager
def _local_client(workers: int) -> Iterator[object]:
    """A client of a new LocalCluster of ``workers`` processes, closed with it."""
    from dask.distributed import Client, LocalCluster
    try:
        # Dask's HTTP server always starts; on a free local port, two runs never compete for its default 8787.
        local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                             silence_logs=logging.ERROR)
    except Exception as exc:  # noqa: BLE001 - a cluster that cannot start is the machine's limit, not a bug
        raise TestbedError(f"could not start {workers} local Dask workers ({type(exc).__name__}: {exc}); try "
                           "fewer --workers, or --workers 0") from None
    with local, Client(local) as client:
        yield client


def shard_count(scenario: Scenario, topology: Topology) -> int:
    """How many shards a run of this scenario is split into."""
    return len(plan_shards(scenario, topology))


def wants_cluster(scenario: Scenario) -> bool:
    """True when a scenario is large enough that parallel shards beat one process (several shards' worth)."""
    return workload.expected_sessions(scenario) * _window_share(scenario) > 2 * SESSIONS_PER_SHARD


def _window_share(scenario: Scenario) -> float:
    return min(1.0, (scenario.window.end - scenario.window.start) / (10 * 3600.0))


