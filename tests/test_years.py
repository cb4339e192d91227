"""A scenario's year selects the published volumes it replays (``topologies/sites.yaml`` ``volumes_by_year``).

The expected volumes are worked out by hand from the figures of docs/sources.md S14, not read from the catalogue:
GP appointments 5.0 a patient a year in 2019 and 5.8 in 2024 over 250 working days; telephone consultations 14%
and 26% of them, on top of 35 answered calls per 1,000 patients (S5); video/online 0.5% and 4.9% of appointments;
outpatient video 4% x 2.5% and 25% x 12% of attendances; imaging 950 and 990 studies a day at an acute site, CT
12% (S3's mix) and 16% of them.
"""

from __future__ import annotations

import math
import shutil

import pytest
from typer.testing import CliRunner

from sim import topology, workload
from sim.cli import app
from sim.errors import ScenarioError
from sim.load import load

runner = CliRunner()

SCENARIO = (
    "name: years\n"                                            # 1
    "year: 2019\n"                                             # 2
    'window: {start: "08:00", end: "18:30"}\n'                 # 3
    "load: {volume_scale: 10}\n"                               # 4
    "sites:\n"                                                 # 5
    "  - {class: gp_medium, count: 10, access: fttp_1000_220}\n"
    "  - {class: acute_site, count: 2, access: leased_1000}\n"
)


def _write(tmp_path, text: str, name: str = "years.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(path, overrides=None) -> str:
    with pytest.raises(ScenarioError) as caught:
        load(path, overrides)
    return str(caught.value)


# --- a bad year is refused where it is written --------------------------------------------------------------------

@pytest.mark.parametrize("year", ["2031", "twenty", "2019.5", "[2019]", "yes"])
def test_a_year_without_published_volumes_is_refused_at_its_line(tmp_path, year):
    path = _write(tmp_path, SCENARIO.replace("year: 2019", f"year: {year}"))
    shown = {"twenty": "'twenty'", "[2019]": "[2019]", "yes": "True"}.get(year, year)
    assert _error(path) == (f"{path}:2 year: no volumes for the year {shown}; "
                            "years with published volumes: 2019, 2024")


def test_a_year_set_on_the_command_line_is_checked_too(tmp_path):
    path = _write(tmp_path, SCENARIO)
    assert _error(path, {"year": "1999"}) == ("--set year: no volumes for the year 1999; "
                                             "years with published volumes: 2019, 2024")


def test_the_cli_exits_2_on_a_bad_year_with_one_located_line(tmp_path):
    path = _write(tmp_path, SCENARIO.replace("year: 2019", "year: 2031"))
    expected = [f"error: {path}:2 year: no volumes for the year 2031; years with published volumes: 2019, 2024"]
    for command in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "out"), "--no-png"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, command
        assert "Traceback" not in result.output
        assert result.output.strip().splitlines() == expected
    assert not (tmp_path / "out").exists()


def _catalogue_with(tmp_path, topologies_dir, old: str, new: str):
    """A copy of the catalogue whose sites.yaml has ``old`` (once, in volumes_by_year 2019) replaced by ``new``."""
    folder = tmp_path / "catalogue"
    shutil.copytree(topologies_dir, folder)
    sites = folder / "sites.yaml"
    text = sites.read_text()
    at = text.index("volumes_by_year:")
    assert text.count(old, at, text.index("  2024:", at)) == 1, old
    i = text.index(old, at)
    sites.write_text(text[:i] + new + text[i + len(old):])
    line = text[:i].count("\n") + 1
    return folder, sites.resolve(), line


@pytest.mark.parametrize("old, new, message", [
    ("      gp_small:\n", "      gp_smal:\n",
     "site_classes.gp_smal: unknown site class 'gp_smal'; did you mean 'gp_small'?"),
    ("    # modalities: apps.yaml", "    modalities: {ultrasonic: {share: 23%}}\n    # apps.yaml",
     "modalities.ultrasonic: unknown modality 'ultrasonic'; did you mean 'ultrasound'?"),
    ("    load:\n", "    loads:\n", "loads: unknown key 'loads'; did you mean 'load'?"),
])
def test_a_misspelt_name_in_a_years_volumes_is_refused_at_its_line(tmp_path, topologies_dir, old, new, message):
    folder, sites, line = _catalogue_with(tmp_path, topologies_dir, old, new)
    path = _write(tmp_path, SCENARIO + f"catalogue: {folder}\n")
    assert _error(path) == f"{sites}:{line} catalogue.volumes_by_year.2019.{message}"


def test_a_bad_figure_in_a_years_volumes_is_located_in_sites_yaml(tmp_path, topologies_dir):
    folder, sites, line = _catalogue_with(tmp_path, topologies_dir, "{per_day: 200}", "{per_day: -5}")
    path = _write(tmp_path, SCENARIO + f"catalogue: {folder}\n")
    message = _error(path)
    assert message.startswith(f"{sites}:{line} catalogue.site_classes.gp_medium.consultations.per_day: "), message
    # `testbed validate` of the catalogue itself checks every year's volumes, not only the site classes' own.
    result = runner.invoke(app, ["validate", str(folder / "sites.yaml")])
    assert result.exit_code == 2 and f"{sites}:{line} " in result.output


# --- the year selects the volumes ----------------------------------------------------------------------------------

