"""Measured traces: a table of sessions replayed instead of a generated one, each cell checked where it sits."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import ROOT
from helpers import cannot_emulate, refused_for_the_machine
from typer.testing import CliRunner

from sim import pipeline, topology, workload
from sim.cli import app
from sim.errors import ScenarioError
from sim.load import load

runner = CliRunner()
GOODPUT = 1448 / 1514  # TCP payload per wire byte (tests/test_des_closed_form.py states the model's constants)
PRACTICE = "id,name,class,access,distance\nZZ1,St Mary's Surgery,gp_small,adsl2plus,3.0km\n"
HEADER = "site,app,start_s,direction,size_bytes,duration_s\n"
ONE_EACH = ("St Mary's Surgery,record_view,08:10,down,2000000,\n"
            "St Mary's Surgery,telephony,08:30:00,,,300\n")


def scenario(tmp_path, trace: str | None = HEADER + ONE_EACH, trace_name: str = "trace.csv", key: bool = True):
    """One practice (ADSL2+ at 3.0 km) for 08:00-09:00, with ``trace`` written to ``trace_name``."""
    (tmp_path / "site.csv").write_text(PRACTICE, encoding="utf-8")
    if trace is not None:
        (tmp_path / trace_name).write_text(trace, encoding="utf-8")
    path = tmp_path / "practice.yaml"
    path.write_text("name: practice\nwindow: {start: '08:00', end: '09:00'}\ndrain: 10min\ninventory: site.csv\n"
                    + (f"trace: {trace_name}\n" if key else "") + "year: 2019\n", encoding="utf-8")
    return path


def error_of(path, **kwargs) -> str:
    with pytest.raises(ScenarioError) as caught:
        load(path, **kwargs)
    return str(caught.value)


def test_a_transfer_alone_on_the_line_takes_its_size_over_the_rate_plus_its_start_up(tmp_path):
    records = pipeline.simulate(load(scenario(tmp_path))).result.records.set_index("app")
    # adsl2plus at 3.0 km: 8 Mbit/s down (topologies/access.yaml derating); RTT 45 ms + 10 ms to the cloud.
    # Window to fill the pipe: 8e6 * GOODPUT * 0.055 / (8 * 1448) = 36.3 segments: 2 doublings from 10, sending
    # 10 + 20 = 30 segments (43,440 B). Time = 2 handshake RTTs + 2 slow-start RTTs + 1 RTT of handover (the second
    # round's ACKs to the sender, the next window's data back) + the rest at the line rate.
    expected_s = 5 * 0.055 + (2e6 - 43_440) * 8 / (8e6 * GOODPUT)
    fetch = records.loc["record_view"]
    assert fetch["start_s"] == 8 * 3600 + 600 and fetch["completed"]
    assert fetch["duration_s"] == pytest.approx(expected_s, rel=1e-9)
    assert fetch["site"] == "St Mary's Surgery" and fetch["bottleneck"] == "access_down"
    # The call: telephony's 87.2 kbit/s each way (topologies/apps.yaml) for its 300 s, alone: all of it at target.
    call = records.loc["telephony"]
    assert call["duration_s"] == 300.0 and call["share_at_target"] == 1.0
    assert call["size_bytes"] == pytest.approx(87.2e3 * 300 / 8)


def test_what_the_table_leaves_out_comes_from_the_app_registry(tmp_path):
    loaded = load(scenario(tmp_path, HEADER + "St Mary's Surgery,video,28800,,,600\n"))
    trace = workload.generate(loaded, topology.build(loaded), 0)
    row = trace.iloc[0]
    video = loaded.catalogue.apps["video"]
    home = loaded.catalogue.profiles[loaded.catalogue.core.home_profile]
    assert (row["traffic"], row["kind"], row["direction"], row["far_end"]) == ("stream", "video", "both", "home")
    assert (row["target_rate_bps"], row["min_rate_bps"], row["packet_bytes"]) == (1.5e6, 350e3, 1200.0)
    assert row["up_share"] == video.rate.up_share
    assert (row["far_profile"], row["far_down_bps"], row["far_up_bps"]) == ("patient_home", home.down, home.up)


def test_a_runs_own_trace_replays_as_it_ran(tmp_path):
    smoke = ROOT / "scenarios" / "ci-smoke.yaml"
    ran = pipeline.simulate(load(smoke))
    ran.trace.to_parquet(tmp_path / "trace.parquet")
    replayed = pipeline.simulate(load(smoke, trace=tmp_path / "trace.parquet"))
    pd.testing.assert_frame_equal(replayed.trace, ran.trace)
    pd.testing.assert_frame_equal(replayed.result.records, ran.result.records)


def test_sessions_are_numbered_in_order_of_start(tmp_path):
    rows = ("St Mary's Surgery,record_view,08:20,down,1000,\n"
            "St Mary's Surgery,record_view,08:05,up,2000,\n")
    trace = pipeline.simulate(load(scenario(tmp_path, HEADER + rows))).trace
    assert trace["session_id"].tolist() == [0, 1] and trace["size_bytes"].tolist() == [2000.0, 1000.0]


def test_the_trace_option_replays_a_file_given_on_the_command_line(tmp_path, monkeypatch):
    path = scenario(tmp_path, key=False)
    (tmp_path / "measured.csv").write_text(HEADER + ONE_EACH, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # --trace is relative to where the command runs
    result = runner.invoke(app, ["check", str(path), "--trace", "measured.csv"])
    assert result.exit_code in (0, 1), result.output
    assert load(path, trace="measured.csv").trace == str(tmp_path / "measured.csv")


def _docs_example() -> str:
    """The measured-traffic CSV of docs/scenarios.md, verbatim."""
    docs = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    return docs.split("## Measured traffic", 1)[1].split("```csv\n", 1)[1].split("```", 1)[0]


def test_the_documented_example_replays_each_start_as_a_clock_time_or_seconds(tmp_path, monkeypatch):
    path = scenario(tmp_path, key=False)
    (tmp_path / "measured.csv").write_text(_docs_example(), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", str(path), "--trace", "measured.csv", "--out", "results", "--no-png"])
    assert result.exit_code == 0, result.output
    trace = load(path, trace="measured.csv")
    starts = workload.generate(trace, topology.build(trace), 0)["start_s"].tolist()
    assert starts == [8 * 3600 + 10 * 60 + 2, 8 * 3600 + 12 * 60, 30915.5]


def test_a_clock_time_may_have_a_fraction_of_a_second(tmp_path):
    loaded = load(scenario(tmp_path, HEADER + "St Mary's Surgery,record_view,08:35:15.5,down,1000,\n"
                           "St Mary's Surgery,record_view,30000,down,1000,\n"))
    assert workload.generate(loaded, topology.build(loaded), 0)["start_s"].tolist() == [30000.0, 30915.5]


# The header is line 1, so the first session is line 2.
BAD = {
    "unknown site": ("St Marys Surgery,record_view,08:10,down,1000,\n",
                     "2 site: unknown site 'St Marys Surgery'; did you mean \"St Mary's Surgery\"?"),
    "unknown app": ("St Mary's Surgery,record_veiw,08:10,down,1000,\n",
                    "2 app: unknown app 'record_veiw'; did you mean 'record_view'?"),
    "negative size": ("St Mary's Surgery,record_view,08:10,down,-5,\n", "2 size_bytes: '-5': must be more than 0"),
    "size not a number": (ONE_EACH + "St Mary's Surgery,record_view,08:10,down,2 MB,\n",
                          "4 size_bytes: '2 MB' is not a number of bytes"),
    "no size": ("St Mary's Surgery,record_view,08:10,down,,\n", "2 size_bytes: a transfer needs its size_bytes"),
    "no direction": ("St Mary's Surgery,record_view,08:10,,1000,\n",
                     "2 direction: a transfer needs its direction: one of up, down"),
    "a stream with a size": ("St Mary's Surgery,telephony,08:10,,1000,60\n",
                             "2 size_bytes: a stream has no size_bytes; leave it empty"),
    "before the window": ("St Mary's Surgery,record_view,07:59,down,1000,\n",
                          "2 start_s: '07:59' (07:59:00) is outside the scenario's window (08:00-09:00); widen "
                          "the window or cut the trace"),
    "not a time": ("St Mary's Surgery,record_view,8h10,down,1000,\n", "2 start_s: '8h10' is not a number of seconds"),
    "not seconds among clock times": (ONE_EACH + "St Mary's Surgery,record_view,8h10,down,1000,\n",
                                      "4 start_s: '8h10' is not a number of seconds"),
    "a bad clock time among seconds": ("St Mary's Surgery,record_view,29000,down,1000,\n"
                                       "St Mary's Surgery,record_view,08:61:00.5,down,1000,\n",
                                       "3 start_s: '08:61:00.5' is not a time of day between '00:00' and '24:00'"),
    "a fraction without seconds": ("St Mary's Surgery,record_view,08:10.5,down,1000,\n",
                                   "2 start_s: '08:10.5' is not a time of day (try '08:30', '08:30:15' or "
                                   "'08:30:15.5')"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_session_is_named_by_file_row_and_column(tmp_path, case):
    rows, expected = BAD[case]
    assert error_of(scenario(tmp_path, HEADER + rows)) == f"{tmp_path / 'trace.csv'}:{expected}"


def test_missing_and_unknown_columns_are_named_at_the_header(tmp_path):
    message = error_of(scenario(tmp_path, "site,app\nSt Mary's Surgery,record_view\n"))
    assert message == f"{tmp_path / 'trace.csv'}:1: missing column 'start_s' (required: site, app, start_s)"
    message = error_of(scenario(tmp_path, "site,app,start_s,size\nSt Mary's Surgery,record_view,08:10,1\n"))
    assert message.startswith(f"{tmp_path / 'trace.csv'}:1: unknown column 'size'; did you mean")


def test_a_parquet_trace_of_the_wrong_type_is_named_by_row(tmp_path):
    frame = pd.DataFrame({"site": ["St Mary's Surgery"] * 2, "app": ["record_view"] * 2,
                          "start_s": [29000.0, 29100.0], "direction": ["down", "down"], "size_bytes": ["1000", "x"]})
    frame.to_parquet(tmp_path / "trace.parquet")
    message = error_of(scenario(tmp_path, None, trace_name="trace.parquet"))
    assert message == f"{tmp_path / 'trace.parquet'}:2 size_bytes: 'x' is not a number of bytes"


def test_a_bad_trace_exits_2_with_its_location_and_writes_no_results(tmp_path):
    path = scenario(tmp_path, HEADER + "St Mary's Surgery,video,08:10,,,-60\n")
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "results"), "--no-png"])
    assert result.exit_code == 2
    assert "trace.csv:2 duration_s: '-60': must be more than 0" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "results").exists()
    missing = runner.invoke(app, ["check", str(path), "--trace", str(tmp_path / "nowhere.csv")])
    assert missing.exit_code == 2 and "--set trace: no such file" in " ".join(missing.output.split())



def test_a_trace_longer_than_a_run_can_hold_is_refused_at_its_key(tmp_path, monkeypatch):
    monkeypatch.setattr("sim.load.MAX_SESSIONS", 1)  # the two sessions of ONE_EACH are then one too many
    path = scenario(tmp_path)
    assert error_of(path) == f"{path}:5 trace: the trace holds more than the 1 sessions one run can hold; split " \
                             "it by site"


@pytest.mark.emulation
@pytest.mark.skipif(cannot_emulate() is not None, reason="emulation needs root and Mininet: run `make test` as root "
                    "(it installs mininet, iperf3, irtt); `testbed doctor` says what is missing")
def test_a_measured_trace_of_one_practice_replays_in_the_emulation(tmp_path):
    # ADSL2+ at 3.0 km: 8 Mbit/s down, 0.9 up. Three sessions in a 15 s emulated window from 08:05.
    rows = ("St Mary's Surgery,record_view,08:05:02,down,500000,\n"
            "St Mary's Surgery,telephony,08:05:03,,,8\n"
            "St Mary's Surgery,scanning,08:05:06,up,100000,\n")
    path = scenario(tmp_path, HEADER + rows)
    path.write_text(path.read_text() + "emulation: {sites: [\"St Mary's Surgery\"], start: '08:05', duration: 15s, "
                    "drain: 10s}\n")
    for _ in range(2):  # once more if the run refused its results for the machine's sake; skipped if it did again
        result = runner.invoke(app, ["run", str(path), "--engine", "emu", "--out", str(tmp_path / "out"), "--no-png"])
        if not (result.exit_code == 2 and refused_for_the_machine(result.output)):
            break
    else:
        pytest.skip("the emulation refused its own results on this machine: " + " ".join(result.output.split())[:600])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "out" / "practice").iterdir()
    records = pd.read_parquet(folder / "records.parquet").set_index("app")
    assert set(records["engine"]) == {"emu"} and set(records["site"]) == {"St Mary's Surgery"}
    assert sorted(records.index) == ["record_view", "scanning", "telephony"] and records["completed"].all()
    # No transfer beats its line: 500 kB down at 8 Mbit/s takes at least 0.5 s; 100 kB up at 0.9 Mbit/s 0.89 s.
    assert records.loc["record_view", "duration_s"] >= 500_000 * 8 / 8e6
    assert records.loc["scanning", "duration_s"] >= 100_000 * 8 / 0.9e6
    assert records.loc["telephony", "duration_s"] == pytest.approx(8.0, abs=0.5)
