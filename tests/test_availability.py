"""Sampled years of line faults against hand arithmetic and closed forms.

Working hours are 08:00-18:30 Monday to Friday (10.5 h a day, 52.5 h a week; the timeline starts on a Monday;
a 365-day year is 52 weeks and a day, so over many years 52.5 of every 168 hours are working hours). Closed
forms: one line with Poisson faults at ``rate`` a year, each lasting R, is down ``rate x E[R] x f`` working hours
a year, f the working share of all hours; with a backup that never fails, each fault costs min(R, failover) of
service and the rest runs on the backup.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sim import availability, backup_windows, faults, topology, workload
from sim.cli import app
from sim.load import load
from sim.model.faults import Backup, Faults, LineFault, SharedFault, WorkingHours
from sim.report.availability import availability_changes, class_sentences, hours_text, span_text, worst_apps
from sim.report.data import RunData, read_run

runner = CliRunner()
HOURS = WorkingHours(start="08:00", end="18:30")
WORKING_SHARE = 52.5 / 168
NO_BACKUP = Backup(label="none", kind="none")


def _sites(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["site", "technology", "aggregation"])


def _intervals(*pairs: tuple[float, float]) -> faults.Intervals:
    return np.array([a for a, _ in pairs], float), np.array([b for _, b in pairs], float)


@pytest.mark.parametrize(("t_h", "worked_h"), [
    (9.0, 1.0),                   # Monday 09:00
    (4 * 24 + 12.0, 46.0),        # Friday 12:00: four days and 4 h
    (5 * 24 + 12.0, 52.5),        # Saturday noon: the week's 52.5 h
    (168.0 + 18.5, 52.5 + 10.5),  # the next Monday 18:30
])
def test_working_hours_are_counted_from_monday_midnight(t_h, worked_h):
    assert faults.working_until(np.array([t_h]), HOURS)[0] == pytest.approx(worked_h)


def test_cover_gives_union_and_intersection_of_half_open_intervals():
    a = _intervals((1, 3), (2, 5), (5, 6), (8, 9))  # (1,3) and (2,5) overlap; (5,6) abuts: one stretch 1-6
    assert [list(x) for x in faults.cover([a])] == [[1, 8], [6, 9]]
    b = _intervals((0, 2), (5.5, 8.5))
    assert [list(x) for x in faults.cover([faults.cover([a]), b], need=2)] == [[1, 5.5, 8], [2, 6, 8.5]]


def test_hours_are_split_at_the_year_boundary():
    # Monday of day 364 (the last day of year 0) 10:00 to Tuesday 10:00: 8.5 h in year 0, 2 h in year 1.
    start_h = 364 * 24 + 10.0
    assert list(faults.per_year(_intervals((start_h, start_h + 24)), 2, HOURS)) == pytest.approx([8.5, 2.0])


def test_a_fault_past_the_timelines_end_wraps_to_its_start():
    fault = LineFault(rate_per_year=50.0, repair={"dist": "fixed", "value": "100h"})
    starts, ends = faults.sample(fault, 2, np.random.default_rng(3))
    assert ends.max() <= 2 * faults.HOURS_PER_YEAR and starts.min() >= 0
    assert (ends - starts).sum() == pytest.approx(100.0 * (len(starts) - (starts == 0).sum()))


def test_failover_and_backup_hours_by_hand():
    # Primary down Monday 09:00-12:00; failover 0.5 h; backup down 10:00-11:00: lost 09:00-09:30 and 10-11.
    lost, on_backup = faults.site_hours([_intervals((9, 12))], [_intervals((10, 11))], 0.5, 1, HOURS)
    assert (lost[0], on_backup[0]) == pytest.approx((1.5, 1.5))
    lost, on_backup = faults.site_hours([_intervals((9, 12))], None, 0.5, 1, HOURS)
    assert (lost[0], on_backup[0]) == pytest.approx((3.0, 0.0))


def _mean_and_error(hours: np.ndarray) -> tuple[float, float]:
    per_year = hours.ravel()
    return per_year.mean(), per_year.std(ddof=1) / np.sqrt(len(per_year))


def test_monte_carlo_downtime_matches_the_closed_form():
    repair = {"median": "20h", "p75": "32h"}  # lognormal: mean 20 x exp(sigma^2 / 2) h, sigma = ln 1.6 / z75
    fault_set = Faults(working_hours=HOURS, line={"ADSL2+": LineFault(rate_per_year=0.12, repair=repair)})
    sampled = faults.sample_sites(_sites(("a", "ADSL2+", "")), fault_set, NO_BACKUP, None, 4000,
                                  (7,))
    sigma = np.log(1.6) / 0.6744897501960817
    expected = 0.12 * 20 * np.exp(sigma**2 / 2) * WORKING_SHARE  # about 0.96 h a year
    mean, error = _mean_and_error(sampled.down_h)
    assert abs(mean - expected) < 4 * error, (mean, expected, error)
    assert sampled.working_h_per_year == pytest.approx(WORKING_SHARE * faults.HOURS_PER_YEAR, rel=1e-4)


def test_a_backup_that_never_fails_costs_only_the_failover():
    fault_set = Faults(working_hours=HOURS, line={"FTTC": LineFault(rate_per_year=2.0, repair="10h"),
                                                  "4G": LineFault(rate_per_year=0.0, repair="1h")})
    router = Backup(label="4G", kind="mobile", profile="backup_4g", failover="30min")
    sampled = faults.sample_sites(_sites(("a", "FTTC", "")), fault_set, router, "4G", 3000, (1,))
    lost, lost_error = _mean_and_error(sampled.down_h)
    on_backup, backup_error = _mean_and_error(sampled.backup_h)
    assert abs(lost - 2.0 * 0.5 * WORKING_SHARE) < 4 * lost_error  # 0.31 h a year
    assert abs(on_backup - 2.0 * 9.5 * WORKING_SHARE) < 4 * backup_error  # 5.9 h a year


def _cabinet_only(years: int, backup: Backup) -> faults.SiteYears:
    fault_set = Faults(working_hours=HOURS, line={"FTTC": LineFault(rate_per_year=0.0, repair="1h")},
                       shared={"cabinet": SharedFault(technologies=("FTTC",), rate_per_year=1.0, repair="6h")})
    return faults.sample_sites(_sites(("a", "FTTC", "")), fault_set, backup, "FTTC", years, (2,))


def test_a_second_line_through_the_same_cabinet_does_not_help_and_a_diverse_one_does():
    alone = _cabinet_only(300, NO_BACKUP)
    same = _cabinet_only(300, Backup(label="2nd", kind="line", profile="fttc_40_10", failover="6min", diverse=False))
    diverse = _cabinet_only(300, Backup(label="2nd", kind="line", profile="fttc_40_10", failover="6min"))
    assert np.array_equal(same.down_h, alone.down_h) and not same.backup_h.any()
    assert alone.down_h.mean() == pytest.approx(6 * WORKING_SHARE, rel=0.25)  # 1.9 h a year
    # Diverse: the failover (0.1 h a fault) and the rare overlap with its own cabinet's faults (0.1% of hours).
    assert diverse.down_h.mean() < 0.25 * alone.down_h.mean()


def test_sites_on_one_gpon_tree_share_its_faults():
    fault_set = Faults(working_hours=HOURS, line={"FTTP": LineFault(rate_per_year=0.0, repair="1h")},
                       shared={"tree": SharedFault(technologies=("FTTP",), rate_per_year=2.0, repair="8h",
                                                   per="aggregation")})
    sites = _sites(("a", "FTTP", "gpon-1"), ("b", "FTTP", "gpon-1"), ("c", "FTTP", ""))
    sampled = faults.sample_sites(sites, fault_set, NO_BACKUP, None, 50, (4,))
    assert np.array_equal(sampled.down_h[0], sampled.down_h[1]) and sampled.down_h[0].sum() > 0
    assert not np.array_equal(sampled.down_h[0], sampled.down_h[2])


def _scenario(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text('name: year-test\nwindow: {start: "08:00", end: "09:00"}\ndrain: 30min\nyear: 2019\n'
                    "load: {gp_video_share: 25%}\n" + text)
    return path


def test_hours_without_an_app_add_the_backup_hours_where_the_backup_fails_it(tmp_path):
    scenario = load(_scenario(tmp_path, "sites:\n  - {class: gp_medium, count: 2, access: adsl2plus}\n"))
    slow = Backup(label="slow", kind="line", profile="adsl_legacy", failover="1min")  # 1 Mbit/s / 256 kbit/s
    cat = scenario.catalogue.model_copy(update={"backups": {**scenario.catalogue.backups, "slow": slow}})
    scenario = scenario.model_copy(update={"catalogue": cat})
    found = availability.study(scenario, seed=3, years=100, backup="slow")
    sites = found.sites
    assert not sites.loc[sites["app"] == "video", "works_on_backup"].any()  # 256 kbit/s up: no video call
    works = sites["works_on_backup"]  # the share of the class's replayed site-windows where the app works
    assert np.allclose(sites["without_h"], sites["down_h"] + (1.0 - works) * sites["backup_h"])
    trace = workload.generate(scenario, topology.build(scenario), 3)  # as a run of seed 3 made it
    # Sessions a year at the window's rate (a 1 h window: its sessions an hour); no video call passes at 256 kbit/s.
    calls = trace[trace["app"] == "video"].groupby("site").size()
    video = sites[sites["app"] == "video"].set_index("site")
    assert np.allclose(video["sessions_per_h"], calls.reindex(video.index)) and (calls > 0).all()
    assert np.allclose(video["sessions_lost"], video["down_h"] * calls.reindex(video.index))
    assert np.allclose(video["sessions_failed_on_backup"], video["backup_h"] * calls.reindex(video.index))
    again = availability.study(scenario, seed=3, years=100, backup="slow", trace=trace)
    pd.testing.assert_frame_equal(found.classes, again.classes)  # the seed decides everything


def test_check_fails_a_class_that_misses_its_availability_target(tmp_path):
    strict = "targets: {availability: {default: {share: 99.99%, hours: 8h, years: 95%}}}\n"
    sites = "sites:\n  - {class: gp_medium, count: 2, access: fttc_80_20, distance: 0.6km}\n"
    path = _scenario(tmp_path, sites + strict + "availability: {years: 400, backup: none}\n")
    junit, summary = tmp_path / "check.xml", tmp_path / "check.json"
    result = runner.invoke(app, ["check", str(path), "--junit", str(junit), "--json", str(summary)])
    # FTTC alone: ~1.05 working hours a year down (line, cabinet, exchange) = 99.96% of 2,740 h < 99.99%
    assert result.exit_code == 1, result.output
    assert "misses" in result.output and "usable" in result.output
    doc = json.loads(summary.read_text())
    rows = doc["availability"]
    assert rows and not any(row["passed"] for row in rows) and not doc["all_pass"]
    assert all(0.99 < row["share_usable"] < 0.9999 for row in rows)
    assert doc["failed"] == len(rows) + sum(not v["passed"] for v in doc["verdicts"])
    suite = ET.parse(junit).getroot().find("testsuite[@name='year-test.gp_medium.availability']")
    assert int(suite.get("failures")) == len(rows) and suite.find("testcase/failure") is not None
    path = _scenario(tmp_path, sites + strict + "availability: {years: 400, backup: second_fttp_diverse}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output  # 90 s a fault, and FTTP's rare overlaps: ~0.01 h a year


def test_the_backup_day_swaps_every_sites_access_and_queues_calls_first_when_asked(tmp_path):
    scenario = load(_scenario(tmp_path, "sites:\n"
                                        "  - {class: gp_medium, count: 2, access: fttc_80_20, distance: 1.2km}\n"
                                        "  - {class: gp_small, count: 3, access: fttp_330_50, aggregation: gpon}\n"))
    swapped = backup_windows.on_backup(scenario, "4g_router_realtime")
    sites = topology.build(swapped).sites
    assert set(sites["access_profile"]) == {"backup_4g+calls_first"} and set(sites["qos"]) == {"priority"}
    assert set(sites["down_bps"]) == {29.5e6} and set(sites["up_bps"]) == {7.6e6}  # S1's 4G averages
    assert set(sites["aggregation"]) == {""} and len(sites) == 5
    plain = topology.build(backup_windows.on_backup(scenario, "4g_router")).sites
    assert set(plain["access_profile"]) == {"backup_4g"} and set(plain["qos"]) == {"fifo"}


def test_the_worst_app_per_class_and_its_target_in_hours():
    table = pd.DataFrame({
        "backup": "none", "working_h": 2737.5, "site_class": ["gp", "gp", "gp"], "access_profile": ["fttc"] * 3,
        "app": ["video", "telephony", "record_view"], "without_h": [1.0, 3.0, 2.0], "passed": [True, True, False],
        "target_share": 0.995})
    worst = worst_apps(table)
    assert list(worst["app"]) == ["telephony"] and not worst["all_pass"][0]
    assert worst["target_h"][0] == pytest.approx(0.005 * 2737.5)  # 13.7 working hours a year


def test_run_year_writes_the_tables_and_draws_them_in_the_report(tmp_path, scenarios_dir):
    result = runner.invoke(app, ["run", str(scenarios_dir / "ci-smoke.yaml"), "--year", "--no-png",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "ci-smoke").iterdir())
    classes = pd.read_csv(folder / "availability.csv")
    assert set(classes["access_profile"]) == {"adsl2plus", "fttc_80_20", "fttp_330_50"}
    assert (classes["backup"] == "none").all() and (classes["backup_h"] == 0).all()
    assert 'id="availability"' in (folder / "report.html").read_text()
    assert (folder / "figures" / "availability.csv").is_file()
    # The report says it in words, every figure the table's: ADSL2+, FTTC, FTTP (copper first), video calls, and
    # each line's verdict on its availability target.
    video = classes[classes["app"] == "video"].set_index("technology")
    ((_, said),) = class_sentences(read_run(folder))
    assert said.startswith("GP practice, medium (about 10,000 patients): working time lost to line faults a year")
    at = [said.index(f"on {t} {hours_text(video.loc[t, 'without_h'])} of video consultations "
                     f"({span_text(video.loc[t, 'without_low_h'], video.loc[t, 'without_high_h'])}), "
                     + ("meeting" if classes.loc[classes["technology"] == t, "passed"].all() else "missing"))
          for t in ("ADSL2+", "FTTC", "FTTP")]
    assert at == sorted(at)
    assert html.escape(said) in (folder / "report.html").read_text()


def _run_with_availability(folder, name: str, rows: list[tuple]) -> RunData:
    """A run folder holding only ``availability.csv`` (rows: access, app, without_h, sites), read as RunData."""
    folder.mkdir()
    pd.DataFrame([{"backup": "none", "site_class": "gp_medium", "access_profile": access, "app": app_name,
                   "without_h": hours, "sites": sites} for access, app_name, hours, sites in rows]
                 ).to_csv(folder / "availability.csv", index=False)
    resolved = {"catalogue": {"apps": {"video": {"label": "Video"}, "telephony": {"label": "Calls"}},
                              "site_classes": {"gp_medium": {"label": "GP medium"}}}}
    empty = pd.DataFrame()
    return RunData(folder, {"scenario": name}, resolved, empty, empty, empty)


def test_compare_says_what_a_change_of_line_does_to_the_hours_lost(tmp_path):
    # A: 2 sites on ADSL2+ lose 1.0 h of video, 1 on FTTP 0.2 h: (2 x 1.0 + 0.2) / 3 = 0.73 h a site;
    # calls (2 x 0.5 + 0.1) / 3 = 0.37 h. B: all three on FTTP, 0.2 h.
    a = _run_with_availability(tmp_path / "a", "copper", [("adsl2plus", "video", 1.0, 2), ("fttp", "video", 0.2, 1),
                                                          ("adsl2plus", "telephony", 0.5, 2),
                                                          ("fttp", "telephony", 0.1, 1)])
    b = _run_with_availability(tmp_path / "b", "fibre", [("fttp", "video", 0.2, 3), ("fttp", "telephony", 0.1, 3)])
    # 0.733 h x 60 = 44 min; 0.2 h x 60 = 12 min.
    assert availability_changes(a, b) == ["GP medium: line faults leave a site without Video for about 44 min of "
                                          "working time a year in copper and 12 min in fibre with no backup."]
    (tmp_path / "d").mkdir()  # a run without availability.csv: nothing to say
    assert availability_changes(a, RunData(tmp_path / "d", {"scenario": "d"}, b.resolved, *[pd.DataFrame()] * 3)) == []


def test_a_sites_years_do_not_depend_on_the_other_sites():
    fault_set = Faults(working_hours=HOURS, line={"ADSL2+": LineFault(rate_per_year=2.0, repair="10h"),
                                                  "FTTP": LineFault(rate_per_year=0.5, repair="10h")})
    copper = faults.sample_sites(_sites(("a", "ADSL2+", ""), ("b", "ADSL2+", "")), fault_set, NO_BACKUP, None, 40,
                                 (9,))
    fibre = faults.sample_sites(_sites(("a", "FTTP", ""), ("b", "ADSL2+", "")), fault_set, NO_BACKUP, None, 40, (9,))
    assert np.array_equal(copper.down_h[1], fibre.down_h[1])  # site b's faults, whatever site a's line is
    assert not np.array_equal(copper.down_h[0], fibre.down_h[0])


def test_a_site_class_target_may_give_some_keys_and_takes_the_rest_from_the_default(tmp_path):
    # docs/scenarios.md: targets are overrides of topologies/targets.yaml, any subset of them.
    from sim.load import load
    from sim.units import parse
    path = tmp_path / "s.yaml"
    path.write_text("name: partial\nyear: 2024\nwindow: {start: '08:00', end: '09:00'}\ndrain: 10min\n"
                    "sites:\n  - {class: gp_medium, count: 1, access: fttc_80_20}\n"
                    "availability: {years: 50}\n"
                    "targets: {availability: {site_classes: {gp_medium: {hours: 4h}}}}\n")
    targets = load(path).targets.availability
    default = targets.default
    mine = targets.of("gp_medium")
    assert mine.hours == parse("4h", "time") and default.hours == parse("8h", "time")
    assert (mine.share, mine.years) == (default.share, default.years)  # 99.5% and 95%, the default's
    assert targets.of("acute_site").hours == parse("2h", "time")  # the catalogue's own class keeps its own
