"""The availability study's backup day, run in shards for a large scenario, gives what one process gives."""

from __future__ import annotations

import pandas as pd

from sim import availability, scale, topology
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
    alone = availability.backup_day(scenario, 5, "slow")
    assert not scale.wants_cluster(availability.on_backup(scenario, "slow"))  # so that one ran in one process

    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 30)  # a "large" scenario now: shards of a site or two
    monkeypatch.setattr(availability, "BACKUP_WORKERS", 0)  # the shards one after another, in this process
    swapped = availability.on_backup(scenario, "slow")
    assert scale.wants_cluster(swapped) and scale.shard_count(swapped, topology.build(swapped)) >= 3
    sharded = availability.backup_day(scenario, 5, "slow")
    works, share = alone
    assert not works["video"].any() and works.to_numpy().any()  # 256 kbit/s up: no call passes; other apps do
    pd.testing.assert_frame_equal(sharded[0], works)
    pd.testing.assert_frame_equal(sharded[1], share)
