"""The link-change table both engines replay: a fault's steps, and rows that cannot be refused by row."""

import pandas as pd
import pytest

from sim import linkchanges as lc

FTTC = lc.LineState(down_bps=55e6, up_bps=10e6, rtt_s=0.012, loss=0.0, buffer_down_bytes=150_000,
                    buffer_up_bytes=150_000)
FOUR_G = lc.LineState(down_bps=29.5e6, up_bps=7.6e6, rtt_s=0.042, loss=0.0, buffer_down_bytes=150_000,
                      buffer_up_bytes=150_000)


def test_a_fault_with_a_backup_is_an_outage_then_the_backup_then_the_line():
    steps = lc.failover("gp-1", FTTC, FOUR_G, fault_at_s=600.0, repaired_at_s=1800.0, failover_s=60.0)
    assert list(steps["at_s"]) == [600.0, 660.0, 1800.0]
    assert list(steps["cause"]) == ["fault", "backup", "repaired"]
    assert list(steps["down_bps"]) == [0.0, 29.5e6, 55e6]
    assert list(steps["up_bps"]) == [0.0, 7.6e6, 10e6]


def test_without_a_backup_or_past_the_repair_the_line_is_down_until_repaired():
    none = lc.failover("gp-1", FTTC, None, 600.0, 1800.0, 60.0)
    late = lc.failover("gp-1", FTTC, FOUR_G, 600.0, 630.0, 60.0)  # repaired before the router switches
    for steps in (none, late):
        assert list(steps["cause"]) == ["fault", "repaired"]


@pytest.mark.parametrize(("column", "value", "words"), [
    ("site", "nowhere", "no such site"), ("at_s", 4000.0, "outside the window"),
    ("down_bps", -1.0, ">= 0"), ("loss", 1.0, "not in [0, 1)"), ("qos", "wfq", "neither"),
])
def test_a_row_that_cannot_be_is_named(column, value, words):
    steps = lc.failover("gp-1", FTTC, FOUR_G, 600.0, 1800.0, 60.0)
    steps.loc[1, column] = value
    with pytest.raises(ValueError, match="row 2") as caught:
        lc.validate(steps, {"gp-1"}, window_s=3600.0)
    assert words in str(caught.value)


def test_two_changes_at_one_moment_are_refused_and_rows_are_sorted():
    steps = lc.failover("gp-1", FTTC, FOUR_G, 600.0, 1800.0, 60.0)
    ordered = lc.validate(steps.iloc[::-1], {"gp-1"}, 3600.0)
    assert list(ordered["at_s"]) == [600.0, 660.0, 1800.0]
    with pytest.raises(ValueError, match="two changes at 600.0 s"):
        lc.validate(pd.concat([steps, steps.iloc[:1]]), {"gp-1"}, 3600.0)


def test_a_bad_fault_interval_is_refused():
    with pytest.raises(ValueError, match="end after it starts"):
        lc.failover("gp-1", FTTC, FOUR_G, 600.0, 600.0, 60.0)
    with pytest.raises(ValueError, match="negative"):
        lc.failover("gp-1", FTTC, FOUR_G, 600.0, 700.0, -1.0)
