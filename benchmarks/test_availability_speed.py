"""Availability study speed: sampled years of line faults for one site, and for every site of ``england``.

The issue's budgets: a single site's year in under 5 s; a sampled year for ``england`` (every site, its faults)
within 10 minutes on 2 cores. The first three time the sampling of faults (sim.faults) and one site's whole study
(in CPU seconds); the last times the whole
study of ``england`` as ``run --year`` runs it after the run: its trace, the backup day (every site's day again on
a 4G backup, in shards on a local 2-worker Dask cluster) and the sampling and tables. The ``england`` ones run
only under ``make bench``; under ``make test`` the one-site benchmark runs once as a smoke test.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from sim import availability, faults, topology
from sim.load import load

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
YEARS = 200


def _sample(scenario, sites, backup: str):
    cat = scenario.catalogue
    chosen = cat.backups[backup]
    technology = cat.profiles[chosen.profile].technology if chosen.profile else None
    return faults.sample_sites(sites, cat.faults, chosen, technology, YEARS, (1,))


def test_one_sites_years_of_faults_speed(benchmark):
    scenario = load(SCENARIOS / "ci-smoke.yaml")
    sites = topology.build(scenario).sites.iloc[:1]
    sampled = benchmark.pedantic(_sample, args=(scenario, sites, "4g_router"), rounds=5, iterations=1)
    assert sampled.down_h.shape == (1, YEARS)


@pytest.mark.benchmark(timer=time.process_time)  # CPU time: the machine is shared
def test_one_sites_whole_year_study_speed(benchmark):
    """``availability.study`` of one site on a 4G backup: its trace, the replays on the backup (its window and the
    top-up to 40 site-windows, sim.backup_windows) and 200 sampled years."""
    scenario = load(SCENARIOS / "ci-smoke.yaml")
    one = scenario.model_copy(update={"sites": scenario.sites[:1], "known_failures": ()})
    found = benchmark.pedantic(availability.study, args=(one, 1), kwargs={"years": YEARS, "backup": "4g_router"},
                               rounds=3, iterations=1)
    assert found.sites["site"].nunique() == 1 and (found.classes["backup_windows"] > 1).all()


@pytest.mark.parametrize("backup", ["none", "4g_router"])
def test_england_years_of_faults_speed(benchmark, request, backup):
    if request.config.getoption("benchmark_disable"):
        pytest.skip("estate-scale benchmark (seconds to minutes): run it with `make bench`")
    scenario = load(SCENARIOS / "england.yaml")
    sites = topology.build(scenario).sites
    sampled = benchmark.pedantic(_sample, args=(scenario, sites, backup), rounds=1, iterations=1)
    assert sampled.down_h.shape == (len(sites), YEARS)
    benchmark.extra_info["sites"] = len(sites)
    benchmark.extra_info["site_years"] = len(sites) * YEARS


@pytest.mark.parametrize("backup", ["none", "4g_router"])
def test_england_year_study_end_to_end(benchmark, request, backup):
    """``availability.study`` of ``england``: its trace, the backup day (sharded; none without a backup), 200 years."""
    if request.config.getoption("benchmark_disable"):
        pytest.skip("estate-scale benchmark (minutes): run it with `make bench`")
    from test_estate import PeakMemory
    scenario = load(SCENARIOS / "england.yaml")
    with PeakMemory() as memory:
        found = benchmark.pedantic(availability.study, args=(scenario, scenario.seed),
                                   kwargs={"years": YEARS, "backup": backup}, rounds=1, iterations=1)
    assert found.years == YEARS and found.sites["site"].nunique() == len(topology.build(scenario).sites)
    benchmark.extra_info.update(sites=found.sites["site"].nunique(), years=YEARS, backup=backup,
                                peak_rss_gb=round(memory.peak_bytes / 1e9, 2), budget="10 min on 2 cores",
                                load_average=[round(x, 2) for x in psutil.getloadavg()])
