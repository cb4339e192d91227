"""The cases the compiled and interpreted simulators are compared on (``tests/test_native.py``).

``python native_cases.py draw INPUTS`` draws them and pickles their inputs; ``python native_cases.py replay INPUTS
OUT`` replays those inputs in this process's simulator (compiled or interpreted: ``TESTBED_INTERPRETED``,
:mod:`sim.native`) and pickles its tables. The cases: random pairs of practices with transfers on every kind of
connection, calls, fixed-rate streams and line changes (the shortcuts' property test's strategies), a link crowded
past the default threshold (:mod:`sim.des.crowd`), and shipped scenarios (calls by the thousand, a failover, shared
GPON trees).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import simulate, site, topology, trace, transfer  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_des_shortcuts import calls, changes, fixed_streams, sites, transfers  # noqa: E402

from sim import native, pipeline  # noqa: E402
from sim.load import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RANDOM_CASES = 60
SCENARIOS = ("ci-smoke", "fttc-failover", "estate-sample", "baseline-2019")


def draw() -> list[tuple]:
    """The random cases' inputs: (topology, trace, link changes) each."""
    drawn: list[tuple] = []

    @settings(max_examples=RANDOM_CASES, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(a=sites, b=sites, link_changes=changes,
           sessions=st.lists(st.one_of(transfers, calls, fixed_streams), min_size=1, max_size=30))
    def two_practices(a, b, link_changes, sessions):
        drawn.append((topology(a | {"site": "a"}, b | {"site": "b"}, cloud_rtt_s=0.01), trace(*sessions),
                      link_changes))

    two_practices()
    return drawn


def replay(drawn: list[tuple]) -> list[tuple]:
    """Each case's (records, link series, events), in order: the drawn ones, the crowd, the scenarios."""
    tables = []
    for topo, frame, link_changes in drawn:
        result = simulate(topo, frame, horizon_s=400.0, bin_s=10.0, link_changes=link_changes)
        tables.append((result.records, result.links, result.events))
    result = crowded()
    tables.append((result.records, result.links, result.events))
    for name in SCENARIOS:
        outcome = pipeline.simulate(load(ROOT / "scenarios" / f"{name}.yaml"), 1)
        tables.append((outcome.result.records, outcome.result.links, outcome.result.events))
    return tables


def crowded():
    """150 transfers arriving within 1.5 s on one 4 Mbit/s line: a crowd, then objects again as they leave."""
    line = topology(site("a", down_bps=4e6, up_bps=4e6, rtt_s=0.02, buffer_bytes=60_000))
    return simulate(line, trace(*(transfer("a", 0.01 * k, 10e3 * (k + 1)) for k in range(150))))


if __name__ == "__main__":
    if sys.argv[1] == "draw":
        Path(sys.argv[2]).write_bytes(pickle.dumps(draw()))
    else:
        found = {"compiled": native.in_use(), "tables": replay(pickle.loads(Path(sys.argv[2]).read_bytes()))}
        Path(sys.argv[3]).write_bytes(pickle.dumps(found))
