"""What real TCP and our adaptive video do to a drop-tail queue, measured in the emulation for the simulator's model.

* **Occupancy:** the mean backlog of a FIFO line's drop-tail queue, as a share of its buffer, under 1, 2 and 4 Cubic
  uploads, on lines of 1, 10 and 100 Mbit/s whose buffer holds ~100 ms and ~40 ms at line rate (20 ms RTT). Read
  two ways: the shaper's backlog (``tc -s qdisc``, every 0.2 s) and the extra one-way delay a low-rate probe call
  (20 packets/s of 100 bytes) sees; the probe's loss is a call's loss beside the uploads.
* **Video beside an upload:** the rate our adaptive video sender (``sim/emu/media.py``; apps.yaml's video: target
  1.5 Mbit/s, minimum 350 kbit/s, 1200-byte packets) keeps beside one Cubic upload on FIFO lines of 1, 2, 10 and
  50 Mbit/s (buffer 150 kB, the catalogue's single assumption until 2026-12-02; 20 ms RTT), with its loss and
  one-way delay.

Each case replays a hand-made trace on a one-site network (:func:`sim.calibrate.emulate`), which verifies the link
and judges its health (CPU, shims, shaper) every interval: every row says whether the run held. ``make bench``
(``--benchmark-only``) runs them all (about 20 minutes) and writes ``benchmarks/results/emu_queues.json``; the
figures are in docs/fidelity.md. Skipped under ``make test`` (``--benchmark-disable``): a point takes half a minute of
real time and means little on its own. Needs root and a machine that can emulate.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path

import pytest

from sim import calibrate
from sim.emu import capabilities
from sim.emu.linkplan import queue_pkts

RESULTS = Path(__file__).resolve().parent / "results" / "emu_queues.json"
RTT_S = 0.020                      # assumption: a site-to-cloud path of FTTC's order (access.yaml: 11-45 ms)
WINDOW_S, SETTLE_S = 30.0, 8.0     # replayed seconds; the first SETTLE_S (slow start, first losses) are not averaged
PROBE_BPS, PROBE_PAYLOAD_BYTES = 16e3, 100   # 20 packets/s: 2.3% of 1 Mbit/s on the wire
VIDEO_TARGET_BPS, VIDEO_MIN_BPS, VIDEO_PACKET_BYTES = 1.5e6, 350e3, 1200   # apps.yaml video (S2)
CATALOGUE_BUFFER_BYTES = 150e3     # access.yaml: every profile's buffer each way until 2026-12-02 (an assumption)


_REASON = capabilities.why_not_here("make bench")
pytestmark = [pytest.mark.emulation, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def _only_under_bench(request) -> None:
    if request.config.getoption("benchmark_disable", False):
        pytest.skip("queue and video measurements take ~20 minutes of real time: run with --benchmark-only "
                    "(make bench)")


def _save(key: str, rows: list[dict]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(),
                 "kernel": os.uname().release, "load_average": os.getloadavg(), "rtt_s": RTT_S,
                 "window_s": WINDOW_S, "settle_s": SETTLE_S, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


def _health(replayed) -> dict:
    return {"held": replayed.held, "failed_checks": replayed.failed_checks, "why": replayed.why[:300]}


def occupancy_row(rate_bps: float, buffer_s: float, uploads: int, work_dir: Path) -> dict:
    """Replay ``uploads`` Cubic uploads and a probe call on one FIFO line; measure its queue (see the module)."""
    buffer_bytes = rate_bps * buffer_s / 8
    topo = calibrate.one_site(rate_bps, rate_bps, RTT_S, buffer_bytes)
    sessions = [calibrate.transfer(0.1 * k, 1e12, "up") for k in range(uploads)]
    # the probe runs over the settled part only, so its mean delay is the settled queue's
    sessions.append(calibrate.call(SETTLE_S, WINDOW_S - SETTLE_S - 1.0, PROBE_BPS, PROBE_BPS, PROBE_PAYLOAD_BYTES))
    replayed = calibrate.emulate(topo, calibrate.trace(*sessions), WINDOW_S, work_dir, drain_s=1.0)
    q = queue_pkts(buffer_bytes, 1500)
    full_bytes = calibrate.buffer_frame_bytes(q)
    backlog_bytes, backlog_pkts = replayed.mean_backlog("access:cal", "up", after_s=SETTLE_S)
    probe_id = uploads  # sessions are numbered in start order: the uploads, then the probe
    up = replayed.call_direction(probe_id, "up") or {}
    extra_s = (up.get("one_way_delay_s") or math.nan) - RTT_S / 2  # the line's one-way delay is half its RTT
    goodput_bps = sum(t["delivered_bytes"] for r in replayed.results.values() for t in r["transfers"]) * 8 / (
        WINDOW_S + 1.0)
    return {"rate_bps": rate_bps, "buffer_s": buffer_s, "buffer_bytes": buffer_bytes, "queue_pkts": q,
            "uploads": uploads, "mean_backlog_bytes": backlog_bytes, "mean_backlog_pkts": backlog_pkts,
            "occupancy_bytes": backlog_bytes / full_bytes, "occupancy_pkts": backlog_pkts / q,
            "probe_extra_delay_s": extra_s, "occupancy_from_probe": extra_s * rate_bps / 8 / full_bytes,
            "probe_loss": _loss(replayed, probe_id), "uploads_goodput_bps": goodput_bps,
            "utilisation": goodput_bps / (rate_bps * 1448 / 1514), **_health(replayed)}


def _loss(replayed, session_id: int) -> float:
    sent = replayed.sender(session_id, "site")
    got = replayed.call_direction(session_id, "up")
    if not sent or not got or not sent["sent_packets"]:
        return math.nan
    return max(0.0, 1 - got["packets"] / sent["sent_packets"])


def video_row(rate_bps: float, work_dir: Path) -> dict:
    """Replay one Cubic upload and a video call on one FIFO line; measure the video's rate, loss and delay."""
    topo = calibrate.one_site(rate_bps, rate_bps, RTT_S, CATALOGUE_BUFFER_BYTES)
    sessions = calibrate.trace(calibrate.transfer(0.0, 1e12, "up"),
                               calibrate.call(2.0, WINDOW_S - 3.0, VIDEO_TARGET_BPS, VIDEO_MIN_BPS,
                                              VIDEO_PACKET_BYTES, app="video"))
    replayed = calibrate.emulate(topo, sessions, WINDOW_S, work_dir, drain_s=1.0)
    up = replayed.call_direction(1, "up") or {}
    per_s = up.get("rate_bps_per_s") or []
    settled = per_s[int(SETTLE_S - 2.0):]  # call seconds from SETTLE_S into the window
    video_bps = statistics.fmean(settled) if settled else math.nan
    upload = next(t for r in replayed.results.values() for t in r["transfers"] if t["session_id"] == 0)
    upload_bps = upload["delivered_bytes"] * 8 / (WINDOW_S + 1.0)
    frame_share = (VIDEO_PACKET_BYTES + 42) / VIDEO_PACKET_BYTES  # the video's wire bits per payload bit
    return {"rate_bps": rate_bps, "buffer_bytes": CATALOGUE_BUFFER_BYTES,
            "queue_pkts": queue_pkts(CATALOGUE_BUFFER_BYTES, 1500), "video_rate_bps": video_bps,
            "video_share_of_line": video_bps * frame_share / rate_bps,
            "video_share_of_target": video_bps / VIDEO_TARGET_BPS, "video_loss": _loss(replayed, 1),
            "video_one_way_delay_s": up.get("one_way_delay_s"), "video_one_way_delay_p95_s":
            up.get("one_way_delay_p95_s"), "video_share_at_target": up.get("share_at_target"),
            "upload_goodput_bps": upload_bps, "sender_rate_bps_per_s": replayed.sender(1, "site")[
                "send_rate_bps_per_s"], **_health(replayed)}


OCCUPANCY_CASES = [(r, b, n) for r in (1e6, 10e6, 100e6) for b in (0.100, 0.040) for n in (1, 2, 4)]


def test_drop_tail_occupancy_under_cubic(benchmark, request, tmp_path):
    _only_under_bench(request)

    def measure():
        rows = []
        for k, (rate_bps, buffer_s, uploads) in enumerate(OCCUPANCY_CASES):
            rows.append(occupancy_row(rate_bps, buffer_s, uploads, tmp_path / f"occ{k}"))
            _save("occupancy", rows)  # as it goes: a long sweep interrupted keeps what it measured
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    assert all(0.0 <= row["occupancy_pkts"] <= 1.0 for row in rows if not math.isnan(row["occupancy_pkts"])), rows


def test_video_beside_one_cubic_upload(benchmark, request, tmp_path):
    _only_under_bench(request)

    def measure():
        rows = []
        for k, rate_bps in enumerate((1e6, 2e6, 10e6, 50e6)):
            rows.append(video_row(rate_bps, tmp_path / f"video{k}"))
            _save("video_beside_cubic", rows)
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    assert all(row["video_rate_bps"] <= VIDEO_TARGET_BPS * 1.05 for row in rows), rows
