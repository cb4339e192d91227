"""The emulated network: planning (pure, runs anywhere), then a real build, verify, measurements and clean-up (root).

The root tests build one network of three sites (ADSL2+-like 16/1 Mbit/s 45 ms, FTTP-like 330/50 Mbit/s 8 ms, and an
FTTC-like 40/10 Mbit/s 20 ms line with 1% loss) with homes and a server, and take about a minute. They are skipped,
with the reason, where the machine cannot emulate (not root, Mininet or a kernel feature missing).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sim.emu import capabilities, health, linkplan, pathprobe, probe, shim
from sim.emu.clean import clean, pid_alive
from sim.emu.linkplan import EmuSettings
from sim.emu.utilisation import DELAY_NODE_CMD, CpuWatch
from sim.errors import CapabilityError, EngineError
from sim.topology import SITE_COLUMNS, FarEnd, SharedLink, Topology

ROOT = Path(__file__).resolve().parent.parent
CLOUD_RTT_S = 0.010
HOME = FarEnd(69.4e6, 18.4e6, 0.015)


def _site(name, down_bps, up_bps, rtt_s, loss=0.0, jitter_s=0.0, aggregation="", buffer_bytes=150e3):
    return dict(site=name, site_class="gp", family="gp", access_profile="test", technology="test", medium="copper",
                distance_m=float("nan"), down_bps=down_bps, up_bps=up_bps, rtt_s=rtt_s, buffer_up_bytes=buffer_bytes,
                buffer_down_bytes=buffer_bytes,
                loss=loss, jitter_s=jitter_s, aggregation=aggregation)


def _topology(*rows, shared=None) -> Topology:
    return Topology(pd.DataFrame(list(rows), columns=list(SITE_COLUMNS)), shared or {}, CLOUD_RTT_S, HOME)


TOPO = _topology(_site("adsl", 16e6, 1e6, 0.045), _site("fttp", 330e6, 50e6, 0.008),
                 _site("lossy", 40e6, 10e6, 0.020, loss=0.01))


# ---- planning: pure, no root -------------------------------------------------------------------------------------

def test_plan_delays_queues_and_names():
    plan = linkplan.plan(TOPO, ["adsl", "fttp"], "tb00aa", EmuSettings(), "nfqueue")
    links = {link.name: link for link in plan.links}
    access = links["access:adsl"]
    assert (access.up.rate_bps, access.down.rate_bps) == (1e6, 16e6)
    assert access.up.queue_pkts == 100  # 150 kB / 1500 B
    assert access.total_delay_s("up") == pytest.approx(0.045 / 2 + CLOUD_RTT_S / 2)
    assert links["home:fttp"].total_delay_s("down") == pytest.approx(HOME.rtt_s / 2)
    assert all(node.name.startswith("tb00aa") for node in plan.nodes)
    rows = plan.describe()
    assert {row["name"] for row in rows} >= {"access:adsl", "core:adsl", "home:adsl", "server"}
    assert {row["method"] for row in rows if row["name"].startswith("access")} == {"nfqueue"}
    core = next(row for row in rows if row["name"] == "core:fttp")
    assert core["delay_s"] == pytest.approx(CLOUD_RTT_S / 2)
    json.dumps(plan.as_dict())


def test_plan_refuses_rates_htb_cannot_shape():
    topo = _topology(_site("fast", 2e9, 1e9, 0.004))
    with pytest.raises(EngineError, match=r"link access:fast down: rate 2000 Mbit/s"):
        linkplan.plan(topo, ["fast"], "tb00aa", EmuSettings(), "nfqueue")


def test_plan_refuses_bad_input():
    with pytest.raises(EngineError, match="not in the topology"):
        linkplan.plan(TOPO, ["nowhere"], "tb00aa", EmuSettings(), "nfqueue")
    with pytest.raises(EngineError, match="prefix"):
        linkplan.plan(TOPO, ["adsl"], "mininet", EmuSettings(), "nfqueue")
    with pytest.raises(EngineError, match="loss"):
        linkplan.plan(_topology(_site("bad", 1e6, 1e6, 0.01, loss=1.5)), ["bad"], "tb00aa", EmuSettings(), "netem")


def test_shared_link_is_shaped_only_where_it_can_queue():
    shared = {"gpon-1": SharedLink("gpon-1", 2.488e9, 30e6, 1e6, 1e6)}
    topo = _topology(_site("a", 330e6, 50e6, 0.01, aggregation="gpon-1"),
                     _site("b", 330e6, 50e6, 0.01, aggregation="gpon-1"), shared=shared)
    plan = linkplan.plan(topo, ["a", "b"], "tb00aa", EmuSettings(), "nfqueue")
    link = next(link for link in plan.links if link.kind == "shared")
    assert link.down.rate_bps is None  # 2.488 Gbit/s over 660 Mbit/s of members: never a bottleneck
    assert link.up.rate_bps == 30e6 and link.up.queue_pkts == 667
    assert {a.outer for a in plan.links if a.kind == "access"} == {link.inner}


def test_capacity_estimate_refuses_too_many_sites():
    rows = [_site(f"f{i}", 330e6, 50e6, 0.01) for i in range(4)]
    topo = _topology(*rows)
    with pytest.raises(CapabilityError, match="packets/s"):
        linkplan.check_capacity(linkplan.estimate(topo, [r["site"] for r in rows]))
    light = linkplan.estimate(topo, [r["site"] for r in rows], offered_bps={r["site"]: 5e6 for r in rows})
    assert light.problems() == []


def test_commands_are_data():
    cmds = linkplan.shaping_cmds("x-eth0", 16e6, 100)
    assert cmds[1][cmds[1].index("rate") + 1] == "16000000bit"
    assert cmds[2][-2:] == ["limit", "100"]
    rule = linkplan.loss_rule("p1", 0.01, 100)
    assert rule[rule.index("--probability") + 1] == "0.01000000"
    count = linkplan.loss_count_rule("p1", 100)  # counts exactly what the loss rule sees: same matches, no target
    assert count == rule[:rule.index("-m", rule.index("--length"))] and "-j" not in count


def test_parsers_on_captured_output():
    tc_class = "class htb 1:1 root leaf 10: prio 0 rate 16Mbit ceil 16Mbit burst 3026b cburst 3026b \n"
    assert probe.parse_htb_rate(tc_class) == 16e6
    assert probe.parse_htb_rate("class htb 1:1 root leaf 10: prio 0 rate 512Kbit ceil 512Kbit") == 512e3
    assert probe.parse_pfifo_limit("qdisc htb 1: root refcnt 2 r2q 10 default 0x1\n"
                                   "qdisc pfifo 10: parent 1:1 limit 100p\n") == 100
    rules = probe.parse_iptables_rules(
        "-P FORWARD ACCEPT\n-A FORWARD -m physdev --physdev-in d0-eth0 -m length --length 100:65535 -m statistic "
        "--mode random --probability 0.01000000000 -j DROP\n"
        "-A FORWARD -m physdev --physdev-in d0-eth0 -j NFQUEUE --queue-num 1\n")
    assert rules == {("d0-eth0", "loss"): 0.01, ("d0-eth0", "nfqueue"): 1}
    assert probe.parse_netem_delay("qdisc netem 8001: root refcnt 2 limit 100000 delay 22.5ms  1ms\n") == 0.0225
    assert probe.parse_netem_delay("qdisc noqueue 0: root refcnt 2\n") == 0.0
    ping = ("--- 10.0.0.1 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 204ms\n"
            "rtt min/avg/max/mdev = 55.201/55.414/55.690/0.180 ms\n")
    assert pathprobe.parse_ping(ping) == pytest.approx((0.055201, 0.055414, 0.05569, 0.0))
    lost = ("--- 10.0.0.1 ping statistics ---\n5 packets transmitted, 0 received, 100% packet loss, time 204ms\n")
    assert all(math.isnan(v) for v in pathprobe.parse_ping(lost)[:3]) and pathprobe.parse_ping(lost)[3] == 1.0
    with pytest.raises(EngineError, match="no summary"):
        pathprobe.parse_ping("ping: connect: Network is unreachable\n")
    assert pathprobe.parse_iperf3(json.dumps({"end": {"sum_received": {"bits_per_second": 1.5e6}}})) == 1.5e6
    with pytest.raises(EngineError, match="unable to connect"):
        pathprobe.parse_iperf3(json.dumps({"error": "unable to connect to server"}))


def test_shim_parses_kernel_packet_messages():
    def message(queue, packet_id):
        hdr = shim._attr(shim.ATTR_PACKET_HDR, packet_id.to_bytes(4, "big") + b"\x08\x00\x02")
        return shim._message(shim.MSG_PACKET, queue, [shim._attr(9, b"\0" * 8), hdr])
    assert shim.parse_packets(message(1, 7) + message(2, 8)) == [(1, 7), (2, 8)]
    assert shim.QueueSpec.parse("2:0.0225:0.001") == shim.QueueSpec(2, 0.0225, 0.001)
    with pytest.raises(ValueError):
        shim.QueueSpec.parse("2:-1:0")


class _FakeSocket:
    def __init__(self, datagrams):
        self.datagrams, self.sent = list(datagrams), []

    def recv(self, _size):
        if not self.datagrams:
            raise BlockingIOError
        return self.datagrams.pop(0)

    def send(self, data):
        self.sent.append(data)


def test_shim_never_reorders_and_releases_in_batches():
    def message(queue, packet_id):
        hdr = shim._attr(shim.ATTR_PACKET_HDR, packet_id.to_bytes(4, "big") + b"\x08\x00\x02")
        return shim._message(shim.MSG_PACKET, queue, [hdr])
    s = shim.Shim("tb00aad0", [shim.QueueSpec(1, 0.010, 0.005), shim.QueueSpec(2, 0.0, 0.0)], seed=1,
                  state_path=None)
    s.sock = _FakeSocket([message(1, i) for i in range(1, 200)] + [message(2, 500)])
    t0 = time.monotonic()
    s.receive(most=1000)
    releases = [r for r, _ in s.held[1]]
    assert releases == sorted(releases) and len(releases) == 199
    assert min(releases) >= t0 + 0.005 and max(releases) <= time.monotonic() + 0.015
    s.release_due()  # queue 2 has no delay: released at once, with one batch verdict
    assert len(s.sock.sent) == 1 and s.released[2] == 1
    time.sleep(0.016)
    s.release_due()
    assert len(s.sock.sent) == 2 and s.released[1] == 199
    assert s.sock.sent[1].endswith((1).to_bytes(4, "big") + (199).to_bytes(4, "big"))


# ---- the real network (root) --------------------------------------------------------------------------------------

_REASON = capabilities.why_not_here()
needs_emulation = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture(scope="module")
def emu():
    from sim.emu import net

    network = net.build(TOPO, ["adsl", "fttp", "lossy"], net.new_prefix())
    with network:
        yield network
    assert not Path(EmuSettings().state_dir, f"{network.prefix}.json").exists()


@pytest.fixture(scope="module")
def verified(emu):
    """The network's verification; skipped, with the measured reason, if a link missed on a machine short of CPU.

    A rate probe at 50 Mbit/s passes every packet through a delay shim in Python: while other work holds the cores,
    it measures the machine, not the shaping (as :func:`unless_starved`).
    """
    from sim.emu import net

    watch = CpuWatch()
    try:
        return net.verify(emu)
    except EngineError as exc:
        starved = watch.starved()
        if starved:
            pytest.skip(f"machine too busy: {exc}, while the machine was short of CPU ({starved})")
        raise


def _run(emu, host: str, argv: list[str], timeout_s: float = 30.0) -> str:
    proc = emu.node(host).popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    emu.record_pid(f"test {host}", proc.pid)
    out, _ = proc.communicate(timeout=timeout_s)
    emu.state.forget(f"test {host}")
    return out.decode()


@needs_emulation
def test_verify_passes_and_checks_every_link(emu, verified):
    checked = {row["link"] for row in verified.rows}
    assert {f"access:{s}" for s in ("adsl", "fttp", "lossy")} <= checked
    final = {(row["link"], row["what"]): row for row in verified.rows}  # a probe that missed was measured again
    assert all(row["ok"] for row in final.values())
    assert any(row["what"] == "up loss" and row["expected"] == 0.01 for row in verified.rows)
    assert {row["method"] for row in emu.links() if row["delay_s"]} == {capabilities.detect().delay_method}


def unless_starved(watch: CpuWatch, ok: bool, what: str) -> None:
    """Pass if ``ok``; skip, with the measured reason, if it missed on a machine short of CPU; else fail.

    A measurement that misses while other work holds both cores measures the machine, not the emulation (the
    run itself refuses such results: sim.emu.health); on a machine with CPU to spare a miss is a fault.
    """
    if ok:
        return
    starved = watch.starved()
    if starved:
        pytest.skip(f"machine too busy: {what}, while the machine was short of CPU ({starved})")
    raise AssertionError(f"{what} (the machine had CPU to spare: {watch.figures()})")


@needs_emulation
def test_ping_rtt_matches_hand_summed_delays(emu):
    ends = emu.endpoints()
    watch = CpuWatch()
    out = _run(emu, ends.sites["adsl"].host, ["ping", "-n", "-q", "-c", "20", "-i", "0.02", ends.server.ip])
    _, avg_s, _, loss = pathprobe.parse_ping(out)
    configured_s = 2 * (0.045 / 2 + CLOUD_RTT_S / 2)  # access and core, both ways
    assert loss == 0
    unless_starved(watch, avg_s == pytest.approx(configured_s, abs=0.002),
                    f"ADSL ping RTT {avg_s * 1e3:.2f} ms, configured {configured_s * 1e3:.2f} ms")
    out = _run(emu, ends.sites["fttp"].host, ["ping", "-n", "-q", "-c", "20", "-i", "0.02", ends.homes["fttp"].ip])
    configured_s = 0.008 + CLOUD_RTT_S + HOME.rtt_s
    avg_s = pathprobe.parse_ping(out)[1]
    # This path crosses the home's line's delay shim too (each way), beyond the ADSL-to-server path's: each release
    # may be up to ~1 ms late (EMULATION.md: 0.2-0.3 ms mean idle, 0.5-1.4 ms loaded), so twice the ADSL tolerance.
    unless_starved(watch, avg_s == pytest.approx(configured_s, abs=0.004),
                    f"FTTP-home ping RTT {avg_s * 1e3:.2f} ms, configured {configured_s * 1e3:.2f} ms")


def _adsl_download_goodput_bps(emu) -> float:
    """TCP goodput (bit/s) of a 4 s cubic download to the ADSL site, measured with iperf3."""
    ends = emu.endpoints()
    server = emu.node(ends.server.host).popen(["iperf3", "-s", "-1", "-p", "5990"], stdout=subprocess.DEVNULL)
    emu.record_pid("test iperf3 server", server.pid)
    time.sleep(0.3)
    out = _run(emu, ends.sites["adsl"].host, ["iperf3", "-c", ends.server.ip, "-p", "5990", "-R", "-t", "4", "-O",
                                               "1", "-C", "cubic", "--json"])
    server.wait(timeout=10)
    emu.state.forget("test iperf3 server")
    return pathprobe.parse_iperf3(out)


@needs_emulation
def test_tcp_goodput_matches_configured_rate(emu):
    expected_bps = 16e6 * pathprobe.GOODPUT_FACTOR
    watch = CpuWatch()
    goodput_bps = _adsl_download_goodput_bps(emu)
    if goodput_bps != pytest.approx(expected_bps, rel=0.07):
        # A 4 s measurement can lose a tenth to one stall of the delay shim on a busy machine (it came out 11% low
        # once in a full CI run, and within 1% alone); as the run's own verification does, measure once more.
        # A shaper that is wrong misses both times.
        goodput_bps = max(goodput_bps, _adsl_download_goodput_bps(emu))
    unless_starved(watch, goodput_bps == pytest.approx(expected_bps, rel=0.07),
                    f"ADSL download goodput {goodput_bps / 1e6:.2f} Mbit/s, expected {expected_bps / 1e6:.2f}")


@needs_emulation
def test_one_percent_loss_measures_about_one_percent(emu):
    ends = emu.endpoints()
    server = emu.node(ends.server.host).popen(["iperf3", "-s", "-1", "-p", "5991"], stdout=subprocess.DEVNULL)
    emu.record_pid("test iperf3 server", server.pid)
    time.sleep(0.3)
    link = next(link for link in emu.plan.links if link.name == "access:lossy")
    node, port = emu.node(link.delay_node), emu.devices(link)["delay_in_up"][1]
    before = health.parse_iptables_counters(node.cmd(DELAY_NODE_CMD).partition("@@ipt")[2])[port]
    receiver = emu.node(ends.server.host)
    full_before = health.parse_udp_snmp(receiver.cmd("cat /proc/net/snmp"))["RcvbufErrors"]
    watch = CpuWatch()
    # ~11,000 datagrams of 228 bytes (data packets, above loss_min_ip_bytes) up a 10 Mbit/s link with 1% loss.
    out = _run(emu, ends.sites["lossy"].host, ["iperf3", "-c", ends.server.ip, "-p", "5991", "-u", "-b", "6M",
                                                "-l", "200", "-t", "3", "--json"])
    server.wait(timeout=10)
    after = health.parse_iptables_counters(node.cmd(DELAY_NODE_CMD).partition("@@ipt")[2])[port]
    summary = json.loads(out)["end"]["sum"]
    assert summary["packets"] > 9000
    # the loss rule itself: every datagram reached it, and it dropped 1% within 4 sd (n = 11,000: 112 +- 43)
    candidates, dropped = after["candidates"] - before["candidates"], after["dropped"] - before["dropped"]
    assert candidates >= summary["packets"]
    assert abs(dropped - 0.01 * candidates) <= 4 * (0.01 * 0.99 * candidates) ** 0.5 + 1, (dropped, candidates)
    # end to end: iperf3 counts what reached its receiver, so a receiver starved of CPU adds losses of its own,
    # which its kernel counts as datagrams dropped at a full socket buffer (the run judges those as a host fault)
    full = health.parse_udp_snmp(receiver.cmd("cat /proc/net/snmp"))["RcvbufErrors"] - full_before
    if full and not 0.007 <= summary["lost_percent"] / 100 <= 0.013:
        pytest.skip(f"machine too busy: iperf3 lost {summary['lost_percent']:.2f}% end to end, of which {full} "
                    f"datagrams at its receiver's full socket buffer (it did not get a CPU in time); the loss rule "
                    f"dropped {dropped / candidates:.2%} as configured")
    unless_starved(watch, 0.007 <= summary["lost_percent"] / 100 <= 0.013,
                    f"iperf3 lost {summary['lost_percent']:.2f}% end to end with the rule dropping "
                    f"{dropped / candidates:.2%}")
    out = _run(emu, ends.sites["fttp"].host, ["ping", "-n", "-q", "-c", "200", "-i", "0.005", "-s", "1000",
                                               ends.server.ip])
    assert pathprobe.parse_ping(out)[3] == 0  # the other links are lossless


@needs_emulation
def test_health_watch_reads_a_saturated_downlink_and_its_shim_during_traffic(emu):
    from sim.emu.utilisation import Watch

    ends = emu.endpoints()
    watch = Watch(emu)
    watch.watch_pids([proc.pid for proc in emu.shims.values()])
    server = emu.node(ends.server.host).popen(["iperf3", "-s", "-1", "-p", "5992"], stdout=subprocess.DEVNULL)
    emu.record_pid("test iperf3 server", server.pid)
    time.sleep(0.3)
    watch.snapshot(time.time())
    # a cubic download fills ADSL's 16 Mbit/s downlink; its queue (at the core switch) is 100 packets, 76 ms of work
    client = emu.node(ends.sites["adsl"].host).popen(["iperf3", "-c", ends.server.ip, "-p", "5992", "-t", "6", "-R",
                                                      "-C", "cubic", "--json"], stdout=subprocess.PIPE)
    emu.record_pid("test adsl", client.pid)
    deadline_s = time.monotonic() + 30
    while client.poll() is None and time.monotonic() < deadline_s:
        watch.tick(time.time())
        time.sleep(0.05)
    watch.snapshot(time.time())
    client.communicate(timeout=10)
    server.wait(timeout=10)
    # judged from 20 ms certainly backlogged on (the default 0.5 s needs a queue longer than this one)
    rows = watch.judge(0.0, 8.0, health.Thresholds(shaper_min_backlogged_s=0.02))
    shaper = {r["direction"]: r for r in rows if r["check"] == "shaper_delivered_share" and r["link"] == "access:adsl"}
    assert set(shaper) == {"down"}  # the uplink carried ACKs only: its queue never held a packet for long
    assert shaper["down"]["ok"] and shaper["down"]["measured"] >= 0.9, shaper
    shim_rows = {(r["link"], r["direction"]): r for r in rows if r["check"] == "shim_late_share"}
    assert len(shim_rows) == 2 * len(emu.shims)  # every shimmed direction of every delay node
    # the download's frames pass the shim after the shaper: at least 5 s x 16 Mbit/s / 1514-byte frames = 6,605
    assert int(shim_rows[("access:adsl", "down")]["detail"].split()[0]) >= 6605
    assert all(r["measured"] == 0 for r in rows if r["check"] == "undecided_drops_pkts")
    assert {r["check"] for r in rows if r["link"] == "host"} == {"cpu_starved", "run_cpu_wait_share", "machine_stall_s"}
    (stalled,) = [r for r in rows if r["check"] == "machine_stall_s"]  # a probe on each CPU, read at both snapshots
    assert stalled["ok"] and stalled["measured"] in (0.0, *health.LATENESS_EDGES_S)
    assert stalled["detail"].count("CPU ") == len(os.sched_getaffinity(0))


@needs_emulation
def test_config_read_back_side_by_side_still_finds_each_link_that_does_not_hold(emu):
    """Links are read back concurrently; every one is judged and the first in the plan's order is named."""
    def set_limit(site: str, pkts: int) -> None:
        link = next(link for link in emu.plan.links if link.name == f"access:{site}")
        node, intf = emu.devices(link)["down"]
        out, err, code = emu.node(node).pexec(["tc", "qdisc", "change", "dev", intf, "parent", "1:1", "handle",
                                               "10:", "pfifo", "limit", str(pkts)])
        assert code == 0, out + err

    queue = linkplan.queue_pkts(150e3, 1500)  # 100 packets, every site of TOPO
    tol = probe.Tolerance(measure=False)
    try:
        set_limit("lossy", 7)
        set_limit("fttp", 9)
        with pytest.raises(EngineError, match=r"link access:fttp down: .* queue 9 packets; configured .* 100 pa"):
            probe.verify(emu, tol)
        set_limit("fttp", queue)
        with pytest.raises(EngineError, match=r"link access:lossy down: .* queue 7 packets"):
            probe.verify(emu, tol)
    finally:
        set_limit("fttp", queue)
        set_limit("lossy", queue)
    report = probe.verify(emu, tol)
    assert all(row["ok"] for row in report.rows)
    assert [row["link"] for row in report.rows if row["what"] == "down pfifo limit_pkts"][:3] == [
        "access:adsl", "home:adsl", "access:fttp"]  # in the plan's order, whatever order the reads finished in


