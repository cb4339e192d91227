"""Build an emulated network's nodes and links, configure them, start its shims and probes (of :mod:`sim.emu.net`).

:meth:`sim.emu.net.EmuNet.start` calls :func:`create`, :func:`configure`, :func:`start_delays` and
:func:`start_stall_probes` in that order; the commands are data (:mod:`sim.emu.linkplan`, :mod:`sim.emu.mnnodes`),
run here one script per node, side by side.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sim.emu import batch, linkplan, mnnodes
from sim.emu.linkplan import NFQUEUE_DOWN, NFQUEUE_UP
from sim.errors import EngineError

if TYPE_CHECKING:
    from sim.emu.net import EmuNet

log = logging.getLogger(__name__)
SHIM_PATH = Path(__file__).with_name("shim.py")
STALL_PATH = Path(__file__).with_name("stall.py")


SHIM_READY_S = 10.0


def create(emu: EmuNet) -> dict[str, dict[str, tuple[str, str]]]:
    """Create ``emu``'s nodes (each in its own namespace) and links, and start Mininet; return each link's devices.

    The devices: link name -> role -> (node, interface), as :meth:`sim.emu.net.EmuNet.devices` gives them.
    """
    from mininet.log import setLogLevel
    from mininet.net import Mininet

    setLogLevel("error")
    emu.mn = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False,
                     waitConnected=False, ipBase="10.0.0.0/8")
    emu.state.nodes = [n.name for n in emu.plan.nodes]
    for k, spec in enumerate(emu.plan.nodes):  # every shell spawned first, then all awaited: side by side
        if spec.role == "switch":
            node = emu.mn.addSwitch(spec.name, cls=mnnodes.bridge_class(), inNamespace=True,
                                    dpid=f"{k + 1:016x}")
        else:
            node = emu.mn.addHost(spec.name, cls=mnnodes.host_class(), ip=f"{spec.ip}/8" if spec.ip else None)
        emu.nodes[spec.name] = node
    emu.state.record_many({f"shell {name}": node.pid for name, node in emu.nodes.items()})
    mnnodes.wait_shells(emu.nodes.values())
    devices = {link.name: _wire(emu, link) for link in emu.plan.links}
    mnnodes.create_veths(emu.mn.links)  # every veth pair at once (Mininet makes one per command)
    emu.mn.build()
    emu.mn.start()
    return devices


def _wire(emu: EmuNet, link: linkplan.LinkSpec) -> dict[str, tuple[str, str]]:
    inner, outer = emu.nodes[link.inner], emu.nodes[link.outer]
    def add(a, b):  # created by create_veths; set up by the node's script
        return emu.mn.addLink(a, b, cls=mnnodes.link_class(), up=None)

    if link.delay_node is None:
        first = add(inner, outer)
        return {"up": (link.inner, first.intf1.name), "down": (link.outer, first.intf2.name)}
    delay = emu.nodes[link.delay_node]
    first, second = add(inner, delay), add(delay, outer)
    # The up direction is shaped where it leaves the delay node, not on the sending host: a shaper on the
    # sender's own interface is throttled by TCP Small Queues (a socket keeps at most ~1 ms of data in the
    # qdisc below it), so an upload never filled the line's buffer (3 packets of 100 measured at 2 Mbit/s).
    # A constant delay before a FIFO queue delays every packet as after it.
    return {"up": (link.delay_node, second.intf1.name), "down": (link.outer, second.intf2.name),
            "delay_in_up": (link.delay_node, first.intf2.name),      # up packets enter the delay node here
            "delay_in_down": (link.delay_node, second.intf1.name)}   # down packets enter here


def configure(emu: EmuNet) -> None:
    """Address every node, shape each link direction, set delay nodes' bridges, loss and delay rules, static ARP.

    Raises:
        EngineError: Naming the first node whose script failed, with the failing step and its output.
    """
    allow_congestion_control(emu.plan.settings.congestion_control)
    scripts: dict[str, list[list[str]]] = {name: [] for name in emu.nodes}
    cc = emu.plan.settings.congestion_control
    for spec in emu.plan.nodes:
        cmds = scripts[spec.name]
        cmds.append(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        if spec.role != "switch":  # what Mininet's configHosts did, one ifconfig each
            node = emu.nodes[spec.name]
            cmds += mnnodes.address_cmds(node.defaultIntf().name if node.intfNames() else None, spec.ip)
        for intf in emu.nodes[spec.name].intfNames():
            if intf != "lo":
                cmds.append(["ip", "link", "set", intf, "up"])
                if spec.role in ("site", "home", "server"):  # packets <= MTU, so queues count real packets
                    cmds.append(["ethtool", "-K", intf, "tso", "off", "gso", "off", "gro", "off"])
        if spec.role in ("site", "home", "server"):
            cmds.append(["sysctl", "-qw", f"net.ipv4.tcp_congestion_control={cc}"])
    for link in emu.plan.links:
        dev = emu.devices(link)
        for direction in ("up", "down"):
            d = getattr(link, direction)
            node, intf = dev[direction]
            if d.rate_bps is not None:
                scripts[node] += linkplan.shaping_cmds(intf, d.rate_bps, d.queue_pkts, d.qos)
        if link.delay_node:
            scripts[link.delay_node] += _delay_node_cmds(emu, link, dev)
    _neighbours(emu, scripts)
    run_scripts({emu.nodes[name]: cmds for name, cmds in scripts.items()}, emu.state.work_dir)


def _delay_node_cmds(emu: EmuNet, link: linkplan.LinkSpec, dev: dict) -> list[list[str]]:
    port_up, port_down = dev["delay_in_up"][1], dev["delay_in_down"][1]
    cmds = linkplan.bridge_cmds(port_up, port_down)
    min_bytes = emu.plan.settings.loss_min_ip_bytes
    for port, direction, queue in ((port_up, "up", NFQUEUE_UP), (port_down, "down", NFQUEUE_DOWN)):
        d = getattr(link, direction)
        if d.loss:
            cmds += [linkplan.loss_count_rule(port, min_bytes), linkplan.loss_rule(port, d.loss, min_bytes)]
        if emu.plan.method == "nfqueue" and (link.total_delay_s(direction) or d.jitter_s):
            cmds.append(linkplan.nfqueue_rule(port, queue))
        elif emu.plan.method == "netem" and (link.total_delay_s(direction) or d.jitter_s):
            out = port_down if direction == "up" else port_up  # netem on the port the packets leave by
            cmds += linkplan.netem_cmds(out, link.total_delay_s(direction), d.jitter_s)
    return cmds


def _neighbours(emu: EmuNet, scripts: dict[str, list[list[str]]]) -> None:
    """Static ARP entries for the pairs that talk (site/home <-> server, site <-> its home): no ARP delays."""
    server = emu.plan.node("server")
    for site in emu.plan.sites:
        ends = [emu.plan.node("site", site), emu.plan.node("home", site)]
        for a in ends:
            for b in [server] + [e for e in ends if e is not a]:
                scripts[a.name].append(_neigh_cmd(emu, a, b))
            scripts[server.name].append(_neigh_cmd(emu, server, a))


def _neigh_cmd(emu: EmuNet, local: linkplan.NodeSpec, target: linkplan.NodeSpec) -> list[str]:
    return ["ip", "neigh", "replace", target.ip, "lladdr", emu.nodes[target.name].MAC(), "dev",
            emu.nodes[local.name].defaultIntf().name, "nud", "permanent"]


def start_delays(emu: EmuNet) -> None:
    """Start the delay shim of every delay node that delays (method ``nfqueue``); wait until each is up.

    Raises:
        EngineError: A shim exited (with its stderr) or did not start within :data:`SHIM_READY_S` s.
    """
    if emu.plan.method != "nfqueue":
        return
    for i, link in enumerate(emu.plan.links):
        if link.delay_node and (link.total_delay_s("up") or link.total_delay_s("down") or link.up.jitter_s):
            _start_shim(emu, link, emu.plan.settings.seed * 1000 + i)
    _wait_until_up({f"delay shim of {name}": (proc, emu.shim_state_path(name)) for name, proc in emu.shims.items()})


def start_stall_probes(emu: EmuNet) -> None:
    """Start a stall probe (:mod:`sim.emu.stall`) on each CPU the run may use, one priority above the shims.

    They run in the server's namespace, so the run's end (and :func:`sim.emu.clean.clean`) ends them with it.

    Raises:
        EngineError: A probe exited (with its stderr) or did not start within :data:`SHIM_READY_S` s.
    """
    server = emu.nodes[emu.plan.node("server").name]
    priority = str(emu.plan.settings.shim_realtime_priority + 1)
    for cpu in sorted(os.sched_getaffinity(0)):
        argv = [sys.executable, "-I", "-S", str(STALL_PATH), "--cpu", str(cpu), "--realtime", priority,
                "--state", str(emu.stall_state_path(cpu))]
        proc = server.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        emu.stall_probes[cpu] = proc
        emu.state.record(f"stall probe {cpu}", proc.pid)
    _wait_until_up({f"stall probe of CPU {cpu}": (proc, emu.stall_state_path(cpu))
                    for cpu, proc in emu.stall_probes.items()})


def _wait_until_up(started: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    """Wait until each process (by label) has written its state file; fail at once if one exits."""
    deadline = time.monotonic() + SHIM_READY_S
    for label, (proc, state_file) in started.items():
        while not state_file.exists():
            if proc.poll() is not None:
                raise EngineError(f"{label} exited ({proc.returncode}): "
                                  f"{proc.stderr.read().decode(errors='replace').strip()}")
            if time.monotonic() > deadline:
                raise EngineError(f"{label} did not start within {SHIM_READY_S:.0f} s")
            time.sleep(0.02)


def _start_shim(emu: EmuNet, link: linkplan.LinkSpec, seed: int) -> None:
    name = link.delay_node
    # -I -S: standard library only (the shim imports nothing else), no site-packages scan: ~20% less CPU to start.
    argv = [sys.executable, "-I", "-S", str(SHIM_PATH), "--name", name, "--seed", str(seed),
            "--state", str(emu.state.work_dir / f"{name}.shim.json"),
            "--control", str(emu.shim_control_path(name)),
            "--realtime", str(emu.plan.settings.shim_realtime_priority)]
    for direction, queue in (("up", NFQUEUE_UP), ("down", NFQUEUE_DOWN)):
        jitter_s = getattr(link, direction).jitter_s
        argv += ["--queue", f"{queue}:{link.total_delay_s(direction)!r}:{jitter_s!r}"]
    proc = emu.nodes[name].popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    emu.shims[name] = proc
    emu.state.record(f"shim {name}", proc.pid)


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
