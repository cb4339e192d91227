"""Reports drawn from a results folder alone: summary numbers, escaping, self-containment, compare."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim import pipeline, report, results
from sim.cli import app
from sim.report import summary
from sim.report.data import LINK_FIELDS, RECORD_FIELDS, by_technology, read_run

runner = CliRunner()


def _scenario(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "scenarios" / f"{name}.yaml"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return pipeline.run(_scenario("ci-smoke"), out=tmp_path_factory.mktemp("results"), png=False).folder


def test_every_run_has_a_self_contained_report(smoke_run):
    text = (smoke_run / report.REPORT_FILE).read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", text), "no external scripts"
    assert not re.search(r"<link[^>]+href=[\"']https?:", text), "no external stylesheets"
    assert text.count('class="figure"') == len(list((smoke_run / "figures").glob("*.csv")))
    assert "Plotly" in text  # plotly.js is inline


def test_summary_numbers_match_the_verdicts(smoke_run):
    run = read_run(smoke_run)
    verdicts = pd.read_csv(smoke_run / "verdicts.csv")
    expected = by_technology(verdicts, run.site_bar).set_index(["app", "site_class", "technology"])
    found = summary.findings(run)
    assert {(f.app, f.site_class) for f in found} == {(a, c) for a, c, _ in expected.index}
    for f in found:
        for tech, share, sites, passed in f.shares:
            row = expected.loc[(f.app, f.site_class, tech)]
            assert share == pytest.approx(row["sites_passing"] / row["sites"])
            assert sites == row["sites"] and passed == row["passed"]
    video_adsl = next(f for f in found if f.app == "video")
    assert video_adsl.failing and video_adsl.failing[0][0] == "ADSL2+"
    assert "ADSL2+ 0% of sites meet the video consultations target" in video_adsl.sentence()


def test_report_is_redrawn_from_the_folder_alone(smoke_run, tmp_path):
    copy = tmp_path / smoke_run.name
    shutil.copytree(smoke_run, copy)
    (copy / report.REPORT_FILE).unlink()
    result = runner.invoke(app, ["report", str(copy), "--no-png"])
    assert result.exit_code == 0, result.output
    assert (copy / report.REPORT_FILE).read_text().count('class="figure"') >= 5


def test_the_call_figures_state_the_simulators_assumption_from_the_runs_own_meta(smoke_run, tmp_path):
    meta = json.loads((smoke_run / "meta.json").read_text())
    assert meta["simulator"]["video_max_utilisation"] == 0.9  # sim.des.queueing, as the run used it
    assert meta["simulator"]["tcp_rto_min_s"] == 0.2  # sim.des.tails: Linux's TCP_RTO_MIN, as the run used it
    copy = tmp_path / smoke_run.name
    shutil.copytree(smoke_run, copy)
    meta["simulator"]["video_max_utilisation"] = 0.8  # a run made with another figure says that figure
    (copy / "meta.json").write_text(json.dumps(meta))
    report.render(copy, png=False)
    page = (copy / report.REPORT_FILE).read_text()
    assert "alone it loads a link to at most 80%" in page and "at most 90%" not in page


def test_report_of_an_unfinished_folder_is_refused(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no finished run" in result.output


def test_scenario_strings_are_escaped(tmp_path, topologies_dir):
    catalogue = tmp_path / "topologies"
    shutil.copytree(topologies_dir, catalogue)
    sites = catalogue / "sites.yaml"
    sites.write_text(sites.read_text().replace("label: GP practice, medium (about 10,000 patients)",
                                               "label: \"<script>window.__xss=1</script>\""))
    scenario = tmp_path / "xss.yaml"
    scenario.write_text(_scenario("ci-smoke").read_text().replace("name: ci-smoke", "name: xss")
                        .replace("description: Three", "description: <img src=x onerror=alert(1)> Three")
                        + "catalogue: topologies\n")
    folder = pipeline.run(scenario, out=tmp_path / "results", png=False).folder
    text = (folder / report.REPORT_FILE).read_text()
    assert "<script>window.__xss" not in text and "<img src=x" not in text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_a_folder_of_another_record_format_is_refused_by_name(smoke_run, tmp_path):
    # A folder written before the records gained transfers' setup_s and first_data_s (format 2): report and compare
    # refuse it with both formats named, exit 2, no traceback; the folder is left as it was.
    old = tmp_path / "old-run"
    shutil.copytree(smoke_run, old)
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps(meta | {"format_version": 2}))
    pd.read_parquet(old / "records.parquet").drop(columns=["setup_s", "first_data_s"]).to_parquet(
        old / "records.parquet", index=False)
    before = sorted(p.name for p in old.iterdir())
    for args in (["report", str(old)], ["compare", str(old), str(smoke_run), "--out", str(tmp_path / "cmp")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "its records are of format 2" in result.output and "this testbed reads format 3" in result.output
        assert "Traceback" not in result.output
    assert sorted(p.name for p in old.iterdir()) == before and not (tmp_path / "cmp").exists()


def test_compare_reports_what_changes(tmp_path):
    root = tmp_path / "results"
    base = pipeline.run(_scenario("ci-smoke"), out=root, png=False).folder
    fibre_text = _scenario("ci-smoke").read_text().replace("name: ci-smoke", "name: smoke-fibre")
    fibre_text = fibre_text.replace("access: adsl2plus", "access: fttp_330_50")
    (tmp_path / "fibre.yaml").write_text(fibre_text)
    pipeline.run(tmp_path / "fibre.yaml", out=root, png=False)
    result = runner.invoke(app, ["compare", str(base), str(root / "smoke-fibre"), "--out", str(tmp_path / "cmp"),
                                 "--no-png"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "cmp" / "compare.html").read_text()
    # One of three medium practices fails video on ADSL2+ in ci-smoke; none on full fibre: 33% -> 100%.
    assert "GP practice, medium (about 10,000 patients), video consultations: 67% of sites meet the target in " \
           "ci-smoke, 100% in smoke-fibre (+33 points)." in text
    # The command prints the same headline and sentences (changes.txt), then the page's path
    said = " ".join(result.output.split())
    assert "A ci-smoke → B smoke-fibre: of " in said and "67% of sites meet the target in ci-smoke, 100% in " \
        "smoke-fibre (+33 points)." in said and said.endswith(f"comparison: {tmp_path / 'cmp' / 'compare.html'}")
    assert (tmp_path / "cmp" / "changes.txt").read_text().splitlines()[0].startswith("A ci-smoke → B smoke-fibre")
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    row = table[(table["app"] == "video")].iloc[0]
    assert row["share_a"] == pytest.approx(2 / 3) and row["share_b"] == pytest.approx(1.0)


def test_latest_picks_the_newest_finished_run(smoke_run):
    assert results.latest(smoke_run.parent) == smoke_run


def test_a_report_reads_only_what_it_draws(smoke_run):
    run = read_run(smoke_run)
    assert list(run.records.columns) == RECORD_FIELDS
    busiest = run.sites[run.sites["app"] == "link"].sort_values("value").iloc[-1]["site"]
    links = run.site_links([busiest])
    assert list(links.columns) == LINK_FIELDS and set(links["site"]) == {busiest}
    everything = pd.read_parquet(smoke_run / "links.parquet")
    pd.testing.assert_frame_equal(links, everything.loc[everything["site"] == busiest, LINK_FIELDS]
                                  .reset_index(drop=True))


def test_the_site_table_lists_every_site_with_its_line_and_misses(smoke_run):
    text = (smoke_run / report.REPORT_FILE).read_text()
    table = text[text.index('<table id="site-table">'):text.index("</table>", text.index('<table id="site-table">'))]
    rows = re.findall(r'<tr class="(fail|pass)" data-site="([^"]+)">(.*?)</tr>', table)
    assert [(kind, site) for kind, site, _ in rows] == [("fail", "gp-adsl"), ("pass", "gp-fttc"), ("pass", "gp-fttp")]
    adsl, fttc = rows[0][2], rows[1][2]
    assert adsl.count("<div>") == 6 and "video: time below 0.35 Mbit/s" in adsl and "the 1 Mbit/s uplink" in adsl
    assert '<td data-value="0.6">0.6</td>' in fttc  # ci-smoke's FTTC line: 0.6 km
    assert "<script>" in text[text.index('<section id="sites">'):]  # the table's own sorting and filtering


def test_the_site_table_escapes_free_text_names():
    from sim.report import page
    rows = pd.DataFrame({"site": ["St Mary's <b>Surgery</b> \u202e"], "site_class": "gp_small",
                         "access_profile": "fttc_80_20", "distance_m": [1500.0], "down_bps": [38e6],
                         "up_bps": [7.5e6], "targets": 6, "met": [5], "worst_share": [0.4],
                         "misses": [["video: <i>x</i>"]]})
    html = page.site_section(rows, 3, {"gp_small": "GP & small"})
    assert "St Mary&#x27;s &lt;b&gt;Surgery&lt;/b&gt; \\u202e" in html and "<b>" not in html
    assert "video: &lt;i&gt;x&lt;/i&gt;" in html and "GP &amp; small" in html
    assert "It lists the 1 worst of 3 sites; site_verdicts.csv has every one." in html


def test_quality_table_counts_bands_and_quantiles_per_class_by_hand():
    # Three scored calls of one class and technology (MOS 4.4 good, 3.8 degraded, 2.0 unusable) and one unscored
    # session: 3 calls, a third in each band; median 3.8; p25 of (2.0, 3.8, 4.4) by linear interpolation = 2.9.
    from sim.report.callquality import quality_table

    class Run:
        def table(self, name, columns, text_as_categories=False):
            return pd.DataFrame({"app": ["video"] * 4, "site_class": ["gp_small"] * 4, "technology": ["FTTC"] * 4,
                                 "mos": [4.4, 3.8, 2.0, float("nan")],
                                 "quality": ["good", "degraded but usable", "unusable", ""]}).astype(
                {"app": "category", "site_class": "category", "technology": "category", "quality": "category"})

    row = quality_table(Run()).iloc[0]
    assert row["calls"] == 3 and row["median_mos"] == pytest.approx(3.8) and row["p25_mos"] == pytest.approx(2.9)
    assert [row[band] for band in ("good", "degraded but usable", "unusable")] == pytest.approx([1 / 3] * 3)
