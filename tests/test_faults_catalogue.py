"""Faults and backups in the catalogue (topologies/faults.yaml) and availability targets: loaded in SI units, and
every impossible figure or unknown name refused with its file, line and field, exit code 2.

Expected values are worked out by hand from the figures written in each test (hours x 3600 = seconds).
"""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import ScenarioError
from sim.load import load

runner = CliRunner()
SCENARIO = (
    "name: faults-test\n"
    'window: {start: "08:00", end: "09:00"}\n'
    "year: 2024\n"
    "sites:\n"
    "  - {class: gp_medium, count: 1, access: adsl2plus}\n"
    "  - {class: gp_small, count: 1, access: fttp_330_50}\n"
)


def _catalogue(tmp_path, topologies_dir, file: str, old: str, new: str):
    """Copy the catalogue, replace ``old`` (once) by ``new`` in ``file``; return (folder, file, line of the edit)."""
    folder = tmp_path / "cat"
    shutil.copytree(topologies_dir, folder)
    path = folder / file
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return folder, path.resolve(), text[:text.index(old)].count("\n") + 1


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load(path)
    return str(caught.value)


def test_the_shipped_faults_load_in_si_units(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "availability: {years: 50, backup: 4g_router}\n")
    scenario = load(path)
    cat = scenario.catalogue
    assert cat.faults.line["ADSL2+"].rate_per_year == 0.12
    assert cat.faults.line["ADSL2+"].repair.median == 20 * 3600 and cat.faults.line["ADSL2+"].repair.p75 == 32 * 3600
    assert cat.faults.line["Leased line"].repair.median == 2.5 * 3600
    assert cat.faults.working_hours.hours_per_week() == 5 * 10.5
    assert cat.backups["4g_router"].failover == 90.0 and cat.backups["4g_router"].profile == "backup_4g"
    assert cat.faults.shared["gpon_tree"].per == "aggregation"
    assert scenario.availability.years == 50 and scenario.availability.backup == "4g_router"
    assert scenario.targets.availability.of("acute_site").hours == 2 * 3600
    assert scenario.targets.availability.of("gp_small").share == pytest.approx(0.995)


def test_a_catalogue_without_faults_yaml_still_loads_and_refuses_a_study(tmp_path, topologies_dir):
    folder = tmp_path / "cat"
    shutil.copytree(topologies_dir, folder)
    (folder / "faults.yaml").unlink()
    assert load(_write(tmp_path, SCENARIO + f"catalogue: {folder}\n")).catalogue.backups == {}
    message = _error(tmp_path, SCENARIO + f"catalogue: {folder}\navailability: {{backup: none}}\n")
    assert message == f"{tmp_path / 's.yaml'}:8 availability.backup: unknown backup profile 'none'"


def _write(tmp_path, text: str):
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    return path


def test_a_backup_that_does_not_exist_names_the_nearest(tmp_path):
    message = _error(tmp_path, SCENARIO + "availability: {years: 10, backup: 4g_ruoter}\n")
    assert message == f"{tmp_path / 's.yaml'}:7 availability.backup: unknown backup profile '4g_ruoter'; " \
                      "did you mean '4g_router'?"


@pytest.mark.parametrize(("file", "old", "new", "field", "says"), [
    ("faults.yaml", "rate_per_year: 0.12   # S15: ~3 M", "rate_per_year: -0.12   # S15: ~3 M",
     "catalogue.faults.line.ADSL.rate_per_year", "-0.12 must be 0 or more (faults a year)"),
    ("faults.yaml", "repair: {median: 2.5h, p75: 3.4h, max: 7d}", "repair: {dist: fixed, value: 0h}",
     "catalogue.faults.line.Leased line.repair", "value: '0h' must be more than 0"),
    ("faults.yaml", "  FTTP:\n      rate_per_year: 0.03", "  FTTp:\n      rate_per_year: 0.03",
     "catalogue.faults.line.FTTp", "unknown technology 'FTTp'; did you mean 'FTTP'?"),
    ("faults.yaml", "technologies: [FTTC, G.fast]", "technologies: [FTTC, G.fats]",
     "catalogue.faults.shared.cabinet.technologies[1]", "unknown technology 'G.fats'; did you mean 'G.fast'?"),
    ("faults.yaml", "profile: backup_5g ", "profile: backup_6g ",
     "catalogue.backups.5g_router.profile", "unknown profile 'backup_6g'; did you mean 'backup_5g'?"),
    ("targets.yaml", "share: 99.9%", "share: 100.1%",
     "targets.availability.site_classes.acute_site.share", "'100.1%' is not a share between 0% and 100%"),
    ("targets.yaml", "    acute_site:\n      share", "    acute_sight:\n      share",
     "targets.availability.site_classes.acute_sight", "unknown site class 'acute_sight'; did you mean 'acute_site'?"),
])
def test_an_impossible_fault_figure_or_name_is_located(tmp_path, topologies_dir, file, old, new, field, says):
    folder, path, line = _catalogue(tmp_path, topologies_dir, file, old, new)
    message = _error(tmp_path, SCENARIO + f"catalogue: {folder}\n")
    assert message.startswith(f"{path}:{line} {field}: "), message
    assert says in message
    result = runner.invoke(app, ["validate", str(path)])  # the catalogue on its own, as `testbed validate` checks it
    assert result.exit_code == 2 and f"{path}:" in result.output and says in result.output


def test_a_study_of_a_technology_without_faults_is_refused_at_the_site(tmp_path, topologies_dir):
    folder, path, _ = _catalogue(tmp_path, topologies_dir, "faults.yaml",
                                 "    EFM:\n      rate_per_year: 0.12", "    EFM_x:\n      rate_per_year: 0.12")
    message = _error(tmp_path, SCENARIO + f"catalogue: {folder}\n")  # an unknown technology: refused anyway
    assert "unknown technology 'EFM_x'; did you mean 'EFM'?" in message
    folder2 = tmp_path / "cat2"
    shutil.copytree(topologies_dir, folder2)
    text = (folder2 / "faults.yaml").read_text()
    start = text.index("    EFM:\n")
    end = text.index("    Leased line:\n")
    (folder2 / "faults.yaml").write_text(text[:start] + text[end:])
    scenario = SCENARIO + "  - {class: gp_large, count: 1, access: efm_20}\n" + f"catalogue: {folder2}\n"
    assert load(_write(tmp_path, scenario)).catalogue.faults.line.keys().isdisjoint({"EFM"})
    message = _error(tmp_path, scenario + "availability: {years: 10}\n")
    assert message == (f"{tmp_path / 's.yaml'}:7 sites[2].access: profile 'efm_20' is 'EFM', which has no line "
                       "faults in the catalogue (faults.yaml: faults.line.EFM)")


def test_the_cli_exits_2_on_a_bad_backup_without_a_traceback(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "availability: {years: 10, backup: satellite}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert "availability.backup: unknown backup profile 'satellite'" in result.output
    assert "Traceback" not in result.output


def test_run_year_on_a_catalogue_without_faults_is_refused_before_anything_is_written(tmp_path, topologies_dir):
    folder = tmp_path / "cat"
    shutil.copytree(topologies_dir, folder)
    (folder / "faults.yaml").unlink()
    path = _write(tmp_path, SCENARIO + f"catalogue: {folder}\n")
    result = runner.invoke(app, ["run", str(path), "--year", "--no-png", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "availability.backup: no backup profile 'none' in the catalogue's faults.yaml" in result.output
    assert not (tmp_path / "out").exists()
