"""The plain-English summary at the top of a report, computed from the verdicts."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sim.report.data import RunData, by_technology, technology_rank


@dataclass(frozen=True)
class Finding:
    """One site class and app: the share of its sites meeting the target on each access technology."""

    app: str
    site_class: str
    label: str
    app_label: str
    shares: tuple[tuple[str, float, int, bool], ...]  # (technology, share passing, sites, passed)

    @property
    def failing(self) -> list[tuple[str, float, int, bool]]:
        """Technologies on which the class misses the target."""
        return [s for s in self.shares if not s[3]]

    def sentence(self) -> str:
        """The finding in words, e.g. 'GP practice, medium: on ADSL2+ 0% of sites meet the video target; ...'."""
        parts = [f"on {tech} {share:.0%}" for tech, share, _, _ in self.shares]
        verb = "meet" if self.app != "link" else "stay within"
        target = f"the {self.app_label} target" if self.app != "link" else "the busy-hour load limit"
        first, rest = parts[0], parts[1:]
        head = f"{self.label}: {first} of sites {verb} {target}"
        return head + ("; " + ", ".join(rest) if rest else "") + "."


def findings(run: RunData) -> list[Finding]:
    """Findings for every app and site class, failing ones first, in a stable order."""
    table = by_technology(run.classes, run.site_bar)
    out = []
    for (app, site_class), rows in table.groupby(["app", "site_class"], sort=True):
        rows = rows.sort_values("technology", key=lambda s: s.map(technology_rank))
        shares = tuple((r.technology, float(r.share_passing), int(r.sites), bool(r.passed))
                       for r in rows.itertuples(index=False))
        out.append(Finding(app, site_class, run.class_label(site_class), run.app_names.get(app, app), shares))
    order = {app: i for i, app in enumerate(run.app_names)}
    return sorted(out, key=lambda f: (not f.failing, order.get(f.app, 9), f.site_class))


def headline(run: RunData) -> str:
    """One sentence for a non-engineer: where copper fails and whether fibre passes."""
    table = by_technology(run.classes, run.site_bar)
    fail = table[~table["passed"]]
    if fail.empty:
        return "Every site class meets every target on every access technology in this scenario."
    by_medium = {medium: rows for medium, rows in fail.groupby("medium")}
    parts = [_medium_sentence(medium, by_medium.get(medium), run.app_names) for medium in ("copper", "fibre", "radio")
             if medium in set(table["medium"])]
    return " ".join(p for p in parts if p)


def _medium_sentence(medium: str, failed: pd.DataFrame | None, names: dict[str, str]) -> str:
    if failed is None or failed.empty:
        return f"On {medium}, every site class meets every target."
    items = sorted({f"{names.get(a, a)} on {t}" for a, t in zip(failed["app"], failed["technology"])})
    return f"On {medium}, some site classes miss targets: {', '.join(items)}."
