"""The ``testbed`` command, in-process: outputs, exit codes, and nothing half-written."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim import des, results
from sim.cli import app

runner = CliRunner()
RUN_FILES = {"scenario.yaml", "resolved.json", "meta.json", "trace.parquet", "records.parquet", "links.parquet",
             "sites.csv", "verdicts.csv", "verdicts.json", "site_verdicts.csv", "session_verdicts.parquet",
             "report.html", "figures"}


def test_run_writes_a_complete_results_folder(tmp_path, scenarios_dir):
    result = runner.invoke(app, ["run", str(scenarios_dir / "ci-smoke.yaml"), "--out", str(tmp_path), "--no-png"])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "ci-smoke").iterdir()
    assert folder.name.endswith("-des-s1")
    assert {p.name for p in folder.iterdir()} == RUN_FILES
    assert results.is_complete(folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["seed"] == 1 and meta["engine"] == "des" and meta["format_version"] == 3
    assert meta["sessions"] == len(pd.read_parquet(folder / "trace.parquet"))
    verdicts = pd.read_csv(folder / "verdicts.csv")
    row = verdicts[(verdicts["access_profile"] == "adsl2plus") & (verdicts["app"] == "video")].iloc[0]
    assert not row["passed"]
    assert "adsl2plus" in result.output and str(folder) in result.output
    # The failing sites, worst first, with their line and each miss's measure against its target and cause.
    sites = pd.read_csv(folder / "site_verdicts.csv")
    video = sites[(sites["site"] == "gp-adsl") & (sites["app"] == "video")].iloc[0]
    assert "Failing sites, worst first: 1 of 3 sites miss a target" in result.output
    assert (f"gp-adsl gp_medium adsl2plus (16 Mbit/s down, 1 Mbit/s up) video {video['measure']} "
            f"{video['measured_value']:.1%}") in " ".join(result.output.split())  # (columns as wide as their text)


def test_seed_option_names_the_folder(tmp_path, scenarios_dir):
    result = runner.invoke(app, ["run", str(scenarios_dir / "ci-smoke.yaml"), "--seed", "77", "--out", str(tmp_path),
                                 "--no-png"])
    assert result.exit_code == 0
    assert [p.name[-4:] for p in (tmp_path / "ci-smoke").iterdir()] == ["-s77"]


def test_check_exits_1_and_writes_junit_and_json_when_targets_are_missed(tmp_path, scenarios_dir):
    junit, summary = tmp_path / "out.xml", tmp_path / "out.json"
    scenario = tmp_path / "undeclared.yaml"  # ci-smoke without its known failures
    scenario.write_text((scenarios_dir / "ci-smoke.yaml").read_text().split("known_failures:")[0])
    result = runner.invoke(app, ["check", str(scenario), "--junit", str(junit), "--json", str(summary)])
    assert result.exit_code == 1, result.output
    doc = json.loads(summary.read_text())
    assert doc["all_pass"] is False and doc["failed"] >= 1
    failures = ET.parse(junit).getroot().findall(".//failure")
    failing_sites = sum(not s["passed"] for s in doc["sites"])
    assert len(failures) == doc["failed"] + failing_sites
    assert any("adsl2plus" in case.get("classname") for case in ET.parse(junit).getroot().iter("testcase")
               if case.find("failure") is not None)


def test_check_exits_0_when_every_class_passes(tmp_path, scenarios_dir):
    text = (scenarios_dir / "ci-smoke.yaml").read_text()
    text = text.replace("access: adsl2plus", "access: fttp_330_50").replace("access: fttc_80_20, distance: 0.6km",
                                                                          "access: leased_100")
    scenario = tmp_path / "fibre-smoke.yaml"
    scenario.write_text(text.replace("name: ci-smoke", "name: fibre-smoke"))
    result = runner.invoke(app, ["check", str(scenario)])
    assert result.exit_code == 0, result.output


def test_bad_input_exits_2_with_a_located_message_and_no_traceback(tmp_path, scenarios_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text((scenarios_dir / "ci-smoke.yaml").read_text().replace("access: fttp_330_50", "access: fttp_1g"))
    result = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "res"), "--no-png"])
    assert result.exit_code == 2
    assert f"{bad}:" in result.output and "sites[2].access" in result.output
    assert "did you mean" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "res").exists()


def test_missing_file_exits_2(tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_interrupted_run_leaves_no_folder_that_looks_complete(tmp_path, scenarios_dir, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sim.pipeline.results.write_run", interrupted)
    result = runner.invoke(app, ["run", str(scenarios_dir / "ci-smoke.yaml"), "--out", str(tmp_path), "--no-png"])
    assert result.exit_code == 130
    leftovers = list((tmp_path / "ci-smoke").iterdir()) if (tmp_path / "ci-smoke").exists() else []
    assert leftovers == []


def test_failing_engine_leaves_nothing(tmp_path, scenarios_dir, monkeypatch):
    real_run = des.run

    def broken(*args, **kwargs):
        real_run(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr("sim.pipeline.des.run", broken)
    with pytest.raises(RuntimeError):
        from sim import pipeline
        pipeline.run(scenarios_dir / "ci-smoke.yaml", out=tmp_path)
    assert not any(tmp_path.rglob("meta.json"))


def test_validate_reports_each_file(scenarios_dir, topologies_dir, tmp_path):
    good = runner.invoke(app, ["validate", str(scenarios_dir / "icb.yaml"), str(topologies_dir / "access.yaml")])
    assert good.exit_code == 0 and "62 sites" in good.output and "access profiles" in good.output
    bad = tmp_path / "b.yaml"
    bad.write_text("name: x\nwindow: {start: '08:00', end: '07:00'}\nsites: []\nyear: 2019\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and f"{bad}:2 window" in result.output


def test_list_shows_profiles_classes_and_scenarios():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("fttc_80_20", "leased_1000", "gp_medium", "acute_site", "baseline-2019.yaml"):
        assert name in result.output
    assert runner.invoke(app, ["list", "nonsense"]).exit_code == 2


def test_list_apps_shows_how_each_transfer_travels():
    """A transfer app's connection words (the catalogue's record views: multiplexed); a stream's none."""
    from sim import cli_lists, load
    from sim.load_catalogue import DEFAULT_CATALOGUE
    apps = load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue.apps  # noqa: SLF001
    assert cli_lists._connection_words(apps["record_view"]) == "multiplexed (idle: reused 80%)"  # noqa: SLF001
    assert cli_lists._connection_words(apps["image_routine"]) == "new"  # noqa: SLF001
    assert cli_lists._connection_words(apps["video"]) == "-"  # noqa: SLF001
    result = runner.invoke(app, ["list", "apps"])
    assert result.exit_code == 0 and "Apps (the registry)" in result.output


