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
from sim.emu import health, net, playback, window
from sim.emu.linkplan import FRAME_BYTES, EmuSettings
from sim.emu.utilisation import Sampler
from sim.topology import SITE_COLUMNS, FarEnd, Topology
from sim.workload import TRACE_COLUMNS

log = logging.getLogger(__name__)

BACKLOG_SAMPLE_S = 0.2  # the shaped queues' backlog is read this often during a replay (s)
NEAR_HOME = FarEnd(100e6, 100e6, 0.0)  # a far end that limits no call (100 Mbit/s, no delay): the site link alone


def one_site(rate_up_bps: float, rate_down_bps: float, rtt_s: float, buffer_bytes: float, *, qos: str = "fifo",
             name: str = "cal", loss: float = 0.0, buffer_down_bytes: float | None = None) -> Topology:
    """Build a topology of one site on one access link (rates bit/s, RTT s, buffer bytes).

    ``buffer_bytes`` is the queue each way, unless ``buffer_down_bytes`` gives the downstream its own. Its far end
    limits nothing and there is no core delay.
    """
    row = {"site": name, "site_class": "calibration", "family": "gp_practice", "access_profile": "calibration",
           "technology": "calibration", "medium": "copper", "distance_m": math.nan, "down_bps": rate_down_bps,
           "up_bps": rate_up_bps, "rtt_s": rtt_s, "buffer_up_bytes": buffer_bytes,
           "buffer_down_bytes": buffer_bytes if buffer_down_bytes is None else buffer_down_bytes,
           "loss": loss, "jitter_s": 0.0,
           "aggregation": "", "qos": qos}
    return Topology(pd.DataFrame([row], columns=list(SITE_COLUMNS)), {}, 0.0, NEAR_HOME)


_NO_FAR_LINE = {"far_profile": "", "far_down_bps": math.nan, "far_up_bps": math.nan, "far_rtt_s": math.nan}


def transfer(start_s: float, size_bytes: float, direction: str = "up", *, site: str = "cal",
             app: str = "software_update", connection: str = "new") -> dict:
    """A TCP transfer session of ``size_bytes`` (bytes) starting at ``start_s`` (s): one trace row.

    ``connection`` is ``new`` (TCP and TLS handshakes first), ``reused`` (a kept-alive connection), or a multiplexed
    app's ``multiplexed-new`` or ``multiplexed-reused`` (:mod:`sim.des.connections`).
    """
    return {"site": site, "app": app, "traffic": "transfer", "kind": app, "direction": direction,
            "urgency": "routine", "start_s": start_s, "duration_s": math.nan, "size_bytes": size_bytes,
            "chunk_bytes": math.nan, "connection": connection, "target_rate_bps": math.nan, "min_rate_bps": math.nan,
            "packet_bytes": math.nan, "up_share": 1.0, "far_end": "cloud", **_NO_FAR_LINE}


