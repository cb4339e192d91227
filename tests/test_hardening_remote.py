"""A Dask worker that cannot see the run's folder (another machine, no shared filesystem) sends its shards back.

The worker runs in its own mount namespace with an empty tmpfs over the test's folder: it is on this machine, but
sees none of the files the run writes, as a worker on another machine would not. Needs root (``unshare -m``).
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

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare (a worker in its own mount namespace)")


@pytest.fixture
def blind_worker(tmp_path):
    """A scheduler here and one worker that sees an empty folder where ``tmp_path`` is: the scheduler's address."""
    from dask.distributed import Client, LocalCluster
    dask = shutil.which("dask", path=os.path.dirname(sys.executable))
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=None) as local:
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
