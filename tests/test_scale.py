"""Sharded runs: exact equality with one process, resume without redoing shards, clear errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sim import pipeline, scale, topology
from sim.errors import TestbedError
from sim.load import load


@pytest.fixture
def small_shards(monkeypatch):
    # Shards are planned on a whole day's sessions (43,000 for icb): 8 shards, of ~540 sessions in the first hour.
    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 5000)


@pytest.fixture(scope="module")
def icb_morning(tmp_path_factory):
    """``icb`` for 08:00-09:00 only: every site and link of the ICB, its busiest hour's sessions, a tenth the time."""
    from conftest import ROOT
    text = (ROOT / "scenarios" / "icb.yaml").read_text()
    assert 'window: {start: "08:00", end: "18:30"}' in text
    path = tmp_path_factory.mktemp("scenarios") / "icb.yaml"
    path.write_text(text.replace('window: {start: "08:00", end: "18:30"}', 'window: {start: "08:00", end: "09:00"}'))
    return path


@pytest.fixture(scope="module")
def single(icb_morning):
    return pipeline.simulate(load(icb_morning))


def test_shards_keep_sites_of_a_shared_link_together(scenarios_dir):
    scenario = load(scenarios_dir / "icb.yaml")
    topo = topology.build(scenario)
    shards = scale.plan_shards(scenario, topo, sessions_per_shard=500)
    assert len(shards) > 10
    covered = [label for s in shards for label in range(s.first, s.last + 1)]
    assert covered == topo.sites.index.tolist()
    gpon = topo.sites[topo.sites["aggregation"] != ""]
    homes = {s.index for s in shards for label in gpon.index if s.first <= label <= s.last}
    assert len(homes) == 1


def _kill_a_worker_after_the_first_shard(folder, killed: list) -> None:
    """SIGKILL one Dask worker process of this process once a shard is done, as the OOM killer would."""
    import psutil
    for _ in range(1200):  # a bounded wait (2 minutes)
        if any(folder.rglob("*.done.json")):
            break
        time.sleep(0.1)
    workers = [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    if workers:
        workers[0].kill()
        killed.append(workers[0].pid)


def test_two_worker_cluster_gives_the_single_process_records_though_a_worker_is_killed(small_shards, icb_morning,
                                                                                       tmp_path, single):
    # One worker process is killed (SIGKILL) after the first shard: its nanny starts another and the scheduler
    # runs its shard again, so the run still gives exactly the single process's tables.
    scenario = load(icb_morning)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_after_the_first_shard, args=(tmp_path, killed))
    killer.start()
    try:
        sharded = pipeline.run(icb_morning, out=tmp_path, png=False, workers=2)
    finally:
        killer.join()
    assert killed, "no Dask worker process was found to kill"
    assert scale.shard_count(scenario, topology.build(scenario)) >= 6
    pd.testing.assert_frame_equal(sharded.result.records, single.result.records)
    pd.testing.assert_frame_equal(sharded.trace, single.trace)
    key = ["link", "bin_start_s"]
    pd.testing.assert_frame_equal(sharded.result.links.sort_values(key).reset_index(drop=True),
                                  single.result.links.sort_values(key).reset_index(drop=True))
    assert not (sharded.folder / scale.SHARDS_DIR).exists()


def _worker_state(dask_worker) -> tuple[list[str], str | None]:
    import os
    return sorted(dask_worker.periodic_callbacks), os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_embedded_cluster_workers_run_without_dasks_profiler_and_allocator_setting(monkeypatch):
    # Dask's statistical profiler samples a worker's stack every 10 ms for a dashboard no run shows, and Dask sets
    # MALLOC_TRIM_THRESHOLD_=65536 in the environment its nannies start workers in (freed memory goes back to the
    # kernel at once, and is faulted in again by the next shard): the embedded cluster's workers start without
    # either, and so do those their nannies start again. The command's own process keeps Dask's defaults, so
    # without the cluster's settings the workers would have both.
    import dask
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with scale.cluster(workers=2) as client:
        first = client.run(_worker_state)
        client.restart()
        again = client.run(_worker_state)
    assert len(first) == 2 and len(again) == 2
    assert set(first).isdisjoint(again)  # new worker processes
    for names, trim in [*first.values(), *again.values()]:
        assert "heartbeat" in names and "profile" not in names and "profile-cycle" not in names, names
        assert trim is None
    assert dask.config.get("distributed.worker.profile.enabled") is True
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"] == 65536


