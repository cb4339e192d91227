"""Buffers per direction, in time at the line's rate: the catalogue, the topology, both engines' links, bad input.

Hand-worked figures: a time buffer holds ``seconds * rate_bps / 8`` bytes, the emulation's drop-tail queue is
``ceil(bytes / 1500)`` packets; the shipped profiles' buffers are topologies/access.yaml's (docs/sources.md S1).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import call, simulate, site, topology, trace, transfer

from sim import des, linkchanges, sweep
from sim.des.context import RunWindow
from sim.emu import linkplan
from sim.errors import ScenarioError
from sim.load import load
from sim.model.quantities import Buffer
from sim.topology import build

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "scenarios" / "ci-smoke.yaml"  # gp-adsl (ADSL2+), gp-fttc (FTTC 80/20 at 0.6 km), gp-fttp (330/50)


def test_a_time_buffer_is_that_many_seconds_at_the_rate_and_a_size_is_fixed():
    # 100 ms at 20 Mbit/s = 0.1 x 20e6 / 8 = 250,000 bytes -> ceil(250,000 / 1500) = 167 packets of 1500 B.
    assert Buffer.model_validate("100ms").bytes_at(20e6) == pytest.approx(250_000)
    assert linkplan.queue_pkts(Buffer.model_validate("100ms").bytes_at(20e6), 1500) == 167
    # 1 s at ADSL2+'s 1 Mbit/s uplink = 125,000 bytes (84 packets); 150KB is 150,000 bytes at any rate.
    assert Buffer.model_validate("1s").bytes_at(1e6) == pytest.approx(125_000)
    assert linkplan.queue_pkts(125_000, 1500) == 84
    assert Buffer.model_validate("150KB").bytes_at(1e6) == Buffer.model_validate("150KB").bytes_at(1e9) == 150_000


def test_the_topology_gives_each_site_its_buffers_at_its_own_rates():
    topo = build(load(SMOKE)).sites.set_index("site")
    # ADSL2+ 16/1 Mbit/s: up 1 s = 125,000 B; down 100 ms = 0.1 x 16e6 / 8 = 200,000 B.
    assert topo.loc["gp-adsl", ["buffer_up_bytes", "buffer_down_bytes"]].tolist() == pytest.approx([125_000, 200_000])
    # FTTC 80/20 derated at 0.6 km to 51 Mbit/s down, up 20 x 51/80 = 12.75 Mbit/s:
    # up 250 ms = 0.25 x 12.75e6 / 8 = 398,437.5 B; down 100 ms = 0.1 x 51e6 / 8 = 637,500 B.
    assert topo.loc["gp-fttc", ["buffer_up_bytes", "buffer_down_bytes"]].tolist() == pytest.approx([398_437.5,
                                                                                                    637_500])
    # FTTP 330/50: 50 ms each way = 312,500 B up, 2,062,500 B down.
    assert topo.loc["gp-fttp", ["buffer_up_bytes", "buffer_down_bytes"]].tolist() == pytest.approx([312_500,
                                                                                                    2_062_500])


def test_the_old_single_buffer_sets_both_directions_and_a_size_stays_a_size():
    scenario = load(SMOKE, {"catalogue.profiles.fttc_80_20.buffer": "150KB"})
    fttc = build(scenario).sites.set_index("site").loc["gp-fttc"]
    assert (fttc["buffer_up_bytes"], fttc["buffer_down_bytes"]) == (150_000, 150_000)
    one_way = load(SMOKE, {"catalogue.profiles.fttc_80_20.buffer_up": "100ms"}).catalogue.profiles["fttc_80_20"]
    assert (one_way.buffer_up.seconds, one_way.buffer_down.seconds) == (pytest.approx(0.1), pytest.approx(0.1))


def test_each_direction_of_a_des_link_and_of_the_emulation_plan_gets_its_own_buffer():
    topo = build(load(SMOKE))
    links, site_links = des._links(topo, RunWindow(0.0, 3600.0, 60.0))  # noqa: SLF001
    (up, *_), (down, *_) = site_links["gp-fttc"]
    assert (up.direction, up.buffer_bytes) == ("up", pytest.approx(398_437.5))
    assert (down.direction, down.buffer_bytes) == ("down", pytest.approx(637_500))
    plan = linkplan.plan(topo, ["gp-fttc", "gp-adsl"], "tb00aa", linkplan.EmuSettings(), "nfqueue")
    access = {link.site: link for link in plan.links if link.kind == "access"}
    # ceil(398,437.5 / 1500) = 266, ceil(637,500 / 1500) = 425; ADSL2+: 125,000 -> 84, 200,000 -> 134.
    assert (access["gp-fttc"].up.queue_pkts, access["gp-fttc"].down.queue_pkts) == (266, 425)
    assert (access["gp-adsl"].up.queue_pkts, access["gp-adsl"].down.queue_pkts) == (84, 134)
    # The patients' homes (patient_home, 69.4/18.4 Mbit/s, 100 ms each way): 230,000 B -> 154; 867,500 B -> 579.
    home = next(link for link in plan.links if link.kind == "home")
    assert (home.up.queue_pkts, home.down.queue_pkts) == (154, 579)


def test_a_shared_link_takes_its_buffers_at_its_own_rates_each_way():
    # The GPON tree (2.488/1.244 Gbit/s, 5 ms each way): 0.005 x 2.488e9 / 8 = 1,555,000 B down, 777,500 B up.
    topo = build(load(SMOKE, {"sites.2.aggregation": "gpon"}))
    (tree,) = topo.shared.values()
    assert (tree.buffer_down_bytes, tree.buffer_up_bytes) == (pytest.approx(1_555_000), pytest.approx(777_500))
    _, site_links = des._links(topo, RunWindow(0.0, 3600.0, 60.0))  # noqa: SLF001
    (_, shared_up), (_, shared_down) = site_links["gp-fttp"]
    assert (shared_up.kind, shared_up.buffer_bytes, shared_down.buffer_bytes) == \
        ("aggregation", pytest.approx(777_500), pytest.approx(1_555_000))


def test_a_backup_line_carries_its_own_profiles_buffers_at_its_own_rates():
    scenario = load(ROOT / "scenarios" / "fttc-failover.yaml")
    line, _ = linkchanges.backup_line(scenario, "4g_router")
    # backup_4g: 29.5/7.6 Mbit/s, 300 ms each way: 0.3 x 29.5e6 / 8 = 1,106,250 B down, 0.3 x 7.6e6 / 8 = 285,000 up.
    assert (line.buffer_down_bytes, line.buffer_up_bytes) == (pytest.approx(1_106_250), pytest.approx(285_000))
    table = linkchanges.failover("s", line, line, 10.0, 20.0, 1.0)
    assert table["buffer_up_bytes"].tolist() == pytest.approx([285_000] * 3)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_a_call_waits_behind_the_buffer_of_the_direction_a_transfer_fills(direction):
    # A 100 kbit/s call on a 1 Mbit/s line that way (10 Mbit/s the other way) while a 30 s transfer fills it: the call
    # sees Cubic's standing queue, 0.8 of the 50 kB buffer that way (33 packets, full share): 0.8 x 0.4 s = 0.32 s.
    # The other direction's buffer (1 MB) would make it 6.4 s.
    rates = {"up_bps": 1e6, "down_bps": 10e6} if direction == "up" else {"up_bps": 10e6, "down_bps": 1e6}
    buffers = {"buffer_bytes": 50_000, "buffer_down_bytes": 1e6} if direction == "up" else \
        {"buffer_bytes": 1e6, "buffer_down_bytes": 50_000}
    topo = topology(site("s", **rates, **buffers))
    size_bytes = 30.0 * 0.9e6 * 1448 / 1514 / 8
    stream = call("s", 0.0, 100.0, target_bps=100e3, min_bps=100e3, app="telephony", far_end="cloud")
    records = simulate(topo, trace(stream, transfer("s", 20.0, size_bytes, direction)), horizon_s=600.0).records
    assert records.set_index("app").loc["telephony", "one_way_delay_p95_s"] == pytest.approx(0.32, rel=1e-6)


def test_a_sweep_covers_a_buffer_as_times_or_sizes():
    axis = sweep.axis("catalogue.profiles.fttc_80_20.buffer_up", ["50ms", "250ms", "1s"])
    assert (axis.column, axis.values) == ("catalogue.profiles.fttc_80_20.buffer_up_s", (0.05, 0.25, 1.0))
    sizes = sweep.axis("catalogue.profiles.fttc_80_20.buffer_up", ["150KB", "1MB"])
    assert (sizes.column, sizes.values) == ("catalogue.profiles.fttc_80_20.buffer_up_bytes", (150e3, 1e6))
    points = sweep.variants(SMOKE, {"catalogue.profiles.fttc_80_20.buffer_up": ["50ms", "1s"]})
    ups = [build(s).sites.set_index("site").loc["gp-fttc", "buffer_up_bytes"] for _, s in points]
    assert ups == pytest.approx([0.05 * 12.75e6 / 8, 12.75e6 / 8])


# --- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "message"), [
    ("-5ms", "'-5ms' must be more than 0"),
    ("0ms", "'0ms' must be more than 0"),
    ("0KB", "'0KB' must be more than 0"),
    ("250", "250 has no unit: give a time at the line's rate ('200ms') or a size ('150KB')"),
    ("2parsecs", "'2parsecs' is not a buffer: give a time at the line's rate ('200ms') or a size ('150KB')"),
    ("20Mbps", "'20Mbps' is not a buffer: give a time at the line's rate ('200ms') or a size ('150KB')"),
    ("2min", "a buffer must be more than 0 and at most 60 (120.0 given)"),
])
def test_a_bad_buffer_in_a_catalogue_is_located_at_its_line(tmp_path, topologies_dir, value, message):
    access = _catalogue_with(tmp_path, topologies_dir, "    buffer_up: ", f"    buffer_up: {value}")
    with pytest.raises(ScenarioError) as caught:
        load(_scenario(tmp_path))
    assert str(caught.value).startswith(f"{access.resolve()}:{_line_of(access, value)} "
                                        f"catalogue.profiles.adsl_legacy.buffer_up: {message}")


def test_a_size_that_takes_over_a_minute_to_drain_at_a_sites_rate_is_refused():
    # 1 GB on ADSL2+'s 1 Mbit/s uplink: 1e9 x 8 / 1e6 = 8,000 s; 7 MB is 56 s, within the minute.
    with pytest.raises(ScenarioError) as caught:
        load(SMOKE, {"catalogue.profiles.adsl2plus.buffer_up": "1GB"})
    assert str(caught.value) == ("--set catalogue.profiles.adsl2plus.buffer_up: 8,000 s to drain at the 1Mbps of "
                                 "site group 'gp-adsl': a buffer holds at most 60 s of its line")
    assert load(SMOKE, {"catalogue.profiles.adsl2plus.buffer_up": "7MB"}).catalogue.profiles["adsl2plus"]


def test_a_size_that_takes_over_a_minute_to_drain_on_a_backup_line_is_refused():
    # A backup line runs at its profile's headline rates: 4G's uplink is 7.6 Mbit/s (access.yaml backup_4g).
    # 1 GB: 1e9 x 8 / 7.6e6 = 1,052.6 s; 40 MB: 40e6 x 8 / 7.6e6 = 42.1 s, within the minute. No site uses the
    # profile: the catalogue's backups (4g_router first) may be put on any site by a study or the planner.
    with pytest.raises(ScenarioError) as caught:
        load(SMOKE, {"catalogue.profiles.backup_4g.buffer_up": "1GB"})
    assert str(caught.value) == ("--set catalogue.profiles.backup_4g.buffer_up: 1,053 s to drain at the 7.6Mbps of "
                                 "backup '4g_router': a buffer holds at most 60 s of its line")
    assert load(SMOKE, {"catalogue.profiles.backup_4g.buffer_up": "40MB"}).catalogue.profiles["backup_4g"]


def test_the_cli_refuses_a_backup_buffer_too_long_to_drain_at_its_line_with_exit_2(tmp_path, topologies_dir):
    access = _catalogue_with(tmp_path, topologies_dir, "    buffer_up: ", "    buffer_up: 1GB", profile="backup_4g")
    done = subprocess.run([str(Path(sys.executable).parent / "testbed"), "validate", str(_scenario(tmp_path))],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    shown = " ".join((done.stdout + done.stderr).split())  # the terminal may wrap the message
    assert (f"{access.resolve()}:{_line_of(access, '1GB')} catalogue.profiles.backup_4g.buffer_up: 1,053 s to drain "
            "at the 7.6Mbps of backup '4g_router'") in shown
    assert "Traceback" not in done.stderr


def test_buffer_and_buffer_up_together_in_a_profile_are_refused(tmp_path, topologies_dir):
    access = _catalogue_with(tmp_path, topologies_dir, "    buffer_down: ", "    buffer: 150KB")
    with pytest.raises(ScenarioError) as caught:
        load(_scenario(tmp_path))
    assert "catalogue.profiles.adsl_legacy: " in str(caught.value)
    assert "give 'buffer' (both directions) or 'buffer_up' and 'buffer_down', not both" in str(caught.value)
    assert str(caught.value).startswith(str(access.resolve()))


def test_the_cli_refuses_a_bad_buffer_with_exit_2_and_no_traceback(tmp_path, topologies_dir):
    _catalogue_with(tmp_path, topologies_dir, "    buffer_up: ", "    buffer_up: -1s")
    done = subprocess.run([str(Path(sys.executable).parent / "testbed"), "validate", str(_scenario(tmp_path))],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "buffer_up: '-1s' must be more than 0" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def _catalogue_with(tmp_path, topologies_dir, first_line_starting: str, replacement: str,
                    profile: str = "adsl_legacy") -> Path:
    """A copy of the catalogue with ``profile``'s first line starting so replaced; returns its access.yaml."""
    shutil.copytree(topologies_dir, tmp_path / "cat")
    access = tmp_path / "cat" / "access.yaml"
    lines = access.read_text().splitlines()
    start = lines.index(f"  {profile}:")
    at = next(i for i in range(start, len(lines)) if lines[i].startswith(first_line_starting))
    lines[at] = replacement
    access.write_text("\n".join(lines) + "\n")
    return access


def _line_of(access: Path, value: str) -> int:
    return next(i + 1 for i, line in enumerate(access.read_text().splitlines()) if line.endswith(f": {value}"))


def _scenario(tmp_path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text('name: buffers\nyear: 2019\nwindow: {start: "08:00", end: "09:00"}\ncatalogue: cat\n'
                    "sites:\n  - {class: gp_small, count: 1, access: adsl2plus}\n")
    return path
