"""Read a finished results folder: everything a report needs, and nothing from an engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from sim import records as rec
from sim.errors import TestbedError

LINK_LABEL = "access-link busy hour"  # the site verdicts' "link" app: busy-hour utilisation of the access links
# The record and link columns the figures draw: a report reads only these (an estate's records are millions of rows).
RECORD_FIELDS = ["app", "traffic", "kind", "urgency", "technology", "completed", "duration_s", "share_at_target",
                 "share_below_min"]
LINK_FIELDS = ["site", "direction", "bin_start_s", "bin_s", "utilisation"]
TECHNOLOGY_ORDER = ["ADSL", "ADSL2+", "FTTC", "G.fast", "EFM", "FTTP", "Leased line", "4G", "5G", "Home broadband"]


@dataclass(frozen=True)
class RunData:
    """A results folder, read: metadata, resolved scenario, verdicts and records; link series on demand.

    ``records`` holds only the columns the report draws (:data:`RECORD_FIELDS`), its text as categoricals.
    """

    folder: Path
    meta: dict
    resolved: dict
    classes: pd.DataFrame
    sites: pd.DataFrame
    records: pd.DataFrame
    fidelity: pd.DataFrame | None = None  # simulator vs emulation on the same slice (``--engine both``)

    def site_links(self, sites: list[str]) -> pd.DataFrame:
        """The link series (:data:`LINK_FIELDS`) of these sites' access links, read from the folder.

        A report draws a few sites' links, and an estate has millions of link bins: only those are read.

        Raises:
            TestbedError: If the folder's link series cannot be read.
        """
        try:
            return rec.read(self.folder / "links.parquet", rec.LINK_COLUMNS, only=LINK_FIELDS,
                            filters=[("site", "in", sites)])
        except (OSError, ValueError, KeyError) as exc:
            raise TestbedError(f"{self.folder}: cannot read the link series: {exc}") from None

    def table(self, name: str, columns: list[str], text_as_categories: bool = False) -> pd.DataFrame:
        """Some columns of one of the folder's other tables (e.g. ``trace``), read from its Parquet file.

        ``text_as_categories``: text columns as pandas categoricals, as stored (millions of rows of a few thousand
        distinct values: a fraction of the memory and time).

        Raises:
            TestbedError: If the table or a column is missing.
        """
        try:
            if text_as_categories:
                return _released(rec.read_parquet(self.folder / f"{name}.parquet", columns=columns,
                                                  read_dictionary=columns))
            return _released(rec.read_parquet(self.folder / f"{name}.parquet", columns=columns))
        except (OSError, ValueError, KeyError) as exc:
            raise TestbedError(f"{self.folder}: cannot read {name}.parquet: {exc}") from None

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.meta["scenario"]

    @property
    def site_bar(self) -> float:
        """Share of a class's sites that must pass for the class to pass."""
        return float(self.resolved["targets"]["passing"]["sites"])

    @property
    def apps(self) -> dict[str, dict]:
        """The run's app registry (resolved catalogue), in its order."""
        return self.resolved["catalogue"]["apps"]

    @property
    def app_names(self) -> dict[str, str]:
        """Each app's label, in registry order, and the access links' ("link") last."""
        return app_labels(self.apps)

    def aggregated(self, app: str) -> bool:
        """Whether some site class carries ``app`` as one stream of all its users at once (its rates per user)."""
        classes = self.resolved["catalogue"].get("site_classes", {}).values()
        return any((c.get("activities") or {}).get(app, {}).get("aggregate") for c in classes)

    def class_label(self, site_class: str) -> str:
        """The catalogue's label of a site class (its name if it has none)."""
        return self.resolved["catalogue"]["site_classes"].get(site_class, {}).get("label", site_class)


def read_run(folder: Path | str) -> RunData:
    """Read a finished results folder.

    Raises:
        TestbedError: If the folder is missing, unfinished or not a results folder.
    """
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise TestbedError(f"{folder}: not a finished results folder (no meta.json)")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        _check_format(folder, meta)
        resolved = json.loads((folder / "resolved.json").read_text())
        classes = pd.read_csv(folder / "verdicts.csv", dtype={"reason": str}, keep_default_na=False)
        sites = pd.read_csv(folder / "site_verdicts.csv", dtype={"reason": str, "site": str}, keep_default_na=False,
                            na_values={"share_passing": [""], "measured_value": [""], "target_value": [""]})
        records = _released(rec.read(folder / "records.parquet", rec.RECORD_COLUMNS, only=RECORD_FIELDS,
                                     categories=True))
        fidelity = pd.read_csv(folder / "fidelity.csv") if (folder / "fidelity.csv").is_file() else None
    except (OSError, ValueError, KeyError) as exc:
        raise TestbedError(f"{folder}: cannot read the results folder: {exc}") from None
    return RunData(folder, meta, resolved, classes, sites, records, fidelity)


