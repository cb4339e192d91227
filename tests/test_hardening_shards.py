"""Shards that prove themselves: a shard whose files no longer match its checksums is run again on resume."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from sim import pipeline, scale, shard_files


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 100)  # ci-smoke's three sites (~140 sessions each): 3 shards


@pytest.fixture
def smoke(scenarios_dir):
    return scenarios_dir / "ci-smoke.yaml"


@pytest.fixture
def uninterrupted(smoke, tmp_path, small_shards):
    """The same run, sharded the same way, never interrupted: its folder."""
    return pipeline.run(smoke, out=tmp_path / "whole", png=False, workers=0).folder


def interrupt_after(count: int, monkeypatch) -> list[int]:
    """Make the shards after the first ``count`` raise KeyboardInterrupt; return the indexes that ran."""
    real, ran = scale.run_shard, []

    def limited(*args):
        if len(ran) == count:
            raise KeyboardInterrupt
        ran.append(args[2].index)
        return real(*args)

    monkeypatch.setattr(scale, "run_shard", limited)
    return ran


def spoil_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def spoil_flip_a_byte(path):  # same size, other content: only the checksum tells
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def spoil_delete(path):
    path.unlink()


@pytest.mark.parametrize("spoil", [spoil_truncate, spoil_flip_a_byte, spoil_delete])
def test_resume_reruns_a_shard_whose_file_no_longer_matches_and_gives_the_uninterrupted_tables(
        smoke, tmp_path, monkeypatch, small_shards, uninterrupted, spoil):
    ran = interrupt_after(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(smoke, out=tmp_path / "run", png=False, workers=0)
    (partial,) = (tmp_path / "run" / "ci-smoke").iterdir()
    spoiled = ran[0]
    spoil(partial / scale.SHARDS_DIR / f"shard-{spoiled:05d}.records.arrow")

    resumed_calls = []
    monkeypatch.undo()
    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 100)
    real = scale.run_shard
    monkeypatch.setattr(scale, "run_shard", lambda *args: resumed_calls.append(args[2].index) or real(*args))
    outcome = pipeline.run(smoke, out=tmp_path / "run", png=False, workers=0, resume=partial)

    assert sorted(resumed_calls) == sorted({0, 1, 2} - set(ran) | {spoiled})
    for name in ("trace.parquet", "records.parquet", "session_verdicts.parquet", "links.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(outcome.folder / name),
                                      pd.read_parquet(uninterrupted / name), check_exact=True)
    for name in ("verdicts.csv", "site_verdicts.csv"):
        assert (outcome.folder / name).read_bytes() == (uninterrupted / name).read_bytes(), name


def test_resumed_run_says_so_and_counts_the_whole_run(smoke, tmp_path, monkeypatch, small_shards, uninterrupted):
    interrupt_after(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(smoke, out=tmp_path / "run", png=False, workers=0)
    (partial,) = (tmp_path / "run" / "ci-smoke").iterdir()
    monkeypatch.undo()
    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 100)
    folder = pipeline.run(smoke, out=tmp_path / "run", png=False, workers=0, resume=partial).folder

    meta, whole = (json.loads((f / "meta.json").read_text()) for f in (folder, uninterrupted))
    assert meta["resumed"] is True and whole["resumed"] is False
    assert meta["shards"]["total"] == whole["shards"]["total"] == 3
    assert (meta["shards"]["reused"], meta["shards"]["run"]) == (2, 1)
    assert (whole["shards"]["reused"], whole["shards"]["run"]) == (0, 3)
    assert meta["sessions"] == whole["sessions"] == len(pd.read_parquet(uninterrupted / "trace.parquet"))
    assert meta["events"] == whole["events"] > 0


def test_shard_files_are_checksummed_and_leave_no_temporary_file(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    path = tmp_path / "shards" / "t.parquet"
    digest = shard_files.write_parquet(frame, path)
    assert digest == {"bytes": len(path.read_bytes()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]
    done = tmp_path / "shards" / "t.done.json"
    shard_files.write_json(done, {"index": 0, "files": {"t": digest}})
    assert shard_files.verified(done, {"t": path}) == {"index": 0, "files": {"t": digest}}
    assert shard_files.verified(done, {"t": path, "u": tmp_path / "u.parquet"}) is None  # a file it never listed
    done.write_text("{not json")
    assert shard_files.verified(done, {"t": path}) is None


@pytest.mark.parametrize("damage", ['{"scenario": "ci-smo', "[]", ""])
def test_resume_of_a_folder_whose_shard_plan_is_damaged_exits_2_naming_it(smoke, tmp_path, monkeypatch,
                                                                         small_shards, damage):
    from typer.testing import CliRunner

    from sim.cli import app
    interrupt_after(1, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(smoke, out=tmp_path, png=False, workers=0)
    (partial,) = (tmp_path / "ci-smoke").iterdir()
    (partial / scale.PLAN_FILE).write_text(damage)
    result = CliRunner().invoke(app, ["run", str(smoke), "--resume", str(partial), "--workers", "0", "--no-png"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"{partial / scale.PLAN_FILE}:" in said and "start the run afresh" in said and "Traceback" not in said
    assert "finish it with" not in said  # no advice to resume what cannot be resumed


def test_a_sharded_run_that_fails_after_a_shard_names_what_it_kept(smoke, tmp_path, monkeypatch, small_shards):
    from typer.testing import CliRunner

    from sim.cli import app
    real, ran = scale.run_shard, []

    def fails_second(*args):
        if ran:
            raise RuntimeError("a bug in a shard")
        ran.append(args[2].index)
        return real(*args)

    monkeypatch.setattr(scale, "run_shard", fails_second)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    result = CliRunner().invoke(app, ["run", str(smoke), "--out", str(tmp_path / "out"), "--workers", "0",
                                      "--no-png"])
    assert result.exit_code == 3, result.output
    (partial,) = (tmp_path / "out" / "ci-smoke").iterdir()
    said = " ".join(result.output.split())
    assert "RuntimeError: a bug in a shard" in said and "Traceback" not in said
    assert f"the finished shards are kept in {partial}; once fixed, finish it with: testbed run {smoke} --resume " \
           f"{partial} --workers 0" in said


def test_work_meanwhile_runs_beside_the_block_and_is_waited_for():
    # The merged shard files are removed on a thread of their own while the verdicts and report are written: the
    # work runs while the block does (it waits for the block's signal), and the block's end waits for it.
    import threading
    signal, done = threading.Event(), []

    def work():
        assert signal.wait(timeout=30)
        done.append(threading.current_thread().name)

    with pipeline._meanwhile(work):
        signal.set()
    assert done == ["testbed-meanwhile"]


def test_work_meanwhile_that_fails_raises_after_the_block():
    ran = []

    def work():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"), pipeline._meanwhile(work):
        ran.append(True)
    assert ran == [True]


def test_a_sharded_run_leaves_no_shard_files_behind(uninterrupted):
    assert (uninterrupted / "meta.json").is_file() and (uninterrupted / "records.parquet").is_file()
    assert not (uninterrupted / scale.SHARDS_DIR).exists() and not (uninterrupted / scale.PLAN_FILE).exists()
