"""What this machine can emulate, detected (never assumed), and which delay/loss method a run will use.

Each kernel feature is probed in a throw-away network namespace (``unshare -n``), so nothing of the machine's
own networking is touched: the qdiscs (HTB, pfifo, netem), a Linux bridge with bridge netfilter, iptables
``statistic``, ``physdev`` and ``NFQUEUE``, and binding a queue with the delay shim (:mod:`sim.emu.shim`).
``testbed doctor`` prints :func:`doctor_lines`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from sim.errors import CapabilityError

SHIM = Path(__file__).with_name("shim.py")
TOOLS = ("mnexec", "iperf3", "irtt", "ping", "tc", "ip", "iptables", "ethtool", "unshare")
_TIMEOUT_S = 20


@dataclass(frozen=True)
class Capabilities:
    """Facts about this machine for the emulation (each True when detected working)."""

    root: bool
    mininet: bool
    mnexec: bool
    linux_bridge: bool
    bridge_netfilter: bool
    htb: bool
    pfifo: bool
    netem: bool
    iptables_statistic: bool
    iptables_physdev: bool
    nfqueue: bool
    nfqueue_shim: bool
    netfilterqueue: bool
    tools: tuple[str, ...]
    missing_tools: tuple[str, ...]
    cores: int

    @property
    def delay_method(self) -> str | None:
        """``netem`` if the kernel has it, else ``nfqueue`` if the shim can run, else None."""
        if self.netem:
            return "netem"
        if self.nfqueue and self.nfqueue_shim and self.iptables_physdev and self.bridge_netfilter:
            return "nfqueue"
        return None

    @property
    def loss_method(self) -> str | None:
        """``iptables-statistic`` when available (used with either delay method), else None."""
        return "iptables-statistic" if self.iptables_statistic else None

    def as_dict(self) -> dict:
        """JSON-ready facts, with the chosen methods (for a run's meta.json)."""
        return {**asdict(self), "delay_method": self.delay_method, "loss_method": self.loss_method}


def detect() -> Capabilities:
    """Probe this machine (about a second; needs root for most probes, reports False without it)."""
    root = os.geteuid() == 0
    tools = tuple(t for t in TOOLS if shutil.which(t))
    ns = root and "unshare" in tools

    def probe(script: str) -> bool:
        return ns and _in_new_netns(script)

    veth = "ip link add name tbcapa type veth peer name tbcapb && ip link set tbcapa up && "
    return Capabilities(
        root=root,
        mininet=importlib.util.find_spec("mininet") is not None,
        mnexec="mnexec" in tools,
        linux_bridge=probe("ip link add name tbcapbr type bridge"),
        bridge_netfilter=probe("ip link add name tbcapbr type bridge && "
                               "sysctl -qw net.bridge.bridge-nf-call-iptables=1 && "
                               "test \"$(sysctl -n net.bridge.bridge-nf-call-iptables)\" = 1"),
        htb=probe(veth + "tc qdisc add dev tbcapa root handle 1: htb default 1 && "
                  "tc class add dev tbcapa parent 1: classid 1:1 htb rate 1mbit"),
        pfifo=probe(veth + "tc qdisc add dev tbcapa root pfifo limit 10"),
        netem=probe(veth + "tc qdisc add dev tbcapa root netem delay 1ms"),
        iptables_statistic=probe("iptables -w -t mangle -A FORWARD -m statistic --mode random "
                                 "--probability 0.5 -j DROP"),
        iptables_physdev=probe("iptables -w -t mangle -A FORWARD -m physdev --physdev-in tbcapa -j ACCEPT"),
        nfqueue=probe("iptables -w -t mangle -A FORWARD -j NFQUEUE --queue-num 7"),
        nfqueue_shim=probe(f"{sys.executable} {SHIM} --name tbcap --queue 7:0:0 --check"),
        netfilterqueue=importlib.util.find_spec("netfilterqueue") is not None,
        tools=tools,
        missing_tools=tuple(t for t in TOOLS if t not in tools),
        cores=os.cpu_count() or 1,
    )


def _in_new_netns(script: str) -> bool:
    try:
        result = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def require(caps: Capabilities, method: str = "auto") -> str:
    """Check that an emulation run can go ahead; return the delay method it will use (``netem``/``nfqueue``).

    Args:
        caps: From :func:`detect`.
        method: ``auto`` (netem if present, else nfqueue), ``netem`` or ``nfqueue``.

    Raises:
        CapabilityError: Naming everything missing, and how to get it.
    """
    missing = problems(caps)
    chosen = caps.delay_method if method == "auto" else method
    if method == "netem" and not caps.netem:
        missing.append("sch_netem (this kernel has none; use delay_method 'nfqueue' or 'auto')")
    if chosen == "nfqueue" and not caps.delay_method:
        missing.append("a delay method: no sch_netem, and the NFQUEUE shim needs iptables NFQUEUE + physdev "
                       "and bridge netfilter")
    if method not in ("auto", "netem", "nfqueue"):
        missing.append(f"a known delay method ({method!r} is not auto, netem or nfqueue)")
    if missing:
        raise CapabilityError("the emulation cannot run here: missing " + "; ".join(missing))
    return chosen


def problems(caps: Capabilities) -> list[str]:
    """What is missing for any emulation run (empty when it can run)."""
    needs = [(caps.root, "root (run as root)"),
             (caps.mininet, "the mininet Python package (pip install '.[emu]')"),
             (caps.mnexec, "mnexec (apt-get install mininet)"),
             (caps.linux_bridge, "Linux bridges in network namespaces"),
             (caps.htb and caps.pfifo, "tc HTB and pfifo qdiscs"),
             (caps.iptables_statistic, "iptables -m statistic (random loss)"),
             (not caps.missing_tools, f"tools: {' '.join(caps.missing_tools)} (make system-deps)")]
    return [what for ok, what in needs if not ok]


def missing_for_a_run(caps: Capabilities) -> list[str]:
    """What is missing for an emulation run with the default (``auto``) delay method (empty when it can run).

    That is :func:`problems`, and a delay method when the machine has none.
    """
    return problems(caps) + ([] if caps.delay_method else ["a delay method"])


def why_not_here(command: str = "make test") -> str | None:
    """Why an emulation cannot run on this machine (a skip reason), or None when it can.

    ``command`` is what to run as root (``make test``, ``make bench``).
    """
    if os.geteuid() != 0:
        return f"needs root (run as root: sudo {command})"
    missing = missing_for_a_run(detect())
    return f"cannot emulate here: {'; '.join(missing)} (make install; see `testbed doctor`)" if missing else None


def doctor_lines(caps: Capabilities) -> list[str]:
    """A report for ``testbed doctor``: one line per check, then the methods a run will use."""
    mark = {True: "ok     ", False: "MISSING"}
    checks = [("root", caps.root), ("mininet (Python)", caps.mininet),
              ("Linux bridge", caps.linux_bridge), ("bridge netfilter", caps.bridge_netfilter),
              ("tc htb", caps.htb), ("tc pfifo", caps.pfifo), ("iptables statistic", caps.iptables_statistic),
              ("iptables physdev", caps.iptables_physdev), ("iptables NFQUEUE", caps.nfqueue),
              ("NFQUEUE delay shim binds a queue", caps.nfqueue_shim)]
    lines = [f"{mark[ok]} {name}" for name, ok in checks]
    lines.append(f"{'ok     ' if caps.netem else 'absent '} tc netem" + ("" if caps.netem else " (the NFQUEUE shim "
                                                                          "stands in)"))
    lines += [f"{mark[t in caps.tools]} {t}" for t in TOOLS]
    lines.append(f"cores: {caps.cores}")
    lines.append(f"netfilterqueue (Python; not needed, the shim speaks netlink itself): "
                 f"{'installed' if caps.netfilterqueue else 'absent'}")
    method = caps.delay_method
    lines.append(f"delay/jitter method: {method or 'NONE'}"
                 + (" (kernel has no sch_netem: NFQUEUE shim in a delay node per link)" if method == "nfqueue"
                    else ""))
    lines.append(f"loss method: {caps.loss_method or 'NONE'}")
    issues = problems(caps) + ([] if method else ["a delay method"])
    lines.append("emulation: can run" if not issues else "emulation: cannot run; missing " + "; ".join(issues))
    return lines
