"""Progress that only moves forward, and as plain lines where no terminal shows a bar (a CI log).

Long studies know their total only roughly (a plan does not know how many products it will try until it has
searched): their estimates may grow. :class:`Forward` passes on ``(done, total)`` with the total trimmed so that
neither the count done nor the share done ever goes back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LINE_EVERY_S = 10.0  # a progress line at most this often (and at the start and the end), when not on a terminal


class Forward:
    """``progress(done, total)`` that only moves forward; optionally writes a line now and then.

    Args:
        target: Called with ``(done, total)``, never with a smaller ``done`` or ``done / total`` than before.
        label: What the lines say is in progress (e.g. "planning ci-smoke.yaml").
        write: Where lines go (None: no lines; e.g. stderr when it is not a terminal).
        clock: Seconds, monotonic (a test passes its own).
        every_s: The least time between two lines, except the last.
    """

    def __init__(self, target: Callable[[float, float], None] | None = None, label: str = "",
                 write: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 every_s: float = LINE_EVERY_S) -> None:
        self.target, self.label, self.write, self.clock, self.every_s = target, label, write, clock, every_s
        self.done, self.share, self.total = 0.0, 0.0, 0.0
        self.started = clock()
        self.last_line: float | None = None
        self.ended = False  # the line at 100% was written
        self.lock = threading.Lock()

    def __call__(self, done: float, total: float) -> None:
        """Pass on progress, trimming the total so that neither ``done`` nor ``done / total`` goes back."""
        self.done, self.total = max(self.done, float(done)), float(total)
        share = min(1.0, self.done / total) if total > 0 else 1.0
        self.share = max(self.share, share)
        shown_total = self.done / self.share if self.share > 0 else float(total)
        if self.target:
            self.target(self.done, shown_total)
        if self.write:
            self._line(shown_total)

    def tick(self) -> None:
        """Write a line if none was written for ``every_s`` (a heartbeat while a long job runs)."""
        if self.write and not self.ended and self.last_line is not None:
            self._line(self.done / self.share if self.share > 0 else self.total)

    def _line(self, total: float) -> None:
        with self.lock:  # the heartbeat's thread and the caller's may both get here
            self._line_unlocked(total)

    def _line_unlocked(self, total: float) -> None:
        now = self.clock()
        final = self.share >= 1.0
        if self.ended or (self.last_line is not None and now - self.last_line < self.every_s and not final):
            return
        self.last_line, self.ended = now, final
        elapsed_s = now - self.started
        left = (f", about {_clock(elapsed_s * (1 - self.share) / self.share)} left"
                if 0 < self.share < 1 and elapsed_s > 0 else "")
        self.write(f"{self.label}: {self.share:.0%} ({self.done:,.0f} of {total:,.0f}), "
                   f"{_clock(elapsed_s)} elapsed{left}")


def _clock(seconds: float) -> str:
    """h:mm:ss."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@contextmanager
def heartbeat(forward: Forward, every_s: float = 1.0) -> Iterator[None]:
    """Call ``forward.tick()`` every ``every_s`` seconds on a daemon thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            forward.tick()

    thread = threading.Thread(target=beat, name="progress-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
