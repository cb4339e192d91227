"""The report's and the comparison's figures, checked as numbers: layout, colours, counts and text from the run.

Expected values are worked out by hand from the small scenarios and tables each test writes, or recomputed from a
run's own verdicts CSVs with pandas (not through the code under test).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim import pipeline, report
from sim.report import comparison, sessions
from sim.report import figures as figs
from sim.report.data import RunData, read_run

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SMOKE = (SCENARIOS / "ci-smoke.yaml").read_text()


def _run_data(name: str, classes: pd.DataFrame, apps: dict[str, str]) -> RunData:
    """A run's data built by hand: its verdicts per class, its targets (the catalogue's defaults) and app labels."""
    resolved = {"targets": {"passing": {"sessions": 0.95, "sites": 0.9}, "link": {"busy_hour_utilisation": 0.75}},
                "catalogue": {"apps": {a: {"label": label} for a, label in apps.items()}, "site_classes": {}}}
    empty = pd.DataFrame()
    return RunData(Path(name), {"scenario": name, "seed": 1}, resolved, classes, empty, empty)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """ci-smoke (ADSL2+, FTTC, FTTP) and the same practices on full fibre, with a 60% utilisation limit."""
    root = tmp_path_factory.mktemp("results")
    fibre = tmp_path_factory.mktemp("scenarios") / "smoke-fibre.yaml"
    fibre.write_text(SMOKE.replace("name: ci-smoke", "name: smoke-fibre")
                     .replace("access: adsl2plus", "access: fttp_330_50")
                     + "targets: {link: {busy_hour_utilisation: 60%}}\n")
    base = pipeline.run(SCENARIOS / "ci-smoke.yaml", out=root, png=False).folder
    return base, pipeline.run(fibre, out=root, png=False).folder


# --- compare -----------------------------------------------------------------------------------------------------

def test_the_headline_counts_improved_worse_and_unchanged():
    # Changes +30, -20, -10, 0, +0.4 points (under half a point: unchanged) and one pair in run B only.
    table = pd.DataFrame({"change": [0.3, -0.2, -0.1, 0.0, 0.004, float("nan")]})
    a, b = _run_data("before", pd.DataFrame(), {}), _run_data("after", pd.DataFrame(), {})
    assert comparison.counts(table) == {"improved": 1, "worse": 2, "unchanged": 2, "one run only": 1}
    assert comparison.headline(a, b, table) == ("A before → B after: of 6 site-class targets, 1 improved, 2 worse, "
                                                "2 unchanged, 1 in one run only")
    # Two runs of one scenario are told apart by seed and folder
    same_a, same_b = _run_data("r/one", pd.DataFrame(), {}), _run_data("r/two", pd.DataFrame(), {})
    same_a.meta["scenario"] = same_b.meta["scenario"] = "ci-smoke"
    assert comparison.run_names(same_a, same_b) == ("ci-smoke (seed 1, one)", "ci-smoke (seed 1, two)")
    assert comparison.run_names(a, b) == ("before", "after")


def _expected_changes(a: Path, b: Path) -> pd.Series:
    """Share of each class's sites passing each app in B minus in A, recomputed from the two verdicts.csv files."""
    def shares(folder: Path) -> pd.Series:
        v = pd.read_csv(folder / "verdicts.csv").groupby(["site_class", "app"])[["sites", "sites_passing"]].sum()
        return v["sites_passing"] / v["sites"]
    return shares(b) - shares(a)


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_compare_names_a_first_and_counts_what_got_worse(runs, tmp_path, order):
    a, b = runs if order == "forward" else runs[::-1]
    path = report.compare(a, b, tmp_path, png=False)
    run_a, run_b = read_run(a), read_run(b)
    spec = comparison.figure(run_a, run_b, comparison.joined(run_a, run_b))
    change = _expected_changes(a, b)
    improved, worse = int((change > 0.005).sum()), int((change < -0.005).sum())
    assert (improved > 0 and worse == 0) if order == "forward" else (improved == 0 and worse > 0)
    expected = (f"A {run_a.name} → B {run_b.name}: of {len(change)} site-class targets, {improved} improved, "
                f"{worse} worse, {len(change) - improved - worse} unchanged")
    assert spec.title.startswith(expected)
    text = path.read_text()
    assert f"<h1>A {run_a.name} vs B {run_b.name}</h1>" in text and expected.replace("→", "&rarr;") in \
        text.replace("→", "&rarr;")
    legend = [t.name for t in spec.figure.data if t.showlegend]
    assert legend == [f"A: {run_a.name}", f"B: {run_b.name}"]


