"""Verdicts in the forms CI pipelines read: JUnit XML and a JSON summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from sim.targets import Verdicts


def junit_xml(verdicts: Verdicts, scenario: str, site_bar: float, availability: pd.DataFrame | None = None) -> str:
    """One test case per site class x access profile x app; a failure says what share passed and why.

    ``availability`` (the class table of :mod:`sim.availability`, when the scenario asks for one) adds a test
    suite per site class, a case per access profile x app named ``availability.<app>``.
    """
    classes = verdicts.classes
    suites = ET.Element("testsuites", name=f"testbed {scenario}")
    for site_class, rows in classes.groupby("site_class", sort=True):
        failures = int((~rows["passed"]).sum())
        suite = ET.SubElement(suites, "testsuite", name=f"{scenario}.{site_class}", tests=str(len(rows)),
                              failures=str(failures), errors="0", skipped="0")
        for row in rows.itertuples(index=False):
            case = ET.SubElement(suite, "testcase", classname=f"{scenario}.{site_class}.{row.access_profile}",
                                 name=row.app)
            if not row.passed:
                message = (f"{row.share_passing:.0%} of {row.sites} sites pass (bar {site_bar:.0%}): "
                           f"{row.reason}")
                ET.SubElement(case, "failure", message=message, type="TargetMissed").text = message
    if availability is not None:
        _availability_suites(suites, availability, scenario)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _availability_suites(suites: ET.Element, availability: pd.DataFrame, scenario: str) -> None:
    for site_class, rows in availability.groupby("site_class", sort=True):
        failures = int((~rows["passed"]).sum())
        suite = ET.SubElement(suites, "testsuite", name=f"{scenario}.{site_class}.availability",
                              tests=str(len(rows)), failures=str(failures), errors="0", skipped="0")
        for row in rows.itertuples(index=False):
            case = ET.SubElement(suite, "testcase", classname=f"{scenario}.{site_class}.{row.access_profile}",
                                 name=f"availability.{row.app}")
            if not row.passed:
                message = (f"{row.without_h:.2f} working hours a year without it "
                           f"[{row.without_low_h:.2f}-{row.without_high_h:.2f}]: {row.reason}")
                ET.SubElement(case, "failure", message=message, type="TargetMissed").text = message


def summary_json(verdicts: Verdicts, scenario: str, seed: int, availability: pd.DataFrame | None = None) -> str:
    """The check's result as JSON: overall pass, and every site class x access profile x app verdict.

    ``availability`` (the class table of :mod:`sim.availability`) adds its rows under ``availability`` and counts
    its misses in ``failed`` and ``all_pass``.
    """
    failed = int((~verdicts.classes["passed"]).sum())
    doc = {"scenario": scenario, "seed": seed, "all_pass": verdicts.all_pass, "failed": failed,
           "verdicts": json.loads(verdicts.classes.to_json(orient="records"))}
    if availability is not None:
        missed = int((~availability["passed"]).sum())
        doc.update(all_pass=doc["all_pass"] and not missed, failed=failed + missed,
                   availability=json.loads(availability.to_json(orient="records")))
    return json.dumps(doc, indent=1) + "\n"


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
