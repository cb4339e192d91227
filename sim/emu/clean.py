"""Claim a run prefix, record what a run starts, and remove what a crashed run of ours left behind.

Naming scheme: every emulation run has a prefix ``tb`` + 4 hex digits (e.g. ``tb3f9a``). Every Mininet node
(hence every namespace's shell, whose command line reads ``mininet:<node>``), interface, bridge and file of the
run starts with it. Before anything is built the run *claims* its prefix by creating
``<state_dir>/<prefix>.json`` exclusively; the file lists the owner's PID, the node names and every PID the run
starts (shells, shims, probe tools), and is rewritten as they start. A second run with the same prefix is refused.

All of a run's nodes live in their own network namespaces (switches too), so killing a run's processes frees its
namespaces, and with them its veth pairs, bridges, qdiscs and iptables rules. :func:`clean` therefore kills, by PID
only, every process whose command line names one of the run's nodes (``mininet:<prefix>...`` shells, and shims whose
``--name`` is a node) and every process living in one of those processes' network namespaces (shims, probes, traffic
agents). Recorded PIDs only help find those namespaces: a PID of a dead run is never killed on the record alone, since
the kernel may have given it to someone else. It then deletes any interface or bridge named with the prefix still in
the root namespace (none in normal operation), and the state files. It never touches anything without the prefix, and
never runs ``mn -c``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sim.errors import EngineError

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/run/nhs-testbed"
_PREFIX = re.compile(r"^tb[0-9a-f]{4}$")


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot, from ``/proc/<pid>/stat``), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22: after ")", the 20th
    except (OSError, IndexError, ValueError):
        return None


def recorded_alive(state: dict) -> list[int]:
    """The processes a state file recorded that still run: same PID *and* same start time (never a reused PID)."""
    starts = state.get("starts", {})
    return [pid for label, pid in state.get("pids", {}).items()
            if label in starts and pid_alive(pid) and start_ticks(pid) == starts[label]]


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class RunState:
    """The state file of one run: which prefix, who owns it, what it started."""

    prefix: str
    path: Path
    owner_pid: int
    nodes: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)  # label -> start time (clock ticks after boot)
    results: str | None = None  # the run's unfinished results folder (``.<run>.partial``), if it writes one

    def save(self) -> None:
        """Rewrite the state file atomically."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"prefix": self.prefix, "owner_pid": self.owner_pid, "nodes": self.nodes,
                                   "pids": self.pids, "starts": self.starts, "results": self.results}),
                       encoding="utf-8")
        os.replace(tmp, self.path)

    def record(self, label: str, pid: int) -> None:
        """Record a started process (``label`` says what it is) with its start time, and save.

        The start time tells the process from a later one given the same PID, so :func:`clean` can end it and
        its process group (every process an emulation starts leads its own: Mininet starts it with ``setsid``)
        from this file alone, after the run itself was killed.
        """
        self.pids[label] = pid
        started = start_ticks(pid)
        if started is not None:
            self.starts[label] = started
        self.save()

    def record_many(self, pids: dict[str, int]) -> None:
        """Record several started processes (label -> PID) with their start times, and save once."""
        for label, pid in pids.items():
            self.pids[label] = pid
            started = start_ticks(pid)
            if started is not None:
                self.starts[label] = started
        self.save()

    def record_results(self, folder: Path) -> None:
        """Record the run's unfinished results folder, for :func:`clean` to remove if the run is killed.

        Only a folder named as an unfinished run's (``.<run>.partial``) is ever removed.
        """
        self.results = str(folder)
        self.save()

    def forget(self, label: str) -> None:
        """Drop a process that has ended, and save."""
        self.starts.pop(label, None)
        if self.pids.pop(label, None) is not None:
            self.save()

    @property
    def work_dir(self) -> Path:
        """A directory for the run's scripts and shim state files, removed with the state file."""
        return self.path.with_suffix("")

    def release(self) -> None:
        """Delete the state file and the run's work directory."""
        for item in sorted(self.work_dir.glob("*"), reverse=True) if self.work_dir.exists() else []:
            item.unlink(missing_ok=True)
        if self.work_dir.exists():
            self.work_dir.rmdir()
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".tmp").unlink(missing_ok=True)


