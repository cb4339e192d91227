"""The stall probe: how late one CPU wakes a task that nothing else on the machine outranks.

One probe per CPU, pinned to it and scheduled ``SCHED_FIFO`` one priority above the delay shims, asks to wake
every ``--period`` (2 ms) and counts how late each wake-up came, in the buckets of the shims' lateness histogram::

    python -I -S stall.py --cpu 0 --realtime 11 --state /run/x/tb1a2b.stall0.json

A shim that releases late has either been kept from its CPU by other work, or had no CPU at all. The probe tells
the two apart: no task of the machine's outranks it and it takes a few microseconds a wake-up, so it is late by
milliseconds only when the CPU itself was taken away (a virtual machine's vCPU descheduled by its hypervisor, or
the kernel busy with interrupts). :mod:`sim.emu.health` reports its largest lateness per interval beside the
shims' and names a stalled machine as the likely cause of late releases it coincides with.

The state file (JSON, rewritten about once a second and on exit) holds the CPU, the histogram's edges, the
cumulative counts of wake-ups per bucket (the last bucket is everything later than 1 s) and the largest lateness
(s). The probe ends on SIGTERM or SIGINT, or by itself when the process that started it has gone. Like
:mod:`sim.emu.shim` it imports nothing from the testbed (it is run by file path, small and fast to start).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import sys
import time

STATE_INTERVAL_S = 1.0
# Upper edges (s) of the lateness buckets: the shims' (sim.emu.shim, sim.emu.health); a test pins them equal.
LATENESS_EDGES_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.010, 0.020, 0.050, 0.100, 0.200, 0.500, 1.0)


class Probe:
    """Counts how late each periodic wake-up of one CPU comes (s, in ``LATENESS_EDGES_S`` buckets)."""

    def __init__(self, cpu: int, period_s: float, state_path: str | None) -> None:
        self.cpu = cpu
        self.period_s = period_s
        self.state_path = state_path
        self.counts = [0] * (len(LATENESS_EDGES_S) + 1)
        self.max_s = 0.0
        self.stopping = False
        self.parent_pid = os.getppid()

    def note(self, lateness_s: float) -> None:
        """Count one wake-up that came ``lateness_s`` seconds after it was due."""
        self.counts[bisect.bisect_left(LATENESS_EDGES_S, lateness_s)] += 1
        self.max_s = max(self.max_s, lateness_s)

    def run(self) -> None:
        """Wake every ``period_s`` until stopped (or orphaned), counting each wake-up's lateness."""
        due_s = time.monotonic()
        next_state_s = 0.0
        while not self.stopping:
            due_s += self.period_s
            wait_s = due_s - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            now_s = time.monotonic()
            self.note(max(0.0, now_s - due_s))
            if now_s - due_s > self.period_s:  # a stall: start the schedule again rather than wake at once in a burst
                due_s = now_s
            if now_s >= next_state_s:
                self.write_state()
                next_state_s = now_s + STATE_INTERVAL_S
                self.stopping = self.stopping or os.getppid() != self.parent_pid
        self.write_state()

    def stop(self, *_args) -> None:
        """Ask the loop to finish (signal handler)."""
        self.stopping = True

    def state(self) -> dict:
        """The counts so far (``wall_s`` is when, Unix s)."""
        return {"cpu": self.cpu, "pid": os.getpid(), "period_s": self.period_s, "wall_s": time.time(),
                "lateness_edges_s": list(LATENESS_EDGES_S), "lateness_counts": list(self.counts),
                "lateness_max_s": self.max_s}

    def write_state(self) -> None:
        """Write :meth:`state` atomically to the state file, if there is one."""
        if not self.state_path:
            return
        tmp = f"{self.state_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.state(), handle)
        os.replace(tmp, self.state_path)


def main(argv: list[str] | None = None) -> int:
    """Run a probe from the command line; exit status 0 on a clean stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, required=True, help="the CPU to pin the probe to")
    parser.add_argument("--period", type=float, default=0.002, help="seconds between wake-ups (default 0.002)")
    parser.add_argument("--realtime", type=int, default=0, help="SCHED_FIFO priority (1-99); 0 keeps normal")
    parser.add_argument("--state", help="JSON state file, rewritten about once a second")
    args = parser.parse_args(argv)
    probe = Probe(args.cpu, args.period, args.state)
    os.sched_setaffinity(0, {args.cpu})
    if args.realtime:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.realtime))
    signal.signal(signal.SIGTERM, probe.stop)
    signal.signal(signal.SIGINT, probe.stop)
    probe.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
