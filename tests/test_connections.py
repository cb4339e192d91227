"""The connection model: a transfer on a new connection or a kept-alive one, from the catalogue to the records.

Closed forms (the model's documented choices, restated): 2 round trips of handshakes on a new connection (TCP, then
TLS 1.3 with the request on its last flight), none on a reused one; then slow start from 10 segments of 1448 B,
doubling each round trip, the first data one round trip after the request; the rest as a fluid flow at
1448/1514 of the wire rate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import catalogue_with, simulate, site, topology, trace, transfer
from typer.testing import CliRunner

from sim import measured, workload
from sim import topology as topo_mod
from sim.cli import app
from sim.des import tcp
from sim.errors import ScenarioError
from sim.load import load
from sim.model.catalogue import App

GOODPUT = 1448 / 1514


# --- the start-up in closed form -------------------------------------------------------------------------------------

def test_a_reused_connection_sends_its_request_at_once():
    # 10 kB fits the first window: one round of 50 ms; a new connection adds 2 handshake round trips before it.
    reused = tcp.slow_start(10_000, 1e9, 0.05, handshake_rtts=tcp.HANDSHAKE_RTTS_BY_CONNECTION["reused"])
    new = tcp.slow_start(10_000, 1e9, 0.05, handshake_rtts=tcp.HANDSHAKE_RTTS_BY_CONNECTION["new"])
    assert (reused.duration_s, reused.setup_s, reused.sent_bytes) == pytest.approx((0.05, 0.0, 10_000))
    assert (new.duration_s, new.setup_s) == pytest.approx((0.15, 0.10))
    assert tcp.slow_start(10_000, 1e9, 0.05) == new  # a new connection is the default
    # a chunked transfer's extra request round trips are paid on a reused connection too
    assert tcp.slow_start(10_000, 1e9, 0.05, extra_rtts=2, handshake_rtts=0).duration_s == pytest.approx(0.15)


def test_des_short_transfer_on_a_reused_connection_is_two_round_trips_shorter():
    # 50 kB at RTT 100 ms on a fast link: 3 slow-start rounds (14,480 x 7 = 101,360 >= 50,000): 0.3 s reused,
    # 0.5 s with the handshakes; 10 kB is one round: 0.1 s reused, 0.3 s new.
    topo = topology(site("a", down_bps=1e9, up_bps=1e9, rtt_s=0.1))
    records = simulate(topo, trace(transfer("a", 0.0, 50_000, connection="reused"),
                                   transfer("a", 100.0, 50_000, connection="new"),
                                   transfer("a", 200.0, 10_000, connection="reused"),
                                   transfer("a", 300.0, 10_000, connection="new"))).records
    assert records["duration_s"].to_numpy() == pytest.approx([0.3, 0.5, 0.1, 0.3], rel=1e-9)
    assert set(records["bottleneck"]) == {"start-up"}


def test_des_long_transfer_on_a_reused_connection_still_slow_starts():
    # 5 MB down 10 Mbit/s at 30 ms: the window fills the pipe (24.8 segments) after 2 doublings, 43,440 B sent in
    # them; reused: 2 RTT, 1 RTT of handover (the second round's ACKs out, the next window's data back), then the
    # rest at the goodput rate; new: 2 RTT more.
    topo = topology(site("a", down_bps=10e6, up_bps=1e6, rtt_s=0.02), cloud_rtt_s=0.01)
    records = simulate(topo, trace(transfer("a", 100.0, 5e6, connection="reused"),
                                   transfer("a", 200.0, 5e6, connection="new"))).records
    fluid_s = (5e6 - 43_440) * 8 / (10e6 * GOODPUT)
    assert records["duration_s"].to_numpy() == pytest.approx([3 * 0.03 + fluid_s, 5 * 0.03 + fluid_s], rel=1e-9)
    assert records["completed"].all()


# --- the catalogue ---------------------------------------------------------------------------------------------------

def _app(**fields) -> dict:
    return {"kind": "transfer", "label": "x", "colour": "#000000", "generator": "transfers", "source": "S16"} | fields


def test_an_app_says_how_its_requests_travel():
    assert App.model_validate(_app()).reuse_share == 0.0
    assert App.model_validate(_app(connection="reused")).reuse_share == 1.0
    assert App.model_validate(_app(connection="reused", reused_share="80%")).reuse_share == pytest.approx(0.8)
    for fields, message in ((dict(connection="kept"), "'new', 'reused' or 'multiplexed'"),
                            (dict(reused_share="50%"), "'reused_share' is for 'connection: reused'"),
                            (dict(connection="reused", reused_share="120%"), "between 0% and 100%")):
        with pytest.raises(ValueError, match=message):
            App.model_validate(_app(**fields))
    stream = _app(kind="stream", rate={"target": "1Mbps", "minimum": "1Mbps", "packet": "1000B"})
    with pytest.raises(ValueError, match="only transfers make requests"):
        App.model_validate(stream | {"connection": "reused"})


def test_an_unknown_connection_in_the_catalogue_exits_2_at_its_line(tmp_path, topologies_dir):
    apps, at = catalogue_with(topologies_dir, tmp_path, "apps.yaml", "connection: multiplexed", "    connection: kept")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: t\nwindow: {start: '08:00', end: '09:00'}\nyear: 2019\ncatalogue: cat\n"
                        "sites:\n  - {class: gp_medium, count: 1, access: adsl2plus}\n")
    result = CliRunner().invoke(app, ["validate", str(scenario)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{apps.resolve()}:{at + 1} catalogue.apps.record_view.connection:" in " ".join(result.output.split())


def test_the_shipped_catalogue_keeps_record_views_alive(scenarios_dir):
    apps = load(scenarios_dir / "ci-smoke.yaml").catalogue.apps  # and multiplexed (tests/test_multiplexing.py)
    assert apps["record_view"].connection == "multiplexed" and apps["record_view"].reuse_share == pytest.approx(0.8)
    assert {name for name, a in apps.items() if a.traffic == "transfer" and a.reuse_share > 0} == {"record_view"}


# --- the trace -------------------------------------------------------------------------------------------------------

def _trace(scenarios_dir, seed: int, share: str | None = None):
    overrides = {"catalogue.apps.record_view.reused_share": share} if share else None
    scenario = load(scenarios_dir / "icb.yaml", overrides)
    return workload.generate(scenario, topo_mod.build(scenario), seed)


def test_the_trace_draws_each_record_views_connection_from_the_seed(scenarios_dir):
    trace_ = _trace(scenarios_dir, 5)
    assert "connection" in trace_.columns and list(trace_.columns) == list(workload.TRACE_COLUMNS)
    views = trace_[trace_["app"] == "record_view"]
    n, reused = len(views), int((views["connection"] == "multiplexed-reused").sum())
    # binomial(n, 0.8): within 4 standard deviations of 0.8 n
    assert n > 1000 and abs(reused - 0.8 * n) <= 4 * math.sqrt(n * 0.8 * 0.2)
    assert set(views["connection"]) == {"multiplexed-new", "multiplexed-reused"}
    others = trace_[(trace_["traffic"] == "transfer") & (trace_["app"] != "record_view")]
    assert set(others["connection"]) == {"new"} and set(trace_.loc[trace_["traffic"] == "stream", "connection"]) \
        == {""}
    again = _trace(scenarios_dir, 5)
    assert again["connection"].tolist() == trace_["connection"].tolist()  # the same seed, the same draws
    assert _trace(scenarios_dir, 6)["connection"].tolist() != trace_["connection"].tolist()


def test_drawing_connections_leaves_every_other_draw_as_it_was(scenarios_dir):
    # the connections are drawn after everything else a site draws: a share of 100% (nothing drawn) and of 80%
    # give the same sessions, all of them reused in the first
    share_80, share_100 = _trace(scenarios_dir, 5), _trace(scenarios_dir, 5, "100%")
    rest = [c for c in workload.TRACE_COLUMNS if c != "connection"]
    assert share_80[rest].equals(share_100[rest])
    assert set(share_100.loc[share_100["app"] == "record_view", "connection"]) == {"multiplexed-reused"}


@pytest.mark.parametrize("share", ["0%", "100%"])
def test_a_share_at_either_end_leaves_the_next_apps_draws_as_they_were(scenarios_dir, share):
    # scanning kept alive at 50%, drawn after record views: moving the views' share from 80% to 0% or 100% must not
    # move which scans find their connection open (each app draws a number per transfer at any share)
    def scans(view_share):
        overrides = {"catalogue.apps.record_view.reused_share": view_share,
                     "catalogue.apps.scanning.connection": "reused", "catalogue.apps.scanning.reused_share": "50%"}
        scenario = load(scenarios_dir / "icb.yaml", overrides)
        trace_ = workload.generate(scenario, topo_mod.build(scenario), 5)
        return trace_, trace_.loc[trace_["app"] == "scanning", "connection"].tolist()

    (_, scans_80), (at_end, scans_end) = scans("80%"), scans(share)
    assert len(scans_80) > 100 and set(scans_80) == {"new", "reused"}
    assert scans_end == scans_80
    views = at_end.loc[at_end["app"] == "record_view", "connection"]
    assert set(views) == {"multiplexed-reused" if share == "100%" else "multiplexed-new"}


def _measured_scenario(scenarios_dir, tmp_path, rows: str):
    path = tmp_path / "measured.csv"
    path.write_text("site,app,start_s,direction,size_bytes,duration_s,connection\n" + rows)
    scenario = load(scenarios_dir / "ci-smoke.yaml")
    return scenario.model_copy(update={"trace": str(path)}), path


def test_a_measured_trace_may_say_a_transfers_connection_and_defaults_to_new(scenarios_dir, tmp_path):
    site_name = topo_mod.site_names(load(scenarios_dir / "ci-smoke.yaml"))[0]
    scenario, _ = _measured_scenario(scenarios_dir, tmp_path, f"{site_name},record_view,08:10:00,down,5e5,,reused\n"
                                                              f"{site_name},record_view,08:11:00,down,5e5,,\n"
                                                              f"{site_name},telephony,08:12:00,,,60,\n"
                                                              f"{site_name},record_view,08:13:00,down,5e5,,"
                                                              "multiplexed-new\n")
    assert measured.read(scenario, "measured.csv")["connection"].tolist() == ["reused", "new", "", "multiplexed-new"]


@pytest.mark.parametrize(("cell", "app_", "message"), [
    ("kept", "record_view", "'kept' for a transfer: one of new, reused, multiplexed-new, multiplexed-reused"),
    ("reused", "telephony", "a stream has no connection"),
])
def test_a_measured_trace_with_a_wrong_connection_is_located(scenarios_dir, tmp_path, cell, app_, message):
    scenario = load(scenarios_dir / "ci-smoke.yaml")
    site_name = topo_mod.site_names(scenario)[0]
    shape = "down,5e5," if app_ == "record_view" else ",,60"
    scenario, _ = _measured_scenario(scenarios_dir, tmp_path, f"{site_name},{app_},08:10:00,{shape},{cell}\n")
    with pytest.raises(ScenarioError, match=message) as caught:
        measured.read(scenario, "measured.csv")
    assert "measured.csv" in str(caught.value) and "connection" in str(caught.value)


def test_draws_are_near_their_share_over_many_rows():
    part = {"n": 20_000}
    workload._draw_connections(part, 0.3, np.random.default_rng(11))
    share = float(np.mean(part["connection"] == "reused"))
    assert abs(share - 0.3) <= 4 * math.sqrt(0.3 * 0.7 / 20_000)
    again = {"n": 20_000}
    workload._draw_connections(again, 0.3, np.random.default_rng(11))
    assert again["connection"].tolist() == part["connection"].tolist()
