"""The report's availability in words: every figure in a sentence is the table's, for a policy reader."""

from __future__ import annotations

import pandas as pd

from sim.report.availability import (
    WITHOUT_BACKUP_FILE,
    availability_figure,
    availability_story,
    class_sentences,
    hours_text,
    span_text,
    worst_years_text,
)
from sim.report.data import RunData

RESOLVED = {"catalogue": {"apps": {"video": {"label": "video consultations"}, "telephony": {"label": "calls"},
                                   "record_view": {"label": "record views"}},
                          "site_classes": {"gp_medium": {"label": "A GP practice"},
                                           "gp_small": {"label": "A small practice"},
                                           "acute_site": {"label": "An acute site"}},
                          "profiles": {"fttc_40_10": {"label": "FTTC 40/10"}, "fttc_80_20": {"label": "FTTC 80/20"},
                                       "fttp_330_50": {"label": "FTTP 330/50"}},
                          "backups": {"4g_router": {"label": "a 4G backup router"}}}}
COLUMNS = ["backup", "site_class", "access_profile", "technology", "app", "without_h", "without_low_h",
           "without_high_h", "sites", "passed", "reason"]
MISS_8H = "9.0 h lost in the worst 5% of years > 8 h"
HEAD = "working time lost to line faults a year (a site's mean, 95% interval), with no backup: "


def _run(folder, name: str, rows: list[tuple], bare: list[tuple] | None = None) -> RunData:
    """A run folder holding ``availability.csv`` (and the no-backup table, if given), read as RunData.

    A row without the verdict columns passes.
    """
    folder.mkdir()
    full = [row if len(row) == len(COLUMNS) else (*row, True, "") for row in rows]
    pd.DataFrame(full, columns=COLUMNS).to_csv(folder / "availability.csv", index=False)
    if bare is not None:
        full = [row if len(row) == len(COLUMNS) else (*row, True, "") for row in bare]
        pd.DataFrame(full, columns=COLUMNS).to_csv(folder / WITHOUT_BACKUP_FILE, index=False)
    empty = pd.DataFrame()
    return RunData(folder, {"scenario": name}, RESOLVED, empty, empty, empty)


def test_working_time_is_written_in_hours_from_an_hour_and_in_minutes_or_seconds_below():
    # 0.4123 h x 60 = 24.7 min; 0.0156 h x 3600 = 56.2 s; 0.00087 h x 3600 = 3.13 s; 0.05 h x 60 = 3.0 min.
    assert [hours_text(h) for h in (12.4, 9.04, 1.0, 0.4123, 0.05, 0.0156, 0.00087, 0.0)] == [
        "12 h", "9.0 h", "1.0 h", "25 min", "3.0 min", "56 s", "3.1 s", "0 s"]


def test_an_interval_names_its_unit_once_when_both_ends_share_it():
    # 0.31 h = 18.6 min, 0.52 h = 31.2 min; 1.19 h stays in hours.
    assert [span_text(0.31, 0.52), span_text(0.52, 1.19), span_text(1.5, 2.5)] == [
        "19-31 min", "31 min-1.2 h", "1.5-2.5 h"]


def test_the_worst_years_when_fewer_than_their_share_lose_anything():
    assert worst_years_text(0.05, 0.0) == "fewer than 5% of years lose any working time"
    assert worst_years_text(0.05, 9.31) == "5% of years lose 9.3 h or more"
    assert worst_years_text(0.10, 0.25) == "10% of years lose 15 min or more"  # 0.25 h x 60


