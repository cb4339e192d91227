"""The engines' one contract (sim.engines): one call shape, one result type, nothing random in the simulator."""

from __future__ import annotations

import inspect

import pandas as pd
from helpers import call, site, topology, trace, transfer

from sim import des, engines
from sim.emu import engine as emu


def _parameters(run) -> tuple[list[str], dict[str, object]]:
    """A run function's positional parameter names, and its keyword-only ones with their defaults."""
    params = inspect.signature(run).parameters.values()
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    return positional, {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_both_engines_take_trace_topology_then_seed_work_dir_and_link_changes_by_keyword():
    des_positional, des_keywords = _parameters(des.run)
    emu_positional, emu_keywords = _parameters(emu.run)
    assert des_positional == ["trace", "topology", "window"]
    assert emu_positional == ["trace", "topo", "scenario"]  # the scenario in the window's place (its emulation)
    for keywords in (des_keywords, emu_keywords):
        assert {"seed", "work_dir", "link_changes", "progress"} <= keywords.keys()
        assert keywords["link_changes"] is None and keywords["progress"] is None


def test_the_emulations_result_is_the_shared_result_with_its_extras():
    assert issubclass(emu.EmuResult, engines.Result) and des.Result is engines.Result
    records = pd.DataFrame({"site": ["a"]})
    done = emu.EmuResult(records, records, slice=None, topology=None, meta={"engine": "emu"})
    assert done.events == 0 and done.calls is None and done.meta == {"engine": "emu"}


def test_the_simulator_returns_the_shared_result_and_its_seed_changes_nothing(tmp_path):
    topo = topology(site("a", down_bps=8e6, up_bps=1e6, rtt_s=0.02))
    sessions = trace(transfer("a", 0.0, 2e6), transfer("a", 1.0, 3e5, "up"), call("a", 0.5, 20.0))
    window = des.RunWindow(0.0, 120.0, 10.0)
    first = des.run(sessions, topo, window, seed=1, work_dir=tmp_path)
    second = des.run(sessions, topo, window, seed=2)
    assert isinstance(first, engines.Result) and first.events > 0
    assert len(first.records) == 3 and first.records["completed"].all()
    pd.testing.assert_frame_equal(first.records, second.records, check_exact=True)
    pd.testing.assert_frame_equal(first.links, second.links, check_exact=True)
    assert first.events == second.events
    assert list(tmp_path.iterdir()) == []  # the simulator keeps no files
