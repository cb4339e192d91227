"""Check that an emulated network is what was configured: the settings in force, then measured RTT and rates.

:func:`verify` reads back every link's qdiscs (``tc``), iptables rules and delay-shim state, then measures each
site's paths: ping RTT site -> server, home -> server and site -> home against the hand-summed configured delays,
and a short iperf3 TCP (BBR) probe per direction of every access and home link against the configured rate. It raises
:class:`EngineError` naming the link at the first mismatch, so a run never proceeds on a delay, loss or rate that
did not apply. Output parsers are pure functions (tested on captured output).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sim.errors import EngineError

log = logging.getLogger(__name__)

GOODPUT_FACTOR = 1448 / 1514  # TCP payload (MSS with timestamps) per Ethernet frame, as HTB counts it
IPERF_PORT = 5301
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
            _check_rtts(emu, tol, report)
            _check_rates(emu, tol, report)
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


def parse_ping(text: str) -> tuple[float, float, float, float]:
    """From ``ping`` output: (min, avg, max RTT in s, loss fraction).

    Raises:
        EngineError: No summary in the output.
    """
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", text)
    loss = re.search(r"([\d.]+)% packet loss", text)
    if not rtt or not loss:
        raise EngineError(f"ping gave no summary: {text.strip()[-300:]}")
    return (float(rtt.group(1)) / 1e3, float(rtt.group(2)) / 1e3, float(rtt.group(3)) / 1e3,
            float(loss.group(1)) / 100)


def parse_iperf3(text: str) -> float:
    """Receiver goodput (bit/s) from ``iperf3 --json`` client output.

    Raises:
        EngineError: iperf3 reported an error or no result.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise EngineError(f"iperf3 gave no JSON: {text.strip()[-300:]}") from None
    if data.get("error"):
        raise EngineError(f"iperf3: {data['error']}")
    end = data.get("end", {})
    summary = end.get("sum_received") or end.get("sum")
    if not summary:
        raise EngineError("iperf3 reported no result")
    return float(summary["bits_per_second"])


# ---- measurement ------------------------------------------------------------------------------------------------

def path_delay_s(emu, src_role: str, dst_role: str, site: str) -> float:
    """Configured one-way delay (s) from ``src_role`` to ``dst_role`` (site/home/server) for ``site``'s paths."""
    links = {link.name: link for link in emu.plan.links}
    access, home = links[f"access:{site}"], links[f"home:{site}"]
    legs = {"site": access.total_delay_s("up"), "home": home.total_delay_s("up"), "server": 0.0}
    back = {"site": access.total_delay_s("down"), "home": home.total_delay_s("down"), "server": 0.0}
    return legs[src_role] + back[dst_role]


def _check_rtts(emu, tol: Tolerance, report: VerifyReport) -> None:
    """Ping every site's paths at once; re-ping each path that missed, alone and with more pings, before refusing.

    A few pings on a busy 2-core machine can meet one late wake-up (a transient of the machine, not the link), as
    the rate probes can; a delay that is not as configured misses on every attempt.
    """
    pairs = [("site", "server"), ("home", "server"), ("site", "home")]
    procs = [(site, src, dst, _start_ping(emu, site, src, dst, tol.ping_count))
             for site in emu.plan.sites for src, dst in pairs]
    missed = [(site, src, dst) for site, src, dst, proc in procs if not _judge_ping(emu, site, src, dst, proc, tol,
                                                                                      report)]
    for attempt in range(RATE_RETRIES):
        missed = [(site, src, dst) for site, src, dst in missed
                  if not _judge_ping(emu, site, src, dst, _start_ping(emu, site, src, dst, 4 * tol.ping_count),
                                     tol, report, last=attempt == RATE_RETRIES - 1)]
        if not missed:
            return


