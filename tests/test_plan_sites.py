"""Planning per site: what each product gives at a line length, prices, and progress that only moves forward."""

import time

import pytest
from conftest import ROOT

from sim import plan_sites
from sim.load import load
from sim.progress import Forward, heartbeat


@pytest.fixture(scope="module")
def profiles():
    return load(ROOT / "scenarios" / "ci-smoke.yaml").catalogue.profiles


def test_copper_is_derated_by_the_catalogue_curve_at_the_line_length(profiles):
    # topologies/access.yaml (docs/sources.md S1): FTTC 80/20 gives 24.5 Mbit/s at 1.2 km and 18 at 1.8 km, the
    # upstream scaling with it (20/80). At 1.5 km: 24.5 + (0.3/0.6)(18 - 24.5) = 21.25 down, 21.25/4 = 5.3125 up.
    assert plan_sites.offer(profiles["fttc_80_20"], 1500) == pytest.approx((21.25e6, 5.3125e6))
    assert plan_sites.offer(profiles["fttc_80_20"], 1800) == pytest.approx((18e6, 4.5e6))
    # FTTC 40/10 at 1.8 km: the same 18 down, 10 x 18/40 = 4.5 up.
    assert plan_sites.offer(profiles["fttc_40_10"], 1800) == pytest.approx((18e6, 4.5e6))
    # ADSL2+ at 2.5 km: 13/0.95 (a point of the table); the length not stated: the headline 16/1.
    assert plan_sites.offer(profiles["adsl2plus"], 2500) == pytest.approx((13e6, 0.95e6))
    assert plan_sites.offer(profiles["adsl2plus"], None) == pytest.approx((16e6, 1e6))


def test_gfast_and_efm_are_not_offered_beyond_their_reach(profiles):
    gfast = profiles["gfast_330_50"]
    for length_m in (4000, 4500, 5000, 501):
        assert plan_sites.offer(gfast, length_m) is None
    # G.fast at 0.2 km: 330 - (0.1/0.25)(330 - 300) = 318 down; up 50 at 0.1 km, 50 x 300/330 = 45.45 at 0.35 km:
    # 50 - 0.4 x 4.545 = 48.18.
    assert plan_sites.offer(gfast, 200) == pytest.approx((318e6, 48.1818e6), rel=1e-4)
    assert plan_sites.offer(profiles["efm_20"], 4500) is None
    assert plan_sites.offer(profiles["efm_20"], 3000) == pytest.approx((20e6, 20e6))
    # Fibre does not depend on the copper line's length.
    assert plan_sites.offer(profiles["fttp_330_50"], 4500) == pytest.approx((330e6, 50e6))
    assert plan_sites.run_distance(profiles["fttp_330_50"], 4500) is None
    assert plan_sites.run_distance(profiles["fttc_80_20"], 4500) == 4500


def test_shipped_ladder_is_cheapest_first_by_its_prices(profiles):
    ladder = load(ROOT / "scenarios" / "ci-smoke.yaml").catalogue.ladder
    prices = [profiles[name].price.gbp_per_month for name in ladder]
    assert prices == sorted(prices)
    assert all(profiles[name].price.source in {"S1", "assumption"} for name in ladder)


def test_steps_say_which_products_are_not_sold_too_slow_or_to_run():
    scenario = load(ROOT / "scenarios" / "ci-smoke.yaml")
    line = plan_sites.Line("gp_medium", 4500.0)
    # Needs of 10/2 Mbit/s: at 4.5 km ADSL2+ (3/0.45) and both FTTC tiers (4/1) are too slow, G.fast not sold.
    steps = {s.product: s.outcome for s in plan_sites.first_steps(scenario, line, (10e6, 2e6))}
    assert steps["adsl2plus"] == steps["fttc_40_10"] == steps["fttc_80_20"] == "too slow"
    assert steps["gfast_330_50"] == "not sold" and steps["efm_20"] == "not sold"
    assert steps["fttp_80_20"] == "to run" and steps["leased_100"] == "to run"


def test_forward_progress_never_goes_back_even_when_the_estimate_grows():
    shown = []
    forward = Forward(lambda done, total: shown.append((done, total)))
    # What the planner used to report: a search phase to 8 of 8, then products counted as 8 of 16.
    for done, total in [(0, 8), (4, 8), (8, 8), (8, 16), (10, 16), (12, 12)]:
        forward(done, total)
    done = [d for d, _ in shown]
    shares = [d / t for d, t in shown]
    assert done == sorted(done) and shares == sorted(shares)
    assert shares[3] == 1.0 or shares[3] == shares[2]  # held, not dropped to 8/16
    assert shown[-1] == (12, 12)


def test_progress_lines_when_not_on_a_terminal_at_most_every_10_s():
    lines, now = [], [0.0]
    forward = Forward(None, "planning x.yaml", lines.append, clock=lambda: now[0])
    for t, done in [(0, 0), (3, 1), (9, 2), (11, 3), (15, 4), (25, 5), (26, 10), (27, 10)]:
        now[0] = t
        forward(done, 10)
    # At 0 s, then 11 s (10 s after the first), 25 s, and once at 100%.
    assert len(lines) == 4
    assert lines[0] == "planning x.yaml: 0% (0 of 10), 0:00:00 elapsed"
    assert lines[1] == "planning x.yaml: 30% (3 of 10), 0:00:11 elapsed, about 0:00:26 left"
    assert lines[-1] == "planning x.yaml: 100% (10 of 10), 0:00:26 elapsed"


def test_a_heartbeat_writes_a_line_while_a_long_job_runs():
    lines, now = [], [0.0]
    forward = Forward(None, "planning x.yaml", lines.append, clock=lambda: now[0])
    forward.tick()  # nothing reported yet: nothing to say
    assert lines == []
    forward(1, 10)
    now[0] = 5.0
    forward.tick()
    now[0] = 10.0
    forward.tick()
    assert lines == ["planning x.yaml: 10% (1 of 10), 0:00:00 elapsed",
                     "planning x.yaml: 10% (1 of 10), 0:00:10 elapsed, about 0:01:30 left"]
    # A real thread ticks too, and stops with the block.
    ticks = []
    forward.tick = lambda: ticks.append(1)
    with heartbeat(forward, every_s=0.01):
        for _ in range(3000):  # up to 30 s on a busy machine; a working heartbeat needs 0.02
            if len(ticks) >= 2:
                break
            time.sleep(0.01)
    assert len(ticks) >= 2
