"""Short downloads at several loads, sizes, buffers and line rates: completion and the queue they build, both engines.

The calibration's short flows (``sim.calibrate.cases``) are one point: 200 kB downloads at 60% load on a 10 Mbit/s,
20 ms line with a 150 kB buffer. This varies one figure at a time about that point (the load 30% and 80%; downloads
of 50 kB and 1 MB; a 60 kB buffer; a 50 Mbit/s line), each replayed in the emulation and in the simulator with the
same arrivals (Poisson, off the variant's seed) and a low-rate probe call (20 packets/s of 100 bytes each way, fixed
rate) whose downlink one-way delay less half the RTT is the queue a call would see. The emulation's downlink backlog is
also read every 0.2 s (``tc -s qdisc``): its mean, how often it holds a frame or more ("busy"), and its mean then.
Each row also has the window-level check's figures on the same arrivals (``benchmarks/window_check.py``, its queue
read every millisecond over the same seconds), at its burst share (0.25) and at 0, 0.5 and 0.75.

``make bench`` (``--benchmark-only``) runs it (about 6 minutes) and writes ``benchmarks/results/emu_bursts.json``;
docs/fidelity.md reads the figures. Skipped under ``make test``. Needs root and a machine that can emulate; every row
says whether the emulation held its links.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import window_check

from sim import calibrate
from sim.des.tcp import FRAME_BYTES
from sim.emu import capabilities

RESULTS = Path(__file__).resolve().parent / "results" / "emu_bursts.json"
RTT_S = 0.020                 # the calibration's line (sim.calibrate.cases)
WINDOW_S, LAST_START_S = 30.0, 29.0
PROBE_START_S, PROBE_DURATION_S = 2.0, 26.0
PROBE_BPS, PROBE_PAYLOAD_BYTES = 16e3, 100
SAMPLED_FROM_S, SAMPLED_TO_S = 2.0, 28.0
BURST_SHARES = (0.0, window_check.BURST_SHARE, 0.5, 0.75)   # the window-level check's, its default and a range
# name: (line rate each way (bit/s), download size (bytes), the downloads' share of the line, buffer each way (bytes))
VARIANTS = {
    "base": (10e6, 200e3, 0.6, 150e3),
    "load 30%": (10e6, 200e3, 0.3, 150e3),
    "load 80%": (10e6, 200e3, 0.8, 150e3),
    "50 kB downloads": (10e6, 50e3, 0.6, 150e3),
    "1 MB downloads": (10e6, 1e6, 0.6, 150e3),
    "60 kB buffer": (10e6, 200e3, 0.6, 60e3),
    "50 Mbit/s line": (50e6, 200e3, 0.6, 150e3),
}

_REASON = capabilities.why_not_here("make bench")
pytestmark = [pytest.mark.emulation, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def variant(name: str, seed: int = 1) -> calibrate.Case:
    """A variant's case: its line, its downloads (Poisson arrivals from 0 s to ``LAST_START_S``) and the probe call."""
    rate_bps, size_bytes, load, buffer_bytes = VARIANTS[name]
    rng = np.random.default_rng(seed)
    per_s = load * rate_bps / (size_bytes * 8)
    starts_s = np.cumsum(rng.exponential(1 / per_s, size=int(3 * per_s * WINDOW_S)))
    rows = [calibrate.transfer(float(t), size_bytes, "down", app="record_view") for t in starts_s if t < LAST_START_S]
    rows.append(calibrate.call(PROBE_START_S, PROBE_DURATION_S, PROBE_BPS, PROBE_BPS, PROBE_PAYLOAD_BYTES))
    return calibrate.Case(name, calibrate.one_site(rate_bps, rate_bps, RTT_S, buffer_bytes),
                          calibrate.trace(*rows), ("median_completion_s",), "down")


def _probe_id(case: calibrate.Case) -> int:
    return int(case.trace.loc[case.trace["app"] == "telephony", "session_id"].iloc[0])


def _downloads(records) -> list[float]:
    done = records[(records["app"] == "record_view") & records["completed"].astype(bool)]
    return done["duration_s"].astype(float).tolist()


def _figures(durations_s: list[float], probe_delay_s: float | None) -> dict:
    ordered = sorted(durations_s)
    return {"completed": len(ordered), "median_completion_s": statistics.median(ordered) if ordered else None,
            "p95_completion_s": float(np.percentile(ordered, 95)) if ordered else None,
            "probe_queue_s": probe_delay_s - RTT_S / 2 if probe_delay_s is not None else None}


