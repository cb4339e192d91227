"""The report in a real browser: Debian's Chromium, driven by Playwright, offline.

Checks that the page makes no network request, logs no console error, renders every figure as an SVG with
data, and shows summary numbers that match verdicts.csv. Screenshots are saved in tests/artefacts/.
Needs Chromium (``make test`` installs it when run as root); skipped, with the reason, where it is missing.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest

from sim import pipeline, report
from sim.report import comparison, pngs
from sim.report.data import by_technology, read_run

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


# Every text a plot draws (tick labels, axis titles, annotations such as subplot titles and target labels, legend
# entries, the figure's title) and the toolbar, as the browser laid them out; the pairs whose boxes overlap or come
# within 2 px of each other, and any cut off at the plot's edge. Slanted tick labels are left out of pairs with each
# other: plotly slants them so that they do not collide, and a slanted label's box is wider than its text.
OVERLAPS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => {
  const boxes = [];
  const add = (el, role) => {
    const r = el.getBoundingClientRect(), text = (el.textContent || '').trim();
    const slanted = /rotate\\(-?[1-9]/.test(el.getAttribute('transform') || '');
    if (r.width > 0 && r.height > 0 && (text || role === 'toolbar'))
      boxes.push({role, text: text.slice(0, 50), slanted, l: r.left, r: r.right, t: r.top, b: r.bottom});
  };
  plot.querySelectorAll('.xtick text, .ytick text').forEach(e => add(e, 'tick'));
  plot.querySelectorAll('g[class^="g-x"][class$="title"] text, g[class^="g-y"][class$="title"] text')
    .forEach(e => add(e, 'axis title'));
  plot.querySelectorAll('.annotation-text-g text').forEach(e => add(e, 'annotation'));
  plot.querySelectorAll('.legendtext').forEach(e => add(e, 'legend'));
  plot.querySelectorAll('.g-gtitle text').forEach(e => add(e, 'title'));
  const bar = plot.querySelector('.modebar');
  if (bar) add(bar, 'toolbar');
  const hits = [], svg = plot.querySelector('.main-svg').getBoundingClientRect();
  boxes.filter(x => x.l < svg.left - 1 || x.r > svg.right + 1 || x.t < svg.top - 1 || x.b > svg.bottom + 1)
    .forEach(x => hits.push(x.role + ' "' + x.text + '" is cut off at the edge'));
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    const w = Math.min(a.r, b.r) - Math.max(a.l, b.l), h = Math.min(a.b, b.b) - Math.max(a.t, b.t);
    if (w > -2 && h > -2 && !(a.slanted && b.slanted))
      hits.push(a.role + ' "' + a.text + '" / ' + b.role + ' "' + b.text + '"');
  }
  const roles = boxes.reduce((n, x) => ({...n, [x.role]: (n[x.role] || 0) + 1}), {});
  return {id: plot.id, roles, hits};
})"""


def overlaps(browser, path: Path) -> list[dict]:
    """Each plot of a page: how many texts of each role it draws and which overlap (see OVERLAPS_JS)."""
    page, errors, outside = open_offline(browser, path)
    try:
        return page.evaluate(OVERLAPS_JS)
    finally:
        page.close()
        assert errors == [] and outside == []


