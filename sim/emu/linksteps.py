"""A site's access line changed mid-run, as data: the steps of a link-changes table and the commands that make them.

The table (:mod:`sim.linkchanges`: from ``at_s`` a site's line runs with the row's rates, round-trip time, loss,
buffer and queueing; both rates 0 is an outage) becomes, per step and per direction of the site's access link:

* **rate and buffer**: ``tc class change`` of the HTB class(es) and ``tc qdisc change`` of the drop-tail queue(s)
  (the commands :func:`sim.emu.linkplan.shaping_cmds` adds, as ``change``); a change of queueing (FIFO <->
  priority) deletes the root qdisc and builds the new tree (what is queued at that moment is lost, as when a router
  swaps lines);
* **delay**: the delay shim's new one-way delay (``rtt_s / 2`` plus the core's, as at build) through its control
  file and ``SIGUSR1`` (:mod:`sim.emu.shim`), or ``tc qdisc replace ... netem`` where the kernel has netem;
* **loss**: the counting and ``statistic`` rules of that port deleted and inserted anew at the chain's head;
* **outage** (a rate of 0): an iptables ``DROP`` of everything entering the delay node from that side, inserted at
  the chain's head, deleted at the next step; the shaper and the loss rules are left as they were meanwhile.

Nothing here touches the machine (:mod:`sim.emu.changer` runs the commands at their moment and reads them back),
so the whole translation is tested without root. A direction's commands are ordered so that traffic never crosses
a half-made line: an outage's DROP goes in first; when a line returns, the DROP comes out last.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sim import linkchanges as lc
from sim.emu import linkplan
from sim.errors import EngineError

DIRECTIONS = ("up", "down")


@dataclass(frozen=True)
class Want:
    """One direction of an access line as a step leaves it (rate bit/s, queue packets, delay s one way)."""

    rate_bps: float
    queue_pkts: int
    delay_s: float
    loss: float
    qos: str

    @property
    def blocked(self) -> bool:
        """Nothing crosses this direction (its rate is 0)."""
        return self.rate_bps == 0


@dataclass(frozen=True)
class Step:
    """One row of the changes table, for one site's access link: what each direction was and becomes.

    ``shaped`` and ``lossy`` per direction are what the shaper and the loss rules last carried (an outage leaves
    them as they were), so the commands change only what differs.
    """

    at_s: float
    site: str
    link: str
    cause: str
    line: lc.LineState
    before: dict[str, Want]
    after: dict[str, Want]
    shaped: dict[str, Want]
    lossy: dict[str, float]


def want(link: linkplan.LinkSpec, line: lc.LineState, direction: str, mtu_bytes: int) -> Want:
    """What ``line`` asks of one direction of ``link`` (the core's delay is kept: it is not the access line's)."""
    rate_bps = line.up_bps if direction == "up" else line.down_bps
    return Want(float(rate_bps), linkplan.queue_pkts(line.buffer_bytes(direction), mtu_bytes),
                line.rtt_s / 2 + link.extra_delay_s, float(line.loss), line.qos)


def to_slice(changes: pd.DataFrame, offset_s: float, duration_s: float) -> pd.DataFrame:
    """A scenario window's changes on a replayed slice starting ``offset_s`` into it and ``duration_s`` long.

    ``at_s`` becomes seconds from the slice's start; of a site's rows before it, the last applies from 0 s; rows
    after the slice's end are left out.
    """
    table = changes.assign(at_s=changes["at_s"].astype(float) - offset_s)
    table = table[table["at_s"] <= duration_s]
    earlier = table[table["at_s"] < 0].sort_values("at_s", kind="stable").groupby("site").tail(1)
    within = table[table["at_s"] >= 0]
    earlier = earlier[~earlier["site"].isin(within.loc[within["at_s"] == 0, "site"])].assign(at_s=0.0)
    return pd.concat([earlier, within]).sort_values(["site", "at_s"], kind="stable").reset_index(drop=True)


def plan_steps(net_plan: linkplan.NetPlan, topology, changes: pd.DataFrame, window_s: float) -> list[Step]:
    """The steps of ``changes`` for the emulated sites, in time order (ties: by site).

    Raises:
        EngineError: A row that cannot be (naming it, :func:`sim.linkchanges.validate`), a site not emulated,
            a site whose access link has no delay node, or a rate above what HTB shapes faithfully here.
    """
    try:
        ordered = lc.validate(changes, set(net_plan.sites), window_s)
    except ValueError as exc:
        raise EngineError(f"link changes: {exc}") from None
    links = {link.name: link for link in net_plan.links}
    rows = topology.sites.set_index("site")
    steps: list[Step] = []
    for site in ordered["site"].unique():
        link = links[f"access:{site}"]
        if link.delay_node is None:
            raise EngineError(f"link changes: site {site}'s access link has no delay node (no delay, jitter or "
                              "loss): an outage or a new delay cannot be applied to it")
        mine = _site_steps(link, rows.loc[site], ordered[ordered["site"] == site], net_plan.settings)
        shimmed = link.total_delay_s("up") or link.total_delay_s("down") or link.up.jitter_s
        if net_plan.method == "nfqueue" and not shimmed and any(
                s.after[d].delay_s != s.before[d].delay_s for s in mine for d in DIRECTIONS):
            raise EngineError(f"link changes: site {site}'s access line has no delay at build, so no delay shim "
                              "runs to take a new one; give its line a delay in the topology")
        steps += mine
    return sorted(steps, key=lambda s: (s.at_s, s.site))


def _site_steps(link: linkplan.LinkSpec, row: pd.Series, mine: pd.DataFrame,
                settings: linkplan.EmuSettings) -> list[Step]:
    mtu = settings.mtu_bytes
    primary = lc.LineState(*(float(row[c]) for c in lc.LINE_COLUMNS[:-1]), linkplan.site_qos({"qos": row.get("qos")}))
    before = {d: want(link, primary, d, mtu) for d in DIRECTIONS}
    shaped, lossy = dict(before), {d: before[d].loss for d in DIRECTIONS}
    out = []
    for r in mine.itertuples(index=False):
        line = lc.LineState(r.down_bps, r.up_bps, r.rtt_s, r.loss, r.buffer_down_bytes, r.buffer_up_bytes, r.qos)
        after = {d: want(link, line, d, mtu) for d in DIRECTIONS}
        for d in DIRECTIONS:
            if after[d].rate_bps > settings.max_rate_bps:
                raise EngineError(f"link changes: site {r.site} at {r.at_s} s: {d} rate "
                                  f"{after[d].rate_bps / 1e6:g} Mbit/s is above what HTB shapes faithfully here "
                                  f"({settings.max_rate_bps / 1e6:g} Mbit/s)")
        out.append(Step(float(r.at_s), r.site, link.name, str(r.cause), line, before, after, dict(shaped),
                        dict(lossy)))
        for d in DIRECTIONS:
            if not after[d].blocked:
                shaped[d], lossy[d] = after[d], after[d].loss
        before = after
    return out


# ---- commands, as data ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Commands:
    """A step's commands: scripts per node in order, and the shim delays to set (queue number -> s, one way)."""

    first: list[tuple[str, list[list[str]]]]   # (node, commands) before the delay: DROPs in, loss, shapers
    shim_delays: dict[int, float]              # the delay node's shim queues to set (empty: no change)
    last: list[tuple[str, list[list[str]]]]    # (node, commands) after it: DROPs out