@needs_emulation
def test_prefix_in_use_is_refused_and_the_run_survives(emu):
    from sim.emu import net

    with pytest.raises(EngineError, match="in use|already claimed"):
        net.build(TOPO, ["adsl"], emu.prefix).start()
    out = _run(emu, emu.endpoints().sites["adsl"].host, ["ping", "-n", "-q", "-c", "2", "-i", "0.05",
                                                          emu.endpoints().server.ip])
    assert pathprobe.parse_ping(out)[3] == 0


@needs_emulation
def test_two_gigabit_is_refused_and_nothing_is_left():
    from sim.emu import net

    before = _our_links("tb")
    topo = _topology(_site("fast", 2e9, 1e9, 0.004))
    with pytest.raises(EngineError, match=r"access:fast down: rate 2000 Mbit/s is outside"):
        net.build(topo, ["fast"], net.new_prefix())
    assert _our_links("tb") == before
    assert not list(Path(EmuSettings().state_dir).glob("*.tmp"))


def _start_child(prefix: str, with_block: bool) -> subprocess.Popen:
    body = (f"with net.build(TOPO, ['adsl', 'fttp'], {prefix!r}):\n    print('up', flush=True)\n    time.sleep(600)\n"
            if with_block else f"n = net.build(TOPO, ['adsl', 'fttp'], {prefix!r})\nn.start()\n"
                               "print('up', flush=True)\ntime.sleep(600)\n")
    script = (f"import sys, time\nsys.path.insert(0, {str(ROOT)!r})\n"
              "from tests.test_emu_net import TOPO\nfrom sim.emu import net\n" + body)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)


