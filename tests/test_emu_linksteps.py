"""Link changes in the emulation, without root: a fault's steps as commands, their read-back judged, the delay
shim's control path, the health verdict on a change that did not take, and a call's phases summarised.

The real-packet failover (an FTTC practice's call failing over to 4G mid-call) is tests/test_emu_failover.py.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from sim import calibrate, failover
from sim import linkchanges as lc
from sim.emu import batch, changer, health, linkplan, linksteps, shim
from sim.emu.linkplan import EmuSettings
from sim.errors import EngineError

# An FTTC 40/10 practice (access.yaml, S1: 40/10 Mbit/s, 21 ms, 150 KB) and its 4G backup (S1: 29.5/7.6, 21 ms).
FTTC = lc.LineState(40e6, 10e6, 0.021, 0.0, 150e3, 150e3)
BACKUP_4G = lc.LineState(29.5e6, 7.6e6, 0.021, 0.0, 150e3, 150e3)
CLOUD_RTT_S = 0.010


def _plan(site="gp", line=FTTC):
    topo = _with_cloud(calibrate.one_site(line.up_bps, line.down_bps, line.rtt_s, line.buffer_up_bytes,
                                              buffer_down_bytes=line.buffer_down_bytes, name=site))
    return linkplan.plan(topo, [site], "tb00aa", EmuSettings(), "nfqueue"), topo


def _with_cloud(topo):
    from sim.topology import Topology

    return Topology(topo.sites, topo.shared, CLOUD_RTT_S, topo.home)


def _devices(plan):
    link = next(link for link in plan.links if link.name == "access:gp")
    d = link.delay_node
    return link, {"up": (d, f"{d}-eth1"), "down": ("tb00aac", "tb00aac-eth2"),
                  "delay_in_up": (d, f"{d}-eth0"), "delay_in_down": (d, f"{d}-eth1")}


def _text(cmds):
    return [" ".join(c) for c in cmds]


def test_a_failover_is_three_steps_with_what_each_direction_becomes():
    plan, topo = _plan()
    steps = linksteps.plan_steps(plan, topo, lc.failover("gp", FTTC, BACKUP_4G, 10.0, 20.0, 5.0), 30.0)
    assert [(s.at_s, s.cause) for s in steps] == [(10.0, "fault"), (15.0, "backup"), (20.0, "repaired")]
    fault, backup, repaired = steps
    one_way_s = 0.021 / 2 + CLOUD_RTT_S / 2  # the access line's half RTT and the core's, as at build
    assert fault.after["up"] == linksteps.Want(0.0, 100, one_way_s, 0.0, "fifo") and fault.after["down"].blocked
    assert backup.after["down"] == linksteps.Want(29.5e6, 100, one_way_s, 0.0, "fifo")  # ceil(150 kB / 1500 B)
    assert backup.shaped["up"].rate_bps == 10e6  # the outage left the shaper at the primary's rate
    assert repaired.after["up"].rate_bps == 10e6 and repaired.before["up"].rate_bps == 7.6e6


def test_commands_drop_during_the_outage_then_reshape_and_lift_the_drop_last():
    plan, topo = _plan()
    link, devices = _devices(plan)
    fault, backup, repaired = linksteps.plan_steps(plan, topo, lc.failover("gp", FTTC, BACKUP_4G, 10, 20, 5), 30)
    d = link.delay_node
    cmds = linksteps.step_cmds(fault, link, devices, "nfqueue", 100)
    assert cmds.shim_delays == {} and cmds.last == []
    assert cmds.first == [(d, [linksteps.block_rule(f"{d}-eth0", "-I"), linksteps.block_rule(f"{d}-eth1", "-I")])]
    assert _text([cmds.first[0][1][0]]) == [f"iptables -w -t mangle -I FORWARD 1 -m physdev --physdev-in {d}-eth0 "
                                            "-j DROP"]
    cmds = linksteps.step_cmds(backup, link, devices, "nfqueue", 100)
    (node_a, up), (node_b, down) = cmds.first
    assert (node_a, node_b) == (d, "tb00aac")
    burst = int(7.6e6 / 8 * 0.001)  # 1 ms at line rate (950 B), at least two frames: 3028 B
    assert _text(up) == [f"tc class change dev {d}-eth1 parent 1: classid 1:1 htb rate 7600000bit ceil 7600000bit "
                         f"burst {max(burst, 3028)}b cburst {max(burst, 3028)}b quantum 1514",
                         f"tc qdisc change dev {d}-eth1 parent 1:1 handle 10: pfifo limit 100"]
    assert "rate 29500000bit ceil 29500000bit burst 3687b" in _text(down)[0]  # 29.5e6 / 8 x 1 ms = 3687 B
    assert cmds.last == [(d, [linksteps.block_rule(f"{d}-eth0", "-D"), linksteps.block_rule(f"{d}-eth1", "-D")])]
    cmds = linksteps.step_cmds(repaired, link, devices, "nfqueue", 100)
    assert cmds.last == [] and "rate 10000000bit" in _text(cmds.first[0][1])[0]


def test_a_new_delay_goes_to_the_shim_and_loss_rules_are_replaced_counting_rule_first():
    plan, topo = _plan()
    link, devices = _devices(plan)
    slow = lc.LineState(40e6, 10e6, 0.120, 0.02, 150e3, 150e3)
    changes = pd.DataFrame([("gp", 5.0, *(getattr(slow, c) for c in lc.LINE_COLUMNS), "slow")], columns=lc.COLUMNS)
    (step,) = linksteps.plan_steps(plan, topo, changes, 30)
    cmds = linksteps.step_cmds(step, link, devices, "nfqueue", 100)
    assert cmds.shim_delays == {1: pytest.approx(0.060 + 0.005), 2: pytest.approx(0.065)}
    port = f"{link.delay_node}-eth0"
    loss = [c for c in _text(cmds.first[0][1]) if port in c]
    assert loss == [f"iptables -w -t mangle -I FORWARD 1 -m physdev --physdev-in {port} -m length --length 100:65535 "
                    "-m statistic --mode random --probability 0.02000000 -j DROP",
                    f"iptables -w -t mangle -I FORWARD 1 -m physdev --physdev-in {port} -m length --length 100:65535"]
    again = linksteps.loss_cmds(port, 0.02, 0.05, 100)
    assert [c[4] for c in again] == ["-D", "-D", "-I", "-I"] and "0.05000000" in again[2]
    assert linksteps.loss_cmds(port, 0.02, 0.02, 100) == []
    # with netem, the delay is netem's on the port the packets leave by
    netem = linksteps.step_cmds(step, link, devices, "netem", 100)
    assert netem.shim_delays == {} and "netem delay 65000us" in " ".join(_text(netem.first[0][1]))


def test_a_change_of_queueing_rebuilds_the_shaper():
    was = linksteps.Want(10e6, 100, 0.01, 0.0, "fifo")
    new = linksteps.Want(7.6e6, 100, 0.01, 0.0, "priority")
    cmds = _text(linksteps.shaper_cmds("x-eth1", was, new))
    assert cmds[0] == "tc qdisc del dev x-eth1 root" and cmds[1].startswith("tc qdisc replace dev x-eth1 root")
    assert cmds[-1].endswith("u32 match ip dsfield 0xb8 0xfc flowid 1:20")
    assert linksteps.shaper_cmds("x-eth1", was, was) == []


def test_changes_that_cannot_be_applied_are_refused_naming_the_row():
    plan, topo = _plan()
    bad = lc.failover("gp", FTTC, BACKUP_4G, 10, 20, 5).assign(site=["gp", "elsewhere", "gp"])
    with pytest.raises(EngineError, match=r"link change row 2 \(site 'elsewhere'\): no such site"):
        linksteps.plan_steps(plan, topo, bad, 30)
    fast = lc.failover("gp", FTTC, lc.LineState(2e9, 1e9, 0.01, 0, 150e3, 150e3), 10, 20, 5)
    with pytest.raises(EngineError, match="down rate 2000 Mbit/s is above what HTB shapes"):
        linksteps.plan_steps(plan, topo, fast, 30)
    lossy = calibrate.one_site(10e6, 40e6, 0.0, 150e3, name="gp", loss=0.01)  # a delay node, but no shim in it
    with pytest.raises(EngineError, match="no delay at build, so no delay shim"):
        linksteps.plan_steps(linkplan.plan(lossy, ["gp"], "tb00aa", EmuSettings(), "nfqueue"), lossy,
                             lc.failover("gp", FTTC, BACKUP_4G, 10, 20, 5), 30)
    bare = calibrate.one_site(10e6, 40e6, 0.0, 150e3, name="gp")  # no delay, no loss: no delay node to drop in
    with pytest.raises(EngineError, match="no delay node"):
        linksteps.plan_steps(linkplan.plan(bare, ["gp"], "tb00aa", EmuSettings(), "nfqueue"), bare,
                             lc.failover("gp", FTTC, BACKUP_4G, 10, 20, 5), 30)


# Captured from this kernel: a delay node's mangle FORWARD chain during an outage, with 1% loss on one port.
IPTABLES_S = """-P FORWARD ACCEPT
-A FORWARD -m physdev --physdev-in tb1d0-eth1 -j DROP
-A FORWARD -m physdev --physdev-in tb1d0-eth0 -j DROP
-A FORWARD -m physdev --physdev-in tb1d0-eth0 -m length --length 100:65535
-A FORWARD -m physdev --physdev-in tb1d0-eth0 -m length --length 100:65535 -m statistic --mode random --probability 0.01000000000 -j DROP
-A FORWARD -m physdev --physdev-in tb1d0-eth0 -j NFQUEUE --queue-num 1
"""  # noqa: E501


def test_read_back_is_judged_against_what_the_step_wants():
    assert linksteps.parse_blocked_ports(IPTABLES_S) == {"tb1d0-eth0", "tb1d0-eth1"}
    want = {"up": linksteps.Want(7.6e6, 100, 0.0155, 0.01, "fifo"), "down": linksteps.Want(0.0, 100, 0.0155, 0, "fifo")}
    read = {"up": {"rate_bps": 7.6e6, "queue_pkts": 100, "loss": 0.01, "blocked": False, "delay_s": 0.0155},
            "down": {"rate_bps": 40e6, "queue_pkts": 100, "loss": 0.0, "blocked": True, "delay_s": 0.0155}}
    assert linksteps.problems(want, read) == []  # a blocked direction's shaper is not judged
    read["up"] |= {"rate_bps": 10e6, "blocked": True}
    read["down"]["delay_s"] = 0.0105
    assert linksteps.problems(want, read) == ["up: outage rule still in force", "up: rate 10000000.0 bit/s, wanted "
                                              "7600000 bit/s", "down: delay 0.0105 s, wanted 0.015500 s"]


def test_the_shim_takes_a_new_delay_from_its_control_file(tmp_path):
    state, control = tmp_path / "s.json", tmp_path / "c.json"
    s = shim.Shim("d0", [shim.QueueSpec(1, 0.0155, 0.0), shim.QueueSpec(2, 0.0155, 0.001)], 1, str(state),
                  str(control))
    control.write_text(json.dumps({"seq": 3, "queues": {"1": 0.065}}))
    s.want_control()
    s.apply_control()
    s.write_state()
    written = json.loads(state.read_text())
    assert written["control_seq"] == 3 and written["control_error"] == ""
    assert [(q["num"], q["delay_s"], q["jitter_s"]) for q in written["queues"]] == [(1, 0.065, 0.0), (2, 0.0155, 0.001)]
    control.write_text(json.dumps({"seq": 4, "queues": {"7": 0.01}}))
    s.apply_control()
    assert s.control_seq == 3 and "queue(s) [7]" in s.control_error and s.specs[1].delay_s == 0.065


def _result(ok=True, lateness_s=0.004, at_s=15.0):
    return {"site": "gp", "link": "access:gp", "at_s": at_s, "cause": "backup", "lateness_s": lateness_s, "ok": ok,
            "problems": [] if ok else ["up: rate 10000000.0 bit/s, wanted 7600000 bit/s"]}


def test_a_change_that_did_not_take_or_came_late_refuses_its_site():
    rows = changer.health_rows([_result(), _result(ok=False), _result(lateness_s=0.30), _result(lateness_s=None)],
                               8 * 3600, 10.0)
    assert [r["ok"] for r in rows] == [True, False, False, False]
    assert rows[0]["interval"] == 1 and rows[0]["start_s"] == 8 * 3600 + 10  # 15 s falls in the second bin
    assert "applied 300 ms late" in rows[2]["detail"] and "not applied" in rows[3]["detail"]
    assert health.affected_sites(rows, ["gp", "other"]) == ["gp"]
    assert health.refusal(rows).startswith("access:gp: link_change in interval(s) 28810 s")
    summary = changer.describe([_result(lateness_s=0.002), _result(lateness_s=0.006), _result(lateness_s=None)])
    assert summary["applied"] == 2 and summary["lateness_mean_s"] == pytest.approx(0.004)
    assert summary["lateness_max_s"] == 0.006


def test_a_calls_phases_are_summarised_from_its_series_and_the_changes():
    start_s = 8 * 3600.0
    changes = lc.failover("gp", FTTC, BACKUP_4G, 10.0, 20.0, 5.0)
    # made-up series: 1.5 Mbit/s at 12 ms for 10 s, nothing for 5 s, then 0.4 + 0.1 k Mbit/s at 13 ms
    rate = [1.5e6] * 10 + [0.0] * 5 + [0.4e6 + 0.1e6 * k for k in range(15)]
    delay = [0.012] * 10 + [math.nan] * 5 + [0.013] * 15
    series = pd.DataFrame({"engine": "emu", "session_id": 7, "site": "gp", "direction": "up",
                           "bin_start_s": start_s + pd.Series(range(30), dtype=float), "bin_s": 1.0,
                           "rate_bps": rate, "one_way_delay_s": delay})
    records = pd.DataFrame({"session_id": [7], "target_rate_bps": [1.5e6]})
    table = failover.summary(series, changes, start_s, start_s + 30, records, settle_s=1.0)
    assert list(table["name"]) == ["before", "fault", "backup", "repaired"]
    before, fault, backup, repaired = table.itertuples(index=False)
    assert (before.seconds, before.rate_bps, before.one_way_delay_s, before.share_at_target) == (9, 1.5e6, 0.012, 1)
    assert (fault.seconds, fault.silent_s, fault.rate_bps) == (4, 4, 0.0) and math.isnan(fault.one_way_delay_s)
    assert backup.rate_bps == pytest.approx(0.4e6 + 0.1e6 * 2.5)      # seconds 16-19: k = 1..4
    assert repaired.rate_bps == pytest.approx(0.4e6 + 0.1e6 * 10.0)   # seconds 21-29: k = 6..14
    assert repaired.share_at_target == pytest.approx(4 / 9)           # k >= 11: 1.5 Mbit/s and up
    assert (repaired.first_s, repaired.last_s) == (start_s + 21, start_s + 30)
    assert "fault" in failover.text(table) and "8:00:21" in failover.text(table)


def test_a_scenario_windows_changes_are_shifted_to_the_replayed_slice():
    # a fault from 100 s to 400 s of the window, its backup after 90 s; the emulation replays 150-450 s
    changes = lc.failover("gp", FTTC, BACKUP_4G, 100.0, 400.0, 90.0)
    sliced = linksteps.to_slice(changes, 150.0, 300.0)
    assert list(zip(sliced["at_s"], sliced["cause"])) == [(0.0, "fault"), (40.0, "backup"), (250.0, "repaired")]
    late = linksteps.to_slice(changes, 0.0, 200.0)  # the repair (400 s) falls after the slice
    assert list(late["cause"]) == ["fault", "backup"]
    on_time = linksteps.to_slice(changes, 190.0, 60.0)  # the backup starts with the slice: it alone applies at 0
    assert list(zip(on_time["at_s"], on_time["cause"])) == [(0.0, "backup")]


def test_the_engine_refuses_the_site_whose_change_did_not_take():
    from test_emu_health import TH, _Sampler, _slice_and_topology

    from sim.emu import engine

    chosen, topo = _slice_and_topology()
    quiet = [health.row(health.Interval(0, 100.0, 10.0), "host", "-", "cpu_starved", 0.02, 0.4, True, "idle")]
    failed = dict(_result(ok=False), site="b", link="access:b", at_s=12.0)
    held = engine.judge_health(_Sampler(quiet), chosen, topo, TH, [_result(at_s=5.0) | {"site": "a",
                                                                                         "link": "access:a"}, failed])
    assert (held.kept, held.refused) == (("a", "c"), ("b",))
    assert held.meta["why"].startswith("access:b: link_change in interval(s) 00:01:50 (first: backup at 12 s "
                                       "applied 4 ms late: up: rate 10000000.0 bit/s, wanted 7600000 bit/s")


def test_the_health_watch_follows_the_rate_and_loss_in_force():
    from sim.emu.utilisation import Watch

    watch = Watch.__new__(Watch)  # only its record of changes is used here (no network needed)
    watch.changes = {}
    watch.note_change("access:gp", "up", 110.0, 110.2, linksteps.Want(0.0, 100, 0.0155, 0.0, "fifo"))
    watch.note_change("access:gp", "up", 115.0, 115.1, linksteps.Want(7.6e6, 100, 0.0155, 0.01, "fifo"))
    assert watch.in_force("access:gp", "up", 105.0, 10e6, 0.0) == (10e6, 0.0)   # the built line until a change took
    assert watch.in_force("access:gp", "up", 112.0, 10e6, 0.0) == (0.0, 0.0)
    assert watch.in_force("access:gp", "up", 120.0, 10e6, 0.0) == (7.6e6, 0.01)
    assert watch.changed_within("access:gp", "up", 100.0, 110.1) and not watch.changed_within("access:gp", "up",
                                                                                               115.1, 125.0)
    # 100-120 s: 10 Mbit/s for 10.2 s, out for 4.9 s, 7.6 Mbit/s for 4.9 s
    assert watch.mean_rate_bps("access:gp", "up", 100.0, 120.0, 10e6) == pytest.approx(
        (10e6 * 10.2 + 7.6e6 * 4.9) / 20)
    assert watch.mean_rate_bps("access:gp", "up", 120.0, 130.0, 10e6) == 7.6e6
    assert watch.mean_rate_bps("access:gp", "down", 100.0, 130.0, 40e6) == 40e6  # never changed: exactly as built


def test_a_step_never_applied_is_recorded_so_never_silently():
    import time

    from sim.emu import net

    plan, topo = _plan()
    steps = linksteps.plan_steps(plan, topo, lc.failover("gp", FTTC, BACKUP_4G, 10, 20, 5), 30)
    ended = changer.Changer(net.EmuNet(plan), steps)  # a planned network, never started
    ended.start(time.time() + 3600)  # the run ends before any step is due
    ended.stop()
    assert [(r["cause"], r["ok"], r["problems"]) for r in ended.results] == [
        (c, False, ["not applied: the run ended before its time"]) for c in ("fault", "backup", "repaired")]
    broken = changer.Changer(net.EmuNet(plan), steps)  # due at once, on a network that is not there
    broken.start(time.time() - 60)
    broken.stop()
    assert [r["ok"] for r in broken.results] == [False] * 3
    assert broken.results[0]["problems"][0].startswith("not applied: the link-change thread failed: KeyError")
    assert not any(r["ok"] for r in changer.health_rows(broken.results, 0.0, 10.0))


def test_every_change_runs_as_batches_that_stand_for_its_commands_in_order():
    # the changer runs each node's commands one process per tool (sim.emu.batch): for every step of a failover and
    # of a slower, lossy, farther line, the batches stand for the same commands, and no tool's command needs one of
    # another tool given after it (here: iptables first, tc after, in both the list and the batches)
    plan, topo = _plan()
    link, devices = _devices(plan)
    slow = lc.LineState(40e6, 10e6, 0.120, 0.02, 150e3, 150e3)
    changes = pd.concat([lc.failover("gp", FTTC, BACKUP_4G, 10, 20, 5), pd.DataFrame(
        [("gp", 25.0, *(getattr(slow, c) for c in lc.LINE_COLUMNS), "slow")], columns=lc.COLUMNS)])
    for step in linksteps.plan_steps(plan, topo, changes, 30):
        cmds = linksteps.step_cmds(step, link, devices, "nfqueue", 100)
        for _, script in cmds.first + cmds.last:
            steps = batch.batch(script)
            assert batch.unbatch(steps) == script
            assert len(steps) <= 2  # one iptables-restore, one tc -batch
