"""Site inventories: one site a row, free-text names shown as given, every cell checked with its file, row, column."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import ROOT
from typer.testing import CliRunner

from sim import pipeline, topology
from sim.cli import app
from sim.errors import ScenarioError
from sim.load import load

runner = CliRunner()
SAMPLE = ROOT / "scenarios" / "estate-sample.yaml"
HEADER = "id,name,class,access,distance,aggregation,region\n"
ROWS = ("ZZ0001,St Mary's Surgery,gp_medium,adsl2plus,3.0km,,Dale\n"
        "ZZ0002,\"The Surgery, Lower Marsh\",gp_small,fttc_80_20,1.5km,,Dale\n"
        "ZZ0003,Brontë House,gp_small,fttp_330_50,4.3km,gpon,Dale\n")


def scenario(tmp_path, rows: str = ROWS, header: str = HEADER, extra: str = "", name: str = "sites.csv"):
    """A scenario of the inventory ``header`` + ``rows`` (written to ``name``), for the 08:00 quarter hour."""
    (tmp_path / name).write_text(header + rows, encoding="utf-8")
    path = tmp_path / "estate.yaml"
    path.write_text(f"name: estate\nwindow: {{start: '08:00', end: '08:15'}}\ndrain: 10min\nyear: 2019\n"
                    f"inventory: {name}\n" + extra, encoding="utf-8")
    return path


def error_of(path) -> str:
    with pytest.raises(ScenarioError) as caught:
        load(path)
    return str(caught.value)


def test_the_sample_estate_is_forty_made_up_practices_with_free_text_names():
    lines = (SAMPLE.parent / "estates" / "sample-pcn.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# MADE UP") and "# MADE UP" in SAMPLE.read_text().splitlines()[0]
    sites = topology.build(load(SAMPLE)).sites
    assert len(sites) == 40 and sites["site_id"].str.fullmatch(r"ZZ9\d{3}").all()
    assert {"St Mary's Surgery", "Brontë House Surgery", "The Surgery, Lower Marsh"} <= set(sites["site"])
    assert set(sites["access_profile"]) == {"adsl2plus", "fttc_40_10", "fttc_80_20", "fttp_330_50"}
    assert sites["distance_m"].between(200, 5000).all()


def test_each_row_is_one_site_with_its_line_derated_by_its_length(tmp_path):
    sites = topology.build(load(scenario(tmp_path))).sites.set_index("site")
    assert list(sites.index) == ["St Mary's Surgery", "The Surgery, Lower Marsh", "Brontë House"]
    mary = sites.loc["St Mary's Surgery"]
    # topologies/access.yaml adsl2plus derating: 8/0.9 Mbit/s at 3.0 km.
    assert (mary["down_bps"], mary["up_bps"], mary["distance_m"]) == (8e6, 0.9e6, 3000.0)
    assert (mary["site_id"], mary["region"], mary["site_class"]) == ("ZZ0001", "Dale", "gp_medium")
    # fttc_80_20 at 1.5 km: between 24.5 (1.2 km) and 18 (1.8 km) Mbit/s, half way: 21.25; upstream scales
    # with the downstream from 80/20: 21.25 / 4.
    marsh = sites.loc["The Surgery, Lower Marsh"]
    assert marsh["down_bps"] == pytest.approx(21.25e6) and marsh["up_bps"] == pytest.approx(21.25e6 / 4)
    # FTTP does not derate: its headline 330/50, with its line length kept to be shown.
    fibre = sites.loc["Brontë House"]
    assert (fibre["down_bps"], fibre["up_bps"], fibre["distance_m"]) == (330e6, 50e6, 4300.0)


def test_setting_every_sites_access_keeps_an_inventorys_line_lengths(tmp_path):
    # --set access=... on an inventory: each site keeps its own line length, so a copper profile derates by it
    # and a fibre one shows it (until 2026-12-02 the lengths were dropped, every site at the headline rates)
    path = scenario(tmp_path)
    fibre = topology.build(load(path, {"access": "fttp_330_50"})).sites.set_index("site")
    assert list(fibre["distance_m"]) == [3000.0, 1500.0, 4300.0] and (fibre["down_bps"] == 330e6).all()
    copper = topology.build(load(path, {"access": "fttc_80_20"})).sites.set_index("site")
    # access.yaml's fttc_80_20 derating: 8.7 Mbit/s at 3.0 km, 21.25 at 1.5 km (as above), and beyond its last
    # point (3.6 km: 4 Mbit/s) the last point's rate at 4.3 km
    assert list(copper["down_bps"]) == pytest.approx([8.7e6, 21.25e6, 4e6])
    assert list(copper["distance_m"]) == [3000.0, 1500.0, 4300.0]
    # a profile sold only on short lines is refused for a site beyond its reach, naming it
    with pytest.raises(ScenarioError, match=r"'gfast_330_50' is not sold on lines beyond 0.5 km \(this one is 3 km\)"):
        load(path, {"access": "gfast_330_50"})


def test_a_site_without_a_line_length_has_none(tmp_path):
    rows = "ZZ0001,St Mary's Surgery,gp_medium,fttp_330_50,,,\n"
    site = topology.build(load(scenario(tmp_path, rows))).sites.iloc[0]
    assert math.isnan(site["distance_m"]) and site["region"] == "" and site["aggregation"] == ""


def test_sites_on_an_aggregation_share_its_links_by_region_in_order(tmp_path):
    # gpon: 32 sites a tree (topologies/access.yaml). Rows 0-32 North except row 5 (South), row 33 North: North's
    # first 32 rows fill gpon-North-1, its 33rd starts gpon-North-2; South has one tree. A link's sites are put
    # together (after its first), so a shard of an estate run never splits a link.
    rows = "".join(f"Z{i:04d},Practice {i},gp_small,fttp_330_50,1km,gpon,{'South' if i == 5 else 'North'}\n"
                   for i in range(34))
    topo = topology.build(load(scenario(tmp_path, rows)))
    assert topo.sites["aggregation"].tolist() == ["gpon-North-1"] * 32 + ["gpon-South-1", "gpon-North-2"]
    assert topo.sites["site"].tolist()[30:] == ["Practice 31", "Practice 32", "Practice 5", "Practice 33"]
    assert sorted(topo.shared) == ["gpon-North-1", "gpon-North-2", "gpon-South-1"]


def test_a_parquet_inventory_gives_the_same_sites_as_its_csv(tmp_path):
    csv_sites = topology.build(load(scenario(tmp_path))).sites
    frame = pd.read_csv(tmp_path / "sites.csv", keep_default_na=False)
    frame.to_parquet(tmp_path / "sites.parquet")
    (tmp_path / "estate.yaml").write_text((tmp_path / "estate.yaml").read_text().replace("sites.csv", "sites.parquet"))
    pd.testing.assert_frame_equal(topology.build(load(tmp_path / "estate.yaml")).sites, csv_sites)


def test_inventory_sites_follow_the_scenarios_own_groups(tmp_path):
    extra = "sites:\n  - {class: acute_site, count: 2, access: leased_1000, name: Royal Infirmary}\n"
    sites = topology.build(load(scenario(tmp_path, extra=extra))).sites
    assert sites["site"].tolist()[:3] == ["Royal Infirmary-001", "Royal Infirmary-002", "St Mary's Surgery"]


def test_free_text_names_are_the_records_and_verdicts_site(tmp_path):
    outcome = pipeline.simulate(load(scenario(tmp_path)))
    names = {"St Mary's Surgery", "The Surgery, Lower Marsh", "Brontë House"}
    assert set(outcome.result.records["site"]) == names
    assert set(outcome.verdicts.sites["site"]) == names


def test_a_run_writes_the_names_as_given_into_its_tables(tmp_path):
    result = runner.invoke(app, ["run", str(scenario(tmp_path)), "--out", str(tmp_path / "results"), "--no-png"])
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "results" / "estate").iterdir())
    verdicts = pd.read_csv(folder / "site_verdicts.csv", keep_default_na=False)
    assert {"St Mary's Surgery", "The Surgery, Lower Marsh", "Brontë House"} == set(verdicts["site"])
    sites = pd.read_csv(folder / "sites.csv", keep_default_na=False)
    assert sites.set_index("site").loc["Brontë House", "site_id"] == "ZZ0003"


def test_a_hidden_character_in_a_name_is_shown_as_one_escape(tmp_path):
    path = scenario(tmp_path, ROWS.replace("St Mary's Surgery", "St Mary\u202es Surgery"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "\u202e" not in result.output
    assert result.output.splitlines() == [f"error: {tmp_path / 'sites.csv'}:2 name: 'St Mary\\u202es Surgery' holds a "
                                          "control or invisible character"]


def test_a_scenario_group_takes_a_free_text_name_too(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nwindow: {start: '08:00', end: '08:15'}\n"
                    "sites:\n  - {class: gp_small, count: 1, access: fttp_330_50, name: \"St Mary's Surgery\"}\n"
                    "year: 2019\n")
    assert topology.site_names(load(path)) == ["St Mary's Surgery"]
    path.write_text(path.read_text().replace("St Mary's Surgery", "St Mary\\u202e"))
    assert "no leading or trailing spaces, control or invisible characters" in error_of(path)


# Line 2 is the header of each file below (after one comment line), so its first row is line 3.
BAD = {
    "unknown class": ("ZZ1,A,gp_medum,adsl2plus,1km,,\n",
                      "3 class: unknown site class 'gp_medum'; did you mean 'gp_medium'?"),
    "unknown access": ("ZZ1,A,gp_small,fttc80,1km,,\n", "3 access: unknown profile 'fttc80'; did you mean"),
    "unknown aggregation": ("ZZ1,A,gp_small,fttp_330_50,1km,gpn,\n",
                            "3 aggregation: unknown aggregation 'gpn'; did you mean 'gpon'?"),
    "no unit": ("ZZ1,A,gp_small,adsl2plus,1200,,\n", "3 distance: '1200' is not a distance"),
    "too long a line": ("ZZ1,A,gp_small,adsl2plus,200km,,\n", "3 distance: '200km': a line length from 0 to 100 km"),
    "no name": ("ZZ1,,gp_small,adsl2plus,1km,,\n", "3 name: no name given"),
    "same id": ("ZZ1,A,gp_small,adsl2plus,1km,,\nZZ1,B,gp_small,adsl2plus,1km,,\n",
                "4 id: 'ZZ1' is already the id of the site at"),
    "same name": ("ZZ1,A,gp_small,adsl2plus,1km,,\nZZ2,A,gp_small,adsl2plus,1km,,\n",
                  "4 name: 'A' is already the name of the site at"),
    "ragged row": ("ZZ1,A,gp_small,adsl2plus\n", "3: 4 cells where the header has 7"),
    "beyond the product's reach": ("ZZ1,A,gp_small,gfast_330_50,4.5km,,\n",  # access.yaml: G.fast to 0.5 km
                                   "3 distance: profile 'gfast_330_50' is not sold on lines beyond 0.5 km (this one "
                                   "is 4.5 km)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_cell_is_named_by_file_row_and_column(tmp_path, case):
    rows, expected = BAD[case]
    message = error_of(scenario(tmp_path, rows, header="# made up\n" + HEADER))
    assert message.startswith(f"{tmp_path / 'sites.csv'}:{expected}") or \
        message.startswith(f"sites.csv:{expected}"), message


def test_a_missing_or_unknown_column_is_named_at_the_header(tmp_path):
    message = error_of(scenario(tmp_path, "ZZ1,A,gp_small\n", header="id,name,class\n"))
    assert message.endswith("sites.csv:1: missing column 'access' (required: id, name, class, access)")
    message = error_of(scenario(tmp_path, "ZZ1,A,gp_small,adsl2plus,x\n", header="id,name,class,access,regoin\n"))
    assert message.endswith("sites.csv:1: unknown column 'regoin'; did you mean 'region'?")


def test_a_parquet_row_is_named_by_its_number(tmp_path):
    frame = pd.DataFrame({"id": ["A", "B"], "name": ["a", "b"], "class": ["gp_small", "gp_smal"],
                          "access": ["adsl2plus", "adsl2plus"], "distance_m": [1200.0, 800.0]})
    frame.to_parquet(tmp_path / "sites.parquet")
    path = scenario(tmp_path, name="x.csv")
    path.write_text(path.read_text().replace("x.csv", "sites.parquet"))
    assert error_of(path).endswith("sites.parquet:2 class: unknown site class 'gp_smal'; did you mean 'gp_small'?")
    frame["class"] = "gp_small"
    frame.to_parquet(tmp_path / "sites.parquet")
    assert topology.build(load(path)).sites["distance_m"].tolist() == [1200.0, 800.0]


def test_a_missing_inventory_is_named_at_the_scenario_key(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nwindow: {start: '08:00', end: '08:15'}\ninventory: nowhere.csv\nyear: 2019\n")
    assert error_of(path) == f"{path}:3 inventory: no such file: {tmp_path / 'nowhere.csv'}"


def test_bad_inventory_exits_2_with_the_located_message_and_no_traceback(tmp_path):
    path = scenario(tmp_path, "ZZ1,A,gp_small,fttc80,1km,,\n")
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "results"), "--no-png"])
    assert result.exit_code == 2
    assert "sites.csv:2 access: unknown profile 'fttc80'" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("meta.json"))
