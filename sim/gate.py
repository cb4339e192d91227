"""What makes ``testbed check`` fail: misses not declared known, or, against a previous run, only what got worse.

A scenario's ``known_failures`` excuse the verdicts they match (reported, with their reason, but not failing the
check); a site class's miss is excused too when every one of its failing sites is. With a baseline (a previous
``check --json``), the check fails only on regressions: a site class or site that passed and now fails (or was not
there), or a failing site class with a smaller share of sites passing than before; and, where the check judges
availability, an availability verdict that missed its target and passed before (or was not in the baseline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.errors import TestbedError
from sim.model.scenario import KnownFailure
from sim.targets import Verdicts
from sim.units import significant

CLASS_KEY = ["site_class", "access_profile", "app"]
SITE_KEY = ["site", "app"]
AVAILABILITY_KEY = ["site_class", "access_profile", "backup", "app"]  # an availability verdict (sim.availability)
SHARE_TOLERANCE = 1e-9  # a share "fell" only by more than rounding


@dataclass(frozen=True)
class Regression:
    """A verdict that got worse: at ``level`` (``site class`` or ``site``) ``name``'s ``target``, before -> after."""

    level: str
    name: str
    target: str
    before: str
    after: str
    key: tuple = ()  # (site_class, access_profile, app) for a site class; (site, app) for a site; AVAILABILITY_KEY

    def words(self) -> str:
        """E.g. 'site gp-adsl, video: passed (100% of sessions) -> failed (20% of sessions)'."""
        return f"{self.level} {self.name}, {self.target}: {self.before} -> {self.after}"


@dataclass(frozen=True)
class Gate:
    """The check's judgement: its class and site verdicts with ``known`` (the reason, or ''), and regressions.

    ``regressions`` is None without a baseline.
    """

    classes: pd.DataFrame
    sites: pd.DataFrame
    regressions: list[Regression] | None
    unused: list[KnownFailure]  # known failures that matched no failing verdict (fixed, or never failing)

    @property
    def failing(self) -> pd.DataFrame:
        """Site class verdicts that miss their target and are not known failures."""
        return self.classes[~self.classes["passed"] & (self.classes["known"] == "")]

    def failing_keys(self, level: str) -> set[tuple]:
        """The verdicts at ``level`` (``site class`` or ``site``) that fail the check, by key.

        With a baseline, the regressions; without, the failing verdicts that are not known failures. Keys are
        (site_class, access_profile, app) for a site class and (site, app) for a site.
        """
        if self.regressions is not None:
            return {r.key for r in self.regressions if r.level == level}
        rows, names = (self.classes, CLASS_KEY) if level == "site class" else (self.sites, SITE_KEY)
        bad = rows[~rows["passed"] & (rows["known"] == "")]
        return set(map(tuple, bad[names].astype(str).to_numpy().tolist()))

    def failing_availability(self, judged: pd.DataFrame) -> pd.DataFrame:
        """The availability verdicts (:func:`judge_availability`'s) that fail the check.

        Without a baseline, the misses no known failure excuses; with one, those of them that are regressions.
        """
        missed = availability_misses(judged)
        if self.regressions is None:
            return missed
        keys = {r.key for r in self.regressions if r.level == "availability"}
        return missed[[key in keys for key in _keys(missed, AVAILABILITY_KEY)]]

    @property
    def passed(self) -> bool:
        """Without a baseline: no unknown class failure; with one: no regression."""
        return not self.regressions if self.regressions is not None else self.failing.empty


def judge(verdicts: Verdicts, known: tuple[KnownFailure, ...], baseline: dict | None = None) -> Gate:
    """Mark known failures in the class and site verdicts; compare with ``baseline`` (:func:`read_baseline`)."""
    site_found = _matches_of(verdicts.sites, known, True)
    sites = verdicts.sites.assign(known=pd.Series([known[i].reason if i >= 0 else "" for i in site_found],
                                                  index=verdicts.sites.index, dtype="str"))
    class_found = _matches_of(verdicts.classes, known, False)
    classes = verdicts.classes.assign(known=_class_reasons(verdicts.classes, class_found, sites, known))
    used = set(site_found) | set(class_found)
    unused = [k for i, k in enumerate(known) if i not in used and k.availability is None]
    regressions = None if baseline is None else _regressions(classes, sites, baseline)
    return Gate(classes, sites, regressions, unused)


def _matches_of(verdicts: pd.DataFrame, known: tuple[KnownFailure, ...], site_level: bool) -> list[int]:
    """:func:`_first_match` of each row of ``verdicts`` (-1: none).

    Only failing rows are read (an estate's passing rows are most of its tens of thousands), and none when no
    known failure is of this kind.
    """
    found = [-1] * len(verdicts)
    if not any(k.availability is None for k in known):
        return found
    failing = [at for at, passed in enumerate(verdicts["passed"].tolist()) if not passed]  # as _first_match reads it
    for at, row in zip(failing, verdicts.iloc[failing].itertuples(index=False)):
        found[at] = _first_match(known, row, site_level)
    return found


