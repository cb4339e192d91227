"""The report's figures: each states its finding in its title, draws its target, carries its data and assumptions."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from sim.report.data import RunData, by_technology, technology_rank
from sim.text import visible
from sim.units import significant

MATRIX_COLUMNS = 4  # apps side by side in the compliance matrix; more go on further rows
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PASS, FAIL, NEUTRAL = "#0072B2", "#D55E00", "#999999"
EMPTY, NO_SITES = "#EEEEEE", "no sites"  # a matrix cell with no site of that class on that technology
SERIES = ["#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000"]
MEDIUM_COLOURS = {"copper": "#E69F00", "fibre": "#0072B2", "radio": "#009E73", "cable": "#CC79A7"}
# One colour per access technology in every figure (copper warm, fibre blue, radio green); others take the rest.
TECHNOLOGY_COLOURS = {"ADSL": "#F0E442", "ADSL2+": "#E69F00", "FTTC": "#D55E00", "G.fast": "#CC79A7",
                      "EFM": "#882255", "FTTP": "#56B4E9", "Leased line": "#0072B2", "4G": "#009E73",
                      "5G": "#117733", "Home broadband": "#999999"}


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a report: its file name, finding (title), plot, data and assumptions."""

    name: str
    title: str
    figure: go.Figure
    table: pd.DataFrame
    footnote: str


