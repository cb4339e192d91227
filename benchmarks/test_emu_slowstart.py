"""Where real TCP leaves slow start: the congestion windows of the calibration's short downloads, read from the kernel.

The simulator's slow start runs until a transfer's window fills its path at the share it finds (``sim.des.tcp``);
the emulation's senders are Linux's Cubic with HyStart on (the kernel's default), which leaves slow start when a
round's delay rises over the least RTT the connection has seen (or its ACKs come in a long train). This measures
where they do: the calibration's 200 kB downloads (``sim.calibrate.cases``: alone on the idle 10 Mbit/s, 20 ms line,
and at 60% load, each on new and on kept-alive connections) replayed with the kernel's ``tcp:tcp_probe`` tracepoint
on, which logs every sender's ``snd_cwnd`` and ``ssthresh`` as ACKs arrive. Per sender (a socket of the emulation's
addresses that had a download's bytes acknowledged): the window when ``ssthresh`` was first set (slow start's end),
whether it was HyStart's (the window equal to ``ssthresh``: a loss sets ``ssthresh`` under the window), the segments
acknowledged by then, and the connection's smoothed RTT then. docs/fidelity.md reads the figures.

``make bench`` (``--benchmark-only``) runs it (about 4 minutes) and writes ``benchmarks/results/emu_slowstart.json``.
Skipped under ``make test``. Needs root, tracefs (``/sys/kernel/tracing``) and a machine that can emulate; the
tracepoint sees the whole machine, so only the emulation's senders (addresses in 10.0.0.0/8) of a download's size
are counted.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import pytest

from sim import calibrate
from sim.emu import capabilities

RESULTS = Path(__file__).resolve().parent / "results" / "emu_slowstart.json"
TRACING = Path("/sys/kernel/tracing")
CUBIC_PARAMETERS = Path("/sys/module/tcp_cubic/parameters")
CASES = ("lone short downloads", "lone short downloads on kept-alive connections", "short flows at 60% load",
         "short flows on kept-alive connections")
TRACE_BUFFER_KB = 262144  # per CPU: a case logs about 70,000 ACKs of ~250 bytes of text each
NO_SSTHRESH = 0x7FFFFFFF  # Linux's ssthresh before slow start first ends (TCP_INFINITE_SSTHRESH)
PROBE = re.compile(r"\s(\d+\.\d+): tcp_probe: .*?src=(\S+) dest=(\S+) .*?snd_una=(\w+) snd_cwnd=(\d+) "
                   r"ssthresh=(\d+) .*?srtt=(\d+) .*?sock_cookie=(\w+)")

_REASON = capabilities.why_not_here("make bench") or (
    None if (TRACING / "events/tcp/tcp_probe/enable").exists() else "no tcp_probe tracepoint in /sys/kernel/tracing")
pytestmark = [pytest.mark.emulation, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def _only_under_bench(request) -> None:
    if request.config.getoption("benchmark_disable", False):
        pytest.skip("slow-start measurements take ~4 minutes of real time: run with --benchmark-only (make bench)")


@contextmanager
def _tcp_probe():
    """The kernel's tcp_probe tracepoint on for the block; yields a function that reads what it logged."""
    (TRACING / "tracing_on").write_text("0")
    size_kb = (TRACING / "buffer_size_kb").read_text().split()[0]
    (TRACING / "buffer_size_kb").write_text(str(TRACE_BUFFER_KB))
    (TRACING / "trace").write_text("")
    (TRACING / "events/tcp/tcp_probe/enable").write_text("1")
    (TRACING / "tracing_on").write_text("1")
    try:
        yield lambda: (TRACING / "trace").read_text().splitlines()
    finally:
        (TRACING / "tracing_on").write_text("0")
        (TRACING / "events/tcp/tcp_probe/enable").write_text("0")
        (TRACING / "trace").write_text("")
        (TRACING / "buffer_size_kb").write_text(size_kb)


def _ours(address: str) -> bool:
    """Whether a traced address (``10.1.0.1:443`` or ``[::ffff:10.1.0.1]:443``) is one of the emulation's."""
    host = address.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
    return host.startswith("10.")


