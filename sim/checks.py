"""Verdicts in the forms CI pipelines read: JUnit XML and a JSON summary.

Both carry the run's facts (scenario, its file, the results folder if one was written, seed, phase timings), a
verdict per site class x access profile x target and per site x target with the measured value, known failures
(as skipped cases, with their reason) and, against a baseline, the regressions. A case fails exactly when it makes
the check fail (:class:`sim.gate.Gate`).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from sim.gate import CLASS_KEY, SITE_KEY, Gate, availability_misses, availability_words

FORMAT_VERSION = 2  # 2: site verdicts with measures, known failures, regressions, timings, the run's path
SITE_FIELDS = ["site", "site_class", "access_profile", "technology", "app", "sessions", "sessions_passing",
               "share_passing", "value", "passed", "reason", "criterion", "measure", "measured_value", "target_value",
               "value_unit", "cause", "known"]


def junit_xml(gate: Gate, facts: dict, site_bar: float, availability: pd.DataFrame | None = None) -> str:
    """A suite per site class of its class verdicts, and one of its sites' verdicts; the run's facts as properties.

    Args:
        gate: The check's judgement (verdicts, known failures, regressions).
        facts: The run's facts: ``scenario``, ``scenario_file``, ``run_folder`` (or None), ``seed``.
        site_bar: Share of a class's sites that must pass (for the failure message).
        availability: The class table of :mod:`sim.availability`, when the check judges one: a suite per
            site class, a case per access profile x app named ``availability.<app>`` (its class name ends in
            ``<profile>+<backup>`` where the class's sites have several backups); a miss a known failure excuses
            is skipped, with its reason.
    """
    scenario = facts["scenario"]
    suites = ET.Element("testsuites", name=f"testbed {scenario}")
    failing = {level: gate.failing_keys(level) for level in ("site class", "site")}
    for site_class, rows in gate.classes.groupby("site_class", sort=True):
        suite = _suite(suites, f"{scenario}.{site_class}", facts)
        for row in rows.itertuples(index=False):
            case = ET.SubElement(suite, "testcase", classname=f"{scenario}.{site_class}.{row.access_profile}",
                                 name=row.app)
            _properties(case, {"share_passing": row.share_passing, "sites": row.sites,
                               "sites_passing": row.sites_passing})
            message = f"{row.share_passing:.0%} of {row.sites} sites pass (bar {site_bar:.0%}): {row.reason}"
            _outcome(case, row, message, tuple(str(getattr(row, k)) for k in CLASS_KEY) in failing["site class"],
                     gate.regressions is not None)
        _count(suite)
    for site_class, rows in gate.sites.groupby("site_class", sort=True):
        suite = _suite(suites, f"{scenario}.{site_class}.sites", facts)
        for row in rows.itertuples(index=False):
            case = ET.SubElement(suite, "testcase", name=row.app,
                                 classname=f"{scenario}.{site_class}.{row.access_profile}.{row.site}")
            _properties(case, {"share_passing": row.share_passing, "value": row.value,
                               "measure": getattr(row, "measure", ""), "measured_value": getattr(row, "measured_value",
                                                                                                   math.nan),
                               "target_value": getattr(row, "target_value", math.nan),
                               "value_unit": getattr(row, "value_unit", "")})
            _outcome(case, row, row.reason, tuple(str(getattr(row, k)) for k in SITE_KEY) in failing["site"],
                     gate.regressions is not None)
        _count(suite)
    if availability is not None:
        _availability_suites(suites, availability, scenario, gate)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _availability_suites(suites: ET.Element, availability: pd.DataFrame, scenario: str, gate: Gate) -> None:
    """A suite per site class: a case per access profile x app; a miss fails it when it fails the check.

    A miss a known failure excuses is skipped, with its reason; against a baseline, so is one that missed there too.
    """
    known = availability["known"] if "known" in availability else pd.Series("", index=availability.index)
    failing = gate.failing_availability(availability.assign(known=known)).index
    for site_class, rows in availability.assign(known=known).groupby("site_class", sort=True):
        suite = ET.SubElement(suites, "testsuite", name=f"{scenario}.{site_class}.availability")
        several = "backup" in rows and rows["backup"].nunique() > 1  # groups with backups of their own
        for index, row in zip(rows.index, rows.itertuples(index=False)):
            line = f"{row.access_profile}+{row.backup}" if several else row.access_profile
            case = ET.SubElement(suite, "testcase", classname=f"{scenario}.{site_class}.{line}",
                                 name=f"availability.{row.app}")
            if row.passed:
                continue
            message = availability_words(row)
            if index in failing:
                ET.SubElement(case, "failure", message=message, type="TargetMissed").text = message
            elif row.known:
                ET.SubElement(case, "skipped", message=f"known failure ({row.known}): {message}")
            else:
                ET.SubElement(case, "skipped", message=f"failed in the baseline too: {message}")
        _count(suite)


def _suite(parent: ET.Element, name: str, facts: dict) -> ET.Element:
    suite = ET.SubElement(parent, "testsuite", name=name)
    _properties(suite, {key: facts.get(key) for key in ("scenario", "scenario_file", "run_folder", "seed")})
    return suite


def _properties(element: ET.Element, values: dict) -> None:
    """Add ``values`` as JUnit properties, leaving out empty ones (None, NaN, '')."""
    shown = {k: v for k, v in values.items() if v is not None and v == v and v != ""}
    if shown:
        props = ET.SubElement(element, "properties")
        for key, value in shown.items():
            text = f"{value:.6g}" if isinstance(value, float) else str(value)
            ET.SubElement(props, "property", name=key, value=text)


def _outcome(case: ET.Element, row, message: str, fails: bool, baseline: bool) -> None:
    """A failure when the verdict fails the check; a skip when it fails but is known (or failed before)."""
    if row.passed:
        return
    if fails:
        ET.SubElement(case, "failure", message=message, type="TargetMissed").text = message
    elif row.known:
        ET.SubElement(case, "skipped", message=f"known failure ({row.known}): {message}")
    elif baseline:
        ET.SubElement(case, "skipped", message=f"failed in the baseline too: {message}")


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))


def summary_json(gate: Gate, facts: dict, availability: pd.DataFrame | None = None) -> str:
    """The check's result as JSON (:data:`FORMAT_VERSION`): a later ``check --baseline`` reads it.

    Args:
        gate: The check's judgement.
        facts: The run's facts: ``scenario``, ``scenario_file``, ``run_folder``, ``seed``, ``timings_s``.
        availability: The class table of :mod:`sim.availability`, when the check judges one (with ``known``,
            :func:`sim.gate.judge_availability`): its rows go under ``availability``, its misses count in
            ``failed`` (excused ones in ``known_failures``), those that fail the check (against a baseline: its
            regressions) in ``passed``, and every miss in ``all_pass``.
    """
    classes = gate.classes
    sites = gate.sites[[c for c in SITE_FIELDS if c in gate.sites]]
    doc = {"format": FORMAT_VERSION, **facts, "passed": gate.passed, "all_pass": bool(classes["passed"].all()),
           "failed": len(gate.failing), "known_failures": int((~classes["passed"] & (classes["known"] != "")).sum()),
           "regressions": None if gate.regressions is None else [
               {"level": r.level, "name": r.name, "target": r.target, "before": r.before, "after": r.after}
               for r in gate.regressions],
           "unused_known_failures": [k.model_dump(by_alias=True, exclude_none=True) for k in gate.unused],
           "verdicts": _records(classes), "sites": _records(sites)}
    if availability is not None:  # its misses fail the check unless excused (sim.gate.judge_availability)
        missed = len(availability_misses(availability))
        excused = int((~availability["passed"]).sum()) - missed
        failing = len(gate.failing_availability(availability))  # with a baseline: its regressions only
        doc.update(passed=doc["passed"] and not failing, all_pass=doc["all_pass"] and not (missed or excused),
                   failed=doc["failed"] + missed, known_failures=doc["known_failures"] + excused,
                   availability=_records(availability))
    return json.dumps(doc, indent=1) + "\n"


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def write_text(path: Path | str, text: str) -> None:
    """Write a file whole (into a temporary name first, so a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave the temporary file behind (e.g. ``path`` is a folder)
        raise
