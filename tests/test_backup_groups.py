"""A backup per site group and per inventory row: each site's years and backup day are its own backup's."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from sim import availability
from sim.cli import app
from sim.load import load

runner = CliRunner()
HEAD = 'name: groups\nwindow: {start: "08:00", end: "08:20"}\ndrain: 10min\nyear: 2019\n'
TWO_GROUPS = ("sites:\n"
              "  - {class: gp_medium, count: 2, access: fttc_80_20, distance: 0.6km, backup: second_fttp_diverse}\n"
              "  - {class: gp_medium, count: 2, access: fttc_80_20, distance: 0.6km}\n")


def _write(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(HEAD + text, encoding="utf-8")
    return path


def test_a_group_keeps_its_own_backup_and_the_others_take_the_scenarios(tmp_path):
    scenario = load(_write(tmp_path, TWO_GROUPS + "availability: {years: 60, backup: none}\n"))
    mixed = availability.study(scenario, seed=1)
    sites = mixed.sites.drop_duplicates("site").set_index("site")
    first, second = sites.index[:2], sites.index[2:]
    assert set(sites.loc[first, "backup"]) == {"second_fttp_diverse"} and set(sites.loc[second, "backup"]) == {"none"}
    # Each site's years are those of a study giving every site that backup: faults depend on a site's position.
    for backup, names in (("second_fttp_diverse", first), ("none", second)):
        alone = scenario.model_copy(update={"sites": tuple(g.model_copy(update={"backup": None})
                                                           for g in scenario.sites)})
        whole = availability.study(alone, seed=1, years=60, backup=backup).sites.drop_duplicates("site")
        whole = whole.set_index("site")
        for column in ("down_h", "backup_h", "without_h"):
            assert np.allclose(sites.loc[names, column], whole.loc[names, column]), (backup, column)
    assert (sites.loc[second, "backup_h"] == 0).all() and (sites.loc[first, "backup_h"] > 0).all()
    # The class table has a row per backup: the diverse second line's sites lose far less.
    worst = mixed.classes.groupby("backup")["without_h"].max()
    assert worst["second_fttp_diverse"] < 0.25 * worst["none"]
    assert mixed.backup == "second_fttp_diverse, none"


def test_an_unknown_group_backup_is_named_at_its_line_with_the_nearest(tmp_path):
    path = _write(tmp_path, TWO_GROUPS.replace("second_fttp_diverse", "second_fttp_divrse"))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (f"{path}:6 sites[0].backup: unknown backup profile 'second_fttp_divrse'; did you mean "
            "'second_fttp_diverse'?") in " ".join(result.output.split())


def _inventory(tmp_path, backup_cell: str):
    (tmp_path / "sites.csv").write_text("id,name,class,access,backup\n"
                                        "ZZ1,North Surgery,gp_small,fttc_80_20,\n"
                                        f"ZZ2,South Surgery,gp_small,fttc_80_20,{backup_cell}\n", encoding="utf-8")
    return _write(tmp_path, "inventory: sites.csv\navailability: {years: 20, backup: none}\n")


def test_an_inventory_row_names_its_own_backup_and_a_blank_takes_the_scenarios(tmp_path):
    scenario = load(_inventory(tmp_path, "4g_router"))
    assert [g.backup for g in scenario.sites] == [None, "4g_router"]
    found = availability.study(scenario, seed=2, days={})
    sites = found.sites.drop_duplicates("site").set_index("site")
    assert sites.loc["North Surgery", "backup"] == "none" and sites.loc["South Surgery", "backup"] == "4g_router"
    assert set(found.classes["backup"]) == {"none", "4g_router"}


def test_an_unknown_inventory_backup_is_named_at_its_row_and_column(tmp_path):
    result = runner.invoke(app, ["check", str(_inventory(tmp_path, "4g_ruoter"))])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "sites.csv:3 backup: unknown backup profile '4g_ruoter'; did you mean '4g_router'?" in text, text


def test_the_backup_day_is_run_once_per_backup_and_reused(tmp_path):
    scenario = load(_write(tmp_path, TWO_GROUPS + "availability: {years: 20, backup: none}\n"))
    days: dict = {}
    first = availability.study(scenario, seed=1, days=days)
    assert list(days) == ["second_fttp_diverse"]  # 'none' needs no day
    marker = days["second_fttp_diverse"]
    again = availability.study(scenario, seed=1, days=days)
    assert days["second_fttp_diverse"] is marker
    pd.testing.assert_frame_equal(first.classes, again.classes)


def test_check_names_each_backups_cases_apart_in_junit(tmp_path):
    path = _write(tmp_path, TWO_GROUPS + "availability: {years: 20, backup: none}\n")
    junit = tmp_path / "check.xml"
    result = runner.invoke(app, ["check", str(path), "--junit", str(junit)])
    assert result.exit_code in (0, 1), result.output
    suite = ET.parse(junit).getroot().find("testsuite[@name='groups.gp_medium.availability']")
    cases = [(c.get("classname"), c.get("name")) for c in suite.iter("testcase")]
    assert len(cases) == len(set(cases)) and int(suite.get("tests")) == len(cases)
    assert {c for c, _ in cases} == {"groups.gp_medium.fttc_80_20+second_fttp_diverse",
                                     "groups.gp_medium.fttc_80_20+none"}
