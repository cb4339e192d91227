"""Remote workers: a scheduler's workers are checked before shards are sent, and need no shared filesystem.

A worker that cannot see the run's folder (another machine) sends its shards back: it runs in its own mount
namespace with an empty tmpfs over the test's folder (root, ``unshare -m``). A scheduler with no workers, or with
workers running another copy of the testbed, is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT

from sim import pipeline, scale
from sim.errors import TestbedError

needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                   reason="needs root and unshare (a worker in its own mount namespace)")


@pytest.fixture
def blind_worker(tmp_path):
    """A scheduler here and one worker that sees an empty folder where ``tmp_path`` is: the scheduler's address."""
    from dask.distributed import Client, LocalCluster
    dask = shutil.which("dask", path=os.path.dirname(sys.executable))
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address="127.0.0.1:0") as local:
        command = (f"mount -t tmpfs none {tmp_path} && exec {dask} worker {local.scheduler_address} "
                   "--nworkers 1 --nthreads 1 --no-dashboard --no-nanny")
        worker = subprocess.Popen(["unshare", "-m", "sh", "-c", command], env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            with Client(local) as client:
                client.wait_for_workers(1, timeout=120)
                marker = tmp_path / "marker"
                marker.write_text("seen here")
                assert not scale.workers_see(client, marker), "the worker sees this folder: nothing to test"
            yield local.scheduler_address
        finally:
            worker.terminate()
            worker.wait(timeout=60)


@needs_unshare
def test_shards_of_a_worker_without_the_folder_come_back_and_give_the_single_process_tables(
        blind_worker, tmp_path, scenarios_dir, monkeypatch):
    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 100)  # ci-smoke's three sites: three shards
    smoke = scenarios_dir / "ci-smoke.yaml"
    remote = pipeline.run(smoke, out=tmp_path / "remote", png=False, scheduler=blind_worker)
    alone = pipeline.run(smoke, out=tmp_path / "alone", png=False)
    assert remote.shards == {"total": 3, "reused": 0, "run": 3, "compute_s": remote.shards["compute_s"]}
    for name in ("trace.parquet", "records.parquet", "session_verdicts.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(remote.folder / name), pd.read_parquet(alone.folder / name),
                                      check_exact=True)
    for name in ("verdicts.csv", "site_verdicts.csv"):
        assert (remote.folder / name).read_bytes() == (alone.folder / name).read_bytes(), name


def test_a_scheduler_without_workers_is_refused_naming_it(tmp_path, scenarios_dir, monkeypatch):
    from dask.distributed import LocalCluster

    from sim import cluster
    monkeypatch.setattr(cluster, "WORKERS_WAIT_S", 1.0)
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address="127.0.0.1:0") as local:
        with pytest.raises(TestbedError, match=r"has no workers .*start some there: dask worker tcp://"):
            pipeline.run(scenarios_dir / "ci-smoke.yaml", out=tmp_path, png=False, scheduler=local.scheduler_address)
    assert list(tmp_path.iterdir()) == []


def test_workers_running_another_copy_of_the_testbed_are_refused(tmp_path, scenarios_dir):
    from dask.distributed import Client, LocalCluster
    other = tmp_path / "other"
    shutil.copytree(ROOT / "sim", other / "sim", ignore=shutil.ignore_patterns("__pycache__"))
    (other / "sim" / "units.py").write_text((other / "sim" / "units.py").read_text() + "\n# changed\n")
    dask = shutil.which("dask", path=os.path.dirname(sys.executable))
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address="127.0.0.1:0") as local:
        worker = subprocess.Popen([dask, "worker", local.scheduler_address, "--nthreads", "1", "--no-dashboard",
                                   "--no-nanny"], env={**os.environ, "PYTHONPATH": str(other)}, cwd=other,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with Client(local) as client:
                client.wait_for_workers(1, timeout=120)
            with pytest.raises(TestbedError, match=r"1 Dask worker\(s\) of .* run another testbed"):
                pipeline.run(scenarios_dir / "ci-smoke.yaml", out=tmp_path / "out", png=False,
                             scheduler=local.scheduler_address)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    assert not (tmp_path / "out").exists()
