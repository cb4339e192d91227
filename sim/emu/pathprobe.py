"""Measure an emulated network's paths against its configuration: ping RTT and iperf3 TCP goodput (part of probe).

:func:`sim.emu.probe.verify` calls :func:`check_rtts` (ping site -> server, home -> server and site -> home against
the hand-summed configured delays) and :func:`check_rates` (a short iperf3 TCP probe per direction of every access
and home link against the configured rate); each re-probes a path that missed before refusing it, naming the link.
The output parsers are pure functions (tested on captured output).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import time
from typing import TYPE_CHECKING

from sim.errors import EngineError

if TYPE_CHECKING:
    from sim.emu.probe import Tolerance, VerifyReport

GOODPUT_FACTOR = 1448 / 1514  # TCP payload (MSS with timestamps) per Ethernet frame, as HTB counts it
IPERF_PORT = 5301


def parse_ping(text: str) -> tuple[float, float, float, float]:
    """From ``ping`` output: (min, avg, max RTT in s, loss fraction); the RTTs are NaN when no reply came.

    Raises:
        EngineError: No summary in the output.
    """
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", text)
    loss = re.search(r"([\d.]+)% packet loss", text)
    if loss and not rtt and float(loss.group(1)) == 100:  # every ping lost: ping prints no RTT line
        return math.nan, math.nan, math.nan, 1.0
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


def path_delay_s(emu, src_role: str, dst_role: str, site: str) -> float:
    """Configured one-way delay (s) from ``src_role`` to ``dst_role`` (site/home/server) for ``site``'s paths."""
    links = {link.name: link for link in emu.plan.links}
    access, home = links[f"access:{site}"], links[f"home:{site}"]
    legs = {"site": access.total_delay_s("up"), "home": home.total_delay_s("up"), "server": 0.0}
    back = {"site": access.total_delay_s("down"), "home": home.total_delay_s("down"), "server": 0.0}
    return legs[src_role] + back[dst_role]


def check_rtts(emu, tol: Tolerance, report: VerifyReport) -> None:
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
    report.add(f"{src}->{dst}:{site}", "ping rtt_s", expected_s, None if loss == 1 else avg_s, ok)  # (JSON)
    if not ok and last:
        measured = "no reply" if loss == 1 else f"ping RTT {avg_s * 1e3:.2f} ms (loss {loss:.0%})"
        raise EngineError(f"path {src} -> {dst} of site {site}: {measured}, configured {expected_s * 1e3:.2f} ms "
                          f"(+-{slack_s * 1e3:.1f} ms) in {1 + RATE_RETRIES} attempts: the delay of link "
                          f"access:{site}, home:{site} or the core is not as configured")
    return ok


def _path_jitter_s(emu, site: str, src: str, dst: str) -> float:
    links = {link.name: link for link in emu.plan.links}
    total_s = 2 * links[f"access:{site}"].up.jitter_s if "site" in (src, dst) else 0.0
    return total_s + (2 * links[f"home:{site}"].up.jitter_s if "home" in (src, dst) else 0.0)


def check_rates(emu, tol: Tolerance, report: VerifyReport) -> None:
    """Probe every access and home link's TCP goodput each way, links together up to ``tol.parallel_bps``.

    Raises:
        EngineError: Naming the link direction that missed on every attempt, with its last measurement.
    """
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
