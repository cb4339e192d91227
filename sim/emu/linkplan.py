"""Topology -> emulated network plan, as plain data: nodes, links per direction, and the commands that make them.

Nothing here touches the machine (Mininet's ``bwCmds`` idiom: commands are built as data, run in one place by
:mod:`sim.emu.net`), so the whole translation is tested without root.

The emulated network, for each chosen site ``i``::

    site s_i --[access i: delay node d_i]-- (agg switch a_j --[shared j]--) core switch c -- server sv
    home h_i --[home i: delay node e_i]---------------------------------------- core switch c

* An access link is shaped per direction with HTB and a drop-tail ``pfifo`` of ``ceil(buffer_bytes / 1500)``
  (the direction's own buffer: ``buffer_up_bytes`` or ``buffer_down_bytes``)
  packets: ``up`` (away from the site) where it leaves the delay node (at the site's interface when the link has
  no delay node), ``down`` at the switch's interface. Never on the sending host's own interface where avoidable:
  TCP Small Queues would keep an upload's data in its socket and the line's buffer would never fill. A site whose
  ``qos`` is ``priority`` gets two HTB classes instead, calls' DSCP EF packets served first, each class with its own
  ``pfifo`` of that length (:mod:`sim.emu.qos`).
* Its delay node adds the access line's one-way delay (``rtt_s / 2``), jitter and random loss, *and* the core's
  one-way delay (``cloud_rtt_s / 2``): the core is uncontended (docs/model.md), so applying its delay per site
  (where traffic is still per site) is exact and spares a shared, CPU-bound delay stage. Site -> server is then
  ``rtt_s + cloud_rtt_s`` of round trip, site -> home ``rtt_s + cloud_rtt_s + home.rtt_s``, as in the simulator.
* A shared link (an aggregation) is shaped only when it can be a bottleneck (its rate below the sum of its chosen
  members' access rates in that direction); otherwise it is a plain switch port, which is exact.
* Loss is an iptables ``statistic`` drop on the delay node's forwarding path, applied only to IPv4 packets of at
  least ``loss_min_ip_bytes`` (data packets): TCP SYNs, pure ACKs, pings and the tools' small set-up datagrams are
  never dropped, so a lost handshake cannot abort a tool. Small media packets below the threshold are not lost.
  A counting rule with the same matches precedes it, so the loss applied is measured during a run.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import asdict, dataclass, field

from sim.emu.qos import QOS_KINDS, priority_cmds
from sim.errors import CapabilityError, EngineError

PREFIX_PATTERN = re.compile(r"^tb[0-9a-f]{4}$")
MAX_IFNAME_CHARS = 15
FRAME_BYTES = 1514  # an Ethernet frame carrying a 1500-byte IP packet, as HTB counts it
NFQUEUE_UP, NFQUEUE_DOWN = 1, 2  # queue numbers inside each delay node (queues are per namespace)
METHODS = ("netem", "nfqueue")


@dataclass(frozen=True)
class EmuSettings:
    """How the emulated network is built and checked.

    Attributes:
        delay_method: ``auto`` (netem where the kernel has it, else the NFQUEUE shim), ``netem`` or ``nfqueue``.
        congestion_control: TCP congestion control set in every host (new namespaces inherit the machine's).
        loss_min_ip_bytes: Random loss drops only IPv4 packets at least this long (bytes).
        max_rate_bps: Highest rate HTB is trusted to shape here (bit/s); faster shaped links are refused.
        mtu_bytes: IP MTU (bytes); queue lengths are ``ceil(buffer_bytes / mtu_bytes)`` packets, each direction
            its own buffer.
        shim_budget_pps: Packets per second one shim process forwards without falling behind.
        machine_budget_pps: Packets per second all shims together may carry on a 2-core machine (scaled by
            cores / 2).
        home_buffer_bytes: Drop-tail buffer of the homes' access links each way (bytes), where the topology's home
            has none of its own (a topology built from a scenario gives its home profile's).
        max_nodes: Most Mininet nodes (hosts, delay nodes, switches) one run may start.
        seed: Seed of the shims' jitter draws.
        shim_realtime_priority: SCHED_FIFO priority of the delay shims (0: normal scheduling).
        state_dir: Where each run keeps its state file (PIDs and names, for ``clean``).
    """

    delay_method: str = "auto"
    congestion_control: str = "cubic"
    loss_min_ip_bytes: int = 100
    max_rate_bps: float = 1e9
    mtu_bytes: int = 1500
    shim_budget_pps: float = 40_000.0
    machine_budget_pps: float = 60_000.0
    home_buffer_bytes: float = 150e3
    max_nodes: int = 400
    seed: int = 0
    shim_realtime_priority: int = 10
    state_dir: str = "/run/nhs-testbed"


@dataclass(frozen=True)
class Direction:
    """One direction of a link as configured; ``rate_bps``/``queue_pkts`` are None where it is not shaped.

    ``qos`` is ``fifo`` (one drop-tail queue) or ``priority`` (DSCP EF first, :mod:`sim.emu.qos`).
    """

    rate_bps: float | None
    queue_pkts: int | None
    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    qos: str = "fifo"


@dataclass(frozen=True)
class LinkSpec:
    """A link between an inner node (site, home, server, aggregation switch) and an outer switch.

    ``up`` leaves the inner node, ``down`` reaches it. ``extra_delay_s`` is delay the link's delay node also
    applies on behalf of the core (one way, s), so the delay node's total per direction is
    ``delay_s + extra_delay_s``.
    """

    name: str
    kind: str
    site: str | None
    inner: str
    outer: str
    delay_node: str | None
    up: Direction
    down: Direction
    extra_delay_s: float = 0.0

    def total_delay_s(self, direction: str) -> float:
        """One-way delay the delay node applies in ``direction`` (``up``/``down``), in s."""
        return getattr(self, direction).delay_s + self.extra_delay_s


@dataclass(frozen=True)
class NodeSpec:
    """A Mininet node: ``role`` is site, home, server, delay or switch; ``ip`` is None for delay nodes/switches."""

    name: str
    role: str
    ip: str | None = None
    site: str | None = None


@dataclass(frozen=True)
class NetPlan:
    """Everything to build: nodes, links, and the delay method in use."""

    prefix: str
    method: str
    settings: EmuSettings
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]
    sites: tuple[str, ...] = field(default=())

    def node(self, role: str, site: str | None = None) -> NodeSpec:
        """The node of ``role`` for ``site`` (the server and the core switch have no site).

        Raises:
            KeyError: If there is none.
        """
        for node in self.nodes:
            if node.role == role and node.site == site:
                return node
        raise KeyError(f"no {role} node for {site!r}")

    def describe(self) -> list[dict]:
        """One dict per link direction (rates bit/s, delays s, loss a fraction), for a run's meta.json."""
        rows = []
        for link in self.links:
            for direction in ("up", "down"):
                d = getattr(link, direction)
                delay_method = self.method if link.delay_node and (d.delay_s or d.jitter_s) else "none"
                rows.append({"name": link.name, "kind": link.kind, "site": link.site, "direction": direction,
                             "rate_bps": d.rate_bps, "queue_packets": d.queue_pkts, "delay_s": d.delay_s,
                             "jitter_s": d.jitter_s, "loss": d.loss,
                             "method": delay_method, "qos": d.qos if d.rate_bps else "none",
                             "shaping": _shaping(d),
                             "loss_method": "iptables-statistic" if d.loss else "none",
                             "delay_node": link.delay_node})
                if link.extra_delay_s:
                    rows.append({"name": f"core:{link.site}", "kind": "core", "site": link.site,
                                 "direction": direction, "rate_bps": None, "queue_packets": None,
                                 "delay_s": link.extra_delay_s, "jitter_s": 0.0, "loss": 0.0,
                                 "method": self.method, "shaping": "none", "loss_method": "none",
                                 "delay_node": link.delay_node})
        return rows

    def as_dict(self) -> dict:
        """The plan as JSON-ready data."""
        return {"prefix": self.prefix, "method": self.method, "settings": asdict(self.settings),
                "links": self.describe(), "nodes": [asdict(node) for node in self.nodes]}


def _shaping(d: Direction) -> str:
    if not d.rate_bps:
        return "none"
    return "htb+pfifo" if d.qos == "fifo" else "htb 2 classes (EF prio 0) + u32 dsfield + 2 pfifo"


def site_qos(row: dict) -> str:
    """A site row's ``qos`` (``fifo`` where the topology has no such column, e.g. a hand-built one).

    Raises:
        EngineError: An unknown discipline, naming the site.
    """
    value = row.get("qos")
    qos = value if isinstance(value, str) and value else "fifo"
    if qos not in QOS_KINDS:
        raise EngineError(f"site {row.get('site')}: qos {qos!r} is not one of {QOS_KINDS}")
    return qos


def new_prefix() -> str:
    """A fresh run prefix: ``tb`` and four hex digits (every node, interface and state file of a run carries it)."""
    return "tb" + secrets.token_hex(2)


def check_prefix(prefix: str) -> None:
    """Raise ``EngineError`` unless ``prefix`` follows the testbed's scheme (``tb`` + 4 lowercase hex digits)."""
    if not PREFIX_PATTERN.match(prefix):
        raise EngineError(f"run prefix {prefix!r} must be 'tb' and 4 lowercase hex digits, e.g. {new_prefix()!r}")


def queue_pkts(buffer_bytes: float, mtu_bytes: int) -> int:
    """Drop-tail queue length (packets) for a buffer of ``buffer_bytes`` (at least 2 packets)."""
    return max(2, math.ceil(buffer_bytes / mtu_bytes))


def plan(topology, sites: list[str], prefix: str, settings: EmuSettings, method: str) -> NetPlan:
    """Translate the chosen sites of ``topology`` into a :class:`NetPlan` (no side effects).

    Args:
        topology: A :class:`sim.topology.Topology` (rates bit/s, delays s, buffers bytes).
        sites: Names of the sites to emulate, in order (index ``i`` names the nodes).
        prefix: The run prefix (see :func:`new_prefix`).
        settings: Build settings.
        method: ``netem`` or ``nfqueue`` (see :mod:`sim.emu.capabilities`).

    Raises:
        EngineError: Unknown or repeated sites, a bad prefix or method, a shaped rate above
            ``settings.max_rate_bps``, or a negative/non-finite figure; the message names the link.
    """
    check_prefix(prefix)
    if method not in METHODS:
        raise EngineError(f"delay method {method!r} is not one of {METHODS}")
    rows = _site_rows(topology, sites)
    p, core = prefix, f"{prefix}c"
    nodes = [NodeSpec(f"{p}sv", "server", "10.0.0.1"), NodeSpec(core, "switch")]
    links = [LinkSpec("server", "server", None, f"{p}sv", core, None, Direction(None, None), Direction(None, None))]
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        site = row["site"]
        hi, lo = divmod(i + 1, 256)
        access, home = _access(p, i, row, topology, settings, core), _home(p, i, site, topology, settings, core)
        nodes += [NodeSpec(f"{p}s{i}", "site", f"10.1.{hi}.{lo}", site), NodeSpec(f"{p}h{i}", "home",
                                                                                    f"10.2.{hi}.{lo}", site)]
        nodes += [NodeSpec(link.delay_node, "delay", None, site) for link in (access, home) if link.delay_node]
        if row["aggregation"]:
            groups.setdefault(row["aggregation"], []).append(i)
        links += [access, home]
    for j, (name, members) in enumerate(sorted(groups.items())):
        switch = f"{p}a{j}"
        nodes.append(NodeSpec(switch, "switch"))
        for i in members:
            links[2 * i + 1] = _replace_outer(links[2 * i + 1], switch)
        links.append(_shared(switch, core, topology.shared[name], [rows[i] for i in members], settings))
    result = NetPlan(prefix, method, settings, tuple(nodes), tuple(links), tuple(sites))
    _check(result)
    return result


def _site_rows(topology, sites: list[str]) -> list[dict]:
    if not sites:
        raise EngineError("no sites chosen for the emulation")
    if len(set(sites)) != len(sites):
        raise EngineError(f"sites chosen twice: {sorted({s for s in sites if sites.count(s) > 1})}")
    table = topology.sites.set_index("site", drop=False)
    missing = [s for s in sites if s not in table.index]
    if missing:
        raise EngineError(f"sites not in the topology: {missing[:5]} (it has e.g. {list(table.index[:3])})")
    return [table.loc[s].to_dict() for s in sites]


def _access(p: str, i: int, row: dict, topology, settings: EmuSettings, core: str) -> LinkSpec:
    q_up, q_down = (queue_pkts(row[f"buffer_{d}_bytes"], settings.mtu_bytes) for d in ("up", "down"))
    one_way_s, jitter_s, loss, qos = row["rtt_s"] / 2, row["jitter_s"], row["loss"], site_qos(row)
    needs_node = one_way_s + topology.cloud_rtt_s + jitter_s + loss > 0
    return LinkSpec(f"access:{row['site']}", "access", row["site"], f"{p}s{i}", core,
                    f"{p}d{i}" if needs_node else None, Direction(row["up_bps"], q_up, one_way_s, jitter_s, loss, qos),
                    Direction(row["down_bps"], q_down, one_way_s, jitter_s, loss, qos), topology.cloud_rtt_s / 2)


def _home(p: str, i: int, site: str, topology, settings: EmuSettings, core: str) -> LinkSpec:
    home = topology.home
    q_up, q_down = (queue_pkts(settings.home_buffer_bytes if b is None else b, settings.mtu_bytes)
                    for b in (home.buffer_up_bytes, home.buffer_down_bytes))
    return LinkSpec(f"home:{site}", "home", site, f"{p}h{i}", core, f"{p}e{i}" if home.rtt_s > 0 else None,
                    Direction(home.up_bps, q_up, home.rtt_s / 2), Direction(home.down_bps, q_down, home.rtt_s / 2))


def _replace_outer(link: LinkSpec, outer: str) -> LinkSpec:
    return LinkSpec(link.name, link.kind, link.site, link.inner, outer, link.delay_node, link.up, link.down,
                    link.extra_delay_s)


def _shared(switch: str, core: str, shared, members: list[dict], settings: EmuSettings) -> LinkSpec:
    def direction(rate_bps: float, buffer_bytes: float, column: str) -> Direction:
        # A shared link faster than all its members together can never queue: leave it unshaped (exact).
        if rate_bps >= sum(m[column] for m in members):
            return Direction(None, None)
        return Direction(rate_bps, queue_pkts(buffer_bytes, settings.mtu_bytes))

    return LinkSpec(f"shared:{shared.name}", "shared", None, switch, core, None,
                    direction(shared.up_bps, shared.buffer_up_bytes, "up_bps"),
                    direction(shared.down_bps, shared.buffer_down_bytes, "down_bps"))


def _check(net_plan: NetPlan) -> None:
    limit = net_plan.settings.max_rate_bps
    for link in net_plan.links:
        for name in ("up", "down"):
            d = getattr(link, name)
            figures = {"rate_bps": d.rate_bps if d.rate_bps is not None else 1.0, "delay_s": d.delay_s,
                       "jitter_s": d.jitter_s, "loss": d.loss, "core delay_s": link.extra_delay_s}
            for label, value in figures.items():
                if not math.isfinite(value) or value < 0:
                    raise EngineError(f"link {link.name} {name}: {label} {value!r} is not a finite, non-negative "
                                      "number")
            if d.rate_bps is not None and not 0 < d.rate_bps <= limit:
                raise EngineError(f"link {link.name} {name}: rate {d.rate_bps / 1e6:g} Mbit/s is outside what "
                                  f"HTB shapes faithfully here (0 < rate <= {limit / 1e6:g} Mbit/s); choose "
                                  "another profile or sites")
            if d.loss >= 1:
                raise EngineError(f"link {link.name} {name}: loss {d.loss!r} must be below 1")
    ports = {n.name: 0 for n in net_plan.nodes}
    for link in net_plan.links:
        ports[link.inner] += 1
        ports[link.outer] += 1
        if link.delay_node:
            ports[link.delay_node] += 2
    too_long = [n for n, count in ports.items() if len(n) + len(f"-eth{count}") > MAX_IFNAME_CHARS]
    if too_long:
        raise EngineError(f"node names too long for {MAX_IFNAME_CHARS}-character interface names: {too_long[:3]}")
    if len(net_plan.nodes) > net_plan.settings.max_nodes:
        raise CapabilityError(f"{len(net_plan.sites)} sites need {len(net_plan.nodes)} Mininet nodes; this "
                              f"machine is set up for at most {net_plan.settings.max_nodes} (max_nodes)")


# ---- commands, as data ------------------------------------------------------------------------------------------

def shaping_cmds(dev: str, rate_bps: float, queue: int, qos: str = "fifo") -> list[list[str]]:
    """``tc`` commands shaping ``dev``'s egress to ``rate_bps`` (bit/s) with a ``queue``-packet drop-tail queue.

    With ``qos="priority"``, two classes (DSCP EF first), each with its own ``queue``-packet queue
    (:func:`sim.emu.qos.priority_cmds`).
    """
    burst_bytes = max(2 * FRAME_BYTES, int(rate_bps / 8 * 0.001))  # 1 ms at line rate, at least two frames
    if qos == "priority":
        return priority_cmds(dev, rate_bps, queue, burst_bytes, FRAME_BYTES)
    return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
            ["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", f"{rate_bps:.0f}bit",
             "ceil", f"{rate_bps:.0f}bit", "burst", f"{burst_bytes}b", "cburst", f"{burst_bytes}b",
             "quantum", str(FRAME_BYTES)],
            ["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "pfifo", "limit", str(queue)]]


def netem_cmds(dev: str, delay_s: float, jitter_s: float) -> list[list[str]]:
    """``tc`` command adding ``delay_s`` ± ``jitter_s`` (s) on ``dev``'s egress with netem."""
    cmd = ["tc", "qdisc", "replace", "dev", dev, "root", "netem", "delay", f"{delay_s * 1e6:.0f}us"]
    if jitter_s:
        cmd += [f"{jitter_s * 1e6:.0f}us"]
    return [cmd + ["limit", "100000"]]


def bridge_cmds(port_a: str, port_b: str) -> list[list[str]]:
    """Commands making a delay node a transparent bridge between its two ports, with bridge netfilter on."""
    return [["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
            ["ip", "link", "add", "name", "br0", "type", "bridge"],
            ["ip", "link", "set", port_a, "master", "br0"], ["ip", "link", "set", port_b, "master", "br0"],
            ["ip", "link", "set", "br0", "up"]]


def loss_rule(port_in: str, loss: float, min_ip_bytes: int) -> list[str]:
    """Build the iptables command dropping a ``loss`` fraction of data packets entering the bridge from ``port_in``."""
    return ["iptables", "-w", "-t", "mangle", "-A", "FORWARD", "-m", "physdev", "--physdev-in", port_in,
            "-m", "length", "--length", f"{min_ip_bytes}:65535",
            "-m", "statistic", "--mode", "random", "--probability", f"{loss:.8f}", "-j", "DROP"]


def loss_count_rule(port_in: str, min_ip_bytes: int) -> list[str]:
    """Build the iptables rule (no target: it only counts) matching what :func:`loss_rule` may drop.

    Placed just before the loss rule, its packet counter is the number of packets the loss rule saw, so the loss
    actually applied is measured during a run (:mod:`sim.emu.health`).
    """
    return ["iptables", "-w", "-t", "mangle", "-A", "FORWARD", "-m", "physdev", "--physdev-in", port_in,
            "-m", "length", "--length", f"{min_ip_bytes}:65535"]


def nfqueue_rule(port_in: str, queue_num: int) -> list[str]:
    """Build the iptables command sending IPv4 packets entering from ``port_in`` to NFQUEUE ``queue_num``."""
    return ["iptables", "-w", "-t", "mangle", "-A", "FORWARD", "-m", "physdev", "--physdev-in", port_in,
            "-j", "NFQUEUE", "--queue-num", str(queue_num)]


# ---- capacity -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CapacityEstimate:
    """What a run of these sites asks of the machine, against what it can carry.

    Attributes:
        sites: Sites emulated.
        nodes: Mininet nodes (each a shell and a network namespace).
        shims: Delay-shim processes (0 with netem).
        peak_pps: Packets per second all shims carry at the assumed peak load.
        busiest: The delay node with the most packets per second, and that rate (packets/s).
        budget_pps: What all shims together may carry (packets/s), and one shim (``shim_budget_pps``).
        memory_bytes: Rough memory the run needs (bytes).
        start_s: Rough time to build and start (s); ``window_s`` more to replay, ~1/3 of start to stop.
    """

    sites: int
    nodes: int
    shims: int
    peak_pps: float
    busiest: tuple[str, float]
    budget_pps: float
    shim_budget_pps: float
    memory_bytes: float
    start_s: float
    window_s: float
    max_nodes: int

    def problems(self) -> list[str]:
        """Why the machine cannot carry this run (empty when it can)."""
        out = []
        if self.busiest[1] > self.shim_budget_pps:
            out.append(f"link {self.busiest[0]} needs {self.busiest[1]:,.0f} packets/s through one delay shim, "
                       f"which carries at most {self.shim_budget_pps:,.0f}")
        if self.peak_pps > self.budget_pps:
            out.append(f"all delay shims together need {self.peak_pps:,.0f} packets/s at peak, this machine "
                       f"carries about {self.budget_pps:,.0f}")
        if self.nodes > self.max_nodes:
            out.append(f"{self.nodes} Mininet nodes (at most {self.max_nodes})")
        return out

    def lines(self) -> list[str]:
        """Human-readable estimate."""
        return [f"{self.sites} sites: {self.nodes} nodes, {self.shims} delay shims",
                f"peak {self.peak_pps:,.0f} packets/s through shims (budget {self.budget_pps:,.0f}); busiest "
                f"{self.busiest[0]} {self.busiest[1]:,.0f} (one shim: {self.shim_budget_pps:,.0f})",
                f"memory ~{self.memory_bytes / 1e9:.1f} GB; start ~{self.start_s:.0f} s, replay "
                f"{self.window_s:.0f} s, stop ~{self.start_s / 3:.0f} s"]


def estimate(topology, sites: list[str], window_s: float = 0.0, settings: EmuSettings | None = None,
             method: str = "nfqueue", offered_bps: dict[str, float] | None = None,
             cores: int = 2) -> CapacityEstimate:
    """Estimate what emulating ``sites`` for ``window_s`` seconds costs this machine.

    Each site's delay shim carries its access link's traffic in both directions; its home's shim carries at most
    what the site's calls send and receive. Unless ``offered_bps`` gives a site's peak traffic (both directions,
    bit/s, e.g. from the trace slice), the site is assumed to fill its access link both ways. Figures behind the
    budgets (EMULATION.md): ~20 us of CPU per packet in a shim, ~40k packets/s per shim process.

    Raises:
        EngineError: Unknown sites.
    """
    settings = settings or EmuSettings()
    rows = _site_rows(topology, list(sites))
    home = topology.home
    per_shim: list[tuple[str, float]] = []
    for row in rows:
        access_bps = row["up_bps"] + row["down_bps"]
        site_bps = min(access_bps, (offered_bps or {}).get(row["site"], access_bps))
        if row["rtt_s"] + topology.cloud_rtt_s + row["jitter_s"] > 0:  # else no delay node on the access link
            per_shim.append((f"access:{row['site']}", site_bps / 8 / FRAME_BYTES))
        if home.rtt_s > 0:
            per_shim.append((f"home:{row['site']}", min(site_bps, home.up_bps + home.down_bps) / 8 / FRAME_BYTES))
    delay_nodes = len(per_shim)
    if method != "nfqueue":
        per_shim = []
    shims = len(per_shim)
    peak_pps = sum(pps for _, pps in per_shim)
    busiest = max(per_shim, key=lambda item: item[1]) if shims else ("-", 0.0)
    nodes = 2 + 2 * len(rows) + delay_nodes + len({r["aggregation"] for r in rows if r["aggregation"]})
    # Start: ~0.03 s a node and ~0.02 s a shim, from 50 sites (152 nodes, 50 shims) built in 4.2-5.2 s on the
    # 2-core VM at load average 6.4-6.7 (benchmarks/README.md, 2026-12-02); was 0.1 and 0.15 before batching.
    return CapacityEstimate(len(rows), nodes, shims, peak_pps, busiest,
                            settings.machine_budget_pps * cores / 2, settings.shim_budget_pps,
                            nodes * 4e6 + shims * 15e6, 0.03 * nodes + 0.02 * shims, window_s, settings.max_nodes)


def check_capacity(est: CapacityEstimate) -> None:
    """Raise ``CapabilityError`` with the estimate when the machine cannot carry the run."""
    problems = est.problems()
    if problems:
        raise CapabilityError("too much to emulate on this machine: " + "; ".join(problems) + ". Estimate: "
                              + " | ".join(est.lines()) + ". Choose fewer or slower sites, or pass the sites' "
                              "offered load (offered_bps) from the trace.")
