"""The busy-hour load figure's arithmetic: bits offered per hour and direction, from a hand-made trace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.report.load import offered_bits


def test_transfers_count_in_their_start_hour_and_streams_for_their_overlap():
    trace = pd.DataFrame({
        "site": ["s", "s"], "app": ["scanning", "teams_meeting"], "traffic": ["transfer", "stream"],
        "direction": ["up", "both"], "start_s": [8.5 * 3600, 8.75 * 3600], "duration_s": [float("nan"), 1800.0],
        "size_bytes": [1e6, float("nan")], "target_rate_bps": [float("nan"), 100e3], "up_share": [1.0, 0.5]})
    bits = offered_bits(trace).groupby(["app", "direction", "hour"])["bits"].sum()
    # The 1 MB scan: 8e6 bits up in the 08:00 hour.
    assert bits[("scanning", "up", 8)] == pytest.approx(8e6)
    # The meeting, 08:45-09:15 at 100 kbit/s down and 50 up: 900 s in each hour.
    assert bits[("teams_meeting", "down", 8)] == pytest.approx(900 * 100e3)
    assert bits[("teams_meeting", "down", 9)] == pytest.approx(900 * 100e3)
    assert bits[("teams_meeting", "up", 8)] == pytest.approx(900 * 50e3)
    assert bits[("teams_meeting", "up", 9)] == pytest.approx(900 * 50e3)
    assert len(bits) == 5


def test_a_stream_over_three_hours_is_split_across_all_of_them():
    trace = pd.DataFrame({"site": ["s"], "app": ["video"], "traffic": ["stream"], "direction": ["both"],
                          "start_s": [8 * 3600 + 1800.0], "duration_s": [2 * 3600.0], "size_bytes": [float("nan")],
                          "target_rate_bps": [1e6], "up_share": [1.0]})
    down = offered_bits(trace).query("direction == 'down'").set_index("hour")["bits"]
    assert down.to_dict() == pytest.approx({8: 1800 * 1e6, 9: 3600 * 1e6, 10: 1800 * 1e6})


def _one_way_run(tmp_path):
    """The results folder of a run of one practice and its one measured download (2 MB at 08:05)."""
    from typer.testing import CliRunner

    from sim.cli import app
    (tmp_path / "t.csv").write_text("site,app,start_s,direction,size_bytes,duration_s\n"
                                    "gp,record_view,08:05,down,2000000,\n")
    (tmp_path / "s.yaml").write_text("name: one-way\nyear: 2024\nwindow: {start: '08:00', end: '09:00'}\n"
                                     "drain: 10min\nsites:\n  - {class: gp_medium, count: 1, access: fttp_330_50, "
                                     "name: gp}\ntrace: t.csv\n")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--no-png"])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "out" / "one-way").iterdir()
    return folder


def test_a_run_whose_load_goes_one_way_only_draws_it(tmp_path):
    # A measured trace of downloads alone (as a short emulated slice can hold): the figure names the downstream.
    folder = _one_way_run(tmp_path)
    page = (folder / "report.html").read_text()
    # 2 MB in the 08:00 hour: 16e6 bits / 3600 s = 4.44 kbit/s, all of it the record view
    assert "Busy-hour downstream load: GP practice, medium" in page and "offers 0.00444 Mbit/s per site" in page
    assert "per site, most of it" in page and "(100%)" in page


def test_the_largest_app_is_most_of_the_load_only_above_half():
    from sim.report.load import top_words
    assert top_words(1.0) == top_words(0.51) == "most"
    assert top_words(0.5) == top_words(0.4) == "the largest part"


def test_sums_per_combination_of_codes_as_a_grouping_by_them_gives():
    # Rows (class, direction, hour, app) -> bits; by hand: (0,1,8,2): 1+2 = 3, (1,0,9,0): 4, (0,1,8,0): 8+16 = 24.
    from sim.report.load import _sums
    codes = (np.array([0, 1, 0, 0, 0], dtype=np.int8), np.array([1, 0, 1, 1, 1], dtype=np.int8),
             np.array([8, 9, 8, 8, 8]), np.array([2, 0, 0, 2, 0], dtype=np.int8))
    bits = np.array([1.0, 4.0, 8.0, 2.0, 16.0])
    out = _sums(codes, bits, ["site_class", "direction", "hour", "app"])
    assert out.to_dict("list") == {"site_class": [0, 0, 1], "direction": [1, 1, 0], "hour": [8, 8, 9],
                                   "app": [0, 2, 0], "bits": [24.0, 3.0, 4.0]}
    assert out["hour"].dtype == np.int64 and out["app"].dtype == np.int8
    by_columns = pd.DataFrame({"site_class": codes[0], "direction": codes[1], "hour": codes[2], "app": codes[3],
                               "bits": bits}).groupby(["site_class", "direction", "hour", "app"])["bits"].sum()
    pd.testing.assert_frame_equal(out, by_columns.reset_index())


def test_a_folder_without_its_trace_draws_every_other_figure(tmp_path):
    # The busy-hour load is summed on a thread of its own beside the other figures: a folder whose trace is gone
    # (nothing to sum) still gets its page, with every other figure and without that one.
    folder = _one_way_run(tmp_path)
    figures = sorted(p.name for p in (folder / "figures").glob("*.csv"))
    assert "busy-hour-load.csv" in figures, figures
    (folder / "trace.parquet").unlink()
    for csv in (folder / "figures").glob("*.csv"):
        csv.unlink()
    from sim.report import render
    page = render(folder, png=False).read_text()
    assert "Busy-hour downstream load" not in page
    left = sorted(p.name for p in (folder / "figures").glob("*.csv"))
    assert left == [name for name in figures if name != "busy-hour-load.csv"], (left, figures)
