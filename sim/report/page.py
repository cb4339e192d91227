"""Assemble a self-contained HTML page: plotly.js inline, every scenario string escaped, print-friendly."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from sim.report.figures import FigureSpec, esc
from sim.units import significant

CSS = """
body { font-family: Arial, Helvetica, sans-serif; color: #1a1a1a; margin: 0 auto; max-width: 1120px; padding: 1.5rem;
       line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
.meta { color: #555; font-size: .9rem; } .headline { font-size: 1.15rem; font-weight: bold; margin: 1rem 0; }
.summary li { margin: .25rem 0; } .fail { color: #A33B00; } .pass { color: #004F7A; }
figure { margin: 0; page-break-inside: avoid; break-inside: avoid; }
.note { color: #444; font-size: .85rem; margin: .3rem 0 .6rem; }
table { border-collapse: collapse; font-size: .8rem; margin: .4rem 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f2f2f2; } details { margin-bottom: 1rem; } a { color: #0072B2; }
.sites-tools { margin: .4rem 0; } .sites-tools input { font-size: .9rem; padding: 2px 6px; min-width: 22rem; }
#site-table th { cursor: pointer; user-select: none; }
#site-table th[aria-sort="ascending"]::after { content: " \\25B2"; }
#site-table th[aria-sort="descending"]::after { content: " \\25BC"; } #site-table td.miss div { margin: 1px 0; }
.sites-scroll { max-height: 36rem; overflow: auto; } #site-table td:first-child { min-width: 8rem; }
@media print { body { max-width: none; padding: 0; } details { display: none; } .plot { width: 100% !important; } }
"""


def page(title: str, intro_html: str, figures: list[FigureSpec], links: dict[str, dict[str, str]]) -> str:
    """A whole report page: ``intro_html`` (already escaped), then each figure with its note, data and files."""
    body = [f"<h1>{esc(title)}</h1>", intro_html]
    for spec in figures:
        body.append(section(spec, links.get(spec.name, {})))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


SITE_SCRIPT = """
(function () {
  var table = document.getElementById('site-table'), input = document.getElementById('site-filter');
  var count = document.getElementById('site-count'), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  function show() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      if (!row.hidden) { shown += 1; }
    });
    count.textContent = shown + ' of ' + rows.length + ' sites shown';
  }
  function key(row, i, numeric) {
    var cell = row.cells[i], value = cell.getAttribute('data-value');
    if (numeric) { var n = parseFloat(value); return isNaN(n) ? Infinity : n; }
    return (value === null ? cell.textContent : value).toLowerCase();
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.addEventListener('click', function () {
      var numeric = th.getAttribute('data-type') === 'number';
      var up = th.getAttribute('aria-sort') !== 'ascending';
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
      rows.sort(function (a, b) {
        var x = key(a, i, numeric), y = key(b, i, numeric);
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  input.addEventListener('input', show);
  show();
})();
"""
SITE_COLUMNS = [("site", "text"), ("class", "text"), ("access", "text"), ("line length (km)", "number"),
                ("down (Mbit/s)", "number"), ("up (Mbit/s)", "number"), ("targets met", "number"),
                ("missed: measured (target): cause", "text"), ("worst share of sessions passing", "number")]


def site_section(sites: pd.DataFrame, total: int, labels: dict[str, str]) -> str:
    """The per-site table: filter by any words (a site's name, class, access, a target), sort by any column.

    Args:
        sites: One row per site, worst first (:func:`sim.report.data.site_table`).
        total: How many sites the run has (the table may list fewer).
        labels: Site class labels by name.
    """
    head = "".join(f'<th data-type="{kind}" scope="col">{esc(name)}</th>' for name, kind in SITE_COLUMNS)
    rows = "".join(_site_row(row, labels) for row in sites.itertuples(index=False))
    cut = (f" It lists the {len(sites):,} worst of {total:,} sites; site_verdicts.csv has every one."
           if len(sites) < total else "")
    return ('<section id="sites"><h2>Every site: the targets it misses, and why</h2>'
            '<p class="note">Worst first (most targets missed, then the lowest share of sessions passing). Each miss '
            'gives the median measure over the site\'s failed sessions against the target, and what limited them '
            f'(the engine\'s bottleneck, with the site\'s own line). Click a heading to sort.{esc(cut)}</p>'
            '<div class="sites-tools"><input id="site-filter" type="search" aria-label="Filter sites" '
            'placeholder="Filter: a site\'s name, class, access or target"> <span id="site-count"></span></div>'
            f'<div class="sites-scroll"><table id="site-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
            f"</table></div><script>{SITE_SCRIPT}</script></section>")


def _site_row(row, labels: dict[str, str]) -> str:
    length_km = row.distance_m / 1e3 if row.distance_m == row.distance_m else float("nan")
    misses = "".join(f"<div>{esc(text)}</div>" for text in row.misses) or "none"
    worst = row.worst_share
    cells = [(row.site, None), (labels.get(row.site_class, row.site_class), None), (row.access_profile, None),
             (f"{length_km:.3g}" if length_km == length_km else "", length_km),
             (significant(row.down_bps / 1e6), row.down_bps / 1e6), (significant(row.up_bps / 1e6), row.up_bps / 1e6),
             (f"{row.met} of {row.targets}", row.met - row.targets)]
    html = "".join(f"<td{_data_value(value)}>{esc(text)}</td>" for text, value in cells)
    html += f'<td class="miss">{misses}</td>'
    html += f"<td{_data_value(worst)}>{esc(f'{worst:.0%}' if worst == worst else '')}</td>"
    return f'<tr class="{"fail" if row.misses else "pass"}" data-site="{esc(row.site)}">{html}</tr>'


def _data_value(value: float | None) -> str:
    return "" if value is None or value != value else f' data-value="{value:.6g}"'


def section(spec: FigureSpec, files: dict[str, str]) -> str:
    """One figure: its finding as a heading, the interactive plot, its assumptions and its data."""
    figure = go.Figure(spec.figure)  # the heading states the finding; the PNG keeps it as the plot's title
    # Labels above the plot (subplot titles, a target's label) sit below the toolbar's band, not under it.
    above = any(a.yref == "paper" and (a.y or 0) >= 0.99 for a in figure.layout.annotations)
    figure.update_layout(title_text="", margin_t=64 if above else 30)
    plot = pio.to_html(figure, full_html=False, include_plotlyjs=False, div_id=f"fig-{spec.name}",
                       config={"displaylogo": False, "responsive": True})
    downloads = " · ".join(f'<a href="{esc(path)}">{esc(label)}</a>' for label, path in files.items())
    return (f'<section class="figure" id="{esc(spec.name)}"><h2>{esc(spec.title)}</h2>'
            f'<figure class="plot">{plot}</figure>'
            f'<p class="note">{esc(spec.footnote)}</p>'
            f"<details><summary>Data behind this figure{(' (' + downloads + ')') if downloads else ''}</summary>"
            f"{table(spec.table)}</details></section>")


def table(frame: pd.DataFrame) -> str:
    """An HTML table of a figure's data, every cell escaped, shares as percentages."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = "".join(f"<td>{esc(_fmt(column, v))}</td>" for column, v in zip(frame.columns, values))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _fmt(column: str, value: object) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return ""
        if "share" in column or column in ("within_limit", "at_recommended", "below_minimum", "between") \
                or "utilisation" in column or column.startswith("peak"):
            return f"{value:.1%}"
        return f"{value:.4g}"
    return str(value)