def test_compare_panels_sit_in_a_grid_with_one_x_title(runs):
    a, b = read_run(runs[0]), read_run(runs[1])
    table = comparison.joined(a, b)
    fig = comparison.figure(a, b, table).figure
    layout = fig.layout
    used = sorted({t.xaxis for t in fig.data})  # x, x2, ...: the panels drawn (a grid's spare cells stay empty)
    axes = [layout[f"xaxis{name[1:]}"] for name in used]
    apps = table["app"].nunique()
    assert len(axes) == apps  # one panel per app
    rows = {}
    for axis in axes:
        rows.setdefault(layout[f"yaxis{axis.anchor[1:]}"].domain[0], []).append(axis.domain)
    assert len(rows) == -(-apps // comparison.COLUMNS)  # 4 a row, the rest on further rows
    for domains in rows.values():
        assert len(domains) <= comparison.COLUMNS
        ordered = sorted(domains)
        assert all(left[1] <= right[0] for left, right in zip(ordered, ordered[1:])), ordered  # no overlap
    assert all(not (axis.title.text or "") for axis in axes)  # no title per panel: one for the figure
    titles = [n for n in layout.annotations if "share of sites meeting the target" in (n.text or "")]
    assert len(titles) == 1


# --- the run's own text --------------------------------------------------------------------------------------------

def test_footnotes_come_from_the_runs_own_targets_mix_and_buffers(runs):
    folder = runs[1]  # smoke-fibre: FTTC 0.6 km (copper), two FTTP practices (fibre), a 60% utilisation limit
    run = read_run(folder)
    notes = {spec.name: spec.footnote for spec in report._figures(run)}
    page = (folder / report.REPORT_FILE).read_text()
    text = page[page.index("<body>"):]  # the page as written: plotly.js (in the head) is not the report's text
    assert "baseline-2019" not in text and "75%" not in text and "100 packets" not in text
    assert "busy-hour utilisation (limit 60%)" in notes["compliance"]
    assert notes["utilisation"].startswith("One site per access technology: the one with the busiest hour. 60%: ")
    # The run's own profiles' buffers (topologies/access.yaml): FTTC 80/20 250 ms up, 100 ms down; FTTP 50 ms each way.
    fttc, fttp = (run.resolved["catalogue"]["profiles"][p] for p in ("fttc_80_20", "fttp_330_50"))
    assert (fttc["buffer_up"]["seconds"], fttc["buffer_down"]["seconds"]) == (0.25, 0.1)
    assert (fttp["buffer_up"]["seconds"], fttp["buffer_down"]["seconds"]) == (0.05, 0.05)
    assert ("Access buffers (a time is at the line's rate that way): fttc_80_20 250 ms up, 100 ms down; fttp_330_50 "
            "50 ms up, 50 ms down (the profiles' own, docs/sources.md S1).") in notes["utilisation"]
    assert notes["copper-vs-fibre"] == ("Fibre: FTTP; copper: FTTC. The mix of access is scenario smoke-fibre's own: "
                                        "3 sites, 2 on fibre (67%), 1 on copper (33%).")


# --- colours, legends, bars and cells -----------------------------------------------------------------------------

def test_each_technology_has_one_colour_in_every_figure_and_a_legend(runs):
    assert len(set(figs.TECHNOLOGY_COLOURS.values())) == len(figs.TECHNOLOGY_COLOURS)
    assert figs.technology_colour("Leased line") != figs.technology_colour("ADSL2+")
    run = read_run(runs[0])
    colours: dict[str, set[str]] = {}
    drawn = [s for s in figs.all_figures(run) if s.name.startswith("completion-") or s.name == "utilisation"]
    for spec in drawn:
        assert spec.figure.layout.showlegend is True  # said even when one technology is drawn
        for trace in spec.figure.data:
            tech = trace.name.split(":")[0]
            colours.setdefault(tech, set()).add(trace.line.color)
    assert set(colours) == {"ADSL2+", "FTTC", "FTTP"}
    assert all(c == {figs.technology_colour(t)} for t, c in colours.items())


def test_a_call_bar_title_says_where_the_time_went_and_no_zero_target_is_drawn():
    worst = pd.Series({"technology": "ADSL2+", "at_recommended": 0.0, "between": 1.0, "below_minimum": 0.0})
    rate = {"target": 1.5e6, "minimum": 350e3}
    assert sessions._stream_title("video consultations", worst, rate) == (
        "Video consultations on ADSL2+ spend 0% of their time at the recommended 1.5 Mbit/s, 100% between it and "
        "the minimum (350 kbit/s)")
    calls = pd.DataFrame({"app": "teams_meeting", "technology": ["ADSL2+", "FTTP"], "duration_s": [600.0, 600.0],
                          "share_at_target": [0.0, 1.0], "share_below_min": [0.0, 0.0]})
    run = RunData(Path("r"), {"scenario": "r", "seed": 1},
                  {"catalogue": {"apps": {"teams_meeting": {"label": "staff Teams meetings", "source": "S7",
                                                            "rate": {"target": 1e6, "minimum": 150e3}}}}},
                  pd.DataFrame(), pd.DataFrame(), calls)
    spec = sessions._stream_quality(run, "teams_meeting", 0.0)  # the catalogue's Teams target: 0% of time at the rate
    assert not spec.figure.layout.shapes  # no "target: 0% of call time" line
    between = next(t for t in spec.figure.data if t.name.startswith("between"))
    assert between.marker.color not in (figs.FAIL, "#E69F00") and list(between.text) == ["100%", "0%"]
    assert spec.title.endswith("spend 0% of their time at the recommended 1 Mbit/s, 100% between it and the "
                               "minimum (150 kbit/s)")


def _classes(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"family": "gp_practice", "site_class": c, "access_profile": t, "technology": t,
                          "medium": "copper", "app": "video", "sites": n, "sites_passing": p} for c, t, n, p in rows])


