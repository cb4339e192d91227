"""A scenario's ``outages``: the link-change table they make, the simulator replaying it, and bad input refused.

Expected tables are worked out by hand from the scenario's clock times and the catalogue's profiles (FTTC 80/20 at
0.6 km and the 4G backup router of ``topologies/faults.yaml``: 29.5/7.6 Mbit/s, 21 ms, 90 s failover).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim import linkchanges as lc
from sim import pipeline, topology
from sim.cli import app
from sim.errors import ScenarioError
from sim.load import load

EXAMPLE = Path(__file__).resolve().parent.parent / "scenarios" / "fttc-failover.yaml"
SCENARIO = (
    "name: outages-test\n"
    'window: {start: "10:00", end: "11:00"}\n'
    "drain: 30min\n"
    "year: 2024\n"
    "sites:\n"
    "  - {class: gp_medium, count: 2, access: fttc_80_20, name: gp}\n"
    "  - {class: gp_small, count: 1, access: fttp_330_50, name: gp-fibre}\n"
    "outages:\n"
)


def _write(tmp_path, outages: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + outages)
    return path


def test_the_example_fails_over_to_4g_and_back():
    scenario = load(EXAMPLE)
    topo = topology.build(scenario)
    table = lc.from_scenario(scenario, topo)
    fault = topo.sites.set_index("site").loc["gp-fault"]
    assert list(table["site"]) == ["gp-fault"] * 3
    assert list(table["at_s"]) == [300.0, 390.0, 2400.0]  # 10:05, + 90 s failover, 10:40 (from 10:00)
    assert list(table["cause"]) == ["fault", "backup", "repaired"]
    assert list(table["down_bps"]) == [0.0, 29.5e6, fault["down_bps"]]
    assert list(table["up_bps"]) == [0.0, 7.6e6, fault["up_bps"]]
    assert list(table["rtt_s"]) == pytest.approx([fault["rtt_s"], 0.021, fault["rtt_s"]])


def test_a_group_fails_together_and_without_a_repair_stays_down_to_the_end(tmp_path):
    scenario = load(_write(tmp_path, '  - {site: gp, at: "10:30"}\n'))
    table = lc.from_scenario(scenario, topology.build(scenario))
    assert list(table["site"]) == ["gp-001", "gp-001", "gp-002", "gp-002"]
    assert list(table["at_s"]) == [1800.0, 5400.0] * 2  # 10:30; the run's end: 11:00 + 30 min drain
    assert list(table["cause"]) == ["fault", "repaired"] * 2  # no backup: down until then


def test_a_backup_carrying_calls_first_queues_them_first(tmp_path):
    scenario = load(_write(tmp_path, '  - {site: gp-fibre, at: "10:10", repaired: "10:20", '
                                     "backup: 4g_router_realtime}\n"))
    table = lc.from_scenario(scenario, topology.build(scenario))
    assert list(table["qos"]) == ["fifo", "priority", "fifo"]
    assert list(table["at_s"]) == [600.0, 690.0, 1200.0]


def test_an_outage_without_a_backup_takes_its_group_s_then_the_study_s(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("name: gp}", "name: gp, backup: 5g_router}")
                    + '  - {site: gp-001, at: "10:10", repaired: "10:20"}\n'
                    + '  - {site: gp-fibre, at: "10:10", repaired: "10:20"}\n'
                    + "availability: {backup: 4g_router}\n")
    scenario = load(path)
    table = lc.from_scenario(scenario, topology.build(scenario)).set_index(["site", "cause"])
    assert table.loc[("gp-001", "backup"), "down_bps"] == 129.9e6  # the group's 5G router (S1)
    assert table.loc[("gp-fibre", "backup"), "down_bps"] == 29.5e6  # the study's 4G router (S1)


def test_a_derived_scenario_that_renamed_the_site_is_refused(tmp_path):
    scenario = load(_write(tmp_path, '  - {site: gp, at: "10:30"}\n'))
    renamed = scenario.model_copy(update={"sites": (scenario.sites[0].model_copy(update={"name": "gp-new"}),
                                                    *scenario.sites[1:])})
    with pytest.raises(ValueError, match="outage of 'gp': no such site or site group"):
        lc.from_scenario(renamed, topology.build(renamed))


def test_a_shard_gets_only_its_own_sites(tmp_path):
    scenario = load(_write(tmp_path, '  - {site: gp, at: "10:30"}\n'))
    topo = topology.build(scenario)
    fibre = topology.Topology(topo.sites[topo.sites["site"] == "gp-fibre"], {}, topo.cloud_rtt_s, topo.home)
    assert lc.from_scenario(scenario, fibre).empty


@pytest.mark.parametrize(("outage", "field", "says"), [
    ('{site: gp-003, at: "10:30"}', "site", "unknown site 'gp-003'; did you mean"),
    ('{site: gp, at: "10:30", backup: 4g_ruoter}', "backup", "did you mean '4g_router'"),
    ('{site: gp, at: "11:30"}', "at", "11:30 is outside the window (10:00-11:00)"),
    ('{site: gp, at: "10:30", repaired: "10:20"}', "repaired", "the repair (10:20) must come after the fault (10:30)"),
    ('{site: gp, at: "10:30", repaired: "12:00"}', "repaired", "after the run ends"),
])
def test_a_bad_outage_is_located(tmp_path, outage, field, says):
    path = _write(tmp_path, f"  - {{site: gp-fibre, at: \"10:05\", repaired: \"10:10\"}}\n  - {outage}\n")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    error = caught.value
    assert says in error.message
    assert (error.file, error.line, error.path) == (str(path), 10, f"outages[1].{field}")


def test_two_outages_of_one_site_may_not_overlap(tmp_path):
    path = _write(tmp_path, '  - {site: gp-002, at: "10:20", repaired: "10:40"}\n  - {site: gp, at: "10:30"}\n')
    with pytest.raises(ScenarioError, match=r"site 'gp-002' is already down then \(outages\[0\]\)"):
        load(path)
    load(_write(tmp_path, '  - {site: gp-002, at: "10:20", repaired: "10:30"}\n  - {site: gp, at: "10:30"}\n'))


def test_the_cli_exits_2_on_a_bad_outage_without_a_traceback(tmp_path):
    path = _write(tmp_path, '  - {site: gp, at: "09:00"}\n')
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "results")])
    assert result.exit_code == 2
    assert "s.yaml:9 outages[0].at: 09:00 is outside" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def test_a_run_replays_the_outage_at_its_site_only():
    faulty, clean = (pipeline.simulate(scenario) for scenario in (load(EXAMPLE), load(EXAMPLE, {"outages": "[]"})))
    records = [outcome.result.records.set_index("session_id") for outcome in (faulty, clean)]
    steady = [r[r["site"] == "gp-steady"] for r in records]
    pd.testing.assert_frame_equal(*steady)
    calls = [r[(r["site"] == "gp-fault") & (r["traffic"] == "stream")] for r in records]
    # calls under way at 10:05 lose their rate for the 90 s failover: each such call's time at target falls
    during = (calls[1]["start_s"] < 36300.0) & (calls[1]["start_s"] + calls[1]["duration_s"] > 36300.0)
    assert during.any()
    assert (calls[0]["share_at_target"][during] < calls[1]["share_at_target"][during]).all()


def test_a_table_shifted_to_a_slice_starts_with_each_line_as_it_is_then():
    table = lc.failover("a", lc.LineState(10e6, 10e6, 0.0, 0.0, 1e5, 1e5), lc.LineState(4e6, 1e6, 0.04, 0.0, 1e5, 1e5),
                        fault_at_s=100.0, repaired_at_s=400.0, failover_s=60.0)
    sliced = lc.shifted(table, by_s=200.0, window_s=150.0)  # the slice 200-350 s: on the backup all through
    assert list(sliced["at_s"]) == [0.0]
    assert list(sliced["cause"]) == ["backup"]
    assert list(lc.shifted(table, by_s=50.0, window_s=400.0)["at_s"]) == [50.0, 110.0, 350.0]


def test_the_simulated_slice_of_an_emulation_takes_its_own_sites_changes_from_its_start():
    scenario = load(EXAMPLE)
    topo = topology.build(scenario)
    changes = lc.from_scenario(scenario, topo)
    for name, causes in (("gp-fault", ["backup"]), ("gp-steady", [])):
        part = topology.Topology(topo.sites[topo.sites["site"] == name], {}, topo.cloud_rtt_s, topo.home)
        sliced = pipeline._slice_changes(changes, part, by_s=600.0, window_s=300.0)  # 10:10-10:15: on the 4G router
        assert list(sliced["cause"]) == causes
        assert list(sliced["at_s"]) == [0.0] * len(causes)


def test_the_day_on_the_backup_replays_no_outage_of_its_own():
    # The availability study's backup day puts every site on its backup all day: the scenario's fault (which
    # names the primary line) is not replayed on top of it.
    from sim import backup_windows
    scenario = load(EXAMPLE)
    on_4g = backup_windows.on_backup(scenario, "4g_router")
    assert scenario.outages and on_4g.outages == ()
    assert {group.access for group in on_4g.sites} == {"backup_4g"}


def test_a_simulated_run_writes_its_calls_per_phase(tmp_path):
    # the example's video calls at gp-fault under way at 10:05 are silent through the 90 s failover, then on 4G
    outcome = pipeline.run(EXAMPLE, out=tmp_path, png=False)
    table = pd.read_csv(outcome.folder / "failover.csv")
    assert set(table["site"]) == {"gp-fault"} and (outcome.folder / "calls.parquet").exists()
    fault = table[table["name"] == "fault"]
    assert len(fault) and (fault["rate_bps"] == 0).all() and (fault["silent_s"] == fault["seconds"]).all()
    # the 90 s outage from 10:05:00, its first second left out: whole seconds of calls inside [10:05:01, 10:06:30)
    assert (fault["seconds"] <= 89).all() and (fault["from_s"] == 36300.0).all() and (fault["to_s"] == 36390.0).all()
    assert set(table["name"]) <= {"before", "fault", "backup", "repaired"} and "backup" in set(table["name"])
