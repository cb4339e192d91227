"""`testbed check --year`: availability judged for any scenario, and known failures that excuse an availability miss.

Two medium practices on FTTC 80/20 (0.6 km) and none on a backup: the line, its cabinet and its exchange are down
about 1.05 working hours a year (docs/availability.md), 99.96% of 2,738 working hours, and in the worst 5% of
years a site loses several hours. Against a strict target (99.99% usable, at most 1 h in 95% of years) FTTC
misses both measures (the share: 1.05 / 2,738 = 0.04% > 0.01%).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from sim.cli import app

runner = CliRunner()
HEAD = ('name: yearcheck\nwindow: {start: "08:00", end: "08:30"}\ndrain: 20min\nyear: 2019\n'
        "load: {gp_video_share: 25%}\n"
        "targets: {availability: {default: {share: 99.99%, hours: 1h, years: 95%}}}\n"
        "sites:\n  - {class: gp_medium, count: 2, access: fttc_80_20, distance: 0.6km}\n")


def _write(tmp_path, known: str = "", name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(HEAD + (f"known_failures:\n{known}" if known else ""), encoding="utf-8")
    return path


def _check(path, *extra: str):
    result = runner.invoke(app, ["check", str(path), *extra])
    assert "Traceback" not in result.output, result.output
    return result, " ".join(result.output.split())


def test_check_year_judges_availability_of_a_scenario_without_the_key(tmp_path):
    path = _write(tmp_path)
    result, _ = _check(path)
    assert result.exit_code == 0 and "availability" not in result.output  # without --year: as before
    summary = tmp_path / "c.json"
    result, text = _check(path, "--year", "--json", str(summary))
    assert result.exit_code == 1
    rows = json.loads(summary.read_text())["availability"]
    assert rows and not any(row["passed"] for row in rows) and {row["backup"] for row in rows} == {"none"}
    video = next(row for row in rows if row["app"] == "video")
    assert 0.6 < video["without_h"] < 1.6 and video["years"] == 200  # the closed form's ~1.05 h; 200 years
    # The message names the class, technology, hours a year with its interval, and the target.
    assert ("availability miss: gp_medium on FTTC (fttc_80_20), backup none, ") in text
    assert (f"{video['without_h']:.2g} working hours a year without it (95% interval {video['without_low_h']:.2g}-"
            f"{video['without_high_h']:.2g}); target: usable 99.99% of working hours, at most 1 h in 95% of "
            "years: usable ") in text
    assert f"{len(rows)} availability verdicts missed their target: the check fails" in text


def test_a_known_failure_excuses_the_measures_it_names_and_no_others(tmp_path):
    share_only = '  - {class: gp_medium, technology: FTTC, availability: share, reason: "copper retires in 2027"}\n'
    result, text = _check(_write(tmp_path, share_only), "--year")
    assert result.exit_code == 1 and "availability miss: gp_medium on FTTC" in text  # the hours are missed too
    both = share_only.replace("availability: share", "availability: all")
    junit, summary = tmp_path / "c.xml", tmp_path / "c.json"
    result, text = _check(_write(tmp_path, both), "--year", "--junit", str(junit), "--json", str(summary))
    assert result.exit_code == 0, text
    assert "availability miss excused (known failure: copper retires in 2027): gp_medium on FTTC" in text
    assert "availability miss:" not in text
    doc = json.loads(summary.read_text())
    rows = doc["availability"]
    assert doc["passed"] and doc["failed"] == 0 and doc["known_failures"] == len(rows) and not doc["all_pass"]
    assert {row["known"] for row in rows} == {"copper retires in 2027"}
    suite = ET.parse(junit).getroot().find("testsuite[@name='yearcheck.gp_medium.availability']")
    assert (suite.get("failures"), suite.get("skipped")) == ("0", str(len(rows)))
    assert "known failure (copper retires in 2027)" in suite.find("testcase/skipped").get("message")


def test_an_availability_known_failure_that_excuses_nothing_is_reported(tmp_path):
    entries = ('  - {class: gp_medium, technology: FTTC, availability: all, reason: "copper"}\n'
               '  - {class: gp_medium, technology: FTTP, availability: hours, reason: "nothing fails there"}\n')
    summary = tmp_path / "c.json"
    result, text = _check(_write(tmp_path, entries), "--year", "--json", str(summary))
    assert result.exit_code == 0
    assert ("known failure not met (class gp_medium, technology FTTP, availability hours): nothing fails there now"
            in text)
    assert json.loads(summary.read_text())["unused_known_failures"] == [
        {"class": "gp_medium", "technology": "FTTP", "availability": "hours", "reason": "nothing fails there"}]
    result, text = _check(_write(tmp_path, entries))  # no years sampled: not judged, and said so
    assert result.exit_code == 0 and "2 availability known failures not judged" in text


@pytest.mark.parametrize(("entry", "said"), [
    ("{class: gp_medium, technology: FTTC, availability: shar, reason: r}",
     "s.yaml:10 known_failures[0].availability: unknown availability measure 'shar'; did you mean 'share'?"),
    ("{class: gp_medium, technology: FTTX, availability: share, reason: r}",
     "s.yaml:10 known_failures[0].technology: unknown technology 'FTTX'; did you mean"),
    ("{class: gp_medium, backup: 4g_ruoter, availability: share, reason: r}",
     "s.yaml:10 known_failures[0].backup: unknown backup profile '4g_ruoter'; did you mean '4g_router'?"),
    ("{class: gp_medium, availability: share, target: vidoe, reason: r}",
     "s.yaml:10 known_failures[0].target: unknown target 'vidoe'; did you mean 'video'?"),
    ("{class: gp_medium, technology: FTTC, reason: r}",
     "s.yaml:10 known_failures[0]: 'technology' and 'backup' name an availability verdict: add 'availability: share'"),
    ("{site: gp_medium-fttc_80_20-001, availability: share, reason: r}",
     "s.yaml:10 known_failures[0]: availability is judged per site class, not per site"),
])
def test_a_bad_availability_known_failure_is_refused_at_its_line(tmp_path, entry, said):
    result, text = _check(_write(tmp_path, f"  - {entry}\n"), "--year")
    assert result.exit_code == 2 and said in text, text


def test_against_a_baseline_only_a_new_availability_miss_fails_the_check(tmp_path):
    # The strict target's misses (module docstring) against three baselines: the same misses, a lax target's
    # passes (99% usable: 27 h of 2,738; at most 24 h in 95% of years, against FTTC's ~1.05 h a year), none judged.
    strict = _write(tmp_path)
    lax = tmp_path / "lax.yaml"
    lax.write_text(strict.read_text().replace("share: 99.99%, hours: 1h", "share: 99%, hours: 24h"))
    same, passing, without = tmp_path / "same.json", tmp_path / "passing.json", tmp_path / "without.json"
    assert _check(strict, "--year", "--json", str(same))[0].exit_code == 1
    assert _check(lax, "--year", "--json", str(passing))[0].exit_code == 0
    assert _check(strict, "--json", str(without))[0].exit_code == 0  # no years sampled: no availability verdicts
    misses = json.loads(same.read_text())["availability"]
    assert misses and not any(row["passed"] for row in misses)
    assert all(row["passed"] for row in json.loads(passing.read_text())["availability"])

    result, text = _check(strict, "--year", "--baseline", str(same))  # missed before too: not a regression
    assert result.exit_code == 0, text
    assert "nothing got worse than the baseline" in text and "the check fails" not in text
    assert "availability miss as in the baseline: gp_medium on FTTC (fttc_80_20), backup none, " in text

    junit, summary = tmp_path / "c.xml", tmp_path / "c.json"
    result, text = _check(strict, "--year", "--baseline", str(passing), "--junit", str(junit), "--json", str(summary),
                          "--format", "text")
    assert result.exit_code == 1, text
    doc = json.loads(summary.read_text())
    found = [r for r in doc["regressions"] if r["level"] == "availability"]
    assert {(r["name"], r["target"]) for r in found} == {("gp_medium on fttc_80_20, backup none", row["app"])
                                                         for row in misses}
    video = next(row for row in misses if row["app"] == "video")
    assert next(r for r in found if r["target"] == "video")["before"].startswith("passed (usable ")
    assert next(r for r in found if r["target"] == "video")["after"] == (
        f"failed (usable {video['share_usable']:.2%}, worst years {video['worst_h']:.2g} h)")
    assert f"{len(found)} regressions against the baseline" in text and not doc["passed"]
    assert f"{len(found)} availability verdicts missed their target: the check fails" in text
    suite = ET.parse(junit).getroot().find("testsuite[@name='yearcheck.gp_medium.availability']")
    assert (suite.get("failures"), suite.get("skipped")) == (str(len(misses)), "0")

    result, text = _check(strict, "--year", "--baseline", str(without), "--json", str(summary))
    assert result.exit_code == 1  # a baseline without availability verdicts: every miss is new ("absent" before)
    found = [r for r in json.loads(summary.read_text())["regressions"] if r["level"] == "availability"]
    assert len(found) == len(misses) and {r["before"] for r in found} == {"absent"}
