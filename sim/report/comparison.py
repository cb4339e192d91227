"""Compare two runs (e.g. baseline-2019 vs full-fibre): what changes, for which site class."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.report import pngs
from sim.report.availability import availability_changes
from sim.report.data import RunData
from sim.report.figures import FAIL, PASS, FigureSpec, _layout, esc
from sim.report.page import esc as html_esc
from sim.report.page import page

COMPARE_FILE = "compare.html"


def shares(run: RunData) -> pd.DataFrame:
    """Share of each site class's sites passing each app (all access profiles pooled)."""
    out = run.classes.groupby(["site_class", "app"]).agg(sites=("sites", "sum"), passing=("sites_passing", "sum"))
    out["share"] = out["passing"] / out["sites"]
    return out.reset_index()


def joined(a: RunData, b: RunData) -> pd.DataFrame:
    """Both runs' shares side by side, with the change in percentage points."""
    table = shares(a).merge(shares(b), on=["site_class", "app"], how="outer", suffixes=("_a", "_b"))
    table["change"] = table["share_b"] - table["share_a"]
    table["label"] = [a.class_label(c) if c in a.resolved["catalogue"]["site_classes"] else b.class_label(c)
                      for c in table["site_class"]]
    return table.sort_values(["app", "site_class"]).reset_index(drop=True)


def figure(a: RunData, b: RunData, table: pd.DataFrame) -> FigureSpec:
    """A dumbbell per app: each site class's share of sites passing in run A and in run B."""
    names = {**b.app_names, **a.app_names}
    apps = [app for app in names if app in set(table["app"])]
    fig = make_subplots(rows=1, cols=len(apps), shared_yaxes=True, subplot_titles=[esc(names[x]) for x in apps])
    for col, app in enumerate(apps, start=1):
        rows = table[table["app"] == app]
        labels = [esc(v) for v in rows["label"]]
        for x0, x1, y in zip(rows["share_a"], rows["share_b"], labels):
            fig.add_trace(go.Scatter(x=[x0, x1], y=[y, y], mode="lines", line={"color": "#999"}, showlegend=False,
                                     hoverinfo="skip"), 1, col)
        for column, name, colour, symbol in (("share_a", a.name, FAIL, "circle"), ("share_b", b.name, PASS, "diamond")):
            fig.add_trace(go.Scatter(x=rows[column], y=labels, mode="markers", name=esc(name), showlegend=col == 1,
                                     marker={"color": colour, "size": 11, "symbol": symbol}), 1, col)
        fig.add_vline(x=a.site_bar, line={"dash": "dash", "color": "black", "width": 2}, opacity=1, row=1, col=col)
    improved = table[table["change"] > 0.005]
    title = (f"{b.name} vs {a.name}: {len(improved)} of {len(table)} site-class targets improve"
             f" (dashed: the {a.site_bar:.0%} pass bar)")
    _layout(fig, title, height=200 + 40 * table["site_class"].nunique())
    fig.update_xaxes(range=[-0.05, 1.05], tickformat=".0%", title_text="share of sites meeting the target")
    note = (f"Shares pool every access profile a site class has in each scenario. {a.name}: seed {a.meta['seed']}; "
            f"{b.name}: seed {b.meta['seed']}.")
    data = table[["label", "app", "sites_a", "share_a", "sites_b", "share_b", "change"]]
    return FigureSpec("comparison", title, fig, data, note)


def sentences(a: RunData, b: RunData, table: pd.DataFrame) -> list[str]:
    """What changes, one line per site class and app whose share moved, largest change first."""
    moved = table[table["change"].abs() > 0.005].sort_values("change", ascending=False)
    names = {**b.app_names, **a.app_names}
    return [f"{row.label}, {names.get(row.app, row.app)}: {row.share_a:.0%} of sites meet the target in {a.name}, "
            f"{row.share_b:.0%} in {b.name} ({row.change * 100:+.0f} points)." for row in moved.itertuples()]


def render(a: RunData, b: RunData, out: Path, *, png: bool | None = None) -> Path:
    """Write ``compare.html`` (and the figure as CSV and PNG) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table = joined(a, b)
    spec = figure(a, b, table)
    spec.table.to_csv(out / f"{spec.name}.csv", index=False)
    files = {"CSV": f"{spec.name}.csv"}
    if png is not False and (png or pngs.browser()):
        pngs.write([spec.figure], [out / f"{spec.name}.png"])
        files["PNG"] = f"{spec.name}.png"
    lines = sentences(a, b, table) or ["No site class's share of passing sites changes."]
    intro = (f'<p class="meta">A: {html_esc(a.folder)}<br>B: {html_esc(b.folder)}</p><h2>What changes</h2><ul>'
             + "".join(f'<li class="change">{html_esc(s)}</li>' for s in lines) + "</ul>")
    faults = availability_changes(a, b)  # both runs made with `run --year`
    if faults:
        intro += ("<h2>Availability through line faults</h2><ul>"
                  + "".join(f'<li class="availability">{html_esc(s)}</li>' for s in faults) + "</ul>")
    path = out / COMPARE_FILE
    path.write_text(page(f"{a.name} vs {b.name}", intro, [spec], {spec.name: files}), encoding="utf-8")
    return path
