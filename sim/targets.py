"""Records + targets -> verdicts per session, per site and per site class.

A session passes when it meets every target of its app (an app with no target is load only: its sessions are
marked "not judged" and no site or class verdict is made for it; a call that fell short only because of the
patient's line fails, saying so, but no site verdict counts it: a site is judged on its own line); a site passes
an app when enough of its sessions pass (``targets.passing.sessions``); its access links pass when the busiest
hour's mean utilisation stays within ``targets.link.busy_hour_utilisation``; a site class on an access profile
passes an app when enough of its sites pass (``targets.passing.sites``). Every verdict carries the reason it failed.

Sessions and sites are judged on their own: :func:`site_verdicts` of some of the sites (e.g. a shard of an
estate run) gives exactly their rows of the whole, :func:`combine_site_verdicts` puts such parts back in the
order one evaluation of every site gives, and :func:`class_verdicts` pools sites into site classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from sim import quality
from sim.measures import (  # noqa: F401 - busy_hour_utilisation: part of this module's interface
    MEASURE_COLUMNS,
    MEDIAN_COLUMNS,
    PATIENT_END,
    TCP_QUEUE,
    against_words,
    busy_hour_utilisation,
    busy_hours,
    criterion_kind,
    link_measures,
    measures,
    value_words,
)
from sim.model.targets import Targets, judged_apps

LINK = "link"  # the site verdicts' app name for the access links' busy-hour utilisation
OUTCOME_COLUMNS = {"passed": "bool", "reason": "str", "mos": "float64", "quality": "str"}  # after SESSION_KEYS
NOT_JUDGED = "not judged (load only)"
CLASS_KEYS = ["family", "site_class", "access_profile", "technology", "medium"]
# A session verdict: the record's identifying columns, then whether it passed and why not.
SESSION_KEYS = ["session_id", "site", "site_class", "family", "access_profile", "technology", "medium", "app", "kind",
                "direction", "urgency"]
SITE_VERDICT_COLUMNS = {"site": "str", **{name: "str" for name in CLASS_KEYS}, "app": "str", "sessions": "int64",
                        "sessions_passing": "int64", "share_passing": "float64", "value": "float64", "passed": "bool",
                        "reason": "str", **MEASURE_COLUMNS}  # a failed row's criterion, median measure and its cause


@dataclass(frozen=True)
class Verdicts:
    """Verdicts at three levels: sessions, sites (per app, ``link`` for utilisation) and site classes."""

    sessions: pd.DataFrame
    sites: pd.DataFrame
    classes: pd.DataFrame

    @property
    def all_pass(self) -> bool:
        """True when every site class passes every app."""
        return bool(self.classes["passed"].all())


def evaluate(records: pd.DataFrame, links: pd.DataFrame, sites: pd.DataFrame, targets: Targets,
             window_s: tuple[float, float], media: dict[str, str], faults: pd.DataFrame | None = None) -> Verdicts:
    """Judge records and link utilisation against the targets.

    Args:
        records: The record table.
        links: The link utilisation series.
        sites: The topology's site table (every site appears in the verdicts, even one with no sessions).
        targets: The scenario's targets.
        window_s: The replayed window (s since midnight), over which the busy hour is sought.
        media: The calls whose quality is scored: app name -> ``audio`` or ``video`` (``Catalogue.media()``).
        faults: The line faults replayed (:func:`sim.spells.spells`), which a failed site's cause names; None: none.
    """
    sessions = session_verdicts(records, targets, media)
    site_rows = site_verdicts(sessions, links, sites, targets, window_s, records, faults)
    return Verdicts(sessions, site_rows, class_verdicts(site_rows, targets))


def site_verdicts(sessions: pd.DataFrame, links: pd.DataFrame, sites: pd.DataFrame, targets: Targets,
                  window_s: tuple[float, float], records: pd.DataFrame | None = None,
                  faults: pd.DataFrame | None = None) -> pd.DataFrame:
    """Verdicts per site and app, sorted by (site, app); then per site on its access links (app ``link``), by site.

    A failed row's ``reason`` is its main criterion's measure in words, e.g. "video 0.85 Mbit/s against
    1.5 Mbit/s (median of 4 failed): the 1 Mbit/s uplink" (:mod:`sim.measures`; the numbers in
    ``measured_value``, ``target_value``, ``value_unit``); without ``records``, the criterion alone.

    Args:
        sessions: Session verdicts of the sites' sessions (:func:`session_verdicts`).
        links: The sites' link utilisation series.
        sites: The sites' rows of the topology's site table.
        targets: The scenario's targets.
        window_s: The replayed window (s since midnight), over which the busy hour is sought.
        records: The sessions' records (same index as ``sessions``), whose measures failed rows report.
        faults: The line faults replayed (:func:`sim.spells.spells`): a failed row whose sessions mostly met one
            gives it as the cause.

    Returns:
        Columns :data:`SITE_VERDICT_COLUMNS`.
    """
    return pd.concat([_site_app_verdicts(sessions, sites, targets, records, faults),
                      _link_verdicts(links, sites, targets, window_s)], ignore_index=True)


def combine_site_verdicts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Site verdicts of disjoint sets of sites, in the order :func:`site_verdicts` of all their sites gives."""
    rows = pd.concat([part for part in parts if len(part)] or [_empty_sites()], ignore_index=True)
    is_link = rows["app"] == LINK
    apps = rows[~is_link].sort_values(["site", "app"], kind="stable")
    links = rows[is_link].sort_values("site", kind="stable")
    return pd.concat([apps, links], ignore_index=True)


