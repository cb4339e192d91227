"""Report pages for studies of many runs: a capacity plan (``plan.html``) and a sweep (``sweep.html``).

Each is drawn from its folder alone (``plan.csv``, ``curve.csv``, ``products.csv`` or ``sweep.csv``, and
``meta.json``), with the target drawn on every plot, like a run's report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.errors import TestbedError
from sim.report import plan_backup
from sim.report.data import app_labels
from sim.report.figures import FAIL, PASS, SERIES, FigureSpec, _layout, esc, log_ticks, target_line
from sim.report.page import esc as html_esc
from sim.report.page import page
from sim.units import significant

PLAN_FILE, SWEEP_FILE = "plan.html", "sweep.html"


def _read(folder: Path, *names: str) -> list[pd.DataFrame]:
    try:
        return [pd.read_csv(folder / name, keep_default_na=False, na_values=[""]) for name in names]
    except (OSError, pd.errors.ParserError) as exc:
        raise TestbedError(f"{folder}: cannot read the study's tables ({exc})") from None


def _meta(folder: Path) -> dict:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise TestbedError(f"{folder}: cannot read meta.json ({exc})") from None


def _mbps(value_bps: float) -> str:
    return "—" if not np.isfinite(value_bps) else f"{significant(value_bps / 1e6)} Mbit/s"


# ---- capacity plan -----------------------------------------------------------------------------------------


def plan_needs(summary: pd.DataFrame, target_share: float) -> FigureSpec:
    """Per site class: the least capacity each way (mean and 95% CI) and the cheapest product's rates."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=["Download (to the site)",
                                                                          "Upload (from the site)"])
    labels = [esc(c) for c in summary["site_class"]]
    for col, d in enumerate(("down", "up"), start=1):
        need, low, high = (summary[f"{d}_need_bps"], summary[f"{d}_ci_low_bps"], summary[f"{d}_ci_high_bps"])
        fig.add_trace(go.Scatter(
            x=need / 1e6, y=labels, mode="markers", name="least capacity (mean of seeds)", showlegend=col == 1,
            marker={"color": PASS, "size": 11},
            error_x={"type": "data", "symmetric": False, "array": (high - need) / 1e6,
                     "arrayminus": (need - low) / 1e6, "color": PASS}), 1, col)
        fig.add_trace(go.Scatter(x=summary[f"product_{d}_bps"] / 1e6, y=labels, mode="markers",
                                 name="cheapest product that meets the targets", showlegend=col == 1,
                                 marker={"color": FAIL, "symbol": "diamond-open", "size": 13}), 1, col)
        shown = pd.concat([need, low, high, summary[f"product_{d}_bps"]]) / 1e6
        fig.update_xaxes(type="log", title_text="capacity (Mbit/s, log scale)", **log_ticks(shown), row=1, col=col)
    named = summary[summary["product"].astype(str) != ""]
    title = (f"Least capacity for {target_share:.0%} of sites to meet every target: "
             f"{len(named)} of {len(summary)} site classes have a product on the ladder that is enough")
    _layout(fig, title, height=240 + 45 * len(summary))
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "bottom", "yref": "container"},
                      margin={"b": 100})  # under the x axes' titles, not across them
    table = summary[["site_class", "down_need_bps", "down_ci_low_bps", "down_ci_high_bps", "up_need_bps",
                     "up_ci_low_bps", "up_ci_high_bps", "product", "best_product", "best_worst_share"]]
    note = ("Dots: the least capacity in each direction (the other held high) at which the share of a class's sites "
            "meeting every target reaches the bar: geometric mean over seeds with a 95% Student-t interval (on the "
            "logarithms); a generic line with full fibre's RTT and buffer (an assumption of the planner). "
            "Diamonds: the cheapest product on the catalogue's ladder that met the bar for every seed, run with "
            "its own rates, RTT and buffer.")
    return FigureSpec("plan_needs", title, fig, table, note)


