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
                                           "england", "england-full-fibre", "england-digital-first"}


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


def test_gp_practices_on_adsl2plus_fail_video_where_fttp_passes(outcomes):
    base = outcomes["baseline-2019"]
    assert not _video(base, "adsl2plus")["passed"].any()
    assert _video(base, "fttp_330_50")["passed"].all()
    assert _video(outcomes["full-fibre"], "fttp_330_50")["passed"].all()
    assert outcomes["full-fibre"].verdicts.classes.query("app == 'video' and family == 'gp_practice'")["passed"].all()


def test_the_records_explain_the_copper_failure(outcomes):
    records = outcomes["baseline-2019"].result.records
    calls = records[(records["app"] == "video") & (records["access_profile"] == "adsl2plus")]
    # The 1 Mbit/s ADSL2+ uplink cannot carry the 1.5 Mbit/s recommended rate: the access uplink limits it.
    assert (calls["mean_rate_bps"] < calls["target_rate_bps"]).all()
    assert (calls["bottleneck"] == "access_up").all()
