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
from sim.working_time import hours_text, span_text, worst_years_text  # noqa: F401 (used here, and by its tests)

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
    labels = [esc(f"{run.class_label(c)} · {_profile_label(run, a)}" + (f" + {_backup_label(run, b)}" if several
                                                                          else ""))
              for c, a, b in zip(rows["site_class"], rows["access_profile"], rows["backup"])]
    fig = go.Figure(go.Bar(
        y=labels, x=rows["without_h"], orientation="h", marker_color=[PASS if p else FAIL for p in rows["all_pass"]],
        error_x={"type": "data", "symmetric": False, "array": rows["without_high_h"] - rows["without_h"],
                 "arrayminus": rows["without_h"] - rows["without_low_h"]},
        hovertext=[esc(run.app_names.get(a, a)) for a in rows["app"]], showlegend=False))
    fig.add_trace(go.Scatter(y=labels, x=rows["target_h"], mode="markers", name="target (share of working hours)",
                             marker={"symbol": "line-ns-open", "size": 18, "color": "black", "line": {"width": 2}}))
    _layout(fig, _title(run, rows), height=160 + 34 * len(rows))
    fig.update_xaxes(title_text="working hours a year without the app (mean per site; bar: the app losing most)")
    return FigureSpec("availability", _title(run, rows), fig, rows.drop(columns="rank"), _footnote(rows))


def _title(run: RunData, rows: pd.DataFrame) -> str:
    """The figure's claim, in the catalogue's labels: who loses most, of what, and which line least."""
    most, least = rows.loc[rows["without_h"].idxmax()], rows.loc[rows["without_h"].idxmin()]
    backup = ", ".join("no backup" if b == "none" else _backup_label(run, b) for b in dict.fromkeys(rows["backup"]))
    return (f"Line faults, {backup}: {run.class_label(most['site_class'])} on "
            f"{_profile_label(run, most['access_profile'])} loses most, {hours_text(most['without_h'])} of working "
            f"time a year without {run.app_names.get(most['app'], most['app'])}; "
            f"{run.class_label(least['site_class'])} on {_profile_label(run, least['access_profile'])} least "
            f"({hours_text(least['without_h'])})")


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
    where both runs have them: 'GP practice, medium: line faults leave a site without video consultations for
    about 44 min of working time a year in baseline-2019 and 12 min in full-fibre with no backup; 3.6 s and
    2.9 s with its backup.'
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
        first = (f"{a.class_label(site_class)}: line faults leave a site without {names.get(app, app)} for about "
                 f"{hours_text(rows[0].without_h_a)} of working time a year in {a.name} and "
                 f"{hours_text(rows[0].without_h_b)} in {b.name} {kinds[0]}")
        out.append(first + "".join(f"; {hours_text(r.without_h_a)} and {hours_text(r.without_h_b)} {kind}"
                                   for r, kind in zip(rows[1:], kinds[1:])) + ".")
    return out


# ---- in words, for a policy reader ----------------------------------------------------------------------------

WITHOUT_BACKUP_FILE = "availability_without_backup.csv"  # run --year, when some site has a backup: none at all
FOCUS_APP = "video"  # the app the sentences are about, where a class uses it (else the app it loses most of)


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
    """Per site class, (class, what line faults cost a site in words, and the verdicts), from the availability tables.

    One clause per access line the class has a verdict on (copper first; a technology's name, or its profiles'
    labels where the class has several of one technology), with no backup, then with each backup. A clause
    tells video consultations where the line's sites have them, else the app the line loses most of, and
    whether every app of the line meets its availability target (else which miss it, and why). E.g. 'GP
    practice, medium: working time lost to line faults a year (a site's mean, 95% interval), with no backup: on
    FTTC 1.1 h of video consultations (0.9-1.3 h), meeting its availability target; on FTTP 25 min of video
    consultations (18-31 min), meeting its availability target. With a 4G backup router: on FTTC ...'
    """
    rows = summary_rows(run)
    if rows is None:
        return []
    out = []
    for site_class, part in rows.groupby("site_class", sort=False):
        part = part.assign(rank=part["technology"].map(technology_rank)).sort_values(["rank", "access_profile"])
        several = part.groupby(["backup", "technology"])["access_profile"].transform("nunique") > 1
        labels = part["access_profile"].map(lambda p: _profile_label(run, p))
        part = part.assign(unit=labels.where(several, part["technology"]))
        has_focus = FOCUS_APP in set(part["app"])
        groups = sorted(part.groupby("backup", sort=False), key=lambda g: g[0] != "none")
        words = [_backup_words(run, backup, group, has_focus) for backup, group in groups]
        out.append((site_class, f"{run.class_label(site_class)}: working time lost to line faults a year (a "
                                f"site's mean, 95% interval), " + " ".join(words)))
    return out


def _backup_words(run: RunData, backup: str, rows: pd.DataFrame, has_focus: bool) -> str:
    """One sentence: a clause per access line, with no backup or with ``backup``."""
    clauses = [_line_clause(run, unit, line, has_focus)
               for unit, line in rows.groupby("access_profile", sort=False)]
    lead = "with no backup" if backup == "none" else f"With {_backup_label(run, backup)}"
    return f"{lead}: {'; '.join(clauses)}."


def _line_clause(run: RunData, profile: str, rows: pd.DataFrame, has_focus: bool) -> str:
    """'on FTTC 1.0 h of calls (0.81-1.3 h; no video consultations there), missing its availability target (...)'."""
    names = run.app_names
    apps = set(rows["app"])
    app = FOCUS_APP if FOCUS_APP in apps else rows.loc[rows["without_h"].idxmax(), "app"]
    row = rows[rows["app"] == app].iloc[0]
    note = f"; no {names.get(FOCUS_APP, FOCUS_APP)} there" if has_focus and FOCUS_APP not in apps else ""
    said = (f"on {row['unit']} {hours_text(row['without_h'])} of {names.get(app, app)} "
            f"({span_text(row['without_low_h'], row['without_high_h'])}{note})")
    if "passed" not in rows:
        return said
    failed = rows[~rows["passed"].astype(bool)]
    if failed.empty:
        return f"{said}, meeting its availability target"
    return f"{said}, missing its availability target ({_misses(run, rows, failed)})"


def _misses(run: RunData, rows: pd.DataFrame, failed: pd.DataFrame) -> str:
    """Which apps miss the availability target, and why: 'every app: 8.4 h lost in the worst 5% of years > 8 h'."""
    names, out = run.app_names, []
    for reason, part in failed.assign(reason=failed["reason"].fillna("")).groupby("reason", sort=False):
        missing, others = list(part["app"]), [a for a in rows["app"] if a not in set(part["app"])]
        if not others:
            who = "every app"
        elif len(others) == 1 and len(missing) > 1:
            who = f"every app but {names.get(others[0], others[0])}"
        else:
            who = ", ".join(names.get(a, a) for a in missing)
        out.append(f"{who}: {reason}" if reason else who)
    return "; ".join(out)


def _backup_label(run: RunData, backup: str) -> str:
    return run.resolved.get("catalogue", {}).get("backups", {}).get(backup, {}).get("label", backup)


def _profile_label(run: RunData, profile: str) -> str:
    """An access profile's label in the run's catalogue ('FTTC 80/20 (VDSL2)'), else its name."""
    return run.resolved.get("catalogue", {}).get("profiles", {}).get(profile, {}).get("label", profile)


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
