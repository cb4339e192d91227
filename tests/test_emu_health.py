"""The emulation's health judgement, on counter text captured from real runs (tests/data/); no root needed.

Each expected figure is worked out by hand from the captured numbers, not by the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sim.emu import health, shim
from sim.emu.health import Interval, Thresholds

DATA = Path(__file__).resolve().parent / "data"
TH = Thresholds()
FIRST = Interval(0, 8 * 3600.0, 10.0)


def _text(name: str) -> str:
    return (DATA / name).read_text()


def test_the_shim_and_the_judge_share_one_histogram():
    assert shim.LATENESS_EDGES_S == health.LATENESS_EDGES_S
    assert TH.late_s in health.LATENESS_EDGES_S  # the share later than the threshold is counted, not estimated


def test_nfqueue_counters_from_a_bound_shim_and_from_an_overflowing_queue():
    # captured: a shim bound queues 1 and 2; 50 UDP packets went through queue 2
    assert health.parse_nfqueue(_text("nfnetlink_queue.txt")) == {
        1: {"held": 0, "queue_dropped": 0, "user_dropped": 0, "id_sequence": 0},
        2: {"held": 0, "queue_dropped": 0, "user_dropped": 0, "id_sequence": 50}}
    # captured: a queue of 10 packets that nobody served, offered 50: 10 held, 40 dropped by the kernel
    full = health.parse_nfqueue(_text("nfnetlink_queue-overflow.txt"))
    assert full == {2: {"held": 10, "queue_dropped": 40, "user_dropped": 0, "id_sequence": 10}}
    before = {"queue_dropped": 0, "user_dropped": 0}
    judged = health.judge_undecided(FIRST, "access:a", "down", before, full[2], TH)
    assert not judged["ok"] and judged["measured"] == 40 and "40 dropped by a full NFQUEUE" in judged["detail"]
    assert health.judge_undecided(FIRST, "access:a", "down", before, before, TH)["ok"]


def test_htb_counters_of_every_shaped_interface_of_a_node():
    # captured from a run's core switch: one HTB (+ pfifo child) per access and home link it shapes downwards
    found = health.parse_tc_qdiscs(_text("tc-qdisc-core.txt"))
    assert "tb8febc-eth1" not in found  # noqueue: not shaped
    assert found["tb8febc-eth2"] == {"sent_bytes": 11925745, "sent_pkts": 8303, "backlog_bytes": 0,
                                     "backlog_pkts": 0, "dropped_pkts": 256}
    assert found["tb8febc-eth6"]["sent_bytes"] == 104573035
    site = health.parse_tc_qdiscs(_text("tc-qdisc-site.txt"))
    assert site == {"tb8febs0-eth0": {"sent_bytes": 1471456, "sent_pkts": 6625, "backlog_bytes": 0,
                                      "backlog_pkts": 0, "dropped_pkts": 0}}
    backlogged = ("qdisc htb 1: dev x-eth0 root refcnt 3 r2q 10 default 0x1 direct_packets_stat 0 direct_qlen 1000\n"
                  " Sent 41908 bytes 30 pkt (dropped 0, overlimits 19 requeues 0) \n backlog 1442b 1p requeues 0\n"
                  "qdisc pfifo 10: dev x-eth0 parent 1:1 limit 100p\n"
                  " Sent 41818 bytes 29 pkt (dropped 3, overlimits 0 requeues 0) \n backlog 1442b 1p requeues 0\n")
    assert health.parse_tc_qdiscs(backlogged)["x-eth0"] == {"sent_bytes": 41908, "sent_pkts": 30,
                                                            "backlog_bytes": 1442, "backlog_pkts": 1,
                                                            "dropped_pkts": 3}


def test_loss_rule_counters():
    # captured from a delay node of a lossy link (counting rule, statistic rule, NFQUEUE rule per port)
    found = health.parse_iptables_counters(_text("iptables-lossy-node.txt"))
    # (a 3 s iperf3 UDP upload of 200-byte datagrams at 6 Mbit/s; iperf3 itself reported 0.978% lost)
    assert found == {"tb00f1d0-eth0": {"candidates": 11249, "dropped": 110},
                     "tb00f1d0-eth1": {"candidates": 1, "dropped": 0}}
    # 110 of 11,249 at 1%: mean 112.5, sd 10.55; within 4 sd
    judged = health.judge_loss(FIRST, "access:lossy", "up", 11249, 110, 0.01, TH)
    assert judged["ok"] and judged["measured"] == pytest.approx(0.00978, abs=1e-5)
    # a node without loss has NFQUEUE rules only: nothing to judge
    assert health.parse_iptables_counters(_text("iptables-delay-node.txt")) == {
        "tb8febd0-eth0": {"candidates": 0, "dropped": 0}, "tb8febd0-eth1": {"candidates": 0, "dropped": 0}}


def test_datagrams_dropped_at_a_full_socket_buffer_are_a_loss_nobody_decided():
    counters = health.parse_udp_snmp(_text("proc-net-snmp-rcvbuf.txt"))
    assert (counters["OutDatagrams"], counters["InDatagrams"], counters["RcvbufErrors"]) == (100, 0, 97)
    judged = health.judge_receive_drops(FIRST, "site:a", {"RcvbufErrors": 0}, counters, TH)
    assert not judged["ok"] and judged["measured"] == 97
    assert health.judge_receive_drops(FIRST, "site:a", counters, counters, TH)["ok"]
    assert health.affected_sites([judged], ["a", "b"]) == ["a"]
    from_server = health.judge_receive_drops(FIRST, health.SERVER, {"RcvbufErrors": 0}, counters, TH)
    assert health.affected_sites([from_server], ["a", "b"]) == ["a", "b"]  # every site's traffic reaches it


def test_binomial_tolerance_of_loss():
    # 10,000 packets at 1%: mean 100, sd sqrt(10000 x 0.01 x 0.99) = 9.95; 4 sd + 1 -> 59.2 .. 140.8
    low, high = health.loss_bounds(10_000, 0.01, 4.0)
    assert low == pytest.approx(100 - 4 * 9.9499 - 1, abs=1e-3) and high == pytest.approx(140.80, abs=1e-2)
    assert health.judge_loss(FIRST, "access:a", "up", 10_000, 100, 0.01, TH)["ok"]
    assert health.judge_loss(FIRST, "access:a", "up", 10_000, 140, 0.01, TH)["ok"]
    assert not health.judge_loss(FIRST, "access:a", "up", 10_000, 320, 0.01, TH)["ok"]   # 3.2% for 1%
    assert not health.judge_loss(FIRST, "access:a", "up", 10_000, 0, 0.01, TH)["ok"]     # a rule not in force
    assert health.judge_loss(FIRST, "access:a", "up", 150, 30, 0.01, TH) is None          # too few to judge


def test_lateness_share_and_p99_from_cumulative_histograms():
    edges = health.LATENESS_EDGES_S
    before = [0] * (len(edges) + 1)
    after = list(before)
    after[0], after[3], after[5], after[-1] = 900, 95, 4, 1  # <=0.2 ms, <=2 ms, <=10 ms, >1 s
    # later than 5 ms: the <=10 ms and >1 s buckets: 5 of 1000
    assert health.late_share(before, after, 0.005) == (1000, 0.005)
    assert health.p99_upper_s(before, after) == 0.002   # 900 + 95 = 995 >= 990
    assert health.judge_shim(FIRST, "access:a", "up", before, after, TH)["ok"]
    after[6] += 20  # 20 more releases 10-20 ms late: 25 of 1020 late (2.5%)
    judged = health.judge_shim(FIRST, "access:a", "up", before, after, TH)
    assert not judged["ok"] and judged["measured"] == pytest.approx(25 / 1020)
    assert health.p99_upper_s(before, before) == 0.0
    assert math.isinf(health.p99_upper_s(before, [0] * len(edges) + [5]))
    with pytest.raises(ValueError, match="not an edge"):
        health.late_share(before, after, 0.003)


def test_shaper_is_judged_only_while_certainly_backlogged():
    rate_bps = 8e6  # 1 MB/s
    # queue holds 2 MB at each sample: 1 s periods are certainly backlogged; 1 MB owed each, 0.95 MB sent
    full = [(0.0, 0, 2_000_000), (1.0, 950_000, 2_000_000), (2.0, 1_900_000, 2_000_000)]
    assert health.backlogged_work(full, rate_bps) == (2_000_000, 1_900_000)
    assert health.judge_shaper(FIRST, "access:a", "down", full, rate_bps, TH)["ok"]
    slow = [(0.0, 0, 2_000_000), (1.0, 600_000, 2_000_000), (2.0, 1_200_000, 2_000_000)]
    judged = health.judge_shaper(FIRST, "access:a", "down", slow, rate_bps, TH)
    assert not judged["ok"] and judged["measured"] == pytest.approx(0.6)
    # a queue of 10 kB owes only 10 kB per period: sending little is no fault (an idle link is not a slow one)
    short = [(t, int(t * 10_000), 10_000) for t in range(11)]
    assert health.backlogged_work(short, rate_bps) == (100_000, 100_000)
    assert health.judge_shaper(FIRST, "access:a", "down", short, rate_bps, TH) is None  # 0.1 s backlogged
    # arrivals beyond the backlog do not make up for a period that under-delivered
    uneven = [(0.0, 0, 1_000_000), (1.0, 100_000, 1_000_000), (2.0, 2_100_000, 0)]
    assert health.backlogged_work(uneven, rate_bps) == (2_000_000, 1_100_000)


CPU_QUIET = "cpu  9780 0 3697 20937 780 0 352 868 0 0\ncpu0 4890 0 1848 10468 390 0 176 434 0 0\n"
CPU_LATER = "cpu  9980 0 3797 21037 780 0 352 868 0 0\ncpu0 4990 0 1898 10518 390 0 176 434 0 0\n"
PRESSURE = "some avg10=0.29 avg60=2.10 avg300=1.81 total=8630545\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def test_cpu_counters():
    assert health.parse_proc_stat(CPU_QUIET) == {"busy": 9780 + 3697 + 352, "idle": 20937 + 780, "steal": 868,
                                                 "total": 9780 + 3697 + 20937 + 780 + 352 + 868}
    assert health.parse_pressure(PRESSURE) == pytest.approx(8.630545)
    assert health.parse_pressure("") is None
    assert health.parse_schedstat("304290 1000000 17\n") == (304290e-9, 1e-3, 17)


def _reading(stat: str, pressure_s: float | None, procs: dict) -> health.CpuReading:
    return health.CpuReading(health.parse_proc_stat(stat), pressure_s, 3.5, procs)


# 10 s on two cores: 2000 jiffies; CPU_FULL adds 1900 busy, 80 stolen, 20 idle
CPU_FULL = "cpu  11380 0 3997 20957 780 0 352 948 0 0\n"


def test_a_full_machine_with_waiting_tasks_is_starved():
    interval = Interval(2, 8 * 3600 + 20.0, 10.0)
    before = _reading(CPU_QUIET, 8.0, {11: (1.0, 0.1), 12: (2.0, 0.2)})
    # pid 11 ran 0.3 s and waited 0.2 s; pid 12 ended meanwhile; pid 13 is new (no baseline: left out)
    after = _reading(CPU_FULL, 14.5, {11: (1.3, 0.3), 13: (5.0, 5.0)})
    starved, wait = health.judge_cpu(interval, before, after, TH)
    assert starved["check"] == "cpu_starved" and not starved["ok"]
    assert starved["measured"] == pytest.approx(0.65)  # 6.5 s of pressure in 10 s
    assert "cores 95% busy and 4% stolen" in starved["detail"]  # 1900/2000, 80/2000
    assert wait["measured"] == pytest.approx(0.2 / 0.5) and wait["ok"]  # reported, not judged
    message = health.refusal([starved, wait])
    assert message.startswith("host: cpu_starved in interval(s) 28820 s")
    assert "Likely cause: CPU starvation" in message
    assert health.affected_sites([starved, wait], ["a", "b"]) == ["a", "b"]


def test_busy_cores_without_waiting_tasks_or_with_cpu_to_spare_are_not_starved():
    interval = Interval(0, 0.0, 10.0)
    before = _reading(CPU_QUIET, 8.0, {})
    # cores full but only 1 s of pressure (10%): the run's own work filling the machine, nobody waiting long
    assert health.judge_cpu(interval, before, _reading(CPU_FULL, 9.0, {}), TH)[0]["ok"]
    # 300 of 400 jiffies busy (75%) with heavy pressure: not full
    assert health.judge_cpu(interval, before, _reading(CPU_LATER, 16.0, {}), TH)[0]["ok"]
    # no PSI: judged by the busy share alone
    no_psi = health.judge_cpu(interval, _reading(CPU_QUIET, None, {}), _reading(CPU_FULL, None, {}), TH)[0]
    assert not no_psi["ok"] and no_psi["measured"] == pytest.approx(0.99)


def test_a_link_fault_on_an_idle_machine_is_not_blamed_on_the_cpu():
    interval = Interval(0, 0.0, 10.0)
    before = _reading(CPU_QUIET, 8.0, {11: (1.0, 0.1)})
    after = _reading(CPU_LATER, 8.1, {11: (1.5, 0.11)})
    rows = health.judge_cpu(interval, before, after, TH)
    rows.append(health.judge_undecided(interval, "access:b", "up", {"queue_dropped": 0, "user_dropped": 0},
                                       {"queue_dropped": 3, "user_dropped": 0}, TH))
    message = health.refusal(rows)
    assert message.startswith("access:b up: undecided_drops_pkts in interval(s) 0 s")
    assert "Likely cause: not CPU" in message
    assert health.affected_sites(rows, ["a", "b", "c"]) == ["b"]
    shared = [health.row(interval, "shared:gpon-1", "down", "shaper_delivered_share", 0.5, 0.9, False)]
    assert health.affected_sites(shared, ["a", "b", "c"], {"shared:gpon-1": ["a", "c"]}) == ["a", "c"]
    assert health.refusal(rows[:-1]) == ""


def test_a_late_start_fails_its_sites_interval_naming_the_agents_not_the_links():
    # starts on the trace clock from 100 s, 10 s intervals: 103 and 108 s are interval 0, 115 s interval 1
    starts = [("a", 103.0, 0.003), ("a", 108.0, 0.021), ("b", 103.0, 0.0195), ("a", 115.0, 0.002)]
    rows = health.judge_starts(starts, 100.0, 10.0, TH)
    assert [(r["link"], r["interval"], r["start_s"], r["measured"], r["ok"]) for r in rows] == [
        ("access:a", 0, 100.0, 0.021, False), ("access:a", 1, 110.0, 0.002, True), ("access:b", 0, 100.0, 0.0195, True)]
    assert rows[0]["detail"] == "2 transfers started, 1 over 20 ms late, the latest 21.0 ms late"
    assert health.affected_sites(rows, ["a", "b", "c"]) == ["a"]
    message = health.refusal(rows)
    assert message.startswith("access:a: transfer_start_late_s in interval(s) 100 s")
    assert "Likely cause: late starts, not the links" in message
    assert health.judge_starts([], 100.0, 10.0, TH) == []


# ---- the engine's verdict: refuse the sites whose links did not hold, or the run ---------------------------------

class _Watch:
    def __init__(self, rows: list[dict]) -> None:
        self.rows, self.snapshots = rows, [None] * 3

    def judge(self, _start_s, _bin_s, _th):
        return self.rows


class _Sampler:
    bin_s = 10.0

    def __init__(self, rows: list[dict]) -> None:
        self.watch = _Watch(rows)


def _slice_and_topology():
    import pandas as pd

    from sim.emu import window
    from sim.topology import SITE_COLUMNS, FarEnd, Topology

    rows = [dict.fromkeys(SITE_COLUMNS, 0.0) | {"site": s, "aggregation": ""} for s in ("a", "b", "c")]
    topo = Topology(pd.DataFrame(rows, columns=list(SITE_COLUMNS)), {}, 0.0, FarEnd(1e9, 1e9, 0.0))
    sessions = pd.DataFrame({"site": ["a", "b", "c", "b"], "session_id": [0, 1, 2, 3]})
    return window.Slice(("a", "b", "c"), 100.0, 120.0, 5.0, sessions), topo


def test_only_the_sites_whose_links_did_not_hold_are_refused(caplog):
    from sim.emu import engine

    chosen, topo = _slice_and_topology()
    second = Interval(1, 110.0, 10.0)
    rows = [health.row(second, "host", "-", "cpu_starved", 0.02, 0.4, True, "cores 40% busy"),
            health.row(second, "access:b", "up", "undecided_drops_pkts", 3, 0, False, "3 dropped by a full NFQUEUE"),
            health.row(second, "access:c", "up", "shim_late_share", 0.0, 0.01, True)]
    with caplog.at_level("WARNING", logger="sim.emu.engine"):
        held = engine.judge_health(_Sampler(rows), chosen, topo, TH)
    assert (held.kept, held.refused) == (("a", "c"), ("b",))
    assert held.meta["failed"] == 1 and held.meta["refused_sites"] == ["b"] and held.meta["rows"] == rows
    assert held.meta["why"].startswith("access:b up: undecided_drops_pkts in interval(s) 00:01:50")
    assert "results of sites b refused" in caplog.text and "Likely cause: not CPU" in caplog.text
    records = chosen.trace.assign(completed=True)
    whole = engine.EmuResult(records, records[["site"]], slice=chosen, topology=topo, meta=held.meta)
    result = engine._without(whole, held.kept)
    assert result.slice.sites == ("a", "c") and list(result.slice.trace["session_id"]) == [0, 2]
    assert list(result.records["site"]) == ["a", "c"] and list(result.links["site"]) == ["a", "c"]
    assert list(result.topology.sites["site"]) == ["a", "c"]


def test_a_starved_machine_refuses_the_whole_run_naming_the_cpu():
    from sim.emu import engine

    chosen, topo = _slice_and_topology()
    first = Interval(0, 100.0, 10.0)
    rows = [health.row(first, "host", "-", "cpu_starved", 0.7, 0.4, False, "cores 100% busy and 0% stolen")]
    with pytest.raises(health.HealthError, match=r"results refused: host: cpu_starved in interval\(s\) 00:01:40 "
                                                 r".*Likely cause: CPU starvation") as caught:
        engine.judge_health(_Sampler(rows), chosen, topo, TH)
    assert caught.value.rows == rows


def test_a_site_whose_transfers_started_late_is_refused_from_the_agents_results():
    from sim.emu import engine

    chosen, topo = _slice_and_topology()  # sessions 0 (a), 1 (b), 2 (c), 3 (b); the slice from 100 s
    entry = {"start_s": 104.0, "late_s": 0.001}
    results = {"h-a": {"transfers": [entry | {"session_id": 0}]},
               "h-b": {"transfers": [entry | {"session_id": 1}, entry | {"session_id": 3, "late_s": 0.054}]},
               "h-c": {"transfers": [entry | {"session_id": 2, "late_s": None}]}}  # never started: not judged
    held = engine.judge_health(_Sampler([]), chosen, topo, TH, results=results)
    assert (held.kept, held.refused) == (("a", "c"), ("b",))
    assert held.meta["checks"] == 2 and held.meta["failed"] == 1
    assert "the latest 54.0 ms late" in held.meta["why"]


def test_only_failures_a_busy_or_stalled_machine_makes_are_the_machines_alone():
    assert health.the_machines_only({"shim_late_share", "cpu_starved", "transfer_start_late_s"})
    assert not health.the_machines_only({"shim_late_share", "shaper_delivered_share"})  # a shaper is a link's
    assert not health.the_machines_only({"link_change"}) and not health.the_machines_only(set())


def test_a_late_start_in_an_interval_the_machine_stalled_is_blamed_on_the_stall():
    rows = health.judge_starts([("a", 103.0, 0.030)], 100.0, 10.0, TH)
    rows.append(health.row(Interval(0, 100.0, 10.0), health.HOST, "-", "machine_stall_s", 0.02, TH.late_s, True,
                           "a probe outranking every task woke late by at least (ms): CPU 0 20, CPU 1 0.5"))
    message = health.refusal(rows)
    assert "Likely cause: the machine stalled" in message and "or a transfer started late meanwhile" in message
    rows[-1]["measured"] = 0.002  # no stall that long: the agent's own lateness
    assert "Likely cause: late starts, not the links" in health.refusal(rows)
