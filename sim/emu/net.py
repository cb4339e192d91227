"""Build, start, verify and stop the emulated network of a few sites (Mininet, Linux bridges, HTB, delay nodes).

Usage::

    with net.build(topology, ["gp-adsl", "gp-fttp"], net.new_prefix(), EmuSettings()) as emu:
        net.verify(emu)                      # raises EngineError naming a link that is not as configured
        host = emu.node(emu.endpoints().sites["gp-adsl"].host)
        proc = host.popen([...]); emu.record_pid("agent gp-adsl", proc.pid)

:func:`build` only plans (pure: bad input raises before anything exists); ``start()`` (or ``with``) builds the
network. Every node runs in its own network namespace (switches too), so nothing is created in the machine's
root namespace, and two runs with different prefixes never meet. Teardown is guaranteed: ``stop()`` runs on
leaving the ``with`` block, on an exception during start, and on SIGTERM (turned into ``SystemExit``) or SIGINT;
after a SIGKILL, :func:`sim.emu.clean.clean` removes the leftovers by prefix and PID. See :mod:`sim.emu.linkplan`
for the topology, :mod:`sim.emu.netbuild` for how it is built and :mod:`sim.emu.shim` for the delay shim.
"""

from __future__ import annotations

import atexit
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path

from sim.emu import capabilities, linkplan, netbuild, probe, qos
from sim.emu.clean import RunState, claim, kill_pids, pid_alive, processes_in_namespaces_of
from sim.emu.linkplan import (
    CapacityEstimate,
    EmuSettings,
    NetPlan,
    check_capacity,
    estimate,
    new_prefix,
)
from sim.errors import EngineError

__all__ = ["EmuNet", "EmuSettings", "CapacityEstimate", "build", "verify", "check_qos", "estimate",
           "check_capacity", "new_prefix"]

log = logging.getLogger(__name__)


def build(topology, sites: list[str], prefix: str, settings: EmuSettings | None = None,
          caps: capabilities.Capabilities | None = None,
          offered_bps: dict[str, float] | None = None) -> EmuNet:
    """Plan the network for ``sites`` and check it fits the machine; nothing is created until ``start()``.

    Args:
        topology: A :class:`sim.topology.Topology` (rates bit/s, delays s, buffers bytes).
        sites: The sites to emulate.
        prefix: The run prefix, ``tb`` + 4 hex digits (:func:`new_prefix`).
        settings: Build settings (defaults: :class:`EmuSettings`).
        caps: Detected capabilities (detected here when None).
        offered_bps: Peak traffic per site, both directions together (bit/s), for the capacity check; sites
            left out are assumed to fill their access link both ways.

    Raises:
        EngineError: Bad sites, prefix or rates (the message names the link).
        CapabilityError: The machine lacks a feature, or cannot carry this many sites (with the estimate).
    """
    settings = settings or EmuSettings()
    caps = caps or capabilities.detect()
    method = capabilities.require(caps, settings.delay_method)
    net_plan = linkplan.plan(topology, list(sites), prefix, settings, method)
    check_capacity(estimate(topology, list(sites), settings=settings, method=method, offered_bps=offered_bps,
                            cores=caps.cores))
    return EmuNet(net_plan)


def verify(emu: EmuNet, tolerance: probe.Tolerance | None = None) -> probe.VerifyReport:
    """Check every link's configuration in force, then probe RTT and rate per site path (about 5 s).

    A priority line's classes, queues and EF filter are checked first (:func:`check_qos`).

    Raises:
        EngineError: Naming the link whose configuration or measurement is out of tolerance.
    """
    checked = check_qos(emu)
    report = probe.verify(emu, tolerance or probe.Tolerance())
    report.rows[:0] = checked
    return report


def check_qos(emu: EmuNet) -> list[dict]:
    """Check that every priority link direction has its two HTB classes, their queues and the EF filter in force.

    Returns:
        One verification row per priority link direction (``link``, ``what``, ``expected``, ``measured``, ``ok``).

    Raises:
        EngineError: Naming the link direction and what differs from the plan.
    """
    rows = []
    for link in emu.plan.links:
        for direction in ("up", "down"):
            d = getattr(link, direction)
            if d.rate_bps is None or d.qos != "priority":
                continue
            node_name, intf = emu.devices(link)[direction]
            node = emu.node(node_name)
            found = [qos.parse_classes(_tc(node, "class", intf)), qos.parse_pfifo_limits(_tc(node, "qdisc", intf)),
                     qos.parse_dsfield_filters(_tc(node, "filter", intf))]
            problems = qos.problems(*found, d.rate_bps, d.queue_pkts)
            rows.append({"link": link.name, "what": f"{direction} qos priority classes", "expected": "in force",
                         "measured": "; ".join(problems) or "in force", "ok": not problems})
            if problems:
                raise EngineError(f"link {link.name} {direction}: the priority queue is not as configured on "
                                  f"{intf}: {'; '.join(problems)}")
    return rows


