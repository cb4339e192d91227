"""Assemble a self-contained HTML page: plotly.js inline, every scenario string escaped, print-friendly."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from sim.report.figures import FigureSpec, esc

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