def session_verdicts(records: pd.DataFrame, targets: Targets, media: dict[str, str]) -> pd.DataFrame:
    """One row per session: ``passed`` and, when it failed, ``reason`` (failed criteria joined by '; ').

    Sessions of an app with no target pass with the reason :data:`NOT_JUDGED`; no site verdict counts them. Calls
    of the apps in ``media`` (app -> ``audio`` or ``video``) get a quality score (:mod:`sim.quality`) in ``mos``
    and its band's word in ``quality`` ("good", "degraded but usable", "unusable"); others NaN and "".

    Returns:
        Columns :data:`SESSION_KEYS` (the records'), then :data:`OUTCOME_COLUMNS`; in the records' order.
    """
    mos = call_quality(records, media)
    criteria = {**_stream_failures(records, targets, mos), **_transfer_failures(records, targets)}
    names = list(criteria)
    mask = np.zeros(len(records), dtype=np.int64)
    for bit, failed in enumerate(criteria.values()):
        mask |= failed.astype(np.int64) << bit
    masks, which = np.unique(mask, return_inverse=True)  # a few distinct sets of failed criteria: each joined once
    text = np.asarray(["; ".join(n for bit, n in enumerate(names) if m >> bit & 1) for m in masks.tolist()],
                      dtype=object)
    out = records[SESSION_KEYS]  # copy on write: no copy of these columns is made
    out["passed"] = mask == 0
    judged = records["app"].isin(judged_apps(targets)).to_numpy()
    out["reason"] = _coded(np.where(judged, which.reshape(-1), len(text)), [*text.tolist(), NOT_JUDGED],
                           records.index)
    out["mos"] = mos
    verdict = {name: band.verdict for name, band in quality.LABELS.items()}
    bands, names = quality.band(mos), [*quality.LABELS, ""]
    which = np.full(len(bands), len(names), dtype=np.int32)
    for code, name in enumerate(names):  # a few bands: a comparison each, not a sort of every call's band
        which[bands == name] = code
    out["quality"] = _coded(which, [verdict.get(name, "") for name in names] + [""], records.index)
    return out


def _coded(codes: np.ndarray, words: list[str], index: pd.Index) -> pd.Series:
    """A text column (pandas strings) of ``words[codes]``, on ``index``: made from the codes, no string per row."""
    text = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(words, pa.large_string()))
    return pd.Series(pd.array(text.cast(pa.large_string()), dtype="str"), index=index, copy=False)


_RATE_CRITERIA = ("bitrate below target", "bitrate below minimum", "call quality MOS")


def patient_end_only(sessions: pd.DataFrame) -> pd.Series:
    """Failed calls whose every shortfall was the patient's line's (rate, and the quality that rate gave).

    A site is judged on what its own line does: such calls keep their failed verdict, naming the patient's end,
    but no site (nor class) verdict counts them.
    """
    codes, reasons = pd.factorize(sessions["reason"])  # a few distinct reasons: each read once

    def only_rate(reason: object) -> bool:
        return isinstance(reason, str) and PATIENT_END in reason and all(
            part == PATIENT_END or part.startswith(_RATE_CRITERIA) for part in reason.split("; "))

    only = np.asarray([only_rate(reason) for reason in reasons.tolist()] + [False], dtype=bool)  # -1: no reason
    return pd.Series(only[codes], index=sessions.index, name=sessions["reason"].name)