def test_a_matrix_cell_with_no_sites_is_grey_and_labelled():
    # gp_small has no FTTC site: that one cell of four is "no sites"; the others are pass (1) or fail (0).
    run = _run_data("m", _classes([("gp_small", "ADSL2+", 4, 1), ("gp_medium", "ADSL2+", 2, 2),
                                   ("gp_medium", "FTTC", 3, 3)]), {"video": "video consultations"})
    spec = figs.compliance_matrix(run)
    (heatmap,) = spec.figure.data
    assert list(heatmap.y) == ["gp_medium", "gp_small"] and list(heatmap.x) == ["ADSL2+", "FTTC"]
    assert [list(r) for r in heatmap.z] == [[1.0, 1.0], [0.0, 0.5]]
    assert [list(r) for r in heatmap.text] == [["100%", "100%"], ["25%", figs.NO_SITES]]
    assert "Grey cells ('no sites'): the scenario has no site of that class on that technology" in spec.footnote
    assert spec.title.endswith("(blue: at least 90% of sites pass; orange: fewer; grey: no sites)")
    full = figs.compliance_matrix(_run_data("m", _classes([("gp_small", "ADSL2+", 4, 1)]),
                                            {"video": "video consultations"}))
    assert "Grey cells" not in full.footnote and "grey" not in full.title


def test_log_axes_get_1_2_5_ticks_written_whole_and_powers_of_ten_past_three_decades():
    log_ticks = figs.log_ticks
    # 0.35 to 250: from 0.2 (the last tick at or below 0.35) to 500 (the first at or above 250), 1-2-5 a decade
    assert log_ticks([0.35, 250.0, float("nan"), 0.0]) == {
        "tickvals": [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0],
        "ticktext": ["0.2", "0.5", "1", "2", "5", "10", "20", "50", "100", "200", "500"]}
    # 0.07 to 10,000 spans more than three decades: powers of ten only, with thousands grouped
    assert log_ticks([0.07, 10_000.0])["ticktext"] == ["0.01", "0.1", "1", "10", "100", "1,000", "10,000"]
    assert log_ticks([20.0, 50.0]) == {"tickvals": [20.0, 50.0], "ticktext": ["20", "50"]}  # ticks on the data
    assert log_ticks([]) == {} and log_ticks([-1.0, float("inf")]) == {}  # plotly's own ticks
