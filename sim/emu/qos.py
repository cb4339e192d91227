"""A line that gives real-time traffic priority: HTB with two classes and a u32 filter on the DSCP field, as data.

An access profile with ``qos: priority`` (``topologies/access.yaml``) is shaped, per direction, as::

    htb 1: (default 1:30)
     └ class 1:1   rate R, ceil R                       the line
        ├ class 1:20 prio 0, rate R - floor, ceil R       EF: packets whose DSCP is 46 (TOS byte 0xb8)
        │   └ pfifo 20: limit Q                           (calls of every kind mark their sockets, call.py)
        └ class 1:30 prio 1, rate floor, ceil R          everything else
            └ pfifo 30: limit Q

HTB serves, among classes allowed to send, the lower ``prio`` first, so an EF packet waits at most for the frame
the shaper last released (strict priority); both classes may borrow up to the whole rate, so either alone fills
the line. The children's assured rates add up to the parent's (HTB lets a child under its own rate send without
asking its parent, so rates summing above R would let the line exceed R); the rest keeps ``BULK_FLOOR_SHARE`` of
it assured, so it is never starved outright. Each class has its own drop-tail queue of the profile's whole buffer
(``Q`` packets, as a FIFO line's one queue).

The class ids are chosen so that ``tc class show`` lists the line's class 1:1 first (the kernel lists classes by
the bucket of its class hash: 1:1 falls in bucket 1, 1:20 in 2 and 1:30 in 3), which the generic rate check of
:mod:`sim.emu.probe` reads. Commands are built here, run by :mod:`sim.emu.net`; the parsers are pure and tested
on captured output; the kernel here has HTB, pfifo and cls_u32 (``prio``, ``fq_codel``, ``flower`` are absent:
EMULATION.md).
"""

from __future__ import annotations

import re

EF_DSCP = 46                 # RFC 3246 Expedited Forwarding
EF_TOS = EF_DSCP << 2        # 0xb8: the DSCP in the TOS byte's upper six bits (RFC 2474)
DSCP_MASK = 0xFC             # the TOS byte's DSCP bits (the low two are ECN)
LINE_CLASS, EF_CLASS, BULK_CLASS = "1:1", "1:20", "1:30"
# Assumption: the share of the line the non-priority class keeps assured (a real LLQ router keeps some too); 1% of a
# 1 Mbit/s line is 10 kbit/s, under 1% of what a call gives up to it.
BULK_FLOOR_SHARE = 0.01
QOS_KINDS = ("fifo", "priority")


def priority_cmds(dev: str, rate_bps: float, queue: int, burst_bytes: int, quantum_bytes: int) -> list[list[str]]:
    """Build the ``tc`` commands giving ``dev``'s egress strict priority for DSCP EF (rate in bit/s).

    Args:
        dev: The interface.
        rate_bps: The line's rate (bit/s), the ceiling of both classes.
        queue: Each class's drop-tail queue (packets).
        burst_bytes: HTB burst and cburst of every class (bytes).
        quantum_bytes: HTB quantum (bytes).
    """
    floor_bps = rate_bps * BULK_FLOOR_SHARE

    def htb_class(parent: str, classid: str, class_rate_bps: float, prio: int | None) -> list[str]:
        cmd = ["tc", "class", "add", "dev", dev, "parent", parent, "classid", classid, "htb",
               "rate", f"{class_rate_bps:.0f}bit", "ceil", f"{rate_bps:.0f}bit", "burst", f"{burst_bytes}b",
               "cburst", f"{burst_bytes}b", "quantum", str(quantum_bytes)]
        return cmd + (["prio", str(prio)] if prio is not None else [])

    return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", BULK_CLASS[2:]],
            htb_class("1:", LINE_CLASS, rate_bps, None),
            htb_class(LINE_CLASS, EF_CLASS, rate_bps - floor_bps, 0),
            htb_class(LINE_CLASS, BULK_CLASS, floor_bps, 1),
            ["tc", "qdisc", "add", "dev", dev, "parent", EF_CLASS, "handle", f"{EF_CLASS[2:]}:", "pfifo", "limit",
             str(queue)],
            ["tc", "qdisc", "add", "dev", dev, "parent", BULK_CLASS, "handle", f"{BULK_CLASS[2:]}:", "pfifo",
             "limit", str(queue)],
            ["tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip",
             "dsfield", f"{EF_TOS:#04x}", f"{DSCP_MASK:#04x}", "flowid", EF_CLASS]]


