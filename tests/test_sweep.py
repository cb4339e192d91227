"""Sweeps: --set parsing and errors, the grid, and each row equal to a run of that variant on its own."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim import pipeline, scale, sweep
from sim.cli import app
from sim.errors import ScenarioError, TestbedError
from sim.load import load

runner = CliRunner()


def test_sets_parse_in_order_and_grid_varies_the_first_key_slowest():
    axes = sweep.parse_sets(["load.gp_video_share=2%, 25%,50%", "access=adsl2plus,fttp_330_50"])
    assert axes == {"load.gp_video_share": ["2%", "25%", "50%"], "access": ["adsl2plus", "fttp_330_50"]}
    points = sweep.grid(axes)
    assert len(points) == 6
    assert points[0] == {"load.gp_video_share": "2%", "access": "adsl2plus"}
    assert points[1] == {"load.gp_video_share": "2%", "access": "fttp_330_50"}
    assert points[-1] == {"load.gp_video_share": "50%", "access": "fttp_330_50"}


@pytest.mark.parametrize("sets, message", [
    (["load.gp_video_share"], "KEY=V1,V2"),
    (["load.gp_video_share="], "the list of values is empty"),
    (["load.gp_video_share=2%,,5%"], "an empty value"),
    (["access=adsl2plus", "access=fttp_330_50"], "given twice"),
    ([], "at least one --set"),
    (["seed=1,2"], "--seeds N"),
])
def test_malformed_sets_are_refused(sets, message):
    with pytest.raises(TestbedError, match=message):
        sweep.parse_sets(sets)


@pytest.mark.parametrize("key, value, message", [
    ("load.gp_vidoe_share", "5%", "did you mean 'load.gp_video_share'"),
    ("lod.gp_video_share", "5%", "did you mean 'load'"),
    ("sites.7.count", "2", "sites has 3 items"),
    ("load.gp_video_share", "plenty", "not a fraction"),
    ("access", "fttp_33", "did you mean 'fttp_330_50'"),
])
def test_bad_keys_and_values_name_the_set_and_the_nearest_key(scenarios_dir, key, value, message):
    with pytest.raises(ScenarioError, match=message) as caught:
        load(scenarios_dir / "ci-smoke.yaml", {key: value})
    assert str(caught.value).startswith("--set")


def test_overrides_reach_the_model(scenarios_dir):
    scenario = load(scenarios_dir / "ci-smoke.yaml", {"load.gp_video_share": "50%", "access": "fttp_330_50",
                                                      "catalogue.profiles.adsl2plus.up": "2Mbps",
                                                      "sites.0.count": "4"})
    assert scenario.load.gp_video_share == 0.5
    assert {g.access for g in scenario.sites} == {"fttp_330_50"}
    assert all(g.distance is None for g in scenario.sites)  # FTTP has no derating by line length
    assert scenario.catalogue.profiles["adsl2plus"].up == 2e6
    assert scenario.sites[0].count == 4


def test_each_sweep_row_equals_a_run_of_its_variant(scenarios_dir):
    path = scenarios_dir / "ci-smoke.yaml"
    axes = {"load.gp_video_share": ["2%", "50%"], "access": ["adsl2plus", "fttp_330_50"]}
    done = sweep.sweep(path, axes, seeds=2)
    table = done.table
    assert done.seeds == (1, 2)
    assert set(map(tuple, table[["load.gp_video_share_fraction", "access"]].drop_duplicates().to_numpy())) == {
        (0.02, "adsl2plus"), (0.02, "fttp_330_50"), (0.5, "adsl2plus"), (0.5, "fttp_330_50")}
    on_access = table[table["access"] == table["access_profile"]]
    assert len(on_access) == len(table)  # every site of a variant is on the swept access
    alone = pipeline.simulate(load(path, {"load.gp_video_share": "50%", "access": "adsl2plus"}), 2)
    rows = table[(table["load.gp_video_share_fraction"] == 0.5) & (table["access"] == "adsl2plus")
                 & (table["seed"] == 2)]
    expected = alone.verdicts.classes.drop(columns=["reason"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[expected.columns].reset_index(drop=True), expected)


def test_sweep_on_a_two_worker_cluster_equals_in_process(scenarios_dir):
    path = scenarios_dir / "ci-smoke.yaml"
    axes = {"access": ["adsl2plus", "fttc_80_20"]}
    here = sweep.sweep(path, axes, seeds=1)
    with scale.cluster(workers=2) as client:
        there = sweep.sweep(path, axes, seeds=1, client=client)
    pd.testing.assert_frame_equal(here.table, there.table)


def test_sweep_command_writes_table_and_a_figure_per_app(scenarios_dir, tmp_path):
    result = runner.invoke(app, ["sweep", str(scenarios_dir / "ci-smoke.yaml"), "--set",
                                 "load.gp_video_share=10%,2%,25%", "--workers", "0", "--out", str(tmp_path),
                                 "--no-png"])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "ci-smoke").iterdir()
    table = pd.read_csv(folder / "sweep.csv")
    # Numbers, not "10%" strings: they sort 2% < 10% < 25% (as text, "10%" < "2%" < "25%").
    assert table["load.gp_video_share_fraction"].dtype == float
    assert sorted(table["load.gp_video_share_fraction"].unique()) == [0.02, 0.1, 0.25]
    html = (folder / "sweep.html").read_text()
    assert '"categoryarray":["2%","10%","25%"]' in html.replace(" ", "")
    figures = {p.name for p in (folder / "figures").iterdir()}
    assert {f"sweep_{app_}.csv" for app_ in table["app"].unique()} <= figures
    assert "pass bar: 90% of sites" in (folder / "sweep.html").read_text()


@pytest.mark.parametrize("key, texts, column, values", [
    ("load.gp_video_share", ["2%", "10%", "0.5"], "load.gp_video_share_fraction", (0.02, 0.1, 0.5)),
    ("catalogue.profiles.adsl2plus.up", ["1Mbps", "2.5Mbit/s", "512kbps"], "catalogue.profiles.adsl2plus.up_bps",
     (1e6, 2.5e6, 512e3)),
    ("window.end", ["17:00", "18:30"], "window.end_s", (61_200.0, 66_600.0)),
    ("targets.streams.video.delay_p95", ["150ms", "1s"], "targets.streams.video.delay_p95_s", (0.15, 1.0)),
    ("catalogue.apps.scanning.size.median", ["500KB", "2MB"], "catalogue.apps.scanning.size.median_bytes",
     (5e5, 2e6)),
    ("sites.1.distance", ["0.3km", "1500m"], "sites.1.distance_m", (300.0, 1500.0)),
    ("year", ["2019", "2024"], "year", (2019, 2024)),
    ("sites.0.count", ["2", "4.5"], "sites.0.count", (2.0, 4.5)),
    ("access", ["adsl2plus", "fttp_330_50"], "access", ("adsl2plus", "fttp_330_50")),
    ("mixed", ["1m", "1min"], "mixed", ("1m", "1min")),  # a distance and a time: kept as written
])
def test_a_swept_key_is_stored_as_numbers_in_si_units_named_by_its_unit(key, texts, column, values):
    axis = sweep.axis(key, texts)
    assert (axis.column, axis.values, axis.labels) == (column, values, tuple(texts))
    assert all(type(v) is type(values[0]) for v in axis.values)


def test_a_two_key_sweep_gives_each_site_class_one_colour_and_each_other_value_a_panel():
    from sim.report.studies import sweep_figures
    classes, accesses = ["gp_small", "gp_medium", "community_clinic"], ["a", "b", "c", "d", "e"]
    rows = [{"load.gp_video_share_fraction": share, "access": access, "seed": 1, "site_class": c, "app": "video",
             "sites": 4, "sites_passing": k % 5}
            for share in (0.02, 0.1) for access in accesses for k, c in enumerate(classes)]
    axes = [sweep.axis("load.gp_video_share", ["2%", "10%"]).as_dict(), sweep.axis("access", accesses).as_dict()]
    (spec,) = sweep_figures(pd.DataFrame(rows), axes, 0.9, {"video": "video consultations"})
    lines = [t for t in spec.figure.data if t.mode == "lines+markers"]
    assert len(lines) == 15  # 3 classes x 5 panels
    colour_of = {}
    for t in lines:
        colour_of.setdefault(t.name, set()).add(t.line.color)
    assert {name: len(c) for name, c in colour_of.items()} == dict.fromkeys(classes, 1)
    assert len({next(iter(c)) for c in colour_of.values()}) == 3  # no colour shared by two classes
    assert sorted(t.name for t in lines if t.showlegend) == sorted(classes)
    titles = [a.text for a in spec.figure.layout.annotations if a.text.startswith("access=")]
    assert titles == [f"access={a}" for a in accesses]
    assert {t.xaxis for t in lines} == {"x", "x2", "x3", "x4", "x5"}


def test_sweep_with_an_unknown_key_exits_2_and_leaves_no_folder(scenarios_dir, tmp_path):
    result = runner.invoke(app, ["sweep", str(scenarios_dir / "ci-smoke.yaml"), "--set", "load.gp_vid_share=2%",
                                 "--workers", "0", "--out", str(tmp_path), "--no-png"])
    assert result.exit_code == 2
    assert "did you mean 'load.gp_video_share'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ci-smoke").exists()