def step_cmds(step: Step, link: linkplan.LinkSpec, devices: dict, method: str, min_ip_bytes: int) -> Commands:
    """The commands applying ``step`` to ``link`` (``devices``: role -> (node, interface), as :mod:`sim.emu.net`)."""
    delay_node = link.delay_node
    blocks, unblocks, loss, shim = [], [], [], {}
    shapers: dict[str, list[list[str]]] = {}
    for d in DIRECTIONS:
        port, now, new = devices[f"delay_in_{d}"][1], step.before[d], step.after[d]
        if new.blocked and not now.blocked:
            blocks.append(block_rule(port, "-I"))
        if not new.blocked:
            loss += loss_cmds(port, step.lossy[d], new.loss, min_ip_bytes)
            node, intf = devices[d]
            shapers.setdefault(node, []).extend(shaper_cmds(intf, step.shaped[d], new))
            if now.blocked:
                unblocks.append(block_rule(port, "-D"))
        if abs(new.delay_s - now.delay_s) > 1e-12:
            if method == "netem":
                out = devices["delay_in_down" if d == "up" else "delay_in_up"][1]
                loss += linkplan.netem_cmds(out, new.delay_s, link.up.jitter_s if d == "up" else link.down.jitter_s)
            else:
                shim[linkplan.NFQUEUE_UP if d == "up" else linkplan.NFQUEUE_DOWN] = new.delay_s
    first = [(delay_node, blocks + loss + shapers.pop(delay_node, []))]
    first += [(node, cmds) for node, cmds in shapers.items()]
    return Commands([(n, c) for n, c in first if c], shim, [(delay_node, unblocks)] if unblocks else [])


