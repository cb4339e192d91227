"""What the simulator hands its groups of each session (:mod:`sim.des`): a Session each, text as the trace has it."""

from __future__ import annotations

import math

import pandas as pd

from sim import des
from sim.des.session import Session


def test_a_session_names_each_column_and_then_its_paths_and_rtt():
    columns = [[k * 10 + j for j in range(2)] for k in range(len(des._SESSION_COLUMNS) + 3)]
    names = [*des._SESSION_COLUMNS, "up", "down", "rtt_s"]
    sessions = des._sessions(columns)
    assert [s._asdict() for s in sessions] == [dict(zip(names, row)) for row in zip(*columns)]
    assert all(type(s) is Session for s in sessions) and Session._fields == tuple(names)
    last = 10 * (len(des._SESSION_COLUMNS) + 2) + 1  # the second session's RTT: the last column's second value
    assert sessions[1].session_id == 1 and sessions[1].rtt_s == last


def test_text_comes_out_as_the_trace_holds_it_missing_values_included():
    text = pd.Series(["cloud", None, "home", "cloud"], dtype="str")
    values = des._as_list(text)
    assert values[::2] == ["cloud", "home"] and values[3] == "cloud" and math.isnan(values[1])
    numbers = des._as_list(pd.Series([1.5, float("nan")]))
    assert numbers[0] == 1.5 and math.isnan(numbers[1])


def test_the_collector_resumes_after_the_run_and_its_objects_are_let_go(monkeypatch):
    # The collector is paused for the run; when it resumes, the run's groups, flows and links are gone (let go by
    # reference counts as the run's body returned), so its first pass does not visit them all for nothing.
    import gc

    import helpers

    from sim.des import flows, group, links
    seen = []

    class Collector:  # gc as the simulator sees it: what is alive when it resumes the collector
        def __getattr__(self, name):
            return getattr(gc, name)

        def enable(self):
            seen.append(sum(isinstance(o, (group.Group, flows.Transfer, links.Link)) for o in gc.get_objects()))
            gc.enable()

    topo = helpers.topology(helpers.site("gp-a", down_bps=20e6, up_bps=2e6), helpers.site("gp-b", down_bps=8e6,
                                                                                     up_bps=1e6))
    sessions = helpers.trace(*(helpers.transfer(name, 5.0 * k, 2e6, direction) for k in range(20)
                               for name, direction in (("gp-a", "down"), ("gp-b", "up"))),
                             helpers.call("gp-a", 3.0, 60.0))
    monkeypatch.setattr(des, "gc", Collector())
    was = gc.isenabled()
    gc.enable()
    try:
        alive_before = sum(isinstance(o, (group.Group, flows.Transfer, links.Link)) for o in gc.get_objects())
        records = helpers.simulate(topo, sessions).records
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
    assert records["completed"].all() and len(records) == 41
    assert seen == [alive_before]
