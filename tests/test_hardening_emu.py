"""An emulation killed with SIGKILL at any moment leaves nothing once ``testbed clean`` has run.

Needs root and what ``testbed doctor`` asks for; a real run of ci-smoke's slice is started and killed while it
builds its network, while its iperf3 probes verify the links, and while its agents replay the trace (their shells
die with it, so only the run's state file leads to them). Cleans up by its own prefix and PIDs only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.emu import capabilities
from sim.emu import clean as cleaner
from sim.emu.net import EmuSettings

_REASON = capabilities.why_not_here()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
STATE_DIR = Path(EmuSettings().state_dir)


def _state_of(owner_pid: int) -> tuple[Path, dict] | None:
    """The state file (and its content) of the emulation run by ``owner_pid``, if it has one yet."""
    for path in STATE_DIR.glob("tb*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("owner_pid") == owner_pid:
            return path, state
    return None


def _wait_for_pids(process: subprocess.Popen, label: str, attempts: int = 1800) -> tuple[Path, dict]:
    """Poll (every 0.1 s, a bounded number of times) until the run's state file lists processes named ``label``."""
    for _ in range(attempts):
        found = _state_of(process.pid)
        if found and any(name.startswith(label) for name in found[1]["pids"]):
            return found
        if process.poll() is not None:
            raise AssertionError(f"the run ended before starting its {label}: {process.communicate()[1][-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"the run never started its {label}")


def _group(pid: int) -> int | None:
    """The process group of ``pid``, or None if it has ended."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _in_namespaces(namespaces: set[str]) -> list[str]:
    """Every live process in one of ``namespaces``: its PID, state and command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _namespace(int(entry.name)) in namespaces:
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                found.append(f"{entry.name} {stat} {(entry / 'cmdline').read_bytes()[:80]!r}")
            except OSError:
                continue
    return found


def _mentioning(prefix: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if prefix.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _root_names(prefix: str, *command: str) -> list[str]:
    """Lines of ``command``'s output (root namespace) naming something of ``prefix``."""
    out = subprocess.run(list(command), capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if re.search(rf"\b{prefix}", line)]


def _assert_gone(prefix: str, state_path: Path, out: Path) -> None:
    """Nothing of the run ``prefix`` is left: no process naming it, link, qdisc, state file or partial folder."""
    assert _mentioning(prefix) == []
    assert _root_names(prefix, "ip", "-o", "link", "show") == []
    assert _root_names(prefix, "tc", "qdisc", "show") == []
    assert not state_path.exists() and not state_path.with_suffix(".tmp").exists()
    assert list(out.rglob("*.partial")) == [], "the killed run's unfinished results folder is still there"


def _end(process: subprocess.Popen, prefix: str | None) -> None:
    """Kill the run if the test failed before it ended, and clean what it left by its prefix."""
    if process.poll() is None:
        process.kill()
        process.communicate()
    if prefix:
        cleaner.clean(prefix, force=True)


def _start_emulated_run(scenarios_dir: Path, out: Path) -> subprocess.Popen:
    """Start ``testbed run ci-smoke --engine emu`` as its own process, as a user would."""
    script = "import sys\nfrom sim.cli import app\nsys.argv[0] = 'testbed'\napp(prog_name='testbed')\n"
    return subprocess.Popen([sys.executable, "-c", script, "run", str(scenarios_dir / "ci-smoke.yaml"),
                             "--engine", "emu", "--out", str(out), "--no-png"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("moment", ["iperf3", "agent"])  # verifying its links; replaying the trace
def test_killed_mid_run_then_clean_leaves_nothing_of_the_run(tmp_path, scenarios_dir, moment):
    process = _start_emulated_run(scenarios_dir, tmp_path)
    prefix = None
    try:
        path, state = _wait_for_pids(process, moment)
        if moment == "agent":
            time.sleep(3.0)  # the agents are replaying sessions (and every agent is recorded)
            state = json.loads(path.read_text())
        prefix = path.stem
        probes = {label: pid for label, pid in state["pids"].items() if label.startswith(moment)}
        namespaces = {ns for pid in state["pids"].values() if (ns := _namespace(pid))}
        started = cleaner.recorded_alive(state)
        assert started and all(_group(pid) in (pid, None) for pid in started), "each process leads its own group"
        process.send_signal(signal.SIGKILL)
        process.communicate()
        survivors = cleaner.recorded_alive(json.loads(path.read_text()))
        assert set(probes.values()) & set(survivors), f"the {moment}s did not outlive the killed run: nothing to test"
        assert list(tmp_path.rglob("*.partial")), "the killed run left no results folder: nothing to test"

        result = CliRunner().invoke(app, ["clean", prefix])
        assert result.exit_code == 0, result.output
        assert f"prefixes: {prefix}" in result.output

        assert not any(cleaner.pid_alive(pid) for pid in survivors)
        assert _in_namespaces(namespaces) == [], "a namespace of the killed run survived"
        assert not path.with_suffix("").exists()
        _assert_gone(prefix, path, tmp_path)
    finally:
        _end(process, prefix)


def _wait_for_build(process: subprocess.Popen, attempts: int = 1800) -> tuple[Path, dict]:
    """Poll (every 0.01 s, a bounded number of times) until the run has claimed its prefix and begun building."""
    for _ in range(attempts):
        found = _state_of(process.pid)
        if found and found[1].get("results"):
            return found
        if process.poll() is not None:
            raise AssertionError(f"the run ended before building its network: {process.communicate()[1][-2000:]}")
        time.sleep(0.01)
    raise AssertionError("the run never began building its network")


def test_killed_while_building_its_network_then_clean_leaves_nothing_of_the_run(tmp_path, scenarios_dir):
    # The run records its unfinished results folder as soon as it claims its prefix, before any node exists, so a
    # kill -9 mid-build leaves nothing that `clean` does not find (it used to be recorded once the network was up).
    process = _start_emulated_run(scenarios_dir, tmp_path)
    prefix = None
    try:
        path, state = _wait_for_build(process)
        prefix = path.stem
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert list(tmp_path.rglob("*.partial")), "the killed run left no results folder: nothing to test"
        result = CliRunner().invoke(app, ["clean", prefix])
        assert result.exit_code == 0, result.output
        _assert_gone(prefix, path, tmp_path)
    finally:
        _end(process, prefix)