def call_quality(records: pd.DataFrame, media: dict[str, str]) -> np.ndarray:
    """Each record's call quality (MOS 1-4.5; :func:`sim.quality.score`), NaN where its app has no media."""
    mos = np.full(len(records), np.nan)
    scored = records["app"].isin(list(media)).to_numpy() & (records["traffic"] == "stream").to_numpy()
    if scored.any():
        video = {app for app, kind in media.items() if kind == "video"}
        calls = records.loc[scored, [*quality.INPUTS, "min_rate_bps", "target_rate_bps"]]  # only what it reads
        # A fixed-rate codec (minimum = target) that got less than its rate lost the rest: count it as loss.
        fixed = (calls["min_rate_bps"] >= calls["target_rate_bps"]).to_numpy()
        shortfall = np.clip(1.0 - calls["mean_rate_bps"].to_numpy() / calls["target_rate_bps"].to_numpy(), 0.0, 1.0)
        loss = np.where(fixed, np.fmax(calls["loss"].to_numpy(), shortfall), calls["loss"].to_numpy())
        mos[scored] = quality.score(calls.assign(loss=loss), video)["mos"].to_numpy()
    return mos


def _stream_failures(records: pd.DataFrame, targets: Targets, mos: np.ndarray) -> dict[str, np.ndarray]:
    """Failed criteria of stream sessions, each app against its own targets (same wording: one criterion)."""
    out: dict[str, np.ndarray] = {}
    app = records["app"].to_numpy()
    value = {name: records[name].to_numpy() for name in ("completed", "share_at_target", "share_below_min",
                                                          "one_way_delay_p95_s", "jitter_s", "loss")}
    if "bottleneck" in records:  # which end limits a rate: the same for every app, so found once
        home = (records["bottleneck"] == "home").to_numpy()
        tcp_queue = records["bottleneck"].str.endswith("_tcp_queue").to_numpy(dtype=bool)
    for name, t in targets.streams.items():
        mine = app == name
        if not mine.any():
            continue
        checks = {
            "call not completed": ~value["completed"],
            "bitrate below target": value["share_at_target"] < t.share_at_target,
            "bitrate below minimum": value["share_below_min"] > t.share_below_minimum,
            f"one-way delay p95 > {t.delay_p95 * 1e3:g} ms": value["one_way_delay_p95_s"] > t.delay_p95,
            f"jitter > {t.jitter * 1e3:g} ms": value["jitter_s"] > t.jitter,
            f"loss > {t.loss:.2%}": value["loss"] > t.loss,
        }
        if t.mos is not None:
            checks[f"call quality MOS < {t.mos:g}"] = mos < t.mos  # NaN (no media) never fails it
        if "bottleneck" in records:  # which end: a rate the patient's line could not carry
            short = checks["bitrate below target"] | checks["bitrate below minimum"]
            checks[PATIENT_END] = short & home
            checks[TCP_QUEUE] = short & tcp_queue
        for criterion, failed in checks.items():
            out[criterion] = out.get(criterion, np.zeros(len(records), dtype=bool)) | (mine & failed)
    return out


def _transfer_failures(records: pd.DataFrame, targets: Targets) -> dict[str, np.ndarray]:
    limits = transfer_limits_s(records, targets).to_numpy()
    judged = ~np.isnan(limits)
    completed = records["completed"].to_numpy()
    with np.errstate(invalid="ignore"):
        slower = records["duration_s"].to_numpy() > limits
    return {"not completed": judged & ~completed, "slower than target": judged & completed & slower}


def transfer_limits_s(records: pd.DataFrame, targets: Targets) -> pd.Series:
    """Completion-time limit (s) of each transfer session of a judged app (NaN for streams and load only)."""
    which, apps = pd.factorize(records["app"])  # a few apps: each looked up once
    limit_s = np.asarray([targets.transfers.get(app, np.nan) for app in apps.tolist()] + [np.nan], dtype=float)
    return pd.Series(limit_s[which], index=records.index)  # code -1 (no app) takes the NaN at the end


