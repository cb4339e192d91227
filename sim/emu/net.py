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
for the topology and :mod:`sim.emu.shim` for the delay shim.
"""

from __future__ import annotations

import atexit
import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sim.emu import batch, capabilities, linkplan, mnnodes, probe, qos
from sim.emu.clean import RunState, claim, kill_pids, pid_alive, processes_in_namespaces_of
from sim.emu.linkplan import (
    NFQUEUE_DOWN,
    NFQUEUE_UP,
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
SHIM_PATH = Path(__file__).with_name("shim.py")
SHIM_READY_S = 10.0


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
            self._create()
            self._configure()
            self._start_delays()
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

    # ---- building ----------------------------------------------------------------------------------------------

    def _create(self) -> None:
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("error")
        self.mn = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False,
                          waitConnected=False, ipBase="10.0.0.0/8")
        self.state.nodes = [n.name for n in self.plan.nodes]
        for k, spec in enumerate(self.plan.nodes):  # every shell spawned first, then all awaited: side by side
            if spec.role == "switch":
                node = self.mn.addSwitch(spec.name, cls=mnnodes.bridge_class(), inNamespace=True,
                                         dpid=f"{k + 1:016x}")
            else:
                node = self.mn.addHost(spec.name, cls=mnnodes.host_class(), ip=f"{spec.ip}/8" if spec.ip else None)
            self.nodes[spec.name] = node
        self.state.record_many({f"shell {name}": node.pid for name, node in self.nodes.items()})
        mnnodes.wait_shells(self.nodes.values())
        for link in self.plan.links:
            self._devices[link.name] = self._wire(link)
        mnnodes.create_veths(self.mn.links)  # every veth pair at once (Mininet makes one per command)
        self.mn.build()
        self.mn.start()

    def _wire(self, link: linkplan.LinkSpec) -> dict[str, tuple[str, str]]:
        inner, outer = self.nodes[link.inner], self.nodes[link.outer]
        def add(a, b):  # created by create_veths; set up by the node's script
            return self.mn.addLink(a, b, cls=mnnodes.link_class(), up=None)

        if link.delay_node is None:
            first = add(inner, outer)
            return {"up": (link.inner, first.intf1.name), "down": (link.outer, first.intf2.name)}
        delay = self.nodes[link.delay_node]
        first, second = add(inner, delay), add(delay, outer)
        # The up direction is shaped where it leaves the delay node, not on the sending host: a shaper on the
        # sender's own interface is throttled by TCP Small Queues (a socket keeps at most ~1 ms of data in the
        # qdisc below it), so an upload never filled the line's buffer (3 packets of 100 measured at 2 Mbit/s).
        # A constant delay before a FIFO queue delays every packet as after it.
        return {"up": (link.delay_node, second.intf1.name), "down": (link.outer, second.intf2.name),
                "delay_in_up": (link.delay_node, first.intf2.name),      # up packets enter the delay node here
                "delay_in_down": (link.delay_node, second.intf1.name)}   # down packets enter here

    def _configure(self) -> None:
        allow_congestion_control(self.plan.settings.congestion_control)
        scripts: dict[str, list[list[str]]] = {name: [] for name in self.nodes}
        cc = self.plan.settings.congestion_control
        for spec in self.plan.nodes:
            cmds = scripts[spec.name]
            cmds.append(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            if spec.role != "switch":  # what Mininet's configHosts did, one ifconfig each
                node = self.nodes[spec.name]
                cmds += mnnodes.address_cmds(node.defaultIntf().name if node.intfNames() else None, spec.ip)
            for intf in self.nodes[spec.name].intfNames():
                if intf != "lo":
                    cmds.append(["ip", "link", "set", intf, "up"])
                    if spec.role in ("site", "home", "server"):  # packets <= MTU, so queues count real packets
                        cmds.append(["ethtool", "-K", intf, "tso", "off", "gso", "off", "gro", "off"])
            if spec.role in ("site", "home", "server"):
                cmds.append(["sysctl", "-qw", f"net.ipv4.tcp_congestion_control={cc}"])
        for link in self.plan.links:
            dev = self._devices[link.name]
            for direction in ("up", "down"):
                d = getattr(link, direction)
                node, intf = dev[direction]
                if d.rate_bps is not None:
                    scripts[node] += linkplan.shaping_cmds(intf, d.rate_bps, d.queue_pkts, d.qos)
            if link.delay_node:
                scripts[link.delay_node] += self._delay_node_cmds(link, dev)
        self._neighbours(scripts)
        run_scripts({self.nodes[name]: cmds for name, cmds in scripts.items()}, self.state.work_dir)

    def _delay_node_cmds(self, link: linkplan.LinkSpec, dev: dict) -> list[list[str]]:
        port_up, port_down = dev["delay_in_up"][1], dev["delay_in_down"][1]
        cmds = linkplan.bridge_cmds(port_up, port_down)
        min_bytes = self.plan.settings.loss_min_ip_bytes
        for port, direction, queue in ((port_up, "up", NFQUEUE_UP), (port_down, "down", NFQUEUE_DOWN)):
            d = getattr(link, direction)
            if d.loss:
                cmds += [linkplan.loss_count_rule(port, min_bytes), linkplan.loss_rule(port, d.loss, min_bytes)]
            if self.plan.method == "nfqueue" and (link.total_delay_s(direction) or d.jitter_s):
                cmds.append(linkplan.nfqueue_rule(port, queue))
            elif self.plan.method == "netem" and (link.total_delay_s(direction) or d.jitter_s):
                out = port_down if direction == "up" else port_up  # netem on the port the packets leave by
                cmds += linkplan.netem_cmds(out, link.total_delay_s(direction), d.jitter_s)
        return cmds

    def _neighbours(self, scripts: dict[str, list[list[str]]]) -> None:
        """Static ARP entries for the pairs that talk (site/home <-> server, site <-> its home): no ARP delays."""
        server = self.plan.node("server")
        for site in self.plan.sites:
            ends = [self.plan.node("site", site), self.plan.node("home", site)]
            for a in ends:
                for b in [server] + [e for e in ends if e is not a]:
                    scripts[a.name].append(self._neigh_cmd(a, b))
                scripts[server.name].append(self._neigh_cmd(server, a))

    def _neigh_cmd(self, local: linkplan.NodeSpec, target: linkplan.NodeSpec) -> list[str]:
        return ["ip", "neigh", "replace", target.ip, "lladdr", self.nodes[target.name].MAC(), "dev",
                self.nodes[local.name].defaultIntf().name, "nud", "permanent"]

    def _start_delays(self) -> None:
        if self.plan.method != "nfqueue":
            return
        for i, link in enumerate(self.plan.links):
            if link.delay_node and (link.total_delay_s("up") or link.total_delay_s("down") or link.up.jitter_s):
                self._start_shim(link, self.plan.settings.seed * 1000 + i)
        deadline = time.monotonic() + SHIM_READY_S
        for name, proc in self.shims.items():
            state_file = self.state.work_dir / f"{name}.shim.json"
            while not state_file.exists():
                if proc.poll() is not None:
                    raise EngineError(f"delay shim of {name} exited ({proc.returncode}): "
                                      f"{proc.stderr.read().decode(errors='replace').strip()}")
                if time.monotonic() > deadline:
                    raise EngineError(f"delay shim of {name} did not start within {SHIM_READY_S:.0f} s")
                time.sleep(0.02)

    def _start_shim(self, link: linkplan.LinkSpec, seed: int) -> None:
        name = link.delay_node
        # -I -S: standard library only (the shim imports nothing else), no site-packages scan: ~20% less CPU to start.
        argv = [sys.executable, "-I", "-S", str(SHIM_PATH), "--name", name, "--seed", str(seed),
                "--state", str(self.state.work_dir / f"{name}.shim.json"),
                "--control", str(self.shim_control_path(name)),
                "--realtime", str(self.plan.settings.shim_realtime_priority)]
        for direction, queue in (("up", NFQUEUE_UP), ("down", NFQUEUE_DOWN)):
            jitter_s = getattr(link, direction).jitter_s
            argv += ["--queue", f"{queue}:{link.total_delay_s(direction)!r}:{jitter_s!r}"]
        proc = self.nodes[name].popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.shims[name] = proc
        self.state.record(f"shim {name}", proc.pid)

    def shim_control_path(self, delay_node: str) -> Path:
        """The control file the shim of ``delay_node`` reads on SIGUSR1 (new delays; see :mod:`sim.emu.shim`)."""
        return self.state.work_dir / f"{delay_node}.shim-control.json"

    def shim_state_path(self, delay_node: str) -> Path:
        """The state file the shim of ``delay_node`` keeps (JSON; see :mod:`sim.emu.shim`)."""
        return self.state.work_dir / f"{delay_node}.shim.json"

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


def allow_congestion_control(name: str) -> None:
    """Let namespaces choose TCP congestion control ``name`` as their default.

    A network namespace may only set a default the kernel lists as *allowed* (``reno bbr`` here); this adds
    ``name`` to that machine-wide list (additive: it only lets unprivileged sockets pick it too).

    Raises:
        EngineError: The kernel does not have ``name``.
    """
    base = Path("/proc/sys/net/ipv4")
    available = (base / "tcp_available_congestion_control").read_text().split()
    if name not in available:
        raise EngineError(f"TCP congestion control {name!r} is not in this kernel (it has {' '.join(available)})")
    allowed = (base / "tcp_allowed_congestion_control").read_text().split()
    if name not in allowed:
        log.info("adding %s to net.ipv4.tcp_allowed_congestion_control (was: %s)", name, " ".join(allowed))
        (base / "tcp_allowed_congestion_control").write_text(" ".join(allowed + [name]))


def run_script(node, cmds: list[list[str]], path: Path) -> str:
    """Run ``cmds`` in ``node`` as one shell script; return its output.

    Raises:
        EngineError: Naming the first command that failed, with its output.
    """
    lines = ["#!/bin/sh"]
    for cmd in cmds:
        quoted = shlex.join(cmd)
        lines.append(f"{quoted} || {{ echo {shlex.quote('FAILED: ' + quoted)}; exit 1; }}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, err, code = node.pexec(["sh", str(path)])
    if code != 0:
        raise EngineError(f"configuring {node.name} failed: {(out + err).strip()[-800:]}")
    return out


def run_scripts(scripts: dict[object, list[list[str]]], work_dir: Path, in_flight: int = 16) -> None:
    """Run each node's ``cmds`` as one script of batched commands (:mod:`sim.emu.batch`), nodes side by side.

    At most ``in_flight`` scripts run at once; every one is waited for before a failure is raised.

    Raises:
        EngineError: Naming the first node whose script failed, with the failing step and its output.
    """
    pending, running, failed = list(scripts.items()), [], []
    while pending or running:
        while pending and len(running) < in_flight:
            node, cmds = pending.pop(0)
            path = work_dir / f"{node.name}.sh"
            path.write_text(batch.script(batch.batch(cmds)), encoding="utf-8")
            running.append((node, node.popen(["sh", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        node, proc = running.pop(0)
        out = proc.communicate()[0].decode(errors="replace")
        if proc.returncode != 0:
            failed.append(f"configuring {node.name} failed: {out.strip()[-800:]}")
    if failed:
        raise EngineError(failed[0] + (f" (and {len(failed) - 1} other node(s))" if len(failed) > 1 else ""))
