"""The emulated slice (pure: no root): which sessions a window replays."""

from __future__ import annotations

import pytest

from sim import topology, workload
from sim.emu import window
from sim.load import load


def test_streams_under_way_when_the_window_opens_are_replayed_for_what_is_left(scenarios_dir):
    scenario = load(scenarios_dir / "ci-smoke.yaml", {"emulation.start": "08:30", "emulation.duration": "60s"})
    topo = topology.build(scenario)
    trace = workload.generate(scenario, topo, 1)
    chosen = window.choose(scenario, topo, trace)
    part = chosen.trace
    # The clinical-system aggregate of each practice runs 08:00-09:00 (one per site-hour): from the 08:30 window
    # it is replayed from 08:30 for its last 30 minutes, cut (as every call is) to end CALL_MARGIN_S before the
    # window and its drain: 60 s + 60 s - margin.
    clinical = part[part["app"] == "clinical_system"]
    assert len(clinical) == len(chosen.sites)
    left_s = min(1800.0, 60.0 + scenario.emulation.drain - window.CALL_MARGIN_S)
    assert set(clinical["start_s"]) == {8.5 * 3600} and set(clinical["duration_s"]) == {left_s}
    # Transfers that started before the window are not replayed; every session starts inside it.
    assert part["start_s"].between(8.5 * 3600, 8.5 * 3600 + 60, inclusive="left").all()
    started_before = trace[(trace["start_s"] < 8.5 * 3600) & trace["site"].isin(chosen.sites)]
    carried = started_before[(started_before["traffic"] == "stream")
                             & (started_before["start_s"] + started_before["duration_s"] > 8.5 * 3600)]
    assert set(part["session_id"]) >= set(carried["session_id"])
    assert not set(part["session_id"]) & set(started_before.loc[started_before["traffic"] == "transfer",
                                                                  "session_id"])
    assert part["duration_s"][part["traffic"] == "stream"].gt(0).all()
    assert len(part) == pytest.approx(len(set(part["session_id"])))
