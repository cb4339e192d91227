"""Every shipped scenario loads and runs; the headline findings hold (copper fails video, fibre passes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import pipeline, workload
from sim.load import load

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


BRIEF_SESSIONS = 10_000


def brief(scenario):
    """A large scenario cut down to run in seconds: two sites of each group, the window's first half hour."""
    if workload.expected_sessions(scenario) <= BRIEF_SESSIONS:
        return scenario
    sites = tuple(g.model_copy(update={"count": min(g.count, 2)}) for g in scenario.sites)
    window = scenario.window.model_copy(update={"end": scenario.window.start + 1800.0})
    return scenario.model_copy(update={"sites": sites, "window": window})


@pytest.fixture(scope="module")
def outcomes():
    return {path.stem: pipeline.simulate(brief(load(path))) for path in SCENARIOS}


def test_every_scenario_is_shipped():
    assert {p.stem for p in SCENARIOS} >= {"baseline-2019", "full-fibre", "digital-first", "icb", "ci-smoke",
                                           "england", "england-full-fibre", "england-digital-first", "today"}


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_states_the_year_of_its_volumes(path):
    assert load(path).year in (2019, 2024)


def test_the_baseline_replays_2019_and_today_the_latest_volumes():
    # topologies/sites.yaml volumes_by_year (docs/sources.md S14): a 10,000-patient practice's appointments a day,
    # 5.0 and 5.8 a patient a year over 250 days; video/online 0.5% and 4.9% of them; studies at an acute site.
    for name, year, consultations, video, images in (("baseline-2019", 2019, 200, 0.005, 950),
                                                     ("today", 2024, 232, 0.049, 990)):
        scenario = load(SCENARIOS[0].parent / f"{name}.yaml")
        classes = scenario.catalogue.site_classes
        assert scenario.year == year and classes["gp_medium"].consultations.per_day == consultations
        assert scenario.load.gp_video_share == pytest.approx(video)
        assert classes["acute_site"].imaging.per_day == images


@pytest.mark.parametrize("name", [p.stem for p in SCENARIOS])
def test_scenario_runs_and_every_session_gets_a_record(outcomes, name):
    outcome = outcomes[name]
    assert len(outcome.result.records) == len(outcome.trace) > 0
    assert outcome.result.records["session_id"].tolist() == outcome.trace["session_id"].tolist()
    judged = set(outcome.scenario.targets.streams) | set(outcome.scenario.targets.transfers)
    assert set(outcome.verdicts.classes["app"]) <= judged | {"link"}
    assert "updates" not in set(outcome.verdicts.sites["app"])  # load only


def _video(outcome, profile):
    classes = outcome.verdicts.classes
    return classes[(classes["app"] == "video") & (classes["access_profile"] == profile)
                   & (classes["family"] == "gp_practice")]


def test_gp_practices_on_adsl2plus_fail_video_where_fttp_carries_it(outcomes):
    # 2019's video share (0.5%) leaves a brief run of baseline-2019 with few GP video calls or none; digital-first
    # is the same sample and access mix at 25%.
    base = outcomes["digital-first"]
    assert len(_video(base, "adsl2plus")) and not _video(base, "adsl2plus")["passed"].any()
    assert len(_video(base, "fttp_330_50"))
    # FTTP 330/50 carries the target rate; a call there falls below it only while a long download fills the 50 ms
    # downlink buffer (40 ms of Cubic's queue, over video's 25 ms threshold) and for the climb back after it (8% a
    # second: about 19 s from the minimum), so a practice's calls are at target at least 90% of the time (a gp_large
    # practice here: 93.5%, short of the 95% target), never below the minimum
    sites = base.verdicts.sites
    fttp = sites[(sites["app"] == "video") & (sites["access_profile"] == "fttp_330_50")
                 & (sites["family"] == "gp_practice") & ~sites["passed"]]
    assert (fttp["criterion"] == "bitrate below target").all() and (fttp["measured_value"] >= 0.9).all()
    assert fttp["cause"].str.contains("downlink").all()
    assert _video(outcomes["full-fibre"], "fttp_330_50")["passed"].all()
    assert outcomes["full-fibre"].verdicts.classes.query("app == 'video' and family == 'gp_practice'")["passed"].all()


def test_the_records_explain_the_copper_failure(outcomes):
    records = outcomes["digital-first"].result.records
    calls = records[(records["app"] == "video") & (records["access_profile"] == "adsl2plus")]
    assert len(calls)
    # The 1 Mbit/s ADSL2+ uplink cannot carry the 1.5 Mbit/s recommended rate: the access uplink limits it.
    assert (calls["mean_rate_bps"] < calls["target_rate_bps"]).all()
    assert (calls["bottleneck"] == "access_up").all()