def _first_match(known: tuple[KnownFailure, ...], row, site_level: bool) -> int:
    """The index of the first known failure matching a failing verdict ``row`` (-1: none, or it passed)."""
    if row.passed:
        return -1
    return next((i for i, k in enumerate(known) if _matches(k, row, site_level)), -1)


def _matches(known: KnownFailure, row, site_level: bool) -> bool:
    if known.availability is not None:  # an availability verdict's (judge_availability)
        return False
    if known.site is not None and (not site_level or known.site != row.site):
        return False
    return all(want is None or want == have for want, have in
               ((known.site_class, row.site_class), (known.access, row.access_profile), (known.target, row.app)))


def judge_availability(found: Gate, rows: pd.DataFrame, known: tuple[KnownFailure, ...],
                       baseline: dict | None = None) -> tuple[Gate, pd.DataFrame]:
    """Mark the availability verdicts (:mod:`sim.availability`'s class table) that known failures excuse.

    A failing row is excused (``known``: the reasons) when every measure it misses (``share``: the share usable;
    ``hours``: the hours in the worst years) is named by an entry with ``availability`` matching its class,
    access profile, technology, backup and app (an absent key matches any). The gate returned also lists the
    availability entries that excused no miss among its unused known failures. Against a ``baseline``
    (:func:`read_baseline`; ``found`` judged against it too), a miss not excused is a regression when it passed
    before or was not there (a baseline without availability verdicts: every such miss).
    """
    entries = [(i, k) for i, k in enumerate(known) if k.availability is not None]
    used: set[int] = set()
    reasons = []
    for row in rows.itertuples(index=False):
        missed = _missed(row)
        mine = [(i, k) for i, k in entries if _matches_availability(k, row)
                and (k.availability == "all" or k.availability in missed)]
        used.update(i for i, _ in mine)
        covered = {m for _, k in mine for m in (MEASURES if k.availability == "all" else (k.availability,))}
        reasons.append("; ".join(dict.fromkeys(k.reason for _, k in mine)) if missed and missed <= covered else "")
    judged = rows.assign(known=pd.Series(reasons, index=rows.index, dtype="str"))
    unused = found.unused + [k for i, k in entries if i not in used]
    regressions = found.regressions
    if baseline is not None:
        regressions = [*(regressions or []), *_availability_regressions(judged, baseline.get("availability"))]
    return Gate(found.classes, found.sites, regressions, unused), judged


def _availability_regressions(judged: pd.DataFrame, before_rows: dict[tuple, dict] | None) -> list[Regression]:
    """The availability misses (not excused) that passed in the baseline's rows or are not among them."""
    found = []
    missed = availability_misses(judged)
    for key, row in zip(_keys(missed, AVAILABILITY_KEY), missed.to_dict("records")):
        before = (before_rows or {}).get(key)
        if before is None or before["passed"]:
            found.append(Regression("availability", f"{row['site_class']} on {row['access_profile']}, backup "
                                    f"{row['backup']}", row["app"], _availability_state(before),
                                    _availability_state(row), key))
    return found


def _availability_state(row: dict | None) -> str:
    if row is None:
        return "absent"
    return (f"{'passed' if row['passed'] else 'failed'} (usable {float(row['share_usable']):.2%}, worst years "
            f"{significant(float(row['worst_h']), 2)} h)")


def _keys(rows: pd.DataFrame, names: list[str]) -> list[tuple]:
    """Each row's key: its ``names`` columns as text (as a baseline's JSON keys are read)."""
    return list(map(tuple, rows[names].astype(str).to_numpy().tolist()))


MEASURES = ("share", "hours")  # an availability verdict's measures (sim.availability._judge)


def _missed(row) -> set[str]:
    """The measures an availability row misses: ``share`` (usable share) and ``hours`` (worst years' hours)."""
    missed = set()
    if row.share_usable < row.target_share:
        missed.add("share")
    if row.worst_h > row.target_hours:
        missed.add("hours")
    return missed


def _matches_availability(known: KnownFailure, row) -> bool:
    return all(want is None or want == have for want, have in
               ((known.site_class, row.site_class), (known.access, row.access_profile),
                (known.technology, row.technology), (known.backup, row.backup), (known.target, row.app)))


def availability_misses(rows: pd.DataFrame) -> pd.DataFrame:
    """The availability verdicts that fail the check: missed and not excused by a known failure."""
    known = rows["known"] if "known" in rows else pd.Series("", index=rows.index)
    return rows[~rows["passed"] & (known == "")]