def _tc(node, what: str, intf: str) -> str:
    out, err, code = node.pexec(["tc", what, "show", "dev", intf])
    if code != 0:
        raise EngineError(f"tc {what} show dev {intf} in {node.name} failed: {(out + err).strip()}")
    return out


class EmuNet:
    """A planned network: ``start()`` builds it, ``stop()`` removes every trace of it; a context manager."""

    def __init__(self, net_plan: NetPlan) -> None:
        self.plan = net_plan
        self.prefix = net_plan.prefix
        self.mn = None
        self.state: RunState | None = None
        self.nodes: dict[str, object] = {}
        self.shims: dict[str, subprocess.Popen] = {}
        self.stall_probes: dict[int, subprocess.Popen] = {}  # CPU -> its stall probe (sim.emu.stall)
        self._old_handlers: dict[int, object] = {}
        self._devices: dict[str, dict[str, tuple[str, str]]] = {}
        self.results_folder: Path | None = None  # an unfinished results folder, recorded before anything is built

    # ---- public ------------------------------------------------------------------------------------------------

    def __enter__(self) -> EmuNet:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> EmuNet:
        """Create nodes, links, bridges, shaping, delay and loss; start the shims. Undone in full on failure.

        Raises:
            EngineError: A command failed (with the command and its output) or a shim did not come up.
        """
        t0 = time.monotonic()
        self.state = claim(self.prefix, self.plan.settings.state_dir)
        if self.results_folder is not None:  # so that clean removes it whenever the run is killed, even mid-build
            self.state.record_results(self.results_folder)
        self._trap_signals()
        atexit.register(self.stop)  # a SystemExit outside a ``with`` block still tears down
        try:
            self._devices = netbuild.create(self)
            netbuild.configure(self)
            netbuild.start_delays(self)
            netbuild.start_stall_probes(self)
        except BaseException:
            self.stop()
            raise
        log.info("emulated network %s up in %.1f s (%d nodes, method %s)", self.prefix, time.monotonic() - t0,
                 len(self.nodes), self.plan.method)
        return self

    def stop(self) -> None:
        """Stop every process of the run (by PID), remove nodes, links and bridges, release the prefix."""
        # Everything running in the run's namespaces (shims, probes, agents), by PID; the shells go last.
        shells = [node.pid for node in self.nodes.values() if getattr(node, "pid", None)]
        kill_pids([p for p in processes_in_namespaces_of(shells) if p not in shells], grace_s=2.0)
        try:
            if self.mn is not None:
                self.mn.stop()
        finally:
            self.mn = None
            self.nodes.clear()
            self.shims.clear()
            self.stall_probes.clear()
            kill_pids([p for p in shells if pid_alive(p)], grace_s=1.0)
            if self.state is not None:
                self.state.release()
                self.state = None
            self._restore_signals()
            atexit.unregister(self.stop)

    def node(self, name: str):
        """The Mininet node called ``name`` (run agents with ``node.popen(argv)``)."""
        return self.nodes[name]

    def record_pid(self, label: str, pid: int) -> None:
        """Record a process started in a node, so ``stop()`` and ``clean()`` end it by PID."""
        if self.state is not None:
            self.state.record(label, pid)

    def endpoints(self):
        """Hosts and IPs: :class:`sim.emu.traffic.Endpoints` (site -> site host, site -> home host, server)."""
        from sim.emu.traffic import Endpoint, Endpoints

        def end(role: str, site: str | None) -> Endpoint:
            spec = self.plan.node(role, site)
            return Endpoint(spec.name, spec.ip)

        return Endpoints({s: end("site", s) for s in self.plan.sites}, {s: end("home", s) for s in self.plan.sites},
                         end("server", None))

    def links(self) -> list[dict]:
        """Every link direction as configured and the method that applies it (for meta.json)."""
        return self.plan.describe()

    def devices(self, link: linkplan.LinkSpec) -> dict[str, tuple[str, str]]:
        """Where each part of ``link`` lives: role -> (node, interface) for ``up``/``down`` shaping and delay."""
        return self._devices[link.name]

    # ---- the delay shims' files (sim.emu.netbuild starts the shims) ------------------------------------------------

    def shim_control_path(self, delay_node: str) -> Path:
        """The control file the shim of ``delay_node`` reads on SIGUSR1 (new delays; see :mod:`sim.emu.shim`)."""
        return self.state.work_dir / f"{delay_node}.shim-control.json"

    def shim_state_path(self, delay_node: str) -> Path:
        """The state file the shim of ``delay_node`` keeps (JSON; see :mod:`sim.emu.shim`)."""
        return self.state.work_dir / f"{delay_node}.shim.json"

    def stall_state_path(self, cpu: int) -> Path:
        """The state file the stall probe of CPU ``cpu`` keeps (JSON; see :mod:`sim.emu.stall`)."""
        return self.state.work_dir / f"{self.prefix}.stall{cpu}.json"

    # ---- signals -----------------------------------------------------------------------------------------------

    def _trap_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _raise_exit)

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()


def _raise_exit(signum, _frame) -> None:
    raise SystemExit(128 + signum)
