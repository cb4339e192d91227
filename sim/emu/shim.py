"""The NFQUEUE delay shim: holds each queued packet for a link's one-way delay (plus jitter), then releases it.

Used where the kernel has no ``sch_netem``. It runs inside a *delay node* (a namespace that bridges a link's two
halves, with one iptables ``NFQUEUE`` rule per direction) and serves that node's queues::

    python -m sim.emu.shim --name tb1a2bd3 --queue 1:0.0225:0.001 --queue 2:0.0225:0.001 --state /run/x.json

Each ``--queue NUM:DELAY_S:JITTER_S`` is one direction of one link. A packet's release time is
``max(arrival + delay_s + U(-jitter_s, +jitter_s), previous release on that queue)``: jitter never reorders a link,
which stays FIFO as a real access line does. Loss is *not* applied here: iptables ``statistic`` drops packets
before they are queued (see :mod:`sim.emu.linkplan`).

It speaks the kernel's nfnetlink_queue protocol directly over one netlink socket (metadata only: payloads never
leave the kernel) and, because each queue releases in arrival order, accepts everything due on a queue with a single
*batch* verdict (``NFQNL_MSG_VERDICT_BATCH``: all ids up to N). That is several times cheaper per packet than one
verdict per packet through the ``netfilterqueue`` binding (measured ~16k packets/s there, with the shim late by
7 ms on average at 330 Mbit/s).

A new delay can be set while the shim runs (a link change, :mod:`sim.emu.linksteps`): the engine writes the
control file given by ``--control`` (JSON ``{"seq": N, "queues": {"1": DELAY_S, ...}}``) and sends the shim
``SIGUSR1``; the shim reads it at once (the signal wakes its ``select``), applies the delays to packets arriving
from then on, and rewrites its state file with ``control_seq`` N and the new delays, which is how the engine reads
the change back. A packet already held keeps its release time; a later packet never overtakes it (FIFO).

The state file (JSON, rewritten about once a second, after a control and on exit) says what is in force and what
happened: the queues with their delays, packets released, the mean and maximum lateness of releases (s), and per
queue a cumulative histogram of release lateness (counts per bucket of ``LATENESS_EDGES_S``; the last bucket is
everything later).
:func:`sim.emu.net.verify` reads it back; during a replay the engine differences the histograms per interval
(:mod:`sim.emu.health`). This module imports nothing from the testbed, so a shim starts fast and small (it is run by
file path, one process per delay node).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import deque, namedtuple

STATE_INTERVAL_S = 1.0
MAX_QUEUE_LEN_PKTS = 200_000  # packets the kernel may hold awaiting our verdict (delay x rate must fit)
RCVBUF_BYTES = 32 << 20
# Upper edges (s) of the lateness histogram's buckets (as sim.emu.health.LATENESS_EDGES_S; a test pins them equal).
LATENESS_EDGES_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.010, 0.020, 0.050, 0.100, 0.200, 0.500, 1.0)

# nfnetlink_queue protocol (linux/netfilter/nfnetlink_queue.h)
NETLINK_NETFILTER, SOL_NETLINK, NETLINK_NO_ENOBUFS, SO_RCVBUFFORCE = 12, 270, 5, 33
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET, MSG_CONFIG, MSG_VERDICT_BATCH = 0, 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 1, 4, 2
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN = 1, 2, 3
CMD_BIND, COPY_META = 1, 1
ATTR_PACKET_HDR, ATTR_VERDICT_HDR = 1, 2
NF_ACCEPT = 1


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _message(kind: int, queue: int, attrs: list[bytes], flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def parse_packets(data: bytes) -> list[tuple[int, int]]:
    """(queue number, packet id) of every packet message in one netlink datagram."""
    found, offset = [], 0
    while offset + 20 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 20:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | MSG_PACKET:
            queue = struct.unpack_from("!H", data, offset + 18)[0]
            attr = offset + 20
            while attr + 4 <= offset + length:
                size, attr_kind = struct.unpack_from("=HH", data, attr)
                if size < 4:
                    break
                if attr_kind & 0x7FFF == ATTR_PACKET_HDR:
                    found.append((queue, struct.unpack_from("!I", data, attr + 4)[0]))
                    break
                attr += (size + 3) & ~3
        offset += (length + 3) & ~3
    return found


class QueueSpec(namedtuple("QueueSpec", "num delay_s jitter_s")):
    """One direction of one link served by the shim: queue number, delay and jitter (s).

    A named tuple, not a dataclass: ``dataclasses`` (with ``inspect``) and ``argparse`` were half of a shim's
    start-up CPU, and a 50-site build starts 50 shims.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> QueueSpec:
        """Parse ``NUM:DELAY_S:JITTER_S`` (delays in seconds).

        Raises:
            ValueError: If a field is missing, not a number, or out of range.
        """
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"queue {text!r}: expected NUM:DELAY_S:JITTER_S")
        spec = cls(int(parts[0]), float(parts[1]), float(parts[2]))
        if not 0 <= spec.num <= 65535 or spec.delay_s < 0 or spec.jitter_s < 0:
            raise ValueError(f"queue {text!r}: queue number 0..65535 and non-negative delays (s) please")
        return spec


