"""Link utilisation and link health of an emulated run, measured from counters while the trace is replayed.

Every ``bin_s`` the sampler reads ``/proc/net/dev`` inside each node that shapes an access link (one read per node:
``/proc/net`` shows the reading process's own network namespace) and turns the growth of the shaped interface's
transmitted bytes into a share of the configured rate. HTB counts the same frame bytes, so a link kept busy by
its shaper reads about 1.0. The rows have the simulator's link columns (``sim.records.LINK_COLUMNS``).

At the same bin boundaries it also reads what :mod:`sim.emu.health` judges: each delay shim's state (lateness
histograms), each delay node's NFQUEUE and iptables counters, each host's UDP counters (``/proc/net/snmp``), and
the machine's CPU counters with the run's own processes' run-queue waits; and every ``SHAPER_SAMPLE_S`` each
shaping node's HTB counters (``tc -s qdisc``).
:meth:`Watch.judge` turns the readings into the health table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from sim.emu import health
from sim.emu.linkplan import NFQUEUE_DOWN, NFQUEUE_UP
from sim.records import LINK_COLUMNS, conform

SHAPER_SAMPLE_S = 1.0  # HTB counters are read this often (s): a shaper's backlog is judged over these periods
DELAY_NODE_CMD = ("cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null; echo @@ipt; "
                  "iptables -w -t mangle -L FORWARD -v -x -n")
TC_CMD = "tc -s qdisc show"


def parse_proc_net_dev(text: str) -> dict[str, int]:
    """Interface name -> transmitted bytes, from the text of ``/proc/net/dev``."""
    out = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        name, counters = line.split(":", 1)
        fields = counters.split()
        if len(fields) >= 9 and fields[8].isdigit():
            out[name.strip()] = int(fields[8])  # receive has 8 fields; transmit bytes come next
    return out


class Sampler:
    """Samples the access links' transmitted bytes at bin boundaries; :meth:`frame` gives the link table.

    Args:
        emu: The running :class:`sim.emu.net.EmuNet`.
        bin_s: Bin length (s).
        window_start_s: The replay's start on the trace clock (s since midnight), matching the epoch.
    """

    def __init__(self, emu, bin_s: float, window_start_s: float) -> None:
        self.emu, self.bin_s, self.window_start_s = emu, bin_s, window_start_s
        self.links = []  # (site, direction, node, interface, rate_bps)
        for link in emu.plan.links:
            if link.name.startswith("access:") and link.site:
                devices = emu.devices(link)
                for direction in ("up", "down"):
                    rate_bps = getattr(link, direction).rate_bps
                    if rate_bps:
                        node, intf = devices[direction]
                        self.links.append((link.site, direction, node, intf, rate_bps))
        self.last: dict[tuple[str, str], int] | None = None
        self.last_s = 0.0
        self.bins = 0
        self.rows: list[tuple] = []
        self.watch = Watch(emu)

    def sample(self, now_s: float) -> None:
        """Read the counters at wall-clock ``now_s``; the first call is the baseline, each later one closes a bin.

        A bin's utilisation divides by the time really elapsed since the last sample (a sample may come late).
        """
        self.watch.snapshot(now_s)
        counters = {}
        for node in {entry[2] for entry in self.links}:
            for intf, sent in parse_proc_net_dev(self.emu.node(node).cmd("cat /proc/net/dev")).items():
                counters[(node, intf)] = sent
        if self.last is not None:
            start_s = self.window_start_s + self.bins * self.bin_s
            elapsed_s = max(now_s - self.last_s, 1e-3)
            for site, direction, node, intf, rate_bps in self.links:
                sent_bytes = counters.get((node, intf), 0) - self.last.get((node, intf), 0)
                capacity_bps = self.watch.mean_rate_bps(f"access:{site}", direction, self.last_s, now_s, rate_bps)
                share = sent_bytes * 8 / (capacity_bps * elapsed_s) if capacity_bps > 0 else 0.0
                self.rows.append((site, direction, capacity_bps, start_s, share))
            self.bins += 1
        self.last, self.last_s = counters, now_s

    def frame(self) -> pd.DataFrame:
        """The sampled bins as a link table (``engine = "emu"``)."""
        frame = pd.DataFrame(self.rows, columns=["site", "direction", "capacity_bps", "bin_start_s", "utilisation"])
        frame.insert(0, "engine", "emu")
        frame.insert(1, "link", frame["site"] + "/" + frame["direction"])
        frame.insert(3, "kind", "access")
        frame["bin_s"] = self.bin_s
        return conform(frame, LINK_COLUMNS)


class Watch:
    """Reads the counters the health judgement needs (see the module docstring); :meth:`judge` gives its table.

    Args:
        emu: The running :class:`sim.emu.net.EmuNet`.
    """

    def __init__(self, emu) -> None:
        self.emu = emu
        self.shaped: list[tuple[str, str, str, str, float]] = []  # link, direction, node, interface, rate_bps
        self.delayed: list[tuple[str, str, str, str, int, float, bool]] = []  # ... node, port, queue, loss, shim
        for link in emu.plan.links:
            devices = emu.devices(link)
            for direction in ("up", "down"):
                d = getattr(link, direction)
                if d.rate_bps:
                    self.shaped.append((link.name, direction, *devices[direction], d.rate_bps))
                if link.delay_node:
                    port = devices[f"delay_in_{direction}"][1]
                    queue = NFQUEUE_UP if direction == "up" else NFQUEUE_DOWN
                    shimmed = emu.plan.method == "nfqueue" and bool(link.total_delay_s(direction) or d.jitter_s)
                    self.delayed.append((link.name, direction, link.delay_node, port, queue, d.loss, shimmed))
        self.hosts = [(n.name, health.SERVER if n.role == "server" else f"{n.role}:{n.site}")
                      for n in emu.plan.nodes if n.role in ("site", "home", "server")]
        self.pids: list[int] = []
        self.tc: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        self.snapshots: list[dict] = []
        self.next_tc_s = 0.0
        self.changes: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}

    def note_change(self, link: str, direction: str, started_s: float, applied_s: float, want) -> None:
        """Note a link change that took between ``started_s`` and ``applied_s`` (Unix s), leaving ``want``.

        ``want`` is a :class:`sim.emu.linksteps.Want`: later judgements and utilisation use its rate and loss.
        """
        self.changes.setdefault((link, direction), []).append((started_s, applied_s, want.rate_bps, want.loss))

    def in_force(self, link: str, direction: str, at_s: float, rate_bps: float, loss: float) -> tuple[float, float]:
        """The (rate bit/s, loss) in force at ``at_s`` (Unix s); the built ``rate_bps``/``loss`` before any change."""
        for _, applied_s, rate, lost in self.changes.get((link, direction), []):
            if applied_s <= at_s:
                rate_bps, loss = rate, lost
        return rate_bps, loss

    def changed_within(self, link: str, direction: str, t0_s: float, t1_s: float) -> bool:
        """Whether a change of this link direction was under way at some time in (t0_s, t1_s]."""
        return any(started_s <= t1_s and applied_s > t0_s
                   for started_s, applied_s, _, _ in self.changes.get((link, direction), []))

    def mean_rate_bps(self, link: str, direction: str, t0_s: float, t1_s: float, rate_bps: float) -> float:
        """The rate in force averaged over [t0_s, t1_s] (Unix s; 0 while the direction is out), bit/s."""
        inside = [a for _, a, _, _ in self.changes.get((link, direction), []) if t0_s < a < t1_s]
        if not inside or t1_s <= t0_s:  # one rate all along (exactly the built one when nothing changed)
            return self.in_force(link, direction, t1_s, rate_bps, 0.0)[0]
        edges = [t0_s, *inside, t1_s]
        total = sum((b - a) * self.in_force(link, direction, a, rate_bps, 0.0)[0] for a, b in zip(edges, edges[1:]))
        return total / (t1_s - t0_s)

    def watch_pids(self, pids: list[int]) -> None:
        """Follow the CPU waits of these processes (the run's agents and shims)."""
        self.pids = list(pids)

    def tick(self, now_s: float) -> None:
        """Read the HTB counters if ``SHAPER_SAMPLE_S`` has passed since the last read."""
        if now_s >= self.next_tc_s:
            self._read_tc()

    def _read_tc(self) -> None:
        for node in sorted({entry[2] for entry in self.shaped}):
            stamp_s = time.time()
            found = health.parse_tc_qdiscs(self.emu.node(node).cmd(TC_CMD))
            for link, direction, n, intf, _ in self.shaped:
                if n == node and intf in found:
                    c = found[intf]
                    self.tc.setdefault((link, direction), []).append((stamp_s, c["sent_bytes"], c["backlog_bytes"]))
        self.next_tc_s = time.time() + SHAPER_SAMPLE_S

    def snapshot(self, now_s: float) -> None:
        """Read everything at a bin boundary (wall clock ``now_s``)."""
        self._read_tc()
        nodes = {}
        for node in sorted({entry[2] for entry in self.delayed}):
            nfq_text, _, ipt_text = self.emu.node(node).cmd(DELAY_NODE_CMD).partition("@@ipt")
            nodes[node] = {"nfq": health.parse_nfqueue(nfq_text), "ipt": health.parse_iptables_counters(ipt_text),
                           "shim": _shim_counts(self.emu.shim_state_path(node))}
        udp = {node: health.parse_udp_snmp(self.emu.node(node).cmd("cat /proc/net/snmp")) for node, _ in self.hosts}
        stall = {cpu: counts for cpu in self.emu.stall_probes
                 for counts in [_histogram(self.emu.stall_state_path(cpu))] if counts is not None}
        self.snapshots.append({"t_s": now_s, "nodes": nodes, "udp": udp, "cpu": cpu_reading(self.pids),
                               "stall": stall})

    def judge(self, window_start_s: float, bin_s: float, th: health.Thresholds) -> list[dict]:
        """The health table: one row per link direction, interval and check (see :mod:`sim.emu.health`)."""
        rows: list[dict] = []
        for k, (a, b) in enumerate(zip(self.snapshots, self.snapshots[1:])):
            interval = health.Interval(k, window_start_s + k * bin_s, b["t_s"] - a["t_s"])
            rows += health.judge_cpu(interval, a["cpu"], b["cpu"], th)
            rows.append(health.judge_stall(interval, a["stall"], b["stall"], th))
            rows += [health.judge_receive_drops(interval, label, a["udp"][node], b["udp"][node], th)
                     for node, label in self.hosts]
            for link, direction, node, port, queue, loss, shimmed in self.delayed:
                before, after = a["nodes"][node], b["nodes"][node]
                if shimmed and queue in before["shim"] and queue in after["shim"]:
                    rows.append(health.judge_shim(interval, link, direction, before["shim"][queue],
                                                  after["shim"][queue], th))
                if shimmed and queue in before["nfq"] and queue in after["nfq"]:
                    rows.append(health.judge_undecided(interval, link, direction, before["nfq"][queue],
                                                       after["nfq"][queue], th))
                changed = self.changed_within(link, direction, a["t_s"], b["t_s"])
                loss = self.in_force(link, direction, a["t_s"], 1.0, loss)[1]
                if loss and not changed and port in before["ipt"] and port in after["ipt"]:
                    candidates = after["ipt"][port]["candidates"] - before["ipt"][port]["candidates"]
                    dropped = after["ipt"][port]["dropped"] - before["ipt"][port]["dropped"]
                    rows.append(health.judge_loss(interval, link, direction, candidates, dropped, loss, th))
            for link, direction, _, _, built_bps in self.shaped:
                rate_bps = self.in_force(link, direction, a["t_s"], built_bps, 0.0)[0]
                if rate_bps == 0 or self.changed_within(link, direction, a["t_s"], b["t_s"]):
                    continue  # out, or changed during the interval: each change is checked on its own
                samples = [s for s in self.tc.get((link, direction), []) if a["t_s"] - 1e-3 <= s[0] <= b["t_s"]]
                rows.append(health.judge_shaper(interval, link, direction, samples, rate_bps, th))
        return [r for r in rows if r is not None]


def _shim_counts(path: Path) -> dict[int, list[int]]:
    """Queue number -> cumulative lateness histogram, from a shim's state file ({} if it has none yet)."""
    state = _state(path)
    return {q["num"]: q["lateness_counts"] for q in state["queues"]} if state else {}


def _histogram(path: Path) -> list[int] | None:
    """The cumulative lateness histogram in a stall probe's state file (None if it has none yet)."""
    state = _state(path)
    return state["lateness_counts"] if state else None


def _state(path: Path) -> dict | None:
    """A shim's or probe's state file (None if unreadable, or if its histogram's edges are not ours)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if tuple(state.get("lateness_edges_s", ())) == health.LATENESS_EDGES_S else None


def cpu_reading(pids: list[int]) -> health.CpuReading:
    """The machine's CPU counters now, and each of ``pids``' (running s, waiting s) over its threads."""
    stat = health.parse_proc_stat(Path("/proc/stat").read_text())
    try:
        pressure_s = health.parse_pressure(Path("/proc/pressure/cpu").read_text())
    except OSError:
        pressure_s = None
    load_1min = float(Path("/proc/loadavg").read_text().split()[0])
    procs = {}
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            run_s = wait_s = 0.0
            for tid in tasks:
                ran, waited, _ = health.parse_schedstat(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text())
                run_s, wait_s = run_s + ran, wait_s + waited
        except OSError:  # the process (or a thread) ended: it is left out of this reading
            continue
        procs[pid] = (run_s, wait_s)
    return health.CpuReading(stat, pressure_s, load_1min, procs)


class CpuWatch:
    """Was the machine short of CPU since this watch was made? For a measurement's caveat or a test's skip.

    Args:
        pids: Processes whose run-queue waits to follow (the figures' ``wait_share``); none by default.
    """

    def __init__(self, pids: tuple[int, ...] = ()) -> None:
        self.pids = list(pids)
        self.started_s, self.before = time.monotonic(), cpu_reading(self.pids)

    def figures(self) -> dict:
        """The CPU figures since the watch began (:func:`sim.emu.health.cpu_figures`)."""
        return health.cpu_figures(time.monotonic() - self.started_s, self.before, cpu_reading(self.pids))

    def starved(self, th: health.Thresholds | None = None) -> str | None:
        """The figures in words if the machine was short of CPU (:func:`sim.emu.health.starved`), else None."""
        figures = self.figures()
        return health.describe_cpu(figures) if health.starved(figures, th or health.Thresholds()) else None