@needs_emulation
def test_sigterm_tears_the_run_down():
    prefix = "tb" + os.urandom(2).hex()
    child = _start_child(prefix, with_block=True)
    assert child.stdout.readline().strip() == b"up", child.stderr.read().decode()[-2000:]
    pids = json.loads(Path(EmuSettings().state_dir, f"{prefix}.json").read_text())["pids"].values()
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert not any(pid_alive(pid) for pid in pids)
    assert not _processes_mentioning(prefix) and not _our_links(prefix)
    assert not Path(EmuSettings().state_dir, f"{prefix}.json").exists()


@needs_emulation
def test_killed_run_is_cleaned_up_completely():
    prefix = "tb" + os.urandom(2).hex()
    child = _start_child(prefix, with_block=False)
    try:
        assert child.stdout.readline().strip() == b"up", child.stderr.read().decode()[-2000:]
        state = json.loads(Path(EmuSettings().state_dir, f"{prefix}.json").read_text())
        namespaces = {os.readlink(f"/proc/{pid}/ns/net") for label, pid in state["pids"].items()
                      if label.startswith("shell")}
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert any(pid_alive(pid) for pid in state["pids"].values())  # SIGKILL left the run behind
    report = clean(prefix)
    assert prefix in report.prefixes and report.killed_pids
    assert not any(pid_alive(pid) for pid in state["pids"].values())
    assert not _processes_mentioning(prefix)
    assert not _our_links(prefix)
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not namespaces & _live_namespaces(), "a namespace of the killed run (with its iptables rules) survived"
    assert not Path(EmuSettings().state_dir, f"{prefix}.json").exists()
    assert clean(prefix).lines() == ["nothing of ours to clean"]


