"""The availability study's replay on the backup, run in shards for a large scenario, gives what one process gives."""

from __future__ import annotations

import pandas as pd

from sim import backup_windows, scale, topology
from sim.load import load
from sim.model.faults import Backup


def test_a_sharded_backup_day_gives_the_single_process_verdicts(tmp_path, monkeypatch):
    path = tmp_path / "year.yaml"
    path.write_text('name: year-shards\nwindow: {start: "08:00", end: "09:00"}\ndrain: 30min\nyear: 2019\n'
                    "load: {gp_video_share: 25%}\nsites:\n  - {class: gp_medium, count: 3, access: adsl2plus}\n"
                    "  - {class: gp_small, count: 3, access: fttc_80_20, distance: 0.6km}\n")
    scenario = load(path)
    slow = Backup(label="slow", kind="line", profile="adsl_legacy", failover="1min")  # 1 Mbit/s / 256 kbit/s
    cat = scenario.catalogue.model_copy(update={"backups": {**scenario.catalogue.backups, "slow": slow}})
    scenario = scenario.model_copy(update={"catalogue": cat})
    alone = backup_windows.replay(scenario, 5, "slow")
    assert not scale.wants_cluster(backup_windows.on_backup(scenario, "slow"))  # so that one ran in one process

    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 30)  # a "large" scenario now: shards of a site or two
    monkeypatch.setattr(backup_windows, "BACKUP_WORKERS", 0)  # the shards one after another, in this process
    monkeypatch.setattr(backup_windows, "MIN_SITE_WINDOWS", 3)  # no top-up replay: the scenario's own window only
    swapped = backup_windows.on_backup(scenario, "slow")
    assert scale.wants_cluster(swapped) and scale.shard_count(swapped, topology.build(swapped)) >= 3
    sharded = backup_windows.replay(scenario, 5, "slow")
    assert sharded["windows"].sum() < alone["windows"].sum()  # only the 6 sites' own windows, no top-up
    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 10**9)  # one process again, the same 6 windows
    pd.testing.assert_frame_equal(sharded, backup_windows.replay(scenario, 5, "slow"))
    video = sharded[sharded["app"] == "video"]
    assert (video["failing"] == video["windows"]).all()  # 256 kbit/s up: no call passes
    assert set(sharded["site_class"]) == {"gp_medium", "gp_small"} and (sharded["windows"] <= 3).all()
