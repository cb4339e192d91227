"""The load on each site class's line in its busy hour, stacked by app: what fills the line, and from which source.

Computed from the run's trace (what was offered to the line), not from the engines' records: a transfer offers its
size in the hour it starts; a stream offers its rate in each direction for every second it overlaps an hour (the
site's upstream at the app's ``up_share`` of the rate). The busy hour is the hour with the most offered bits, per
site class and direction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.errors import TestbedError
from sim.report.data import RunData
from sim.report.figures import FigureSpec, _layout, esc
from sim.units import significant

TRACE_FIELDS = ["site", "app", "traffic", "direction", "start_s", "duration_s", "size_bytes", "target_rate_bps",
                "up_share"]
HOUR_S = 3600.0


def offered_bits(trace: pd.DataFrame) -> pd.DataFrame:
    """Bits each session offers each hour, per direction of the site's line.

    Returns:
        Columns site, app, direction (``up`` from the site, ``down`` to it), hour (0-23...), bits.
    """
    rows, direction, hour, bits = _offered(trace)
    return pd.DataFrame({"site": trace["site"].to_numpy()[rows], "app": trace["app"].to_numpy()[rows],
                         "direction": np.asarray(direction), "hour": hour, "bits": bits})


def _offered(trace: pd.DataFrame) -> tuple[np.ndarray, pd.Categorical, np.ndarray, np.ndarray]:
    """Each (session, direction, hour) that offers bits: the session's row in ``trace``, direction, hour, bits.

    Transfers first (in their own direction, in their start hour), then streams downstream, then upstream (each
    stream's hours in order); text columns may be pandas strings or categoricals.
    """
    start_s = trace["start_s"].to_numpy()
    transfers = np.flatnonzero((trace["traffic"] == "transfer").to_numpy())
    streams = np.flatnonzero((trace["traffic"] == "stream").to_numpy())
    parts = [(transfers, np.floor(start_s[transfers] / HOUR_S).astype(int),
              trace["size_bytes"].to_numpy()[transfers] * 8.0)]
    rate_bps = trace["target_rate_bps"].to_numpy()[streams]
    each, hour, overlap_s = _stream_hours(start_s[streams], trace["duration_s"].to_numpy()[streams])
    for share in (np.ones(len(streams)), trace["up_share"].to_numpy()[streams]):  # the same hours each way
        parts.append((streams[each], hour, (rate_bps * share)[each] * overlap_s))
    given = pd.Categorical(trace["direction"]).take(transfers) if len(transfers) else pd.Categorical([])
    names = [*given.categories.astype(str), *(d for d in ("down", "up") if d not in set(given.categories))]
    codes = np.concatenate([given.codes, np.full(len(parts[1][0]), names.index("down"), dtype=given.codes.dtype),
                            np.full(len(parts[2][0]), names.index("up"), dtype=given.codes.dtype)])
    direction = pd.Categorical.from_codes(codes, categories=names)
    rows, hour, bits = (np.concatenate([part[k] for part in parts]) for k in range(3))
    return rows, direction, hour, bits


def _stream_hours(start_s: np.ndarray, duration_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each hour each stream overlaps, per stream-hour: (the stream's position, the hour, the overlap (s, >= 0))."""
    end_s = start_s + duration_s
    first = np.floor(start_s / HOUR_S).astype(int)
    count = np.floor(np.maximum(end_s - 1e-9, start_s) / HOUR_S).astype(int) - first + 1
    each = np.repeat(np.arange(len(start_s)), count)
    hour = first[each] + (np.arange(len(each)) - np.repeat(np.cumsum(count) - count, count))
    overlap_s = np.minimum(end_s[each], (hour + 1) * HOUR_S) - np.maximum(start_s[each], hour * HOUR_S)
    return each, hour, np.maximum(overlap_s, 0.0)


def busy_hour_load(run: RunData) -> pd.DataFrame:
    """Mean offered rate per site (bit/s) of each app in each site class's busy hour, per direction.

    The trace's text is read as codes (an estate's trace has millions of rows) and the bits summed per site class,
    direction, hour and app in the trace's order, as a grouping by those names would.

    Returns:
        Columns site_class, direction, hour, app, rate_bps (mean over the class's sites).
    """
    trace = run.table("trace", TRACE_FIELDS, text_as_categories=True)
    site_class = run.sites.drop_duplicates("site").set_index("site")["site_class"]
    rows, direction, hour, bits = _offered(trace)
    sites = pd.Categorical(trace["site"])
    classes = pd.Categorical(site_class.reindex(sites.categories.astype(str)).to_numpy())
    apps = pd.Categorical(trace["app"])
    codes = (classes.codes[sites.codes[rows]], direction.codes, hour, apps.codes[rows])
    known = codes[0] >= 0  # a site the verdicts do not know (none in a run's own folder)
    per_hour = _sums(tuple(code[known] for code in codes), bits[known], ["site_class", "direction", "hour", "app"])
    for name, values in (("site_class", classes), ("direction", direction), ("app", apps)):
        per_hour[name] = np.asarray(values.categories.astype(str), dtype=object)[per_hour[name].to_numpy()]
    per_hour = per_hour.sort_values(["site_class", "direction", "hour", "app"]).reset_index(drop=True)
    counts = site_class.value_counts()
    totals = per_hour.groupby(["site_class", "direction", "hour"])["bits"].sum().reset_index()
    busiest = totals.sort_values(["bits", "hour"], ascending=[False, True]).drop_duplicates(["site_class",
                                                                                           "direction"])
    out = per_hour.merge(busiest[["site_class", "direction", "hour"]], on=["site_class", "direction", "hour"])
    out["rate_bps"] = out["bits"] / HOUR_S / out["site_class"].map(counts).to_numpy()
    return out[["site_class", "direction", "hour", "app", "rate_bps"]]


def _sums(codes: tuple[np.ndarray, ...], values: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Sums of ``values`` per distinct combination of ``codes`` (non-negative integers), sorted by the codes.

    As a pandas grouping by the code columns gives (the same groups, each summed in row order the same way), but
    grouped by one integer key made of them, which costs a fraction of grouping millions of rows by four columns.

    Returns:
        Columns ``names`` (the codes) and ``bits`` (the sums).
    """
    shape = tuple(int(code.max()) + 1 if len(code) else 1 for code in codes)
    sums = pd.Series(values).groupby(np.ravel_multi_index(codes, shape)).sum()
    columns = np.unravel_index(sums.index.to_numpy(), shape)
    return pd.DataFrame({**{name: column.astype(code.dtype) for name, column, code in zip(names, columns, codes)},
                         "bits": sums.to_numpy()})


def busy_hour_load_or_none(run: RunData) -> pd.DataFrame | None:
    """:func:`busy_hour_load`, or None when the folder has no trace to draw it from."""
    try:
        return busy_hour_load(run)
    except TestbedError:
        return None


def load_figure(run: RunData, table: pd.DataFrame | None) -> FigureSpec | None:
    """Stacked bars: each site class's busy-hour load by app, upstream and downstream, sources in the footnote.

    ``table``: :func:`busy_hour_load_or_none` of ``run`` (None: no figure).
    """
    if table is None or table.empty:
        return None
    classes = sorted(set(table["site_class"]))
    totals = table.groupby(["site_class", "direction"])["rate_bps"].sum()
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.07,
                        subplot_titles=["from the site (upstream)", "to the site (downstream)"])
    shown = set()
    for name, label in run.app_names.items():
        colour = run.apps.get(name, {}).get("colour", "#999999")
        for col, direction in enumerate(("up", "down"), start=1):
            part = table[(table["app"] == name) & (table["direction"] == direction)].set_index("site_class")
            if part.empty:
                continue
            rate_bps = part["rate_bps"].reindex(classes).fillna(0.0)
            share = rate_bps / [totals.get((c, direction), np.nan) for c in classes]
            fig.add_trace(go.Bar(y=[esc(_class_label(run, c, totals)) for c in classes], x=share, orientation="h",
                                 name=esc(label), marker_color=colour, legendgroup=name, showlegend=name not in shown,
                                 customdata=rate_bps / 1e6,
                                 hovertemplate="%{y}: %{customdata:.3g} Mbit/s (%{x:.0%})<extra>" + esc(label)
                                 + "</extra>"), 1, col)
            shown.add(name)
    direction = "up" if (table["direction"] == "up").any() else "down"  # a short slice may carry one way only
    load = table[table["direction"] == direction].groupby("site_class")["rate_bps"].sum()
    top_class = load.idxmax()
    top_app, top_bps = _largest_app(table, top_class, direction)
    share = top_bps / load.max() if load.max() > 0 else float("nan")
    title = (f"Busy-hour {'upstream' if direction == 'up' else 'downstream'} load: {run.class_label(top_class)} "
             f"offers {significant(load.max() / 1e6)} Mbit/s per site, {top_words(share)} of it "
             f"{run.app_names.get(top_app, top_app)} ({share:.0%})")
    legend_rows = -(-len(shown) // 3)  # three or more app labels a row under the plot
    _layout(fig, title, height=180 + 48 * len(classes) + 22 * legend_rows)
    fig.update_layout(barmode="stack", margin={"b": 80 + 22 * legend_rows},
                      legend={"orientation": "h", "x": 0.01, "xanchor": "left", "xref": "container", "y": 0,
                              "yanchor": "bottom", "yref": "container"})  # the whole width, under the x title
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    fig.add_annotation(text="share of the busy hour's offered load (each panel)", x=0.5, y=0, xref="paper",
                       yref="paper", yshift=-28, showarrow=False, xanchor="center", yanchor="top")
    on_line = [spec for spec in run.apps.values() if spec.get("on_line", True)]
    sources = "; ".join(f"{spec['label']}: {spec['source']}" for spec in on_line)
    note = ("Offered load from the trace: transfers in the hour they start, streams for the time they overlap it. "
            "The busy hour is each class's hour with the most bits, per direction. "
            f"Sources (docs/sources.md): {sources}.")
    table = table.assign(site_class=table["site_class"].map(run.class_label), rate_mbps=table["rate_bps"] / 1e6)
    return FigureSpec("busy-hour-load", title, fig, table, note)


def _class_label(run: RunData, site_class: str, totals: pd.Series) -> str:
    """The class's label with its busy-hour load per site, each way (Mbit/s)."""
    up, down = (totals.get((site_class, d), 0.0) / 1e6 for d in ("up", "down"))
    return f"{run.class_label(site_class)}: {significant(up)} up / {significant(down)} down Mbit/s"


def top_words(share: float) -> str:
    """How the largest app's share (0..1) of a load is named: 'most' only when it is more than half."""
    return "most" if share > 0.5 else "the largest part"


def _largest_app(table: pd.DataFrame, site_class: str, direction: str) -> tuple[str, float]:
    """The app offering most of a class's busy-hour load one way, and its load (bit/s per site)."""
    part = table[(table["site_class"] == site_class) & (table["direction"] == direction)]
    top = part.sort_values("rate_bps").iloc[-1]
    return str(top["app"]), float(top["rate_bps"])
