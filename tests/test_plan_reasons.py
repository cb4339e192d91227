"""The planner's reasons: each states the figure its rule used, and what made a product enough or short.

Fed constructed needs, product runs and curves (no simulation): the expected texts are worked out by hand from
the shipped catalogue (topologies/access.yaml): the generic line takes FTTP 330/50's 11 ms round trip and 50 ms
buffers each way with one queue; Leased line 100 has 20 ms buffers, priority queueing for calls and a 4 ms RTT.
"""

import dataclasses
import math

import pandas as pd
import pytest
from conftest import ROOT

from sim import plan, plan_search, plan_sites, plan_tables
from sim.load import load
from sim.plan_runs import EVERY, Judged, cause_of

QUEUE_1G = "bitrate below target, limited by transfers filling the queue of the 1 Gbit/s downlink"


@pytest.fixture(scope="module")
def scenario():
    return load(ROOT / "scenarios" / "ci-smoke.yaml")


def needs(down_bps, up_bps):
    seeds = tuple(range(1, len(down_bps) + 1))
    return (plan.summarise("gp_medium", "down", down_bps, seeds), plan.summarise("gp_medium", "up", up_bps, seeds))


def step(scenario, product, outcome, shares=(1.0, 1.0, 1.0), app_shares=(), causes=(), sites=10):
    rates = plan_sites.offer(scenario.catalogue.profiles[product], None)
    check = None if outcome == "too slow" else plan_sites.ProductCheck(
        "gp_medium", product, None, shares, app_shares, outcome == "enough", causes, sites)
    return plan_sites.Step(product, rates, outcome, check)


def explain(scenario, s, down, up):
    return plan_tables.explain(scenario, plan_sites.Line("gp_medium", None), s, down, up, 0.95)


def test_too_slow_quotes_the_least_any_seed_needed_not_the_class_mean(scenario):
    # Seeds needed 100, 200 and 400 Mbit/s down (geometric mean 200) and 10 up: the rule compares with 100 and
    # 10 (less the search's 4%). ADSL2+ (16/1) is below both.
    down, up = needs([100e6, 200e6, 400e6], [10e6, 10e6, 10e6])
    assert down.mean_bps == pytest.approx(200e6) and down.floor_bps == pytest.approx(100e6 / 1.04)
    text = explain(scenario, step(scenario, "adsl2plus", "too slow"), down, up)
    assert text == "ADSL2+ gives 16/1 Mbit/s: both directions are below the least any seed needed (100/10 Mbit/s)"


def test_a_chosen_product_below_the_class_need_says_what_differs_from_the_generic_line(scenario):
    # Leased line 100 gives 100 down, half the class's 200: its buffer, queueing and RTT differ from the generic
    # line's (FTTP 330/50's); its uplink of 100 is above the need of 10, so only the downstream buffer is named.
    down, up = needs([100e6, 200e6, 400e6], [10e6, 10e6, 10e6])
    text = explain(scenario, step(scenario, "leased_100", "enough"), down, up)
    assert text == ("Leased line 100 (Ethernet Access Direct) gives 100/100 Mbit/s: its downlink is below the class's "
                    "need of 200 Mbit/s on the generic line (50 ms downstream buffer, one queue for calls and "
                    "transfers, 11 ms round trip), but with its 20 ms downstream buffer, priority queueing for calls "
                    "and 4 ms round trip, every target met at 100% of sites in the worst seed")
    # Below in both directions (150 up needed): both buffers are named.
    down, up = needs([100e6, 200e6, 400e6], [150e6, 150e6, 150e6])
    text = explain(scenario, step(scenario, "leased_100", "enough"), down, up)
    assert ("both directions are below the class's need of 200/150 Mbit/s on the generic line (50 ms downstream "
            "buffer, 50 ms upstream buffer, one queue for calls and transfers, 11 ms round trip), but with its 20 ms "
            "downstream buffer, 20 ms upstream buffer, priority queueing for calls and 4 ms round trip") in text
    # At or above the need both ways: no comparison is needed.
    down, up = needs([50e6, 60e6, 70e6], [10e6, 10e6, 10e6])
    assert explain(scenario, step(scenario, "leased_100", "enough"), down, up) == (
        "Leased line 100 (Ethernet Access Direct) gives 100/100 Mbit/s: every target met at 100% of sites in the "
        "worst seed")