def test_list_off_a_terminal_is_plain_text_never_cut():
    """As run and check: not on a terminal (a pipe, a log), a table is plain text, each row on a line, whole."""
    apps = runner.invoke(app, ["list", "apps"])
    assert apps.exit_code == 0 and "…" not in apps.output and "┃" not in apps.output
    lines = [" ".join(line.split()) for line in apps.output.splitlines()]
    assert "app kind on line rate or size connection target source" in lines
    assert ("record_view transfer yes median 500KB multiplexed (idle: reused 80%) within 5 s S4 (records)"
            in lines)
    assert any(line.startswith("teams_meeting stream yes") for line in lines)
    # an app a site carries as one stream of all its users (sites.yaml: aggregate) has its rates per user
    assert any(line.startswith("clinical_system session yes 25kbps per user -") for line in lines)
    assert any(line.startswith("gp2gp does not cross a site's line: between") for line in lines)
    profiles = runner.invoke(app, ["list", "profiles"])
    assert profiles.exit_code == 0 and "…" not in profiles.output
    lines = [" ".join(line.split()) for line in profiles.output.splitlines()]
    assert "fttp_330_50 FTTP fibre 330Mbps 50Mbps 11 ms 50ms 50ms" in lines
    assert "gfast_330_50 G.fast copper 330Mbps 50Mbps 15 ms 250ms 100ms" in lines