def exits(lines: list[str], size_bytes: float) -> list[dict]:
    """Slow start's end for each sender of about ``size_bytes`` among tcp_probe's ``lines`` (see the module)."""
    by_socket = defaultdict(list)
    for line in lines:
        m = PROBE.search(line)
        if m and _ours(m.group(2)) and _ours(m.group(3)):
            t_s, _, _, una, cwnd, ssthresh, srtt_us, cookie = m.groups()
            by_socket[cookie].append((float(t_s), int(una, 16), int(cwnd), int(ssthresh), int(srtt_us)))
    rows = []
    for samples in by_socket.values():
        una0 = samples[0][1]
        acked_bytes = (samples[-1][1] - una0) % 2**32
        if not 0.9 * size_bytes <= acked_bytes <= 1.2 * size_bytes:  # not a download's sender
            continue
        end = next((s for s in samples if s[3] < NO_SSTHRESH), None)
        rows.append({"left_slow_start": end is not None,
                     "window_segments": end[2] if end else max(s[2] for s in samples),
                     "ssthresh_segments": end[3] if end else None,
                     "hystart": bool(end and end[2] >= end[3]),
                     "acked_segments": ((end[1] if end else samples[-1][1]) - una0) % 2**32 / 1448,
                     "srtt_s": (end or samples[-1])[4] / 8e6})  # tcp_probe's srtt is 8 x the RTT in us
    return rows


def case_row(case, work_dir: Path) -> dict:
    """Replay one calibration case with tcp_probe on; its senders' slow-start ends and its downloads' completion."""
    with _tcp_probe() as read:
        replayed = calibrate.emulate(case.topology, case.trace, calibrate.CASE_WINDOW_S, work_dir,
                                     drain_s=calibrate.CASE_DRAIN_S)
        lines = read()
    senders = exits(lines, calibrate.SHORT_BYTES)
    ended = [s for s in senders if s["left_slow_start"]]
    windows = sorted(s["window_segments"] for s in ended)
    done = replayed.records[replayed.records["completed"].astype(bool)]
    return {"case": case.name, "senders": len(senders), "left_slow_start": len(ended),
            "by_hystart": sum(s["hystart"] for s in ended),
            "window_p10_p50_p90_segments": _deciles(windows),
            "acked_at_end_median_segments": statistics.median(s["acked_segments"] for s in ended) if ended else None,
            "median_completion_s": float(done["duration_s"].median()) if len(done) else None,
            "windows_segments": windows, "hystart_windows_segments": sorted(s["window_segments"] for s in ended
                                                                            if s["hystart"]),
            "held": replayed.held, "why": replayed.why[:300]}


def _deciles(values: list) -> list | None:
    if not values:
        return None
    q = statistics.quantiles(values, n=10, method="inclusive")
    return [q[0], statistics.median(values), q[8]]


def _cubic_parameters() -> dict[str, str]:
    """The kernel's Cubic parameters (HyStart's among them), by name; none where the module does not show them."""
    if not CUBIC_PARAMETERS.exists():
        return {}
    return {p.name: p.read_text().strip() for p in sorted(CUBIC_PARAMETERS.iterdir())}


def _save(rows: list[dict]) -> None:
    data = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(),
            "kernel": os.uname().release, "load_average": os.getloadavg(), "tcp_cubic": _cubic_parameters(),
            "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


def test_where_cubic_leaves_slow_start(benchmark, request, tmp_path):
    _only_under_bench(request)
    by_name = {case.name: case for case in calibrate.cases()}

    def measure():
        rows = []
        for k, name in enumerate(CASES):
            rows.append(case_row(by_name[name], tmp_path / f"case{k}"))
            _save(rows)  # as it goes: an interrupted run keeps what it measured
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = [{k: v for k, v in row.items() if not k.endswith("windows_segments")}
                                    for row in rows]
    low_window = int(_cubic_parameters().get("hystart_low_window", 16))  # (Linux's default where not readable)
    for row in rows:  # every download of a case has its sender; HyStart acts only from its low window (16 segments)
        downloads = int((by_name[row["case"]].trace["app"] == "record_view").sum())
        assert row["senders"] == downloads, row
        assert all(w >= low_window for w in row["hystart_windows_segments"]), row