def test_a_chosen_product_like_the_generic_line_says_only_its_rates_differ(scenario):
    # FTTP 80/20 has the generic line's RTT, buffers and queueing; seeds needed 60, 100 and 166.7 (mean 100).
    down, up = needs([60e6, 100e6, 100e6 * 100e6 / 60e6], [10e6, 10e6, 10e6])
    assert down.mean_bps == pytest.approx(100e6)
    text = explain(scenario, step(scenario, "fttp_80_20", "enough"), down, up)
    assert text == ("FTTP 80/20 gives 80/20 Mbit/s: its downlink is below the class's need of 100 Mbit/s on the "
                    "generic line, but every target met at 100% of sites in the worst seed with the generic line's "
                    "round trip, buffers and queueing: only its rates differ (the search held the other direction "
                    "at 10 Gbit/s)")


def test_a_product_short_of_the_bar_names_the_target_the_seed_and_the_recorded_cause(scenario):
    # FTTP 1000/220 is above the need both ways (200/10); seed 2 had 9 of 10 sites meeting the video target,
    # the failing site's calls held back by transfers in the line's own downstream queue (50 ms, one queue).
    down, up = needs([100e6, 200e6, 400e6], [10e6, 10e6, 10e6])
    s = step(scenario, "fttp_1000_220", "missed", (1.0, 0.9, 1.0), (("link", 1.0), ("video", 0.9)),
             (("video", QUEUE_1G),))
    assert explain(scenario, s, down, up) == (
        "FTTP 1000/220 gives 1000/220 Mbit/s: video consultations met at 90% of sites (9 of 10) in the worst seed "
        "(seed 2, bar 95%): bitrate below target, limited by transfers filling the queue of the 1 Gbit/s downlink "
        "(its 50 ms downstream buffer, one queue for calls and transfers)")
    # Below the class's need too: the comparison follows the cause, with the figure it compares with.
    s = step(scenario, "fttp_80_20", "missed", (0.6, 0.9, 1.0), (("video", 0.6),),
             (("video", "bitrate below target, limited by the 80 Mbit/s downlink"),))
    assert explain(scenario, s, down, up) == (
        "FTTP 80/20 gives 80/20 Mbit/s: video consultations met at 60% of sites (6 of 10) in the worst seed "
        "(seed 1, bar 95%): bitrate below target, limited by the 80 Mbit/s downlink, and its downlink is below the "
        "class's need of 200 Mbit/s on the generic line")


def test_a_cause_on_a_shared_link_names_no_buffer_of_the_line(scenario):
    profile = scenario.catalogue.profiles["fttp_330_50"]
    assert plan_tables.queue_note(profile, "transfers filling the queue of the shared downlink gpon-1") == ""
    assert plan_tables.queue_note(profile, "the 330 Mbit/s downlink") == ""
    fttc = scenario.catalogue.profiles["fttc_80_20"]
    assert plan_tables.queue_note(fttc, "transfers filling the queue of the 20 Mbit/s uplink") == (
        " (its 250 ms upstream buffer, one queue for calls and transfers)")


def test_the_cause_of_a_missed_target_is_what_most_failing_sites_share():
    rows = pd.DataFrame([
        ("video", False, "bitrate below target", "transfers filling the queue of the 1 Gbit/s downlink"),
        ("video", False, "bitrate below target", "transfers filling the queue of the 1 Gbit/s downlink"),
        ("video", False, "one-way delay p95 > 150 ms", "the 1 Gbit/s downlink"),
        ("video", True, "", ""),
        ("link", False, "busy-hour utilisation > 75%", "the 20 Mbit/s uplink"),
        ("image_routine", False, "slower than target", ""),
    ], columns=["app", "passed", "criterion", "cause"])
    assert cause_of(rows) == {"video": QUEUE_1G,
                              "link": "busy-hour utilisation > 75%, limited by the 20 Mbit/s uplink",
                              "image_routine": "slower than target"}


