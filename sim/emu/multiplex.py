"""Multiplexed transfers (HTTP/2-like): a multiplexed app's concurrent streams at a site, one way, on one connection.

A multiplexed app's transfers at a site in one direction (the trace's ``connection`` ``multiplexed-new`` or
``multiplexed-reused``) are streams of one TCP connection, so they share one congestion window over real packets. A
small framing on the socket carries them: after the hello (``_MUX_HELLO``, TLS 1.3's round trip as any transfer's),
each frame is a header (magic, kind, stream id, bytes) and, for data, that many bytes. A download stream sends a
request (``D``); the server sends every requested stream's data in frames of at most ``FRAME_BYTES``, taking the
streams in turn (round-robin), and the client counts each stream's bytes. An upload stream's data goes in the client's
frames (``U``, the last ``L``), the streams in turn, and the server answers each stream's last frame (``A``). A stream
is done when its last byte (download) or its answer (upload) arrives; chunked transfers send one request per chunk.

A stream that starts while its connection carries another stream joins it: no connect, no hello, its request at once
(it waits for the connection being opened, if it is). One that finds it idle is as its draw says: ``multiplexed-new``
opens a new connection (the idle one is closed: the server timed it out), ``multiplexed-reused`` uses the idle one,
or one opened ``REUSE_LEAD_S`` before its start if there is none (as a reused transfer's, :mod:`sim.emu.transfers`).

Part of the traffic agent (:mod:`sim.emu.agent`): it imports the standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

from sim.emu.clock import sleep_until
from sim.emu.transfers import (
    ACK_BYTES,
    HELLO_BYTES,
    HELLO_REPLY_BYTES,
    REUSE_LEAD_S,
    _connect,
    _recv_exactly,
    congestion_control_of,
    tcp_info,
)

MULTIPLEXED = ("multiplexed-new", "multiplexed-reused")  # the trace's connection of a multiplexed app's transfer
# The interleaving unit: HTTP/2's default and least maximum frame size (RFC 9113 4.2, SETTINGS_MAX_FRAME_SIZE).
FRAME_BYTES = 16_384
_MUX_MAGIC = b"NHS2"
_HELLO = struct.Struct("!4sQ")  # magic, the opening stream's session id; padded to HELLO_BYTES
_FRAME = struct.Struct("!4scQQ")  # magic, kind, stream (session id), bytes (of data following, or asked for)
_ZEROS = bytes(FRAME_BYTES)
# Unsent bytes a multiplexed connection's sender lets the kernel hold (bytes): a frame's worth, so a stream that joins
# waits behind at most a frame or two of the others', not behind a send buffer of hundreds of kB (HTTP/2 servers set
# TCP_NOTSENT_LOWAT for the same reason: their priorities and round-robin act only on what is not yet in the kernel).
NOTSENT_LOWAT_BYTES = FRAME_BYTES
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # <linux/tcp.h>


class Sender:
    """One side's writer on a multiplexed connection: control frames first, then data frames, streams in turn."""

    def __init__(self, sock: socket.socket, data_kind: bytes, last_kind: bytes | None) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT_BYTES)
        self.sock, self.data_kind, self.last_kind = sock, data_kind, last_kind
        self.control: list[bytes] = []
        self.data: dict[int, int] = {}  # stream -> bytes still to send, in the order they were asked for
        self.work = asyncio.Event()

    def put_control(self, frame: bytes) -> None:
        """Queue a control frame (a request, an answer), sent before any more data."""
        self.control.append(frame)
        self.work.set()

    def put_data(self, stream: int, size_bytes: int) -> None:
        """Queue ``size_bytes`` of a stream's data, sent in frames in turn with the other streams'."""
        self.data[stream] = self.data.get(stream, 0) + size_bytes
        self.work.set()

    async def run(self) -> None:
        """Send until cancelled: queued control frames, then one frame of each stream with data, in turn."""
        loop = asyncio.get_running_loop()
        while True:
            await self.work.wait()
            self.work.clear()
            while self.control or self.data:
                while self.control:
                    await loop.sock_sendall(self.sock, self.control.pop(0))
                for stream in list(self.data):
                    n = min(FRAME_BYTES, self.data[stream])
                    self.data[stream] -= n
                    last = self.data[stream] == 0
                    if last:
                        del self.data[stream]
                    kind = self.last_kind if last and self.last_kind else self.data_kind
                    await loop.sock_sendall(self.sock, _FRAME.pack(_MUX_MAGIC, kind, stream, n) + _ZEROS[:n])