def as_exported(specs, folder: Path) -> Path:
    """A page of the figures as the PNG export draws them: with their titles, at its width and their heights."""
    from plotly.offline import get_plotlyjs
    divs = "".join(spec.figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"png-{spec.name}",
                                       default_width=f"{pngs.WIDTH_PX}px", default_height=f"{height}px",
                                       config={"displayModeBar": False})  # a PNG has no toolbar
                   for spec, height in zip(specs, pngs.heights([s.figure for s in specs])))
    path = folder / "as-exported.html"
    path.write_text(f"<html><head><script>{get_plotlyjs()}</script></head><body>{divs}</body></html>")
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height (px) from a PNG's header."""
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_report_renders_offline_without_errors(browser, run_folder):
    page, errors, outside = open_offline(browser, run_folder / report.REPORT_FILE)
    try:
        sections = page.locator("section.figure").count()
        rendered = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
            id: el.id, svg: el.querySelectorAll('svg.main-svg').length, traces: (el.data || []).length,
            points: (el.calcdata || []).reduce((n, cd) => n + cd.length, 0)}))""")
        laid_out = page.evaluate(OVERLAPS_JS)
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
    for plot in laid_out:  # no label overlaps another or sits under the toolbar (see OVERLAPS_JS)
        assert plot["roles"].get("toolbar") == 1 and plot["roles"].get("tick", 0) > 0, plot
        assert plot["hits"] == [], plot["id"]


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


@pytest.fixture(scope="module")
def compared(run_folder, tmp_path_factory):
    """baseline-2019 against itself (ten apps, five site classes: the layout does not depend on the values)."""
    return report.compare(run_folder, run_folder, tmp_path_factory.mktemp("compare"), png=True)


def test_the_pngs_have_each_figures_height_and_no_overlapping_or_cut_labels(browser, run_folder, compared,
                                                                            tmp_path):
    run = read_run(run_folder)
    specs = report._figures(run)
    both = comparison.figure(run, run, comparison.joined(run, run))
    files = [run_folder / "figures" / f"{spec.name}.png" for spec in specs] + [compared.parent / "comparison.png"]
    for spec, height, path in zip([*specs, both], pngs.heights([s.figure for s in [*specs, both]]), files):
        assert height == (spec.figure.layout.height or pngs.DEFAULT_HEIGHT_PX)
        assert png_size(path) == (pngs.WIDTH_PX * pngs.SCALE, height * pngs.SCALE), path.name
    for plot in overlaps(browser, as_exported([*specs, both], tmp_path)):
        assert plot["roles"].get("title") and plot["hits"] == [], plot


def test_the_comparisons_titles_never_overlap_in_the_page(browser, compared):
    (plot,) = overlaps(browser, compared)
    assert plot["roles"]["annotation"] >= 10 + 1 and plot["hits"] == [], plot  # ten panel titles, one x title


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


def test_a_png_kaleido_does_not_write_is_an_error_naming_it_not_a_missing_file(tmp_path):
    """plotly drops kaleido's per-figure failures; the export checks its files (here a folder that does not exist)."""
    import plotly.graph_objects as go

    from sim.errors import CapabilityError
    written, lost = tmp_path / "written.png", tmp_path / "no-such-folder" / "lost.png"
    figure = go.Figure(go.Bar(x=["a"], y=[1]))
    with pytest.raises(CapabilityError, match=r"lost\.png") as raised:
        pngs.write([figure, figure], [written, lost])
    assert "written.png" not in str(raised.value)
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plan_page_renders_offline_with_no_overlapping_or_cut_labels(browser, tmp_path):
    # ci-smoke's plan (one class, two seeds): its page's figures (need per class, each class's curves) drawn in a
    # real browser, offline, with data, and no text of a plot over another or past its edge.
    from sim import studies
    _, folder = studies.plan(SCENARIOS / "ci-smoke.yaml", seeds=2, out=tmp_path / "results", workers=0, png=False)
    plots = overlaps(browser, folder / "plan.html")
    assert len(plots) >= 2  # (their titles are the page's headings, not the plots')
    for plot in plots:
        assert plot["roles"].get("tick") and plot["hits"] == [], plot


def test_the_sweep_page_renders_offline_with_no_overlapping_or_cut_labels(browser, tmp_path):
    # ci-smoke swept over two access profiles: its page's figures drawn offline, with no text over another or cut.
    from sim import studies
    _, folder = studies.sweep(SCENARIOS / "ci-smoke.yaml", {"access": ["adsl2plus", "fttp_330_50"]},
                              out=tmp_path / "results", workers=0, png=False)
    plots = overlaps(browser, folder / "sweep.html")
    assert plots
    for plot in plots:
        assert plot["roles"].get("tick") and plot["hits"] == [], plot