def test_a_product_check_keeps_each_targets_cause_from_its_worst_seed():
    runs = [Judged({EVERY: 1.0, "video": 1.0}, {}, 10),
            Judged({EVERY: 0.8, "video": 0.9, "link": 0.9}, {"video": "worst", "link": "busy"}, 10),
            Judged({EVERY: 0.9, "video": 0.95}, {"video": "milder"}, 10)]
    check = plan_sites._check(("gp_medium", "fttp_80_20", None), runs, 0.95)
    assert check.shares == (1.0, 0.8, 0.9) and not check.passed and check.sites == 10
    assert check.app_shares == (("link", 0.9), ("video", 0.9))
    assert check.causes == (("link", "busy"), ("video", "worst"))


def test_a_search_knows_the_highest_failing_capacity_below_its_answer():
    found = plan.search(lambda c: 1.0 if c >= 3.7e6 else 0.9, 0.95)
    failing = [c for c, v in found.points if v < 0.95]
    assert found.failing_below == max(failing) < found.threshold_bps
    assert plan.search(lambda c: 0.5, 0.95).failing_below is None
    assert plan.search(lambda c: 1.0, 0.95).failing_below is None


def curve_rows():
    # Seed 3's down search: 90% of sites from 238 to 461 Mbit/s, all from 480; seeds 1 and 2 and the uplink too.
    seed3 = [(25e6, 0.2), (112e6, 0.8), (238e6, 0.9), (346e6, 0.9), (461e6, 0.9), (480e6, 1.0), (10e9, 1.0)]
    rows = [("gp_medium", "down", 3, c, s) for c, s in seed3]
    rows += [("gp_medium", "down", 1, c, s) for c, s in [(90e6, 0.9), (100e6, 1.0), (10e9, 1.0)]]
    rows += [("gp_medium", "up", 3, c, s) for c, s in [(300e6, 0.0), (10e9, 1.0)]]
    return pd.DataFrame(rows, columns=["site_class", "direction", "seed", "capacity_bps", "share"])


def test_a_seed_that_needed_far_more_than_the_rest_is_named_with_its_flat_response_and_cause(scenario):
    # 100, 120 and 480 Mbit/s: 480 is 4 times the next highest; the rest's geometric mean is
    # sqrt(100 x 120) = 109.5 Mbit/s. At 461 Mbit/s (the highest failing rate below 480) one site missed video.
    down = plan.summarise("gp_medium", "down", [100e6, 120e6, 480e6], (1, 2, 3))
    down = dataclasses.replace(down, short=((3, 461e6, "video", 0.9, QUEUE_1G.replace("1 Gbit/s", "461 Mbit/s")),))
    assert down.half_width > plan.HALF_WIDTH
    assert plan_tables.spread_text(scenario, down, curve_rows()) == (
        "down, seed 3 needed 480 Mbit/s, 4 times the next highest (120 Mbit/s, seed 2); without it the need would "
        "be 110 Mbit/s. At every rate tried from 238 Mbit/s to 461 Mbit/s 90% of its sites passed: more rate did "
        "not help; at 461 Mbit/s, video consultations met at 90% of sites: bitrate below target, limited by "
        "transfers filling the queue of the 461 Mbit/s downlink (its 50 ms downstream buffer, one queue for calls "
        "and transfers)")


@pytest.mark.parametrize("per_seed", [[100e6, 105e6, 110e6],     # narrow: nothing to explain
                                      [50e6, 100e6, 200e6, 400e6],  # wide, but no seed more than twice the next
                                      [100e6, math.inf, 120e6]])  # unreachable: said elsewhere
def test_no_seed_is_named_when_none_stands_out(scenario, per_seed):
    need = plan.summarise("gp_medium", "down", per_seed, tuple(range(1, len(per_seed) + 1)))
    assert plan_tables.spread_text(scenario, need, curve_rows()) == ""


def test_rates_of_a_gigabit_and_more_are_written_whole():
    assert plan_tables.rates_text((1e9, 220e6)) == "1000/220 Mbit/s"
    assert plan_tables.rates_text((72.75e6, 18.1875e6)) == "72.8/18.2 Mbit/s"
    assert plan_search.need_text(1.28e9, 1.2e9, 1.4e9) == "1.28 Gbit/s [1.2 Gbit/s to 1.4 Gbit/s]"
