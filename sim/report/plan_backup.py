"""A plan's primary + backup combinations (``plan_backup.csv``, :mod:`sim.plan_backup`) as rows of text and HTML."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sim.errors import TestbedError
from sim.report.availability import hours_text, span_text
from sim.report.page import esc as html_esc

BACKUP_FILE = "plan_backup.csv"
HEADER = ["site class", "primary + backup", "GBP a year", "price sources", "working time a year without [95% CI]",
          "performance", "availability", "answer", "reason"]
ASSUMPTION = "assumption"  # a price's source when no docs/sources.md section gives it (sim.plan_backup)


def read_backup(folder: Path | str) -> pd.DataFrame | None:
    """The plan's combinations table, or None when the plan weighed no backup (no ``availability`` key).

    Raises:
        TestbedError: If the file cannot be read.
    """
    path = Path(folder) / BACKUP_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise TestbedError(f"{path}: cannot be read ({exc})") from None
    return table


def rows(table: pd.DataFrame) -> list[list[str]]:
    """One row of text cells per combination: class, primary + backup, cost, price sources, hours, verdicts, answer.

    The answer flags a choice resting on a price that is an assumption; the last cell is the reason.
    """
    out = []
    for row in table.to_dict("records"):
        if not isinstance(row["primary"], str):  # a class capacity alone cannot serve: its reason only
            out.append([row["site_class"], "none", "", "", "", "no", "", "", str(row["reason"])])
            continue
        hours = (f"{row['app']}: {hours_text(row['without_h'])} "
                 f"[{span_text(row['without_low_h'], row['without_high_h'])}]")
        sources = [_text(row.get("primary_source")), _text(row.get("backup_source"))]
        answer = ""
        if row["chosen"]:
            answer = "cheapest meeting every target" + (", priced by assumption" if ASSUMPTION in sources else "")
        out.append([row["site_class"], f"{row['primary']} + {row['backup']}",
                    f"{row['gbp_per_year']:,.0f} ({row['primary_gbp_per_year']:,.0f} + "
                    f"{row['backup_gbp_per_year']:,.0f})", " + ".join(s or "-" for s in sources),
                    hours, _yes(row["performance_passed"]), _yes(row["availability_passed"]), answer,
                    str(row["reason"])])
    return out


def _text(value: object) -> str:
    """A cell read back from the CSV: '' for an empty one (NaN), or one an older plan did not write."""
    return value if isinstance(value, str) else ""


def _yes(value: object) -> str:
    return "meets" if bool(value) else "misses"


def html(folder: Path) -> str:
    """The combinations as an HTML section for the plan's page ('' when the plan weighed no backup)."""
    table = read_backup(folder)
    if table is None or table.empty:
        return ""
    body = "".join("<tr>" + "".join(f"<td>{html_esc(c)}</td>" for c in cells) + "</tr>" for cells in rows(table))
    head = "".join(f"<th>{html_esc(h)}</th>" for h in HEADER)
    return ("<h2>Primary line + backup: the cheapest meeting the performance and availability targets</h2>"
            "<p>Per site class, combinations cheapest first (rentals and backup prices a year, GBP, excluding VAT "
            "and installation), up to the first that meets every target. Price sources: the primary's and the "
            "backup's, each a docs/sources.md section or 'assumption' (a figure with no source: its range is in "
            "topologies/access.yaml or faults.yaml; '-': no backup, nothing to pay); an answer priced by "
            "assumption says so. Working time: a site's mean working time a year without the app (video "
            "consultations where the class has them).</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