def shaper_cmds(dev: str, was: Want, new: Want) -> list[list[str]]:
    """``tc`` commands taking ``dev``'s shaper from ``was`` to ``new`` (rate bit/s, queue packets, queueing)."""
    build = linkplan.shaping_cmds(dev, new.rate_bps, new.queue_pkts, new.qos)
    if new.qos != was.qos:
        return [["tc", "qdisc", "del", "dev", dev, "root"], *build]
    if (new.rate_bps, new.queue_pkts) == (was.rate_bps, was.queue_pkts):
        return []
    return [[*cmd[:2], "change", *cmd[3:]] for cmd in build if cmd[1] in ("class", "qdisc") and cmd[2] == "add"]


def loss_cmds(port: str, was: float, new: float, min_ip_bytes: int) -> list[list[str]]:
    """Build the iptables commands taking ``port``'s random loss from ``was`` to ``new`` (fractions).

    The counting rule stays just before the loss rule (:func:`sim.emu.linkplan.loss_count_rule`).
    """
    if was == new:
        return []
    out = []
    if was:
        out += [_verb(linkplan.loss_count_rule(port, min_ip_bytes), "-D"),
                _verb(linkplan.loss_rule(port, was, min_ip_bytes), "-D")]
    if new:  # inserted at the head, loss then count, so the count rule precedes the loss rule
        out += [_verb(linkplan.loss_rule(port, new, min_ip_bytes), "-I"),
                _verb(linkplan.loss_count_rule(port, min_ip_bytes), "-I")]
    return out


def block_rule(port: str, verb: str) -> list[str]:
    """The outage rule of a port: drop everything entering the delay node from it (``-I`` inserts, ``-D`` deletes)."""
    rule = ["iptables", "-w", "-t", "mangle", verb, "FORWARD"] + (["1"] if verb == "-I" else [])
    return rule + ["-m", "physdev", "--physdev-in", port, "-j", "DROP"]


def _verb(cmd: list[str], verb: str) -> list[str]:
    at = cmd.index("-A")
    return [*cmd[:at], verb, "FORWARD", *(["1"] if verb == "-I" else []), *cmd[at + 2:]]


# ---- read-back ------------------------------------------------------------------------------------------------------

def parse_blocked_ports(iptables_s: str) -> set[str]:
    """Ports with an outage rule (a DROP with no ``statistic`` match), from ``iptables -S`` output."""
    out = set()
    for line in iptables_s.splitlines():
        if line.endswith("-j DROP") and "--physdev-in" in line and "statistic" not in line and "length" not in line:
            out.add(line.split("--physdev-in ")[1].split()[0])
    return out


def problems(expected: dict[str, Want], read: dict[str, dict], tol_rel: float = 0.01) -> list[str]:
    """What differs between the step's wanted directions and what was read back (empty: in force).

    ``read`` per direction: ``rate_bps`` and ``queue_pkts`` of the shaper, ``loss`` of its rule, ``blocked`` and
    ``delay_s`` (one way, the shim's or netem's); a blocked direction's shaper and loss are not checked.
    """
    out = []
    for d, w in expected.items():
        got = read[d]
        if "error" in got:
            out.append(f"{d}: not read back: {got['error']}")
            continue
        if got.get("blocked") != w.blocked:
            out.append(f"{d}: outage rule {'missing' if w.blocked else 'still in force'}")
        if got.get("delay_s") is None or abs(got["delay_s"] - w.delay_s) > 1e-6:
            out.append(f"{d}: delay {got.get('delay_s')} s, wanted {w.delay_s:.6f} s")
        if w.blocked:
            continue
        rate = got.get("rate_bps")
        if rate is None or abs(rate - w.rate_bps) > tol_rel * w.rate_bps:
            out.append(f"{d}: rate {rate} bit/s, wanted {w.rate_bps:.0f} bit/s")
        if got.get("queue_pkts") != w.queue_pkts:
            out.append(f"{d}: queue {got.get('queue_pkts')} packets, wanted {w.queue_pkts}")
        if abs(got.get("loss", 0.0) - w.loss) > 1e-6:
            out.append(f"{d}: loss {got.get('loss', 0.0)}, wanted {w.loss}")
    return out
