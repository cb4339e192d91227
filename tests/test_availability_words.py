"""The report's availability in words: every figure in a sentence is the table's, for a policy reader."""

from __future__ import annotations

import pandas as pd

from sim.report.availability import WITHOUT_BACKUP_FILE, availability_story, class_sentences, hours_text
from sim.report.data import RunData

RESOLVED = {"catalogue": {"apps": {"video": {"label": "video consultations"}, "telephony": {"label": "calls"}},
                          "site_classes": {"gp_medium": {"label": "A GP practice"},
                                           "acute_site": {"label": "An acute site"}},
                          "backups": {"4g_router": {"label": "a 4G backup router"}}}}
COLUMNS = ["backup", "site_class", "access_profile", "technology", "app", "without_h", "without_low_h",
           "without_high_h", "sites"]


def _run(folder, name: str, rows: list[tuple], bare: list[tuple] | None = None) -> RunData:
    """A run folder holding ``availability.csv`` (and the no-backup table, if given), read as RunData."""
    folder.mkdir()
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "availability.csv", index=False)
    if bare is not None:
        pd.DataFrame(bare, columns=COLUMNS).to_csv(folder / WITHOUT_BACKUP_FILE, index=False)
    empty = pd.DataFrame()
    return RunData(folder, {"scenario": name}, RESOLVED, empty, empty, empty)


def test_hours_are_written_to_two_significant_figures_below_ten():
    assert [hours_text(h) for h in (12.4, 9.04, 1.0, 0.4123, 0.0156)] == ["12", "9.0", "1.0", "0.41", "0.016"]


def test_copper_fibre_and_a_backup_in_one_sentence_per_class_from_the_tables(tmp_path):
    # The run: FTTC and FTTP sites with a 4G router; the same sites on bare lines in the no-backup table.
    with_router = [("4g_router", "gp_medium", "fttp_330_50", "FTTP", "video", 0.01, 0.008, 0.013, 3),
                   ("4g_router", "gp_medium", "fttc_80_20", "FTTC", "video", 0.4, 0.31, 0.52, 3),
                   ("4g_router", "gp_medium", "fttc_80_20", "FTTC", "telephony", 0.5, 0.4, 0.6, 3)]
    bare = [("none", "gp_medium", "fttc_80_20", "FTTC", "video", 9.04, 7.2, 11.3, 3),
            ("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.1, 2.46, 3.9, 3),
            ("none", "gp_medium", "fttc_80_20", "FTTC", "telephony", 9.04, 7.2, 11.3, 3)]
    run = _run(tmp_path / "r", "today", with_router, bare)
    # Copper first (FTTC before FTTP), video (the class has it), the bare lines before the backup.
    assert class_sentences(run) == [("gp_medium",
        "A GP practice on FTTC loses about 9.0 working hours of video consultations a year (95% interval 7.2-11); "
        "on FTTP about 3.1 (2.5-3.9). With a 4G backup router: on FTTC about 0.4 (0.31-0.52); on FTTP about 0.01 "
        "(0.008-0.013).")]


def test_a_class_without_video_is_told_by_the_app_it_loses_most_and_two_profiles_by_name(tmp_path):
    rows = [("none", "acute_site", "fttc_40_10", "FTTC", "telephony", 2.0, 1.5, 2.5, 1),
            ("none", "acute_site", "fttc_80_20", "FTTC", "telephony", 1.0, 0.5, 1.5, 1),
            ("none", "acute_site", "leased_100", "Leased line", "telephony", 0.2, 0.1, 0.3, 1)]
    assert class_sentences(_run(tmp_path / "r", "acute", rows)) == [("acute_site",
        "An acute site on fttc_40_10 loses about 2.0 working hours of calls a year (95% interval 1.5-2.5); on "
        "fttc_80_20 about 1.0 (0.5-1.5); on Leased line about 0.2 (0.1-0.3).")]


def test_compare_tells_each_run_in_the_same_words_then_the_change(tmp_path):
    copper = _run(tmp_path / "a", "baseline", [("none", "gp_medium", "fttc_80_20", "FTTC", "video", 9.0, 7.0, 11.0, 2),
                                               ("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.0, 2.0, 4.0, 1)])
    fibre = _run(tmp_path / "b", "full-fibre", [("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.0, 2.0, 4.0,
                                                 3)])
    # The change: (2 x 9.0 + 3.0) / 3 = 7.00 h a site in A, 3.00 in B.
    assert availability_story(copper, fibre) == [
        "baseline: A GP practice on FTTC loses about 9.0 working hours of video consultations a year (95% interval "
        "7.0-11); on FTTP about 3.0 (2.0-4.0).",
        "full-fibre: A GP practice on FTTP loses about 3.0 working hours of video consultations a year (95% interval "
        "2.0-4.0).",
        "A GP practice: a site loses about 7.0 working hours of video consultations a year in baseline and 3.0 in "
        "full-fibre with no backup."]


def test_compare_sets_bare_lines_and_backed_ones_side_by_side(tmp_path):
    # A: two FTTC sites with a 4G router (0.4 h) and, bare, 9.0 h; B: the same on FTTP: 0.01 h, bare 3.0 h.
    copper = _run(tmp_path / "a", "copper",
                  [("4g_router", "gp_medium", "fttc_80_20", "FTTC", "video", 0.4, 0.3, 0.5, 2)],
                  [("none", "gp_medium", "fttc_80_20", "FTTC", "video", 9.0, 7.0, 11.0, 2)])
    fibre = _run(tmp_path / "b", "fibre", [("4g_router", "gp_medium", "fttp_330_50", "FTTP", "video", 0.01, 0.0, 0.02,
                                           2)],
                 [("none", "gp_medium", "fttp_330_50", "FTTP", "video", 3.0, 2.0, 4.0, 2)])
    assert availability_story(copper, fibre)[-1] == (
        "A GP practice: a site loses about 9.0 working hours of video consultations a year in copper and 3.0 in "
        "fibre with no backup; 0.4 and 0.01 with its backup.")
