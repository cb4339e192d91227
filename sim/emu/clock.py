"""The traffic agent's two clocks: the wall clock its sessions run on, and the trace's clock its results are on.

Every emulated host shares one wall clock (Unix time, s). A spec's ``epoch_s`` on that clock is its
``window_start_s`` on the trace's (s since midnight). Part of the traffic agent (:mod:`sim.emu.agent`): it imports
the standard library only.
"""

from __future__ import annotations

import asyncio
import time


async def sleep_until(at_s: float) -> None:
    """Sleep until the wall-clock time ``at_s`` (Unix, s); return at once if it has passed."""
    delay_s = at_s - time.time()
    if delay_s > 0:
        await asyncio.sleep(delay_s)


def trace_s(window: dict, wall_s: float | None) -> float | None:
    """A wall-clock time (Unix, s) on the trace's clock (s since midnight)."""
    return None if wall_s is None else window["window_start_s"] + (wall_s - window["epoch_s"])
