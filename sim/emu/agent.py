"""The traffic agent: one process per emulated host, replaying its share of a trace over real TCP and UDP.

``python -m sim.emu.agent --spec SPEC.json --out RESULT.json`` runs inside a Mininet host. The spec (made by
:func:`sim.emu.traffic.specs`) lists the host's transfers (it is their client), its video calls (it is one end of
each) and whether it serves transfers. The agent waits for each session's wall-clock start, runs and measures it, and
writes one result JSON when its work is done, at the spec's stop time, or on SIGTERM/SIGINT, whichever comes first
(sessions still running are reported with ``completed: false``). It imports the standard library only, so it starts
in a fraction of a second, and it starts no processes.

Transfers are TCP with the congestion control set on each socket: connect (one round trip), a TLS-like exchange
(``HELLO_BYTES`` out, ``HELLO_REPLY_BYTES`` back: TLS 1.3's one round trip), then one request per chunk: an upload
sends a request header and the chunk, and the server answers ``ACK_BYTES`` once all of it arrived; a download sends
a request header naming the chunk's size and the server sends that many bytes.

A video call is two media directions over UDP (:class:`Call`), each measured at its receiver
(:class:`MediaReceiver`) and paced by a WebRTC-like controller fed back by that receiver (:class:`RateController`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import socket
import struct
import sys
import time
from array import array
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
HELLO_BYTES = 512             # the TLS-like round trip: a ClientHello-sized message ...
HELLO_REPLY_BYTES = 4096      # ... answered by a ServerHello with a certificate chain
ACK_BYTES = 16                # the server's "all bytes arrived" answer to an upload
FEEDBACK_INTERVAL_S = 0.1     # a media receiver reports to its sender this often
RATE_WINDOW_S = 0.5           # the receive rate a report carries is measured over this window
LINGER_S = 1.0                # a receiver keeps counting packets still queued this long after its call ends
SEND_BACKLOG_S = 0.2          # a sender stalled longer than this skips the excess (an encoder dropping frames) ...
PACING_FACTOR = 2.5           # ... and sends its backlog at up to 2.5 x its rate (WebRTC's pacer multiplier)
AT_TARGET_TOLERANCE = 0.95    # a call second is "at target" when its receive rate >= 95% of the target
BELOW_MIN_TOLERANCE = 0.95    # ... and "below minimum" when it is < 95% of the minimum
STOP_GRACE_S = 0.5            # how long stopping waits for cancelled sessions to unwind

_MAGIC = b"NHS1"
_HELLO = struct.Struct("!4sQ")                # magic, session id; padded to HELLO_BYTES
_REQUEST = struct.Struct("!4scQ")             # magic, b"U" (upload) or b"D" (download), bytes in this round
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
_IO_BYTES = 1 << 18
_ZEROS = bytes(1 << 20)
_TCP_INFO_BYTES = 232
_ABORTS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError, TimeoutError)


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
        bins_bps = self._per_second_bps(elapsed_s)
        out = {"packets": packets, "bytes": packets * self.packet_bytes, "max_seq": self.max_seq,
               "rate_bps_per_s": bins_bps,
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

    def _per_second_bps(self, elapsed_s: float) -> list[float]:
        """Receive rate in each whole second of the call, seconds counted from the first packet's least delay."""
        bins = [0] * max(1, int(elapsed_s + 1e-9))
        base_s = self.start_at_s + (self.min_delay_s if self.delays_s else 0.0)
        for arrival_s in self.arrivals_s:
            index = max(0, int(arrival_s - base_s))
            if index < len(bins):
                bins[index] += 1
        return [count * self.packet_bytes * 8.0 for count in bins]


def _share(values: list[float], test) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


