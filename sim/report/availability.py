"""Availability through a year of line faults: working hours a year each site class and access loses, per site.

Drawn from the run folder's ``availability.csv`` (written by ``testbed run --year``; :mod:`sim.availability`), so a
run without it has no such figure.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from sim.errors import TestbedError
from sim.report.data import RunData, technology_rank
from sim.report.figures import FAIL, PASS, FigureSpec, _layout, esc

AVAILABILITY_FILE = "availability.csv"


def worst_apps(table: pd.DataFrame) -> pd.DataFrame:
    """Per site class and access profile, the app losing most working hours, and whether every app meets its target.

    Returns:
        One row per site class x access profile (the worst app's row), with ``all_pass`` and ``target_h`` (the
        share target as working hours a year).
    """
    worst = table.loc[table.groupby(["site_class", "access_profile"], sort=False)["without_h"].idxmax()].copy()
    passes = table.groupby(["site_class", "access_profile"], sort=False)["passed"].all()
    worst["all_pass"] = [bool(passes[(c, a)]) for c, a in zip(worst["site_class"], worst["access_profile"])]
    worst["target_h"] = (1.0 - worst["target_share"]) * worst["working_h"]
    return worst.reset_index(drop=True)


def read_availability(run: RunData) -> pd.DataFrame | None:
    """The run's availability table (``run --year``), or None if it has none.

    Raises:
        TestbedError: If the file cannot be read.
    """
    path = run.folder / AVAILABILITY_FILE
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise TestbedError(f"{path}: cannot be read ({exc})") from None


def availability_figure(run: RunData) -> FigureSpec | None:
    """Hours a year without the worst-hit app, per site class and access, with 95% intervals and the targets."""
    table = read_availability(run)
    if table is None:
        return None
    if table.empty:
        return None
    rows = worst_apps(table)
    rows = rows.assign(rank=rows["technology"].map(technology_rank)).sort_values(["site_class", "rank"])
    labels = [esc(f"{run.class_label(c)} · {a}") for c, a in zip(rows["site_class"], rows["access_profile"])]
    fig = go.Figure(go.Bar(
        y=labels, x=rows["without_h"], orientation="h", marker_color=[PASS if p else FAIL for p in rows["all_pass"]],
        error_x={"type": "data", "symmetric": False, "array": rows["without_high_h"] - rows["without_h"],
                 "arrayminus": rows["without_h"] - rows["without_low_h"]},
        hovertext=[esc(run.app_names.get(a, a)) for a in rows["app"]], showlegend=False))
    fig.add_trace(go.Scatter(y=labels, x=rows["target_h"], mode="markers", name="target (share of working hours)",
                             marker={"symbol": "line-ns-open", "size": 18, "color": "black", "line": {"width": 2}}))
    _layout(fig, _title(rows), height=160 + 34 * len(rows))
    fig.update_xaxes(title_text="working hours a year without the app (mean per site; bar: the app losing most)")
    return FigureSpec("availability", _title(rows), fig, rows.drop(columns="rank"), _footnote(rows))


def _title(rows: pd.DataFrame) -> str:
    most, least = rows.loc[rows["without_h"].idxmax()], rows.loc[rows["without_h"].idxmin()]
    backup = rows["backup"].iloc[0]
    return (f"Line faults, backup {backup}: {most['site_class']} on {most['access_profile']} loses most, "
            f"{most['without_h']:.2f} working h a year of {most['app']}; {least['access_profile']} "
            f"least ({least['without_h']:.2f} h)")


def _footnote(rows: pd.DataFrame) -> str:
    years = int(rows["years"].iloc[0])
    return (f"{years} sampled years of line, cabinet, exchange and GPON-tree faults per site "
            "(topologies/faults.yaml; docs/sources.md S15: most fault rates and repair times are assumptions with "
            "ranges). An hour on the backup counts as lost for an app that failed on it, the whole replayed day "
            "being simulated on the backup (docs/availability.md). Working hours 08:00-18:30, Monday to Friday. "
            "Bars: the app losing most hours, with its 95% interval (bootstrap over years); orange: some app "
            "misses its availability target (its share of working hours, or the hours lost in the worst years: "
            "availability.csv has each); black marks: the share target in hours (an assumption, S15).")


def class_hours(run: RunData) -> pd.DataFrame | None:
    """Per site class and app, working hours a year a site loses to line faults; None without ``availability.csv``.

    The mean is over the class's sites, whatever their access profiles.

    Raises:
        TestbedError: If the file cannot be read.
    """
    table = read_availability(run)
    if table is None:
        return None
    table = table.assign(weighted=table["without_h"] * table["sites"])
    out = table.groupby(["site_class", "app"], sort=False).agg(weighted=("weighted", "sum"), sites=("sites", "sum"),
                                                               backup=("backup", "first"))
    out["without_h"] = out["weighted"] / out["sites"]
    return out.reset_index()[["site_class", "app", "backup", "without_h"]]


def availability_changes(a: RunData, b: RunData) -> list[str]:
    """What the change from run A to run B does to availability: per site class, the app A loses most hours of."""
    hours_a, hours_b = class_hours(a), class_hours(b)
    if hours_a is None or hours_b is None:
        return []
    both = hours_a.merge(hours_b, on=["site_class", "app"], suffixes=("_a", "_b"))
    if both.empty:
        return []
    worst = both.loc[both.groupby("site_class", sort=False)["without_h_a"].idxmax()]
    names = {**b.app_names, **a.app_names}
    return [f"{a.class_label(r.site_class)}, {names.get(r.app, r.app)}: {r.without_h_a:.2f} working hours a year "
            f"lost to line faults per site in {a.name} (backup {r.backup_a}), {r.without_h_b:.2f} in {b.name} "
            f"(backup {r.backup_b})." for r in worst.itertuples()]