def test_interrupted_run_resumes_without_redoing_finished_shards(small_shards, icb_morning, tmp_path,
                                                                 monkeypatch, single):
    real, first_calls, resumed_calls = scale.run_shard, [], []

    def interrupted_after_three(*args):
        if len(first_calls) == 3:
            raise KeyboardInterrupt
        first_calls.append(args[2].index)
        return real(*args)

    monkeypatch.setattr(scale, "run_shard", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(icb_morning, out=tmp_path, png=False, workers=0)
    (partial,) = (tmp_path / "icb").iterdir()
    assert partial.name.startswith(".") and partial.name.endswith(".partial")  # never looks finished
    assert len(list((partial / scale.SHARDS_DIR).glob("*.done.json"))) == 3

    monkeypatch.setattr(scale, "run_shard", lambda *args: resumed_calls.append(args[2].index) or real(*args))
    outcome = pipeline.run(icb_morning, out=tmp_path, png=False, workers=0, resume=partial)
    total = scale.shard_count(outcome.scenario, outcome.topology)
    assert set(resumed_calls).isdisjoint(first_calls) and len(resumed_calls) == total - 3
    pd.testing.assert_frame_equal(outcome.result.records, single.result.records)
    assert not partial.exists() and (outcome.folder / "meta.json").is_file()


def test_resuming_with_another_seed_is_refused(small_shards, icb_morning, tmp_path, monkeypatch):
    real, calls = scale.run_shard, []

    def interrupted_after_one(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(args[2].index)
        return real(*args)

    monkeypatch.setattr(scale, "run_shard", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(icb_morning, out=tmp_path, png=False, workers=0)
    (partial,) = (tmp_path / "icb").iterdir()
    with pytest.raises(TestbedError, match="holds shards of another run"):
        pipeline.run(icb_morning, out=tmp_path, png=False, workers=0, resume=partial, seed=7)


def test_resume_refuses_a_finished_run(scenarios_dir, tmp_path):
    finished = pipeline.run(scenarios_dir / "ci-smoke.yaml", out=tmp_path, png=False).folder
    with pytest.raises(TestbedError, match="finished already"):
        pipeline.run(scenarios_dir / "ci-smoke.yaml", out=tmp_path, png=False, resume=finished)


def test_unreachable_scheduler_fails_within_seconds(scenarios_dir, tmp_path):
    started = time.monotonic()
    with pytest.raises(TestbedError, match="cannot reach the Dask scheduler"):
        pipeline.run(scenarios_dir / "ci-smoke.yaml", out=tmp_path, png=False, scheduler="tcp://127.0.0.1:9")
    assert time.monotonic() - started < 30
    assert not list(tmp_path.rglob("meta.json"))


def test_sharded_folder_holds_the_single_process_files(small_shards, icb_morning, tmp_path):
    # Shards judge their own sessions and sites; merged, every table and verdict file is the single-process one.
    one = pipeline.run(icb_morning, out=tmp_path / "one", png=False).folder
    outcome = pipeline.run(icb_morning, out=tmp_path / "sharded", png=False, workers=0)
    sharded = outcome.folder
    # The outcome of a sharded run reads its tables from the folder when asked: ordinary frames, the files' own.
    assert outcome.sessions == len(pd.read_parquet(one / "trace.parquet"))
    pd.testing.assert_frame_equal(outcome.trace, pd.read_parquet(sharded / "trace.parquet"))
    pd.testing.assert_frame_equal(outcome.verdicts.sessions, pd.read_parquet(sharded / "session_verdicts.parquet"))
    for name in ("trace.parquet", "records.parquet", "session_verdicts.parquet", "links.parquet"):
        # The merge writes text as the shards' codes: the files still say what pandas wrote (large_string, and
        # pandas' metadata), so any Parquet reader gets the single process's types.
        assert pq.read_schema(sharded / name).equals(pq.read_schema(one / name), check_metadata=True), name
    for name in ("trace.parquet", "records.parquet", "session_verdicts.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(sharded / name), pd.read_parquet(one / name), check_exact=True)
    key = ["link", "bin_start_s"]
    pd.testing.assert_frame_equal(pd.read_parquet(sharded / "links.parquet").sort_values(key).reset_index(drop=True),
                                  pd.read_parquet(one / "links.parquet").sort_values(key).reset_index(drop=True))
    for name in ("verdicts.csv", "site_verdicts.csv", "verdicts.json", "sites.csv"):
        assert (sharded / name).read_bytes() == (one / name).read_bytes(), name
    # Row groups give the bounds of every column of the links (read by site), of the numbers only elsewhere.
    for name, bounded in (("records.parquet", {"session_id", "start_s"}), ("links.parquet", {"site", "bin_start_s"})):
        group = pq.ParquetFile(sharded / name).metadata.row_group(0)
        stats = {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(group.num_columns)}
        assert all(stats[column] for column in bounded), name
        assert stats["site"] == (name == "links.parquet"), name


def test_sharded_run_writes_its_folder_without_reading_its_session_tables(small_shards, icb_morning, tmp_path,
                                                                          monkeypatch):
    # The merged tables are millions of rows for an estate (england's records: 3 GB as frames): writing the rest of
    # the folder and the report must not read them whole in the main process. Every read of them is counted.
    reads = []
    read = pipeline.Stored._read
    monkeypatch.setattr(pipeline.Stored, "_read", lambda self, name: reads.append(name) or read(self, name))
    outcome = pipeline.run(icb_morning, out=tmp_path, png=False, workers=0)
    assert reads == []
    assert (outcome.folder / "report.html").is_file() and not (outcome.folder / "calls.parquet").exists()
    assert len(outcome.result.records) == outcome.sessions > 0  # asked for afterwards, it is read then
    assert reads == ["records", "links"]


def test_merge_in_small_blocks_across_row_groups_gives_the_single_process_tables(small_shards, icb_morning,
                                                                                tmp_path, single, monkeypatch):
    # The merge streams: blocks of 997 sessions, each read from every shard's row groups of 128 rows (a block
    # ends inside row groups, and a shard's rows of one block span several). The tables equal the single process's.
    from sim import merge, shard_files
    monkeypatch.setattr(merge, "BLOCK_ROWS", 997)
    monkeypatch.setattr(shard_files, "ROW_GROUP_ROWS", 128)
    outcome = pipeline.run(icb_morning, out=tmp_path, png=False, workers=0)
    assert outcome.sessions == len(single.trace) > 5 * 997
    pd.testing.assert_frame_equal(outcome.result.records, single.result.records, check_exact=True)
    pd.testing.assert_frame_equal(outcome.trace, single.trace, check_exact=True)
    pd.testing.assert_frame_equal(outcome.verdicts.sessions, single.verdicts.sessions, check_exact=True)
    key = ["link", "bin_start_s"]
    pd.testing.assert_frame_equal(outcome.result.links.sort_values(key).reset_index(drop=True),
                                  single.result.links.sort_values(key).reset_index(drop=True))
    _check_bounds_select_stretches_of_the_day(outcome.folder / "records.parquet", single.result.records)


def _check_bounds_select_stretches_of_the_day(path, records: pd.DataFrame) -> None:
    """Each row group of the merged records has bounds of start_s and session_id (its own rows' min and max, in
    order from group to group), and none of a column whose bounds would span the day in every group."""
    import pyarrow.parquet as pq
    meta = pq.ParquetFile(path).metadata
    names = meta.schema.to_arrow_schema().names
    first = 0
    assert meta.num_row_groups > 5
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        rows = records.iloc[first:first + group.num_rows]
        first += group.num_rows
        for column in ("start_s", "session_id"):
            stats = group.column(names.index(column)).statistics
            assert (stats.min, stats.max) == (rows[column].min(), rows[column].max())
        for column in ("duration_s", "site"):
            stats = group.column(names.index(column)).statistics
            assert stats is None or not stats.has_min_max
    assert first == len(records)


def test_densest_shards_start_first(scenarios_dir):
    scenario = load(scenarios_dir / "icb.yaml")
    topo = topology.build(scenario)
    shards = scale.plan_shards(scenario, topo, sessions_per_shard=2500)
    per_site = scale._expected_per_site(scenario, topo)
    density = {s.index: sum(per_site[s.first:s.last + 1]) / (s.last - s.first + 1) for s in shards}
    started = scale.densest_first(scenario, topo, shards)
    assert sorted(s.index for s in started) == [s.index for s in shards]
    assert [density[s.index] for s in started] == sorted(density.values(), reverse=True)


def test_site_index_gives_each_session_its_sites_row_label():
    # A shard's sites keep the whole topology's row labels (here 7, 8, 9): each session gets its site's label.
    sites = pd.DataFrame({"site": ["gp-b", "gp-a", "acute-1"]}, index=[7, 8, 9])
    sessions = pd.Series(["acute-1", "gp-a", "gp-a", "gp-b"], dtype="str")
    assert scale.site_index(sessions, sites).tolist() == [9, 8, 8, 7]
    assert scale.site_index(sessions, sites).dtype == "int64"


def test_site_index_refuses_a_site_not_in_the_shard():
    sites = pd.DataFrame({"site": ["gp-a"]}, index=[3])
    with pytest.raises(ValueError, match="'gp-z'"):
        scale.site_index(pd.Series(["gp-a", "gp-z"], dtype="str"), sites)


def test_merge_order_is_a_stable_sort_by_start_then_site():
    # Two shards' rows (each in start order), with ties at 3600 s across sites and within one site: worked by hand,
    # the order is start time, then site, then the rows' own order.
    from sim import merge
    start_s = np.array([10.0, 3600.0, 3600.0, 5.0, 3600.0, 3600.0, 20.0])
    site_index = np.array([4, 4, 2, 7, 7, 1, 9])
    assert merge.sort_keys(start_s, site_index).tolist() == [3, 0, 6, 5, 2, 1, 4]