class Call:
    """One end of a video call: sends one media direction, receives and reports on the other, over one UDP socket.

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
        self.receiver = MediaReceiver(self.start_at_s, self.packet_bytes, spec["target_rate_bps"],
                                      spec["min_rate_bps"])
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
        await _sleep_until(self.start_at_s)
        self.late_s = time.time() - self.start_at_s
        try:
            await asyncio.gather(self._send(), self._report())
            self.completed = True
            self.stopped_at_s = self.end_at_s
            await _sleep_until(self.end_at_s + LINGER_S)
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
            await _sleep_until(at_s)
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
                "start_s": _trace_s(window, self.start_at_s), "late_s": self.late_s, "elapsed_s": elapsed_s,
                "sent_packets": len(self.lateness_s), "packet_bytes": self.packet_bytes,
                "send_rate_bps_per_s": self.rate_log_bps, "send_skipped_s": self.skipped_s,
                "send_failures": self.send_failures,
                "send_lateness_s": {"mean": math.fsum(late) / len(late), "p99": late[math.ceil(0.99 * len(late)) - 1],
                                    "max": late[-1]} if late else None,
                "received": self.receiver.summary(elapsed_s) if elapsed_s > 0 else None}


async def run_transfer(spec: dict, congestion_control: str, out: dict) -> None:
    """Run one transfer as the client, filling ``out`` as it goes (times s, sizes bytes).

    Raises:
        OSError: If the connection cannot be made (e.g. the server is not listening).
        ValueError: If the server breaks the protocol.
    """
    loop = asyncio.get_running_loop()
    await _sleep_until(spec["start_at_s"])
    out["late_s"] = time.time() - spec["start_at_s"]
    size_bytes, chunk_bytes = spec["size_bytes"], spec["chunk_bytes"] or spec["size_bytes"]
    with tcp_socket(congestion_control) as sock:
        sock.bind((spec["local_ip"], 0))
        await loop.sock_connect(sock, (spec["server_ip"], spec["server_port"]))
        await loop.sock_sendall(sock, _HELLO.pack(_MAGIC, spec["session_id"]).ljust(HELLO_BYTES, b"\0"))
        await _recv_exactly(sock, HELLO_REPLY_BYTES)
        out["rtt_s"] = tcp_info(sock)["rtt_s"]
        out["congestion_control"] = congestion_control_of(sock)
        done_bytes, rounds = 0, 0
        try:
            while done_bytes < size_bytes:
                n = min(chunk_bytes, size_bytes - done_bytes)
                rounds += 1
                await _exchange(sock, spec["direction"], n)
                done_bytes += n
            end_s = time.time()
            out.update(completed=True, end_at_s=end_s, duration_s=end_s - spec["start_at_s"])
        finally:
            info = tcp_info(sock)
            out.update(min_rtt_s=info["min_rtt_s"], retransmits=info["retransmits"], rounds=rounds,
                       delivered_bytes=_payload_confirmed(info, spec["direction"], rounds))


def _payload_confirmed(info: dict, direction: str, rounds: int) -> int:
    """Payload bytes the server acknowledged (upload) or the site received (download), from TCP's own counts.

    The kernel counts the SYN in bytes acked, and a FIN from the server (which only comes if it stopped early) in
    bytes received: exact for a completed transfer, within a byte for one cut short.
    """
    if direction == "up":
        return max(0, info["bytes_acked"] - 1 - HELLO_BYTES - rounds * _REQUEST.size)
    return max(0, info["bytes_received"] - HELLO_REPLY_BYTES)


async def _exchange(sock: socket.socket, direction: str, size_bytes: int) -> None:
    """One request round: upload ``size_bytes`` and await the ack, or ask for them and receive them."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, _REQUEST.pack(_MAGIC, b"U" if direction == "up" else b"D", size_bytes))
    if direction == "up":
        await _send_bytes(sock, size_bytes)
        await _recv_exactly(sock, ACK_BYTES)
    else:
        await _recv_exactly(sock, size_bytes)


async def serve_connection(sock: socket.socket, served: list) -> None:
    """Serve one client connection: the hello exchange, then its requests until it closes.

    Raises:
        ValueError: If the client breaks the protocol.
    """
    loop = asyncio.get_running_loop()
    entry = {"session_id": None, "bytes_in": 0, "bytes_out": 0, "aborted": False,
             "congestion_control": congestion_control_of(sock)}
    served.append(entry)
    with sock:
        try:
            magic, entry["session_id"] = _HELLO.unpack_from(await _recv_exactly(sock, HELLO_BYTES, keep=True))
            _check_magic(magic)
            await loop.sock_sendall(sock, _ZEROS[:HELLO_REPLY_BYTES])
            while header := await _recv_exactly(sock, _REQUEST.size, keep=True, eof_ok=True):
                magic, op, size_bytes = _REQUEST.unpack(header)
                _check_magic(magic)
                if op == b"U":
                    await _recv_exactly(sock, size_bytes)
                    entry["bytes_in"] += size_bytes
                    await loop.sock_sendall(sock, _ZEROS[:ACK_BYTES])
                else:
                    await _send_bytes(sock, size_bytes)
                    entry["bytes_out"] += size_bytes
        except _ABORTS:
            entry["aborted"] = True  # the client went away (it stopped): its own result says so


def _check_magic(magic: bytes) -> None:
    if magic != _MAGIC:
        raise ValueError(f"transfer protocol: bad magic {magic!r}")


