"""Reports for policy teams: a self-contained HTML page and PNGs, drawn from a results folder alone.

``render(folder)`` writes ``report.html`` and ``figures/`` (PNG and CSV per figure) into a run's folder;
``compare(a, b, out)`` writes a comparison of two runs. Nothing here imports an engine.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sim.errors import CapabilityError
from sim.report import figures as figs
from sim.report import page, pngs, summary
from sim.report.data import RunData, read_run, site_table

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"

__all__ = ["REPORT_FILE", "render", "compare", "read_run", "render_plan", "render_sweep"]


def render(folder: Path | str, *, png: bool | None = None) -> Path:
    """Draw a run's report from its results folder.

    Args:
        folder: A finished (or being-finished) results folder.
        png: True: PNGs required; False: none; None: PNGs when a browser for kaleido is found.

    Returns:
        The path of ``report.html``.

    Raises:
        TestbedError: If the folder cannot be read; CapabilityError if PNGs are required but cannot be made.
    """
    folder = Path(folder)
    run = read_run(folder)
    specs = _figures(run)
    links = _write_figure_files(folder, specs, png)
    text = page.page(f"{run.name}: do NHS sites meet their service targets?", _intro(run), specs, links)
    out = folder / REPORT_FILE
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def _figures(run: RunData) -> list:
    """Every figure of a run's report, in reading order: verdicts, then what loads the lines, then the detail.

    The busy-hour load is summed on a thread of its own meanwhile: it reads the whole trace again and sums it by
    class, hour and app (Arrow's reading and numpy's and pandas' sums run without Python's lock), while the other
    figures are drawn here.
    """
    from sim.report.availability import availability_figure
    from sim.report.callquality import quality_figure
    from sim.report.load import busy_hour_load_or_none, load_figure
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-load") as pool:
        busy = pool.submit(busy_hour_load_or_none, run)
        specs = figs.all_figures(run)
        quality = quality_figure(run)
        load = load_figure(run, busy.result())
    extra = [spec for spec in (load, quality, availability_figure(run)) if spec is not None]
    return specs[:2] + extra + specs[2:]


def _write_figure_files(folder: Path, specs: list, png: bool | None) -> dict[str, dict[str, str]]:
    fig_dir = folder / FIGURES_DIR
    fig_dir.mkdir(exist_ok=True)
    links: dict[str, dict[str, str]] = {}
    for spec in specs:
        spec.table.to_csv(fig_dir / f"{spec.name}.csv", index=False)
        links[spec.name] = {"CSV": f"{FIGURES_DIR}/{spec.name}.csv"}
    if png is False:
        return links
    try:
        pngs.write([s.figure for s in specs], [fig_dir / f"{s.name}.png" for s in specs])
    except CapabilityError as exc:
        if png:
            raise
        log.warning("PNG figures skipped: %s", exc)
        return links
    for spec in specs:
        links[spec.name]["PNG"] = f"{FIGURES_DIR}/{spec.name}.png"
    return links


def _intro(run: RunData) -> str:
    meta = run.meta
    findings = summary.findings(run)
    failing = "".join(_finding_item(f) for f in findings if f.failing)
    passing = [f for f in findings if not f.failing]
    misses = (f'<h2>Where targets are missed</h2><ul class="summary">{failing}</ul>' if failing else "")
    met = (f'<details><summary>Where targets are met ({len(passing)} site class and app pairs)</summary>'
           f'<ul class="summary">{"".join(_finding_item(f) for f in passing)}</ul></details>' if passing else "")
    description = run.resolved.get("description", "")
    year = run.resolved.get("year")
    lead = f"{page.esc(year)} volumes, engine" if year is not None else "Engine"  # the year, where one is stated
    rows, total = site_table(run)
    sites = page.site_section(rows, total, {name: run.class_label(name) for name in rows["site_class"].unique()})
    return (f'<p class="meta">{page.esc(description)}</p>'
            f'<p class="meta">{lead} {page.esc(meta["engine"])}, seed {page.esc(meta["seed"])}, '
            f'{page.esc(meta["sessions"])} sessions, run {page.esc(meta.get("finished_utc", ""))}, '
            f'revision {page.esc((meta.get("git_revision") or "unknown")[:10])}.</p>'
            f'<p class="headline">{page.esc(summary.headline(run))}</p>{misses}{met}{_availability(run)}{sites}')


def _availability(run: RunData) -> str:
    """What line faults cost each site class a year, in words (a run made with ``--year``; else '')."""
    from sim.report.availability import class_sentences
    said = class_sentences(run)
    if not said:
        return ""
    items = "".join(f'<li class="availability" data-site-class="{page.esc(c)}">{page.esc(text)}</li>'
                    for c, text in said)
    return ('<h2>Hours lost to line faults</h2><p>Working hours a year a site cannot use the app, through a year of '
            f'line faults (mean over sampled years; availability.csv has every app).</p><ul>{items}</ul>')


def _finding_item(f: summary.Finding) -> str:
    """A summary line, carrying its numbers as data attributes (the browser test reads them)."""
    attrs = f'data-app="{page.esc(f.app)}" data-site-class="{page.esc(f.site_class)}"'
    shares = "".join(f'<span data-technology="{page.esc(t)}" data-share="{s:.6f}" data-sites="{n}"></span>'
                     for t, s, n, _ in f.shares)
    return f'<li class="{"fail" if f.failing else "pass"} finding" {attrs}>{page.esc(f.sentence())}{shares}</li>'


def compare(run_a: Path | str, run_b: Path | str, out: Path | str, *, png: bool | None = None) -> Path:
    """Write a comparison report of two runs into ``out``; return its path."""
    from sim.report import comparison
    return comparison.render(read_run(run_a), read_run(run_b), Path(out), png=png)


def render_plan(folder: Path | str) -> Path:
    """Write a capacity plan's page (``plan.html``) from its folder."""
    from sim.report import studies
    return studies.render_plan(folder)


def render_sweep(folder: Path | str) -> Path:
    """Write a sweep's page (``sweep.html``) from its folder."""
    from sim.report import studies
    return studies.render_sweep(folder)
