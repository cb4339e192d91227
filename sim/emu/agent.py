"""The traffic agent: one process per emulated host, replaying its share of a trace over real TCP and UDP.

``python -m sim.emu.agent --spec SPEC.json --out RESULT.json`` runs inside a Mininet host. The spec (made by
:func:`sim.emu.traffic.specs`) lists the host's transfers (it is their client), its video calls (it is one end of
each) and whether it serves transfers. The agent waits for each session's wall-clock start, runs and measures it, and
writes one result JSON when its work is done, at the spec's stop time, or on SIGTERM/SIGINT, whichever comes first
(sessions still running are reported with ``completed: false``). It and its modules import the standard library
only, so it starts in a fraction of a second, and it starts no processes.

The sessions are in :mod:`sim.emu.transfers` (TCP transfers, client and server) and :mod:`sim.emu.call` (video calls
over UDP; their rate control in :mod:`sim.emu.media`), on the clocks of :mod:`sim.emu.clock`; this module runs them:
the :class:`Agent`, its result and ``main``.
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
import sys
import time
from pathlib import Path

from sim.emu.call import Call
from sim.emu.clock import sleep_until, trace_s
from sim.emu.multiplex import MULTIPLEXED, SERVE, MuxConnection
from sim.emu.transfers import ABORTS, run_transfer, serve_connection, set_tcp_options, tcp_socket

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STOP_GRACE_S = 0.5            # how long stopping waits for cancelled sessions to unwind


class Agent:
    """Runs one host's sessions, and serves transfers if its spec says so, until done, the stop time or a signal."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.window = {"epoch_s": spec["epoch_s"], "window_start_s": spec["window_start_s"]}
        self.errors: list[str] = []
        self.transfers = [_transfer_entry(t, self.window) for t in spec["transfers"]]
        self.calls = [Call(c) for c in spec["calls"]]
        self.served: list[dict] = []
        self.muxes: dict[tuple, MuxConnection] = {}  # the host's multiplexed connections by app and direction
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
            work = [asyncio.create_task(self._guard(self._transfer(t, entry), entry))
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
            for mux in self.muxes.values():
                mux.close()

    def _transfer(self, spec: dict, entry: dict):
        """A transfer's coroutine: on its own connection, or as a stream of its app's multiplexed one."""
        congestion_control = self.spec["congestion_control"]
        if spec.get("connection") not in MULTIPLEXED:
            return run_transfer(spec, congestion_control, entry)
        key = (spec["app"], spec["direction"])
        if key not in self.muxes:
            self.muxes[key] = MuxConnection(congestion_control, spec["direction"])
        return self.muxes[key].stream(spec, entry)

    def _signalled(self, stop: asyncio.Event, signum: int) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"
        stop.set()

    async def _wait(self, stop: asyncio.Event, work: list) -> None:
        """Wait for the first of: ``stop`` set, the stop time, the parent gone, all ``work`` done (if not serving)."""
        waiters = {asyncio.create_task(stop.wait()): None,
                   asyncio.create_task(sleep_until(self.spec["stop_at_s"])): "stop time",
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
        except ABORTS as exc:
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
                task = asyncio.create_task(self._guard(serve_connection(sock, self.served, SERVE),
                                                       {"session_id": "server"}))
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
            transfers.append(fields | {"end_s": trace_s(self.window, entry.get("end_at_s"))})
        return {"format": FORMAT_VERSION, "host": self.spec["host"], **self.window,
                "congestion_control": self.spec["congestion_control"], "ready_at_s": self.ready_at_s,
                "stopped_at_s": self.stopped_at_s, "reason": self.reason, "errors": self.errors,
                "transfers": transfers, "calls": [call.result(self.window) for call in self.calls],
                "served": self.served}


def _transfer_entry(spec: dict, window: dict) -> dict:
    return {"session_id": spec["session_id"], "direction": spec["direction"], "size_bytes": spec["size_bytes"],
            "connection": spec.get("connection", "new"), "completed": False,
            "start_s": trace_s(window, spec["start_at_s"]), "late_s": None,
            "duration_s": None, "setup_s": None, "first_data_s": None, "delivered_bytes": 0, "rounds": 0,
            "rtt_s": None, "min_rtt_s": None,
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