def _check_format(folder: Path, meta: dict) -> None:
    """Refuse a folder whose record table is of another format than this testbed's (:data:`sim.records.FORMAT_VERSION`).

    Raises:
        TestbedError: Naming both formats and the testbed version that wrote the folder.
    """
    written = meta.get("format_version")
    if written != rec.FORMAT_VERSION:
        raise TestbedError(f"{folder}: its records are of format {written} (written by testbed "
                           f"{meta.get('package_version', '?')} at revision {meta.get('git_revision') or '?'}), this "
                           f"testbed reads format {rec.FORMAT_VERSION}: run its scenario again with this version, or "
                           "read it with the version that wrote it")


def _released(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``, once Arrow's memory pool has handed back what reading it left unused.

    Reading millions of rows leaves the pool holding the Parquet pages and Arrow tables it decoded (0.4 GB after
    an estate's records), which it would keep for its next allocations; the report's next reads are pandas'.
    """
    pa.default_memory_pool().release_unused()
    return frame


SITE_TABLE_ROWS = 10_000  # the report's per-site table lists at most this many sites, worst first


def site_table(run: RunData) -> tuple[pd.DataFrame, int]:
    """One row per site, worst first: its line, how many targets it meets, and each miss with its measure and cause.

    Reads the folder's ``sites.csv`` (line length and rates). Returns the rows (at most :data:`SITE_TABLE_ROWS`)
    and how many sites the run has.

    Raises:
        TestbedError: If ``sites.csv`` cannot be read.
    """
    from sim import answers
    try:
        lines = pd.read_csv(run.folder / "sites.csv", dtype={"site": str}, keep_default_na=False,
                            na_values={"distance_m": [""]})
    except (OSError, ValueError) as exc:
        raise TestbedError(f"{run.folder}: cannot read sites.csv: {exc}") from None
    verdicts = run.sites
    rank = answers.site_rank(verdicts)
    order = {site: i for i, site in enumerate(rank["site"])}
    misses = answers.failing_sites(verdicts, lines[[c for c in LINE_FIELDS if c in lines]])  # a lookup per miss
    words: dict[str, list[str]] = {}
    for site, text in zip(misses["site"], _miss_words(misses)):
        words.setdefault(site, []).append(text)
    counts = verdicts.groupby("site", sort=False).agg(targets=("passed", "size"), met=("passed", "sum"),
                                                      worst_share=("share_passing", "min"))
    out = lines.drop_duplicates("site").merge(counts.reset_index(), on="site", how="inner")
    out["misses"] = [words.get(site, []) for site in out["site"]]
    out["order"] = [order.get(site, len(order)) for site in out["site"]]
    out = out.sort_values(["order", "site"], kind="stable").reset_index(drop=True)
    return out.head(SITE_TABLE_ROWS), len(out)


LINE_FIELDS = ["site", "access_profile", "distance_m", "down_bps", "up_bps"]  # what a miss's line words use


def _miss_words(misses: pd.DataFrame) -> list[str]:
    """Each missed target in words: 'video: time below 0.35 Mbit/s 100% (at most 0%): the 1 Mbit/s uplink'."""
    out = []
    for target, measure, measured, against, cause in zip(misses["target"], misses["measure"], misses["measured"],
                                                         misses["against"], misses["cause"]):
        value = f" {measure} {measured}" + (f" ({against})" if against else "") if measured else ""
        out.append(f"{target}:{value}" + (f": {cause}" if cause else ""))
    return out


def app_labels(apps: dict[str, dict]) -> dict[str, str]:
    """Labels of a registry's apps (name -> label, in order) and of the access links' verdict (``link``)."""
    return {**{name: spec["label"] for name, spec in apps.items()}, "link": LINK_LABEL}


def technology_rank(technology: str) -> tuple[int, str]:
    """Sort key putting copper technologies before fibre, then radio."""
    return (TECHNOLOGY_ORDER.index(technology) if technology in TECHNOLOGY_ORDER else len(TECHNOLOGY_ORDER),
            technology)


def by_technology(classes: pd.DataFrame, bar: float) -> pd.DataFrame:
    """Verdicts per site class x access technology x app (profiles of one technology pooled)."""
    keys = ["family", "site_class", "technology", "medium", "app"]
    out = classes.groupby(keys, sort=False).agg(sites=("sites", "sum"), sites_passing=("sites_passing", "sum"))
    out = out.reset_index()
    out["share_passing"] = out["sites_passing"] / out["sites"]
    out["passed"] = out["share_passing"] >= bar
    return out