def plan_curves(curve: pd.DataFrame, summary: pd.DataFrame, target_share: float) -> list[FigureSpec]:
    """Per site class: share of sites meeting every target against capacity, per direction and seed."""
    specs = []
    for site_class, rows in curve.groupby("site_class", sort=False):
        fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=["Download", "Upload"])
        need = summary.set_index("site_class").loc[site_class]
        for col, d in enumerate(("down", "up"), start=1):
            part = rows[rows["direction"] == d]
            for k, (seed, points) in enumerate(part.groupby("seed")):
                points = points.sort_values("capacity_bps")
                fig.add_trace(go.Scatter(x=points["capacity_bps"] / 1e6, y=points["share"], mode="lines+markers",
                                         name=f"seed {seed}", showlegend=col == 1, line={"width": 1.5},
                                         marker={"color": SERIES[k % len(SERIES)]},
                                         line_color=SERIES[k % len(SERIES)]), 1, col)
            if np.isfinite(need[f"{d}_need_bps"]):
                fig.add_vrect(x0=need[f"{d}_ci_low_bps"] / 1e6, x1=need[f"{d}_ci_high_bps"] / 1e6, row=1, col=col,
                              fillcolor=PASS, opacity=0.12, line_width=0)
            target_line(fig, y=target_share, text=f"bar: {target_share:.0%} of sites", row=1, col=col)
            shown = pd.concat([part["capacity_bps"], pd.Series([need[f"{d}_ci_low_bps"], need[f"{d}_ci_high_bps"]])])
            fig.update_xaxes(type="log", title_text="capacity (Mbit/s, log scale)", **log_ticks(shown / 1e6),
                             row=1, col=col)
        fig.update_yaxes(range=[-0.03, 1.03], tickformat=".0%", title_text="sites meeting every target", col=1)
        title = (f"{site_class}: {target_share:.0%} of sites meet every target from "
                 f"{_mbps(need['down_need_bps'])} down and {_mbps(need['up_need_bps'])} up")
        _layout(fig, title)
        note = ("Each point is one simulated run of the class's sites at that capacity (bisection on a log scale, "
                "reusing one trace per seed); the shaded band is the 95% interval of the least capacity.")
        specs.append(FigureSpec(f"plan_curve_{site_class}", title, fig, part_table(rows), note))
    return specs


def part_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The curve points of one class, sorted for reading."""
    return rows.sort_values(["direction", "seed", "capacity_bps"]).reset_index(drop=True)


def read_plan(folder: Path | str) -> pd.DataFrame:
    """A plan's per-class table (``plan.csv``), with product names as text ("" where none met the bar)."""
    (summary,) = _read(Path(folder), "plan.csv")
    for column in ("product", "product_label", "best_product"):
        summary[column] = summary[column].astype(object).fillna("").astype(str)  # an all-empty column reads as float
    return summary


def render_plan(folder: Path | str) -> Path:
    """Write ``plan.html`` into a plan's folder from its tables; return its path."""
    folder = Path(folder)
    summary = read_plan(folder)
    (curve,) = _read(folder, "curve.csv")
    meta = _meta(folder)
    share = float(meta["target_share"])
    specs = [plan_needs(summary, share), *plan_curves(curve, summary, share)]
    items = []
    for row in summary.itertuples(index=False):
        if row.product:
            items.append(f"<li><b>{html_esc(row.site_class)}</b>: at least {_mbps(row.down_need_bps)} down and "
                         f"{_mbps(row.up_need_bps)} up; cheapest product that is enough: "
                         f"<b>{html_esc(row.product_label or row.product)}</b>.</li>")
        else:
            best = (f"the best found, {html_esc(row.best_product)}, had {row.best_worst_share:.0%} of sites passing "
                    "in its worst seed" if row.best_product else
                    "no product on the ladder is as fast as the least capacity" if row.reachable else
                    f"capacity alone cannot meet it: at 10 Gbit/s each way, {row.share_at_high:.0%} of sites meet "
                    "every target in the worst seed")
            items.append(f"<li><b>{html_esc(row.site_class)}</b>: no product on the ladder meets the bar; {best}."
                         "</li>")
    intro = (f"<p>Scenario <b>{html_esc(meta['scenario'])}</b>, seeds {html_esc(meta['seeds'])}: the least access "
             f"capacity at which {share:.0%} of each class's sites meet every service target.</p>"
             f"<ul>{''.join(items)}</ul>{plan_sites_html(folder)}{plan_backup.html(folder)}")
    return _write_page(folder, PLAN_FILE, f"{meta['scenario']}: what capacity is enough?", intro, specs)