def esc(text: object) -> str:
    """Escape a string from a scenario before it goes into a figure (plotly reads entities as text).

    Control and bidirectional-override characters become visible escapes first (:func:`sim.text.visible`).
    """
    return html.escape(visible(str(text)), quote=True)


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    # The template as plotly's registry holds it: given by name, it is looked up and copied twice per figure (half
    # of a figure's layout time); the figure's JSON is the same.
    fig.update_layout(title={"text": esc(title), "x": 0.01, "font": {"size": 16}}, height=height,
                      template=pio.templates["simple_white"],
                      font={"family": "Arial, Helvetica, sans-serif", "size": 13},
                      margin={"l": 70, "r": 30, "t": 70, "b": 60},
                      # Beside the plot: the margin grows to fit it (below, it met the x axis's title in short plots).
                      legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"})
    return fig


def technology_colour(technology: str) -> str:
    """The colour of an access technology, the same in every figure (a technology not listed: black)."""
    return TECHNOLOGY_COLOURS.get(technology, "#000000")


LOG_TICK_DECADES = 3  # a choice of layout: ten 1-2-5 labels fit under a half-width subplot, sixteen do not


def log_ticks(values) -> dict:
    """Ticks of 1, 2 and 5 in each decade for a log axis that must show ``values`` (the data's units), labelled whole.

    Over more than ``LOG_TICK_DECADES`` decades, powers of ten alone (so the labels fit side by side).

    Returns the axis settings (``tickvals``, ``ticktext``): the ticks from the last one at or below the least value
    to the first at or above the greatest, each written as a reader writes it ("0.5", "20", "1,000"), where
    plotly's own log ticks label the minor ones by their first digit alone ("2 3 4 ... 100"). No finite positive
    value: no settings (plotly's own).
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return {}
    low, high = values.min(), values.max()
    steps = (1, 2, 5) if high / low <= 10**LOG_TICK_DECADES else (1,)  # wider: powers of ten alone
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in steps]
    first = max(t for t in ticks if t <= low * (1 + 1e-12))
    last = min(t for t in ticks if t >= high * (1 - 1e-12))
    kept = [t for t in ticks if first <= t <= last]
    return {"tickvals": kept, "ticktext": [significant(t) for t in kept]}


def target_line(fig: go.Figure, *, x: float | None = None, y: float | None = None, text: str, log_x: bool = False,
                **where) -> None:
    """Draw a target as a black dashed line with its label (the template's pale shape defaults overridden)."""
    line = {"dash": "dash", "color": "black", "width": 2}
    if x is not None:
        fig.add_vline(x=x, line=line, opacity=1, **where)
        col = where.get("col", 1)  # a subplot's own x axis: x, x2, ... (its label sits above the plot)
        if text:
            fig.add_annotation(x=np.log10(x) if log_x else x, y=1.0, xref="x" if col == 1 else f"x{col}",
                               yref="paper", text=esc(text), showarrow=False, xanchor="left", yanchor="bottom",
                               font={"size": 12})
    else:
        fig.add_hline(y=y, line=line, opacity=1, annotation_text=esc(text), annotation_position="top left", **where)


def compliance_matrix(run: RunData) -> FigureSpec:
    """Site class x access technology, per app: share of sites meeting the target, coloured pass or fail."""
    table = by_technology(run.classes, run.site_bar)
    names = run.app_names
    apps = [a for a in names if a in set(table["app"])]
    techs = sorted(set(table["technology"]), key=technology_rank)
    classes = sorted(set(table["site_class"]))
    n_cols = min(len(apps), MATRIX_COLUMNS)
    n_rows = -(-len(apps) // n_cols)
    height = 130 + n_rows * (95 + 46 * len(classes))  # 95 px a row for its title and slanted technology names
    fig = make_subplots(rows=n_rows, cols=n_cols, shared_yaxes=True, horizontal_spacing=0.02,
                        vertical_spacing=95 / (height - 130) if n_rows > 1 else 0.0,
                        subplot_titles=[esc(names[a]) for a in apps])
    for k, app in enumerate(apps):
        row, col = k // n_cols + 1, k % n_cols + 1
        grid = table[table["app"] == app].set_index(["site_class", "technology"])
        z = [[_cell(grid, c, t, "passed") for t in techs] for c in classes]
        text = [[_share_text(grid, c, t) for t in techs] for c in classes]
        fig.add_trace(go.Heatmap(z=z, x=[esc(t) for t in techs], y=[esc(run.class_label(c)) for c in classes],
                                 text=text, texttemplate="%{text}", zmin=0, zmax=1, showscale=False, xgap=2, ygap=2,
                                 colorscale=[[0, FAIL], [0.3, FAIL], [0.3, EMPTY], [0.7, EMPTY], [0.7, PASS],
                                             [1, PASS]], textfont={"size": 11},
                                 customdata=[[f"{v} of sites pass" if v != NO_SITES else
                                              "no site of this class on this technology" for v in r] for r in text],
                                 hovertemplate="%{y}<br>%{x}: %{customdata}<extra></extra>"), row, col)
    failing = table[~table["passed"]]
    title = ("Every site class meets every target on every access technology" if failing.empty else
             f"Targets missed on {', '.join(sorted(set(failing['technology']), key=technology_rank))}")
    empty = len(classes) * len(techs) * len(apps) - len(table)
    title += f" (blue: at least {run.site_bar:.0%} of sites pass; orange: fewer{'; grey: no sites' if empty else ''})"
    _layout(fig, title, height=height)
    fig.update_xaxes(tickangle=-30)
    fig.update_annotations(font_size=12)
    out = table.assign(site_class=table["site_class"].map(run.class_label))
    note = _pass_bar_note(run) + (f" Grey cells ({NO_SITES!r}): the scenario has no site of that class on that "
                                  "technology, or none that the app's target applies to." if empty else "")
    return FigureSpec("compliance", title, fig, out[["site_class", "technology", "app", "sites", "sites_passing",
                                                     "share_passing", "passed"]], note)


def _cell(grid: pd.DataFrame, site_class: str, tech: str, column: str) -> float:
    """1 pass, 0 fail, 0.5 no sites (drawn grey)."""
    return float(grid.loc[(site_class, tech), column]) if (site_class, tech) in grid.index else 0.5


def _share_text(grid: pd.DataFrame, site_class: str, tech: str) -> str:
    return f"{grid.loc[(site_class, tech), 'share_passing']:.0%}" if (site_class, tech) in grid.index else NO_SITES


def _pass_bar_note(run: RunData) -> str:
    targets = run.resolved["targets"]
    bars, limit = targets["passing"], targets["link"]["busy_hour_utilisation"]
    return (f"A site passes an app when at least {bars['sessions']:.0%} of its sessions meet every target; a site "
            f"class passes when at least {bars['sites']:.0%} of its sites pass (both bars are assumptions). "
            "Targets (this run's, from its resolved targets; sources in docs/sources.md S11): ITU-T G.114 (delay), "
            f"Microsoft Teams guidance (jitter, loss), NHS Digital's advice on busy-hour utilisation (limit "
            f"{limit:.0%}); transfer-time limits are assumptions.")


def link_utilisation(run: RunData) -> FigureSpec | None:
    """The busiest site on each access technology: its access link's utilisation over the day, with the 75% line."""
    busy = run.sites[run.sites["app"] == "link"].copy()
    if busy.empty:
        return None
    picks = busy.sort_values("value", ascending=False).groupby("technology", sort=False).head(1)
    picks = picks.sort_values("technology", key=lambda s: s.map(technology_rank))
    limit = float(run.resolved["targets"]["link"]["busy_hour_utilisation"])
    window = run.resolved["window"]
    fig, rows = go.Figure(), []
    links = run.site_links(picks["site"].tolist())
    for site in picks.itertuples(index=False):
        series = _busiest_direction(links, site.site, window)
        fig.add_trace(go.Scatter(x=series.index / 3600.0, y=series.to_numpy(), mode="lines",
                                 name=esc(f"{site.technology}: {site.site} ({series.name})"),
                                 line={"color": technology_colour(site.technology), "width": 2}))
        rows.append({"technology": site.technology, "site": site.site, "direction": series.name,
                     "busy_hour_utilisation": float(site.value), "peak_15min": float(series.max())})
    target_line(fig, y=limit, text=f"{limit:.0%}: review line")
    table = pd.DataFrame(rows)
    top = table.sort_values("busy_hour_utilisation").iloc[-1]
    title = (f"Busiest access links: {top['technology']} ({top['direction']}) averages "
             f"{top['busy_hour_utilisation']:.0%} over its busy hour")
    _layout(fig, title)
    fig.update_layout(showlegend=True)
    fig.update_xaxes(title_text="hour of day")
    fig.update_yaxes(title_text="utilisation (15-minute mean)", tickformat=".0%", rangemode="tozero")
    profiles = run.resolved["catalogue"]["profiles"]
    buffers = sorted({f"{p} {_buffer_text(profiles[p]['buffer_up'])} up, {_buffer_text(profiles[p]['buffer_down'])} "
                      "down" for p in picks["access_profile"] if p in profiles})
    note = (f"One site per access technology: the one with the busiest hour. {limit:.0%}: this run's busy-hour "
            "limit (targets: link.busy_hour_utilisation), after NHS Digital's advice to review sites whose busy "
            f"hour fills their line (docs/sources.md S11). Access buffers (a time is at the line's rate that way): "
            f"{'; '.join(buffers)} (the profiles' own, docs/sources.md S1).")
    return FigureSpec("utilisation", title, fig, table, note)


def _busiest_direction(links: pd.DataFrame, site: str, window: dict) -> pd.Series:
    best = None
    for direction, frame in links[links["site"] == site].groupby("direction"):
        inside = frame[(frame["bin_start_s"] >= window["start"]) & (frame["bin_start_s"] < window["end"])]
        bins = max(1, round(900.0 / float(frame["bin_s"].iat[0])))
        series = inside.set_index("bin_start_s")["utilisation"].rolling(bins, min_periods=1).mean()
        series.name = direction
        if best is None or series.max() > best.max():
            best = series
    return best


def copper_vs_fibre(run: RunData) -> FigureSpec:
    """Share of sites meeting each target, on copper and on fibre side by side."""
    sites = run.sites
    per_app = sites.groupby(["medium", "app"])["passed"].mean().rename("share").reset_index()
    every = sites.groupby(["medium", "site"])["passed"].all().groupby("medium").mean().rename("share").reset_index()
    every["app"] = "all"
    table = pd.concat([per_app, every], ignore_index=True)
    apps = [a for a in run.app_names if a in set(table["app"])] + ["all"]
    names = {**run.app_names, "all": "every target"}
    fig = go.Figure()
    for medium in [m for m in ("copper", "fibre", "radio", "cable") if m in set(table["medium"])]:
        rows = table[table["medium"] == medium].set_index("app").reindex(apps)
        fig.add_trace(go.Bar(x=[names[a] for a in apps], y=rows["share"], name=medium,
                             marker_color=MEDIUM_COLOURS[medium],
                             text=[f"{v:.0%}" if pd.notna(v) else "" for v in rows["share"]], textposition="outside"))
    target_line(fig, y=run.site_bar, text=f"{run.site_bar:.0%}: the pass bar for a site class")
    shares = every.set_index("medium")["share"]
    title = "Sites meeting every target: " + "; ".join(f"{m} {shares[m]:.0%}" for m in shares.index)
    _layout(fig, title)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="share of sites", tickformat=".0%", range=[0, 1.12])
    note = _mix_note(run)
    return FigureSpec("copper-vs-fibre", title, fig, table[["medium", "app", "share"]], note)


def _mix_note(run: RunData) -> str:
    """Which technologies each medium holds in this run, and its mix of sites (from the run's own sites)."""
    per_site = run.sites.drop_duplicates("site")
    counts = per_site["medium"].value_counts()
    techs = per_site.groupby("medium")["technology"].unique()
    kinds = "; ".join(f"{m}: {', '.join(sorted(techs[m], key=technology_rank))}" for m in counts.index)
    mix = ", ".join(f"{n} on {m} ({n / len(per_site):.0%})" for m, n in counts.items())
    return (f"{kinds[:1].upper() + kinds[1:]}. The mix of access is scenario {run.name}'s own: {len(per_site)} "
            f"sites, {mix}.")


FIDELITY_METRICS = {"median_completion_s": "median completion (s)", "p95_completion_s": "P95 completion (s)",
                    "stream_compliance": "calls meeting every target of their app", "mean_one_way_delay_s":
                    "mean one-way delay (s)", "mean_rate_bps": "mean call rate (bit/s)",
                    "completed_share": "transfers completed"}


def fidelity(run: RunData) -> FigureSpec | None:
    """Simulator against emulation on the same slice: each metric per app and access profile, both engines."""
    table = run.fidelity
    if table is None or table.empty:
        return None
    table = table[table["metric"] != "completed_share"]
    panels = list(dict.fromkeys(zip(table["app"], table["metric"])))
    fig = make_subplots(rows=len(panels), cols=1, vertical_spacing=0.5 / max(len(panels), 1),
                        subplot_titles=[esc(f"{run.app_names.get(a, a)}: {FIDELITY_METRICS.get(m, m)}")
                                        for a, m in panels])
    for row, (app, metric) in enumerate(panels, start=1):
        part = table[(table["app"] == app) & (table["metric"] == metric)]
        for column, name, colour, symbol in (("emu", "emulation (real packets)", PASS, "circle"),
                                             ("des", "simulator", FAIL, "diamond")):
            fig.add_trace(go.Scatter(x=part[column], y=[esc(p) for p in part["access_profile"]], mode="markers",
                                     name=esc(name), showlegend=row == 1,
                                     marker={"color": colour, "symbol": symbol, "size": 11}), row, 1)
    worst = table.loc[table["relative"].abs().idxmax()] if table["relative"].notna().any() else None
    title = ("Simulator vs emulation on the same sessions" + (
        f": largest gap {worst['relative']:+.0%} ({worst['app']} {worst['metric']} on {worst['access_profile']})"
        if worst is not None else ""))
    _layout(fig, title, height=160 + 150 * len(panels))
    fig.update_xaxes(rangemode="tozero")  # gaps read against the whole figure, not a zoomed-in sliver
    note = ("Both engines replayed the same sites, window and sessions; the emulation (real Linux TCP and UDP on "
            "shaped links, delay by the method in meta.json) is the reference. Tolerances and why: docs/fidelity.md.")
    return FigureSpec("fidelity", title, fig, table, note)


def all_figures(run: RunData) -> list[FigureSpec]:
    """Every figure of a run's report, in reading order."""
    from sim.report.sessions import completion_cdfs, stream_quality  # they draw with this module's helpers
    figures = [compliance_matrix(run), copper_vs_fibre(run), *stream_quality(run), *completion_cdfs(run),
               link_utilisation(run), fidelity(run)]
    return [f for f in figures if f is not None]


def _buffer_text(buffer: dict) -> str:
    """A resolved buffer (``{"seconds": ...}`` or ``{"size_bytes": ...}``) as the catalogue writes it."""
    if buffer.get("seconds") is not None:
        return f"{buffer['seconds'] * 1e3:.4g} ms"
    return f"{buffer['size_bytes'] / 1e3:.4g} kB"
