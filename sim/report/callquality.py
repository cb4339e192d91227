"""Call quality in the report: the share of each scored app's calls that were good, degraded but usable, or unusable.

Read from the run's session verdicts (``mos`` and ``quality``, scored after the records by :mod:`sim.quality`), per
site class and access technology.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.errors import TestbedError
from sim.quality import LABELS
from sim.report.data import RunData, technology_rank
from sim.report.figures import PASS, FigureSpec, _layout, esc, target_line

SESSION_FIELDS = ["app", "site_class", "technology", "mos", "quality"]
BANDS = ["good", "degraded but usable", "unusable"]
GOOD_MOS, USABLE_MOS = LABELS["high"].min_mos, LABELS["poor"].min_mos  # G.109's bands, as sim.quality scores them
QUANTILES = {"p5_mos": 0.05, "p25_mos": 0.25, "median_mos": 0.5, "p75_mos": 0.75, "p95_mos": 0.95}


def quality_table(run: RunData) -> pd.DataFrame:
    """Per app, site class and technology: calls scored, MOS quantiles and the share in each quality band."""
    sessions = run.table("session_verdicts", SESSION_FIELDS, text_as_categories=True)  # millions of rows
    calls = sessions[(sessions["quality"] != "").to_numpy()]
    columns = ["app", "site_class", "technology", "calls", *QUANTILES, *BANDS]
    if calls.empty:
        return pd.DataFrame(columns=columns)
    keys = ["app", "site_class", "technology"]
    calls = calls.assign(**{name: _sorted_categories(calls[name]) for name in [*keys, "quality"]})
    grouped = calls.groupby(keys, observed=True)["mos"]
    stats = grouped.size().rename("calls").to_frame()
    quantiles = grouped.quantile(list(QUANTILES.values())).unstack()  # every quantile from one sort of the calls
    for name, q in QUANTILES.items():
        stats[name] = quantiles[q]
    counts = calls.groupby([*keys, "quality"], observed=True).size().unstack(fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0)  # as pandas' crosstab normalised by row gives, at a third the time
    stats = stats.join(shares.reindex(columns=list(BANDS), fill_value=0.0)).reset_index()
    return stats[columns].astype({name: "str" for name in keys})


def _sorted_categories(column: pd.Series) -> pd.Series:
    """A text column as categoricals of only the values it holds, in the order a grouping by text sorts them."""
    column = column.astype("category").cat.remove_unused_categories()
    return column.cat.reorder_categories(sorted(column.cat.categories.astype(str)))


def quality_figure(run: RunData) -> FigureSpec | None:
    """Per scored app, the distribution of its calls' MOS for each site class on each technology, with the bar."""
    try:
        table = quality_table(run)
    except TestbedError:
        return None
    if table.empty:
        return None
    apps = [a for a in run.app_names if a in set(table["app"])]
    bars = {a: run.resolved["targets"]["streams"].get(a, {}).get("mos") for a in apps}
    fig = make_subplots(rows=1, cols=len(apps), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[esc(run.app_names[a] + (f" (bar: MOS {bars[a]:g})" if bars[a] else ""))
                                        for a in apps])
    rows = table.assign(rank=table["technology"].map(technology_rank)).sort_values(["site_class", "rank"])
    label = [esc(f"{run.class_label(c)} · {t}") for c, t in zip(rows["site_class"], rows["technology"])]
    rows = rows.assign(label=label)
    for col, app in enumerate(apps, start=1):
        part = rows[rows["app"] == app]
        fig.add_trace(go.Box(y=part["label"], q1=part["p25_mos"], median=part["median_mos"], q3=part["p75_mos"],
                             lowerfence=part["p5_mos"], upperfence=part["p95_mos"], orientation="h",
                             marker_color=PASS, name=esc(run.app_names[app]), showlegend=False), 1, col)
        if bars[app] is not None:
            target_line(fig, x=float(bars[app]), text="", row=1, col=col)
    worst = table.sort_values(["unusable", "median_mos"], ascending=[False, True]).iloc[0]
    title = (f"Call quality: {worst['unusable']:.0%} of {run.app_names.get(worst['app'], worst['app'])} on "
             f"{worst['technology']} at {run.class_label(worst['site_class'])} sites are unusable "
             f"(MOS < {USABLE_MOS:.1f})"
             if worst["unusable"] > 0 else
             f"Call quality: the lowest median is MOS {table['median_mos'].min():.2f}; no scored call is unusable")
    _layout(fig, title, height=180 + 30 * rows["label"].nunique())
    fig.update_xaxes(range=[1, 4.6])
    fig.update_xaxes(title_text="MOS (box: quartiles; whiskers: 5th-95th percentile)", row=1, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=list(dict.fromkeys(rows["label"]))[::-1])
    note = _note(run, bars)
    return FigureSpec("call-quality", title, fig, table, note)


def _note(run: RunData, bars: dict[str, float | None]) -> str:
    """How calls are scored, the G.109 bands as :mod:`sim.quality` applies them, and this run's MOS bars."""
    named = ", ".join(f"{run.app_names[a]} {b:g}" for a, b in bars.items() if b)
    return ("Opinion score per call from its worse direction's delay, jitter, loss and (video) rate: speech by the "
            "ITU-T G.107 E-model (G.711 with loss concealment), video by ITU-T G.1070 (H.264 VGA coefficients from "
            f"public implementations), the call the worse of the two. Bands by ITU-T G.109: {GOOD_MOS:.1f} and above "
            f"good, {USABLE_MOS:.1f}-{GOOD_MOS:.1f} degraded but usable, below {USABLE_MOS:.1f} unusable. Dashed "
            f"lines: each app's bar in this run's targets{f' (MOS {named})' if named else ''}. Limits and assumptions "
            "(jitter buffer, 25 fps): docs/quality.md.")
