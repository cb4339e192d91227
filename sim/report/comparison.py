"""Compare two runs, A and B (e.g. one scenario on today's lines and on full fibre): what changes, for which class.

A is always named first: in the page's title, the figure's title and its legend.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.report import pngs
from sim.report.availability import availability_story
from sim.report.data import RunData
from sim.report.figures import FAIL, PASS, FigureSpec, _layout, esc
from sim.report.page import esc as html_esc
from sim.report.page import page

COMPARE_FILE = "compare.html"
CHANGES_FILE = "changes.txt"  # the page's headline and its sentences, as text (the command prints them)
COLUMNS = 4  # apps side by side; more go on further rows
MOVED = 0.005  # a change of less than half a percentage point is "unchanged" (shares are shown to 1%)


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


def counts(table: pd.DataFrame) -> dict[str, int]:
    """How many site-class targets improved, got worse, did not change, or are in one run only."""
    change = table["change"]
    return {"improved": int((change > MOVED).sum()), "worse": int((change < -MOVED).sum()),
            "unchanged": int((change.abs() <= MOVED).sum()), "one run only": int(change.isna().sum())}


def run_names(a: RunData, b: RunData) -> tuple[str, str]:
    """How the sentences name A and B: by scenario; two runs of one scenario also by seed and folder.

    (The figure's title and legend keep the scenario's name, short enough for the plot: its note says which run
    is A and which B.)
    """
    if a.name != b.name:
        return a.name, b.name
    return tuple(f"{run.name} (seed {run.meta.get('seed')}, {run.folder.name})" for run in (a, b))


def headline(a: RunData, b: RunData, table: pd.DataFrame) -> str:
    """A then B, and the count of targets improved, worse and unchanged, e.g. 'A → B: 2 of 16 improved, ...'."""
    n = counts(table)
    parts = [f"{n['improved']} improved", f"{n['worse']} worse", f"{n['unchanged']} unchanged"]
    if n["one run only"]:
        parts.append(f"{n['one run only']} in one run only")
    return f"A {a.name} → B {b.name}: of {len(table)} site-class targets, " + ", ".join(parts)


def figure(a: RunData, b: RunData, table: pd.DataFrame) -> FigureSpec:
    """A dumbbell per app: each site class's share of sites passing in run A and in run B, apps in a grid."""
    names = {**b.app_names, **a.app_names}
    apps = [app for app in names if app in set(table["app"])]
    n_cols = min(len(apps), COLUMNS)
    n_rows = -(-len(apps) // n_cols)
    block_px = 40 * table["site_class"].nunique() + 40
    height = 210 + n_rows * (block_px + 70)  # 70 px a row for its tick labels and two-line title
    titles = ["<br>".join(textwrap.wrap(esc(names[x]), 24, break_long_words=False)) for x in apps]
    fig = make_subplots(rows=n_rows, cols=n_cols, shared_yaxes=True, horizontal_spacing=0.03,
                        vertical_spacing=70 / (height - 180) if n_rows > 1 else 0.0, subplot_titles=titles)
    for k, app in enumerate(apps):
        _dumbbells(fig, a, b, table[table["app"] == app], (k // n_cols + 1, k % n_cols + 1), legend=k == 0)
    bars = (f"the {a.site_bar:.0%} pass bar" if a.site_bar == b.site_bar else
            f"A's {a.site_bar:.0%} pass bar; B's is {b.site_bar:.0%}")
    title = headline(a, b, table) + f" (dashed: {bars})"
    _layout(fig, title, height=height)
    fig.update_xaxes(range=[-0.05, 1.05], tickformat=".0%", tickvals=[0, 0.5, 1], showticklabels=True)
    fig.add_annotation(text="share of sites meeting the target (each panel)", x=0.5, y=0, xref="paper",
                       yref="paper", yshift=-30, showarrow=False, xanchor="center", yanchor="top",
                       font={"size": 13})
    fig.update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom",
                              "yref": "container"}, margin={"b": 110})
    note = (f"Shares pool every access profile a site class has in each scenario. Improved or worse: a change of at "
            f"least {MOVED * 100:g} percentage points. A {a.name}: seed {a.meta['seed']}, {a.folder.name}; "
            f"B {b.name}: seed {b.meta['seed']}, {b.folder.name}.")
    data = table[["label", "app", "sites_a", "share_a", "sites_b", "share_b", "change"]]
    return FigureSpec("comparison", title, fig, data, note)


def _dumbbells(fig: go.Figure, a: RunData, b: RunData, rows: pd.DataFrame, where: tuple[int, int],
               legend: bool) -> None:
    """One app's panel: a grey bar from A to B per site class, A a circle, B a diamond, the pass bar dashed."""
    labels = [esc(v) for v in rows["label"]]
    for x0, x1, y in zip(rows["share_a"], rows["share_b"], labels):
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y, y], mode="lines", line={"color": "#999"}, showlegend=False,
                                 hoverinfo="skip"), *where)
    for column, name, colour, symbol in (("share_a", f"A: {a.name}", FAIL, "circle"),
                                         ("share_b", f"B: {b.name}", PASS, "diamond")):
        fig.add_trace(go.Scatter(x=rows[column], y=labels, mode="markers", name=esc(name), showlegend=legend,
                                 marker={"color": colour, "size": 11, "symbol": symbol}), *where)
    fig.add_vline(x=a.site_bar, line={"dash": "dash", "color": "black", "width": 2}, opacity=1, row=where[0],
                  col=where[1])


def sentences(a: RunData, b: RunData, table: pd.DataFrame) -> list[str]:
    """What changes, one line per site class and app whose share moved, largest change first."""
    moved = table[table["change"].abs() > 0.005].sort_values("change", ascending=False)
    names = {**b.app_names, **a.app_names}
    name_a, name_b = run_names(a, b)
    return [f"{row.label}, {names.get(row.app, row.app)}: {row.share_a:.0%} of sites meet the target in {name_a}, "
            f"{row.share_b:.0%} in {name_b} ({row.change * 100:+.0f} points)." for row in moved.itertuples()]


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
    intro = (f'<p class="meta">A: {html_esc(a.folder)}<br>B: {html_esc(b.folder)}</p>'
             f'<p class="headline">{html_esc(headline(a, b, table))}.</p><h2>What changes</h2><ul>'
             + "".join(f'<li class="change">{html_esc(s)}</li>' for s in lines) + "</ul>")
    faults = availability_story(a, b)  # both runs made with `run --year`
    if faults:
        intro += ("<h2>Availability through line faults</h2><ul>"
                  + "".join(f'<li class="availability">{html_esc(s)}</li>' for s in faults) + "</ul>")
    (out / CHANGES_FILE).write_text("\n".join([headline(a, b, table) + ".", *lines, *faults]) + "\n",
                                    encoding="utf-8")
    path = out / COMPARE_FILE
    path.write_text(page(f"A {a.name} vs B {b.name}", intro, [spec], {spec.name: files}), encoding="utf-8")
    return path