async def _recv_exactly(sock: socket.socket, size_bytes: int, keep: bool = False, eof_ok: bool = False) -> bytes:
    """Receive exactly ``size_bytes``; return them if ``keep``; return b"" on a clean close first if ``eof_ok``.

    Raises:
        EOFError: If the peer closes before they all arrive.
    """
    loop = asyncio.get_running_loop()
    buffer = bytearray(min(size_bytes, _IO_BYTES) if not keep else size_bytes)
    view, left, kept = memoryview(buffer), size_bytes, 0
    while left > 0:
        target = view[kept:kept + left] if keep else view[:min(left, len(buffer))]
        n = await loop.sock_recv_into(sock, target)
        if n == 0:
            if eof_ok and left == size_bytes:
                return b""
            raise EOFError(f"peer closed after {size_bytes - left} of {size_bytes} bytes")
        left -= n
        kept += n if keep else 0
    return bytes(buffer) if keep else b""


async def _send_bytes(sock: socket.socket, size_bytes: int) -> None:
    loop, view = asyncio.get_running_loop(), memoryview(_ZEROS)
    while size_bytes > 0:
        n = min(size_bytes, len(view))
        await loop.sock_sendall(sock, view[:n])
        size_bytes -= n


def tcp_socket(congestion_control: str) -> socket.socket:
    """A non-blocking TCP socket using ``congestion_control`` (e.g. "cubic"), with Nagle off (see set_tcp_options).

    Raises:
        OSError: If the kernel refuses that congestion control.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        set_tcp_options(sock, congestion_control)
    except OSError:
        sock.close()
        raise
    return sock


def set_tcp_options(sock: socket.socket, congestion_control: str) -> None:
    """Make ``sock`` non-blocking, use ``congestion_control`` and send at once (TCP_NODELAY).

    Nagle is off as in HTTP clients and servers: otherwise a transfer's last partial segment could wait a round trip
    for the ack of the small request header before it.

    Raises:
        OSError: If the kernel refuses that congestion control.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion_control.encode())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)


def congestion_control_of(sock: socket.socket) -> str:
    """The congestion control the kernel really uses on ``sock``."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0", 1)[0].decode()


def tcp_info(sock: socket.socket) -> dict:
    """Smoothed and minimum RTT (s), retransmitted segments, bytes acked and received, from ``struct tcp_info``.

    Offsets are those of ``<linux/tcp.h>`` (stable: fields are only ever appended).
    """
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    rtt_us, = struct.unpack_from("I", raw, 68)
    retrans, = struct.unpack_from("I", raw, 100)
    bytes_acked, bytes_received = struct.unpack_from("QQ", raw, 120)
    min_rtt_us = struct.unpack_from("I", raw, 148)[0] if len(raw) >= 152 else rtt_us
    return {"rtt_s": rtt_us / 1e6, "min_rtt_s": min_rtt_us / 1e6, "retransmits": retrans,
            "bytes_acked": bytes_acked, "bytes_received": bytes_received}


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


async def _sleep_until(at_s: float) -> None:
    delay_s = at_s - time.time()
    if delay_s > 0:
        await asyncio.sleep(delay_s)


def _trace_s(window: dict, wall_s: float | None) -> float | None:
    """A wall-clock time (Unix, s) on the trace's clock (s since midnight)."""
    return None if wall_s is None else window["window_start_s"] + (wall_s - window["epoch_s"])


