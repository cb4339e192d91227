"""Verdicts against targets, on hand-made records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim import targets
from sim.load import load
from sim.targets import busy_hour_utilisation


@pytest.fixture
def scenario_targets(scenarios_dir):
    return load(scenarios_dir / "ci-smoke.yaml").targets


def test_transfer_limits_by_kind_and_urgency(scenario_targets):
    records = pd.DataFrame({"app": ["image_urgent", "image_routine", "gp2gp", "record_view", "video"],
                            "kind": ["ct", "ct", "gp2gp", "record_fetch", "gp_video"],
                            "urgency": ["urgent", "routine", "routine", "routine", "routine"]})
    limits = targets.transfer_limits_s(records, scenario_targets)
    assert limits[:4].tolist() == [120.0, 900.0, 60.0, 5.0]
    assert np.isnan(limits[4])


def test_sessions_fail_for_the_reasons_their_records_show(scenario_targets):
    # Site a: 1 Mbit/s up with an upload -> the call fails delay and bitrate; the 25 MB GP2GP upload takes
    # ~200 s > 60 s. Site b: fast -> everything passes.
    topo = topology(site("a", down_bps=16e6, up_bps=1e6, rtt_s=0.04), site("b", down_bps=330e6, up_bps=50e6),
                    cloud_rtt_s=0.01)
    sessions = trace(transfer("a", 0.0, 25e6, "up", app="gp2gp", kind="gp2gp"), call("a", 10.0, 300.0),
                     transfer("b", 0.0, 25e6, "up", app="gp2gp", kind="gp2gp"), call("b", 10.0, 300.0))
    result = simulate(topo, sessions)
    verdicts = targets.evaluate(result.records, result.links, topo.sites, scenario_targets, (0.0, 3600.0),
                                {"video": "video"})
    by = verdicts.sessions.set_index(["site", "app"])
    assert not by.loc[("a", "video"), "passed"]
    assert "one-way delay p95 > 150 ms" in by.loc[("a", "video"), "reason"]
    assert "bitrate below target" in by.loc[("a", "video"), "reason"]
    assert by.loc[("a", "gp2gp"), "reason"] == "slower than target"
    assert by.loc[("b", "video"), "passed"] and by.loc[("b", "gp2gp"), "passed"]
    classes = verdicts.classes.set_index(["access_profile", "app"])
    assert classes["passed"].all() == verdicts.all_pass


def test_busy_hour_is_the_highest_rolling_hour_mean():
    # Bins of 15 min: up link 0.2 all day except 0.9 for four bins (one hour) -> busy hour 0.9 on "up".
    bins = np.arange(0, 8 * 3600, 900.0)
    up = np.full(len(bins), 0.2)
    up[10:14] = 0.9
    frame = pd.DataFrame({"link": ["s/up"] * len(bins) + ["s/down"] * len(bins), "site": "s",
                          "direction": ["up"] * len(bins) + ["down"] * len(bins),
                          "bin_start_s": np.concatenate([bins, bins]), "bin_s": 900.0,
                          "utilisation": np.concatenate([up, np.full(len(bins), 0.5)])})
    assert busy_hour_utilisation(frame, (0.0, 8 * 3600.0)) == (pytest.approx(0.9), "up")
    # A window shorter than an hour is judged on its mean.
    assert busy_hour_utilisation(frame, (9 * 900.0, 11 * 900.0))[0] == pytest.approx((0.2 + 0.9) / 2)


def test_site_class_pass_bar(scenario_targets):
    rows = pd.DataFrame({"site": [f"s{i}" for i in range(10)], "family": "gp_practice", "site_class": "gp_medium",
                         "access_profile": "fttc_80_20", "technology": "FTTC", "medium": "copper", "app": "video",
                         "sessions": 10, "sessions_passing": 10, "share_passing": 1.0, "value": 1.0,
                         "passed": [True] * 9 + [False], "reason": [""] * 9 + ["jitter > 30 ms"]})
    classes = targets.class_verdicts(rows, scenario_targets)  # bar: 90% of sites
    assert classes["share_passing"].iat[0] == pytest.approx(0.9)
    assert classes["passed"].iat[0]
    rows.loc[8, ["passed", "reason"]] = [False, "jitter > 30 ms"]
    classes = targets.class_verdicts(rows, scenario_targets)
    assert not classes["passed"].iat[0]
    assert classes["reason"].iat[0] == "jitter > 30 ms"


def test_site_verdicts_of_disjoint_sites_combine_into_those_of_all(scenario_targets):
    # Evaluated apart (as estate shards are), sites "c" and "a", "b" give the rows and order of one evaluation.
    topo = topology(site("c", down_bps=16e6, up_bps=1e6, rtt_s=0.04), site("a", down_bps=330e6, up_bps=50e6),
                    site("b", down_bps=2e6, up_bps=0.5e6))
    sessions = trace(call("c", 10.0, 300.0), transfer("a", 0.0, 25e6, "up", kind="gp2gp"), call("b", 5.0, 200.0),
                     transfer("b", 20.0, 5e6), transfer("c", 30.0, 1e6, "up", kind="gp2gp"))
    result = simulate(topo, sessions)
    window_s = (0.0, 3600.0)
    whole = targets.evaluate(result.records, result.links, topo.sites, scenario_targets, window_s, {})
    parts = []
    for names in (["c"], ["a", "b"]):
        parts.append(targets.site_verdicts(whole.sessions[whole.sessions["site"].isin(names)],
                                           result.links[result.links["site"].isin(names)],
                                           topo.sites[topo.sites["site"].isin(names)], scenario_targets, window_s,
                                           result.records[result.records["site"].isin(names)]))
    pd.testing.assert_frame_equal(targets.combine_site_verdicts(parts), whole.sites)
    assert list(whole.sites.columns) == list(targets.SITE_VERDICT_COLUMNS)
    assert [str(t) for t in whole.sites.dtypes] == list(targets.SITE_VERDICT_COLUMNS.values())


def test_each_app_is_judged_by_its_own_targets_and_load_is_never_judged(scenario_targets):
    # Two streams with the same measured delay (120 ms p95): video's bar is 150 ms, the clinical system's 100 ms.
    # An update (bulk) has no target: it passes as "not judged" and gets no site verdict.
    base = {"completed": True, "share_at_target": 1.0, "share_below_min": 0.0, "one_way_delay_p95_s": 0.12,
            "jitter_s": 0.001, "loss": 0.0, "duration_s": 10.0}
    records = pd.DataFrame([{**base, "app": app} for app in ("video", "clinical_system", "updates")])
    for key in targets.SESSION_KEYS:
        if key not in records:
            records[key] = "s" if key != "session_id" else range(3)
    records["app"] = ["video", "clinical_system", "updates"]
    records["traffic"] = ["stream", "stream", "transfer"]
    out = targets.session_verdicts(records, scenario_targets, {})
    assert out["passed"].tolist() == [True, False, True]
    assert out["reason"].tolist() == ["", "one-way delay p95 > 100 ms", targets.NOT_JUDGED]


def test_a_call_too_late_to_converse_fails_on_its_quality_score(scenario_targets):
    # Two telephone calls, clean but for delay: 10 ms and 400 ms one way. E-model (sim.quality, docs/quality.md):
    # mouth-to-ear Ta = delay + 20 ms frame + 3.75 ms PLC; Id = 0.024 Ta + 0.11 (Ta - 177.3) above the knee.
    # 10 ms: Ta = 33.75, Id = 0.81, R = 92.39, MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6 = 1 + 3.234 + 0.159
    # = 4.393 -> good (R >= 80).
    # 400 ms: Ta = 423.75, Id = 10.17 + 27.11 = 37.28, R = 55.92, MOS = 1 + 1.957 - 0.070 = 2.887 < 3.1 (the bar)
    # -> fails "call quality MOS < 3.1" and, at R 50-60 (G.109 "poor"), is "degraded but usable".
    records = pd.DataFrame({"app": "telephony", "traffic": "stream", "kind": "telephony", "completed": True,
                            "share_at_target": 1.0, "share_below_min": 0.0, "one_way_delay_s": [0.01, 0.4],
                            "one_way_delay_p95_s": [0.01, 0.1], "jitter_s": 0.0, "loss": 0.0,
                            "mean_rate_bps": 87.2e3, "target_rate_bps": 87.2e3, "min_rate_bps": 87.2e3,
                            "duration_s": 180.0})
    for key in targets.SESSION_KEYS:
        if key not in records:
            records[key] = "s" if key != "session_id" else range(2)
    out = targets.session_verdicts(records, scenario_targets, {"telephony": "audio"})
    assert out["mos"].tolist() == pytest.approx([4.393, 2.887], abs=0.002)
    assert out["quality"].tolist() == ["good", "degraded but usable"]
    assert out["passed"].tolist() == [True, False]
    assert out["reason"].iloc[1] == "call quality MOS < 3.1"


def test_a_fixed_rate_call_cut_below_its_codec_rate_scores_the_shortfall_as_loss(scenario_targets):
    # A telephone call (87.2 kbit/s each way) that got 82.84 kbit/s on average lost 5% of its packets, whatever
    # the queue dropped: Ie_eff = 95 * 5 / (5 + 25.1) = 15.78 (G.711 with PLC), Ta = 33.75 ms, Id = 0.81,
    # R = 93.2 - 0.81 - 15.78 = 76.61, MOS = 1 + 2.681 + 76.61 * 16.61 * 23.39 * 7e-6 = 3.890.
    records = pd.DataFrame({"app": ["telephony"], "traffic": "stream", "kind": "telephony", "completed": True,
                            "share_at_target": 0.0, "share_below_min": 1.0, "one_way_delay_s": 0.01,
                            "one_way_delay_p95_s": 0.01, "jitter_s": 0.0, "loss": 0.0, "mean_rate_bps": 82.84e3,
                            "target_rate_bps": 87.2e3, "min_rate_bps": 87.2e3, "duration_s": 180.0})
    for key in targets.SESSION_KEYS:
        if key not in records:
            records[key] = "s" if key != "session_id" else 0
    assert targets.call_quality(records, {"telephony": "audio"}) == pytest.approx([3.890], abs=0.002)


def test_a_call_to_a_patient_on_a_slow_line_names_the_patients_end(scenario_targets):
    # A fast practice (330/50) calls two patients: one on the topology's home line (1 Gbit/s here), one on a slow
    # line with 0.7 Mbit/s up (access.yaml: patient_home_slow). The slow patient's video to the site is held at
    # 0.7 Mbit/s < 1.5 Mbit/s target all call long: bitrate below target, limited at the home end; the other
    # call meets every target.
    slow = {"far_profile": "patient_home_slow", "far_down_bps": 6e6, "far_up_bps": 0.7e6, "far_rtt_s": 0.045}
    topo = topology(site("a", down_bps=330e6, up_bps=50e6, rtt_s=0.01), cloud_rtt_s=0.01)
    result = simulate(topo, trace(call("a", 0.0, 300.0), call("a", 0.0, 300.0, far_line=slow)))
    calls = result.records.set_index("far_profile")
    assert calls.loc["patient_home_slow", "mean_rate_bps"] == pytest.approx(0.7e6, rel=0.01)
    assert calls.loc["patient_home_slow", "bottleneck"] == "home"
    out = targets.session_verdicts(result.records, scenario_targets, {}).set_index("session_id")
    slow_id = int(result.records.loc[result.records["far_profile"] == "patient_home_slow", "session_id"].iloc[0])
    assert "the patient's line limits it" in out.loc[slow_id, "reason"]
    assert out["passed"].sum() == 1


def test_a_site_is_not_failed_by_its_patients_lines(scenario_targets):
    # As above: two calls from a fast practice, one patient on a slow line. The slow call fails, naming the
    # patient's end; the site's verdict counts only the other call (1 of 1 passing), so the site passes video.
    slow = {"far_profile": "patient_home_slow", "far_down_bps": 6e6, "far_up_bps": 0.7e6, "far_rtt_s": 0.045}
    topo = topology(site("a", down_bps=330e6, up_bps=50e6, rtt_s=0.01), cloud_rtt_s=0.01)
    result = simulate(topo, trace(call("a", 0.0, 300.0), call("a", 0.0, 300.0, far_line=slow)))
    verdicts = targets.evaluate(result.records, result.links, topo.sites, scenario_targets, (0.0, 3600.0), {})
    video = verdicts.sites[verdicts.sites["app"] == "video"].iloc[0]
    assert (video["sessions"], video["sessions_passing"], video["passed"]) == (1, 1, True)
    assert targets.patient_end_only(verdicts.sessions).tolist() == [False, True]


def test_sessions_and_passing_sessions_are_counted_per_site_and_app_in_name_order():
    # By hand: site b has 2 video (1 passing) and 1 gp2gp (passing); site a 1 video (failing); a row with no site is
    # not counted (as a grouping leaves it out). Rows sorted by site, then app.
    sessions = pd.DataFrame({"site": pd.array(["b", "a", "b", "b", None], dtype="str"),
                             "app": pd.array(["video", "video", "gp2gp", "video", "video"], dtype="str"),
                             "passed": [True, False, True, False, True]})
    counts = targets._counts(sessions)
    assert counts["site"].tolist() == ["a", "b", "b"] and counts["app"].tolist() == ["video", "gp2gp", "video"]
    assert counts["sessions"].tolist() == [1, 1, 2] and counts["sessions_passing"].tolist() == [0, 1, 1]
    grouped = sessions.groupby(["site", "app"], sort=True).agg(sessions=("passed", "size"),
                                                                sessions_passing=("passed", "sum")).reset_index()
    pd.testing.assert_frame_equal(counts, grouped, check_exact=True)
