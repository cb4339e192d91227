"""The capacity planner: its search, its interval, and a real plan checked against what the model implies."""

import math

import pandas as pd
import pytest
from conftest import ROOT
from typer.testing import CliRunner

from sim import plan, plan_search, plan_sites, plan_tables
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

    found = plan.search(share, 0.95)
    assert threshold_bps <= found.threshold_bps <= threshold_bps * (1 + plan.TOLERANCE)
    # 2 end points, then halving ln(10e9/64e3) = 11.96 down to ln(1.04) = 0.0392: ceil(log2(305)) = 9 steps;
    # then the answer is verified at 1.1, 1.25, 1.5 and 2 times itself.
    assert len(calls) <= 2 + 9 + 4
    assert list(found.points) == [(c, 1.0 if c >= threshold_bps else 0.0) for c in calls]
    assert found.monotone
    answer = found.threshold_bps
    assert all(any(abs(c / (answer * f) - 1) < 0.03 for c in calls) for f in (1.1, 1.25, 1.5, 2.0))


def test_search_reports_unreachable_and_trivially_enough():
    assert plan.search(lambda c: 0.5, 0.95).threshold_bps == math.inf
    assert plan.search(lambda c: 1.0, 0.95).threshold_bps == plan.LOW_BPS


def test_search_copes_with_a_dip_above_the_first_answer_and_says_so():
    # Enough from 12 Mbit/s, except a dip (90% of sites) from 14.6 to 16.5 Mbit/s. Bisection lands within 4% above
    # 12 (12-12.48), having passed at sqrt(11.98 x 17.41) = 14.44 Mbit/s; the check at 1.25 times the answer
    # (15-15.6) falls in the dip: a failing capacity above a passing one.
    def share(capacity_bps):
        return 0.9 if 14.6e6 <= capacity_bps < 16.5e6 else (1.0 if capacity_bps >= 12e6 else 0.0)

    found = plan.search(share, 0.95)
    assert 16.5e6 <= found.threshold_bps <= 16.5e6 * (1 + plan.TOLERANCE)
    assert not found.monotone
    pass_bps, pass_share, fail_bps, fail_share = found.inversions[0]
    assert 12e6 <= pass_bps < 14.6e6 and pass_share == 1.0
    assert 14.6e6 <= fail_bps < 16.5e6 and fail_share == 0.9
    # Every capacity tried from the answer up meets the bar.
    assert all(v >= 0.95 for c, v in found.points if c >= found.threshold_bps)


def test_search_is_bounded_on_a_response_that_keeps_dipping():
    # Passing only on every other 3%-wide band from 1 Mbit/s (and from 5 Gbit/s): hardly ever verifies; the
    # budget ends it, with an answer above every failing capacity tried.
    def share(capacity_bps):
        if capacity_bps >= 5e9:
            return 1.0
        return 1.0 if capacity_bps >= 1e6 and int(math.log(capacity_bps / 1e6) / math.log(1.03)) % 2 == 0 \
            else 0.0

    found = plan.search(share, 0.95)
    assert len(found.points) <= plan_search.MAX_CALLS
    failing = [c for c, v in found.points if v < 0.95]
    assert found.threshold_bps > max(failing) and share(found.threshold_bps) == 1.0


def test_interval_is_a_students_t_interval_on_the_logarithms():
    need = plan.summarise("gp_small", "up", [10e6, 20e6, 40e6])
    # logs are ln(20e6) -/+ ln 2: mean ln(20e6), sample sd ln 2; t(0.975, 2 dof) = 4.303.
    half = 4.303 * math.log(2) / math.sqrt(3)
    assert need.mean_bps == pytest.approx(20e6)
    assert need.ci_low_bps == pytest.approx(20e6 / math.exp(half))
    assert need.ci_high_bps == pytest.approx(20e6 * math.exp(half))
    assert not plan.summarise("gp_small", "up", [10e6, math.inf]).reachable


def test_seeds_are_added_while_the_interval_is_wider_than_a_quarter_of_the_mean():
    # 10, 20, 40 Mbit/s: half width exp(4.303 ln 2 / sqrt 3) - 1 = 4.6 (460%): more seeds, unless at the cap.
    wide = plan.summarise("gp_small", "up", [10e6, 20e6, 40e6])
    assert wide.half_width == pytest.approx(math.exp(4.303 * math.log(2) / math.sqrt(3)) - 1)
    assert plan.wants_more_seeds(wide, 3) and not plan.wants_more_seeds(wide, plan.MAX_SEEDS)
    # 20, 21, 22 Mbit/s: sd of the logs 0.0477, half width exp(4.303 * 0.0477 / sqrt 3) - 1 = 12.6%: enough.
    narrow = plan.summarise("gp_small", "up", [20e6, 21e6, 22e6])
    assert narrow.half_width == pytest.approx(0.1257, abs=0.001)
    assert not plan.wants_more_seeds(narrow, 3)
    assert not plan.wants_more_seeds(plan.summarise("gp_small", "up", [10e6, math.inf, 1e6]), 3)