def _site_app_verdicts(sessions: pd.DataFrame, sites: pd.DataFrame, targets: Targets,
                       records: pd.DataFrame | None, faults: pd.DataFrame | None = None) -> pd.DataFrame:
    counted = sessions["app"].isin(judged_apps(targets)) & ~patient_end_only(sessions)
    # Only the verdict's own columns are filtered: the records give the rest of a failed session's (joined below).
    sessions = sessions.loc[counted, ["site", "app", "passed", "reason", "mos", "quality"] if records is not None
                            else sessions.columns]
    if sessions.empty:
        return _empty_sites()
    out = _counts(sessions)
    out["share_passing"] = out["sessions_passing"] / out["sessions"]
    out["passed"] = out["share_passing"] >= targets.passing.sessions
    out["value"] = out["share_passing"]
    failed = sessions[~sessions["passed"]]
    main = _main_reasons(failed, ["site", "app"]).rename("main").reset_index()
    out = out.merge(main, on=["site", "app"], how="left")
    out["main"] = out["main"].where(~out["passed"], "").fillna("").astype("str")
    if records is not None:
        failed = failed.join(records[[c for c in MEASURED if c in records and c not in failed]])
    found = measures(failed, out[out["main"] != ""].set_index(["site", "app"])["main"], sites, targets, faults) \
        if records is not None else None
    out = out.merge(found, on=["site", "app"], how="left") if found is not None else out.assign(criterion=out["main"])
    out["reason"] = out["detail"].fillna(out["main"]) if "detail" in out else out["main"]
    return _with_site_columns(out, sites)