def claim(prefix: str, state_dir: str = DEFAULT_STATE_DIR) -> RunState:
    """Claim ``prefix`` for this process, or refuse if another run (live or crashed) holds it.

    Raises:
        EngineError: The prefix is malformed, already claimed, or named by a live process or interface.
    """
    if not _PREFIX.match(prefix):
        raise EngineError(f"run prefix {prefix!r} must be 'tb' and 4 lowercase hex digits")
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{prefix}.json"
    leftovers = _processes_named(prefix) + _root_links(prefix)
    if leftovers:
        raise EngineError(f"prefix {prefix} is in use (processes or interfaces named with it: {leftovers[:5]}); "
                          f"choose another prefix, or run `testbed clean {prefix}` if that run is dead")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        owner = _read(path).get("owner_pid")
        state = "running" if owner and pid_alive(owner) else "dead; run `testbed clean " + prefix + "`"
        raise EngineError(f"prefix {prefix} is already claimed by PID {owner} ({state}): {path}") from None
    os.close(fd)
    run = RunState(prefix, path, os.getpid())
    run.work_dir.mkdir(exist_ok=True)
    run.save()
    return run


@dataclass
class CleanReport:
    """What :func:`clean` removed, per prefix."""

    prefixes: list[str] = field(default_factory=list)
    killed_pids: list[int] = field(default_factory=list)
    deleted_links: list[str] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary, one line per kind of thing removed."""
        if not (self.killed_pids or self.deleted_links or self.deleted_files or self.skipped):
            return ["nothing of ours to clean"]
        return [f"prefixes: {', '.join(self.prefixes) or '-'}",
                f"killed {len(self.killed_pids)} processes: {self.killed_pids}",
                f"deleted {len(self.deleted_links)} interfaces/bridges: {self.deleted_links}",
                f"deleted {len(self.deleted_files)} state files: {self.deleted_files}",
                *[f"skipped {item}" for item in self.skipped]]


def clean(prefix: str | None = None, state_dir: str = DEFAULT_STATE_DIR, force: bool = False) -> CleanReport:
    """Remove what runs of ours left behind: processes, namespaces, interfaces, bridges, state files.

    Args:
        prefix: One run's prefix; ``None`` cleans every run whose owner process is dead.
        state_dir: Where the runs' state files are.
        force: Also clean a run whose owner is still alive (only with an explicit ``prefix``).

    Raises:
        EngineError: ``prefix`` is malformed.
    """
    if prefix is not None and not _PREFIX.fullmatch(prefix):
        raise EngineError(f"run prefix {prefix!r} must be 'tb' and 4 lowercase hex digits")
    report = CleanReport()
    directory = Path(state_dir)
    paths = [directory / f"{prefix}.json"] if prefix else sorted(directory.glob("tb*.json"))
    for path in paths:
        run_prefix = path.stem
        if not _PREFIX.match(run_prefix):
            continue
        state = _read(path)
        owner = state.get("owner_pid")
        if owner and owner != os.getpid() and pid_alive(owner) and not (force and prefix):
            report.skipped.append(f"{run_prefix} (its run, PID {owner}, is alive; pass force to clean it)")
            continue
        _clean_one(run_prefix, state, path, report)  # without a state file: what is named with the prefix
    return report


def _clean_one(prefix: str, state: dict, path: Path, report: CleanReport) -> None:
    report.prefixes.append(prefix)
    # Recorded PIDs only lead to namespaces (a dead run's PIDs may have been reused by others): a process is ours if
    # its command line names a node of the run, or it lives in the network namespace of such a process.
    # A recorded process whose start time matches is the one the run started (iperf3 probes, agents, shims): it is
    # ended with its process group even when nothing else leads to it (the run's shells died with the run).
    named = [pid for pid, _ in _processes_named(prefix)]
    recorded = [int(pid) for pid in state.get("pids", {}).values()]
    proven = recorded_alive(state)
    leads = named + proven + [p for p in recorded if _names_prefix(p, prefix)]
    pids = named + proven + processes_in_namespaces_of(leads)
    report.killed_pids += kill_pids(sorted(set(pids) - {os.getpid()}))
    for name in _root_links(prefix):
        if subprocess.run(["ip", "link", "del", name], capture_output=True).returncode == 0:
            report.deleted_links.append(name)
    _remove_partial_results(state.get("results"), report)
    work = path.with_suffix("")
    for item in [*(sorted(work.glob("*")) if work.is_dir() else []), path, path.with_suffix(".tmp")]:
        if item.exists():
            item.unlink()
            report.deleted_files.append(str(item))
    if work.is_dir():
        work.rmdir()


def _remove_partial_results(folder: str | None, report: CleanReport) -> None:
    """Remove a killed run's unfinished results folder, if that is what it is (named ``.<run>.partial``)."""
    path = Path(folder) if folder else None
    if path is None or not path.is_dir():
        return
    if not (path.name.startswith(".") and path.name.endswith(".partial")) or path.is_symlink():
        report.skipped.append(f"{path} (recorded as the run's results, but not an unfinished run's folder)")
        return
    shutil.rmtree(path)
    report.deleted_files.append(str(path))