# ci-smoke's three practices, the ADSL2+ one 4.5 km from its exchange and the FTTC one 0.3 km from its cabinet.
LENGTHS = {"sites.0.distance": "4.5km", "sites.1.distance": "0.3km"}


@pytest.fixture(scope="module")
def smoke_plan():
    scenario = load(ROOT / "scenarios" / "ci-smoke.yaml", LENGTHS)
    calls = []
    return scenario, plan.plan(scenario, seeds=2, progress=lambda done, total: calls.append((done, total))), calls


def test_every_seed_threshold_meets_the_bar_and_a_step_below_does_not(smoke_plan):
    _, found, _ = smoke_plan
    for need in found.needs:
        for seed, threshold in zip(found.seeds, need.per_seed_bps):
            points = found.curve[(found.curve["direction"] == need.direction) & (found.curve["seed"] == seed)]
            at = dict(zip(points["capacity_bps"], points["share"]))
            assert at[threshold] >= 0.95 and all(v >= 0.95 for c, v in at.items() if c >= threshold)
            failing = [c for c, v in at.items() if v < 0.95]
            # The highest failing capacity tried lies just below, within the tolerance.
            assert max(failing) < threshold <= max(failing) * (1 + plan.TOLERANCE) + 1e-9


def test_upload_need_is_at_least_what_one_call_at_its_target_rate_takes(smoke_plan):
    scenario, found, _ = smoke_plan
    up = found.need("gp_medium", "up")
    # A call at 1.5 Mbit/s may use at most 90% of a link (the simulator's video headroom): a site with calls
    # cannot pass below 1.5/0.9 Mbit/s up, whatever else it carries.
    floor_bps = 1.5e6 / 0.9
    assert all(v >= floor_bps / (1 + plan.TOLERANCE) for v in up.per_seed_bps)


def test_cheapest_product_is_the_first_on_the_ladder_that_passed_every_seed(smoke_plan):
    scenario, found, _ = smoke_plan
    tried = [p for p in found.products if p.site_class == "gp_medium"]
    ladder = scenario.catalogue.ladder
    assert [ladder.index(p.product) for p in tried] == sorted(ladder.index(p.product) for p in tried)
    assert all(not p.passed for p in tried[:-1]) and tried[-1].passed
    assert found.cheapest("gp_medium") == tried[-1]
    assert all(share >= 0.95 for share in tried[-1].shares)
    # Products below the least capacity any seed needed (less the tolerance) are never run.
    down, up = found.need("gp_medium", "down"), found.need("gp_medium", "up")
    profiles = scenario.catalogue.profiles
    skipped = ladder[:ladder.index(tried[0].product)]
    assert all(profiles[p].down < min(down.per_seed_bps) / 1.04 or profiles[p].up < min(up.per_seed_bps) / 1.04
               for p in skipped)
    # Each target a product missed carries the cause its site verdicts gave, and its reason quotes it.
    for check in tried[:-1]:
        causes = dict(check.causes)
        assert check.sites > 0 and all(app in causes for app, share in check.app_shares if share < 1.0)
        step = next(s for s in found.lines[plan_sites.Line("gp_medium", None)] if s.product == check.product)
        worst = min((share, app) for app, share in check.app_shares)[1]
        assert causes[worst] in plan_tables.explain(scenario, plan_sites.Line("gp_medium", None), step, down, up, 0.95)


def test_each_site_gets_a_product_sold_at_its_own_line_length(smoke_plan):
    scenario, found, _ = smoke_plan
    sites = plan_tables.site_table(found, scenario).set_index("site")
    far, near = sites.loc["gp-adsl"], sites.loc["gp-fttc"]
    assert far["line_length_m"] == 4500 and near["line_length_m"] == 300
    # 4.5 km: G.fast (sold to 0.5 km) is never offered, and the copper products give the catalogue's tail rates:
    # ADSL2+ 3/0.45 Mbit/s, FTTC 4 Mbit/s down (the last point, 3.6 km) and 4 x 10/40 = 1 up.
    assert far["product"] != "gfast_330_50"
    assert "G.fast 330/50: not sold beyond 0.5 km (this line is 4.5 km)" in far["why_not"]
    assert "ADSL2+ at 4.5 km gives 3/0.45 Mbit/s" in far["why_not"]
    assert "FTTC 40/10 (VDSL2) at 4.5 km gives 4/1 Mbit/s" in far["why_not"]
    # 0.3 km on FTTC 80/20: 80 - (0.1/0.4) x (80 - 51) = 72.75 down, 20 x 72.75/80 = 18.19 up, if it is chosen.
    profiles = scenario.catalogue.profiles
    assert plan_sites.offer(profiles["fttc_80_20"], 300) == pytest.approx((72.75e6, 18.1875e6))
    for row in (far, near):
        rates = plan_sites.offer(profiles[row["product"]], row["line_length_m"])
        assert (row["product_down_bps"], row["product_up_bps"]) == pytest.approx(rates)
        assert row["gbp_per_month"] == profiles[row["product"]].price.gbp_per_month
    # Each site's product met the bar in every seed, run at the length that matters for it.
    runs = plan_tables.product_table(found)
    for row in (far, near):
        length = row["line_length_m"] if profiles[row["product"]].derating else math.nan
        mine = runs[(runs["product"] == row["product"]) &
                    ((runs["line_length_m"] == length) | (runs["line_length_m"].isna() & math.isnan(length)))]
        assert len(mine) == len(found.seeds) and (mine["share"] >= 0.95).all()


