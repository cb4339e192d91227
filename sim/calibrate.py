"""Calibration cases on one link: a hand-made trace replayed over real packets (and, for the suite, the simulator).

:func:`emulate` builds a small emulated network of a hand-built topology, verifies it, replays a trace (in the
trace schema, :data:`sim.workload.TRACE_COLUMNS`, ``start_s`` from 0) with the traffic agents, samples the shaped
queues' backlog while it runs, judges the links' health (:mod:`sim.emu.health`) and returns records in the shared
schema with the agents' raw results. The real-packet QoS test (``tests/test_emu_qos.py``) and the queue benchmark
(``benchmarks/test_emu_queues.py``) use it; the calibration suite builds on it.

Needs root and Mininet for :func:`emulate` (the rest is pure).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sim.emu import engine as emu_engine
from sim.emu import health, net, traffic, window
from sim.emu.linkplan import FRAME_BYTES, EmuSettings
from sim.emu.utilisation import Sampler
from sim.topology import SITE_COLUMNS, FarEnd, Topology
from sim.workload import TRACE_COLUMNS

log = logging.getLogger(__name__)

BACKLOG_SAMPLE_S = 0.2  # the shaped queues' backlog is read this often during a replay (s)
NEAR_HOME = FarEnd(100e6, 100e6, 0.0)  # a far end that limits no call (100 Mbit/s, no delay): the site link alone


def one_site(rate_up_bps: float, rate_down_bps: float, rtt_s: float, buffer_bytes: float, *, qos: str = "fifo",
             name: str = "cal", loss: float = 0.0) -> Topology:
    """Build a topology of one site on one access link (rates bit/s, RTT s, buffer bytes).

    Its far end limits nothing and there is no core delay.
    """
    row = {"site": name, "site_class": "calibration", "family": "gp_practice", "access_profile": "calibration",
           "technology": "calibration", "medium": "copper", "distance_m": math.nan, "down_bps": rate_down_bps,
           "up_bps": rate_up_bps, "rtt_s": rtt_s, "buffer_bytes": buffer_bytes, "loss": loss, "jitter_s": 0.0,
           "aggregation": "", "qos": qos}
    return Topology(pd.DataFrame([row], columns=list(SITE_COLUMNS)), {}, 0.0, NEAR_HOME)


_NO_FAR_LINE = {"far_profile": "", "far_down_bps": math.nan, "far_up_bps": math.nan, "far_rtt_s": math.nan}


def transfer(start_s: float, size_bytes: float, direction: str = "up", *, site: str = "cal",
             app: str = "software_update") -> dict:
    """A TCP transfer session of ``size_bytes`` (bytes) starting at ``start_s`` (s): one trace row."""
    return {"site": site, "app": app, "traffic": "transfer", "kind": app, "direction": direction,
            "urgency": "routine", "start_s": start_s, "duration_s": math.nan, "size_bytes": size_bytes,
            "chunk_bytes": math.nan, "target_rate_bps": math.nan, "min_rate_bps": math.nan,
            "packet_bytes": math.nan, "up_share": 1.0, "far_end": "cloud", **_NO_FAR_LINE}


def call(start_s: float, duration_s: float, target_bps: float, min_bps: float, packet_bytes: float, *,
         site: str = "cal", app: str = "telephony", far_end: str = "home") -> dict:
    """Build a two-way call's trace row: between ``target_bps`` and ``min_bps`` (bit/s each way).

    Equal rates make a fixed-rate codec; ``packet_bytes`` of UDP payload; from ``start_s`` for ``duration_s`` (s).
    """
    return {"site": site, "app": app, "traffic": "stream", "kind": app, "direction": "both", "urgency": "routine",
            "start_s": start_s, "duration_s": duration_s, "size_bytes": math.nan, "chunk_bytes": math.nan,
            "target_rate_bps": target_bps, "min_rate_bps": min_bps, "packet_bytes": packet_bytes,
            "up_share": 1.0, "far_end": far_end, **_NO_FAR_LINE}


def trace(*sessions: dict) -> pd.DataFrame:
    """A trace of ``sessions`` in the trace schema, numbered in start order."""
    frame = pd.DataFrame(list(sessions)).sort_values("start_s", kind="stable").reset_index(drop=True)
    frame["session_id"] = range(len(frame))
    return frame[list(TRACE_COLUMNS)].astype(TRACE_COLUMNS)


@dataclass
class Replayed:
    """What one emulated replay gave.

    Attributes:
        records: One row per session (:data:`sim.records.RECORD_COLUMNS`).
        results: Each host's agent result (see :mod:`sim.emu.agent`), by host name.
        backlog: Per ``(link, direction)``, samples ``(t_s from the window start, backlog bytes, backlog
            packets)`` of the shaped queue (all its classes together).
        queue_pkts: Per ``(link, direction)``, the configured drop-tail queue (packets, each class).
        held: False when the links' health checks failed in some interval (``why`` says which).
        why: The health refusal message, or "".
        cpu: The machine's CPU figures per interval (busy share, pressure share).
    """

    records: pd.DataFrame
    results: dict
    backlog: dict = field(default_factory=dict)
    queue_pkts: dict = field(default_factory=dict)
    held: bool = True
    why: str = ""
    cpu: list = field(default_factory=list)

    def call_direction(self, session_id: int, direction: str) -> dict | None:
        """One direction of a call as its receiver measured it (rates bit/s, delays s), or None.

        ``up`` is site -> far end, ``down`` the other way.
        """
        receiver_role = "home" if direction == "up" else "site"
        for result in self.results.values():
            for call in result.get("calls", []):
                if call["session_id"] == session_id and call["role"] == receiver_role:
                    return call.get("received")
        return None

    def sender(self, session_id: int, role: str) -> dict | None:
        """The call end ``role`` (``site`` or ``home``) of ``session_id``: what it sent, or None."""
        for result in self.results.values():
            for call in result.get("calls", []):
                if call["session_id"] == session_id and call["role"] == role:
                    return call
        return None

    def mean_backlog(self, link: str, direction: str, after_s: float = 0.0) -> tuple[float, float]:
        """Mean backlog (bytes, packets) of a shaped queue over the samples taken ``after_s`` into the window."""
        samples = [s for s in self.backlog.get((link, direction), []) if s[0] >= after_s]
        if not samples:
            return math.nan, math.nan
        return (sum(s[1] for s in samples) / len(samples), sum(s[2] for s in samples) / len(samples))


def emulate(topo: Topology, trace: pd.DataFrame, duration_s: float, work_dir: Path, *, drain_s: float = 2.0,
            congestion_control: str = "cubic", measure_links: bool = True, seed: int = 1) -> Replayed:
    """Replay ``trace`` (start times in s from 0) over an emulated network of every site of ``topo``.

    Args:
        topo: The sites (rates bit/s, delays s, buffers bytes, ``qos``).
        trace: Sessions in the trace schema, ``start_s`` within [0, ``duration_s``).
        duration_s: The replayed window (s); agents stop ``drain_s`` after it.
        work_dir: Where the agents' specs, logs and results are kept.
        drain_s: Time after the window before every agent stops (s).
        congestion_control: TCP congestion control of every transfer.
        measure_links: Also probe each path's RTT and rate before the replay (else check the configuration only).
        seed: Seed of the delay shims' jitter.

    Raises:
        EngineError: A link not as configured, or an agent that failed.
        CapabilityError: The machine cannot emulate.
    """
    from sim.emu import probe

    sites = tuple(topo.sites["site"])
    chosen = window.Slice(sites, 0.0, float(duration_s), float(drain_s), trace)
    settings = EmuSettings(congestion_control=congestion_control, seed=seed)
    emu = net.build(topo, list(sites), net.new_prefix(), settings, offered_bps=emu_engine.offered_bps(chosen, topo))
    work_dir.mkdir(parents=True, exist_ok=True)
    with emu:
        net.verify(emu, probe.Tolerance(measure=measure_links))
        sampler = Sampler(emu, min(10.0, max(1.0, duration_s / 4)), 0.0)
        backlog = _BacklogSampler(emu)
        backlog.start()
        try:
            results = emu_engine._replay(emu, chosen, congestion_control, work_dir, None, sampler)
        finally:
            backlog.stop()
        epoch_s = next(iter(results.values()))["epoch_s"]
        queues = {(link.name, d): getattr(link, d).queue_pkts for link in emu.plan.links for d in ("up", "down")
                  if getattr(link, d).rate_bps}
    records = emu_engine._records(chosen, topo, traffic.records(chosen.trace, results))
    out = Replayed(records, results, backlog.relative(epoch_s), queues)
    try:
        held = emu_engine.judge_health(sampler, chosen, topo, health.Thresholds())
        out.held, out.why = not held.refused and held.meta["failed"] == 0, held.meta["why"]
        out.cpu = [(r["measured"]) for r in held.meta["rows"] if r["check"] == "cpu_starved"]
    except health.HealthError as exc:
        out.held, out.why = False, str(exc)
    return out


class _BacklogSampler:
    """Reads every shaped interface's backlog (``tc -s qdisc``) every ``BACKLOG_SAMPLE_S`` in a thread."""

    def __init__(self, emu) -> None:
        self.emu, self.samples, self._stop = emu, {}, threading.Event()
        self.where = []
        for link in emu.plan.links:
            for d in ("up", "down"):
                if getattr(link, d).rate_bps and link.kind == "access":
                    self.where.append((link.name, d, *emu.devices(link)[d]))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(BACKLOG_SAMPLE_S):
            for link, d, node, intf in self.where:
                try:
                    out, _, _ = self.emu.node(node).pexec(["tc", "-s", "qdisc", "show"])  # lines name the dev
                except Exception:  # noqa: BLE001 -- the network is being torn down
                    return
                found = health.parse_tc_qdiscs(out).get(intf)
                if found:
                    self.samples.setdefault((link, d), []).append(
                        (time.time(), found["backlog_bytes"], found["backlog_pkts"]))

    def relative(self, epoch_s: float) -> dict:
        return {key: [(t - epoch_s, b, p) for t, b, p in rows] for key, rows in self.samples.items()}


def buffer_frame_bytes(queue_pkts: int) -> float:
    """What a full drop-tail queue of ``queue_pkts`` full-size packets holds, as HTB counts it (bytes)."""
    return queue_pkts * FRAME_BYTES