def plan_sites_html(folder: Path) -> str:
    """The per-site answers (``plan_sites.csv``, if any site states its line length) as an HTML table."""
    if not (folder / "plan_sites.csv").exists():
        return ""
    (sites,) = _read(folder, "plan_sites.csv")
    if sites.empty or not sites["line_length_m"].notna().any():
        return ""
    rows = []
    for row in sites.itertuples(index=False):
        length = f"{row.line_length_m / 1000:.3g} km" if np.isfinite(row.line_length_m) else "not stated"
        price = f"{row.gbp_per_month:,.0f} ({row.price_source})" if np.isfinite(row.gbp_per_month) else ""
        cells = [row.site, row.site_class, length, row.access, row.product_label if isinstance(row.product_label, str)
                 else "none", price, row.reason]
        rows.append("<tr>" + "".join(f"<td>{html_esc(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("site", "class", "line length", "access now", "cheapest product",
                                            "GBP a month (source)", "reason"))
    return (f"<h2>Per site, at its own line length</h2><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


# ---- sweep ------------------------------------------------------------------------------------------------


def sweep_axes(meta: dict) -> list[dict]:
    """A sweep's axes from its meta.json: key, column, kind, values (as stored) and labels (as written), in order.

    Folders written before the axes were recorded name a column by its key and hold the values as written.
    """
    if "axes" in meta:
        return list(meta["axes"])
    return [{"key": k, "column": k, "kind": "text", "values": list(map(str, v)), "labels": list(map(str, v))}
            for k, v in meta["grid"].items()]


def sweep_figures(table: pd.DataFrame, axes: list[dict], site_bar: float,
                  labels: dict[str, str] | None = None) -> list[FigureSpec]:
    """One figure per app: share of sites passing (mean over seeds, min-max bars) by the first key.

    A line per site class, one colour per class throughout; a panel per combination of the other keys' values.
    A numeric key's values are drawn in numeric order, labelled as they were written. ``labels`` names the apps.
    """
    names = app_labels({name: {"label": label} for name, label in (labels or {}).items()})
    classes = list(dict.fromkeys(table["site_class"]))
    return [_sweep_figure(table[table["app"] == app], app, names.get(app, app), axes, classes, site_bar)
            for app in [*[a for a in names if a in set(table["app"])], *sorted(set(table["app"]) - set(names))]]


def _sweep_figure(rows: pd.DataFrame, app: str, label: str, axes: list[dict], classes: list[str],
                  site_bar: float) -> FigureSpec:
    """One app's sweep figure (see :func:`sweep_figures`)."""
    x_axis, others = axes[0], axes[1:]
    columns = [a["column"] for a in axes]
    pooled = rows.groupby([*columns, "seed", "site_class"], sort=False)[["sites", "sites_passing"]].sum()
    pooled["share"] = pooled["sites_passing"] / pooled["sites"]
    grouped = (pooled.reset_index().groupby([*columns, "site_class"], sort=False)["share"]
               .agg(["mean", "min", "max", "count"]).reset_index())
    panels = _panels(grouped, others)
    n_cols = min(len(panels), 3)
    fig = make_subplots(rows=-(-len(panels) // n_cols), cols=n_cols, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[esc(title) for title, _ in panels] if others else None)
    order, shown = _x_order(x_axis), set()
    for k, (_, part) in enumerate(panels):
        for site_class, series in part.groupby("site_class", sort=False):
            if x_axis.get("kind", "text") != "text":
                series = series.sort_values(x_axis["column"])
            _sweep_series(fig, series, x_axis, classes.index(site_class), site_class, site_class not in shown,
                          (k // n_cols + 1, k % n_cols + 1))
            shown.add(site_class)
        target_line(fig, y=site_bar, text=f"pass bar: {site_bar:.0%} of sites" if k == 0 else "",
                    row=k // n_cols + 1, col=k % n_cols + 1)
    fig.update_yaxes(range=[-0.03, 1.03], tickformat=".0%")
    fig.update_yaxes(title_text="sites meeting the target", col=1)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    fig.update_xaxes(title_text=esc(x_axis["key"]), row=-(-len(panels) // n_cols))
    best = grouped.groupby(x_axis["column"], sort=False)["mean"].mean()
    best.index = [_label_of(x_axis, v) for v in best.index]
    best = best.reindex([o for o in order if o in best.index])
    title = (f"{label}: share of sites meeting the target by {x_axis['key']} "
             f"(from {best.iloc[0]:.0%} at {best.index[0]} to {best.iloc[-1]:.0%} at {best.index[-1]}, "
             "mean of classes)")
    _layout(fig, title, height=200 + 300 * -(-len(panels) // n_cols))
    note = ("Each point is the mean over seeds of the share of a site class's sites meeting the target (all its "
            "access profiles pooled); bars span the lowest and highest seed. One colour per site class"
            + ("; a panel per value of " + ", ".join(a["key"] for a in others) if others else "") + ".")
    return FigureSpec(f"sweep_{app}", title, fig, grouped, note)


def _panels(grouped: pd.DataFrame, others: list[dict]) -> list[tuple[str, pd.DataFrame]]:
    """The rows of each combination of the other keys' values (in grid order), titled ``key=value``."""
    if not others:
        return [("", grouped)]
    columns = [a["column"] for a in others]
    out = []
    for values, part in grouped.groupby(columns, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        out.append((" · ".join(f"{a['key']}={_label_of(a, v)}" for a, v in zip(others, values)), part))
    return out


def _sweep_series(fig: go.Figure, series: pd.DataFrame, x_axis: dict, index: int, site_class: str, legend: bool,
                  where: tuple[int, int]) -> None:
    """One site class's line in one panel, in the class's own colour (and dash, past eight classes)."""
    colour = SERIES[index % len(SERIES)]
    dash = ("solid", "dash", "dot", "dashdot")[index // len(SERIES) % 4]
    fig.add_trace(go.Scatter(
        x=[_label_of(x_axis, v) for v in series[x_axis["column"]]], y=series["mean"], mode="lines+markers",
        name=esc(site_class), legendgroup=site_class, showlegend=legend, line={"color": colour, "dash": dash},
        marker={"color": colour},
        error_y={"type": "data", "symmetric": False, "array": series["max"] - series["mean"],
                 "arrayminus": series["mean"] - series["min"], "color": colour}), *where)


def _x_order(x_axis: dict) -> list[str]:
    """The first key's labels, in numeric order where its values are numbers (as given where they are text)."""
    pairs = list(zip(x_axis["values"], x_axis["labels"]))
    if x_axis.get("kind", "text") != "text":
        pairs.sort(key=lambda p: float(p[0]))
    return [label for _, label in pairs]


def _label_of(axis: dict, value: object) -> str:
    """A stored value's label as written on the command line (a CSV read back may hold 0.02 as 0.02 or 2e-2)."""
    for stored, label in zip(axis["values"], axis["labels"]):
        if stored == value or (axis.get("kind", "text") != "text" and np.isclose(float(stored), float(value))):
            return str(label)
    return str(value)


def render_sweep(folder: Path | str) -> Path:
    """Write ``sweep.html`` into a sweep's folder from its table; return its path."""
    folder = Path(folder)
    (table,) = _read(folder, "sweep.csv")
    meta = _meta(folder)
    axes = sweep_axes(meta)
    for a in axes:
        if a.get("kind", "text") == "text":
            table[a["column"]] = table[a["column"]].astype(str)
    specs = sweep_figures(table, axes, float(meta["site_bar"]), meta.get("app_labels"))
    grid = " × ".join(f"{html_esc(a['key'])} ∈ {{{html_esc(', '.join(map(str, a['labels'])))}}}" for a in axes)
    stored = "; ".join(f"{html_esc(a['key'])} as <code>{html_esc(a['column'])}</code>" for a in axes
                       if a["column"] != a["key"])
    intro = (f"<p>Scenario <b>{html_esc(meta['scenario'])}</b> swept over {grid}, seeds "
             f"{html_esc(meta['seeds'])}: {len(table):,} rows in <code>sweep.csv</code>"
             + (f" (values in SI units: {stored})" if stored else "") + ".</p>")
    return _write_page(folder, SWEEP_FILE, f"{meta['scenario']}: sweep", intro, specs)


def _write_page(folder: Path, name: str, title: str, intro: str, specs: list[FigureSpec]) -> Path:
    from sim.report import _write_figure_files
    links = _write_figure_files(folder, specs, meta_png(folder))
    out = folder / name
    tmp = out.with_name(f".{name}.tmp")
    tmp.write_text(page(title, intro, specs, links), encoding="utf-8")
    tmp.replace(out)
    return out


def meta_png(folder: Path) -> bool | None:
    """The study's PNG choice, kept in its meta.json (True, False, or None for 'when a browser is found')."""
    return _meta(folder).get("png")