def test_progress_only_moves_forward_and_ends_at_the_total(smoke_plan):
    _, _, calls = smoke_plan
    done = [d for d, _ in calls]
    shares = [d / t for d, t in calls if t]
    assert done == sorted(done) and shares == sorted(shares)
    assert calls[-1][0] == calls[-1][1] > 0


def test_a_target_capacity_cannot_meet_is_reported_with_the_best_found(scenarios_dir):
    # The access line's own RTT (FTTP: 8 ms) makes a 1 ms one-way delay target impossible at any capacity.
    scenario = load(scenarios_dir / "ci-smoke.yaml", {"targets.streams.video.delay_p95": "1ms"})
    found = plan.plan(scenario, seeds=2)
    row = plan_tables.summary(found, scenario).iloc[0]
    assert not row["reachable"] and row["product"] == "" and row["share_at_high"] < 0.95
    assert math.isinf(row["down_need_bps"])
    # It names the target no capacity fixes: the video calls' delay (every site has calls in the busy hour).
    assert row["reason"].startswith("capacity alone cannot meet the bar: at 10 Gbit/s each way video consultations "
                                    "met at 0% of sites in seed 1 (one-way delay p95 > 1 ms, limited by the path's own")
    assert "one-way delay, with 0 ms queueing at the 95th percentile)" in row["reason"]
    # Per site too (gp-fttc states 0.6 km): no product, the reason says why, and no product was run.
    site = plan_tables.site_table(found, scenario).set_index("site").loc["gp-fttc"]
    assert site["product"] == "" and site["reason"].startswith("capacity alone cannot meet the bar")
    assert site["why_not"] == "" and plan_tables.product_table(found).empty


def test_plan_command_writes_a_finished_folder_and_names_the_product(scenarios_dir, tmp_path, capsys):
    result = runner.invoke(app, ["plan", str(scenarios_dir / "ci-smoke.yaml"), "--seeds", "2", "--workers", "0",
                                 "--out", str(tmp_path), "--no-png"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "ci-smoke").iterdir()
    assert folder.name.endswith("-plan-s1")
    assert {"plan.csv", "plan_sites.csv", "products.csv", "curve.csv", "plan.html", "meta.json"} <= \
        {p.name for p in folder.iterdir()}
    summary = pd.read_csv(folder / "plan.csv")
    assert summary.loc[0, "product_label"] in result.output
    sites = pd.read_csv(folder / "plan_sites.csv")
    assert list(sites["site"]) == ["gp-adsl", "gp-fttc", "gp-fttp"] and sites.loc[1, "line_length_m"] == 600
    assert "Per site, at its own line length" in result.output and "2 seeds (--seeds)" in result.output
    # Not on a terminal: plain text, each row on one line, never cut or folded (CI logs)
    lines = result.output.splitlines()
    assert "│" not in result.output
    assert all(any(reason in line for line in lines) for reason in sites["reason"])
    # Not on a terminal: progress as lines, ending at 100%.
    assert "planning ci-smoke.yaml: 100%" in result.output
    html = (folder / "plan.html").read_text()
    assert "bar: 95% of sites" in html and "gp_medium" in html and "Per site, at its own line length" in html
    # A seed that needed far more than the rest (plan.csv's seed_spread) is a note after the table, as printed.
    summary["seed_spread"] = summary["seed_spread"].astype(object)
    summary.loc[0, "seed_spread"] = "down, seed 2 needed 480 Mbit/s, 4.36 times the next highest"
    summary.to_csv(folder / "plan.csv", index=False)
    from sim import cli_show
    cli_show.print_plan(folder)
    assert ("gp_medium: one seed needed far more than the rest: down, seed 2 needed 480 Mbit/s, 4.36 times the "
            "next highest") in " ".join(capsys.readouterr().out.split())
    # A plan's folder is not taken for a run's.
    from sim import results
    with pytest.raises(TestbedError, match="no finished run"):
        results.latest(tmp_path / "ci-smoke")


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


def test_a_need_is_shown_within_the_searched_range_and_a_wide_interval_is_flagged():
    from sim.plan_search import need_text
    assert need_text(20.5e6, 15.1e6, 27.8e6) == "20.5 Mbit/s [15.1 Mbit/s to 27.8 Mbit/s]"
    # the log-scale interval of seeds that disagree reaches past what was tried (64 kbit/s to 10 Gbit/s)
    assert need_text(20.5e6, 6.79e3, 6.19e13) == "20.5 Mbit/s [<64 kbit/s to >10 Gbit/s] (the seeds disagree)"
    assert need_text(900e3, 100e3, 1.2e6) == "0.9 Mbit/s [0.1 Mbit/s to 1.2 Mbit/s] (the seeds disagree)"
    assert need_text(float("inf"), float("inf"), float("inf")) == "not reachable by capacity"
