"""Unit strings -> SI floats, and the loader's located errors (``file:line path: message``).

Every expected value and line number below is worked out by hand from the unit tables in the docs
(SI prefixes; KiB/MiB/GiB binary) and from the small files each test writes; none is copied from a run.
"""

from __future__ import annotations

import math
import shutil

import pytest
from typer.testing import CliRunner

from sim import topology, units, workload
from sim.cli import app
from sim.errors import ScenarioError
from sim.load import load

runner = CliRunner()
RATE_UNITS = "bps, kbps, Kbps, Mbps, Gbps, Tbps, bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s"
TIME_UNITS = "us, ms, s, min, h, d"

# A valid scenario; the comments give each line's number, which the expected errors below rely on.
GOOD = (
    "name: unit-test\n"                            # 1
    'window: {start: "08:00", end: "09:00"}\n'     # 2
    "sites:\n"                                     # 3
    "  - class: gp_medium\n"                       # 4
    "    count: 2\n"                               # 5
    "    access: adsl2plus\n"                      # 6
    "  - class: gp_small\n"                        # 7
    "    count: 1\n"                               # 8
    "    access: fttc_80_20\n"                     # 9
    "    distance: 1.2km\n"                        # 10
    "year: 2019\n"                                 # 11: the volumes of 2019 (topologies/sites.yaml, S14)
)                                                  # anything appended starts on line 12


def edit(old: str, new: str) -> str:
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


