"""Answers per site: measured values against targets and their causes, from the engine's records; worst first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim import answers, targets
from sim.des.tcp import GOODPUT_FACTOR
from sim.load import load
from sim.measures import rate_words, value_words


@pytest.fixture
def scenario_targets(scenarios_dir):
    return load(scenarios_dir / "ci-smoke.yaml").targets


def _evaluate(topo, sessions, scenario_targets):
    result = simulate(topo, sessions)
    return targets.evaluate(result.records, result.links, topo.sites, scenario_targets, (0.0, 3600.0), {})


def test_a_lone_upload_is_measured_against_its_limit_and_blamed_on_the_uplink(scenario_targets):
    # 25 MB up a 1 Mbit/s line, alone: 25e6 * 8 / (1e6 * goodput) s plus a start-up of a few round trips at
    # 10 ms: about 209 s against GP2GP's 60 s.
    topo = topology(site("a", down_bps=16e6, up_bps=1e6, rtt_s=0.01))
    verdicts = _evaluate(topo, trace(transfer("a", 0.0, 25e6, "up", app="gp2gp", kind="gp2gp")), scenario_targets)
    row = verdicts.sites.set_index("app").loc["gp2gp"]
    alone_s = 25e6 * 8 / (1e6 * GOODPUT_FACTOR)
    assert not row["passed"]
    assert row["criterion"] == "slower than target"
    assert alone_s <= row["measured_value"] <= alone_s + 1.0
    assert (row["target_value"], row["value_unit"], row["failing_sessions"]) == (60.0, "s", 1)
    assert row["cause"] == "the 1 Mbit/s uplink"  # it had the whole line: no "share of"
    assert row["reason"] == (f"gp2gp completion time {row['measured_value']:.3g} s against at most 60 s "
                             "(median of 1 failed): the 1 Mbit/s uplink")


def test_two_uploads_sharing_the_uplink_say_what_share_they_got(scenario_targets):
    # Two 25 MB uploads at once on 1 Mbit/s: each gets half, finishing together after about 2 x 209 s; each
    # one's mean rate is 25e6 * 8 / duration, about 0.48 Mbit/s.
    topo = topology(site("a", down_bps=16e6, up_bps=1e6, rtt_s=0.01))
    sessions = trace(transfer("a", 0.0, 25e6, "up", app="gp2gp", kind="gp2gp"),
                     transfer("a", 0.0, 25e6, "up", app="gp2gp", kind="gp2gp"))
    row = _evaluate(topo, sessions, scenario_targets).sites.set_index("app").loc["gp2gp"]
    both_s = 2 * 25e6 * 8 / (1e6 * GOODPUT_FACTOR)
    assert both_s <= row["measured_value"] <= both_s + 1.0
    share_bps = 25e6 * 8 / row["measured_value"]
    assert share_bps == pytest.approx(0.5e6 * GOODPUT_FACTOR, rel=0.01)
    assert row["cause"] == f"a {rate_words(share_bps)} share of the 1 Mbit/s uplink"
    assert row["failing_sessions"] == 2


def test_a_starved_call_is_measured_by_its_time_below_the_minimum(scenario_targets):
    # A video call (min 350 kbit/s) on a 0.3 Mbit/s uplink can never reach its minimum: all of its time is below
    # it, against a bar of 0% (targets.yaml, video: share_below_minimum 0%).
    topo = topology(site("a", down_bps=16e6, up_bps=0.3e6, rtt_s=0.01))
    row = _evaluate(topo, trace(call("a", 0.0, 600.0)), scenario_targets).sites.set_index("app").loc["video"]
    assert not row["passed"]
    assert row["measure"] == "time below 0.35 Mbit/s"
    assert row["measured_value"] == pytest.approx(1.0)
    assert row["target_value"] == scenario_targets.streams["video"].share_below_minimum == 0.0
    assert row["cause"] == "the 0.3 Mbit/s uplink"
    assert "mean " in row["reason"] and "against at most 0.0%" in row["reason"]


def test_a_delay_miss_names_the_queueing_at_its_95th_percentile_and_its_mean(scenario_targets):
    # Three failed calls: delay p95 216, 300 and 200 ms on a 40 ms round trip, so 196, 280 and 180 ms above the
    # path's one-way 20 ms (median 196 ms); their mean queueing 19, 30 and 10 ms (median 19 ms).
    from sim.measures import measures
    failed = pd.DataFrame({"site": "a", "app": "telephony", "reason": "one-way delay p95 > 150 ms",
                           "one_way_delay_p95_s": [0.216, 0.300, 0.200], "rtt_s": 0.04,
                           "queue_delay_s": [0.019, 0.030, 0.010], "bottleneck": "access_up"})
    criteria = pd.Series(["one-way delay p95 > 150 ms"], index=pd.MultiIndex.from_tuples([("a", "telephony")],
                                                                                          names=["site", "app"]))
    sites = pd.DataFrame({"site": ["a"], "up_bps": [1e6], "down_bps": [16e6], "rtt_s": [0.04]})
    row = measures(failed, criteria, sites, scenario_targets).iloc[0]
    assert row["measured_value"] == pytest.approx(0.216) and row["target_value"] == pytest.approx(0.150)
    assert row["cause"] == "the 1 Mbit/s uplink, 196 ms queueing at the 95th percentile (19 ms on average)"
    # Queueing under a tenth of the p95 (here 2 ms of 30 ms on a 56 ms round trip): the path's own delay is the cause
    path_bound = failed.assign(one_way_delay_p95_s=0.030, rtt_s=0.056)
    row = measures(path_bound, criteria, sites, scenario_targets).iloc[0]
    assert row["cause"] == "the path's own 28 ms one-way delay, with 2 ms queueing at the 95th percentile"
    # Without a round trip in the records (the emulation's calls), the mean alone
    row = measures(failed.drop(columns="rtt_s"), criteria, sites, scenario_targets).iloc[0]
    assert row["cause"] == "the 1 Mbit/s uplink, 19 ms queueing"


def test_a_stream_of_all_a_sites_users_is_measured_against_their_total(scenario_targets):
    # The clinical system's stream carries a site's 19.2 users at 25 kbit/s each: its minimum is their 480 kbit/s.
    from sim.measures import measures
    failed = pd.DataFrame({"site": "a", "app": "clinical_system", "reason": "bitrate below minimum",
                           "share_below_min": [0.2, 0.3, 0.25], "min_rate_bps": 480e3, "kind": "aggregate"})
    criteria = pd.Series(["bitrate below minimum"], index=pd.MultiIndex.from_tuples([("a", "clinical_system")],
                                                                                     names=["site", "app"]))
    sites = pd.DataFrame({"site": ["a"], "up_bps": [1e6], "down_bps": [16e6], "rtt_s": [0.04]})
    row = measures(failed, criteria, sites, scenario_targets).iloc[0]
    assert row["measure"] == "time below 0.48 Mbit/s (all its users)" and row["measured_value"] == pytest.approx(0.25)
    row = measures(failed.assign(kind="clinical_system"), criteria, sites, scenario_targets).iloc[0]
    assert row["measure"] == "time below 0.48 Mbit/s"  # one user's stream


def test_the_busy_hour_verdict_names_its_line(scenario_targets):
    # A 2 Mbit/s download pulled for the whole hour fills the 2 Mbit/s downlink: utilisation near 1 > 75%.
    topo = topology(site("a", down_bps=2e6, up_bps=1e6))
    sessions = trace(transfer("a", 0.0, 2e6 / 8 * 3600 * 1.2, "down", app="updates", kind="bulk"))
    row = _evaluate(topo, sessions, scenario_targets).sites.set_index("app").loc["link"]
    assert not row["passed"] and row["measured_value"] == row["value"] > 0.9
    assert (row["target_value"], row["value_unit"], row["cause"]) == (0.75, "share", "the 2 Mbit/s downlink")


def _rows(*failures):
    """Site verdict rows: (site, app, passed, share passing)."""
    return pd.DataFrame([{"site": s, "site_class": "gp_small", "family": "gp_practice", "access_profile": "adsl2plus",
                          "technology": "ADSL2+", "medium": "copper", "app": a, "sessions": 10,
                          "sessions_passing": int(share * 10), "share_passing": share, "value": share, "passed": p,
                          "reason": "" if p else "slower than target"} for s, a, p, share in failures])


def test_sites_are_ranked_by_targets_missed_then_share_passing_and_limited():
    rows = _rows(("St Mary's", "video", False, 0.5), ("zeta", "video", False, 0.1), ("zeta", "gp2gp", True, 1.0),
                 ("alpha", "video", False, 0.4), ("alpha", "gp2gp", False, 0.9), ("ok", "video", True, 1.0))
    ranked = answers.site_rank(rows)
    assert ranked["site"].tolist() == ["alpha", "zeta", "St Mary's"]  # 2 misses; then 10% before 50%
    lines = pd.DataFrame({"site": ["St Mary's", "zeta", "alpha", "ok"], "distance_m": [1500.0, np.nan, 800.0, 1.0],
                          "down_bps": 38e6, "up_bps": 7.5e6})
    found = answers.failing_sites(rows, lines)
    assert found["site"].tolist() == ["alpha", "alpha", "zeta", "St Mary's"]
    assert found["line"].iat[3] == "adsl2plus, 1.5 km (38 Mbit/s down, 7.5 Mbit/s up)"
    shown, more = answers.limited(found, 2)
    assert shown["site"].unique().tolist() == ["alpha", "zeta"] and more == 1
    assert answers.limited(found, None) == (found, 0)


def test_values_are_written_with_their_units():
    assert rate_words(850e3) == "0.85 Mbit/s" and rate_words(80e3) == "80 kbit/s" and rate_words(1e9) == "1 Gbit/s"
    assert value_words(0.21, "s") == "210 ms" and value_words(48.0, "s") == "48 s"
    assert value_words(0.031, "share") == "3.1%" and value_words(float("nan"), "s") == "n/a"
    # never in exponent form: 1,530 s (not 1.53e+03 s), 1,000 Mbit/s (999.6 to 3 figures)
    assert value_words(1530.4, "s") == "1,530 s" and rate_words(999.6e6) == "1,000 Mbit/s"


def test_significant_figures_are_written_without_an_exponent():
    from sim.units import significant
    assert [significant(v) for v in (6.853, 0.0123, 1.23e-05, 999.4, 999.6, -2500.4)] == \
        ["6.85", "0.0123", "0.0000123", "999", "1,000", "-2,500"]
    assert significant(99.6, 2) == "100" and significant(0.71, 2) == "0.71" and significant(float("nan")) == "nan"


def test_tables_as_text_are_aligned_and_never_cut_and_as_markdown_escaped():
    from sim import text_tables as tables
    long = "x" * 300
    table = tables.Table("T", ["site", "cause"], [["St Mary's | A*B", long], ["b", "\u202e"]], ["and 1 more"])
    text = tables.text(table).splitlines()
    assert text[0] == "T" and text[1] == "site             cause" and text[2] == "---------------  " + "-" * 300
    assert text[3] == f"St Mary's | A*B  {long}" and text[4] == "b                \\u202e"
    assert text[5] == "and 1 more"
    markdown = tables.markdown(table).splitlines()
    assert markdown[:4] == ["**T**", "", "| site | cause |", "|---|---|"]
    assert markdown[4] == f"| St Mary's \\| A\\*B | {long} |"
