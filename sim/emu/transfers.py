"""The traffic agent's transfers: TCP sessions, the site's client and the server's side, and TCP's own counters.

Transfers are TCP with the congestion control set on each socket: connect (one round trip), a TLS-like exchange
(``HELLO_BYTES`` out, ``HELLO_REPLY_BYTES`` back: TLS 1.3's one round trip), then one request per chunk: an upload
sends a request header and the chunk, and the server answers ``ACK_BYTES`` once all of it arrived; a download sends
a request header naming the chunk's size and the server sends that many bytes.

A transfer on a ``reused`` connection (the trace's ``connection``) finds it open: the connection and its hello are
made ``REUSE_LEAD_S`` before the transfer's start, then it sits idle until the start, when the first request goes.
Idle that long (past its retransmission timeout, about 3 RTT after the hello's samples, wherever the round trip is
under a second), Linux restarts its congestion window (``net.ipv4.tcp_slow_start_after_idle``); a longer round trip
would leave the hello's window of 10 segments, the same. Either way its data slow-starts as a new connection's does.
Its round trip is not measured: the kernel's smoothed RTT would be the hello's, ``REUSE_LEAD_S`` before the start,
not the path the transfer met (the record's ``rtt_s`` and ``queue_delay_s`` are NaN).

Part of the traffic agent (:mod:`sim.emu.agent`): it imports the standard library only.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from sim.emu.clock import sleep_until

HELLO_BYTES = 512             # the TLS-like round trip: a ClientHello-sized message ...
HELLO_REPLY_BYTES = 4096      # ... answered by a ServerHello with a certificate chain
ACK_BYTES = 16                # the server's "all bytes arrived" answer to an upload
# A reused connection is opened this long before its transfer's start (s): a choice of the emulation, not a figure
# of the apps (any lead past the hello's round trips and its RTO, about 1-3 s here, gives the same transfer).
REUSE_LEAD_S = 3.0
RETRY_S = 0.05                # a refused early connection tries again this often (s): the agents start together

_MAGIC = b"NHS1"
_HELLO = struct.Struct("!4sQ")                # magic, session id; padded to HELLO_BYTES
_REQUEST = struct.Struct("!4scQ")             # magic, b"U" (upload) or b"D" (download), bytes in this round
_IO_BYTES = 1 << 18
_ZEROS = bytes(1 << 20)
_TCP_INFO_BYTES = 232
ABORTS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError, TimeoutError)


async def run_transfer(spec: dict, congestion_control: str, out: dict) -> None:
    """Run one transfer as the client, filling ``out`` as it goes (times s, sizes bytes).

    On a new connection the handshakes come after the start, and count in its duration; a reused connection was
    opened ``REUSE_LEAD_S`` before (``late_s`` says how late its first request went, if opening it took longer).
    ``setup_s`` is how long after the start its first request went (connect and hello; about 0 on a reused
    connection), ``first_data_s`` when the first bytes of a download's answer arrived (s after the start; None for
    an upload, whose data goes with its request): what splits a completion time into set-up, first round trip and
    the rest.

    Raises:
        OSError: If the connection cannot be made (e.g. the server is not listening).
        ValueError: If the server breaks the protocol.
    """
    reused = spec.get("connection", "new") == "reused"
    await sleep_until(spec["start_at_s"] - (REUSE_LEAD_S if reused else 0.0))
    if not reused:
        out["late_s"] = time.time() - spec["start_at_s"]
    size_bytes, chunk_bytes = spec["size_bytes"], spec["chunk_bytes"] or spec["size_bytes"]
    # opened early, a reused connection may find the server's agent not yet listening: it tries again until its start
    with await _connect(spec, congestion_control, spec["start_at_s"] if reused else 0.0) as sock:
        await _hello(sock, spec, out)
        if reused:
            out["rtt_s"] = None  # the hello's RTT, REUSE_LEAD_S old: not the path at the transfer's start
            await sleep_until(spec["start_at_s"])
            out["late_s"] = time.time() - spec["start_at_s"]
        out["setup_s"] = time.time() - spec["start_at_s"]
        done_bytes, rounds = 0, 0
        try:
            while done_bytes < size_bytes:
                n = min(chunk_bytes, size_bytes - done_bytes)
                rounds += 1
                first_at_s = await _exchange(sock, spec["direction"], n)
                if rounds == 1 and first_at_s is not None:
                    out["first_data_s"] = first_at_s - spec["start_at_s"]
                done_bytes += n
            end_s = time.time()
            out.update(completed=True, end_at_s=end_s, duration_s=end_s - spec["start_at_s"])
        finally:
            info = tcp_info(sock)
            out.update(min_rtt_s=info["min_rtt_s"], retransmits=info["retransmits"], rounds=rounds,
                       delivered_bytes=_payload_confirmed(info, spec["direction"], rounds))


async def _connect(spec: dict, congestion_control: str, retry_until_s: float) -> socket.socket:
    """A socket connected to the server (one round trip); refused, it tries again every ``RETRY_S`` until then (s).

    Raises:
        OSError: If the connection cannot be made (refused at or after ``retry_until_s``).
    """
    loop = asyncio.get_running_loop()
    while True:
        sock = tcp_socket(congestion_control)
        try:
            sock.bind((spec["local_ip"], 0))
            await loop.sock_connect(sock, (spec["server_ip"], spec["server_port"]))
            return sock
        except ConnectionRefusedError:
            sock.close()
            if time.time() + RETRY_S > retry_until_s:
                raise
        except BaseException:
            sock.close()
            raise
        await asyncio.sleep(RETRY_S)


async def _hello(sock: socket.socket, spec: dict, out: dict) -> None:
    """Make the hello exchange (one round trip, TLS 1.3's); note the connection's RTT (s)."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, _HELLO.pack(_MAGIC, spec["session_id"]).ljust(HELLO_BYTES, b"\0"))
    await _recv_exactly(sock, HELLO_REPLY_BYTES)
    out["rtt_s"] = tcp_info(sock)["rtt_s"]
    out["congestion_control"] = congestion_control_of(sock)


def _payload_confirmed(info: dict, direction: str, rounds: int) -> int:
    """Payload bytes the server acknowledged (upload) or the site received (download), from TCP's own counts.

    The kernel counts the SYN in bytes acked, and a FIN from the server (which only comes if it stopped early) in
    bytes received: exact for a completed transfer, within a byte for one cut short.
    """
    if direction == "up":
        return max(0, info["bytes_acked"] - 1 - HELLO_BYTES - rounds * _REQUEST.size)
    return max(0, info["bytes_received"] - HELLO_REPLY_BYTES)


async def _exchange(sock: socket.socket, direction: str, size_bytes: int) -> float | None:
    """One request round: upload ``size_bytes`` and await the ack, or ask for them and receive them.

    Returns when a download's first bytes arrived (``time.time()``, s; None for an upload).
    """
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, _REQUEST.pack(_MAGIC, b"U" if direction == "up" else b"D", size_bytes))
    if direction == "up":
        await _send_bytes(sock, size_bytes)
        await _recv_exactly(sock, ACK_BYTES)
        return None
    first_at: list[float] = []
    await _recv_exactly(sock, size_bytes, first_at=first_at)
    return first_at[0]


async def serve_connection(sock: socket.socket, served: list, others: dict | None = None) -> None:
    """Serve one client connection: the hello exchange, then its requests until it closes.

    ``others``: what serves a connection whose hello has another magic (e.g. a multiplexed connection's,
    :data:`sim.emu.multiplex.SERVE`), called with the socket and the served entry after the hello.

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
            if others and magic in others:
                await others[magic](sock, entry)
                return
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
        except ABORTS:
            entry["aborted"] = True  # the client went away (it stopped): its own result says so


def _check_magic(magic: bytes) -> None:
    if magic != _MAGIC:
        raise ValueError(f"transfer protocol: bad magic {magic!r}")


async def _recv_exactly(sock: socket.socket, size_bytes: int, keep: bool = False, eof_ok: bool = False,
                        first_at: list | None = None) -> bytes:
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
        if first_at is not None and not first_at and n > 0:
            first_at.append(time.time())  # when the first bytes arrived (s)
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
