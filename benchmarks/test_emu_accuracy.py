"""How faithfully the emulated network applies what it is configured with, and what it costs to build.

* shaped TCP goodput against ``rate x 1448/1514``, 0.5 Mbit/s to 1 Gbit/s per direction (aim: within 5%), on links
  without delay (HTB alone) and with 20 ms of RTT (HTB and the delay shim, up to 330 Mbit/s);
* added delay against configured, 5-50 ms one way (aim: median within 2 ms), idle and beside a saturating upload;
* random loss against configured, 0.1-2% (aim: within 20% relative), with UDP;
* build + start and stop wall time for 5, 20 and 50 sites.

``make bench`` (``--benchmark-only``) runs the full sweeps (about 5 minutes) and writes
``benchmarks/results/emu_accuracy.json``. Under ``make test`` (``--benchmark-disable``) each benchmark runs one small
point as a smoke test (a few seconds each). Needs root and a machine that can emulate (see ``testbed doctor``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from sim.emu import capabilities, pathprobe
from sim.emu.linkplan import EmuSettings
from sim.topology import SITE_COLUMNS, FarEnd, Topology

RESULTS = Path(__file__).resolve().parent / "results" / "emu_accuracy.json"
HOME = FarEnd(69.4e6, 18.4e6, 0.0)  # no delay at the homes: the sweeps look at the sites' links alone


_REASON = capabilities.why_not_here("make bench")
pytestmark = [pytest.mark.emulation, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def _site(name, down_bps, up_bps, rtt_s, loss=0.0, buffer_bytes=1e6):
    return dict(site=name, site_class="bench", family="gp", access_profile="bench", technology="bench",
                medium="fibre", distance_m=float("nan"), down_bps=down_bps, up_bps=up_bps, rtt_s=rtt_s,
                buffer_up_bytes=buffer_bytes, buffer_down_bytes=buffer_bytes, loss=loss, jitter_s=0.0, aggregation="")


def _network(rows, cloud_rtt_s=0.0, offered_bps=None):
    from sim.emu import net

    topo = Topology(pd.DataFrame(rows, columns=list(SITE_COLUMNS)), {}, cloud_rtt_s, HOME)
    return net.build(topo, [r["site"] for r in rows], net.new_prefix(), EmuSettings(), offered_bps=offered_bps)


def _full(request) -> bool:
    return not request.config.getoption("benchmark_disable", False)


def _save(key: str, rows: list[dict]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
                 "kernel": os.uname().release, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


def _run(emu, host, argv, timeout_s=60.0) -> str:
    proc = emu.node(host).popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    emu.record_pid(f"bench {host}", proc.pid)
    out, _ = proc.communicate(timeout=timeout_s)
    emu.state.forget(f"bench {host}")
    return out.decode()


def _iperf(emu, site, extra: list[str], port: int, seconds: float = 3.0, omit_s: float = 1.0) -> dict:
    ends = emu.endpoints()
    server = emu.node(ends.server.host).popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL)
    emu.record_pid(f"bench server {port}", server.pid)
    time.sleep(0.3)
    try:
        out = _run(emu, ends.sites[site].host, ["iperf3", "-c", ends.server.ip, "-p", str(port), "-t",
                                                f"{seconds + omit_s:g}", "-O", f"{omit_s:g}", "--json", *extra])
    finally:
        server.wait(timeout=15)
        emu.state.forget(f"bench server {port}")
    return json.loads(out)


def _goodput_rows(emu, rates_bps, rtt_s, cc) -> list[dict]:
    rows = []
    for i, rate_bps in enumerate(rates_bps):
        for direction in ("up", "down"):
            result = _iperf(emu, f"r{i}", ["-C", cc] + (["-R"] if direction == "down" else []), 5400 + len(rows))
            goodput_bps = pathprobe.parse_iperf3(json.dumps(result))
            expected_bps = rate_bps * pathprobe.GOODPUT_FACTOR
            rows.append({"rate_bps": rate_bps, "rtt_s": rtt_s, "direction": direction, "cc": cc,
                         "goodput_bps": goodput_bps, "expected_bps": expected_bps,
                         "error": goodput_bps / expected_bps - 1,
                         "within_5pct": abs(goodput_bps / expected_bps - 1) <= 0.05})
    return rows


def test_shaped_goodput(benchmark, request):
    full = _full(request)
    sweeps = [((0.5e6, 1e6, 10e6, 100e6, 330e6, 1000e6) if full else (10e6,), 0.0, "cubic")]
    if full:
        sweeps.append(((0.5e6, 1e6, 10e6, 100e6, 330e6), 0.020, pathprobe.probe_congestion_control()))

    def measure():
        rows = []
        for rates_bps, rtt_s, cc in sweeps:
            sites = [_site(f"r{i}", r, r, rtt_s) for i, r in enumerate(rates_bps)]
            with _network(sites, offered_bps={s["site"]: 1e6 for s in sites}) as emu:
                rows += _goodput_rows(emu, rates_bps, rtt_s, cc)
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    if full:
        _save("goodput", rows)
    else:
        assert all(abs(row["error"]) < 0.10 for row in rows), rows


def test_added_delay(benchmark, request):
    full = _full(request)
    one_way_s = (0.005, 0.010, 0.020, 0.050) if full else (0.010,)

    def measure():
        sites = [_site(f"d{i}", 20e6, 20e6, 2 * d) for i, d in enumerate(one_way_s)]
        rows = []
        with _network(sites) as emu:
            ends = emu.endpoints()
            for i, delay_s in enumerate(one_way_s):
                for load in ("idle", "upload") if full else ("idle",):
                    rows.append(_delay_row(emu, ends, f"d{i}", delay_s, load, 300 if full else 50))
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    if full:
        _save("delay", rows)
    else:
        assert all(abs(row["error_s"]) < 0.002 for row in rows), rows


def _delay_row(emu, ends, site, delay_s, load, count) -> dict:
    loader = None
    if load == "upload":  # a UDP stream at 80% of the link in the opposite direction, through the same shim
        server = emu.node(ends.server.host).popen(["iperf3", "-s", "-1", "-p", "5600"], stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        loader = emu.node(ends.sites[site].host).popen(
            ["iperf3", "-c", ends.server.ip, "-p", "5600", "-u", "-b", "16M", "-t", str(count * 0.01 + 3)],
            stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    out = _run(emu, ends.server.host, ["ping", "-n", "-c", str(count), "-i", "0.01", ends.sites[site].ip])
    if loader:
        loader.wait(timeout=30)
        server.wait(timeout=10)
    rtts_s = [float(x) / 1e3 for x in __import__("re").findall(r"time=([\d.]+) ms", out)]
    median_s = statistics.median(rtts_s) / 2
    p99_s = sorted(rtts_s)[int(0.99 * (len(rtts_s) - 1))] / 2
    return {"one_way_delay_s": delay_s, "load": load, "median_s": median_s, "p99_s": p99_s,
            "error_s": median_s - delay_s, "within_2ms": abs(median_s - delay_s) <= 0.002, "pings": len(rtts_s)}


def test_loss(benchmark, request):
    full = _full(request)
    losses = (0.001, 0.005, 0.01, 0.02) if full else (0.02,)

    def measure():
        sites = [_site(f"l{i}", 100e6, 100e6, 0.010, loss=p) for i, p in enumerate(losses)]
        rows = []
        with _network(sites, offered_bps={s["site"]: 20e6 for s in sites}) as emu:
            for i, loss in enumerate(losses):
                seconds = 6.0 if full else 1.5
                result = _iperf(emu, f"l{i}", ["-u", "-b", "20M", "-l", "200"], 5700 + i, seconds, omit_s=0)
                summary = result["end"]["sum"]
                measured = summary["lost_percent"] / 100
                rows.append({"loss": loss, "measured": measured, "packets": summary["packets"],
                             "relative_error": measured / loss - 1, "within_20pct": abs(measured / loss - 1) <= 0.2})
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    if full:
        _save("loss", rows)
    else:
        assert all(abs(row["relative_error"]) < 0.5 for row in rows), rows


@pytest.mark.parametrize("n_sites", [5, 20, 50])
def test_build_start_stop_time(benchmark, request, n_sites):
    if not _full(request) and n_sites != 5:
        pytest.skip("build time of 20 and 50 sites: run with --benchmark-only (make bench)")
    sites = [_site(f"s{i}", 16e6, 1e6, 0.045, buffer_bytes=150e3) for i in range(n_sites)]

    def measure():
        t0 = time.monotonic()
        emu = _network(sites, cloud_rtt_s=0.010, offered_bps={s["site"]: 1e6 for s in sites})
        emu.start()
        t1 = time.monotonic()
        emu.stop()
        t2 = time.monotonic()
        return {"sites": n_sites, "nodes": len(emu.plan.nodes), "shims": len(emu.plan.nodes) - 2 - 2 * n_sites,
                "start_s": t1 - t0, "stop_s": t2 - t1}

    row = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(row)
    if _full(request):
        data = json.loads(RESULTS.read_text()).get("build", {}).get("rows", []) if RESULTS.exists() else []
        _save("build", [r for r in data if r["sites"] != n_sites] + [row])
