"""Batched node configuration (sim.emu.batch): one process per tool stands for exactly the one-at-a-time commands.

Pure: no root, no Mininet. The commands are the ones a delay node and a shaped priority line are built with
(:mod:`sim.emu.linkplan`, :mod:`sim.emu.qos`), so what is checked is what a build runs.
"""

from __future__ import annotations

import pytest

from sim.emu import batch, linkplan, mnnodes


def _delay_node_cmds() -> list[list[str]]:
    """A delay node with 1% loss both ways and a shim queue each way, in build order (as netbuild.configure writes)."""
    cmds = [["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]]
    cmds += mnnodes.address_cmds(None, None)
    cmds += [["ip", "link", "set", "tb0001d0-eth0", "up"], ["ip", "link", "set", "tb0001d0-eth1", "up"]]
    cmds += linkplan.shaping_cmds("tb0001d0-eth1", 10e6, 100, "priority")
    cmds += linkplan.bridge_cmds("tb0001d0-eth0", "tb0001d0-eth1")
    for port, queue in (("tb0001d0-eth0", linkplan.NFQUEUE_UP), ("tb0001d0-eth1", linkplan.NFQUEUE_DOWN)):
        cmds += [linkplan.loss_count_rule(port, 100), linkplan.loss_rule(port, 0.01, 100),
                 linkplan.nfqueue_rule(port, queue)]
    return cmds


def _host_cmds() -> list[list[str]]:
    cmds = [["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]]
    cmds += mnnodes.address_cmds("tb0001s0-eth0", "10.1.0.1")
    cmds += [["ip", "link", "set", "tb0001s0-eth0", "up"],
             ["ethtool", "-K", "tb0001s0-eth0", "tso", "off", "gso", "off", "gro", "off"],
             ["sysctl", "-qw", "net.ipv4.tcp_congestion_control=cubic"],
             ["ip", "neigh", "replace", "10.0.0.1", "lladdr", "02:00:00:00:00:01", "dev", "tb0001s0-eth0", "nud",
              "permanent"]]
    return cmds


def _one_per_arg(cmds: list[list[str]]) -> list[list[str]]:
    """``sysctl -qw A B`` is ``sysctl -qw A`` then ``sysctl -qw B``; everything else as it is."""
    out = []
    for cmd in cmds:
        out += [cmd[:2] + [arg] for arg in cmd[2:]] if cmd[:2] == ["sysctl", "-qw"] else [cmd]
    return out


@pytest.mark.parametrize("cmds", [_delay_node_cmds(), _host_cmds()], ids=["delay node", "site host"])
def test_batches_stand_for_every_command_in_each_tools_order(cmds):
    steps = batch.batch(cmds)
    # One process per tool (ethtool stays one per command).
    tools = {c[0] for c in cmds if c[0] != "ethtool"}
    assert len(steps) == len(tools) + sum(c[0] == "ethtool" for c in cmds)
    # Every command, none added, each tool's commands in their original order.
    expected = _one_per_arg(cmds)
    got = batch.unbatch(steps)
    assert sorted(map(tuple, got)) == sorted(map(tuple, expected))
    for tool in tools | {"ethtool"}:
        assert [c for c in got if c[0] == tool] == [c for c in expected if c[0] == tool]


def test_delay_node_batch_by_hand():
    steps = batch.batch(_delay_node_cmds())
    assert [s.argv for s in steps] == [
        ("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
         "net.bridge.bridge-nf-call-iptables=1"),
        ("ip", "-batch", "-"), ("tc", "-batch", "-"), ("iptables-restore", "-w", "--noflush")]
    ip, tc, ipt = steps[1].lines, steps[2].lines, steps[3].lines
    assert ip == ("link set lo up", "link set tb0001d0-eth0 up", "link set tb0001d0-eth1 up",
                  "link add name br0 type bridge", "link set tb0001d0-eth0 master br0",
                  "link set tb0001d0-eth1 master br0", "link set br0 up")
    # The priority tree: root, line class, two classes, two queues, the EF filter (sim.emu.qos).
    assert len(tc) == 7 and tc[0] == "qdisc replace dev tb0001d0-eth1 root handle 1: htb default 30"
    assert ipt[0] == "*mangle" and ipt[-1] == "COMMIT" and len(ipt) == 2 + 6
    assert ipt[1] == "-A FORWARD -m physdev --physdev-in tb0001d0-eth0 -m length --length 100:65535"
    assert ipt[2].endswith("--probability 0.01000000 -j DROP")
    assert ipt[3] == "-A FORWARD -m physdev --physdev-in tb0001d0-eth0 -j NFQUEUE --queue-num 1"


def test_script_stops_at_the_first_failing_step_and_quotes_nothing_in_batches():
    text = batch.script(batch.batch(_host_cmds()))
    assert text.splitlines() == [
        "#!/bin/sh",
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 "
        "net.ipv4.tcp_congestion_control=cubic || { echo 'FAILED: sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
        "net.ipv6.conf.default.disable_ipv6=1 net.ipv4.tcp_congestion_control=cubic'; exit 1; }",
        "ip -batch - <<'EOF' || { echo 'FAILED: ip -batch -'; exit 1; }",
        "link set lo up",
        "addr add 10.1.0.1/8 brd + dev tb0001s0-eth0",
        "link set tb0001s0-eth0 up",
        "neigh replace 10.0.0.1 lladdr 02:00:00:00:00:01 dev tb0001s0-eth0 nud permanent",
        "EOF",
        "ethtool -K tb0001s0-eth0 tso off gso off gro off || { echo 'FAILED: ethtool -K tb0001s0-eth0 tso off "
        "gso off gro off'; exit 1; }"]


def test_veth_pairs_go_straight_into_their_namespaces():
    cmds = batch.veth_cmds([("tb0001s0-eth0", "02:00:00:00:00:01", 11, "tb0001d0-eth0", "02:00:00:00:00:02", 12)])
    assert cmds == [["ip", "link", "add", "name", "tb0001s0-eth0", "address", "02:00:00:00:00:01", "netns", "11",
                     "type", "veth", "peer", "name", "tb0001d0-eth0", "address", "02:00:00:00:00:02", "netns", "12"]]
    steps = batch.batch(cmds * 3)
    assert len(steps) == 1 and batch.unbatch(steps) == cmds * 3


@pytest.mark.parametrize("cmd", [["ip", "link", "set", "a b", "up"], ["tc", "qdisc", "show", "dev", "x;reboot"],
                                 ["ip", "link", "set", "EOF", "up"], ["iptables", "-A", "FORWARD", "-j", "DROP"]])
def test_commands_a_batch_line_cannot_carry_are_refused(cmd):
    with pytest.raises(ValueError, match="cannot batch"):
        batch.batch([cmd])


def test_shim_reads_the_engines_arguments_as_argparse_does_and_leaves_the_rest_to_it():
    from sim.emu import shim

    argv = ["--name", "tb0001d0", "--seed", "7", "--state", "/run/x.json", "--control", "/run/y.json",
            "--realtime", "10", "--queue", "1:0.0275:0.0", "--queue", "2:0.0275:0.001"]
    quick, full = shim._parse_quick(argv), shim._parse_argparse(argv)
    fields = ("name", "queue", "seed", "realtime", "state", "control", "check")
    assert [getattr(quick, f) for f in fields] == [getattr(full, f) for f in fields]
    assert quick.queue == [shim.QueueSpec(1, 0.0275, 0.0), shim.QueueSpec(2, 0.0275, 0.001)]
    assert shim._parse_quick(["--name", "d", "--queue", "1:0:0", "--check"]).check is True
    for other in (["--help"], ["--name", "d"], ["--name", "d", "--queue", "1:x:0"], ["--name", "d", "--queue"],
                  ["--name", "d", "--queue", "1:0:0", "--verbose"]):
        assert shim._parse_quick(other) is None