def kill_pids(pids: list[int], grace_s: float = 2.0) -> list[int]:
    """SIGTERM each live PID, SIGKILL those still alive after ``grace_s`` (s); return the PIDs that were alive.

    A PID that leads its own process group (all an emulation starts do) is signalled with its whole group, so
    what it started (a probe's helper, an agent's child) ends with it.
    """
    alive = [pid for pid in pids if pid_alive(pid)]
    for pid in alive:
        _signal(pid, signal.SIGTERM)
    _wait_gone(alive, grace_s)
    for pid in alive:
        if pid_alive(pid):
            _signal(pid, signal.SIGKILL)
    _wait_gone(alive, KILL_WAIT_S)  # SIGKILL is not instant: a namespace is freed when its last process is gone
    return alive


KILL_WAIT_S = 2.0  # how long a SIGKILLed process may take to be gone (s); beyond that it is stuck in the kernel


def _wait_gone(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    try:
        if _leads_group(pid):
            os.killpg(pid, sig)
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _leads_group(pid: int) -> bool:
    """True when ``pid`` leads a process group other than ours (so signalling the group never reaches us)."""
    try:
        return os.getpgid(pid) == pid and pid != os.getpgrp()
    except OSError:
        return False


def processes_in_namespaces_of(pids: list[int]) -> list[int]:
    """Every process in the network namespace of any of ``pids`` (never the root namespace's)."""
    root_ns = _netns(1)
    namespaces = {_netns(pid) for pid in pids} - {None, root_ns}
    if not namespaces:
        return []
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _netns(int(e.name)) in namespaces]


def _names_prefix(pid: int, prefix: str) -> bool:
    try:
        return prefix.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _processes_named(prefix: str) -> list[tuple[int, str]]:
    """Processes whose command line names a node of ``prefix``: Mininet shells and our shims."""
    pattern = re.compile(rf"(mininet:{prefix}[a-z0-9]*\b|--name\x00{prefix}[a-z0-9]*\x00.*sim[./]emu[./]shim|"
                         rf"sim[./]emu[./]shim.*--name\x00{prefix})")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if pattern.search(cmdline):
            found.append((int(entry.name), cmdline.replace("\x00", " ").strip()[:80]))
    return found


def _root_links(prefix: str) -> list[str]:
    """Interfaces and bridges in the root namespace whose name starts with ``prefix``."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [name for name in names if name.startswith(prefix)]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