def test_copper_fibre_and_a_backup_in_one_sentence_per_class_from_the_tables(tmp_path):
    # The run: FTTC and FTTP sites with a 4G router; the same sites on bare lines in the no-backup table.
    with_router = [("4g_router", "gp_medium", "fttp_330_50", "FTTP", "video", 0.01, 0.008, 0.013, 3),
                   ("4g_router", "gp_medium", "fttc_80_20", "FTTC", "video", 0.4, 0.31, 0.52, 3),
                   ("4g_router", "gp_medium", "fttc_80_20", "FTTC", "telephony", 0.5, 0.4, 0.6, 3)]
    bare = [("none", "gp_medium", "fttc_80_20", "FTTC", "video", 9.04, 7.2, 11.3, 3, False, MISS_8H),
            ("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.1, 2.46, 3.9, 3),
            ("none", "gp_medium", "fttc_80_20", "FTTC", "telephony", 9.04, 7.2, 11.3, 3, False, MISS_8H)]
    run = _run(tmp_path / "r", "today", with_router, bare)
    # Copper first (FTTC before FTTP), video (the class has it), the bare lines before the backup; 0.4 h = 24 min,
    # 0.01 h = 36 s (0.008 h = 28.8 s, 0.013 h = 46.8 s).
    assert class_sentences(run) == [("gp_medium",
        f"A GP practice: {HEAD}on FTTC 9.0 h of video consultations (7.2-11 h), missing its availability target "
        f"(every app: {MISS_8H}); on FTTP 3.1 h of video consultations (2.5-3.9 h), meeting its availability target. "
        "With a 4G backup router: on FTTC 24 min of video consultations (19-31 min), meeting its availability "
        "target; on FTTP 36 s of video consultations (29-47 s), meeting its availability target.")]


def test_a_line_with_no_video_session_still_gets_its_clause_and_verdict(tmp_path):
    # As baseline-2019 --year: the small practices on FTTC 40/10 had no video session in the window, and miss the
    # availability target on every app; their line must be said, by the app it loses most (calls: 1.04 h).
    rows = [("none", "gp_small", "adsl2plus", "ADSL2+", "video", 0.83, 0.52, 1.19, 2),
            ("none", "gp_small", "adsl2plus", "ADSL2+", "telephony", 0.95, 0.65, 1.34, 3),
            ("none", "gp_small", "fttc_40_10", "FTTC", "telephony", 1.04, 0.65, 1.5, 2, False, "8.4 h lost > 8 h"),
            ("none", "gp_small", "fttc_40_10", "FTTC", "record_view", 1.0, 0.6, 1.4, 2, False, "8.4 h lost > 8 h"),
            ("none", "gp_small", "leased_100", "Leased line", "video", 0.33, 0.17, 0.5, 1)]
    # 0.83 h = 49.8 min; 0.52 h = 31.2 min; 0.65 h = 39 min; 0.33 h = 19.8 min (0.17 h = 10.2 min, 0.5 h = 30 min).
    assert class_sentences(_run(tmp_path / "r", "2019", rows)) == [("gp_small",
        f"A small practice: {HEAD}on ADSL2+ 50 min of video consultations (31 min-1.2 h), meeting its availability "
        "target; on FTTC 1.0 h of calls (39 min-1.5 h; no video consultations there), missing its availability "
        "target (every app: 8.4 h lost > 8 h); on Leased line 20 min of video consultations (10-30 min), meeting "
        "its availability target.")]


def test_a_class_without_video_is_told_by_the_app_it_loses_most_and_two_profiles_by_label(tmp_path):
    rows = [("none", "acute_site", "fttc_40_10", "FTTC", "telephony", 2.0, 1.5, 2.5, 1),
            ("none", "acute_site", "fttc_80_20", "FTTC", "telephony", 1.0, 0.5, 1.5, 1),
            ("none", "acute_site", "leased_100", "Leased line", "telephony", 0.2, 0.1, 0.3, 1),
            ("none", "acute_site", "leased_100", "Leased line", "record_view", 0.1, 0.05, 0.2, 1, False,
             "2.5 h lost in the worst 5% of years > 2 h")]
    # Leased line: calls lose most (0.2 h = 12 min) and pass; record views miss: the verdict names them.
    assert class_sentences(_run(tmp_path / "r", "acute", rows)) == [("acute_site",
        f"An acute site: {HEAD}on FTTC 40/10 2.0 h of calls (1.5-2.5 h), meeting its availability target; on "
        "FTTC 80/20 1.0 h of calls (30 min-1.5 h), meeting its availability target; on Leased line 12 min of calls "
        "(6.0-18 min), missing its availability target (record views: 2.5 h lost in the worst 5% of years > 2 h).")]


def test_the_figure_title_and_bars_use_the_catalogue_labels_not_profile_ids(tmp_path):
    rows = [("none", "gp_medium", "fttc_80_20", "FTTC", "video", 9.04, 7.2, 11.3, 3, False, MISS_8H),
            ("none", "gp_medium", "fttp_330_50", "FTTP", "video", 0.05, 0.02, 0.09, 3)]
    run = _run(tmp_path / "r", "today", rows)
    table = pd.read_csv(run.folder / "availability.csv").assign(working_h=2737.5, target_share=0.995, years=200)
    table.to_csv(run.folder / "availability.csv", index=False)
    spec = availability_figure(run)
    assert spec.title == ("Line faults, no backup: A GP practice on FTTC 80/20 loses most, 9.0 h of working time a "
                          "year without video consultations; A GP practice on FTTP 330/50 least (3.0 min)")  # 0.05 h
    assert list(spec.figure.data[0].y) == ["A GP practice · FTTC 80/20", "A GP practice · FTTP 330/50"]


def test_compare_tells_each_run_in_the_same_words_then_the_change(tmp_path):
    copper = _run(tmp_path / "a", "baseline", [("none", "gp_medium", "fttc_80_20", "FTTC", "video", 9.0, 7.0, 11.0, 2),
                                               ("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.0, 2.0, 4.0, 1)])
    fibre = _run(tmp_path / "b", "full-fibre", [("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.0, 2.0, 4.0,
                                                 3)])
    # The change: (2 x 9.0 + 3.0) / 3 = 7.00 h a site in A, 3.00 in B.
    assert availability_story(copper, fibre) == [
        f"baseline: A GP practice: {HEAD}on FTTC 9.0 h of video consultations (7.0-11 h), meeting its availability "
        "target; on FTTP 3.0 h of video consultations (2.0-4.0 h), meeting its availability target.",
        f"full-fibre: A GP practice: {HEAD}on FTTP 3.0 h of video consultations (2.0-4.0 h), meeting its "
        "availability target.",
        "A GP practice: line faults leave a site without video consultations for about 7.0 h of working time a year "
        "in baseline and 3.0 h in full-fibre with no backup."]


def test_compare_sets_bare_lines_and_backed_ones_side_by_side(tmp_path):
    # A: two FTTC sites with a 4G router (0.4 h = 24 min) and, bare, 9.0 h; B: the same on FTTP: 0.01 h = 36 s,
    # bare 3.0 h.
    copper = _run(tmp_path / "a", "copper",
                  [("4g_router", "gp_medium", "fttc_80_20", "FTTC", "video", 0.4, 0.3, 0.5, 2)],
                  [("none", "gp_medium", "fttc_80_20", "FTTC", "video", 9.0, 7.0, 11.0, 2)])
    fibre = _run(tmp_path / "b", "fibre", [("4g_router", "gp_medium", "fttp_330_50", "FTTP", "video", 0.01, 0.0, 0.02,
                                           2)],
                 [("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.0, 2.0, 4.0, 2)])
    assert availability_story(copper, fibre)[-1] == (
        "A GP practice: line faults leave a site without video consultations for about 9.0 h of working time a year "
        "in copper and 3.0 h in fibre with no backup; 24 min and 36 s with its backup.")
