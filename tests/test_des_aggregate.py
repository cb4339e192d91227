"""An aggregate stream (apps.yaml ``aggregate: true``) against the separate streams it stands for.

The workload replays a site's clinical-system or Microsoft 365 users as one stream per hour at users x the per-user
rate. That is exact for what is judged (delay, jitter, loss, time at rate) while each user's rate and the aggregate
stay below the fair share of the link: every packet on a link waits in the same queue, so the separate streams and
the aggregate see the same path; and the link carries the same bits.
"""

from __future__ import annotations

import pytest
from helpers import call, simulate, site, topology, trace, transfer

USERS, RATE_BPS = 8, 25e3
JUDGED = ["one_way_delay_s", "one_way_delay_p95_s", "jitter_s", "loss", "share_at_target", "share_below_min"]


def _run(streams):
    # A 2 Mbit/s uplink with a 40 ms line, an upload that saturates it from t = 5 s, and the users' streams.
    topo = topology(site("s", down_bps=20e6, up_bps=2e6, rtt_s=0.04), cloud_rtt_s=0.01)
    return simulate(topo, trace(transfer("s", 5.0, 30e6, "up", app="scanning", kind="scanning"), *streams),
                    horizon_s=600.0, bin_s=60.0)


def _stream(start_s: float, rate_bps: float) -> dict:
    return call("s", start_s, 300.0, target_bps=rate_bps, min_bps=rate_bps, app="clinical_system", up_share=0.4,
                far_end="cloud")


def test_one_aggregate_stream_sees_what_each_of_its_users_sees():
    separate = _run([_stream(0.0, RATE_BPS) for _ in range(USERS)])
    joined = _run([_stream(0.0, USERS * RATE_BPS)])
    users = separate.records[separate.records["app"] == "clinical_system"]
    (aggregate,) = joined.records[joined.records["app"] == "clinical_system"].itertuples(index=False)
    assert len(users) == USERS
    for column in JUDGED:
        assert users[column].tolist() == pytest.approx([getattr(aggregate, column)] * USERS, rel=1e-9, abs=1e-12)
    # The upload filled the uplink's buffer: the users' delay includes it (so the check above is not vacuous).
    assert aggregate.one_way_delay_p95_s > 0.4  # Cubic's standing queue: 0.8 x 0.6 s
    # The link carried the same bits either way.
    for direction in ("up", "down"):
        a = separate.links[separate.links["direction"] == direction]["utilisation"].to_numpy()
        b = joined.links[joined.links["direction"] == direction]["utilisation"].to_numpy()
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
