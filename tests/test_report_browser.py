"""The report in a real browser: Debian's Chromium, driven by Playwright, offline.

Checks that the page makes no network request, logs no console error, renders every figure as an SVG with
data, and shows summary numbers that match verdicts.csv. Screenshots are saved in tests/artefacts/.
Needs Chromium (``make test`` installs it when run as root); skipped, with the reason, where it is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from sim import pipeline, report
from sim.report.data import by_technology

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: run `make test` as root, "
                                                          "or apt-get install chromium")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return pipeline.run(SCENARIOS / "baseline-2019.yaml", out=tmp_path_factory.mktemp("results"), png=True).folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                           "--disable-background-networking", "--disable-component-update",
                                           "--disable-sync"])
        yield chromium
        chromium.close()


def open_offline(browser, path: Path):
    """Open a file in a fresh page; return (page, console errors, requests that left the file system)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, outside = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
    return page, errors, outside


def test_report_renders_offline_without_errors(browser, run_folder):
    page, errors, outside = open_offline(browser, run_folder / report.REPORT_FILE)
    try:
        sections = page.locator("section.figure").count()
        rendered = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
            id: el.id, svg: el.querySelectorAll('svg.main-svg').length, traces: (el.data || []).length,
            points: (el.calcdata || []).reduce((n, cd) => n + cd.length, 0)}))""")
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "report-top.png"))
        page.screenshot(path=str(ARTEFACTS / "report-full.png"), full_page=True)
    finally:
        page.close()
    assert errors == [] and outside == []
    assert sections == len(rendered) >= 6
    for fig in rendered:
        assert fig["svg"] >= 1 and fig["traces"] >= 1 and fig["points"] >= 1, fig
    for png in (run_folder / "figures").glob("*.csv"):
        assert png.with_suffix(".png").is_file(), f"no PNG for {png.stem}"


def test_summary_in_the_page_matches_verdicts_csv(browser, run_folder):
    page, errors, _ = open_offline(browser, run_folder / report.REPORT_FILE)
    try:
        shown = page.evaluate("""() => Array.from(document.querySelectorAll('li.finding')).flatMap(li =>
            Array.from(li.querySelectorAll('span[data-technology]')).map(s => ({
                app: li.dataset.app, site_class: li.dataset.siteClass, technology: s.dataset.technology,
                share: parseFloat(s.dataset.share), sites: parseInt(s.dataset.sites)})))""")
        headline = page.locator("p.headline").inner_text()
    finally:
        page.close()
    verdicts = pd.read_csv(run_folder / "verdicts.csv")
    expected = by_technology(verdicts, 0.9).set_index(["app", "site_class", "technology"])
    assert len(shown) == len(expected)
    for item in shown:
        row = expected.loc[(item["app"], item["site_class"], item["technology"])]
        assert item["share"] == pytest.approx(row["sites_passing"] / row["sites"], abs=1e-6)
        assert item["sites"] == row["sites"]
    assert "copper" in headline and "ADSL2+" in headline
    assert errors == []


def test_escaped_script_shows_as_text_and_never_runs(browser, tmp_path):
    scenario = tmp_path / "xss.yaml"
    scenario.write_text((SCENARIOS / "ci-smoke.yaml").read_text().replace("name: ci-smoke", "name: xss")
                        .replace("description: Three", "description: <script>window.__xss=1</script> Three"))
    folder = pipeline.run(scenario, out=tmp_path / "results", png=False).folder
    page, errors, outside = open_offline(browser, folder / report.REPORT_FILE)
    try:
        ran = page.evaluate("() => window.__xss === 1")
        text = page.locator("body").inner_text()
    finally:
        page.close()
    assert not ran and "<script>window.__xss=1</script>" in text
    assert errors == [] and outside == []


def test_the_site_table_finds_a_site_by_name_and_sorts_by_any_column(browser, tmp_path):
    # ci-smoke's three practices: gp-adsl (1 Mbit/s up, no line length), gp-fttc (FTTC at 0.6 km: 12.75 Mbit/s up,
    # the derating table's figure there), gp-fttp (50 Mbit/s up).
    folder = pipeline.run(SCENARIOS / "ci-smoke.yaml", out=tmp_path / "results", png=False).folder
    page, errors, outside = open_offline(browser, folder / report.REPORT_FILE)
    visible = "() => Array.from(document.querySelectorAll('#site-table tbody tr')).filter(r => !r.hidden)" \
              ".map(r => r.cells[0].textContent)"
    try:
        assert page.evaluate(visible) == ["gp-adsl", "gp-fttc", "gp-fttp"]  # worst first
        page.fill("#site-filter", "FTTC")
        found, count = page.evaluate(visible), page.locator("#site-count").inner_text()
        page.screenshot(path=str(ARTEFACTS / "report-sites-filtered.png"))
        page.fill("#site-filter", "")
        page.click("#site-table th:nth-child(6)")  # up (Mbit/s), ascending
        by_up = page.evaluate(visible)
        page.click("#site-table th:nth-child(6)")
        by_up_down = page.evaluate(visible)
        page.click("#site-table th:nth-child(4)")  # line length: the one site with a length first
        by_length = page.evaluate(visible)[0]
    finally:
        page.close()
    assert found == ["gp-fttc"] and count == "1 of 3 sites shown"
    assert by_up == ["gp-adsl", "gp-fttc", "gp-fttp"] and by_up_down == ["gp-fttp", "gp-fttc", "gp-adsl"]
    assert by_length == "gp-fttc"
    assert errors == [] and outside == []


def test_a_free_text_site_name_is_shown_as_text_and_found_by_its_words(browser, tmp_path):
    from sim.report import page as page_html
    name = "St Mary's <img src=x onerror=\"window.__xss=2\"> Surgery"
    rows = pd.DataFrame({"site": [name, "Elm Tree"], "site_class": "gp_small", "access_profile": "fttc_80_20",
                         "distance_m": [1500.0, float("nan")], "down_bps": [38e6, 80e6], "up_bps": [7.5e6, 20e6],
                         "targets": 6, "met": [5, 6], "worst_share": [0.4, 1.0],
                         "misses": [["video: time at 1.5 Mbit/s 0% (at least 95%): the 7.5 Mbit/s uplink"], []]})
    html = tmp_path / "sites.html"
    html.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    + page_html.site_section(rows, 2, {}) + "</body></html>")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(html.as_uri())
        page.fill("#site-filter", "mary's surgery")
        shown = page.evaluate("() => Array.from(document.querySelectorAll('#site-table tbody tr'))"
                              ".filter(r => !r.hidden).map(r => r.cells[0].textContent)")
        ran = page.evaluate("() => window.__xss === 2")
    finally:
        page.close()
    assert shown == [name] and not ran and errors == []
