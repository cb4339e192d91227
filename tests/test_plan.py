"""The capacity planner: its search, its interval, and a real plan checked against what the model implies."""

import math

import pandas as pd
import pytest
from conftest import ROOT
from typer.testing import CliRunner

from sim import plan, studies
from sim.cli import app
from sim.errors import TestbedError
from sim.load import load

runner = CliRunner()


@pytest.mark.parametrize("threshold_bps", [3.7e6, 150e3, 800e6])
def test_search_finds_a_step_within_tolerance_in_few_calls(threshold_bps):
    calls = []

    def share(capacity_bps):
        calls.append(capacity_bps)
        return 1.0 if capacity_bps >= threshold_bps else 0.0

    found, points = plan.search(share, 0.95)
    assert threshold_bps <= found <= threshold_bps * (1 + plan.TOLERANCE)
    # 2 end points, then halving ln(10e9/64e3) = 11.96 down to ln(1.04) = 0.0392: ceil(log2(305)) = 9 steps.
    assert len(calls) <= 2 + 9
    assert points == [(c, 1.0 if c >= threshold_bps else 0.0) for c in calls]


def test_search_reports_unreachable_and_trivially_enough():
    assert plan.search(lambda c: 0.5, 0.95)[0] == math.inf
    assert plan.search(lambda c: 1.0, 0.95)[0] == plan.LOW_BPS


def test_interval_is_a_students_t_interval_on_the_logarithms():
    need = plan.summarise("gp_small", "up", [10e6, 20e6, 40e6])
    # logs are ln(20e6) -/+ ln 2: mean ln(20e6), sample sd ln 2; t(0.975, 2 dof) = 4.303.
    half = 4.303 * math.log(2) / math.sqrt(3)
    assert need.mean_bps == pytest.approx(20e6)
    assert need.ci_low_bps == pytest.approx(20e6 / math.exp(half))
    assert need.ci_high_bps == pytest.approx(20e6 * math.exp(half))
    assert not plan.summarise("gp_small", "up", [10e6, math.inf]).reachable


@pytest.fixture(scope="module")
def smoke_plan():
    scenario = load(ROOT / "scenarios" / "ci-smoke.yaml")
    return scenario, plan.plan(scenario, seeds=2)


def test_every_seed_threshold_meets_the_bar_and_a_step_below_does_not(smoke_plan):
    _, found = smoke_plan
    for need in found.needs:
        for seed, threshold in zip(found.seeds, need.per_seed_bps):
            points = found.curve[(found.curve["direction"] == need.direction) & (found.curve["seed"] == seed)]
            at = dict(zip(points["capacity_bps"], points["share"]))
            assert at[threshold] >= 0.95
            below = [c for c in at if c < threshold]
            # The bracket's lower end, within the tolerance, fell short.
            assert at[max(below)] < 0.95 and threshold / max(below) <= 1 + plan.TOLERANCE + 1e-9


def test_upload_need_is_at_least_what_one_call_at_its_target_rate_takes(smoke_plan):
    scenario, found = smoke_plan
    up = next(n for n in found.needs if n.direction == "up")
    # A call at 1.5 Mbit/s may use at most 90% of a link (the simulator's video headroom): a site with calls
    # cannot pass below 1.5/0.9 Mbit/s up, whatever else it carries.
    floor_bps = 1.5e6 / 0.9
    assert all(v >= floor_bps / (1 + plan.TOLERANCE) for v in up.per_seed_bps)


def test_cheapest_product_is_the_first_on_the_ladder_that_passed_every_seed(smoke_plan):
    scenario, found = smoke_plan
    tried = [p for p in found.products if p.site_class == "gp_medium"]
    ladder = scenario.catalogue.ladder
    assert [ladder.index(p.product) for p in tried] == sorted(ladder.index(p.product) for p in tried)
    assert all(not p.passed for p in tried[:-1]) and tried[-1].passed
    assert found.cheapest("gp_medium") == tried[-1]
    assert all(share >= 0.95 for share in tried[-1].shares)
    # Products below the lower end of the interval are never tried.
    need = {n.direction: n for n in found.needs}
    profiles = scenario.catalogue.profiles
    skipped = ladder[:ladder.index(tried[0].product)]
    assert all(profiles[p].down < need["down"].ci_low_bps or profiles[p].up < need["up"].ci_low_bps for p in skipped)


def test_a_target_capacity_cannot_meet_is_reported_with_the_best_found(scenarios_dir):
    # The access line's own RTT (FTTP: 8 ms) makes a 1 ms one-way delay target impossible at any capacity.
    scenario = load(scenarios_dir / "ci-smoke.yaml", {"targets.streams.video.delay_p95": "1ms"})
    found = plan.plan(scenario, seeds=2)
    row = plan.summary(found, scenario).iloc[0]
    assert not row["reachable"] and row["product"] == "" and row["share_at_high"] < 0.95
    assert math.isinf(row["down_need_bps"])


def test_plan_command_writes_a_finished_folder_and_names_the_product(scenarios_dir, tmp_path):
    result = runner.invoke(app, ["plan", str(scenarios_dir / "ci-smoke.yaml"), "--seeds", "2", "--workers", "0",
                                 "--out", str(tmp_path), "--no-png"])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "ci-smoke").iterdir()
    assert folder.name.endswith("-plan-s1")
    assert {"plan.csv", "products.csv", "curve.csv", "plan.html", "meta.json"} <= {p.name for p in folder.iterdir()}
    summary = pd.read_csv(folder / "plan.csv")
    assert summary.loc[0, "product_label"] in result.output
    html = (folder / "plan.html").read_text()
    assert "bar: 95% of sites" in html and "gp_medium" in html


@pytest.mark.parametrize("args, message", [
    (["--site-class", "gp_mediun"], "did you mean 'gp_medium'"),
    (["--seeds", "1"], "at least 2"),
    (["--target-share", "1.5"], "(0, 1]"),
])
def test_bad_plan_input_exits_2_and_writes_nothing(scenarios_dir, tmp_path, args, message):
    result = runner.invoke(app, ["plan", str(scenarios_dir / "ci-smoke.yaml"), "--workers", "0",
                                 "--out", str(tmp_path), "--no-png", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not any((tmp_path / "ci-smoke").glob("*")) if (tmp_path / "ci-smoke").exists() else True


def test_plan_refuses_unknown_class_before_running(scenarios_dir):
    with pytest.raises(TestbedError, match="not in scenario"):
        plan.plan(load(scenarios_dir / "ci-smoke.yaml"), site_classes=["acute_site"])


def test_plan_folder_is_not_taken_for_a_run(scenarios_dir, tmp_path):
    studies.plan(scenarios_dir / "ci-smoke.yaml", seeds=2, workers=0, out=tmp_path, png=False)
    from sim import results
    with pytest.raises(TestbedError, match="no finished run"):
        results.latest(tmp_path / "ci-smoke")
