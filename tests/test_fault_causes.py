"""A failing site's cause names the line fault its failed sessions met, not the line's own rate.

Spells are worked out by hand from the link-change tables' times (s from the window's start) and rates; the
example is scenarios/fttc-failover.yaml: FTTC 80/20 down at 10:05, the 4G backup router (29.5/7.6 Mbit/s,
faults.yaml, S1) after its 90 s failover, repaired at 10:40.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sim import answers, pipeline
from sim import linkchanges as lc
from sim.load import load
from sim.spells import fault_causes, spells

EXAMPLE = Path(__file__).resolve().parent.parent / "scenarios" / "fttc-failover.yaml"
TEN = 36000.0  # 10:00, s since midnight


def test_a_fault_with_a_backup_is_one_spell_from_the_fault_to_the_repair():
    table = lc.failover("a", lc.LineState(10e6, 10e6, 0.01, 0.0, 1e5, 1e5), lc.LineState(4e6, 1e6, 0.04, 0.0, 1e5, 1e5),
                        fault_at_s=100.0, repaired_at_s=400.0, failover_s=60.0)
    found = spells(table, TEN)
    assert found.to_dict("records") == [{
        "site": "a", "from_s": TEN + 100, "to_s": TEN + 400,  # 10:01:40 to 10:06:40
        "words": "the line's fault at 10:01: no line for 60 s, then the backup (4 Mbit/s down, 1 Mbit/s up), "
                 "until the repair at 10:06"}]


def test_a_fault_with_no_backup_and_one_not_repaired():
    none = lc.failover("b", lc.LineState(10e6, 10e6, 0.01, 0.0, 1e5, 1e5), None, fault_at_s=0.0,
                       repaired_at_s=2100.0, failover_s=90.0)
    open_ended = none.iloc[:1].assign(site="c")  # the fault row alone: down to the end of the run
    found = spells(pd.concat([none, open_ended], ignore_index=True), TEN).set_index("site")
    assert found.loc["b", "words"] == "the line's fault at 10:00: no line for 35 min, until the repair at 10:35"
    assert found.loc["c", "words"] == "the line's fault at 10:00: no line, not repaired in the run"
    assert found.loc["c", "from_s"] == TEN and math.isinf(found.loc["c", "to_s"])
    assert spells(None, TEN).empty and spells(lc.empty(), TEN).empty


def test_a_group_of_failed_sessions_is_put_down_to_a_spell_at_least_half_of_them_met():
    table = spells(lc.failover("a", lc.LineState(10e6, 10e6, 0.01, 0.0, 1e5, 1e5), None, fault_at_s=100.0,
                               repaired_at_s=400.0, failover_s=0.0), TEN)  # down 36100-36400
    rows = pd.DataFrame({"site": ["a", "a", "a", "a", "b"], "app": ["video", "video", "video", "calls", "video"],
                         "start_s": [36050.0, 36500.0, 36390.0, 36500.0, 36200.0],
                         "end_s": [36150.0, 36600.0, float("nan"), 36600.0, 36300.0]})
    # video at a: 36050-36150 overlaps it, 36500-36600 does not, 36390 (unfinished) does: 2 of 3. calls: 0 of 1.
    # Site b has no fault.
    assert fault_causes(rows, table, ["site", "app"]) == {("a", "video"): table["words"][0]}
    assert fault_causes(rows.iloc[[1, 2, 3]], table, ["site", "app"]) == {("a", "video"): table["words"][0]}
    assert fault_causes(rows.iloc[[0, 1, 1]].reset_index(drop=True), table, ["site", "app"]) == {}  # 1 of 3


def test_the_failover_example_blames_the_fault_not_the_lines_rate():
    outcome = pipeline.simulate(load(EXAMPLE))
    failing = answers.failing_sites(outcome.verdicts.sites, outcome.topology.sites)
    fault = ("the line's fault at 10:05: no line for 90 s, then the backup (29.5 Mbit/s down, 7.6 Mbit/s up), "
             "until the repair at 10:40")
    assert set(failing["site"]) == {"gp-fault"}  # the steady practice on the same access meets every target
    assert set(failing["target"]) == {"video", "telephony"} and set(failing["cause"]) == {fault}
    reasons = outcome.verdicts.sites.set_index(["site", "app"]).loc[[("gp-fault", "video")], "reason"]
    assert reasons.iloc[0].endswith(f": {fault}")