class MuxConnection:
    """The client's multiplexed connection of one app and direction at a site: its socket, streams and tasks."""

    def __init__(self, congestion_control: str, direction: str) -> None:
        self.congestion_control, self.direction = congestion_control, direction
        self.sock: socket.socket | None = None
        self.sender: Sender | None = None
        self.tasks: list[asyncio.Task] = []
        self.live: set[int] = set()  # streams started and not done
        # stream -> [frames' bytes still to come (1: an answer), done, its bytes, when its first frame came (s)]
        self.waiting: dict[int, list] = {}
        self.received: dict[int, int] = {}  # stream -> its payload bytes confirmed
        self.lock = asyncio.Lock()
        self.rtt_s: float | None = None

    async def stream(self, spec: dict, out: dict) -> None:
        """Run one stream (a transfer of the trace), filling ``out`` as :func:`sim.emu.transfers.run_transfer` does.

        ``setup_s``: how long after its start its request went (the connection opened, or its opening waited for);
        ``first_data_s``: when a download's first frame arrived (s after the start; None for an upload).

        Raises:
            OSError: If a connection cannot be made.
            ValueError: If the server breaks the protocol.
        """
        start_s, stream = spec["start_at_s"], spec["session_id"]
        reused = spec["connection"] == "multiplexed-reused"
        if reused:
            await sleep_until(start_s - REUSE_LEAD_S)
            async with self.lock:  # a kept-alive connection to wake at the start, opened now if there is none
                if self.sock is None:
                    await self._open(spec, start_s)
        await sleep_until(start_s)
        out["late_s"] = time.time() - start_s
        async with self.lock:
            if self.live:  # joins the open connection: no connect, no hello
                out["rtt_s"] = None
            elif self.sock is not None and reused:  # wakes the idle one
                out["rtt_s"] = None
            else:  # opens a new one (the idle one, if any, was closed by the server)
                await self._shut()
                await self._open(spec, 0.0)
                out["rtt_s"] = self.rtt_s
            self.live.add(stream)
        out["congestion_control"] = congestion_control_of(self.sock)
        out["setup_s"] = time.time() - start_s
        size_bytes, chunk_bytes = spec["size_bytes"], spec["chunk_bytes"] or spec["size_bytes"]
        done_bytes, rounds = 0, 0
        try:
            while done_bytes < size_bytes:
                n = min(chunk_bytes, size_bytes - done_bytes)
                rounds += 1
                first_at_s = await self._exchange(stream, n)
                if rounds == 1 and first_at_s is not None:
                    out["first_data_s"] = first_at_s - start_s
                done_bytes += n
            end_s = time.time()
            out.update(completed=True, end_at_s=end_s, duration_s=end_s - start_s)
        finally:
            self.live.discard(stream)
            if self.sock is not None:
                info = tcp_info(self.sock)
                out.update(min_rtt_s=info["min_rtt_s"], retransmits=info["retransmits"])
            out.update(rounds=rounds, delivered_bytes=self.received.pop(stream, 0))

    async def _exchange(self, stream: int, size_bytes: int) -> float | None:
        """One request of a stream: ask for ``size_bytes`` and receive them, or send them and await the answer.

        Returns when a download's first frame arrived (``time.time()``, s; None for an upload).
        """
        done = asyncio.get_running_loop().create_future()
        waiting = [size_bytes if self.direction == "down" else 1, done, size_bytes, None]
        self.waiting[stream] = waiting
        if self.direction == "down":
            self.sender.put_control(_FRAME.pack(_MUX_MAGIC, b"D", stream, size_bytes))
        else:
            self.sender.put_data(stream, size_bytes)
        await done
        return waiting[3] if self.direction == "down" else None

    async def _open(self, spec: dict, retry_until_s: float) -> None:
        """Connect, make the hello exchange (2 round trips), and start the connection's reader and writer."""
        self.sock = await _connect(spec, self.congestion_control, retry_until_s)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self.sock, _HELLO.pack(_MUX_MAGIC, spec["session_id"]).ljust(HELLO_BYTES, b"\0"))
        await _recv_exactly(self.sock, HELLO_REPLY_BYTES)
        self.rtt_s = tcp_info(self.sock)["rtt_s"]
        self.sender = Sender(self.sock, b"U", b"L")
        self.tasks = [asyncio.create_task(self.sender.run()), asyncio.create_task(self._read(self.sock))]

    async def _read(self, sock: socket.socket) -> None:
        """Receive the server's frames until the connection closes: each stream's data, or its answers."""
        try:
            while header := await _recv_exactly(sock, _FRAME.size, keep=True, eof_ok=True):
                magic, kind, stream, n = _FRAME.unpack(header)
                _check(magic)
                if kind == b"d":
                    await _recv_exactly(sock, n)
                    self.received[stream] = self.received.get(stream, 0) + n
                elif kind == b"A":
                    await _recv_exactly(sock, ACK_BYTES)
                    n = 1
                else:
                    raise ValueError(f"multiplexed protocol: unexpected frame {kind!r} from the server")
                self._arrived(stream, n)
        except Exception as exc:  # noqa: BLE001 -- each stream waiting on it fails with it (its own task reports it)
            for _, done, *_ in self.waiting.values():
                if not done.done():
                    done.set_exception(exc)
            self.waiting.clear()

    def _arrived(self, stream: int, n: int) -> None:
        """Count ``n`` bytes (or an answer, 1) of a stream's request; the request is done when none are left."""
        waiting = self.waiting[stream]
        if waiting[3] is None:
            waiting[3] = time.time()
        waiting[0] -= n
        if waiting[0] > 0:
            return
        del self.waiting[stream]
        if self.direction == "up":  # the answer confirms the whole chunk
            self.received[stream] = self.received.get(stream, 0) + waiting[2]
        waiting[1].set_result(None)

    async def _shut(self) -> None:
        """Close the connection once its reader and writer have stopped (its socket's number may be used again)."""
        tasks = self.tasks
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.close()

    def close(self) -> None:
        """Close the connection (its tasks cancelled); a later stream opens a new one."""
        for task in self.tasks:
            task.cancel()
        self.tasks = []
        if self.sock is not None:
            self.sock.close()
        self.sock = self.sender = None