# ---- parsers of tc output (pure) ----------------------------------------------------------------------------------

_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
_CLASS = re.compile(r"^class htb (\S+) (?:root|parent (\S+))(.*)$")
_PFIFO = re.compile(r"^qdisc pfifo \S+ parent (\S+) limit (\d+)p")
_U32_MATCH = re.compile(r"match ([0-9a-f]{8})/([0-9a-f]{8}) at 0")
_FLOWID = re.compile(r"flowid (\S+)")


def _rate(text: str, key: str) -> float | None:
    match = re.search(rf"\b{key} (\d+(?:\.\d+)?)([KMGT]?bit)", text, re.IGNORECASE)
    return float(match.group(1)) * _RATE_UNITS[match.group(2).lower()] if match else None


def parse_classes(text: str) -> dict[str, dict]:
    """From ``tc class show``: class id -> parent (None at the root), prio, rate and ceil (bit/s)."""
    out = {}
    for line in text.splitlines():
        match = _CLASS.match(line.strip())
        if match:
            rest = match.group(3)
            prio = re.search(r"\bprio (\d+)", rest)
            out[match.group(1)] = {"parent": match.group(2), "prio": int(prio.group(1)) if prio else None,
                                   "rate_bps": _rate(rest, "rate"), "ceil_bps": _rate(rest, "ceil")}
    return out


def parse_pfifo_limits(text: str) -> dict[str, int]:
    """From ``tc qdisc show``: parent class id -> the packet limit of the pfifo under it."""
    out = {}
    for line in text.splitlines():
        match = _PFIFO.match(line.strip())
        if match:
            out[match.group(1)] = int(match.group(2))
    return out


def parse_dsfield_filters(text: str) -> dict[str, tuple[int, int]]:
    """From ``tc filter show``: flow id -> (TOS value, mask) of each u32 filter matching the IP header's TOS byte.

    ``u32 match ip dsfield V M`` shows as ``match 00VV0000/00MM0000 at 0`` (the TOS byte is the IP header's second).
    """
    out, flowid = {}, None
    for line in text.splitlines():
        found = _FLOWID.search(line)
        if found:
            flowid = found.group(1)
        match = _U32_MATCH.search(line)
        if match and flowid:
            value, mask = int(match.group(1), 16), int(match.group(2), 16)
            if mask & 0xFF00FFFF == 0:
                out[flowid] = ((value >> 16) & 0xFF, (mask >> 16) & 0xFF)
    return out


def problems(classes: dict[str, dict], limits: dict[str, int], filters: dict[str, tuple[int, int]],
             rate_bps: float, queue: int, rel: float = 0.01) -> list[str]:
    """What differs between a priority line's parsed ``tc`` state and its configuration (empty when it is in force).

    Args:
        classes: :func:`parse_classes` output.
        limits: :func:`parse_pfifo_limits` output.
        filters: :func:`parse_dsfield_filters` output.
        rate_bps: The configured rate (bit/s).
        queue: Each class's configured queue (packets).
        rel: Allowed relative error of a rate as ``tc`` prints it (it rounds).
    """
    out = []

    def near(value: float | None, want: float) -> bool:
        return value is not None and abs(value - want) <= rel * want

    line = classes.get(LINE_CLASS)
    if line is None or not near(line["rate_bps"], rate_bps):
        out.append(f"class {LINE_CLASS} rate {line and line['rate_bps']} bit/s, configured {rate_bps:.0f}")
    for classid, prio in ((EF_CLASS, 0), (BULK_CLASS, 1)):
        found = classes.get(classid)
        if found is None or found["parent"] != LINE_CLASS or found["prio"] != prio:
            out.append(f"class {classid}: {found} (want parent {LINE_CLASS}, prio {prio})")
        elif not near(found["ceil_bps"], rate_bps):
            out.append(f"class {classid} ceil {found['ceil_bps']} bit/s, configured {rate_bps:.0f} (it must be able "
                       "to borrow the whole line)")
        if limits.get(classid) != queue:
            out.append(f"pfifo under {classid}: limit {limits.get(classid)} packets, configured {queue}")
    if filters.get(EF_CLASS) != (EF_TOS, DSCP_MASK):
        out.append(f"no u32 filter sending TOS {EF_TOS:#04x}/{DSCP_MASK:#04x} (DSCP EF) to {EF_CLASS} "
                   f"(found {filters})")
    return out
