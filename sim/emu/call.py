"""One end of the traffic agent's video call: its UDP socket, the packets on the wire, pacing and reports.

A call's media and the receiver's reports travel over one UDP socket per end (:class:`Call`); what a direction
measures where it arrives and how its sender's rate follows the reports are :mod:`sim.emu.media`'s. Part of the
traffic agent (:mod:`sim.emu.agent`): it imports the standard library only.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import time
from array import array

from sim.emu.clock import sleep_until, trace_s
from sim.emu.media import EF_TOS, FEEDBACK_INTERVAL_S, MediaReceiver, RateController

LINGER_S = 1.0                # a receiver keeps counting packets still queued this long after its call ends
SEND_BACKLOG_S = 0.2          # a sender stalled longer than this skips the excess (an encoder dropping frames) ...
PACING_FACTOR = 2.5           # ... and sends its backlog at up to 2.5 x its rate (WebRTC's pacer multiplier)

_MEDIA = struct.Struct("!BxxxIQd")            # kind, sequence number, session id, send time (s, Unix clock)
_FEEDBACK = struct.Struct("!BxxxIQdddd")      # kind, report number, session id, send time, loss (0..1),
#                                               queueing delay (s), receive rate (bit/s)
_KIND_MEDIA, _KIND_FEEDBACK = 1, 2
_SO_TIMESTAMPNS = 35          # <asm-generic/socket.h>; also the control message's type (SCM_TIMESTAMPNS)
_TIMESPEC = struct.Struct("qq")
_CMSG_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)
_DATAGRAM_BYTES = 65536
_SO_RCVBUFFORCE = 33          # <asm-generic/socket.h>: SO_RCVBUF beyond net.core.rmem_max, for root
_UDP_BUFFER_BYTES = 4 << 20   # a few seconds of a call, so a stalled agent does not lose packets in its socket


class Call:
    """One end of a video call: sends one media direction, receives and reports on the other, over one UDP socket.

    Its socket marks every packet DSCP EF (``EF_TOS``), which a priority line serves first.
    Media packets are ``packet_bytes`` of UDP payload carrying the session id, a sequence number and the actual send
    time; the sender paces them at the controller's rate (payload bits) from a timer, sending any that fell due while
    it slept (at up to ``PACING_FACTOR`` x the rate, and skipping any backlog beyond ``SEND_BACKLOG_S``). Arrival
    times are the kernel's receive timestamps (SO_TIMESTAMPNS), so a receiving agent that is slow to run does not
    count as network delay. Every ``FEEDBACK_INTERVAL_S`` the receiver reports to the peer's sender.
    """

    def __init__(self, spec: dict) -> None:
        self.spec, self.session = spec, spec["session_id"]
        self.start_at_s = spec["start_at_s"]
        self.end_at_s = self.start_at_s + spec["duration_s"]
        self.packet_bytes = max(int(spec["packet_bytes"]), _MEDIA.size)
        self.peer = (spec["peer_ip"], spec["peer_port"])
        self.receiver = MediaReceiver(self.start_at_s, self.packet_bytes,  # what the peer sends
                                      spec.get("receive_target_rate_bps", spec["target_rate_bps"]),
                                      spec.get("receive_min_rate_bps", spec["min_rate_bps"]))
        self.controller = RateController(spec["target_rate_bps"], spec["min_rate_bps"], self.start_at_s)
        self.sock: socket.socket | None = None
        self.completed = False
        self.stopped_at_s: float | None = None
        self.late_s: float | None = None
        self.skipped_s = 0.0
        self.send_failures = 0
        self.lateness_s = array("d")
        self.rate_log_bps: list[float] = []

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind this end's UDP socket and start taking its packets.

        Raises:
            OSError: If the address cannot be bound (e.g. the port is in use).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, EF_TOS)
            _set_receive_buffer(sock, _UDP_BUFFER_BYTES)
            sock.bind((self.spec["local_ip"], self.spec["local_port"]))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        loop.add_reader(sock.fileno(), self._readable)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop taking packets and close the socket."""
        if self.sock is not None:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _readable(self) -> None:
        for _ in range(64):  # then let other work run; the rest stays queued in the socket
            try:
                data, ancillary, _, _ = self.sock.recvmsg(_DATAGRAM_BYTES, _CMSG_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            self._take(data, _kernel_arrival_s(ancillary))

    def _take(self, data: bytes, arrival_s: float) -> None:
        """Take a media packet or a report from the peer, which arrived at ``arrival_s`` (Unix time, s)."""
        if len(data) >= _MEDIA.size and data[0] == _KIND_MEDIA:
            _, seq, session, sent_s = _MEDIA.unpack_from(data)
            if session == self.session:
                self.receiver.on_media(seq, sent_s, arrival_s)
        elif len(data) >= _FEEDBACK.size and data[0] == _KIND_FEEDBACK:
            _, _, session, _, loss, queue_delay_s, rate_bps = _FEEDBACK.unpack_from(data)
            now_s = time.time()
            if session == self.session and now_s < self.end_at_s:
                self.controller.on_report(now_s, loss, queue_delay_s, rate_bps)

    def _send_datagram(self, data: bytes | bytearray) -> None:
        try:
            self.sock.sendto(data, self.peer)
        except (BlockingIOError, InterruptedError):
            self.send_failures += 1  # the host's own queue is full: the packet is lost, as on a real host

    async def run(self) -> None:
        """Wait for the call's start, send and report until its end, then linger to count late packets."""
        await sleep_until(self.start_at_s)
        self.late_s = time.time() - self.start_at_s
        try:
            await asyncio.gather(self._send(), self._report())
            self.completed = True
            self.stopped_at_s = self.end_at_s
            await sleep_until(self.end_at_s + LINGER_S)
        finally:
            if self.stopped_at_s is None:
                self.stopped_at_s = time.time()

    async def _send(self) -> None:
        seq, due_s, sent_s, log_at_s = 0, self.start_at_s, -math.inf, self.start_at_s
        payload = bytearray(self.packet_bytes)
        while (now_s := time.time()) < self.end_at_s:
            if now_s - due_s > SEND_BACKLOG_S:
                self.skipped_s += now_s - SEND_BACKLOG_S - due_s
                due_s = now_s - SEND_BACKLOG_S
            interval_s = self.packet_bytes * 8 / self.controller.on_tick(now_s)
            send_at_s = max(due_s, sent_s + interval_s / PACING_FACTOR)
            if send_at_s > now_s:
                await asyncio.sleep(min(send_at_s, self.end_at_s) - now_s)
                continue
            sent_s = time.time()
            _MEDIA.pack_into(payload, 0, _KIND_MEDIA, seq, self.session, sent_s)
            self._send_datagram(payload)
            self.lateness_s.append(sent_s - due_s)
            seq, due_s = seq + 1, due_s + interval_s
            if sent_s >= log_at_s:
                self.rate_log_bps.append(self.controller.rate_bps)
                log_at_s += 1.0

    async def _report(self) -> None:
        at_s, number = self.start_at_s + FEEDBACK_INTERVAL_S, 0
        while at_s <= self.end_at_s:
            await sleep_until(at_s)
            report = self.receiver.report(time.time())
            if report is not None:
                packet = _FEEDBACK.pack(_KIND_FEEDBACK, number, self.session, time.time(), *report)
                self._send_datagram(packet)
                number += 1
            at_s += FEEDBACK_INTERVAL_S

    def result(self, window: dict) -> dict:
        """Report this end of the call: what it sent, and what it received (see :meth:`MediaReceiver.summary`)."""
        stopped_s = self.stopped_at_s if self.stopped_at_s is not None else time.time()
        elapsed_s = max(0.0, min(stopped_s, self.end_at_s) - self.start_at_s)
        late = sorted(self.lateness_s)
        return {"session_id": self.session, "role": self.spec["role"], "completed": self.completed,
                "start_s": trace_s(window, self.start_at_s), "late_s": self.late_s, "elapsed_s": elapsed_s,
                "sent_packets": len(self.lateness_s), "packet_bytes": self.packet_bytes,
                "send_rate_bps_per_s": self.rate_log_bps, "send_skipped_s": self.skipped_s,
                "send_failures": self.send_failures,
                "send_lateness_s": {"mean": math.fsum(late) / len(late), "p99": late[math.ceil(0.99 * len(late)) - 1],
                                    "max": late[-1]} if late else None,
                "received": self.receiver.summary(elapsed_s) if elapsed_s > 0 else None}


def _kernel_arrival_s(ancillary: list) -> float:
    """When the kernel received a datagram (Unix time, s), from its SO_TIMESTAMPNS control message; else now."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds * 1e-9
    return time.time()


def _set_receive_buffer(sock: socket.socket, size_bytes: int) -> None:
    """Ask for a receive buffer of ``size_bytes``, above the system's cap where allowed (root)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size_bytes)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size_bytes)
