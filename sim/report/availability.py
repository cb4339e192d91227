"""Availability through a year of line faults: working hours a year each site class and access loses, per site.

Drawn from the run folder's ``availability.csv`` (written by ``testbed run --year``; :mod:`sim.availability`), so a
run without it has no such figure: the figure, and the same in words for a policy reader (per class and technology,
with and without the backup, from ``availability_without_backup.csv`` too), for the report and for ``compare``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from sim.errors import TestbedError
from sim.report.data import RunData, technology_rank
from sim.report.figures import FAIL, PASS, FigureSpec, _layout, esc

AVAILABILITY_FILE = "availability.csv"


def worst_apps(table: pd.DataFrame) -> pd.DataFrame:
    """Per site class, access profile and backup, the app losing most working hours, and whether every app passes.

    Returns:
        One row per site class x access profile x backup (the worst app's row), with ``all_pass`` and ``target_h`` (the
        share target as working hours a year).
    """
    keys = ["site_class", "access_profile", "backup"]
    worst = table.loc[table.groupby(keys, sort=False)["without_h"].idxmax()].copy()
    passes = table.groupby(keys, sort=False)["passed"].all()
    worst["all_pass"] = [bool(passes[k]) for k in zip(*(worst[key] for key in keys))]
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
    several = rows["backup"].nunique() > 1  # site groups with backups of their own
    labels = [esc(f"{run.class_label(c)} · {a}" + (f" + {b}" if several else ""))
              for c, a, b in zip(rows["site_class"], rows["access_profile"], rows["backup"])]
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
    backup = ", ".join(dict.fromkeys(rows["backup"]))
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
    """Per site class, app and ``bare`` (no backup, or a backup): a site's mean working hours a year lost.

    The mean is over the class's sites (weighted by sites), whatever their access profiles; the rows with no
    backup include ``availability_without_backup.csv``'s. None without ``availability.csv``.

    Raises:
        TestbedError: If a file cannot be read.
    """
    rows = summary_rows(run)
    if rows is None:
        return None
    rows = rows.assign(bare=rows["backup"] == "none", weighted=rows["without_h"] * rows["sites"])
    out = rows.groupby(["site_class", "app", "bare"], sort=False).agg(weighted=("weighted", "sum"),
                                                                      sites=("sites", "sum"))
    out["without_h"] = out["weighted"] / out["sites"]
    return out.reset_index()[["site_class", "app", "bare", "without_h"]]


def availability_changes(a: RunData, b: RunData) -> list[str]:
    """What the change from run A to run B does to the hours a site loses a year, per site class, in words.

    Of video consultations (else the app A's sites lose most of), with no backup and with the sites' backups
    where both runs have them: 'GP practice, medium: a site loses about 0.73 working hours of video
    consultations a year in baseline-2019 and 0.2 in full-fibre with no backup; 0.001 and 0.0008 with its backup.'
    """
    hours_a, hours_b = class_hours(a), class_hours(b)
    if hours_a is None or hours_b is None:
        return []
    both = hours_a.merge(hours_b, on=["site_class", "app", "bare"], suffixes=("_a", "_b"))
    names, out = {**b.app_names, **a.app_names}, []
    for site_class, part in both.groupby("site_class", sort=False):
        app = FOCUS_APP if FOCUS_APP in set(part["app"]) else part.loc[part["without_h_a"].idxmax(), "app"]
        rows = list(part[part["app"] == app].sort_values("bare", ascending=False).itertuples())
        kinds = ["with no backup" if r.bare else "with its backup" for r in rows]
        first = (f"{a.class_label(site_class)}: a site loses about {hours_text(rows[0].without_h_a)} working hours "
                 f"of {names.get(app, app)} a year in {a.name} and {hours_text(rows[0].without_h_b)} in {b.name} "
                 f"{kinds[0]}")
        out.append(first + "".join(f"; {hours_text(r.without_h_a)} and {hours_text(r.without_h_b)} {kind}"
                                   for r, kind in zip(rows[1:], kinds[1:])) + ".")
    return out


# ---- in words, for a policy reader ----------------------------------------------------------------------------

WITHOUT_BACKUP_FILE = "availability_without_backup.csv"  # run --year, when some site has a backup: none at all
FOCUS_APP = "video"  # the app the sentences are about, where a class uses it (else the app it loses most of)


def hours_text(hours: float) -> str:
    """Working hours for people: '12', '3.4', '0.41', '0.0052' (two significant figures below 10)."""
    if hours >= 10:
        return f"{hours:.0f}"
    return f"{hours:.1f}" if hours >= 1 else f"{hours:.2g}"


def summary_rows(run: RunData) -> pd.DataFrame | None:
    """The run's availability rows with, where some site had a backup, the same sites with none (None: no study).

    Raises:
        TestbedError: If a file cannot be read.
    """
    table = read_availability(run)
    if table is None or table.empty:
        return None
    path = run.folder / WITHOUT_BACKUP_FILE
    if path.is_file():
        try:
            bare = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise TestbedError(f"{path}: cannot be read ({exc})") from None
        table = pd.concat([table[table["backup"] != "none"], bare], ignore_index=True)
    return table


def class_sentences(run: RunData) -> list[tuple[str, str]]:
    """Per site class, (class, what line faults cost a site in words), from the availability tables.

    E.g. 'GP practice, medium on FTTC loses about 1.1 working hours of video consultations a year (95% interval
    0.9-1.3); on FTTP about 0.41 (0.3-0.52). With 4G backup router: on FTTC about 0.05 (...).' The hours are a
    site's mean per access technology (its access profile where a class has several of one technology).
    """
    rows = summary_rows(run)
    if rows is None:
        return []
    out = []
    for site_class, part in rows.groupby("site_class", sort=False):
        app = FOCUS_APP if FOCUS_APP in set(part["app"]) else part.loc[part["without_h"].idxmax(), "app"]
        part = part[part["app"] == app].assign(rank=lambda t: t["technology"].map(technology_rank))
        part = part.sort_values(["rank", "access_profile"])
        several = part.groupby(["backup", "technology"])["access_profile"].transform("nunique") > 1
        part = part.assign(unit=part["access_profile"].where(several, part["technology"]))
        words = [_backup_words(run, site_class, app, backup, group)
                 for backup, group in sorted(part.groupby("backup", sort=False), key=lambda g: g[0] != "none")]
        out.append((site_class, " ".join(words)))
    return out


def _backup_words(run: RunData, site_class: str, app: str, backup: str, rows: pd.DataFrame) -> str:
    """One sentence: the hours a year on each line, with no backup or with ``backup``."""
    figures = [(r.unit, hours_text(r.without_h), f"{hours_text(r.without_low_h)}-{hours_text(r.without_high_h)}")
               for r in rows.itertuples()]
    rest = "".join(f"; on {unit} about {h} ({interval})" for unit, h, interval in figures[1:])
    unit, h, interval = figures[0]
    if backup == "none":
        return (f"{run.class_label(site_class)} on {unit} loses about {h} working hours of "
                f"{run.app_names.get(app, app)} a year (95% interval {interval}){rest}.")
    label = run.resolved.get("catalogue", {}).get("backups", {}).get(backup, {}).get("label", backup)
    return f"With {label}: on {unit} about {h} ({interval}){rest}."


def availability_story(a: RunData, b: RunData) -> list[str]:
    """What the change from run A to run B does to availability, in the report's words.

    Each run's sentence per site class (both runs made with ``run --year``), then the change in the hours a site
    of the class loses (:func:`availability_changes`).
    """
    said_a, said_b = dict(class_sentences(a)), dict(class_sentences(b))
    lines = []
    for site_class in said_a:
        if site_class in said_b:
            lines += [f"{a.name}: {said_a[site_class]}", f"{b.name}: {said_b[site_class]}"]
    return lines + availability_changes(a, b) if lines else []
