"""Where shards, sweeps and plans run: an existing Dask scheduler, checked before it is trusted, or a LocalCluster.

Every wait has a deadline: a scheduler address is parsed first; a ``tcp://`` scheduler must greet as Dask does
(a small length-prefixed frame) within :data:`CONNECT_TIMEOUT_S`, so a web server, a silent listener or an
unroutable address is refused in seconds with a message rather than a hang or a failed 3 EiB allocation.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sim.errors import TestbedError


@contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None) -> Iterator[object]:
    """A Dask client: on an existing scheduler (``tcp://host:8786``) or an embedded LocalCluster.

    ``workers=0`` yields None: shards then run one after another in this process.

    Raises:
        TestbedError: If ``scheduler`` is not an address, nothing answers there as a Dask scheduler within
            :data:`CONNECT_TIMEOUT_S` (refused, unroutable, or another kind of server), or ``workers`` is negative
            or more than :data:`WORKERS_PER_CORE_MAX` per core.
    """
    if workers == 0 and not scheduler:
        yield None
        return
    if scheduler:
        client = _connect(scheduler)
        try:
            _check_workers(client, scheduler)
            yield client
        finally:
            client.close()
        return
    with _local_client(_worker_count(workers)) as client:
        yield client


CONNECT_TIMEOUT_S = 5.0  # to reach a scheduler and hear its greeting: a LAN or a tunnel answers well within it
GREETING_MAX_BYTES = 1 << 20  # a Dask greeting (handshake frame) is a few hundred bytes; other servers send text
WORKERS_PER_CORE_MAX = 4  # more processes than that only share the same cores, each with its own copy of the data


def _connect(scheduler: str):
    """A client of the scheduler at ``scheduler``, or a TestbedError saying why there is none."""
    from dask.distributed import Client
    protocol, host, port = _scheduler_address(scheduler)
    if protocol == "tcp":
        _check_greeting(scheduler, host, port)
    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except Exception as exc:  # noqa: BLE001 - whatever a wrong peer makes Dask raise, the fix is the address
        raise TestbedError(f"cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S:g} s "
                           f"({type(exc).__name__}: {exc}); check the address and that `dask scheduler` runs "
                           "there") from None


WORKERS_WAIT_S = 30.0  # for a scheduler's first worker: tasks sent to a scheduler without any would wait forever


def _check_workers(client, scheduler: str) -> None:
    """Refuse a scheduler with no worker (after :data:`WORKERS_WAIT_S`) or with workers of another testbed.

    Raises:
        TestbedError: If no worker joins in time, or a worker cannot import this package or runs another
            version of it (tasks would fail there, or compute something else).
    """
    try:
        client.wait_for_workers(1, timeout=WORKERS_WAIT_S)
    except TimeoutError:
        raise TestbedError(f"the Dask scheduler at {scheduler!r} has no workers (none joined within "
                           f"{WORKERS_WAIT_S:g} s); start some there: dask worker {scheduler}") from None
    try:
        found = client.run(_testbed_version)
    except Exception as exc:  # noqa: BLE001 - a worker that cannot even load this package
        raise TestbedError(f"the Dask workers of {scheduler!r} cannot load this testbed ({type(exc).__name__}: "
                           f"{exc}); install the same version there") from None
    ours = _testbed_version()
    other = {worker: version for worker, version in found.items() if version != ours}
    if other:
        worker, version = next(iter(other.items()))
        raise TestbedError(f"{len(other)} Dask worker(s) of {scheduler!r} run another testbed ({worker}: "
                           f"{version}; here: {ours}); install the same version on every worker")


def _testbed_version() -> str:
    """The version of this package and a digest of its source (two copies of one version may still differ)."""
    import hashlib
    from pathlib import Path

    import sim
    sha = hashlib.sha256()
    for path in sorted(Path(sim.__file__).parent.rglob("*.py")):
        sha.update(path.read_bytes())
    return f"{sim.__version__} ({sha.hexdigest()[:12]})"


def _scheduler_address(scheduler: str) -> tuple[str, str, int]:
    """``(protocol, host, port)`` of a scheduler address (``tcp://host:8786``; the protocol defaults to tcp).

    Addresses of other protocols (``inproc://``, ``ucx://``) are Dask's to check: ``(protocol, "", 0)``.

    Raises:
        TestbedError: If it is not such an address.
    """
    from distributed.comm.addressing import parse_address, parse_host_port
    try:
        protocol, location = parse_address(scheduler)
        if protocol not in ("tcp", "tls"):
            return protocol, "", 0
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise TestbedError(f"--scheduler {scheduler!r}: not a scheduler address ({exc}); give one like "
                           "tcp://host:8786") from None
    if not host or not 0 < int(port) < 65536:
        raise TestbedError(f"--scheduler {scheduler!r}: needs a host and a port from 1 to 65535, like "
                           "tcp://host:8786")
    return protocol, host, int(port)


def _check_greeting(scheduler: str, host: str, port: int) -> None:
    """Connect and read the greeting a Dask server sends first: an 8-byte length, then its handshake message.

    Only a peer that says a whole Dask handshake is handed to Dask (whose own client, fed anything else, can fail
    late, allocate what a garbled length asks, or leave a half-made client behind).

    Raises:
        TestbedError: If nothing accepts the connection, nothing is said within :data:`CONNECT_TIMEOUT_S`, or
            what is said is not a Dask handshake (a web server, another service).
    """
    import socket
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as conn:
            header = _receive(conn, 8, deadline)
            length_bytes = int.from_bytes(header, "little") if len(header) == 8 else 0
            frame = _receive(conn, length_bytes, deadline) if 0 < length_bytes <= GREETING_MAX_BYTES else b""
    except TimeoutError:
        raise TestbedError(f"the Dask scheduler at {scheduler!r} did not answer within {CONNECT_TIMEOUT_S:g} s "
                           "(an unroutable address, a firewall, or not a Dask scheduler); check the address") from None
    except OSError as exc:
        raise TestbedError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc.strerror or exc}; check the "
                           "address and that `dask scheduler` runs there") from None
    if not _is_handshake(frame):
        raise TestbedError(f"{scheduler!r} answers, but not as a Dask scheduler (no Dask greeting); check the "
                           "address and port (a scheduler listens on 8786 by default)")


def _receive(conn, size_bytes: int, deadline: float) -> bytes:
    """Up to ``size_bytes`` from ``conn`` (fewer if it closes), before ``deadline`` (monotonic s)."""
    data = b""
    while len(data) < size_bytes:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = conn.recv(size_bytes - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _is_handshake(frame: bytes) -> bool:
    """True when ``frame`` is a Dask handshake message (a mapping that names its pickle protocol)."""
    from distributed.protocol.core import loads
    from distributed.protocol.utils import unpack_frames
    try:
        frames, _ = unpack_frames(frame, partial=True)
        message = loads(frames, deserialize=False)
    except Exception:  # noqa: BLE001 - whatever it is, it is not a Dask handshake
        return False
    return isinstance(message, dict) and "pickle-protocol" in message


def _worker_count(workers: int | None) -> int:
    """The embedded cluster's worker processes: ``workers``, or one per core.

    Raises:
        TestbedError: If ``workers`` is negative or more than :data:`WORKERS_PER_CORE_MAX` per core.
    """
    cores = max(1, os.cpu_count() or 1)
    if workers is None:
        return cores
    if workers < 0 or workers > WORKERS_PER_CORE_MAX * cores:
        raise TestbedError(f"--workers {workers}: give 0 (everything in this process) to "
                           f"{WORKERS_PER_CORE_MAX * cores} ({WORKERS_PER_CORE_MAX} per core of this machine)")
    return workers


# Dask settings the embedded cluster's nannies give the workers they start (and start again, after a worker dies),
# over this process's. Dask's statistical profiler samples a worker's stack every 10 ms (taking the interpreter's lock
# from the task) for a dashboard no run shows; whole `england` runs with and without it differ by less than the
# machine's own spread (benchmarks/README.md, 2026-12-04), so this only spares work nothing reads.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
# What the nannies read when they are made (so for every worker they start): glibc's own allocator settings rather
# than Dask's ``MALLOC_TRIM_THRESHOLD_=65536``, which hands freed memory back to the kernel at once (and pins the
# mmap threshold at 128 KiB), so a shard's arrays are faulted in afresh each time: 7.8 times the page faults and
# 14% more CPU on 23 of england's shards (benchmarks/README.md, 2026-12-04).
NANNY_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@contextmanager
def _local_client(workers: int) -> Iterator[object]:
    """A client of a new LocalCluster of ``workers`` processes, closed with it.

    Its worker processes never take a Ctrl-C (the command's process stops the run and closes the cluster): they are
    started by an event loop of :func:`_loop_deaf_to_sigint`, so each is born with SIGINT blocked, and the
    :func:`_ignore_interrupts` plugin then ignores it for good. A Ctrl-C while the cluster starts is held until it
    is up (:func:`_interrupts_held`), then stops the run as one at any later moment does, closing the cluster; and
    the closing is never cut short by another (:func:`_close`).
    """
    import dask
    from dask.distributed import Client, LocalCluster
    with _loop_deaf_to_sigint() as loop, _interrupts_held() as release:
        try:
            # Dask's HTTP server always starts; on a free local port, two runs never compete for its default 8787.
            # Its own log stays quiet (its errors at shutdown are about tasks the run no longer wants): what goes
            # wrong in a task reaches the run as that task's exception (``map_ordered``), and a dead worker as
            # KilledWorker.
            with dask.config.set(NANNY_CONFIG):
                local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, loop=loop,
                                     dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                                     config=WORKER_CONFIG)
        except Exception as exc:  # noqa: BLE001 - a cluster that cannot start is the machine's limit, not a bug
            release()  # (an interrupt held meanwhile comes first: the user asked to stop)
            raise TestbedError(f"could not start {workers} local Dask workers ({type(exc).__name__}: {exc}); try "
                               "fewer --workers, or --workers 0") from None
        client = None
        try:
            release()
            client = Client(local)
            client.register_plugin(_ignore_interrupts(), name="testbed-ignore-interrupts")
            yield client
        except BaseException:
            _close(client, local, stopping=True)
            raise
        _close(client, local, stopping=False)


def _close(client, local, stopping: bool) -> None:
    """Close ``client`` (if any) and the LocalCluster ``local``, holding interrupts until both are closed.

    Closing waits for the tasks the workers are running (seconds), and Ctrl-C is often pressed again meanwhile: cut
    short, the closing would leave a cluster that Dask's own exit handler then fails to close, printing a
    traceback. An interrupt meanwhile is held (:func:`_interrupts_held`; at once after
    :data:`INTERRUPT_HOLD_MAX_S`: a closing that hangs can still be stopped). When the run is already ``stopping``
    (an interrupt or an error is on its way out) it is dropped: that is what it asked for; else it is raised once
    both are closed, and stops the run there.
    """
    with _interrupts_held() as release:
        if client is not None:
            client.close()
        local.close()
        release(deliver=not stopping)


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)  # what stops a run (the CLI makes SIGTERM a KeyboardInterrupt too)
INTERRUPT_HOLD_MAX_S = 10.0  # a cluster starts in a second or two; an interrupt after this long held acts at once


@contextmanager
def _interrupts_held() -> Iterator[object]:
    """Hold an interrupt (SIGINT, or SIGTERM if it has a Python handler) until ``release()``, which then raises it.

    Dask's LocalCluster, interrupted while it starts, leaves a cluster that nothing can close: its own atexit
    handler then fails on it, printing a traceback. An interrupt then is noted instead and, at ``release()`` (once
    the cluster is up and will be closed), handed to the handler it was meant for: the command stops as it does at
    any other moment, a second or two later. Another interrupt is held too (Ctrl-C is often pressed twice), unless
    the first has waited :data:`INTERRUPT_HOLD_MAX_S`: a start that hangs can still be stopped, at once. Outside
    the main thread (where no handler runs) nothing is held.

    Yields:
        ``release(deliver=True)``: restore the handlers, and call the held one (which raises KeyboardInterrupt) if a
        signal came and ``deliver``; with ``deliver`` False a signal held is dropped.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda deliver=True: None
        return
    handlers = {signum: signal.getsignal(signum) for signum in INTERRUPTS}
    handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}
    held: dict[int, float] = {}  # each signal held: when it first came (monotonic s)

    def hold(signum: int, frame: object) -> None:
        if held and time.monotonic() - min(held.values()) > INTERRUPT_HOLD_MAX_S:
            handlers[signum](signum, frame)
        held.setdefault(signum, time.monotonic())

    def release(deliver: bool = True) -> None:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if held:
            signum = min(held, key=held.get)
            held.clear()
            if deliver:
                handlers[signum](signum, None)

    for signum in handlers:
        signal.signal(signum, hold)
    try:
        yield release
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@contextmanager
def _loop_deaf_to_sigint() -> Iterator[object]:
    """A running Dask event loop (a Tornado IOLoop) whose thread, and every thread it starts, blocks SIGINT.

    A Ctrl-C reaches the terminal's whole process group, worker processes still starting up too: one that had
    Python's KeyboardInterrupt handler by then died printing a traceback. A signal mask, unlike a handler, is kept
    by a thread's new threads and across fork and exec, so the workers this loop spawns (a Nanny's process-start
    thread; restarted workers too) are born with SIGINT blocked: a Ctrl-C then stays pending in them, never
    delivered (the :func:`_ignore_interrupts` plugin discards it once the worker is up). This is how CPython itself
    starts its resource tracker (bpo-33613).

    The command's own process never goes deaf: only this loop's thread blocks SIGINT for good; the main thread
    blocks it just while that thread starts (milliseconds), and a Ctrl-C meanwhile is held, not lost: it is
    delivered when the mask is restored and stops the command there, as one at any other moment does. The
    resource tracker (a helper process of multiprocessing, started by a worker's first queue) is started here
    first, because starting it unblocks SIGINT in the thread that does so, which would otherwise be this loop's.
    """
    from multiprocessing import resource_tracker

    from distributed.utils import LoopRunner
    resource_tracker.ensure_running()
    runner = LoopRunner()
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            runner.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        yield runner.loop
    finally:
        runner.stop()


def _ignore_interrupts():
    """A Dask worker plugin (:class:`IgnoreInterrupts`), its class made when a cluster starts (Dask imported)."""
    from distributed import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        """A Dask worker plugin: the embedded cluster's worker processes ignore SIGINT.

        A Ctrl-C reaches the terminal's whole process group: the command's process stops the run and closes the
        cluster, so its workers must not take the signal too (each would die printing a KeyboardInterrupt traceback).
        They are born with SIGINT blocked (:func:`_loop_deaf_to_sigint`); this, set on every worker as it starts (a
        restarted one too), ignores it: a Ctrl-C held pending since start-up is dropped, and one after stays
        harmless even if something in the worker unblocks SIGINT (as multiprocessing does when it starts a
        resource tracker there).
        """

        def setup(self, worker) -> None:
            """Ignore SIGINT in this worker's process (its event loop runs in the process's main thread)."""
            import signal
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupts()