def call(start_s: float, duration_s: float, target_bps: float, min_bps: float, packet_bytes: float, *,
         site: str = "cal", app: str = "telephony", far_end: str = "home") -> dict:
    """Build a two-way call's trace row: between ``target_bps`` and ``min_bps`` (bit/s each way).

    Equal rates make a fixed-rate codec; ``packet_bytes`` of UDP payload; from ``start_s`` for ``duration_s`` (s).
    """
    return {"site": site, "app": app, "traffic": "stream", "kind": app, "direction": "both", "urgency": "routine",
            "start_s": start_s, "duration_s": duration_s, "size_bytes": math.nan, "chunk_bytes": math.nan,
            "connection": "", "target_rate_bps": target_bps, "min_rate_bps": min_bps, "packet_bytes": packet_bytes,
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
        links: The access links' utilisation per bin (:data:`sim.records.LINK_COLUMNS`).
        results: Each host's agent result (see :mod:`sim.emu.agent`), by host name.
        backlog: Per ``(link, direction)``, samples ``(t_s from the window start, backlog bytes, backlog
            packets)`` of the shaped queue (all its classes together).
        queue_pkts: Per ``(link, direction)``, the configured drop-tail queue (packets, each class).
        held: False when the links' health checks failed in some interval (``why`` says which).
        why: The health refusal message, or "".
        failed_checks: The checks that failed, as ``link direction: check`` (e.g. ``host -: cpu_starved``).
        cpu: The machine's CPU figures per interval (busy share, pressure share).
    """

    records: pd.DataFrame
    results: dict
    links: pd.DataFrame | None = None
    backlog: dict = field(default_factory=dict)
    queue_pkts: dict = field(default_factory=dict)
    held: bool = True
    why: str = ""
    failed_checks: list = field(default_factory=list)
    cpu: list = field(default_factory=list)
    calls: pd.DataFrame | None = None
    changes: list = field(default_factory=list)

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
            congestion_control: str = "cubic", measure_links: bool = True, seed: int = 1,
            link_changes: pd.DataFrame | None = None) -> Replayed:
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
        link_changes: Changes of the sites' lines during the window (:mod:`sim.linkchanges`), applied on time
            and read back (:mod:`sim.emu.changer`); ``Replayed.changes`` lists them, ``Replayed.calls`` has every
            call's per-second rate and delay.

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
    steps = emu_engine.link_steps(emu, topo, chosen, link_changes)
    with emu:
        net.verify(emu, probe.Tolerance(measure=measure_links))
        sampler = Sampler(emu, min(10.0, max(1.0, duration_s / 4)), 0.0)
        backlog = _BacklogSampler(emu)
        backlog.start()
        try:
            done = playback.replay(emu, chosen, topo, work_dir, congestion_control=congestion_control,
                                   sampler=sampler, steps=steps)
        finally:
            backlog.stop()
        epoch_s = next(iter(done.results.values()))["epoch_s"]
        queues = {(link.name, d): getattr(link, d).queue_pkts for link in emu.plan.links for d in ("up", "down")
                  if getattr(link, d).rate_bps}
    out = Replayed(done.records, done.results, sampler.frame(), backlog.relative(epoch_s), queues,
                   calls=done.calls, changes=done.changes)
    try:
        held = emu_engine.judge_health(sampler, chosen, topo, health.Thresholds(), done.changes,
                                       done.results)
        out.held, out.why = not held.refused and held.meta["failed"] == 0, held.meta["why"]
        rows = held.meta["rows"]
    except health.HealthError as exc:
        out.held, out.why, rows = False, str(exc), exc.rows
    out.failed_checks = sorted({f"{r['link']} {r['direction']}: {r['check']}" for r in health.failures(rows)})
    out.cpu = [r["measured"] for r in rows if r["check"] == "cpu_starved"]
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


# ---- the calibration suite: each case in both engines ---------------------------------------------------------------

# The goals the simulator is held to against the emulation (issue 10): relative error, simulator minus emulation.
GOALS = {"median_completion_s": 0.10, "p95_completion_s": 0.20, "video_one_way_delay_s": 0.20,
         "video_rate_bps": 0.10, "link_utilisation": 0.10}
CASE_WINDOW_S, CASE_DRAIN_S = 30.0, 10.0
LINE_BPS, LINE_RTT_S = 10e6, 0.020             # assumption: an FTTC-like 10 Mbit/s each way, 20 ms RTT
SLOW_UP_BPS = 2e6                              # a copper uplink that a call and an upload contend for
VIDEO = dict(target_bps=1.5e6, min_bps=350e3, packet_bytes=1200, app="video")   # apps.yaml video (S2)
SHORT_BYTES, SHORT_LOAD = 200e3, 0.6           # record-view-like downloads at 60% of the line (assumption)
# A line failing mid-call onto a slower, farther backup (made up for the case: a weak 4G signal, 4/2 Mbit/s, 60 ms
# round trip): down at 8 s, on the backup 4 s later, repaired at 20 s; compared phase by phase (sim.failover).
FAULT_AT_S, FAILOVER_S, REPAIRED_AT_S = 8.0, 4.0, 20.0
WEAK_BACKUP = dict(down_bps=4e6, up_bps=2e6, rtt_s=0.060)
PHASE_SETTLE_S = 1.0                           # each phase's first second left out (the change's own second)
# Short downloads beside one bulk download that holds the line's queue for about its first third, then ends: some
# start while Cubic's standing queue is there, some straddle its end, most come after (assumptions for the case: a
# record-view-like 150 kB at 2 a second, a 10 MB download from 0.5 s; the buffer FTTC's downstream 100 ms at the
# line's rate, topologies/access.yaml).
BESIDE_BULK_BYTES, BESIDE_BULK_SHORT_BYTES, BESIDE_BULK_PER_S = 10e6, 150e3, 2.0
BESIDE_BULK_BUFFER_BYTES = 0.100 * LINE_BPS / 8
LONE_EVERY_S = 1.0  # lone short downloads, one a second: a 200 kB one takes about 0.2 s on the idle 10 Mbit/s line


@dataclass(frozen=True)
class Case:
    """One calibration case: a line, a trace on it, the metrics compared and on which direction."""

    name: str
    topology: Topology
    trace: pd.DataFrame
    metrics: tuple[str, ...]
    direction: str = "up"
    changes: pd.DataFrame | None = None  # the line's changes (sim.linkchanges); metrics "name@phase" per phase
    apps: tuple[str, ...] = ()  # the transfers' apps judged (completion times; none given: every transfer)


def cases(seed: int = 1) -> list[Case]:
    """Build the calibration cases (see docs/fidelity.md); ``seed`` draws the short flows' arrivals.

    Bulk, several bulk, short flows at load, a call beside an upload, a call beside short flows, a priority queue,
    a call through a failover, the short flows again on kept-alive connections, short flows beside a bulk download,
    the short flows again as streams of one multiplexed connection, and short downloads one at a time on an idle
    line, new and kept-alive (each alone: its start-up and rest with nothing else).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    line = one_site(LINE_BPS, LINE_BPS, LINE_RTT_S, 150e3)
    slow = one_site(SLOW_UP_BPS, 20e6, LINE_RTT_S, 150e3)
    rate_per_s = SHORT_LOAD * LINE_BPS / (SHORT_BYTES * 8)
    starts = np.cumsum(rng.exponential(1 / rate_per_s, size=int(3 * rate_per_s * CASE_WINDOW_S)))
    shorts = [transfer(float(t), SHORT_BYTES, "down", app="record_view") for t in starts if t < CASE_WINDOW_S - 1]
    video_call = call(2.0, CASE_WINDOW_S - 4.0, **VIDEO)
    transfers = ("median_completion_s", "p95_completion_s", "link_utilisation")
    calls = ("video_one_way_delay_s", "video_rate_bps", "link_utilisation")
    return [
        Case("bulk", line, trace(*(transfer(10.0 * k, 8e6, "up") for k in range(3))), transfers),
        Case("several bulk", line, trace(*(transfer(0.5 * k, 6e6, "up") for k in range(4))), transfers),
        Case("short flows at 60% load", line, trace(*shorts), transfers, "down"),
        Case("call beside an upload", slow, trace(transfer(0.0, 1e12, "up"), video_call), calls),
        Case("call beside short flows", line, trace(*shorts, video_call), calls, "down"),
        Case("call beside an upload, priority queue", one_site(SLOW_UP_BPS, 20e6, LINE_RTT_S, 150e3, qos="priority"),
             trace(transfer(0.0, 1e12, "up"), video_call), calls),
        Case("call through a failover", line, trace(video_call), _PHASED, changes=_failover(line)),
        Case("short flows on kept-alive connections", line, trace(*_kept_alive(shorts)), transfers, "down"),
        _short_beside_bulk(seed),
        Case("short flows on one multiplexed connection", line, trace(*_multiplexed(shorts)), transfers, "down"),
        Case("lone short downloads", line, trace(*_lone(LONE_EVERY_S)), transfers, "down"),
        Case("lone short downloads on kept-alive connections", line, trace(*_kept_alive(_lone(LONE_EVERY_S))),
             transfers, "down"),
    ]


def _lone(every_s: float) -> list[dict]:
    """Short downloads every ``every_s`` from 1 s to the window's last 2 s: each ends long before the next starts."""
    count = int((CASE_WINDOW_S - 3.0) / every_s) + 1
    return [transfer(1.0 + every_s * k, SHORT_BYTES, "down", app="record_view") for k in range(count)]


def _kept_alive(sessions: list[dict]) -> list[dict]:
    """The same transfers, each on a reused connection: no handshakes before its request (record views, S16)."""
    return [row | {"connection": "reused"} for row in sessions]


def _multiplexed(sessions: list[dict]) -> list[dict]:
    """The same transfers as streams of one multiplexed connection (HTTP/2, S16).

    One arriving while another is under way joins it (one request round trip, no slow start); one finding it idle
    opens it anew.
    """
    return [row | {"connection": "multiplexed-new"} for row in sessions]


def _short_beside_bulk(seed: int) -> Case:
    """Build the case of short downloads arriving while a bulk download holds the queue, and after it ended.

    Their arrivals are Poisson, from draws of their own off ``seed``; the case is judged on the short downloads.
    """
    import numpy as np

    rng = np.random.default_rng([seed, 8])
    starts = 1.0 + np.cumsum(rng.exponential(1 / BESIDE_BULK_PER_S, size=int(2 * BESIDE_BULK_PER_S * CASE_WINDOW_S)))
    shorts = [transfer(float(t), BESIDE_BULK_SHORT_BYTES, "down", app="record_view")
              for t in starts if t < CASE_WINDOW_S - 2]
    line = one_site(LINE_BPS, LINE_BPS, LINE_RTT_S, BESIDE_BULK_BUFFER_BYTES)
    return Case("short flows beside a bulk download", line, trace(transfer(0.5, BESIDE_BULK_BYTES, "down"), *shorts),
                ("median_completion_s", "p95_completion_s", "link_utilisation"), "down", apps=("record_view",))


_PHASED = ("video_rate_bps@before", "video_rate_bps@backup", "video_rate_bps@repaired",
           "video_one_way_delay_s@before", "video_one_way_delay_s@backup")


def _failover(topo: Topology) -> pd.DataFrame:
    """The failover case's line changes: the site's line down, on the weak backup, repaired."""
    from sim import linkchanges as lc

    primary = lc.line_of(topo.sites.iloc[0])
    backup = lc.LineState(**WEAK_BACKUP, loss=0.0, buffer_down_bytes=primary.buffer_down_bytes,
                          buffer_up_bytes=primary.buffer_up_bytes)
    return lc.failover(str(topo.sites.at[0, "site"]), primary, backup, FAULT_AT_S, REPAIRED_AT_S, FAILOVER_S)


def simulate(case: Case) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulator's records and link series for a case (same window and drain as the emulation)."""
    result = simulated(case)
    return result.records, result.links


def simulated(case: Case):
    """The simulator's :class:`sim.engines.Result` for a case (its calls' series too when the line changes)."""
    from sim import des

    return des.run(case.trace, case.topology, des.RunWindow(0.0, CASE_WINDOW_S + CASE_DRAIN_S,
                                                            _bin_s(CASE_WINDOW_S)), link_changes=case.changes)


def _bin_s(duration_s: float) -> float:
    return min(10.0, max(1.0, duration_s / 4))


def metrics(records: pd.DataFrame, links: pd.DataFrame | None, case: Case,
            calls: pd.DataFrame | None = None) -> dict[str, float]:
    """The case's metrics from one engine's records and link series (s, bit/s, shares).

    A metric named ``video_rate_bps@backup`` is the call's figure in that phase of the line's changes, in the
    case's direction, from the engine's per-second call series ``calls`` (:func:`sim.failover.summary`).
    """
    if case.changes is not None:
        return _phase_metrics(records, calls, case)
    transfers = records[(records["traffic"] == "transfer") & records["completed"].astype(bool)]
    if case.apps:
        transfers = transfers[transfers["app"].isin(case.apps)]
    video = records[records["app"] == "video"]
    out = {"median_completion_s": float(transfers["duration_s"].median()) if len(transfers) else math.nan,
           "p95_completion_s": float(transfers["duration_s"].quantile(0.95)) if len(transfers) else math.nan,
           "video_one_way_delay_s": float(video["one_way_delay_s"].mean()) if len(video) else math.nan,
           "video_rate_bps": float(video["mean_rate_bps"].mean()) if len(video) else math.nan,
           "link_utilisation": math.nan}
    if links is not None and len(links):
        mine = links[(links["direction"] == case.direction) & (links["kind"] == "access")
                     & (links["bin_start_s"] + links["bin_s"] <= CASE_WINDOW_S + 1e-6)]
        out["link_utilisation"] = float(mine["utilisation"].mean()) if len(mine) else math.nan
    return {name: out[name] for name in case.metrics}


def _phase_metrics(records: pd.DataFrame, calls: pd.DataFrame | None, case: Case) -> dict[str, float]:
    from sim import failover

    out = dict.fromkeys(case.metrics, math.nan)
    if calls is None or calls.empty:
        return out
    table = failover.summary(calls, case.changes, 0.0, CASE_WINDOW_S, records, settle_s=PHASE_SETTLE_S)
    mine = table[table["direction"] == case.direction].set_index("name")
    for name in case.metrics:
        metric, phase = name.split("@")
        column = "rate_bps" if metric == "video_rate_bps" else "one_way_delay_s"
        if phase in mine.index:
            out[name] = float(mine.at[phase, column])
    return out


def compare(case: Case, emu: dict[str, float], des_: dict[str, float], held: bool,
            failed_checks: tuple[str, ...] = ()) -> list[dict]:
    """One row per metric: both engines' figures, the relative error (simulator minus emulation) and the goal.

    ``held`` says whether the emulated run held every health check; ``failed_checks`` names those that did not.
    """
    rows = []
    for name in case.metrics:
        e, d = emu.get(name, math.nan), des_.get(name, math.nan)
        error = (d - e) / e if e and math.isfinite(e) and math.isfinite(d) else math.nan
        goal = GOALS[name.split("@")[0]]
        rows.append({"case": case.name, "metric": name, "emulation": e, "simulator": d, "error": error,
                     "goal": goal, "met": bool(math.isfinite(error) and abs(error) <= goal), "held": held,
                     "failed_checks": list(failed_checks)})
    return rows


def run_suite(work_dir: Path, seed: int = 1, split: list | None = None) -> list[dict]:
    """Replay every case in both engines; return the comparison rows (needs root for the emulation).

    ``split``, if given, is extended with the short downloads' completion split (:mod:`sim.calibrate_split`) of
    each case judged on downloads' completion.
    """
    rows = []
    for k, case in enumerate(cases(seed)):
        replayed = emulate(case.topology, case.trace, CASE_WINDOW_S, work_dir / f"case{k}", drain_s=CASE_DRAIN_S,
                           link_changes=case.changes)
        sim_ = simulated(case)
        rows += compare(case, metrics(replayed.records, replayed.links, case, replayed.calls),
                        metrics(sim_.records, sim_.links, case, sim_.calls), replayed.held,
                        tuple(replayed.failed_checks))
        if split is not None and case.direction == "down" and "median_completion_s" in case.metrics:
            split += _split_rows(case, replayed, sim_.records)
        log.info("calibration case %s: done (links held: %s)", case.name, replayed.held)
    return rows


def _split_rows(case: Case, replayed: Replayed, sim_records: pd.DataFrame) -> list[dict]:
    """Both engines' split of the case's judged downloads' completion (:mod:`sim.calibrate_split`)."""
    from sim import calibrate_split

    judged = case.trace[(case.trace["traffic"] == "transfer") & (case.trace["direction"] == "down")]
    if case.apps:
        judged = judged[judged["app"].isin(case.apps)]
    sessions = judged["session_id"]
    return calibrate_split.rows(case.name, calibrate_split.split(replayed.records, sessions),
                                calibrate_split.split(sim_records, sessions))


def _figure(name: str, value: float) -> str:
    name = name.split("@")[0]
    if not math.isfinite(value):
        return "-"
    if name.endswith("_s"):
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    if name.endswith("_bps"):
        return f"{value / 1e6:.3f} Mbit/s"
    return f"{value:.1%}"


def table(rows: list[dict]) -> str:
    """The comparison as a Markdown table: case, metric, emulation, simulator, error, goal (and whether met)."""
    lines = ["| case | metric | emulation | simulator | error | goal | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        error = f"{r['error']:+.0%}" if math.isfinite(r["error"]) else "-"
        met = ("yes" if r["met"] else "no") + ("" if r["held"] else " (emulation did not hold: "
                                                  f"{', '.join(r.get('failed_checks') or ['see its log'])})")
        lines.append(f"| {r['case']} | {r['metric']} | {_figure(r['metric'], r['emulation'])} | "
                     f"{_figure(r['metric'], r['simulator'])} | {error} | within {r['goal']:.0%} | {met} |")
    return "\n".join(lines)


BEGIN, END = "<!-- calibrate:begin -->", "<!-- calibrate:end -->"


def write_into(doc: Path, rows: list[dict], when: str, machine: str, split_rows: list[dict] = ()) -> None:
    """Replace the text between the calibration markers of ``doc`` with the table (and the split's, if given).

    The markers are added at the end of ``doc`` if it has none.
    """
    from sim import calibrate_split

    split = f"\n\nShort downloads' completion split ({calibrate_split.__name__}):\n\n" \
            f"{calibrate_split.table(list(split_rows))}" if split_rows else ""
    block = f"{BEGIN}\n\nMeasured {when} on {machine} (`make calibrate`).\n\n{table(rows)}{split}\n\n{END}"
    text = doc.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main() -> int:
    """Run the suite, print the table, write it into docs/fidelity.md and benchmarks/results/calibration.json.

    The entry point of ``make calibrate`` (``python -m sim.calibrate``; the command line, sim/cli.py, is another's).
    """
    import json
    import os
    import sys
    import tempfile

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(__file__).resolve().parent.parent
    split: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        rows = run_suite(Path(tmp), split=split)
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    machine = f"{os.uname().nodename} ({os.cpu_count()} cores, kernel {os.uname().release}, load average " \
              f"{os.getloadavg()[0]:.1f} at the end)"
    from sim import calibrate_split

    sys.stdout.write(table(rows) + "\n\n" + calibrate_split.table(split) + "\n")
    write_into(root / "docs" / "fidelity.md", rows, when, machine, split)
    out = root / "benchmarks" / "results" / "calibration.json"
    out.write_text(json.dumps({"measured_at": when, "machine": machine, "goals": GOALS,
                               "rows": [{k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                                         for k, v in r.items()} for r in rows],
                               "split": [{k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                                          for k, v in r.items()} for r in split]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