class Shim:
    """Delay every packet of the given NFQUEUE queues, FIFO per queue."""

    def __init__(self, name: str, specs: list[QueueSpec], seed: int, state_path: str | None,
                 control_path: str | None = None) -> None:
        self.name, self.specs, self.state_path = name, {s.num: s for s in specs}, state_path
        self.control_path, self.control_seq, self.control_wanted = control_path, 0, False
        self.changed_wall_s: float | None = None
        self.control_error = ""
        self.rng = random.Random(seed)
        self.held: dict[int, deque] = {s.num: deque() for s in specs}
        self.last_release_s = {s.num: 0.0 for s in specs}
        self.released = {s.num: 0 for s in specs}
        self.lateness_counts = {s.num: [0] * (len(LATENESS_EDGES_S) + 1) for s in specs}
        self.lateness_sum_s = self.lateness_max_s = 0.0
        self.sock: socket.socket | None = None
        self.stopping = False

    def bind(self) -> None:
        """Open the netlink socket and bind every queue (metadata-only copies).

        Raises:
            OSError: A queue cannot be bound (not root, no NFQUEUE, queue taken), with the kernel's errno.
        """
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        for seq, num in enumerate(self.specs, 1):
            self._config(num, [_attr(CFG_CMD, struct.pack("!BxH", CMD_BIND, socket.AF_INET))], 2 * seq)
            self._config(num, [_attr(CFG_PARAMS, struct.pack("!IB", 0, COPY_META)),
                               _attr(CFG_QUEUE_MAXLEN, struct.pack("!I", MAX_QUEUE_LEN_PKTS))], 2 * seq + 1)
        self.sock.setblocking(False)

    def _config(self, queue: int, attrs: list[bytes], seq: int) -> None:
        self.sock.send(_message(MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        reply = self.sock.recv(8192)
        kind = struct.unpack_from("=H", reply, 4)[0]
        error = struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
        if error:
            raise OSError(-error, f"queue {queue}: {os.strerror(-error)}")

    def receive(self, most: int = 64) -> None:
        """Take up to ``most`` waiting messages and schedule their packets' release (then releases get a turn)."""
        for _ in range(most):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            now_s = time.monotonic()
            for num, packet_id in parse_packets(data):
                spec = self.specs.get(num)
                if spec is None:
                    continue
                jitter_s = self.rng.uniform(-spec.jitter_s, spec.jitter_s) if spec.jitter_s else 0.0
                release_s = max(now_s + max(spec.delay_s + jitter_s, 0.0), self.last_release_s[num])
                self.last_release_s[num] = release_s
                self.held[num].append((release_s, packet_id))

    def release_due(self, everything: bool = False) -> None:
        """Accept, with one batch verdict per queue, every packet whose release time has come."""
        now_s = time.monotonic()
        for num, held in self.held.items():
            last_id, counts = None, self.lateness_counts[num]
            while held and (everything or held[0][0] <= now_s):
                release_s, last_id = held.popleft()
                late_s = max(now_s - release_s, 0.0)
                self.lateness_sum_s += late_s
                self.lateness_max_s = max(self.lateness_max_s, late_s)
                counts[bisect.bisect_left(LATENESS_EDGES_S, late_s)] += 1
                self.released[num] += 1
            if last_id is not None:
                verdict = _attr(ATTR_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last_id))
                self.sock.send(_message(MSG_VERDICT_BATCH, num, [verdict]))

    def next_release_s(self) -> float | None:
        """The earliest release time held (monotonic s), or None."""
        heads = [held[0][0] for held in self.held.values() if held]
        return min(heads) if heads else None

    def want_control(self, *_args) -> None:
        """Ask the loop to read the control file (SIGUSR1 handler)."""
        self.control_wanted = True

    def apply_control(self) -> None:
        """Read the control file and set each named queue's delay (s); a bad file is reported in the state."""
        self.control_wanted = False
        try:
            with open(self.control_path, encoding="utf-8") as handle:
                control = json.load(handle)
            delays = {int(num): float(delay_s) for num, delay_s in control["queues"].items()}
            seq = int(control["seq"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.control_error = f"control file {self.control_path}: {exc}"
            return
        bad = [num for num, delay_s in delays.items() if num not in self.specs or not 0 <= delay_s < 60]
        if bad:
            self.control_error = f"control {seq}: unknown queue or delay outside [0, 60) s for queue(s) {bad}"
            return
        for num, delay_s in delays.items():
            self.specs[num] = QueueSpec(num, delay_s, self.specs[num].jitter_s)
        self.control_seq, self.changed_wall_s, self.control_error = seq, time.time(), ""

    def run(self, wakeup: socket.socket | None = None) -> None:
        """Serve the queues until SIGTERM or SIGINT, then release what is held and write the final state.

        ``wakeup`` is the read end of the signal wake-up socket (a control signal ends the wait at once).
        """
        next_state_s = 0.0
        watched = [self.sock] + ([wakeup] if wakeup is not None else [])
        while not self.stopping:
            if self.control_wanted:
                self.apply_control()
                next_state_s = 0.0
            now_s = time.monotonic()
            if now_s >= next_state_s:
                self.write_state()
                next_state_s = now_s + STATE_INTERVAL_S
            due_s = self.next_release_s()
            timeout_s = min(next_state_s, due_s if due_s is not None else next_state_s) - now_s
            ready, _, _ = select.select(watched, [], [], max(timeout_s, 0.0))
            if wakeup is not None and wakeup in ready:
                _drain(wakeup)
            if self.sock in ready:
                self.receive()
            self.release_due()
        self.release_due(everything=True)
        self.write_state()
        self.sock.close()

    def stop(self, *_args) -> None:
        """Ask the loop to finish (signal handler)."""
        self.stopping = True

    def state(self) -> dict:
        """What is in force and the counters so far (delays and lateness in s; ``wall_s`` is when, Unix s)."""
        released = sum(self.released.values())
        return {"name": self.name, "pid": os.getpid(), "running": not self.stopping, "wall_s": time.time(),
                "lateness_edges_s": list(LATENESS_EDGES_S),
                "queues": [{"num": s.num, "delay_s": s.delay_s, "jitter_s": s.jitter_s,
                            "released_pkts": self.released[s.num],
                            "lateness_counts": list(self.lateness_counts[s.num])} for s in self.specs.values()],
                "held_pkts": sum(len(held) for held in self.held.values()),
                "control_seq": self.control_seq, "changed_wall_s": self.changed_wall_s,
                "control_error": self.control_error,
                "lateness_mean_s": self.lateness_sum_s / released if released else 0.0,
                "lateness_max_s": self.lateness_max_s}

    def write_state(self) -> None:
        """Write :meth:`state` atomically to the state file, if there is one."""
        if not self.state_path:
            return
        tmp = f"{self.state_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.state(), handle)
        os.replace(tmp, self.state_path)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except (BlockingIOError, InterruptedError):
        return


def _wakeup_sockets() -> tuple[socket.socket, socket.socket]:
    """A socket pair whose read end (the first) becomes readable whenever a signal arrives (set_wakeup_fd)."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    return reader, writer


_FLAGS = {"--name": str, "--queue": QueueSpec.parse, "--seed": int, "--realtime": int, "--state": str,
          "--control": str}


def _parse_quick(argv: list[str]):
    """Parse the arguments the engine always gives (``--flag value`` pairs, ``--check``) without ``argparse``.

    Returns None for anything else (``--help``, an unknown flag, a bad value, a missing ``--name`` or ``--queue``),
    which :func:`main` then hands to ``argparse`` for its usual message and exit status 2.
    """
    values = {"name": None, "queue": [], "seed": 0, "realtime": 0, "state": None, "control": None, "check": False}
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag == "--check":
            values["check"], i = True, i + 1
            continue
        if flag not in _FLAGS or i + 1 >= len(argv):
            return None
        try:
            value = _FLAGS[flag](argv[i + 1])
        except ValueError:
            return None
        if flag == "--queue":
            values["queue"].append(value)
        else:
            values[flag[2:]] = value
        i += 2
    if values["name"] is None or not values["queue"]:
        return None
    return type("Args", (), values)


def _parse_argparse(argv: list[str] | None):
    """Parse with ``argparse`` (imported only here): ``--help``, and a clear message and exit 2 on bad arguments."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sim.emu.shim", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the delay node's name (for the state file)")
    parser.add_argument("--queue", action="append", required=True, type=QueueSpec.parse,
                        help="NUM:DELAY_S:JITTER_S, once per queue")
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter draws")
    parser.add_argument("--realtime", type=int, default=0,
                        help="SCHED_FIFO priority (1-99) for timely releases; 0 keeps normal scheduling")
    parser.add_argument("--check", action="store_true", help="bind the queues, then exit 0 (capability probe)")
    parser.add_argument("--state", help="JSON state file, rewritten about once a second")
    parser.add_argument("--control", help="JSON control file read on SIGUSR1: {seq, queues: {num: delay_s}}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run a shim from the command line; exit status 0 on a clean stop, 2 on bad arguments or a failed bind."""
    args = _parse_quick(sys.argv[1:] if argv is None else argv) or _parse_argparse(argv)
    shim = Shim(args.name, args.queue, args.seed, args.state, args.control)
    if args.realtime:
        # Releases must not wait behind the traffic tools for a core: a late shim bunches ACKs into bursts.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.realtime))
    signal.signal(signal.SIGTERM, shim.stop)
    signal.signal(signal.SIGINT, shim.stop)
    signal.signal(signal.SIGUSR1, shim.want_control)
    try:
        shim.bind()
    except OSError as exc:
        print(f"shim {args.name}: cannot bind NFQUEUE: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.check:
        shim.sock.close()
        return 0
    reader, _writer = _wakeup_sockets()  # the writer must stay open while the shim runs
    shim.run(reader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