def _start_ping(emu, site: str, src: str, dst: str, count: int) -> subprocess.Popen:
    a, b = emu.plan.node(src, site), emu.plan.node(dst, None if dst == "server" else site)
    proc = emu.node(a.name).popen(["ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "2", b.ip],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    emu.record_pid(f"ping {a.name} {b.name}", proc.pid)
    proc.label = f"ping {a.name} {b.name}"
    return proc


def _judge_ping(emu, site: str, src: str, dst: str, proc: subprocess.Popen, tol: Tolerance, report: VerifyReport,
                last: bool = False) -> bool:
    """Record one path's ping against its configured RTT; True if within tolerance.

    Raises:
        EngineError: On the ``last`` attempt, if it missed.
    """
    out = _wait(proc, 30.0, f"ping {src} -> {dst} of {site}")
    emu.state.forget(proc.label)
    _, avg_s, _, loss = parse_ping(out)
    expected_s = path_delay_s(emu, src, dst, site) + path_delay_s(emu, dst, src, site)
    slack_s = tol.rtt_abs_s + tol.rtt_rel * expected_s + _path_jitter_s(emu, site, src, dst)
    ok = abs(avg_s - expected_s) <= slack_s and loss < 1
    report.add(f"{src}->{dst}:{site}", "ping rtt_s", expected_s, avg_s, ok)
    if not ok and last:
        raise EngineError(f"path {src} -> {dst} of site {site}: ping RTT {avg_s * 1e3:.2f} ms (loss "
                          f"{loss:.0%}), configured {expected_s * 1e3:.2f} ms (+-{slack_s * 1e3:.1f} ms) in "
                          f"{1 + RATE_RETRIES} attempts: the delay of link access:{site}, home:{site} or the core "
                          "is not as configured")
    return ok


def _path_jitter_s(emu, site: str, src: str, dst: str) -> float:
    links = {link.name: link for link in emu.plan.links}
    total_s = 2 * links[f"access:{site}"].up.jitter_s if "site" in (src, dst) else 0.0
    return total_s + (2 * links[f"home:{site}"].up.jitter_s if "home" in (src, dst) else 0.0)


def _check_rates(emu, tol: Tolerance, report: VerifyReport) -> None:
    # One direction at a time: a download's ACKs would otherwise load the same link's upload probe.
    port = IPERF_PORT
    for direction in ("up", "down"):
        batch, batch_bps = [], 0.0
        for site in emu.plan.sites:
            for role, link_name in (("site", f"access:{site}"), ("home", f"home:{site}")):
                link = next(link for link in emu.plan.links if link.name == link_name)
                rate_bps = getattr(link, direction).rate_bps
                if rate_bps is None:
                    continue
                if batch and batch_bps + rate_bps > tol.parallel_bps:
                    port = _rate_batch_with_retries(emu, batch, tol, report, port)
                    batch, batch_bps = [], 0.0
                batch.append((link, direction, emu.plan.node(role, site), port))
                batch_bps += rate_bps
                port += 1
        if batch:
            port = _rate_batch_with_retries(emu, batch, tol, report, port)


RATE_RETRIES = 2  # a probe outside tolerance is repeated alone, this many times, before the link is refused


def _rate_batch_with_retries(emu, batch: list, tol: Tolerance, report: VerifyReport, port: int) -> int:
    """Probe a batch; re-probe each link that missed, alone and for twice as long, before refusing it.

    A short probe on a 2-core machine can lose CPU to the shims and other probes (a transient, not the link);
    a link that misses on every attempt is refused with the last measurement. Returns the next free port.
    """
    failed = _run_rate_batch(emu, batch, tol, report)
    longer = dataclasses.replace(tol, probe_s=2 * tol.probe_s)
    for _ in range(RATE_RETRIES):
        if not failed:
            return port
        retried = []
        for link, direction, node, _ in failed:
            retried += _run_rate_batch(emu, [(link, direction, node, port)], longer, report)
            port += 1
        failed = retried
    if failed:
        link, direction, _, _ = failed[0]
        raise EngineError(report.rows_for(link.name, direction)[-1]["message"])
    return port


def _run_rate_batch(emu, batch: list, tol: Tolerance, report: VerifyReport) -> list:
    """Probe every link of the batch at once; return the (link, direction, node, port) entries that missed."""
    server = emu.plan.node("server")
    failed: list = []
    servers, clients = [], []
    for _, _, _, port in batch:
        proc = emu.node(server.name).popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        emu.record_pid(f"iperf3 server {port}", proc.pid)
        servers.append((port, proc))
    time.sleep(0.3)
    cc = probe_congestion_control()
    for link, direction, node, port in batch:
        argv = ["iperf3", "-c", server.ip, "-p", str(port), "-t", f"{tol.omit_s + tol.probe_s:g}",
                "-O", f"{tol.omit_s:g}", "-C", cc, "--json"] + (["-R"] if direction == "down" else [])
        proc = emu.node(node.name).popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        emu.record_pid(f"iperf3 client {port}", proc.pid)
        clients.append((link, direction, port, proc))
    try:
        for link, direction, port, proc in clients:
            out = _wait(proc, tol.omit_s + tol.probe_s + 15.0, f"iperf3 on link {link.name} {direction}")
            emu.state.forget(f"iperf3 client {port}")
            goodput_bps = parse_iperf3(out)
            expected_bps = getattr(link, direction).rate_bps * GOODPUT_FACTOR
            ok = abs(goodput_bps - expected_bps) <= tol.rate_rel * expected_bps
            report.add(link.name, f"{direction} tcp goodput_bps", expected_bps, goodput_bps, ok)
            if not ok:
                report.rows[-1]["message"] = (
                    f"link {link.name} {direction}: TCP goodput {goodput_bps / 1e6:.3f} Mbit/s, expected "
                    f"{expected_bps / 1e6:.3f} (configured {getattr(link, direction).rate_bps / 1e6:g} Mbit/s x "
                    f"1448/1514, +-{tol.rate_rel:.0%}) in {1 + RATE_RETRIES} probes")
                failed.append(next(item for item in batch if item[0] is link and item[1] == direction))
    finally:
        for port, proc in servers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            emu.state.forget(f"iperf3 server {port}")
        for _, _, port, proc in clients:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            emu.state.forget(f"iperf3 client {port}")
    return failed


def probe_congestion_control() -> str:
    """``bbr`` where the kernel has it, else ``cubic``.

    The rate probe checks the shaper, not TCP: BBR measures the bottleneck rate within a second, while loss-based
    TCP on a path whose buffer is below its bandwidth-delay product (FTTP 330 Mbit/s, 18 ms, 150 kB) stays well
    under the rate for seconds (cubic measured 112-135 Mbit/s there, 307 with a 1 MB buffer) - a true property of
    such a line that the traffic itself will show, but not a fault of the shaping.
    """
    try:
        with open("/proc/sys/net/ipv4/tcp_available_congestion_control", encoding="utf-8") as handle:
            return "bbr" if "bbr" in handle.read().split() else "cubic"
    except OSError:
        return "cubic"


def _wait(proc: subprocess.Popen, timeout_s: float, what: str) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise EngineError(f"{what} did not finish within {timeout_s:.0f} s") from None
    return out.decode(errors="replace") if isinstance(out, bytes) else out