def row(name: str, work_dir: Path) -> dict:
    """One variant in both engines: the downloads' completion, the probe's queue, the emulated backlog."""
    case = variant(name)
    rate_bps = VARIANTS[name][0]
    replayed = calibrate.emulate(case.topology, case.trace, WINDOW_S, work_dir, drain_s=calibrate.CASE_DRAIN_S)
    probe = replayed.call_direction(_probe_id(case), "down") or {}
    samples = [backlog for t_s, backlog, _ in replayed.backlog.get(("access:cal", "down"), [])
               if SAMPLED_FROM_S <= t_s <= SAMPLED_TO_S]
    queue_s = [backlog * 8 / rate_bps for backlog in samples]
    busy_s = [q for q, backlog in zip(queue_s, samples) if backlog >= FRAME_BYTES]
    sim_records, _ = calibrate.simulate(case)
    sim_probe = sim_records[sim_records["session_id"] == _probe_id(case)].iloc[0]
    checks = {share: _window_check(case, name, share) for share in BURST_SHARES}
    return {"variant": name, "line_bps": rate_bps, "download_bytes": VARIANTS[name][1], "load": VARIANTS[name][2],
            "buffer_bytes": VARIANTS[name][3], "downloads": int((case.trace["app"] == "record_view").sum()),
            "emulation": {**_figures(_downloads(replayed.records), probe.get("one_way_delay_s")),
                          "backlog_samples": len(samples),
                          "mean_backlog_s": statistics.fmean(queue_s) if queue_s else None,
                          "busy_share": len(busy_s) / len(samples) if samples else None,
                          "mean_backlog_while_busy_s": statistics.fmean(busy_s) if busy_s else None},
            "simulator": _figures(_downloads(sim_records), float(sim_probe["one_way_delay_s"])),
            "window_check": checks[window_check.BURST_SHARE],
            "window_check_by_burst_share": {str(share): checked for share, checked in checks.items()},
            "held": replayed.held, "why": replayed.why[:300]}


def _window_check(case: calibrate.Case, name: str, burst_share: float) -> dict:
    """The window-level check's figures for a variant's downloads, with ``burst_share`` (``window_check.run``)."""
    rate_bps, size_bytes, _, buffer_bytes = VARIANTS[name]
    checked = window_check.run(case.trace.loc[case.trace["app"] == "record_view", "start_s"], size_bytes, rate_bps,
                               RTT_S, buffer_bytes, burst_share=burst_share)
    mean_s, busy_share, while_busy_s = checked.queue(SAMPLED_FROM_S, SAMPLED_TO_S)
    return {**_figures([float(d) for d in checked.completion_s if np.isfinite(d)], None), "mean_queue_s": mean_s,
            "busy_share": busy_share, "mean_queue_while_busy_s": while_busy_s,
            "exit_window_p10_p50_p90_segments": _deciles(checked.exit_window_segments)}


def _deciles(values) -> list[float] | None:
    finite = [float(v) for v in values if np.isfinite(v)]
    return [float(q) for q in np.percentile(finite, [10, 50, 90])] if finite else None


def _save(rows: list[dict]) -> None:
    data = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(),
            "kernel": os.uname().release, "load_average": os.getloadavg(), "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


def test_short_downloads_at_loads_sizes_buffers_and_rates(benchmark, request, tmp_path):
    if request.config.getoption("benchmark_disable", False):
        pytest.skip("seven emulated variants take ~6 minutes of real time: run with --benchmark-only (make bench)")

    def measure():
        rows = []
        for k, name in enumerate(VARIANTS):
            rows.append(row(name, tmp_path / f"variant{k}"))
            _save(rows)  # as it goes: an interrupted run keeps what it measured
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    for measured in rows:  # every download ends in both engines, and the backlog was read through the window
        assert measured["emulation"]["completed"] == measured["downloads"], measured
        assert measured["simulator"]["completed"] == measured["downloads"], measured
        assert measured["window_check"]["completed"] == measured["downloads"], measured
        expected_samples = (SAMPLED_TO_S - SAMPLED_FROM_S) / calibrate.BACKLOG_SAMPLE_S
        assert measured["emulation"]["backlog_samples"] >= 0.8 * expected_samples, measured
