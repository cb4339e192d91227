"""Check that an emulated network is what was configured: the settings in force, then measured RTT and rates.

:func:`verify` reads back every link's qdiscs (``tc``), iptables rules and delay-shim state, then measures each
site's paths: ping RTT site -> server, home -> server and site -> home against the hand-summed configured delays,
and a short iperf3 TCP (BBR) probe per direction of every access and home link against the configured rate. It raises
:class:`EngineError` naming the link at the first mismatch, so a run never proceeds on a delay, loss or rate that
did not apply. Output parsers are pure functions (tested on captured output). The measurements are
:mod:`sim.emu.pathprobe`'s.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sim.emu import pathprobe
from sim.errors import EngineError

log = logging.getLogger(__name__)

_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}


@dataclass(frozen=True)
class Tolerance:
    """How close measurements must come to the configuration.

    Attributes:
        rtt_abs_s: Allowed RTT excess or shortfall (s), on top of ``rtt_rel`` of the expected RTT.
        rtt_rel: Allowed relative RTT error.
        rate_rel: Allowed relative error of TCP goodput against ``rate * 1448/1514``.
        config_rel: Allowed relative error of a read-back setting (``tc`` rounds what it prints).
        probe_s: Measured seconds of each rate probe (after ``omit_s`` of warm-up, s).
        omit_s: Seconds of each rate probe left out (slow start, s).
        ping_count: Pings per path.
        parallel_bps: Most configured rate probed at once (bit/s), so probes do not starve each other of CPU.
        measure: False to check the configuration only.
    """

    rtt_abs_s: float = 0.002
    rtt_rel: float = 0.05
    rate_rel: float = 0.10
    config_rel: float = 0.01
    probe_s: float = 0.5
    omit_s: float = 1.0
    ping_count: int = 5
    parallel_bps: float = 400e6
    measure: bool = True


@dataclass
class VerifyReport:
    """Every check made: link, what, expected, measured (units in the ``what``), in order."""

    rows: list[dict] = field(default_factory=list)

    def add(self, link: str, what: str, expected: float, measured: float, ok: bool) -> None:
        """Record one check."""
        self.rows.append({"link": link, "what": what, "expected": expected, "measured": measured, "ok": ok})

    def rows_for(self, link: str, direction: str) -> list[dict]:
        """The checks of one link direction, in order."""
        return [row for row in self.rows if row["link"] == link and row["what"].startswith(direction)]


def verify(emu, tol: Tolerance) -> VerifyReport:
    """Check the configuration in force on every link, then probe RTT and rate (see the module docstring).

    Raises:
        EngineError: Naming the link that is not as configured.
    """
    report = VerifyReport()
    _check_configs(emu, tol, report)
    if tol.measure:
        from sim.emu.utilisation import CpuWatch

        watch = CpuWatch()
        try:
            pathprobe.check_rtts(emu, tol, report)
            pathprobe.check_rates(emu, tol, report)
        except EngineError as exc:
            # A probe that misses on a starved machine measures the machine, not the link: say so.
            starved = watch.starved()
            if starved:
                raise EngineError(f"{exc}. Likely cause: CPU starvation, not the link: the machine was short of "
                                  f"CPU during the measurement ({starved}); run the emulation on a quieter "
                                  "machine") from None
            raise
    return report


# ---- configuration read-back ------------------------------------------------------------------------------------

def _check_configs(emu, tol: Tolerance, report: VerifyReport, workers: int = 8) -> None:
    """Read back every link's configuration, links side by side (each a few ``tc``/``iptables`` processes).

    Every link is read and judged; the rows go into ``report`` in link order, and the first link (in the plan's
    order) that is not as configured raises, as when the links were read one after another.
    """
    def one(link) -> tuple[VerifyReport, EngineError | None]:
        sub = VerifyReport()
        try:
            _check_config(emu, link, tol, sub)
        except EngineError as exc:
            return sub, exc
        return sub, None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, emu.plan.links))
    for sub, exc in results:
        report.rows += sub.rows
        if exc is not None:
            raise exc


def _check_config(emu, link, tol: Tolerance, report: VerifyReport) -> None:
    devices = emu.devices(link)
    for direction in ("up", "down"):
        d = getattr(link, direction)
        node, intf = devices[direction]
        if d.rate_bps is None:
            continue
        qdiscs = _out(emu.node(node), ["tc", "qdisc", "show", "dev", intf])
        classes = _out(emu.node(node), ["tc", "class", "show", "dev", intf])
        rate_bps, limit = parse_htb_rate(classes), parse_pfifo_limit(qdiscs)
        ok_rate = rate_bps is not None and abs(rate_bps - d.rate_bps) <= tol.config_rel * d.rate_bps
        report.add(link.name, f"{direction} htb rate_bps", d.rate_bps, rate_bps, ok_rate)
        report.add(link.name, f"{direction} pfifo limit_pkts", d.queue_pkts, limit, limit == d.queue_pkts)
        if not ok_rate or limit != d.queue_pkts:
            raise EngineError(f"link {link.name} {direction}: in force on {intf} is rate {rate_bps} bit/s, queue "
                              f"{limit} packets; configured {d.rate_bps:.0f} bit/s, {d.queue_pkts} packets")
    if link.delay_node:
        _check_delay_node(emu, link, devices, report)


def _check_delay_node(emu, link, devices: dict, report: VerifyReport) -> None:
    node = emu.node(link.delay_node)
    if _out(node, ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]).strip() != "1":
        raise EngineError(f"link {link.name}: bridge netfilter is off in {link.delay_node}; delay/loss would not "
                          "apply")
    rules = parse_iptables_rules(_out(node, ["iptables", "-w", "-t", "mangle", "-S", "FORWARD"]))
    for direction, port_role, queue in (("up", "delay_in_up", 1), ("down", "delay_in_down", 2)):
        d, port = getattr(link, direction), devices[port_role][1]
        loss = rules.get((port, "loss"), 0.0)
        report.add(link.name, f"{direction} loss", d.loss, loss, abs(loss - d.loss) <= 1e-6)
        if abs(loss - d.loss) > 1e-6:
            raise EngineError(f"link {link.name} {direction}: loss in force {loss}, configured {d.loss}")
        wants_delay = bool(link.total_delay_s(direction) or d.jitter_s)
        if emu.plan.method == "nfqueue" and wants_delay and rules.get((port, "nfqueue")) != queue:
            raise EngineError(f"link {link.name} {direction}: no NFQUEUE rule for {port} in {link.delay_node}; "
                              "its delay would not apply")
    if emu.plan.method == "nfqueue" and (link.total_delay_s("up") or link.total_delay_s("down")):
        _check_shim(emu, link, report)
    if emu.plan.method == "netem":
        for direction, port_role in (("up", "delay_in_down"), ("down", "delay_in_up")):  # netem on the way out
            want = link.total_delay_s(direction)
            got = parse_netem_delay(_out(node, ["tc", "qdisc", "show", "dev", devices[port_role][1]]))
            report.add(link.name, f"{direction} netem delay_s", want, got, abs(got - want) <= 1e-5)
            if abs(got - want) > 1e-5:
                raise EngineError(f"link {link.name} {direction}: netem delay in force {got} s, configured {want} s")


def _check_shim(emu, link, report: VerifyReport) -> None:
    path = emu.shim_state_path(link.delay_node)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"link {link.name}: the delay shim's state is unreadable ({exc})") from None
    from sim.emu.clean import pid_alive

    if not state.get("running") or not pid_alive(state.get("pid", -1)):
        raise EngineError(f"link {link.name}: the delay shim of {link.delay_node} is not running")
    queues = {q["num"]: q for q in state["queues"]}
    for direction, num in (("up", 1), ("down", 2)):
        want = link.total_delay_s(direction)
        got = queues.get(num, {}).get("delay_s")
        report.add(link.name, f"{direction} shim delay_s", want, got, got is not None and abs(got - want) < 1e-9)
        if got is None or abs(got - want) > 1e-9:
            raise EngineError(f"link {link.name} {direction}: the shim applies delay {got} s, configured {want} s")


def _out(node, argv: list[str]) -> str:
    out, err, code = node.pexec(argv)
    if code != 0:
        raise EngineError(f"{' '.join(argv)} in {node.name} failed: {(out + err).strip()}")
    return out


def parse_htb_rate(text: str) -> float | None:
    """The rate (bit/s) of the first HTB class in ``tc class show`` output, or None."""
    match = re.search(r"class htb \S+ .*?\brate (\d+(?:\.\d+)?)([KMGT]?bit)", text, re.IGNORECASE)
    return float(match.group(1)) * _RATE_UNITS[match.group(2).lower()] if match else None


def parse_pfifo_limit(text: str) -> int | None:
    """The packet limit of the pfifo qdisc in ``tc qdisc show`` output, or None."""
    match = re.search(r"qdisc pfifo \S+ .*?limit (\d+)p", text)
    return int(match.group(1)) if match else None


def parse_netem_delay(text: str) -> float:
    """The delay (s) of the netem qdisc in ``tc qdisc show`` output; 0 when there is none."""
    match = re.search(r"qdisc netem .*?delay (\d+(?:\.\d+)?)(us|ms|s)\b", text)
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)] if match else 0.0


def parse_iptables_rules(text: str) -> dict[tuple[str, str], float]:
    """From ``iptables -S``: (physdev-in port, ``loss``) -> probability and (port, ``nfqueue``) -> queue number."""
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        port = re.search(r"--physdev-in (\S+)", line)
        if not port:
            continue
        prob = re.search(r"--probability (\S+) -j DROP", line)
        queue = re.search(r"-j NFQUEUE --queue-num (\d+)", line)
        if prob:
            found[(port.group(1), "loss")] = float(prob.group(1))
        if queue:
            found[(port.group(1), "nfqueue")] = int(queue.group(1))
    return found

