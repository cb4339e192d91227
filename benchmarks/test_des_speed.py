"""Simulator speed on the ``icb`` scenario: sessions simulated per second on one core.

Run with ``make bench`` (figures go to benchmarks/results/latest.json and, by hand, benchmarks/README.md).
Under ``make test`` pytest-benchmark is disabled and each benchmark runs once as a smoke test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import des, native, topology, workload
from sim.load import load

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.fixture(scope="module")
def icb():
    scenario = load(SCENARIOS / "icb.yaml")
    topo = topology.build(scenario)
    trace = workload.generate(scenario, topo, scenario.seed)
    window = des.RunWindow(scenario.window.start, scenario.window.end + scenario.drain, scenario.utilisation_bin)
    return trace, topo, window


def test_icb_simulation_speed(benchmark, icb):
    trace, topo, window = icb
    result = benchmark.pedantic(des.run, args=(trace, topo, window), rounds=5, iterations=1, warmup_rounds=1)
    assert len(result.records) == len(trace)
    benchmark.extra_info["sessions"] = len(trace)
    benchmark.extra_info["events"] = result.events
    benchmark.extra_info["simulator"] = native.describe()  # make bench: compiled
    if benchmark.stats is not None:  # absent under --benchmark-disable
        mean_s = benchmark.stats.stats.mean
        benchmark.extra_info["sessions_per_s"] = round(len(trace) / mean_s)
        benchmark.extra_info["events_per_s"] = round(result.events / mean_s)


def test_icb_trace_generation_speed(benchmark):
    scenario = load(SCENARIOS / "icb.yaml")
    topo = topology.build(scenario)
    trace = benchmark.pedantic(workload.generate, args=(scenario, topo, scenario.seed), rounds=5, iterations=1)
    benchmark.extra_info["sessions"] = len(trace)
