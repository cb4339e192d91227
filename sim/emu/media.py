"""The traffic agent's video calls: media over UDP, measured where it arrives and paced from the receiver's reports.

A video call is two media directions over UDP (:class:`Call`), each measured at its receiver
(:class:`MediaReceiver`) and paced by a WebRTC-like controller fed back by that receiver (:class:`RateController`).
Part of the traffic agent (:mod:`sim.emu.agent`): it imports the standard library only.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import time
from array import array
from collections import deque

from sim.emu.clock import sleep_until, trace_s

FEEDBACK_INTERVAL_S = 0.1     # a media receiver reports to its sender this often
RATE_WINDOW_S = 0.5           # the receive rate a report carries is measured over this window
LINGER_S = 1.0                # a receiver keeps counting packets still queued this long after its call ends
SEND_BACKLOG_S = 0.2          # a sender stalled longer than this skips the excess (an encoder dropping frames) ...
PACING_FACTOR = 2.5           # ... and sends its backlog at up to 2.5 x its rate (WebRTC's pacer multiplier)
AT_TARGET_TOLERANCE = 0.95    # a call second is "at target" when its receive rate >= 95% of the target
BELOW_MIN_TOLERANCE = 0.95    # ... and "below minimum" when it is < 95% of the minimum

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
# Every call's packets (media and reports) carry DSCP EF (46, RFC 3246) in the TOS byte, as real-time apps mark
# them (RFC 4594 gives telephony EF; one real-time class for every stream is an assumption): a line with
# ``qos: priority`` serves them first (sim.emu.qos, which mirrors this figure), a FIFO line ignores the mark.
EF_TOS = 0xB8


class RateController:
    """WebRTC-like rate control of one media direction between its minimum and target rate (GCC's spirit).

    Starts at the target. On each receiver report (loss share, queueing delay = one-way delay minus the least seen,
    receive rate over the last ``RATE_WINDOW_S``):

    * overuse — loss > ``LOSS_BACKOFF``, or queueing delay > ``QUEUE_THRESHOLD_S`` and not falling in
      ``OVERUSE_REPORTS`` reports running (a single late report may be the host's scheduling, not the path): the rate
      becomes ``DECREASE`` x min(rate, receive rate), at most once per ``HOLD_S``;
    * loss > ``LOSS_HOLD``, or the queue above the threshold but draining: hold;
    * otherwise: increase by ``INCREASE_PER_S`` per second, to at most ``HEADROOM`` x the receive rate;
    * no report for ``SILENCE_S``: x ``DECREASE``, at most once per ``SILENCE_S``.

    The rate always stays within [min_rate_bps, target_rate_bps].
    """

    DECREASE = 0.85
    INCREASE_PER_S = 1.08
    QUEUE_THRESHOLD_S = 0.025
    DRAIN_MARGIN_S = 0.001
    LOSS_BACKOFF = 0.10
    LOSS_HOLD = 0.02
    OVERUSE_REPORTS = 2
    HOLD_S = 0.3
    SILENCE_S = 0.5
    HEADROOM = 1.5

    def __init__(self, target_rate_bps: float, min_rate_bps: float, now_s: float) -> None:
        self.target_rate_bps, self.min_rate_bps = target_rate_bps, min_rate_bps
        self.rate_bps = target_rate_bps
        self.updated_s = self.heard_s = now_s
        self.decreased_s = -math.inf
        self.queue_delay_s = 0.0
        self.overuse_reports = 0

    def on_report(self, now_s: float, loss: float, queue_delay_s: float, receive_rate_bps: float) -> float:
        """Adapt to a receiver report (loss 0..1, delay s, rate bit/s); return the new rate (bit/s)."""
        falling = queue_delay_s < self.queue_delay_s - self.DRAIN_MARGIN_S
        dt_s = min(max(now_s - self.updated_s, 0.0), 1.0)
        self.queue_delay_s, self.updated_s, self.heard_s = queue_delay_s, now_s, now_s
        delayed = queue_delay_s > self.QUEUE_THRESHOLD_S and not falling
        self.overuse_reports = self.overuse_reports + 1 if delayed else 0
        if loss > self.LOSS_BACKOFF or self.overuse_reports >= self.OVERUSE_REPORTS:
            if now_s - self.decreased_s >= self.HOLD_S:
                measured_bps = receive_rate_bps if receive_rate_bps > 0 else self.rate_bps
                self._set(self.DECREASE * min(self.rate_bps, measured_bps))
                self.decreased_s = now_s
        elif loss <= self.LOSS_HOLD and queue_delay_s <= self.QUEUE_THRESHOLD_S:
            cap_bps = max(self.HEADROOM * receive_rate_bps, self.min_rate_bps)
            if cap_bps > self.rate_bps:
                self._set(min(self.rate_bps * self.INCREASE_PER_S**dt_s, cap_bps))
        return self.rate_bps

    def on_tick(self, now_s: float) -> float:
        """Back off if no report came for ``SILENCE_S``; return the rate (bit/s)."""
        if now_s - self.heard_s >= self.SILENCE_S and now_s - self.decreased_s >= self.SILENCE_S:
            self._set(self.DECREASE * self.rate_bps)
            self.decreased_s = now_s
        return self.rate_bps

    def _set(self, rate_bps: float) -> None:
        self.rate_bps = min(self.target_rate_bps, max(self.min_rate_bps, rate_bps))


class MediaReceiver:
    """Measures one media direction where it arrives: delay, RFC 3550 jitter, loss, per-second receive rate.

    One-way delay is arrival time minus the send time stamped in the packet (all hosts share one clock). Jitter is
    RFC 3550's running estimate ``J += (|D| - J) / 16`` over consecutive arrivals, ``D`` the difference of their
    one-way delays (so the sender's own timing error is excluded); its mean over packets is reported.
    """

    def __init__(self, start_at_s: float, packet_bytes: int, target_rate_bps: float, min_rate_bps: float) -> None:
        self.start_at_s, self.packet_bytes = start_at_s, packet_bytes
        self.target_rate_bps, self.min_rate_bps = target_rate_bps, min_rate_bps
        self.arrivals_s, self.delays_s = array("d"), array("d")
        self.max_seq, self.min_delay_s = -1, math.inf
        self.jitter_s = self.jitter_sum_s = 0.0
        self.last_delay_s: float | None = None
        self.recent: deque[float] = deque()
        self.reported_seq, self.interval_packets, self.interval_delay_s = -1, 0, 0.0

    def on_media(self, seq: int, sent_s: float, arrival_s: float) -> None:
        """Count one media packet sent at ``sent_s`` that arrived at ``arrival_s`` (Unix time, s)."""
        delay_s = arrival_s - sent_s
        self.arrivals_s.append(arrival_s)
        self.delays_s.append(delay_s)
        self.min_delay_s = min(self.min_delay_s, delay_s)
        if self.last_delay_s is not None:
            self.jitter_s += (abs(delay_s - self.last_delay_s) - self.jitter_s) / 16
            self.jitter_sum_s += self.jitter_s
        self.last_delay_s = delay_s
        self.max_seq = max(self.max_seq, seq)
        self.interval_packets += 1
        self.interval_delay_s += delay_s
        self.recent.append(arrival_s)

    def report(self, now_s: float) -> tuple[float, float, float] | None:
        """Loss share, queueing delay (s) and receive rate (bit/s) since the last report; None if nothing arrived."""
        if self.interval_packets == 0:
            return None
        expected = self.max_seq - self.reported_seq
        loss = max(0.0, 1.0 - self.interval_packets / expected) if expected > 0 else 0.0
        queue_delay_s = self.interval_delay_s / self.interval_packets - self.min_delay_s
        while self.recent and self.recent[0] < now_s - RATE_WINDOW_S:
            self.recent.popleft()
        span_s = min(RATE_WINDOW_S, max(now_s - self.arrivals_s[0], FEEDBACK_INTERVAL_S))
        rate_bps = len(self.recent) * self.packet_bytes * 8 / span_s
        self.reported_seq, self.interval_packets, self.interval_delay_s = self.max_seq, 0, 0.0
        return loss, queue_delay_s, rate_bps

    def summary(self, elapsed_s: float) -> dict:
        """What this direction received over ``elapsed_s`` of call (rates bit/s, delays s, shares 0..1)."""
        packets = len(self.delays_s)
        bins_bps, delays_s = self._per_second(elapsed_s)
        out = {"packets": packets, "bytes": packets * self.packet_bytes, "max_seq": self.max_seq,
               "rate_bps_per_s": bins_bps, "delay_s_per_s": delays_s,
               "mean_rate_bps": packets * self.packet_bytes * 8 / elapsed_s if elapsed_s > 0 else None,
               "share_at_target": _share(bins_bps, lambda r: r >= AT_TARGET_TOLERANCE * self.target_rate_bps),
               "share_below_min": _share(bins_bps, lambda r: r < BELOW_MIN_TOLERANCE * self.min_rate_bps)}
        if packets == 0:
            return out | {"one_way_delay_s": None, "one_way_delay_p95_s": None, "min_delay_s": None,
                          "jitter_s": None, "queue_delay_s": None}
        mean_s = math.fsum(self.delays_s) / packets
        ordered = sorted(self.delays_s)
        return out | {"one_way_delay_s": mean_s, "one_way_delay_p95_s": ordered[math.ceil(0.95 * packets) - 1],
                      "min_delay_s": self.min_delay_s,
                      "jitter_s": self.jitter_sum_s / (packets - 1) if packets > 1 else 0.0,
                      "queue_delay_s": mean_s - self.min_delay_s}

    def _per_second(self, elapsed_s: float) -> tuple[list[float], list[float | None]]:
        """Receive rate (bit/s) and mean one-way delay (s; None when nothing arrived) in each second of the call.

        Seconds are counted from the call's start plus the least delay seen (bin k holds what was sent in about
        the call's k-th second).
        """
        bins, sums = [0] * max(1, int(elapsed_s + 1e-9)), [0.0] * max(1, int(elapsed_s + 1e-9))
        base_s = self.start_at_s + (self.min_delay_s if self.delays_s else 0.0)
        for arrival_s, delay_s in zip(self.arrivals_s, self.delays_s):
            index = max(0, int(arrival_s - base_s))
            if index < len(bins):
                bins[index] += 1
                sums[index] += delay_s
        return ([count * self.packet_bytes * 8.0 for count in bins],
                [total / count if count else None for total, count in zip(sums, bins)])


def _share(values: list[float], test) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


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
