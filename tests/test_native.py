"""The compiled simulator (sim/native.py) gives the interpreted one's tables, to the bit.

Each runs in a process of its own (a process imports one or the other), on the cases of ``native_cases.py``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import native_cases
import pandas as pd
import pytest

from sim import native, pipeline
from sim.des import crowd
from sim.des.group import Group
from sim.load import load

CASES = Path(__file__).parent / "native_cases.py"


def _cases(*args: str, interpreted: bool = True) -> None:
    env = {**os.environ, native.INTERPRETED_ENV: "1" if interpreted else "0"}
    done = subprocess.run([sys.executable, str(CASES), *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _replay(inputs: Path, interpreted: bool) -> dict:
    out = inputs.with_name("interpreted.pkl" if interpreted else "compiled.pkl")
    _cases("replay", str(inputs), str(out), interpreted=interpreted)
    return pickle.loads(out.read_bytes())


def test_the_compiled_simulator_gives_the_interpreted_ones_tables_to_the_bit(tmp_path):
    state = native.state()
    if state == "missing" and shutil.which("gcc") is None:
        pytest.skip("no C compiler (gcc): the simulator runs interpreted (make install compiles it where there is one)")
    assert state == "current", f"the compiled simulator is {state}: run `make install` (it compiles sim/des)"
    inputs = tmp_path / "inputs.pkl"
    _cases("draw", str(inputs))
    compiled, interpreted = _replay(inputs, interpreted=False), _replay(inputs, interpreted=True)
    assert compiled["compiled"] and not interpreted["compiled"]
    assert len(compiled["tables"]) == len(interpreted["tables"]) > 60
    with_streams = 0
    for (records, links, events), (records_i, links_i, events_i) in zip(compiled["tables"], interpreted["tables"]):
        pd.testing.assert_frame_equal(records, records_i, check_exact=True)
        pd.testing.assert_frame_equal(links, links_i, check_exact=True)
        assert events == events_i
        with_streams += (records["traffic"] == "stream").any()
    assert with_streams > 10  # the random cases hold calls and fixed-rate streams, not only transfers


def test_the_cases_take_the_crowded_failover_and_shared_link_paths(monkeypatch):
    # The comparison above holds only for the paths its cases take: the crowd case must form a crowd, and the
    # scenarios take a line change (fttc-failover) and shared links (estate-sample's GPON trees).
    taken = {"crowds": 0, "line changes": 0, "shared": 0}

    def counting(name, real):
        def counted(*args, **kwargs):
            taken[name] += 1
            return real(*args, **kwargs)
        return counted

    monkeypatch.setattr(crowd, "Crowd", counting("crowds", crowd.Crowd))
    monkeypatch.setattr(Group, "_line_changed", counting("line changes", Group._line_changed))
    monkeypatch.setattr(Group, "_reshare_shared", counting("shared", Group._reshare_shared))
    native_cases.crowded()
    for name in ("fttc-failover", "estate-sample"):
        pipeline.simulate(load(native_cases.ROOT / "scenarios" / f"{name}.yaml"), 1)
    assert not native.in_use() and all(taken.values()), taken


def test_the_compiled_modules_are_used_only_while_built_from_the_sources_as_they_are(tmp_path, monkeypatch):
    monkeypatch.setattr(native, "folder", lambda: tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # (enable() adds the build's shared library there)
    monkeypatch.delenv(native.INTERPRETED_ENV)
    search: list[str] = []
    assert native.state() == "missing" and not native.enable(search) and search == []
    assert native.describe() == ("simulator: interpreted (not compiled here: `make install` compiles it; the same "
                                 "records, more slowly)")
    (tmp_path / native.STAMP).write_text("0" * 64 + "\n")  # a build of other sources
    assert native.state() == "stale" and not native.enable(search) and search == []
    assert "compiled from other sources" in native.describe()
    (tmp_path / native.STAMP).write_text(native.digest() + "\n")
    assert native.state() == "current"
    monkeypatch.setenv(native.INTERPRETED_ENV, "1")
    assert not native.enable(search) and search == []
    assert native.describe() == "simulator: interpreted (TESTBED_INTERPRETED=1)"
    monkeypatch.setenv(native.INTERPRETED_ENV, "0")
    assert native.enable(search) and search == [str(tmp_path / "des")] and sys.path[-1] == str(tmp_path)


def test_the_digest_changes_with_any_source_of_the_simulator(tmp_path, monkeypatch):
    for path in native.DES.glob("*.py"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(native, "DES", tmp_path)
    before = native.digest()
    queueing = tmp_path / "queueing.py"
    queueing.write_text(queueing.read_text() + "\n# an edit\n")
    assert native.digest() != before