def availability_words(row, apps: str | None = None) -> str:
    """An availability verdict in words: class, technology, access, backup, app, hours a year, interval, target.

    E.g. "gp_medium on FTTC (fttc_80_20), backup none, video: 1.1 working hours a year without it (95% interval
    0.71-1.6); target: usable 99.99% of working hours, at most 8 h in 95% of years: usable 99.96% ... < 99.99%".
    ``apps`` names the apps in place of the row's own (several apps with the same figures).
    """
    return (f"{row.site_class} on {row.technology} ({row.access_profile}), backup {row.backup}, "
            f"{apps or row.app}: {significant(row.without_h, 2)} working hours a year without it (95% interval "
            f"{significant(row.without_low_h, 2)}-{significant(row.without_high_h, 2)}); "
            f"target: usable {row.target_share:.2%} of working hours, at most {row.target_hours:g} h in "
            f"{row.target_years:.0%} of years: {row.reason}")


def availability_lines(rows: pd.DataFrame) -> list[str]:
    """``rows``' availability verdicts in words (:func:`availability_words`), apps with the same figures together."""
    shown = rows.assign(words=[availability_words(r, "{apps}") for r in rows.itertuples(index=False)])
    return [words.replace("{apps}", ", ".join(part["app"]))
            for words, part in shown.groupby("words", sort=False)]


def _class_reasons(classes: pd.DataFrame, found: list[int], sites: pd.DataFrame,
                   known: tuple[KnownFailure, ...]) -> pd.Series:
    """A failing class verdict is known if a class-level entry matches it, or if every failing site of it is."""
    failing_sites = sites[~sites["passed"]]
    by_class = {key: rows for key, rows in failing_sites.groupby(CLASS_KEY, sort=False)}
    reasons = []
    for row, i in zip(classes.itertuples(index=False), found):
        reason = known[i].reason if i >= 0 else ""
        mine = by_class.get((row.site_class, row.access_profile, row.app))
        if not reason and not row.passed and mine is not None and (mine["known"] != "").all():
            reason = "; ".join(sorted(set(mine["known"])))
        reasons.append(reason)
    return pd.Series(reasons, index=classes.index, dtype="str")


def read_baseline(path: Path | str) -> dict:
    """A previous run's ``check --json`` summary: its site class (and site, and availability) verdicts by key.

    Raises:
        TestbedError: Naming the file (and line) if it cannot be read or is not such a summary.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TestbedError(f"--baseline {path}: {exc.strerror or exc}; give the JSON a previous "
                           "`testbed check --json FILE` wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise TestbedError(f"--baseline {path}{where}: not JSON ({exc}); give the JSON a previous "
                           "`testbed check --json FILE` wrote") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("verdicts"), list):
        raise TestbedError(f"--baseline {path}: no 'verdicts' list; give the JSON a previous "
                           "`testbed check --json FILE` wrote")
    listed = {field: _rows(doc[field], key, path, field) if isinstance(doc.get(field), list) else None
              for field, key in (("sites", SITE_KEY), ("availability", AVAILABILITY_KEY))}
    return {"scenario": doc.get("scenario"), "classes": _rows(doc["verdicts"], CLASS_KEY, path, "verdicts"), **listed}


def _rows(rows: list, key: list[str], path: Path, field: str) -> dict[tuple, dict]:
    out = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(k not in row for k in [*key, "passed"]):
            raise TestbedError(f"--baseline {path}: {field}[{i}] lacks one of {', '.join([*key, 'passed'])}")
        out[tuple(str(row[k]) for k in key)] = row
    return out


def _regressions(classes: pd.DataFrame, sites: pd.DataFrame, baseline: dict) -> list[Regression]:
    found = []
    for row in classes[~classes["passed"] & (classes["known"] == "")].itertuples(index=False):
        before = baseline["classes"].get((row.site_class, row.access_profile, row.app))
        worse = (before is None or before["passed"]
                 or float(row.share_passing) < float(before.get("share_passing", 0.0)) - SHARE_TOLERANCE)
        if worse:
            found.append(Regression("site class", f"{row.site_class} on {row.access_profile}", row.app,
                                    _class_state(before), _class_state(row._asdict()),
                                    (row.site_class, row.access_profile, row.app)))
    if baseline["sites"] is not None:
        for row in sites[~sites["passed"] & (sites["known"] == "")].itertuples(index=False):
            before = baseline["sites"].get((row.site, row.app))
            if before is None or before["passed"]:
                found.append(Regression("site", row.site, row.app, _site_state(before), _site_state(row._asdict()),
                                        (row.site, row.app)))
    return found


def _class_state(row: dict | None) -> str:
    if row is None:
        return "absent"
    return f"{'passed' if row['passed'] else 'failed'} ({float(row['share_passing']):.0%} of {row['sites']} sites)"


def _site_state(row: dict | None) -> str:
    if row is None:
        return "absent"
    verdict = "passed" if row["passed"] else "failed"
    share = row.get("share_passing")
    value = (f"{float(share):.0%} of sessions" if share is not None and share == share
             else f"busy hour {float(row.get('value', float('nan'))):.0%}")
    reason = f": {row['reason']}" if not row["passed"] and row.get("reason") else ""
    return f"{verdict} ({value}){reason}"
