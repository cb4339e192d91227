"""The stall probe (sim.emu.stall) and what the health judgement makes of it, by hand arithmetic.

A probe outranks every task on its CPU, so a late wake-up measures a CPU taken from the whole machine. A refusal
names a stalled machine as the likely cause only when every failure is one a stall makes (a late release, a queue
that overflowed) in an interval a probe woke ``late_s`` (5 ms) or more late; any other failure stays a link's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sim.emu import health, stall
from sim.emu.health import Interval, Thresholds

TH = Thresholds()
EMPTY = [0] * (len(health.LATENESS_EDGES_S) + 1)


def _counts(**bucket_counts: int) -> list[int]:
    """A cumulative histogram with ``b<k>=n``: n wake-ups in bucket k (upper edge LATENESS_EDGES_S[k])."""
    counts = list(EMPTY)
    for name, n in bucket_counts.items():
        counts[int(name[1:])] = n
    return counts


def test_the_probe_and_the_judge_share_the_shims_histogram():
    assert stall.LATENESS_EDGES_S == health.LATENESS_EDGES_S


def test_a_probe_counts_each_wake_up_in_its_bucket_and_keeps_the_latest():
    probe = stall.Probe(0, 0.002, None)
    for lateness_s in (0.00005, 0.0002, 0.0003, 0.007, 2.5):  # an edge belongs to the bucket it closes
        probe.note(lateness_s)
    assert probe.counts == _counts(b0=2, b1=1, b5=1, b12=1) and probe.max_s == 2.5


def test_the_stall_of_an_interval_is_the_lower_edge_of_its_latest_wake_up():
    before = _counts(b0=1000, b6=1)  # a 10-20 ms stall before the interval does not count in it
    assert health.stall_s(before, _counts(b0=6000, b6=1)) == 0.0
    assert health.stall_s(before, _counts(b0=6000, b3=4, b6=1)) == 0.001  # 1-2 ms late: at least 1 ms
    assert health.stall_s(before, _counts(b0=6000, b3=4, b7=1, b6=1)) == 0.020  # 20-50 ms late
    assert health.stall_s(EMPTY, EMPTY) == 0.0


def test_the_stall_row_is_reported_per_cpu_and_never_judged():
    interval = Interval(1, 8 * 3600 + 10.0, 10.0)
    found = health.judge_stall(interval, {0: EMPTY, 1: EMPTY}, {0: _counts(b0=5000, b2=3), 1: _counts(b6=1)}, TH)
    assert found["check"] == "machine_stall_s" and found["link"] == health.HOST and found["ok"]
    assert found["measured"] == 0.010 and found["limit"] == TH.late_s
    assert found["detail"].endswith("(ms): CPU 0 0.5, CPU 1 10")
    assert health.judge_stall(interval, {}, {0: EMPTY}, TH) is None  # no probe read twice: nothing to report


def _late_shim(interval: Interval, link: str = "access:gp-fttp") -> dict:
    # 1,000 releases of which 12 later than 5 ms: 1.2% against the 1% allowed
    return health.judge_shim(interval, link, "down", EMPTY, _counts(b0=988, b5=12), TH)


def _stalled(interval: Interval, bucket: int) -> dict:
    counts = _counts(b0=5000)
    counts[bucket] += 1
    return health.judge_stall(interval, {0: EMPTY}, {0: counts}, TH)


def test_late_releases_in_an_interval_the_machine_stalled_blame_the_machine():
    first, second = Interval(0, 0.0, 10.0), Interval(1, 10.0, 10.0)
    late = _late_shim(first)
    assert not late["ok"] and late["measured"] == pytest.approx(0.012)
    rows = [late, _stalled(first, 6), _stalled(second, 7)]  # 10-20 ms in the failed interval
    message = health.refusal(rows)
    assert "Likely cause: the machine stalled" in message
    assert "(ms): CPU 0 10; limit 5 ms" in message  # the failed interval's stall, not the other's 20 ms
    assert health.affected_sites(rows, ["gp-fttp", "gp-adsl"]) == ["gp-fttp"]  # still refused: its delay was wrong


def test_failures_a_stall_does_not_explain_stay_a_links():
    first, second = Interval(0, 0.0, 10.0), Interval(1, 10.0, 10.0)
    short = [_late_shim(first), _stalled(first, 4)]  # the probe woke at most 2-5 ms late: less than late_s
    assert "Likely cause: not CPU" in health.refusal(short)
    elsewhere = [_late_shim(first), _stalled(first, 0), _stalled(second, 8)]  # the stall came in another interval
    assert "Likely cause: not CPU" in health.refusal(elsewhere)
    shaper = health.row(first, "access:gp-fttc", "down", "shaper_delivered_share", 0.5, 0.9, False)
    mixed = [_late_shim(first), shaper, _stalled(first, 8)]  # a shaper that delivered half: never the machine's
    assert "Likely cause: not CPU" in health.refusal(mixed)
    assert "Likely cause: not CPU" in health.refusal([_late_shim(first)])  # no probe at all


def test_a_real_probe_wakes_on_schedule_writes_its_state_and_ends_on_sigterm(tmp_path):
    state = tmp_path / "stall0.json"
    cpu = min(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-I", "-S", stall.__file__, "--cpu", str(cpu), "--period", "0.01",
                             "--state", str(state)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    found = json.loads(state.read_text())
    assert found["cpu"] == cpu and tuple(found["lateness_edges_s"]) == health.LATENESS_EDGES_S
    # one wake-up each 10 ms for at least the 0.5 s slept: about 50 (a stall restarts the schedule: fewer, not more)
    assert 35 <= sum(found["lateness_counts"]) <= 1000
    latest = max(k for k, n in enumerate(found["lateness_counts"]) if n)  # the largest lateness is in the latest bucket
    assert health.stall_s(EMPTY, found["lateness_counts"]) <= found["lateness_max_s"]
    assert latest == len(health.LATENESS_EDGES_S) or found["lateness_max_s"] <= health.LATENESS_EDGES_S[latest]
