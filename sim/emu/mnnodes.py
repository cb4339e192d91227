"""Mininet node classes the emulation builds with: hosts whose shells start side by side, a bridge in a namespace.

Mininet starts a node's shell (``mnexec ... bash``) and waits for its prompt before it creates the next node, so 152
nodes cost 152 shell start-ups one after another (5 s of the 50-site build on a busy 2-core machine).
:class:`ParallelHost` splits Mininet's ``Node.startShell`` (mininet 2.3.0.dev6) in two: the shell is spawned when
the node is created, and :func:`wait_shells` waits for every prompt afterwards, so the shells start concurrently.
Nothing may use a node (its namespace: ``mnexec`` creates it after the spawn) before :func:`wait_shells` returns.
Resolved lazily so that importing :mod:`sim.emu.net` does not need Mininet.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess

from sim.emu import batch
from sim.errors import EngineError


def host_class():
    """The :class:`ParallelHost` class (built on first use: it subclasses Mininet's ``Host``)."""
    global _HOST
    if _HOST is None:
        _HOST = _make_host_class()
    return _HOST


def bridge_class():
    """The namespace bridge class (built on first use: it subclasses Mininet's ``LinuxBridge``)."""
    global _BRIDGE
    if _BRIDGE is None:
        _BRIDGE = _make_bridge_class()
    return _BRIDGE


def link_class():
    """The :class:`BatchedLink` class (built on first use: it subclasses Mininet's ``Link``)."""
    global _LINK
    if _LINK is None:
        _LINK = _make_link_class()
    return _LINK


_HOST = None
_BRIDGE = None
_LINK = None


def create_veths(links) -> None:
    """Create the veth pairs of every :class:`BatchedLink` in ``links`` with one ``ip -batch`` (root namespace).

    Each end is created straight in its node's namespace (``netns PID``), with the MAC address Mininet chose.

    Raises:
        EngineError: ``ip`` failed (its message names the batch line).
    """
    steps = batch.batch(batch.veth_cmds([link.pair for link in links]))
    for step in steps:
        proc = subprocess.run(step.argv, input="\n".join(step.lines) + "\n", capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise EngineError(f"creating the links failed: {(proc.stdout + proc.stderr).strip()[-800:]}")


def address_cmds(intf: str | None, ip: str | None, prefix_len: int = 8) -> list[list[str]]:
    """Commands giving a host its loopback and ``intf`` its address (what Mininet's ``configHosts`` does)."""
    cmds = [["ip", "link", "set", "lo", "up"]]
    if intf and ip:
        cmds.append(["ip", "addr", "add", f"{ip}/{prefix_len}", "brd", "+", "dev", intf])
    return cmds


def wait_shells(nodes) -> None:
    """Wait for the prompt of every :class:`ParallelHost` in ``nodes`` whose shell is still starting."""
    for node in nodes:
        finish = getattr(node, "finish_shell", None)
        if finish is not None:
            finish()


def _make_host_class():
    from mininet.node import Host

    class ParallelHost(Host):
        """A Mininet host whose shell is spawned on creation and waited for in :meth:`finish_shell`."""

        _starting = False

        def startShell(self, mnopts=None) -> None:  # noqa: N802 (Mininet's name)
            """Spawn the shell as Mininet's ``Node.startShell`` does, without waiting for its prompt."""
            if self.shell:
                raise EngineError(f"{self.name}: shell is already running")
            opts = ("-cd" if mnopts is None else mnopts) + ("n" if self.inNamespace else "")
            cmd = ["mnexec", opts, "env", "PS1=" + chr(127), "bash", "--norc", "--noediting", "-is",
                   "mininet:" + self.name]
            self.master, self.slave = pty.openpty()
            self.shell = self._popen(cmd, stdin=self.slave, stdout=self.slave, stderr=self.slave, close_fds=False)
            self.stdin = os.fdopen(self.master, "r")
            self.stdout = self.stdin
            self.pid = self.shell.pid
            self.pollOut = select.poll()
            self.pollOut.register(self.stdout)
            self.outToNode[self.stdout.fileno()] = self
            self.inToNode[self.stdin.fileno()] = self
            self.execed, self.lastCmd, self.lastPid, self.readbuf = False, None, None, ""
            self._starting = True

        def config(self, mac=None, ip=None, **_params) -> dict:
            """Record the default interface's address (``"A.B.C.D/len"``) without running a command.

            Mininet runs ``ifconfig`` for the address and for ``lo`` here, per host; the node's configuration
            script does both instead, batched (:func:`address_cmds`).
            """
            if ip:
                intf = self.defaultIntf()
                address, _, length = ip.partition("/")
                intf.ip, intf.prefixLen = address, int(length or 8)
            return {}

        def finish_shell(self) -> None:
            """Wait for the prompt, then set the shell up as Mininet does (no history, no echo, no job control)."""
            if not self._starting:
                return
            while True:
                data = self.read(1024)
                if data and data[-1] == chr(127):
                    break
                if self.shell.poll() is not None:
                    raise EngineError(f"the shell of node {self.name} exited ({self.shell.returncode})")
                self.pollOut.poll()
            self.waiting = False
            self._starting = False
            self.cmd("unset HISTFILE; stty -echo; set +m")

    return ParallelHost


def _make_bridge_class():
    from mininet.nodelib import LinuxBridge

    class NamespaceBridge(LinuxBridge):
        """A Linux bridge run in its own namespace with iproute2 (no brctl needed); errors raise."""

        @classmethod
        def setup(cls) -> None:
            """Nothing to check: iproute2 is always there (LinuxBridge's own check wants brctl)."""

        def start(self, _controllers) -> None:
            """Create the bridge and enslave every port."""
            cmds = [["ip", "link", "add", "name", self.name, "type", "bridge"],
                    ["ip", "link", "set", self.name, "up"]]
            for intf in self.intfNames():
                if intf != "lo":
                    cmds += [["ip", "link", "set", intf, "master", self.name], ["ip", "link", "set", intf, "up"]]
            # One ``ip`` process for every port, the batch on its standard input.
            proc = self.popen(["ip", "-batch", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
            out, err = proc.communicate("\n".join(" ".join(c[1:]) for c in cmds) + "\n")
            code = proc.returncode
            if code != 0:
                raise EngineError(f"bridge {self.name}: {(out + err).strip()}")

        def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's signature)
            """Delete the bridge, then the node."""
            self.cmd("ip", "link", "del", self.name)
            super(LinuxBridge, self).stop(deleteIntfs)

    return NamespaceBridge


def _make_link_class():
    from mininet.link import Link

    class BatchedLink(Link):
        """A Mininet link whose veth pair is created later, with every other link's (:func:`create_veths`).

        Pass ``up=None`` to ``addLink`` so that Mininet does not set each end up with its own ``ifconfig``
        (the node's configuration script does, batched).
        """

        pair: tuple = ()

        def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None, node1=None,  # noqa: N802,N803
                         node2=None, deleteIntfs=True) -> None:  # noqa: N803 (Mininet's signature)
            """Record the pair (names, MAC addresses, namespaces' PIDs) for :func:`create_veths`."""
            self.pair = (intfname1, addr1, node1.pid, intfname2, addr2, node2.pid)

    return BatchedLink