def _our_links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    names = re.findall(r"^\d+: ([^:@]+)", out + bridges, re.MULTILINE)
    return sorted(n for n in names if n.startswith(prefix))


def _processes_mentioning(prefix: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if prefix.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _live_namespaces() -> set[str]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.add(os.readlink(entry / "ns" / "net"))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "scenarios")
                                        .glob("*.yaml")))
def test_every_shipped_scenario_has_a_default_slice_this_machine_carries(name):
    """`--engine emu` works on every shipped scenario: its default sites and window pass the capacity check."""
    from sim import topology, workload
    from sim.emu import engine, linkplan
    from sim.load import load

    scenario = load(Path(__file__).resolve().parent.parent / "scenarios" / f"{name}.yaml")
    topo = topology.build(scenario)
    trace = workload.generate(scenario, engine.candidates(scenario, topo), scenario.seed)
    chosen, sub = engine.prepare(scenario, topo, trace)
    assert 1 <= len(chosen.sites) <= scenario.emulation.max_sites
    assert len(chosen.trace) > 0 and chosen.trace["site"].isin(chosen.sites).all()
    assert chosen.trace["start_s"].between(chosen.start_s, chosen.end_s, inclusive="left").all()
    estimate = linkplan.estimate(sub, list(chosen.sites), offered_bps=engine.offered_bps(chosen, sub))
    assert estimate.problems() == []