def test_the_year_sets_each_site_classes_volumes(tmp_path):
    path = _write(tmp_path, SCENARIO)
    expected = {  # consultations a day, telephony calls a day (S14, S5: by list size 5,000 / 10,000 / 20,000)
        2019: {"gp_small": (100, 190), "gp_medium": (200, 380), "gp_large": (400, 760)},
        2024: {"gp_small": (116, 205), "gp_medium": (232, 410), "gp_large": (464, 820)},
    }
    for year, classes in expected.items():
        scenario = load(path, {"year": str(year)})
        assert scenario.year == year
        for name, (consultations, calls) in classes.items():
            site_class = scenario.catalogue.site_classes[name]
            assert site_class.consultations.per_day == consultations
            assert site_class.activities["telephony"].per_day == calls
        acute = scenario.catalogue.site_classes["acute_site"]
        assert (acute.consultations.per_day, acute.imaging.per_day) == (2200, {2019: 950, 2024: 990}[year])
        # CT's share of studies: 12% in 2019 (S3's mix, kept), 158 of 990 in 2024 (S14).
        assert scenario.catalogue.modalities["ct"].share == pytest.approx({2019: 0.12, 2024: 0.16}[year])


def test_the_scenarios_own_load_overrides_the_years_defaults(tmp_path):
    path = _write(tmp_path, SCENARIO.replace("load: {volume_scale: 10}", "load: {gp_video_share: 25%}"))
    scenario = load(path, {"year": "2024"})
    assert scenario.load.gp_video_share == pytest.approx(0.25)                    # the scenario's own
    assert scenario.load.outpatient_remote_share == pytest.approx(0.25)           # 2024's defaults
    assert scenario.load.outpatient_video_of_remote == pytest.approx(0.12)
    later = load(path, {"load.outpatient_remote_share": "10%", "year": "2019"})   # --set year goes first
    assert later.year == 2019 and later.load.outpatient_remote_share == pytest.approx(0.10)
    assert later.load.outpatient_video_of_remote == pytest.approx(0.025)


def test_a_scenario_without_a_year_is_refused_naming_the_published_years(tmp_path):
    path = _write(tmp_path, SCENARIO.replace("year: 2019\n", ""))
    assert _error(path) == (f"{path}:1 year: a scenario states the year of its volumes: add 'year: <year>' (years "
                            "with published volumes: 2019, 2024)")
    assert _error(path, {"year": "2031"}).startswith("--set year: no volumes for the year 2031")
    assert load(path, {"year": "2019"}).year == 2019  # --set year gives it


# Share of the day's sessions in the 08:00-18:30 window (sites.yaml day profiles): the clinic and telephony
# profiles lie wholly inside it; imaging has 7% an hour 08:00-19:00, so 10 x 7% + half of 7% = 73.5%.
IMAGING_IN_WINDOW = 0.735
SCALE, GP_SITES, ACUTE_SITES = 10, 10, 2
EXPECTED = {  # sessions in the window, by hand from the S14 figures
    2019: {"gp_consultations": GP_SITES * 200 * SCALE,                      # 20,000
           "gp_video": GP_SITES * 200 * SCALE * 0.005,                      # 100
           "telephony": GP_SITES * 380 * SCALE,                             # 38,000
           "outpatient_video": ACUTE_SITES * 2200 * SCALE * 0.04 * 0.025,   # 44
           "images": ACUTE_SITES * 950 * SCALE * IMAGING_IN_WINDOW,         # 13,965
           "ct": ACUTE_SITES * 950 * SCALE * IMAGING_IN_WINDOW * 0.12},     # 1,676
    2024: {"gp_consultations": GP_SITES * 232 * SCALE,                      # 23,200
           "gp_video": GP_SITES * 232 * SCALE * 0.049,                      # 1,136.8
           "telephony": GP_SITES * 410 * SCALE,                             # 41,000
           "outpatient_video": ACUTE_SITES * 2200 * SCALE * 0.25 * 0.12,    # 1,320
           "images": ACUTE_SITES * 990 * SCALE * IMAGING_IN_WINDOW,         # 14,553
           "ct": ACUTE_SITES * 990 * SCALE * IMAGING_IN_WINDOW * 0.16},     # 2,328
}


def _counts(trace, sites) -> dict[str, int]:
    gp = trace["site"].isin(sites.loc[sites["site_class"] == "gp_medium", "site"])
    uploads = trace["app"].str.startswith("image_") & (trace["direction"] == "up")
    return {"gp_consultations": int((gp & (trace["kind"] == "record_fetch")).sum()),  # one fetch a consultation
            "gp_video": int((trace["kind"] == "gp_video").sum()),
            "telephony": int((gp & (trace["app"] == "telephony")).sum()),
            "outpatient_video": int((trace["kind"] == "outpatient_video").sum()),
            "images": int(uploads.sum()), "ct": int((uploads & (trace["kind"] == "ct")).sum())}


@pytest.mark.parametrize("year", [2019, 2024])
def test_a_generated_trace_has_the_years_sessions_per_class(tmp_path, year):
    scenario = load(_write(tmp_path, SCENARIO), {"year": str(year)})
    topo = topology.build(scenario)
    counts = _counts(workload.generate(scenario, topo, 11), topo.sites)
    for what, expected in EXPECTED[year].items():
        # Each count is Poisson (a thinned Poisson stream): within 4 standard deviations of its mean.
        assert abs(counts[what] - expected) <= 4 * math.sqrt(expected), (what, counts[what], expected)