def _counts(sessions: pd.DataFrame) -> pd.DataFrame:
    """Sessions and passing sessions per (site, app), sorted by both: a grouping by both with ``size`` and ``sum``.

    Counted by one integer key (each name's code among its sorted distinct values), a fraction of grouping by
    two text columns. Rows without a site or app are not counted, as a grouping leaves them out.
    """
    site_codes, site_names = pd.factorize(sessions["site"], sort=True)
    app_codes, app_names = pd.factorize(sessions["app"], sort=True)
    named = (site_codes >= 0) & (app_codes >= 0)
    key = site_codes[named].astype(np.int64) * len(app_names) + app_codes[named]
    size = len(site_names) * len(app_names)
    counts = np.bincount(key, minlength=size)
    passing = np.bincount(key[sessions["passed"].to_numpy(dtype=bool)[named]], minlength=size)
    present = np.flatnonzero(counts)
    return pd.DataFrame({"site": site_names[present // len(app_names)], "app": app_names[present % len(app_names)],
                         "sessions": counts[present].astype(np.int64),
                         "sessions_passing": passing[present].astype(np.int64)})


# What :func:`sim.measures.measures` reads of a failed session's record (its medians, the engines' bottleneck label,
# its times for the faults it met): only these are joined to the failed sessions.
MEASURED = [*MEDIAN_COLUMNS, "bottleneck", "start_s", "end_s", "kind"]


def _link_verdicts(links: pd.DataFrame, sites: pd.DataFrame, targets: Targets,
                   window_s: tuple[float, float]) -> pd.DataFrame:
    access = links[links["kind"] == "access"]
    busy = busy_hours(access, window_s)
    best = busy.sort_values(["site", "utilisation", "direction"], ascending=[True, False, True])
    best = best.drop_duplicates("site").set_index("site")
    limit = targets.link.busy_hour_utilisation
    out = pd.DataFrame({"site": best.index.to_numpy(), "app": LINK, "value": best["utilisation"].to_numpy()})
    out["sessions"] = 0
    out["sessions_passing"] = 0
    out["share_passing"] = np.nan
    out["passed"] = out["value"] <= limit
    out = pd.concat([out, link_measures(out["site"], best["direction"], out["value"], sites, limit)], axis=1)
    out["reason"] = out["detail"]
    return _with_site_columns(out, sites)


def class_verdicts(site_rows: pd.DataFrame, targets: Targets) -> pd.DataFrame:
    """Verdicts per site class on an access profile and app, from its sites' rows (:func:`site_verdicts`)."""
    grouped = site_rows.groupby(CLASS_KEYS + ["app"], sort=True)
    out = grouped.agg(sites=("passed", "size"), sites_passing=("passed", "sum"),
                      sessions=("sessions", "sum"), sessions_passing=("sessions_passing", "sum")).reset_index()
    out["share_passing"] = out["sites_passing"] / out["sites"]
    out["passed"] = out["share_passing"] >= targets.passing.sites
    failed = site_rows[~site_rows["passed"]]
    if "criterion" in failed:  # the criterion each site missed most, not its measures (which differ by site)
        failed = failed.assign(reason=failed["criterion"].where(failed["criterion"] != "", failed["reason"]))
    main = _main_reasons(failed, CLASS_KEYS + ["app"])
    spans = _measure_spans(failed)
    out["reason"] = [_class_reason(main.get(row, ""), spans.get((*row, main.get(row, "")))) if not passed else ""
                     for row, passed in zip(out[CLASS_KEYS + ["app"]].itertuples(index=False, name=None),
                                            out["passed"])]
    out["app"] = pd.Categorical(out["app"], categories=[*judged_apps(targets), LINK], ordered=True)
    out = out.sort_values(CLASS_KEYS + ["app"]).reset_index(drop=True)
    out["app"] = out["app"].astype(str)
    return out


def _measure_spans(failed: pd.DataFrame) -> dict[tuple, tuple]:
    """Per class, app and criterion of failing site rows: (measure, unit, least, most, sites, median target)."""
    if "measured_value" not in failed or failed.empty:
        return {}
    rows = failed[failed["measured_value"].notna()]
    spans = rows.groupby(CLASS_KEYS + ["app", "reason"], sort=False).agg(
        measure=("measure", "first"), unit=("value_unit", "first"), low=("measured_value", "min"),
        high=("measured_value", "max"), sites=("measured_value", "size"), target=("target_value", "median"))
    return {key: tuple(values) for key, values in zip(spans.index, spans.itertuples(index=False, name=None))}


def _class_reason(criterion: str, span: tuple | None) -> str:
    """A class's main criterion: its failing sites' measures' range against the target (where the rows carry them).

    E.g. 'delay p95 0.3 s to 1.23 s at 4 failing sites, against at most 150 ms'.
    """
    if not criterion or span is None:
        return criterion
    measure, unit, low, high, count, target = span
    low_text, high_text = value_words(low, unit), value_words(high, unit)
    values = low_text if low_text == high_text else f"{low_text} to {high_text}"
    sites = "1 failing site" if count == 1 else f"{count} failing sites"
    return f"{measure} {values} at {sites}, against {against_words(criterion_kind(criterion), target, unit)}"


def _main_reasons(failed: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per group of ``keys``: the most frequent single failed criterion in its rows' reasons (ties: alphabetical).

    Returns:
        The criterion, indexed by the groups' keys (groups with no criterion are absent).
    """
    codes, reasons = pd.factorize(failed["reason"])  # a few distinct reasons: each split once
    split = [str(reason).split("; ") for reason in reasons]
    lengths = np.array([len(split[c]) if c >= 0 else 0 for c in codes.tolist()], dtype=np.int64)
    parts = failed[keys].iloc[np.repeat(np.arange(len(failed)), lengths)]
    parts = parts.assign(part=[part for c in codes.tolist() if c >= 0 for part in split[c]])
    parts = parts[parts["part"] != ""]
    counts = parts.groupby(keys + ["part"]).size().rename("count").reset_index()
    top = counts.sort_values(["count", "part"], ascending=[False, True], kind="stable").drop_duplicates(keys)
    return top.set_index(keys)["part"]


def _with_site_columns(frame: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    merged = frame.merge(sites[["site"] + CLASS_KEYS], on="site", how="left")
    for name, dtype in MEASURE_COLUMNS.items():
        empty = 0 if dtype == "int64" else np.nan if dtype == "float64" else ""
        merged[name] = merged[name].fillna(empty) if name in merged else empty
    merged = merged[list(SITE_VERDICT_COLUMNS)]
    for name, dtype in _SITE_VERDICT_DTYPES.items():
        if merged[name].dtype != dtype:  # only the columns not yet of their type are cast
            merged[name] = merged[name].astype(dtype)
    return merged


_SITE_VERDICT_DTYPES = {name: pd.api.types.pandas_dtype(dtype) for name, dtype in SITE_VERDICT_COLUMNS.items()}


def _empty_sites() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in SITE_VERDICT_COLUMNS.items()})
