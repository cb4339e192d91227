"""HTTP/2 multiplexing: concurrent transfers of one app at a site, one way, as streams of one connection.

Hand-worked figures: the streams of a connection with k active streams each have weight 1/k and cap C/k, so together
they take what one flow of cap C would (a 3-stream connection beside one plain transfer on 10 Mbit/s: 5 Mbit/s, each
stream 5/3); a stream joining an open connection pays one request round trip and no slow start.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import catalogue_with, simulate, site, topology, trace, transfer
from typer.testing import CliRunner

from sim import workload
from sim.cli import app
from sim.des.sharing import max_min, water_level, weighted_level
from sim.model.catalogue import App
from sim.topology import SharedLink

GOODPUT = 1448 / 1514
THIRD = 1 / 3


def _stream(start_s: float, size_bytes: float, connection: str = "multiplexed-new", direction: str = "down") -> dict:
    return transfer("a", start_s, size_bytes, direction, connection=connection)


# --- the weighted water level ---------------------------------------------------------------------------------------

def test_three_streams_of_one_connection_take_one_flows_share_beside_a_plain_transfer():
    # level = 10 / (3 x 1/3 + 1) = 5 Mbit/s: the plain transfer 5, each stream 5/3
    level = weighted_level([math.inf] * 4, [THIRD, THIRD, THIRD, 1.0], 10e6)
    assert level == pytest.approx(5e6)
    assert [min(math.inf, w * level) for w in (THIRD, 1.0)] == pytest.approx([5e6 / 3, 5e6])


def test_a_connections_window_caps_its_streams_together():
    # C = 3 Mbit/s over 3 streams (cap 1 each, weight 1/3) beside a plain transfer on 10: the connection takes 3,
    # reaching its cap at level 3 (3 x 2 = 6 <= 10), the plain transfer the 7 left
    level = weighted_level([1e6, 1e6, 1e6, math.inf], [THIRD, THIRD, THIRD, 1.0], 10e6)
    assert level == pytest.approx(7e6)
    assert min(1e6, THIRD * level) == 1e6


def test_unit_weights_are_plain_water_filling():
    caps = [2e6, 3e6, math.inf, 1e6]
    assert weighted_level(caps, [1.0] * 4, 10e6) == water_level(caps, 10e6) == pytest.approx(4e6)  # 1, 2, 3 fit; 4 left
    assert water_level(caps, 10e6, [1.0] * 4) == water_level(caps, 10e6)


def test_progressive_filling_weighs_streams_as_the_water_level_does():
    # link 1 (10 Mbit/s): 2 streams (weight 1/2) and a plain flow; link 2 (4 Mbit/s) carries the plain flow and
    # another: link 2 fills first at 2 each, then link 1's connection takes the 8 left, 4 a stream
    rates, limiter = max_min([math.inf] * 4, [(1,), (1,), (1, 2), (2,)], {1: 10e6, 2: 4e6},
                             [0.5, 0.5, 1.0, 1.0])
    assert rates == pytest.approx([4e6, 4e6, 2e6, 2e6])
    assert limiter == [1, 1, 2, 2]


# --- the simulator --------------------------------------------------------------------------------------------------

def test_des_three_streams_beside_a_plain_transfer_share_as_one_flow():
    # RTT 0: no start-up. 3 streams of 1 MB (one connection) and a 10 MB plain transfer on 10 Mbit/s: each stream at
    # 5/3 Mbit/s ends at 1e6 x 8 / (5/3e6 x G) = 4.8/G s; the plain one has sent 3 MB by then, then 7 MB at 10 Mbit/s:
    # (4.8 + 5.6)/G. As plain transfers the three would end at 3.2/G (2.5 Mbit/s each), the big one still at 10.4/G.
    topo = topology(site("a", down_bps=10e6, up_bps=10e6))
    sessions = [_stream(0.0, 1e6), _stream(0.0, 1e6), _stream(0.0, 1e6), transfer("a", 0.0, 10e6)]
    records = simulate(topo, trace(*sessions)).records.sort_values("session_id")
    assert records["duration_s"].tolist() == pytest.approx([4.8 / GOODPUT] * 3 + [10.4 / GOODPUT], rel=1e-9)
    plain = simulate(topo, trace(*(s | {"connection": "new"} for s in sessions))).records.sort_values("session_id")
    assert plain["duration_s"].tolist() == pytest.approx([3.2 / GOODPUT] * 3 + [10.4 / GOODPUT], rel=1e-9)


def test_des_a_stream_joining_an_open_connection_pays_one_round_trip_and_no_slow_start():
    # A 20 MB stream holds the 10 Mbit/s line from its start-up's end (~1 s); a 100 kB stream of the same connection at
    # 3 s: one request round trip (at the RTT it finds, the standing queue included), then half the line (5 Mbit/s)
    # as one of k = 2 streams: rtt + 0.1e6 x 8 / (5e6 x G). As a new transfer it would take 2 more round trips.
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.05))
    records = simulate(topo, trace(_stream(0.0, 20e6), _stream(3.0, 100e3))).records.set_index("session_id")
    rtt_s = records.loc[1, "rtt_s"]
    assert rtt_s > 0.05  # the standing queue of the long stream
    assert records.loc[1, "duration_s"] == pytest.approx(rtt_s + 0.1e6 * 8 / (5e6 * GOODPUT), rel=1e-9)


def test_des_a_stream_on_an_idle_connection_is_as_its_draw_says():
    # the connection's streams are all done by 100 s: a stream then opens it anew (new) or wakes it (reused), as a
    # plain transfer of that draw does
    topo = topology(site("a", down_bps=10e6, up_bps=10e6, rtt_s=0.05))
    sessions = [_stream(0.0, 1e6), _stream(100.0, 300e3), transfer("a", 200.0, 300e3),
                _stream(300.0, 300e3, "multiplexed-reused"), transfer("a", 400.0, 300e3, connection="reused")]
    durations = simulate(topo, trace(*sessions)).records.sort_values("session_id")["duration_s"].tolist()
    assert durations[1] == pytest.approx(durations[2], rel=1e-12)
    assert durations[3] == pytest.approx(durations[4], rel=1e-12)
    assert durations[1] - durations[3] == pytest.approx(2 * 0.05, rel=1e-9)  # the handshakes


def test_des_streams_of_each_direction_and_each_app_are_separate_connections():
    # an upload and a download never share a connection, nor two apps: each stream alone, as plain transfers
    topo = topology(site("a", down_bps=10e6, up_bps=10e6))
    sessions = [_stream(0.0, 1e6, direction="up"), _stream(0.0, 1e6), transfer("a", 0.0, 1e6) | {
        "app": "record_sync", "connection": "multiplexed-new"}]
    records = simulate(topo, trace(*sessions)).records.sort_values("session_id")
    up, down, other = records["duration_s"].tolist()
    assert up == pytest.approx(0.8 / GOODPUT)  # alone on the uplink
    assert down == pytest.approx(other) == pytest.approx(1.6 / GOODPUT)  # two flows on the downlink, 5 each


def test_des_streams_behind_a_shared_link_take_one_flows_share_there():
    # two sites behind a 10 Mbit/s shared link, their lines 100: site a's 3 streams and site b's plain transfer share
    # it as two flows, 5 each; the numbers of the one-link case
    shared = {"tree": SharedLink("tree", 10e6, 10e6, 150_000, 150_000)}
    topo = topology(site("a", down_bps=100e6, up_bps=100e6, aggregation="tree"),
                    site("b", down_bps=100e6, up_bps=100e6, aggregation="tree"), shared=shared)
    sessions = [_stream(0.0, 1e6), _stream(0.0, 1e6), _stream(0.0, 1e6), transfer("b", 0.0, 10e6)]
    records = simulate(topo, trace(*sessions)).records.sort_values("session_id")
    assert records["duration_s"].tolist() == pytest.approx([4.8 / GOODPUT] * 3 + [10.4 / GOODPUT], rel=1e-9)


# --- the catalogue --------------------------------------------------------------------------------------------------

def test_a_misspelt_connection_exits_2_at_its_line_naming_the_nearest(tmp_path, topologies_dir):
    apps, at = catalogue_with(topologies_dir, tmp_path, "apps.yaml", "connection: multiplexed",
                              "    connection: multiplex")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: t\nwindow: {start: '08:00', end: '09:00'}\nyear: 2019\ncatalogue: cat\n"
                        "sites:\n  - {class: gp_medium, count: 1, access: adsl2plus}\n")
    result = CliRunner().invoke(app, ["validate", str(scenario)])
    words = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{apps.resolve()}:{at + 1} catalogue.apps.record_view.connection:" in words
    assert "did you mean 'multiplexed'?" in words


def test_a_multiplexed_apps_transfers_say_so_in_the_trace():
    multiplexed = App.model_validate({"kind": "transfer", "label": "x", "colour": "#000000", "generator": "transfers",
                                      "source": "S16", "connection": "multiplexed", "reused_share": "80%"})
    assert multiplexed.multiplexed and multiplexed.reuse_share == pytest.approx(0.8)
    part = {"n": 2000}
    workload._draw_connections(part, multiplexed.reuse_share, np.random.default_rng(1), "multiplexed-")
    assert set(part["connection"]) == {"multiplexed-new", "multiplexed-reused"}
    assert np.mean(part["connection"] == "multiplexed-reused") == pytest.approx(0.8, abs=0.03)  # 3.4 sd of 2,000 draws


def test_a_connections_streams_are_one_tcp_flow_in_the_congestion_loss():
    # two streams at 5 Mbit/s each on a saturated 10 Mbit/s line are one TCP flow at 10: under short flows' bursts,
    # Mathis inverted for 10 Mbit/s and the RTT (20 ms + the 50 ms queue), as for one plain flow at 10, not for two
    # flows at 5 (four times the loss); under a standing queue, the overflow loss of one flow, not of two
    from types import SimpleNamespace

    from sim.des import queueing, tcp
    from sim.des.connections import Connection
    from sim.des.linkshare import congestion_loss

    conn = Connection()
    streams = [SimpleNamespace(conn=conn, rate_bps=5e6, rtt_s=0.07, queue_delay_s=0.05) for _ in range(2)]
    plain = [SimpleNamespace(conn=None, rate_bps=10e6, rtt_s=0.07, queue_delay_s=0.05)]
    two_plain = [SimpleNamespace(conn=None, rate_bps=5e6, rtt_s=0.07, queue_delay_s=0.05) for _ in range(2)]
    bursts = SimpleNamespace(saturated=queueing.BURSTS, streams=2, queue_delay_s=0.05, full_queue=(0.12, 0.0))
    assert congestion_loss(bursts, streams) == congestion_loss(bursts, plain) == tcp.mathis_loss(10e6, 0.07)
    assert congestion_loss(bursts, two_plain) == pytest.approx(4 * tcp.mathis_loss(10e6, 0.07))
    standing = SimpleNamespace(saturated=queueing.STANDING, streams=2, queue_delay_s=0.05, full_queue=(0.12, 0.0))
    assert congestion_loss(standing, streams) == congestion_loss(standing, plain)
    assert congestion_loss(standing, streams) != congestion_loss(standing, two_plain)
