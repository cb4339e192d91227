"""Link utilisation of an emulated run, measured: bytes sent by each access link's shaped interface per bin.

Every ``bin_s`` the sampler reads ``/proc/net/dev`` inside each node that shapes an access link (one read per node:
``/proc/net`` shows the reading process's own network namespace) and turns the growth of the shaped interface's
transmitted bytes into a share of the configured rate. HTB counts the same frame bytes, so a link kept busy by
its shaper reads about 1.0. The rows have the simulator's link columns (``sim.records.LINK_COLUMNS``).
"""

from __future__ import annotations

import pandas as pd

from sim.records import LINK_COLUMNS, conform


def parse_proc_net_dev(text: str) -> dict[str, int]:
    """Interface name -> transmitted bytes, from the text of ``/proc/net/dev``."""
    out = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        name, counters = line.split(":", 1)
        fields = counters.split()
        if len(fields) >= 9 and fields[8].isdigit():
            out[name.strip()] = int(fields[8])  # receive has 8 fields; transmit bytes come next
    return out


class Sampler:
    """Samples the access links' transmitted bytes at bin boundaries; :meth:`frame` gives the link table.

    Args:
        emu: The running :class:`sim.emu.net.EmuNet`.
        bin_s: Bin length (s).
        window_start_s: The replay's start on the trace clock (s since midnight), matching the epoch.
    """

    def __init__(self, emu, bin_s: float, window_start_s: float) -> None:
        self.emu, self.bin_s, self.window_start_s = emu, bin_s, window_start_s
        self.links = []  # (site, direction, node, interface, rate_bps)
        for link in emu.plan.links:
            if link.name.startswith("access:") and link.site:
                devices = emu.devices(link)
                for direction in ("up", "down"):
                    rate_bps = getattr(link, direction).rate_bps
                    if rate_bps:
                        node, intf = devices[direction]
                        self.links.append((link.site, direction, node, intf, rate_bps))
        self.last: dict[tuple[str, str], int] | None = None
        self.last_s = 0.0
        self.bins = 0
        self.rows: list[tuple] = []

    def sample(self, now_s: float) -> None:
        """Read the counters at wall-clock ``now_s``; the first call is the baseline, each later one closes a bin.

        A bin's utilisation divides by the time really elapsed since the last sample (a sample may come late).
        """
        counters = {}
        for node in {entry[2] for entry in self.links}:
            for intf, sent in parse_proc_net_dev(self.emu.node(node).cmd("cat /proc/net/dev")).items():
                counters[(node, intf)] = sent
        if self.last is not None:
            start_s = self.window_start_s + self.bins * self.bin_s
            elapsed_s = max(now_s - self.last_s, 1e-3)
            for site, direction, node, intf, rate_bps in self.links:
                sent_bytes = counters.get((node, intf), 0) - self.last.get((node, intf), 0)
                self.rows.append((site, direction, rate_bps, start_s, sent_bytes * 8 / (rate_bps * elapsed_s)))
            self.bins += 1
        self.last, self.last_s = counters, now_s

    def frame(self) -> pd.DataFrame:
        """The sampled bins as a link table (``engine = "emu"``)."""
        frame = pd.DataFrame(self.rows, columns=["site", "direction", "capacity_bps", "bin_start_s", "utilisation"])
        frame.insert(0, "engine", "emu")
        frame.insert(1, "link", frame["site"] + "/" + frame["direction"])
        frame.insert(3, "kind", "access")
        frame["bin_s"] = self.bin_s
        return conform(frame, LINK_COLUMNS)
