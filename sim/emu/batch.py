"""One process per tool instead of one per command: a node's configuration commands as batches (pure data).

Building 50 sites ran about 2,000 short processes (``ip``, ``tc``, ``iptables``, ``sysctl``, one per command), most
of the build's time on a 2-core machine. :func:`batch` turns a node's command list into one call per tool:

* ``ip ARGS...`` -> ``ip -batch -`` with one line ``ARGS...`` per command (stops at the first failing line);
* ``tc ARGS...`` -> ``tc -batch -`` likewise;
* ``iptables -w -t TABLE RULE...`` -> ``iptables-restore -w --noflush`` with ``*TABLE``, one ``RULE...`` line per
  command and ``COMMIT`` (one atomic commit per table; the node's other rules are kept);
* ``sysctl -qw KEY=VALUE...`` -> one ``sysctl -qw`` with every ``KEY=VALUE``;
* anything else (``ethtool``) stays one process per command.

Each tool's commands keep their order; the tools run in the order of their first command. That is only right when
no command depends on a command of *another* tool given later in the list, which holds for what a node is built
with (every interface exists before the scripts run; qdiscs, rules, addresses and sysctls do not depend on each
other across tools). :func:`unbatch` gives back the one-command-at-a-time list a batch stands for (tests compare).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

_BATCHED = ("sysctl", "ip", "tc", "iptables")
_UNSAFE = set(" \t\n'\"\\$`;&|<>")


@dataclass(frozen=True)
class Step:
    """One process: ``argv``, fed ``lines`` (one per batched command) on its standard input when not empty."""

    argv: tuple[str, ...]
    lines: tuple[str, ...] = ()


def batch(cmds: list[list[str]]) -> list[Step]:
    """Group ``cmds`` into one process per tool (see the module docstring).

    Raises:
        ValueError: A batched command has an argument a batch line cannot carry (whitespace, quotes, shell
            characters), or an ``iptables`` command is not ``iptables -w -t TABLE ...``.
    """
    groups: dict[str, list[list[str]]] = {}
    steps: list[Step | str] = []
    for cmd in cmds:
        tool = _tool(cmd)
        if tool is None:
            steps.append(Step(tuple(cmd)))
            continue
        if tool not in groups:
            groups[tool] = []
            steps.append(tool)
        groups[tool].append(cmd)
    return [step if isinstance(step, Step) else _step(step, groups[step]) for step in steps]


def veth_cmds(pairs: list[tuple]) -> list[list[str]]:
    """``ip`` commands creating each veth pair straight in its nodes' namespaces.

    Args:
        pairs: ``(name1, mac1, pid1, name2, mac2, pid2)`` per pair: each end's interface name, MAC address and
            the PID of a process in the namespace it goes to.
    """
    return [["ip", "link", "add", "name", n1, "address", m1, "netns", str(p1), "type", "veth",
             "peer", "name", n2, "address", m2, "netns", str(p2)] for n1, m1, p1, n2, m2, p2 in pairs]


def unbatch(steps: list[Step]) -> list[list[str]]:
    """The commands ``steps`` stand for, one per process, in the order they take effect."""
    cmds: list[list[str]] = []
    for step in steps:
        argv = list(step.argv)
        if argv[:2] in (["ip", "-batch"], ["tc", "-batch"]):
            cmds += [[argv[0]] + line.split() for line in step.lines]
        elif argv[0] == "iptables-restore":
            table = None
            for line in step.lines:
                if line.startswith("*"):
                    table = line[1:]
                elif line != "COMMIT":
                    cmds.append(["iptables", "-w", "-t", table] + line.split())
        elif argv[:2] == ["sysctl", "-qw"]:
            cmds += [["sysctl", "-qw", arg] for arg in argv[2:]]
        else:
            cmds.append(argv)
    return cmds


def script(steps: list[Step]) -> str:
    """``steps`` as one ``sh`` script that stops at the first failing process, printing ``FAILED:`` and it.

    A batch's lines travel in a quoted here-document (nothing in them is expanded by the shell).
    """
    lines = ["#!/bin/sh"]
    for step in steps:
        command = shlex.join(step.argv)
        here_doc = " <<'EOF'" if step.lines else ""
        lines.append(f"{command}{here_doc} || {{ echo {shlex.quote('FAILED: ' + command)}; exit 1; }}")
        if step.lines:
            lines += [*step.lines, "EOF"]
    return "\n".join(lines) + "\n"


def _tool(cmd: list[str]) -> str | None:
    if not cmd or cmd[0] not in _BATCHED:
        return None
    if cmd[0] == "sysctl":
        return "sysctl" if cmd[1:2] == ["-qw"] else None
    bad = [arg for arg in cmd if not arg or _UNSAFE & set(arg) or arg == "EOF"]
    if bad:
        raise ValueError(f"cannot batch {cmd}: argument(s) {bad} would not survive a batch line")
    if cmd[0] == "iptables" and (cmd[1:3] != ["-w", "-t"] or len(cmd) < 5):
        raise ValueError(f"cannot batch {cmd}: expected 'iptables -w -t TABLE ...'")
    return cmd[0]


def _step(tool: str, cmds: list[list[str]]) -> Step:
    if tool == "sysctl":
        return Step(("sysctl", "-qw", *[arg for cmd in cmds for arg in cmd[2:]]))
    if tool in ("ip", "tc"):
        return Step((tool, "-batch", "-"), tuple(" ".join(cmd[1:]) for cmd in cmds))
    lines: list[str] = []
    for table in dict.fromkeys(cmd[3] for cmd in cmds):
        lines += [f"*{table}", *[" ".join(cmd[4:]) for cmd in cmds if cmd[3] == table], "COMMIT"]
    return Step(("iptables-restore", "-w", "--noflush"), tuple(lines))
