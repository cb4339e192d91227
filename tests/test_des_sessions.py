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
