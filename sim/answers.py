"""Answers per site: which sites miss which targets, worst first, with the measured value and its cause.

Built from the site verdicts (:mod:`sim.targets`, measures from :mod:`sim.measures`) and the topology's site table
(line rates, line length); used by the command line and the report alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.gate import Gate
from sim.measures import MEASURE_NAMES, against_words, criterion_kind, rate_words, value_words
from sim.targets import CLASS_KEYS, Verdicts
from sim.text_tables import Table

LIMIT_SITES = 20  # the command line lists this many failing sites unless asked for all
ANSWER_COLUMNS = ["site", "site_class", "access_profile", "line", "distance_m", "target", "measure", "measured",
                  "against", "share_passing", "cause", "rank"]


def line_words(site: pd.Series | dict) -> str:
    """A site's line in words: profile, length where given, and the rates it gets there.

    E.g. 'fttc_80_20, 1.5 km (38 Mbit/s down, 7.5 Mbit/s up)'; a profile with no line length gives none.
    """
    length_m = float(site.get("distance_m", np.nan))
    length = f", {length_m / 1e3:.3g} km" if length_m == length_m else ""
    down, up = float(site.get("down_bps", np.nan)), float(site.get("up_bps", np.nan))
    rates = f" ({rate_words(down)} down, {rate_words(up)} up)" if down == down and up == up else ""
    return f"{site['access_profile']}{length}{rates}"


def site_rank(site_rows: pd.DataFrame) -> pd.DataFrame:
    """Each site with a failed verdict, worst first: most targets missed, then lowest share passing, then name.

    Returns:
        Columns site, failed (targets missed), worst_share (lowest share of sessions passing of a missed app; NaN
        when only its links failed), in rank order.
    """
    failed = site_rows[~site_rows["passed"]]
    if failed.empty:
        return pd.DataFrame({"site": pd.Series([], dtype=str), "failed": pd.Series([], dtype="int64"),
                             "worst_share": pd.Series([], dtype=float)})
    ranked = failed.groupby("site", sort=False).agg(failed=("passed", "size"), worst_share=("share_passing", "min"))
    ranked = ranked.reset_index().sort_values(["failed", "worst_share", "site"], ascending=[False, True, True],
                                              na_position="last", kind="stable")
    return ranked.reset_index(drop=True)


def failing_sites(site_rows: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """One row per failed (site, target), sites worst first (:func:`site_rank`): columns :data:`ANSWER_COLUMNS`.

    Args:
        site_rows: Site verdicts (:data:`sim.targets.SITE_VERDICT_COLUMNS`; older folders' rows without measures
            give empty measures).
        sites: The topology's site table (``distance_m``, ``down_bps``, ``up_bps``).
    """
    ranked = site_rank(site_rows)
    failed = site_rows[~site_rows["passed"]].merge(ranked[["site"]].reset_index(names="rank"), on="site")
    failed = failed.sort_values(["rank", "app"], kind="stable").reset_index(drop=True)
    lines = sites.drop_duplicates("site").set_index("site")
    by_site = lines.to_dict("index")  # one dict per site, built once (a row lookup per failed row cost ~1 s at 5,500)
    out = pd.DataFrame({"site": failed["site"], "site_class": failed["site_class"],
                        "access_profile": failed["access_profile"]})
    out["line"] = [line_words({"access_profile": p, **by_site[s]}) if s in by_site else p
                   for s, p in zip(failed["site"], failed["access_profile"])]
    out["distance_m"] = [float(by_site[s]["distance_m"]) if s in by_site else np.nan for s in failed["site"]]
    out["target"] = failed["app"]
    criteria = failed.get("criterion", failed["reason"]).fillna("")
    kinds = [criterion_kind(c) for c in criteria]
    names = failed.get("measure", pd.Series("", index=failed.index)).fillna("")
    out["measure"] = [n or MEASURE_NAMES.get(k, k) for n, k in zip(names, kinds)]
    units = failed.get("value_unit", pd.Series("", index=failed.index)).fillna("")
    measured = failed.get("measured_value", pd.Series(np.nan, index=failed.index))
    against = failed.get("target_value", pd.Series(np.nan, index=failed.index))
    out["measured"] = [_measured(k, v, u) for k, v, u in zip(kinds, measured, units)]
    out["against"] = [against_words(k, v, u) if u and k != "incomplete" else "" for k, v, u in
                      zip(kinds, against, units)]
    out["share_passing"] = failed["share_passing"]
    out["cause"] = failed.get("cause", pd.Series("", index=failed.index)).fillna("")
    out["rank"] = failed["rank"]
    return out[ANSWER_COLUMNS]


def _measured(kind: str, value: float, unit: str) -> str:
    if kind == "incomplete":
        return f"{value:,.0f} sessions" if value == value else ""
    return value_words(value, unit) if unit else ""


def limited(answers: pd.DataFrame, limit_sites: int | None) -> tuple[pd.DataFrame, int]:
    """The rows of the ``limit_sites`` worst sites (all with None), and how many failing sites were left out."""
    sites = answers["rank"].nunique()
    if limit_sites is None or sites <= limit_sites:
        return answers, 0
    return answers[answers["rank"] < limit_sites], sites - limit_sites


def class_table(verdicts: Verdicts, scenario: str) -> Table:
    """A row per site class and access: how many of its targets it meets, which it misses and why."""
    rows = []
    for keys, group in verdicts.classes.groupby(CLASS_KEYS, sort=False):
        failed = [row for row in group.itertuples(index=False) if not row.passed]
        misses = ", ".join(f"{r.app} {r.share_passing:.0%}" for r in failed) or "none"
        reasons = "; ".join(f"{r.app}: {r.reason}" for r in failed)
        rows.append([keys[1], keys[2], f"{len(group) - len(failed)} of {len(group)}", misses, reasons])
    return Table(f"{scenario}: targets met per site class and access (app names: testbed list apps)",
                        ["site class", "access", "targets met", "misses (share of sites passing)",
                         "main reason for each miss"], rows)


def sites_table(found: Gate, sites, limit_sites: int | None) -> Table:
    """The failing sites, worst first, a row per missed target: line, measure, value against target, cause."""
    rows = failing_sites(found.sites, sites)
    known = found.sites.set_index(["site", "app"])["known"]
    shown, more = limited(rows, limit_sites)
    failing = rows["rank"].nunique()
    title = (f"Failing sites, worst first: {failing:,} of {found.sites['site'].nunique():,} sites miss a target"
             if failing else "Failing sites: none (every site meets every performance target)")
    grid = [[r.site, r.site_class, r.line, r.target, r.measure, r.measured, r.against,
             r.cause + (" (known failure)" if known.get((r.site, r.target), "") else "")]
            for r in shown.itertuples(index=False)]
    notes = [f"and {more:,} more failing sites (--all-sites lists them; site_verdicts.csv has every verdict)"] \
        if more else []
    return Table(title, ["site", "class", "line", "target", "measure", "measured", "target value", "cause"],
                        grid, notes)


def known_notes(found: Gate) -> list[str]:
    """Known failures met (not failing the check) and declared ones no failing verdict matched."""
    met = found.classes[~found.classes["passed"] & (found.classes["known"] != "")]
    lines = [f"known failures (they do not fail the check): {keys[0]} on {keys[1]}, {', '.join(rows['app'])}: "
             f"{keys[2]}" for keys, rows in met.groupby(["site_class", "access_profile", "known"], sort=False)]
    for k in found.unused:
        what = ", ".join(f"{key} {value}" for key, value in k.model_dump(by_alias=True, exclude_none=True).items()
                         if key != "reason")
        lines.append(f"known failure not met ({what}): nothing fails there now; remove it from known_failures")
    return lines


def verdict_line(found: Gate, baseline: bool) -> str:
    """The check's last line: what fails it (or that nothing does)."""
    if baseline:
        count = len(found.regressions or [])
        still = len(found.failing)
        return (f"{count} regressions against the baseline" if count else "nothing got worse than the baseline"
                + (f" ({still} site class verdicts miss their target, as before)" if still else ""))
    if found.failing.empty:
        known = int((~found.classes["passed"]).sum())
        return (f"no unexpected misses: {known} verdicts miss their target as declared known failures" if known
                else "all site classes meet their performance targets")
    return f"{len(found.failing)} verdicts missed their target"