def error_of(tmp_path, text: str | bytes, name: str = "bad.yaml") -> tuple[str, str]:
    """Write ``text`` to a scenario file and return (its path, the message ``load`` raises for it)."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(ScenarioError) as caught:
        load(path)
    return str(path), str(caught.value)


# --- unit strings ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "kind", "si"), [
    ("80Mbps", "rate", 80_000_000), ("256kbps", "rate", 256_000), ("256Kbps", "rate", 256_000),
    ("1.5Gbps", "rate", 1_500_000_000), ("1Tbps", "rate", 1e12), ("500bps", "rate", 500),
    ("1e3kbps", "rate", 1_000_000), ("12 Mbps", "rate", 12_000_000),
    ("80Mbit/s", "rate", 80_000_000), ("12 Mbit/s", "rate", 12_000_000), ("256kbit/s", "rate", 256_000),
    ("1.5Gbit/s", "rate", 1_500_000_000), ("1Tbit/s", "rate", 1e12), ("500bit/s", "rate", 500),
    ("150KB", "size", 150_000), ("150kB", "size", 150_000), ("1200B", "size", 1200), ("4.5MB", "size", 4_500_000),
    ("250MB", "size", 250_000_000), ("1GB", "size", 1e9), ("1KiB", "size", 1024), ("1MiB", "size", 1_048_576),
    ("1.5GiB", "size", 1_610_612_736),
    ("20ms", "time", 0.020), (" 20ms ", "time", 0.020), ("1.5s", "time", 1.5), ("250us", "time", 0.000_25),
    ("9.24min", "time", 554.4), ("6h", "time", 21_600), ("1d", "time", 86_400),
    ("1.2km", "distance", 1200), ("0.6km", "distance", 600), ("600m", "distance", 600),
    ("1%", "fraction", 0.01), ("53.5%", "fraction", 0.535), ("95%", "fraction", 0.95), ("0%", "fraction", 0.0),
    ("0.25", "fraction", 0.25),
    (0.25, "fraction", 0.25), (1, "fraction", 1.0),
])
def test_unit_strings_parse_to_si(text, kind, si):
    assert units.parse(text, kind) == pytest.approx(si, rel=1e-12, abs=0)


def test_a_percentage_is_exact_so_19_of_20_meets_a_95_percent_bar():
    assert units.parse("95%", "fraction") == 0.95 and 19 / 20 >= units.parse("95%", "fraction")


@pytest.mark.parametrize(("text", "share"), [("95%", 0.95), ("0.95", 0.95), (" 90% ", 0.9), ("100%", 1.0),
                                              ("1", 1.0), (0.5, 0.5), ("0.1%", 0.001)])
def test_a_share_is_a_fraction_or_a_percentage(text, share):
    assert units.parse_share(text) == share


@pytest.mark.parametrize(("text", "message"), [
    ("95", "'95' is not a share in (0, 1]: write a fraction such as 0.95 or a percentage such as 95%; did you mean "
           "'95%'?"),
    ("150%", "'150%' is not a share in (0, 1]: write a fraction such as 0.95 or a percentage such as 95%"),
    ("0", "'0' is not a share in (0, 1]: write a fraction such as 0.95 or a percentage such as 95%"),
    ("-5%", "'-5%' is not a share in (0, 1]: write a fraction such as 0.95 or a percentage such as 95%"),
    ("ninety", "'ninety' is not a fraction (try '25%')"),
])
def test_a_bad_share_is_refused_naming_it(text, message):
    with pytest.raises(ValueError) as caught:
        units.parse_share(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("given", ["95%", "0.95"])
def test_the_plan_share_option_takes_a_percentage_or_a_fraction(scenarios_dir, given):
    import typer.main
    command = typer.main.get_command(app).commands["plan"]
    ctx = command.make_context("plan", [str(scenarios_dir / "ci-smoke.yaml"), "--target-share", given])
    assert ctx.params["target_share"] == 0.95
    assert command.make_context("plan", [str(scenarios_dir / "ci-smoke.yaml")]).params["target_share"] == 0.95


def test_a_bare_95_share_on_the_command_line_exits_2_saying_what_it_may_mean(scenarios_dir, tmp_path):
    result = runner.invoke(app, ["plan", str(scenarios_dir / "ci-smoke.yaml"), "--target-share", "95",
                                 "--out", str(tmp_path), "--workers", "0", "--no-png"])
    assert result.exit_code == 2 and "did you mean '95%'?" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def test_a_scenario_may_write_rates_in_mbit_per_second(tmp_path):
    (tmp_path / "s.yaml").write_text(GOOD)
    plain = load(tmp_path / "s.yaml", {"catalogue.profiles.adsl2plus.up": "1.25Mbps"})
    spelled = load(tmp_path / "s.yaml", {"catalogue.profiles.adsl2plus.up": "1.25 Mbit/s"})
    assert spelled.catalogue.profiles["adsl2plus"].up == plain.catalogue.profiles["adsl2plus"].up == 1_250_000


def test_kilobytes_are_decimal_and_kibibytes_binary():
    assert units.parse("150KB", "size") == 150_000 != units.parse("150KiB", "size") == 153_600


@pytest.mark.parametrize(("value", "kind", "message"), [
    (80, "rate", "80 has no unit; a rate needs one (try '80Mbps')"),
    (20, "time", "20 has no unit; a time needs one (try '20ms')"),
    (1.5, "size", "1.5 has no unit; a size needs one (try '1.5MB')"),
    ("80", "rate", f"'80' is not a rate: unknown unit '' (units: {RATE_UNITS}; try '80Mbps')"),
    ("80Mbit", "rate", "'80Mbit' is not a rate (try '80Mbit/s')"),
    ("80Mb/s", "rate", "'80Mb/s' is not a rate (try '80Mbit/s')"),
    ("10MB/s", "rate", "'10MB/s' is bytes a second; a rate is in bits (try '80Mbit/s')"),
    ("10MBps", "rate", "'10MBps' is bytes a second; a rate is in bits (try '80Mbit/s')"),
    ("2kB/s", "rate", "'2kB/s' is bytes a second; a rate is in bits (try '16kbit/s')"),
    ("1KiB/s", "rate", "'1KiB/s' is bytes a second; a rate is in bits (try '8.192kbit/s')"),
    ("80mbps", "rate", f"'80mbps' is not a rate: unknown unit 'mbps' (units: {RATE_UNITS}; try '80Mbps')"),
    ("80Mbps/s", "rate", "'80Mbps/s' is not a rate (try '80Mbps')"),
    ("20ms", "rate", f"'20ms' is a time, not a rate (units: {RATE_UNITS}; try '80Mbps')"),
    ("1%", "rate", f"'1%' is a fraction, not a rate (units: {RATE_UNITS}; try '80Mbps')"),
    ("1m", "time", f"'1m' is a distance, not a time (units: {TIME_UNITS}; try '20ms')"),
    ("150KB", "distance", "'150KB' is a size, not a distance (units: m, km; try '1.2km')"),
    ("1e400Mbps", "rate", "'1e400Mbps' is not a finite rate (try '80Mbps')"),
    ("nanMbps", "rate", "'nanMbps' is not a rate (try '80Mbps')"),
    (math.nan, "fraction", "nan is not a finite fraction (try '25%')"),
    (math.inf, "fraction", "inf is not a finite fraction (try '25%')"),
    (True, "fraction", "True is not a fraction (try '25%')"),
    (False, "rate", "False is not a rate (try '80Mbps')"),
    (None, "size", "None is not a size (try '250MB')"),
    (["1ms"], "time", "['1ms'] is not a time (try '20ms')"),
    ("", "rate", "'' is not a rate (try '80Mbps')"),
    ("Mbps", "rate", "'Mbps' is not a rate (try '80Mbps')"),
    ("1.2.3km", "distance", "'1.2.3km' is not a distance (try '1.2km')"),
    ("1,5Mbps", "rate", "'1,5Mbps' is not a rate (try '80Mbps')"),
])
def test_bad_quantities_are_rejected_naming_the_value(value, kind, message):
    with pytest.raises(ValueError) as caught:
        units.parse(value, kind)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "seconds"), [
    ("08:30", 30_600), ("8:30", 30_600), ("18:30", 66_600), ("00:00", 0), ("24:00", 86_400), ("08:30:15", 30_615),
])
def test_clock_times_are_seconds_since_midnight(text, seconds):
    assert units.parse_clock(text) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("24:01", "'24:01' is not a time of day between '00:00' and '24:00'"),
    ("08:60", "'08:60' is not a time of day between '00:00' and '24:00'"),
    ("8", "'8' is not a time of day (try '08:30'; quote it in YAML)"),
    (510, "510 is not a time of day (try '08:30'; quote it in YAML)"),
])
def test_bad_clock_times_are_rejected(value, message):
    with pytest.raises(ValueError) as caught:
        units.parse_clock(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(("bps", "text"), [(1.5e6, "1.5Mbps"), (256e3, "256kbps"), (80e6, "80Mbps"),
                                           (1e9, "1Gbps"), (500, "500bps")])
def test_rates_format_the_way_scenarios_write_them_and_parse_back(bps, text):
    assert units.format_rate(bps) == text
    assert units.parse(text, "rate") == pytest.approx(bps, rel=1e-12)


# --- a valid scenario, merged with the catalogue -----------------------------------------------------------------

def test_a_scenario_loads_with_its_units_converted_and_its_targets_merged(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(
        "name: unit-test\n"
        "window: {start: '08:30', end: 18:30}\n"   # unquoted 18:30 must stay a clock time, not base-60 1110
        "drain: 90min\n"
        "utilisation_bin: 30s\n"
        "load: {gp_video_share: 2.5%, volume_scale: 2}\n"
        "sites:\n"
        "  - {class: gp_medium, count: 2, access: adsl2plus}\n"
        "  - {class: gp_small, count: 1, access: fttc_80_20, distance: 1.2km, name: gp-x}\n"
        "targets:\n"
        "  streams: {video: {share_at_target: 90%}}\n"
        "  transfers: {gp2gp: 2min}\n"
        "year: 2024\n")
    s = load(path)
    assert (s.window.start, s.window.end, s.drain, s.utilisation_bin) == (30_600, 66_600, 5_400, 30)
    assert s.load.gp_video_share == pytest.approx(0.025) and s.load.volume_scale == 2.0
    assert s.load.outpatient_remote_share == 0.25  # 2024's (topologies/sites.yaml volumes_by_year, S14), not given
    assert [(g.site_class, g.count, g.access, g.distance, g.name) for g in s.sites] == [
        ("gp_medium", 2, "adsl2plus", None, None), ("gp_small", 1, "fttc_80_20", pytest.approx(1200), "gp-x")]
    # Overridden targets, and targets.yaml's defaults for the rest (video loss 1%, p95 delay 150ms, urgent 2min).
    video_targets = s.targets.streams["video"]
    assert video_targets.share_at_target == pytest.approx(0.9) and s.targets.transfers["gp2gp"] == 120
    assert video_targets.loss == pytest.approx(0.01) and video_targets.delay_p95 == pytest.approx(0.150)
    assert s.targets.transfers["image_urgent"] == 120 and s.targets.link.busy_hour_utilisation == pytest.approx(0.75)
    # The catalogue's unit strings (topologies/access.yaml, sites.yaml), in SI.
    adsl = s.catalogue.profiles["adsl2plus"]
    assert (adsl.down, adsl.up, adsl.rtt) == (16e6, 1e6, pytest.approx(0.045))
    assert (adsl.buffer_up.seconds, adsl.buffer_down.seconds) == (pytest.approx(1.0), pytest.approx(0.1))  # 1s, 100ms
    assert s.catalogue.profiles["fttc_80_20"].rates_at(1200.0)[0] == pytest.approx(24.5e6)  # its 1.2km point
    video = s.catalogue.apps["video"].rate
    assert (video.target, video.minimum, video.packet) == (1.5e6, 350e3, 1200)
    assert s.catalogue.gp2gp.chunk == 4.5e6 and s.catalogue.gp2gp.attachments.max == 929e6
    assert s.catalogue.day_profiles["clinic"].hours[8] == pytest.approx(0.15)


# --- located errors ----------------------------------------------------------------------------------------------

LOCATED = {  # id: (file text, expected message after "<file>:")
    "misspelt site key": (edit("    access: adsl2plus", "    acess: adsl2plus"),
                          "6 sites[0].acess: unknown key 'acess'; did you mean 'access'?"),
    "misspelt top key": (edit("window:", "windo:"),
                         "2 windo: unknown key 'windo'; did you mean 'window'?"),
    "capitalised key": (GOOD + "Drain: 1h\n", "12 Drain: unknown key 'Drain'; did you mean 'drain'?"),
    "misspelt load key": (GOOD + "load:\n  gp_video_shares: 5%\n",
                          "13 load.gp_video_shares: unknown key 'gp_video_shares'; did you mean 'gp_video_share'?"),
    "misspelt target": (GOOD + "targets:\n  streams:\n    video:\n      share_at_targt: 90%\n",
                        "15 targets.streams.video.share_at_targt: unknown key 'share_at_targt'; "
                        "did you mean 'share_at_target'?"),
    "target of an unknown app": (GOOD + "targets:\n  transfers:\n    record_veiw: 5s\n",
                                 "14 targets.transfers.record_veiw: unknown app 'record_veiw'; "
                                 "did you mean 'record_view'?"),
    "stream target under transfers": (GOOD + "targets:\n  transfers:\n    telephony: 5s\n",
                                      "14 targets.transfers.telephony: app 'telephony' is a stream: its target "
                                      "belongs under streams"),
    "key like no other": (edit("    count: 1\n", "    count: 1\n    zzz: 1\n"),
                          "9 sites[1].zzz: unknown key 'zzz'; allowed keys: access, aggregation, backup, class, "
                          "count, distance, id, name, region"),
    "unknown profile": (edit("access: adsl2plus", "access: adsl2plu"),
                        "6 sites[0].access: unknown profile 'adsl2plu'; did you mean 'adsl2plus'?"),
    "unknown site class": (edit("class: gp_small", "class: gp_smal"),
                           "7 sites[1].class: unknown site class 'gp_smal'; did you mean 'gp_small'?"),
    "unknown aggregation": (edit("    access: adsl2plus\n", "    access: adsl2plus\n    aggregation: gpn\n"),
                            "7 sites[0].aggregation: unknown aggregation 'gpn'; did you mean 'gpon'?"),
    "distance without derating": (edit("    access: adsl2plus\n", "    access: fttp_330_50\n    distance: 1km\n"),
                                  "7 sites[0].distance: profile 'fttp_330_50' has no derating by distance; "
                                  "remove 'distance'"),
    "distance beyond the product's reach": (
        edit("    access: adsl2plus\n", "    access: gfast_330_50\n    distance: 4.5km\n"),
        "7 sites[0].distance: profile 'gfast_330_50' is not sold on lines beyond 0.5 km (this one is 4.5 km): "
        "choose another access, or see `testbed plan` for what is sold there"),
    "count not a number": (edit("count: 2", "count: two"), "5 sites[0].count: 'two' is not a whole number"),
    "count zero": (edit("count: 2", "count: 0"), "5 sites[0].count: 0 is not between 1 and 100000"),
    "distance without unit": (edit("distance: 1.2km", "distance: 1.2"),
                              "10 sites[1].distance: 1.2 has no unit; a distance needs one (try '1.2km')"),
    "negative distance": (edit("distance: 1.2km", "distance: -1km"), "10 sites[1].distance: '-1km' must be 0 or more"),
    "negative drain": (GOOD + "drain: -1h\n", "12 drain: '-1h' must be more than 0"),
    "drain as a rate": (GOOD + "drain: 20Mbps\n",
                        f"12 drain: '20Mbps' is a rate, not a time (units: {TIME_UNITS}; try '20ms')"),
    "infinite drain": (GOOD + "drain: 1e400s\n", "12 drain: '1e400s' is not a finite time (try '20ms')"),
    "boolean drain": (GOOD + "drain: yes\n", "12 drain: True is not a time (try '20ms')"),
    "share over 100%": (GOOD + "load:\n  gp_video_share: 150%\n",
                        "13 load.gp_video_share: '150%' is not a share between 0% and 100%"),
    "share nan": (GOOD + "load:\n  gp_video_share: .nan\n",
                  "13 load.gp_video_share: nan is not a finite fraction (try '25%')"),
    "clock past midnight": (edit('start: "08:00"', 'start: "25:00"'),
                            "2 window.start: '25:00' is not a time of day between '00:00' and '24:00'"),
    "duplicate key": (GOOD + "name: again\n", "12: key 'name' is given twice"),
    "duplicate nested key": (edit("    count: 2\n", "    count: 2\n    count: 3\n"),
                             "6 sites[0]: key 'count' is given twice"),
    "python tag": (edit("name: unit-test", "name: !!python/name:os.system unit"),
                   "1 name: tag 'tag:yaml.org,2002:python/name:os.system' is not allowed; write plain values"),
    "local tag": (GOOD + "seed: !Ref 3\n", "12 seed: tag '!Ref' is not allowed; write plain values"),
    "tag on a mapping": (edit("window: {", "window: !!python/object:sim.model.scenario.Window {"),
                         "2 window: tag 'tag:yaml.org,2002:python/object:sim.model.scenario.Window' is not allowed; "
                         "write plain values"),
    "tab": (edit("    count: 2", "\tcount: 2"), "5: not valid YAML: found character '\\t' that cannot start any token"),
    "colon in a plain value": (GOOD + "description: a: b\n", "12: not valid YAML: mapping values are not allowed here"),
    "empty": ("", "1: the file is empty"),
    "comments only": ("# nothing yet\n\n", "1: the file is empty"),
    "a list": ("- name: a\n", "1: a scenario is a mapping of keys (name, window, sites, ...)"),
    "nested too deeply": (GOOD + "description: " + "[" * 3000 + "]" * 3000 + "\n",
                          "12: not valid YAML: nested too deeply"),
    "catalogue not a path": (GOOD + "catalogue: 3\n", "12 catalogue: catalogue must be a folder path"),
}


@pytest.mark.parametrize("case", LOCATED)
def test_bad_scenarios_fail_with_the_file_line_path_and_message(tmp_path, case):
    text, expected = LOCATED[case]
    path, message = error_of(tmp_path, text)
    assert message == f"{path}:{expected}"


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path):
    path, message = error_of(tmp_path, b"name: caf\xe9\n")  # "name: caf" is 9 bytes: the bad one is byte 9
    assert message == f"{path}: not UTF-8 text (byte 9); is this a YAML file?"


def test_a_tag_never_runs_anything(tmp_path):
    flag = tmp_path / "pwned"
    path, message = error_of(tmp_path, GOOD + f'description: !!python/object/apply:os.system ["touch {flag}"]\n')
    assert message == (f"{path}:12 description: tag 'tag:yaml.org,2002:python/object/apply:os.system' is not "
                       "allowed; write plain values")
    assert not flag.exists()


def test_a_number_too_long_for_python_is_a_located_error(tmp_path):
    path, message = error_of(tmp_path, GOOD + "seed: " + "9" * 5000 + "\n")
    assert message.startswith(f"{path}:12 seed: cannot read '{'9' * 40}' (")
    assert message.endswith("; quote it to make it text")


def test_an_impossible_date_is_a_located_error(tmp_path):
    path, message = error_of(tmp_path, GOOD + "description: 2024-13-45\n")  # YAML 1.1 reads it as a date
    assert message.startswith(f"{path}:12 description: cannot read '2024-13-45' (")


def test_a_key_with_a_newline_keeps_the_message_on_one_line(tmp_path):
    path, message = error_of(tmp_path, GOOD + '"a\\nb": 1\n')
    assert message.startswith(f"{path}:12 'a\\nb': unknown key 'a\\nb'; allowed keys: ")
    assert "\n" not in message


def test_aliases_that_expand_exponentially_are_refused_quickly(tmp_path):
    # Six levels of ten aliases each would expand to 10**6 values ("billion laughs" in small).
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7))
    path, message = error_of(tmp_path, GOOD + bomb)
    assert message.startswith(f"{path}:") and "more than 100,000 values" in message


@pytest.mark.parametrize("folder", ["nowhere", ".", "a\\0b"])
def test_a_catalogue_folder_without_the_catalogue_is_located_at_the_scenario_line(tmp_path, folder):
    path, message = error_of(tmp_path, GOOD + f'catalogue: "{folder}"\n')
    assert message.startswith(f"{path}:12 catalogue: no catalogue folder at ")
    if folder != "a\\0b":
        assert message == (f"{path}:12 catalogue: no catalogue folder at {(tmp_path / folder).resolve()} "
                           "(one with access.yaml, sites.yaml and targets.yaml)")


def test_an_error_in_a_scenarios_own_catalogue_names_that_catalogue_file(tmp_path, topologies_dir):
    shutil.copytree(topologies_dir, tmp_path / "cat")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(GOOD + "catalogue: cat\n")
    assert load(scenario).catalogue == load(_write(tmp_path / "default.yaml", GOOD)).catalogue

    access = tmp_path / "cat" / "access.yaml"
    lines = access.read_text().splitlines()
    start = lines.index("  adsl2plus:")
    down = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("down:"))
    lines[down] = "    down: 16Mbs"
    access.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError) as caught:
        load(scenario)
    assert str(caught.value) == (f"{access.resolve()}:{down + 1} catalogue.profiles.adsl2plus.down: '16Mbs' is not a "
                                 f"rate: unknown unit 'Mbs' (units: {RATE_UNITS}; try '80Mbps')")


def _write(path, text):
    path.write_text(text)
    return path


# gp_medium in 2019 (topologies/sites.yaml volumes_by_year, apps.yaml): 200 consultations a day, each with one record
# view and a 0.5% video share; GP2GP off the line (hosted); 380 calls; 33 scans; 0.15 Teams meetings and 0.057 updates
# per member of its 24 staff; the clinical system and Microsoft 365 as one aggregate stream in each of the 10 hours of
# the working day: 200 * 1.005 + 380 + 33 + 24 * (0.15 + 0.057) + 2 * 10 = 638.968 sessions a site a day.
GP_MEDIUM_PER_DAY = 200 * 1.005 + 380 + 33 + 24 * (0.15 + 0.057) + 2 * 10


def test_a_scenario_without_a_year_is_refused_at_its_file(tmp_path):
    path, message = error_of(tmp_path, GOOD.replace("year: 2019\n", ""))
    assert message == (f"{path}:1 year: a scenario states the year of its volumes: add 'year: <year>' (years with "
                       "published volumes: 2019, 2024)")
    path, message = error_of(tmp_path, GOOD.replace("year: 2019\n", "year:\n"))
    assert message.startswith(f"{path}:11 year: a scenario states the year of its volumes")


def test_a_scenario_over_the_session_limit_is_refused(tmp_path):
    text = "name: too-big\nwindow: {start: '08:00', end: '09:00'}\nsites:\n" \
           "  - {class: gp_medium, count: 100000, access: adsl2plus}\nyear: 2019\n"
    path, message = error_of(tmp_path, text)   # 100,000 * 638.968 = 63,896,800 sessions > 20,000,000
    assert message == (f"{path}:3 sites: this scenario would generate about 63,896,800 sessions, more than the "
                       "20,000,000 one run can hold; reduce counts, volume_scale or the window")


def test_a_scenario_under_the_session_limit_loads(tmp_path):
    path = _write(tmp_path / "big.yaml", "name: big\nwindow: {start: '08:00', end: '09:00'}\nsites:\n"
                                         "  - {class: gp_medium, count: 29000, access: adsl2plus}\nyear: 2019\n")
    scenario = load(path)   # 29,000 * 638.968 = 18,530,072 sessions, under the limit
    assert workload.expected_sessions(scenario) == pytest.approx(29_000 * GP_MEDIUM_PER_DAY)
    assert 29_000 * GP_MEDIUM_PER_DAY == pytest.approx(18_530_072)


# --- the command line --------------------------------------------------------------------------------------------

def test_validate_exits_2_with_one_located_line_and_no_traceback(tmp_path):
    bad = _write(tmp_path / "bad.yaml", edit("window:", "windo:"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"error: {bad}:2 windo: unknown key 'windo'; did you mean 'window'?"]  # not 'window' missing too


def test_validate_lists_every_problem_located_and_counts_no_knock_on(tmp_path):
    # A bad count drops its group, so 'sites' is also too short: that is no second problem. Three real ones are
    # each named at their line, the first saying how many follow; run and check list them the same way.
    one = _write(tmp_path / "one.yaml", edit("count: 2", "count: -1"))
    result = runner.invoke(app, ["validate", str(one)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"error: {one}:5 sites[0].count: -1 is not between 1 and 100000"]
    three = _write(tmp_path / "three.yaml", edit("count: 2", "count: -1").replace("distance: 1.2km", "distance: -1km")
                   + "load:\n  gp_video_share: -5%\n")
    for command in (["validate"], ["check"], ["run", "--out", str(tmp_path / "out")]):
        result = runner.invoke(app, [command[0], str(three), *command[1:]])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert result.output.strip().splitlines() == [  # in the file's order
            f"error: {three}:5 sites[0].count: -1 is not between 1 and 100000 (and 2 more problems)",
            f"error: {three}:10 sites[1].distance: '-1km' must be 0 or more",
            f"error: {three}:13 load.gp_video_share: '-5%' is not a share between 0% and 100%"]
    assert not (tmp_path / "out").exists()


def test_validate_reports_a_good_file_and_a_bad_one_and_exits_2(tmp_path):
    good, empty = _write(tmp_path / "good.yaml", GOOD), _write(tmp_path / "empty.yaml", "")
    result = runner.invoke(app, ["validate", str(good), str(empty)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"error: {empty}:1: the file is empty" in result.output.splitlines()
    # The "ok" line goes to stdout, which rich wraps at the terminal width: compare it with whitespace squeezed.
    assert f"{good}: ok, scenario 'unit-test': 3 sites in 2 groups" in " ".join(result.output.split())


def test_validate_of_a_path_that_cannot_be_read_exits_2(tmp_path):
    inside_a_file = _write(tmp_path / "f.yaml", GOOD) / "x.yaml"
    result = runner.invoke(app, ["validate", str(inside_a_file)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == f"error: {inside_a_file}: cannot be read: Not a directory"


def test_validate_prints_a_key_that_looks_like_markup(tmp_path):
    bad = _write(tmp_path / "bad.yaml", GOOD + '"[/x]": 1\n')
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and f"{bad}:12 [/x]: unknown key '[/x]'" in result.output


def test_adsl2plus_takes_a_line_length_and_slows_with_it(tmp_path):
    # topologies/access.yaml: ADSL2+ derating (docs/sources.md S1), 16/1 Mbit/s to 2 km, 8/0.9 at 3 km; between
    # points it interpolates: 2.75 km -> down 13 + (8 - 13) * 0.5 = 10.5 Mbit/s, up 0.95 + (0.9 - 0.95) * 0.5 = 0.925.
    path = _write(tmp_path / "far.yaml", "name: far\nwindow: {start: '08:00', end: '09:00'}\nsites:\n"
                                         "  - {class: gp_medium, count: 1, access: adsl2plus, distance: 2.75km}\n"
                                         "year: 2019\n")
    sites = topology.build(load(path)).sites
    assert (sites.at[0, "down_bps"], sites.at[0, "up_bps"]) == (pytest.approx(10.5e6), pytest.approx(0.925e6))


def test_a_home_line_mix_over_100_percent_is_a_located_error(scenarios_dir):
    with pytest.raises(ScenarioError) as caught:
        load(scenarios_dir / "ci-smoke.yaml", {"catalogue.core.home_mix.patient_4g": "50%"})
    assert "catalogue.core.home_mix" in str(caught.value)
    assert "home line shares add up to 145.0%, not 100%" in str(caught.value)
    with pytest.raises(ScenarioError, match="unknown profile 'patient_5g'"):
        load(scenarios_dir / "ci-smoke.yaml", {"catalogue.core.home_mix": "{patient_home: 95%, patient_5g: 5%}"})