class Agent:
    """Runs one host's sessions, and serves transfers if its spec says so, until done, the stop time or a signal."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.window = {"epoch_s": spec["epoch_s"], "window_start_s": spec["window_start_s"]}
        self.errors: list[str] = []
        self.transfers = [_transfer_entry(t, self.window) for t in spec["transfers"]]
        self.calls = [Call(c) for c in spec["calls"]]
        self.served: list[dict] = []
        self.reason = "not started"
        self.ready_at_s: float | None = None
        self.stopped_at_s: float | None = None

    async def run(self) -> None:
        """Open the host's sockets, run its sessions, and stop at the first of: all done, stop time, signal."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._signalled, stop, signum)
        tasks = []
        try:
            for call in self.calls:
                call.open(loop)
            if self.spec.get("server"):
                tasks.append(asyncio.create_task(self._serve(self._listen())))
            self.ready_at_s = time.time()
            if self.ready_at_s > self.spec["epoch_s"]:
                log.warning("ready %.3f s after the epoch: sessions due before then start late", self.ready_at_s
                            - self.spec["epoch_s"])
            work = [asyncio.create_task(self._guard(run_transfer(t, self.spec["congestion_control"], entry), entry))
                    for t, entry in zip(self.spec["transfers"], self.transfers)]
            work += [asyncio.create_task(self._guard(call.run(), {"session_id": call.session})) for call in self.calls]
            tasks += work
            await self._wait(stop, work)
        finally:
            self.stopped_at_s = time.time()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for call in self.calls:
                call.close(loop)

    def _signalled(self, stop: asyncio.Event, signum: int) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"
        stop.set()

    async def _wait(self, stop: asyncio.Event, work: list) -> None:
        """Wait for the first of: ``stop`` set, the stop time, the parent gone, all ``work`` done (if not serving)."""
        waiters = {asyncio.create_task(stop.wait()): None,
                   asyncio.create_task(_sleep_until(self.spec["stop_at_s"])): "stop time",
                   asyncio.create_task(_parent_gone()): "parent process gone"}
        if not self.spec.get("server"):
            waiters[asyncio.create_task(_all_done(work))] = "done"
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        reason = waiters[next(iter(done))]
        if reason is not None:
            self.reason = reason

    async def _guard(self, session, entry: dict) -> None:
        """Run a session; a dropped connection ends it (recorded), any other failure is an agent error."""
        try:
            await session
        except _ABORTS as exc:
            entry["aborted"] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 -- reported in the result, which the caller checks
            entry["error"] = f"{type(exc).__name__}: {exc}"
            self.errors.append(f"session {entry.get('session_id')}: {entry['error']}")
            log.error("session %s failed: %s", entry.get("session_id"), entry["error"])

    def _listen(self) -> socket.socket:
        server = self.spec["server"]
        listener = tcp_socket(self.spec["congestion_control"])
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((server["ip"], server["port"]))
        listener.listen(512)
        return listener

    async def _serve(self, listener: socket.socket) -> None:
        """Accept transfer connections until cancelled; serve each in its own task."""
        loop, connections = asyncio.get_running_loop(), set()
        try:
            while True:
                sock, _ = await loop.sock_accept(listener)
                set_tcp_options(sock, self.spec["congestion_control"])
                task = asyncio.create_task(self._guard(serve_connection(sock, self.served), {"session_id": "server"}))
                connections.add(task)
                task.add_done_callback(connections.discard)
        finally:
            listener.close()
            for task in connections:
                task.cancel()

    def result(self) -> dict:
        """The agent's result: every session of its spec, measured or not (JSON-serialisable)."""
        transfers = []
        for entry in self.transfers:
            fields = {k: v for k, v in entry.items() if k != "end_at_s"}
            transfers.append(fields | {"end_s": _trace_s(self.window, entry.get("end_at_s"))})
        return {"format": FORMAT_VERSION, "host": self.spec["host"], **self.window,
                "congestion_control": self.spec["congestion_control"], "ready_at_s": self.ready_at_s,
                "stopped_at_s": self.stopped_at_s, "reason": self.reason, "errors": self.errors,
                "transfers": transfers, "calls": [call.result(self.window) for call in self.calls],
                "served": self.served}


def _transfer_entry(spec: dict, window: dict) -> dict:
    return {"session_id": spec["session_id"], "direction": spec["direction"], "size_bytes": spec["size_bytes"],
            "completed": False, "start_s": _trace_s(window, spec["start_at_s"]), "late_s": None,
            "duration_s": None, "delivered_bytes": 0, "rounds": 0, "rtt_s": None, "min_rtt_s": None,
            "retransmits": None, "congestion_control": None, "aborted": None, "error": None}


async def _all_done(tasks: list) -> None:
    """Return when every task is done, without cancelling them if this wait is cancelled."""
    if tasks:
        await asyncio.wait(tasks)


async def _parent_gone() -> None:
    """Return when the process that started this agent has exited (the agent was orphaned)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


def write_result(path: Path, result: dict) -> None:
    """Write a result JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(result), allow_nan=False))
    os.replace(tmp, path)


def _finite(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the agent of one spec file; write its result. Exit status 0, or 1 if the agent itself failed."""
    parser = argparse.ArgumentParser(prog="python -m sim.emu.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="the host's spec JSON (sim.emu.traffic.specs)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"agent %(levelname)s {args.spec.stem}: %(message)s")
    agent = Agent(json.loads(args.spec.read_text()))
    code = 0
    try:
        asyncio.run(agent.run())
    except Exception as exc:  # noqa: BLE001 -- e.g. a port in use: written into the result, and exit status 1
        agent.errors.append(f"agent: {type(exc).__name__}: {exc}")
        agent.reason = "failed"
        code = 1
    write_result(args.out, agent.result())
    return code


if __name__ == "__main__":
    sys.exit(main())