async def serve_multiplexed(sock: socket.socket, entry: dict) -> None:
    """Serve a multiplexed connection after its hello: each download stream's data in turn, each upload answered.

    Raises:
        ValueError: If the client breaks the protocol.
    """
    await asyncio.get_running_loop().sock_sendall(sock, bytes(HELLO_REPLY_BYTES))
    sender = Sender(sock, b"d", None)
    writer = asyncio.create_task(sender.run())
    try:
        while header := await _recv_exactly(sock, _FRAME.size, keep=True, eof_ok=True):
            magic, kind, stream, n = _FRAME.unpack(header)
            _check(magic)
            if kind == b"D":
                sender.put_data(stream, n)
                entry["bytes_out"] += n
            elif kind in (b"U", b"L"):
                await _recv_exactly(sock, n)
                entry["bytes_in"] += n
                if kind == b"L":
                    sender.put_control(_FRAME.pack(_MUX_MAGIC, b"A", stream, ACK_BYTES) + bytes(ACK_BYTES))
            else:
                raise ValueError(f"multiplexed protocol: unexpected frame {kind!r} from the client")
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


# What the server runs after a hello of this magic (sim.emu.transfers.serve_connection's ``others``).
SERVE = {_MUX_MAGIC: serve_multiplexed}


def _check(magic: bytes) -> None:
    if magic != _MUX_MAGIC:
        raise ValueError(f"multiplexed protocol: bad magic {magic!r}")
