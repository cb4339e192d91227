"""The calibration suite's pure parts: its cases, the simulator's side of them, the comparison and the table.

The emulated side needs root and minutes of real time: ``make calibrate`` runs it (docs/fidelity.md).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import climb_steps

from sim import calibrate
from sim.workload import TRACE_COLUMNS

GOODPUT = 1448 / 1514


def test_cases_are_traces_on_one_link():
    cases = calibrate.cases()
    assert [c.name for c in cases] == ["bulk", "several bulk", "short flows at 60% load", "call beside an upload",
                                       "call beside short flows", "call beside an upload, priority queue",
                                       "call through a failover", "short flows on kept-alive connections",
                                       "short flows beside a bulk download",
                                       "short flows on one multiplexed connection", "lone short downloads",
                                       "lone short downloads on kept-alive connections"]
    for case in cases:
        assert list(case.trace.columns) == list(TRACE_COLUMNS) and len(case.topology.sites) == 1
        assert case.trace["start_s"].between(0, calibrate.CASE_WINDOW_S).all()
        assert {name.split("@")[0] for name in case.metrics} <= set(calibrate.GOALS)
    assert cases[5].topology.sites.at[0, "qos"] == "priority" and cases[3].topology.sites.at[0, "qos"] == "fifo"
    # short flows: Poisson arrivals at 60% of 10 Mbit/s of 200 kB: 3.75 a second, ~109 in 29 s (+-4 sd: 42)
    assert abs(len(cases[2].trace) - 3.75 * 29) <= 4 * math.sqrt(3.75 * 29)
    # the same flows again, each on a kept-alive connection
    kept = cases[7].trace
    assert set(cases[2].trace["connection"]) == {"new"} and set(kept["connection"]) == {"reused"}
    assert kept.drop(columns="connection").equals(cases[2].trace.drop(columns="connection"))


def test_the_simulator_side_of_short_flows_on_kept_alive_connections():
    # Each flow's start-up loses its 2 handshake round trips (2 x 20 ms and the queue it finds): the median
    # completion falls by at least 40 ms; the same bytes cross the line, so its utilisation does not change. A flow
    # alone on the line: 1 slow-start round (14,480 B; the window then fills the 25 kB path) and the handover, then
    # the rest at the whole line; 2 round trips of handshakes more on a new connection.
    new, kept = calibrate.cases()[2], calibrate.cases()[7]
    (new_records, new_links), (kept_records, kept_links) = calibrate.simulate(new), calibrate.simulate(kept)
    got_new = calibrate.metrics(new_records, new_links, new)
    got_kept = calibrate.metrics(kept_records, kept_links, kept)
    assert got_new["median_completion_s"] - got_kept["median_completion_s"] >= 2 * calibrate.LINE_RTT_S
    rest_s = (calibrate.SHORT_BYTES - 14_480) * 8 / (calibrate.LINE_BPS * GOODPUT)
    assert kept_records["duration_s"].min() == pytest.approx(2 * calibrate.LINE_RTT_S + rest_s, rel=1e-9)
    assert new_records["duration_s"].min() == pytest.approx(4 * calibrate.LINE_RTT_S + rest_s, rel=1e-9)
    assert got_kept["link_utilisation"] == pytest.approx(got_new["link_utilisation"], rel=1e-9)


def test_the_simulator_side_of_short_flows_on_one_multiplexed_connection():
    # The same flows as streams of one connection. A flow alone on the line takes 4 round trips (2 of handshakes, 1 of
    # slow start: 14,480 B, the window then fills the 25 kB path, and the handover to the line) and the rest at the
    # whole line, whether plain or opening the idle connection; at 60% load many find another under way and join it
    # (1 round trip, then a share: one joining an open connection on an otherwise idle line can beat a lone opener),
    # so the times differ. The same bytes cross the line.
    new, multiplexed = calibrate.cases()[2], calibrate.cases()[9]
    assert set(multiplexed.trace["connection"]) == {"multiplexed-new"}
    assert multiplexed.trace.drop(columns="connection").equals(new.trace.drop(columns="connection"))
    alone_s = 4 * calibrate.LINE_RTT_S + (calibrate.SHORT_BYTES - 14_480) * 8 / (calibrate.LINE_BPS * GOODPUT)
    (plain, plain_links), (mux, mux_links) = calibrate.simulate(new), calibrate.simulate(multiplexed)
    assert plain["duration_s"].min() == pytest.approx(alone_s, rel=1e-9)
    assert np.isclose(mux["duration_s"], alone_s, rtol=1e-9).any() and mux["duration_s"].min() <= alone_s
    assert (plain["duration_s"] != mux["duration_s"]).sum() >= 20
    got_new, got_mux = calibrate.metrics(plain, plain_links, new), calibrate.metrics(mux, mux_links, multiplexed)
    assert got_mux["link_utilisation"] == pytest.approx(got_new["link_utilisation"], rel=1e-6)


def test_the_simulator_side_of_a_lone_bulk_upload():
    case = calibrate.cases()[0]
    records, links = calibrate.simulate(case)
    got = calibrate.metrics(records, links, case)
    # 8 MB at 10 Mbit/s is 6.4 s of line time: the simulator adds start-up rounds and header overhead on top
    assert 6.4 < got["median_completion_s"] < 8.0
    # three of them in the 30 s window: the uplink busy for about 3 x 6.4-8 s of 30 s
    assert 3 * 6.4 / 30 * 0.9 < got["link_utilisation"] < 3 * 8.0 / 30


def test_compare_reports_the_error_against_each_goal():
    case = calibrate.Case("x", calibrate.one_site(1e6, 1e6, 0.01, 15e3), calibrate.trace(
        calibrate.transfer(0.0, 1e3)), ("median_completion_s", "video_rate_bps"))
    rows = calibrate.compare(case, {"median_completion_s": 1.0, "video_rate_bps": 1e6},
                             {"median_completion_s": 1.08, "video_rate_bps": 0.8e6}, held=True)
    assert rows[0]["error"] == pytest.approx(0.08) and rows[0]["met"] and rows[0]["goal"] == 0.10
    assert rows[1]["error"] == pytest.approx(-0.2) and not rows[1]["met"]
    missing = calibrate.compare(case, {"median_completion_s": math.nan}, {"median_completion_s": 1.0}, held=False,
                                failed_checks=("host -: cpu_starved",))
    assert math.isnan(missing[0]["error"]) and not missing[0]["met"]
    text = calibrate.table(rows + missing)
    assert "| x | median_completion_s | 1.00 s | 1.08 s | +8% | within 10% | yes |" in text
    assert "| x | video_rate_bps | 1.000 Mbit/s | 0.800 Mbit/s | -20% | within 10% | no |" in text
    assert "no (emulation did not hold: host -: cpu_starved)" in text


def test_the_table_replaces_its_own_section_only(tmp_path):
    doc = tmp_path / "fidelity.md"
    doc.write_text("# Fidelity\n\nkept\n")
    row = {"case": "bulk", "metric": "median_completion_s", "emulation": 7.0, "simulator": 6.8, "error": -0.03,
           "goal": 0.1, "met": True, "held": True}
    calibrate.write_into(doc, [row], "2026-12-02", "a machine")
    calibrate.write_into(doc, [row | {"simulator": 7.7, "error": 0.1}], "2026-12-03", "a machine")
    text = doc.read_text()
    assert text.startswith("# Fidelity\n\nkept\n") and text.count(calibrate.BEGIN) == 1
    assert "2026-12-03" in text and "2026-12-02" not in text and "7.70 s" in text


def test_metrics_read_video_and_transfers_apart():
    records = pd.DataFrame({"traffic": ["transfer", "transfer", "stream"], "completed": [True, False, True],
                            "duration_s": [2.0, 9.0, 30.0], "app": ["x", "x", "video"],
                            "one_way_delay_s": [math.nan, math.nan, 0.05], "mean_rate_bps": [1.0, 1.0, 1e6]})
    case = calibrate.Case("x", calibrate.one_site(1e6, 1e6, 0.01, 15e3), calibrate.trace(
        calibrate.transfer(0.0, 1e3)), ("median_completion_s", "video_one_way_delay_s", "video_rate_bps"))
    assert calibrate.metrics(records, None, case) == {"median_completion_s": 2.0, "video_one_way_delay_s": 0.05,
                                                      "video_rate_bps": 1e6}


def test_the_failover_case_is_compared_phase_by_phase():
    # a 1.5 Mbit/s call (from 2 s) on a 10 Mbit/s, 20 ms line; down at 8 s, on a 2 Mbit/s-up, 60 ms backup at 12 s,
    # repaired at 20 s. Through the 4 s outage the sender hears nothing and cuts x 0.85 every 0.5 s: 8 cuts, from
    # 1.5 Mbit/s to 1.5 x 0.85^8 = 409 kbit/s (above its 350 kbit/s minimum). In the simulator the call climbs back
    # from there on the backup at 8% a second, in steps
    # over [0, 1], [1, 3], [3, 7], [7, 15] s of the climb (12-13, 13-15, 15-19, 19-27 s), each at the exponential's
    # mean (helpers.climb_steps), and on past the repair. Each phase's whole seconds after its first: backup 13-19
    # (2 at step 1, 4 at step 2, 1 at step 3), repaired 21-27 (6 at step 3, 1 at step 4). Its one-way delay on the
    # backup: 10 ms + 20 ms (half the 40 ms longer round trip) + M/D/1 waiting of 1514-byte frames (6.056 ms at
    # 2 Mbit/s) at its load, weighted by the bits of each second.
    case = next(c for c in calibrate.cases() if c.name == "call through a failover")
    assert list(case.changes["cause"]) == ["fault", "backup", "repaired"]
    assert list(case.changes["at_s"]) == [8.0, 12.0, 20.0]
    result = calibrate.simulated(case)
    got = calibrate.metrics(result.records, result.links, case, result.calls)
    steps = [rate for _, rate in climb_steps(12.0, 1.5e6 * 0.85**8, 1.5e6)]
    backup_s = [steps[1]] * 2 + [steps[2]] * 4 + [steps[3]]
    assert got["video_rate_bps@before"] == 1.5e6
    assert got["video_rate_bps@backup"] == pytest.approx(sum(backup_s) / 7, rel=1e-9)
    assert got["video_rate_bps@repaired"] == pytest.approx((6 * steps[3] + steps[4]) / 7, rel=1e-9)
    delays_s = [0.030 + (r / 2e6) * 0.006056 / (2 * (1 - r / 2e6)) for r in backup_s]
    assert got["video_one_way_delay_s@backup"] == pytest.approx(
        sum(r * d for r, d in zip(backup_s, delays_s)) / sum(backup_s), rel=1e-6)
    emulated = got["video_rate_bps@backup"] / 2
    rows = calibrate.compare(case, {**got, "video_rate_bps@backup": emulated}, got, held=True)
    backup = next(r for r in rows if r["metric"] == "video_rate_bps@backup")
    assert backup["error"] == pytest.approx(1.0) and backup["goal"] == 0.10 and not backup["met"]
    assert (f"| call through a failover | video_rate_bps@backup | {emulated / 1e6:.3f} Mbit/s | "
            f"{got['video_rate_bps@backup'] / 1e6:.3f} Mbit/s | +100% |") in calibrate.table(rows)


def test_short_flows_beside_a_bulk_download_are_judged_on_the_short_ones():
    case = next(c for c in calibrate.cases() if c.name == "short flows beside a bulk download")
    assert case.apps == ("record_view",) and case.direction == "down"
    records, links = calibrate.simulate(case)
    bulk = records[records["app"] == "software_update"].iloc[0]
    shorts = records[records["app"] == "record_view"]
    during, after = (shorts["start_s"] < bulk["end_s"]).sum(), (shorts["start_s"] >= bulk["end_s"]).sum()
    assert during >= 5 and after > during  # some start behind the standing queue, most after it
    got = calibrate.metrics(records, links, case)
    # Behind the queue (10 Mbit/s, 20 ms + 0.8 x 100 ms): 2 handshakes and 3 slow-start rounds of 100 ms (101,360 B:
    # half the line's pipe is 41 segments; the third round adds 20 segments to the queue, past the 16.5 frames the
    # standing queue leaves of the 125 kB buffer), one round trip of recovery, then 48,640 B at half the line:
    # 0.6 + 48,640 x 8 / (5e6 x G) = 0.681 s.
    behind_s = 0.6 + (150e3 - 70 * 1448) * 8 / (5e6 * 1448 / 1514)
    # After it, alone: 4 round trips of 20 ms (two of handshakes, one slow-start round of 14,480 B, the handover),
    # then the line: 0.193 s; more when one finds another sharing the line (and its burst queue, about 30 ms a round
    # trip).
    alone_s = 0.08 + (150e3 - 14_480) * 8 / (10e6 * 1448 / 1514)
    assert got["p95_completion_s"] == pytest.approx(behind_s, rel=0.05)   # the bulk download's ~9 s left out
    assert alone_s * 0.99 < got["median_completion_s"] < alone_s * 2


def test_the_split_of_short_downloads_reads_each_engines_records():
    # Three completed downloads, set-up 40, 42, 0 ms (the third reused), first bytes 20-21 ms after its request,
    # done at 200, 230, 150 ms; an upload and an unfinished download are left out. Medians: set-up 40 ms, first
    # round trip 21 ms, the rest 200 - 61, 230 - 63, 150 - 20 = 139, 167, 130 ms: 139 ms.
    from sim import calibrate_split

    records = pd.DataFrame({"session_id": [1, 2, 3, 4, 5], "completed": [True, True, True, True, False],
                            "direction": ["down", "down", "down", "up", "down"],
                            "setup_s": [0.040, 0.042, 0.0, 0.04, 0.04],
                            "first_data_s": [0.061, 0.063, 0.020, float("nan"), 0.06],
                            "duration_s": [0.200, 0.230, 0.150, 1.0, float("nan")]})
    emu = calibrate_split.split(records, pd.Series([1, 2, 3, 4, 5]))
    assert emu == pytest.approx({"setup_s": 0.040, "first_data_s": 0.021, "rest_s": 0.139})
    # the simulator's side of the lone downloads: 2 handshakes of 20 ms, the request's round trip, then the rest
    # (0.2352 - 0.06 s: the closed form below)
    case = next(c for c in calibrate.cases() if c.name == "lone short downloads")
    records, _ = calibrate.simulate(case)
    des_ = calibrate_split.split(records, case.trace["session_id"])
    rest_s = 4 * 0.02 + (calibrate.SHORT_BYTES - 14_480) * 8 / (calibrate.LINE_BPS * GOODPUT) - 0.06
    assert des_ == pytest.approx({"setup_s": 0.040, "first_data_s": 0.020, "rest_s": rest_s}, rel=1e-9)
    text = calibrate_split.table(calibrate_split.rows("short", emu, des_))
    assert "| short | setup_s | 40.0 ms | 40.0 ms | +0.0 ms |" in text
    assert "| short | rest_s | 139.0 ms | 175.2 ms | +36.2 ms |" in text


def test_the_simulator_side_of_lone_short_downloads_is_the_closed_form():
    # 200 kB alone on the idle 10 Mbit/s, 20 ms line, one a second: 2 handshakes, 1 slow-start round (14,480 B: the
    # window then fills the 16.5-segment path), 1 round trip of handover, the rest at the line: 4 x 20 ms + 185,520 B
    # at 10 Mbit/s x 1448/1514 = 0.2352 s; 2 round trips fewer on a kept-alive connection: 0.1952 s. 28 of them in
    # each case, none overlapping another.
    rest_s = (calibrate.SHORT_BYTES - 14_480) * 8 / (calibrate.LINE_BPS * GOODPUT)
    for name, rounds in (("lone short downloads", 4), ("lone short downloads on kept-alive connections", 2)):
        case = next(c for c in calibrate.cases() if c.name == name)
        records, links = calibrate.simulate(case)
        assert len(records) == 28 and records["completed"].all()
        assert records["duration_s"].to_numpy() == pytest.approx(np.full(28, rounds * 0.02 + rest_s), rel=1e-9)
        got = calibrate.metrics(records, links, case)
        assert got["median_completion_s"] == pytest.approx(rounds * 0.02 + rest_s, rel=1e-9)
