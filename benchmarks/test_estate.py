"""Estate scale: `england` end to end on the embedded Dask cluster, growth with the number of sites, planner time.

These take minutes, so they run only when benchmarking (``make bench``); under ``make test`` (benchmarks
disabled) they are skipped. Peak memory is the largest total resident memory of this process and all its
descendants (the Dask nanny and worker processes), sampled every 0.2 s.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from sim import des, native, pipeline, plan, topology, workload
from sim.load import load

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.fixture(autouse=True)
def _only_when_benchmarking(request):
    if request.config.getoption("benchmark_disable"):
        pytest.skip("estate-scale benchmark (minutes): run it with `make bench`")


class PeakMemory:
    """Sample the total RSS (bytes) of this process tree in a thread; ``peak_bytes`` is the largest seen."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s, self.peak_bytes, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_england_end_to_end(benchmark, tmp_path, monkeypatch):
    """`testbed run scenarios/england.yaml` as the CLI does it: 2 workers, folder, verdicts, report (no PNG).

    On the simulator users run, compiled where built: the workers the run starts take this process's environment,
    where the suite's ``conftest.py`` asks for the interpreted one (its tests patch the simulator); run by hand
    without ``make bench``'s setting, this benchmark measured the interpreted simulator, saying nothing of it.
    """
    monkeypatch.setenv(native.INTERPRETED_ENV, "0")
    runs = iter(range(100))

    def run():
        return pipeline.run(SCENARIOS / "england.yaml", out=tmp_path / str(next(runs)), png=False, workers=2)

    with PeakMemory() as memory:
        outcome = benchmark.pedantic(run, rounds=1, iterations=1)
    import pyarrow.parquet as pq  # the tables stay in the folder: their rows counted from the files' metadata
    rows = {name: pq.ParquetFile(outcome.folder / f"{name}.parquet").metadata.num_rows for name in
            ("trace", "records", "session_verdicts")}
    assert set(rows.values()) == {outcome.sessions}, rows
    benchmark.extra_info.update(sessions=outcome.sessions, events=outcome.tables.events,
                                sites=len(outcome.topology.sites), peak_rss_gb=round(memory.peak_bytes / 1e9, 2),
                                budget="60 s wall, 4 GB on 2 cores", simulator=_workers_simulator(),
                                phases_s={k: round(v, 2) for k, v in (outcome.timings_s or {}).items()},
                                load_average=[round(x, 2) for x in psutil.getloadavg()])


def _workers_simulator() -> str:
    """Which simulator a run's workers import (they start with ``TESTBED_INTERPRETED=0``): :func:`native.state`'s."""
    return "compiled" if native.state() == "current" else f"interpreted (its build {native.state()})"


def _scaled(factor: int):
    scenario = load(SCENARIOS / "icb.yaml")
    groups = tuple(g.model_copy(update={"count": g.count * factor}) for g in scenario.sites)
    return scenario.model_copy(update={"sites": groups})


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_run_time_grows_linearly_with_sites(benchmark, factor):
    """`icb` with every site group's count multiplied: simulator wall time on one process."""
    scenario = _scaled(factor)
    topo = topology.build(scenario)
    trace = workload.generate(scenario, topo, scenario.seed)
    window = pipeline._window(scenario)
    result = benchmark.pedantic(des.run, args=(trace, topo, window), rounds=2, iterations=1)
    benchmark.extra_info.update(factor=factor, sites=len(topo.sites), sessions=len(trace), events=result.events,
                                sessions_per_s=round(len(trace) / benchmark.stats.stats.mean),
                                simulator=native.describe())


@pytest.mark.parametrize("site_class", ["gp_small", "gp_medium", "gp_large", "acute_site", "community_clinic"])
def test_planner_time_per_site_class(benchmark, site_class):
    """`testbed plan scenarios/digital-first.yaml --site-class C` with 5 seeds, in one process."""
    scenario = load(SCENARIOS / "digital-first.yaml")
    started = time.perf_counter()
    found = benchmark.pedantic(plan.plan, args=(scenario,), kwargs={"site_classes": [site_class], "seeds": 5},
                               rounds=1, iterations=1)
    runs = len(found.curve) + sum(len(p.shares) for p in found.products)
    benchmark.extra_info.update(site_class=site_class, simulated_runs=runs,
                                s_per_run=round((time.perf_counter() - started) / runs, 3),
                                product=(found.cheapest(site_class).product if found.cheapest(site_class) else ""))
