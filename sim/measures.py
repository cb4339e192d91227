"""What a failed site verdict measured, against what target, and what limited it, from the records.

A site misses an app's target because of one criterion most of its failed sessions share (the site verdict's
``criterion``). Here that criterion's measure is taken over those sessions (the median: ``measured_value``) and
set against the target (``target_value``), in ``value_unit``; the cause is the engines' own ``bottleneck`` label
of those sessions (the most frequent), put in words with the site's line rates from the topology: "the
1 Mbit/s uplink". Nothing here is guessed: a label the engines did not give (``none``, ``unknown``) gives no cause.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.model.targets import Targets
from sim.spells import fault_causes
from sim.units import significant

MEASURE_COLUMNS = {"criterion": "str", "measure": "str", "measured_value": "float64", "target_value": "float64",
                   "value_unit": "str", "failing_sessions": "int64", "cause": "str", "detail": "str"}
RATE, TIME, SHARE, MOS, COUNT = "bit/s", "s", "share", "MOS", "sessions"
PATIENT_END = "the patient's line limits it"  # sim.targets' criteria that name a cause of a rate shortfall
# A delay p95 whose queueing is under this share of it is blamed on the path's own delay, not a queue: a choice of
# wording (an assumption, range 0.05-0.2; not a figure of the network, and no verdict depends on it).
PATH_BOUND = 0.1
TCP_QUEUE = "it yields to transfers filling the line's queue"


MEDIAN_COLUMNS = ["mean_rate_bps", "share_at_target", "share_below_min", "one_way_delay_p95_s", "jitter_s", "loss",
                  "mos", "duration_s", "rtt_s", "queue_delay_s", "queue_p95_s", "target_rate_bps", "min_rate_bps"]


def measures(failed: pd.DataFrame, criteria: pd.Series, sites: pd.DataFrame, targets: Targets,
             faults: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (site, app) in ``criteria``: its criterion's median measure over its failed sessions, and why.

    The sessions measured are the site's failed sessions of the app whose failed criteria include the main one.
    Where at least half of them met a fault of the site's line (``faults``), the cause is the fault (its outage
    and backup), not the line's own rate.

    Args:
        failed: The failed, judged sessions: session verdict columns (``site``, ``app``, ``reason``, ``mos``) and
            the records' measures (``mean_rate_bps``, ``duration_s``, ``bottleneck``, ...), one row per session.
        criteria: The main failed criterion of each (site, app), indexed by (site, app).
        sites: The topology's site table (rates in bit/s, ``rtt_s``).
        targets: The scenario's targets.
        faults: The run's line faults (:func:`sim.spells.spells`), or None for none.

    Returns:
        Columns site, app and :data:`MEASURE_COLUMNS`.
    """
    if criteria.empty or failed.empty:
        return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in
                             {"site": "str", "app": "str", **MEASURE_COLUMNS}.items()})
    rows = failed.merge(criteria.rename("main").reset_index(), on=["site", "app"], how="inner")
    pairs = list(zip(rows["reason"].astype(str).tolist(), rows["main"].tolist()))
    among = {pair: pair[1] in pair[0].split("; ") for pair in set(pairs)}  # a few distinct (reasons, criterion)
    rows = rows[[among[pair] for pair in pairs]]
    if {"one_way_delay_p95_s", "rtt_s"} <= set(rows):  # a call's p95 above its path's own one-way delay
        rows = rows.assign(queue_p95_s=(rows["one_way_delay_p95_s"] - rows["rtt_s"] / 2).clip(lower=0.0))
    columns = [c for c in MEDIAN_COLUMNS if c in rows]
    grouped = rows.groupby(["site", "app", "main"], sort=False)
    medians = grouped[columns].median().join(grouped.size().rename("sessions"))
    if "kind" in rows:  # a stream of all the site's users at once (its rates the users' total)
        medians = medians.join((grouped["kind"].first() == "aggregate").rename("aggregate"))
    medians = medians.reset_index()
    labels = _most_frequent(rows) if "bottleneck" in rows else {}
    met = fault_causes(rows, faults, ["site", "app", "main"])
    by_site = {row["site"]: row for row in sites.to_dict("records")}
    out = [{"site": m["site"], "app": m["app"],
            **measure(m, m["main"], m["app"], targets, by_site[m["site"]], labels.get((m["site"], m["app"]), ""),
                      met.get((m["site"], m["app"], m["main"]), ""))}
           for m in medians.to_dict("records")]
    return pd.DataFrame(out, columns=["site", "app", *MEASURE_COLUMNS]).astype(MEASURE_COLUMNS)


def measure(medians: dict, criterion: str, app: str, targets: Targets, site: dict, label: str,
            fault: str = "") -> dict:
    """A criterion's measure from the medians of one site's failed sessions of one app, and its cause.

    Args:
        medians: The median of each of :data:`MEDIAN_COLUMNS` there is, and ``sessions`` (how many).
        criterion: The failed criterion (:mod:`sim.targets`' wording).
        app: The app.
        targets: The scenario's targets.
        site: The site's row of the topology's site table.
        label: The sessions' most frequent bottleneck label ('' for none).
        fault: The line fault most of the sessions met, in words ('' for none): the cause, in place of the label's.
    """
    kind, count = criterion_kind(criterion), int(medians["sessions"])
    column, unit = _COLUMNS.get(kind, (None, COUNT))
    value, target = (float(count), 0.0) if column is None else (_get(medians, column), _target(kind, app, targets))
    rtt_s = _get(medians, "rtt_s")
    cause = fault or cause_words(label, site, rtt_s if rtt_s == rtt_s else float(site["rtt_s"]))
    queue_p95_s = _get(medians, "queue_p95_s")
    if kind == "delay" and not fault and queue_p95_s == queue_p95_s and queue_p95_s < PATH_BOUND * value:
        cause = (f"the path's own {value_words(rtt_s / 2, TIME)} one-way delay, with {value_words(queue_p95_s, TIME)} "
                 "queueing at the 95th percentile")  # no rate fixes it
    elif kind in ("delay", "jitter") and "queue_delay_s" in medians:
        queue = _queueing_words(kind, _get(medians, "queue_delay_s"), queue_p95_s)
        cause = f"{cause}, {queue}" if cause else queue
    if kind == "slower" and cause.startswith("the ") and not fault:
        cause = _shared(cause, _get(medians, "mean_rate_bps"), site)
    name = _measure_name(kind, _get(medians, "target_rate_bps" if kind == "rate" else "min_rate_bps"))
    if kind in ("rate", "minimum") and medians.get("aggregate"):
        name += " (all its users)"
    mean = f"; mean {rate_words(_get(medians, 'mean_rate_bps'))}" if kind in ("rate", "minimum") else ""
    detail = describe(app, kind, name, value, target, unit, count, cause, mean)
    return {"criterion": criterion, "measure": name, "measured_value": value, "target_value": target,
            "value_unit": unit, "failing_sessions": count, "cause": cause, "detail": detail}


def _queueing_words(kind: str, mean_s: float, p95_s: float) -> str:
    """The queueing (s) failed calls met, in words: at the 95th percentile for a delay p95, and on average.

    The 95th percentile is a call's one-way delay p95 less half its path's round trip (where the records give
    both): '196 ms queueing at the 95th percentile (19 ms on average)', a queue that comes and goes. Otherwise, and
    for jitter, the mean alone: '19 ms queueing'.
    """
    mean = value_words(mean_s, TIME)
    if kind == "delay" and p95_s == p95_s:
        return f"{value_words(p95_s, TIME)} queueing at the 95th percentile ({mean} on average)"
    return f"{mean} queueing"


def _get(medians: dict, column: str) -> float:
    value = medians.get(column)
    return float("nan") if value is None else float(value)


def _measure_name(kind: str, rate_bps: float) -> str:
    """What is measured, in words: 'time at 1.5 Mbit/s', 'delay p95', 'completion time', ..."""
    if kind == "rate":
        return f"time at {rate_words(rate_bps)}"
    if kind == "minimum":
        return f"time below {rate_words(rate_bps)}"
    return MEASURE_NAMES[kind]


MEASURE_NAMES = {"delay": "delay p95", "jitter": "jitter", "loss": "loss", "mos": "call quality",
                 "slower": "completion time", "link": "busy-hour load", "incomplete": "not completed"}
AT_LEAST = ("rate", "mos")  # kinds whose target is a floor; the others' is a ceiling


def against_words(kind: str, target: float, unit: str) -> str:
    """The target as a bound: 'at least 95%', 'at most 150 ms'."""
    return f"{'at least' if kind in AT_LEAST else 'at most'} {value_words(target, unit)}"


def link_measures(site: pd.Series, direction: pd.Series, utilisation: pd.Series, sites: pd.DataFrame,
                  limit: float) -> pd.DataFrame:
    """:data:`MEASURE_COLUMNS` of access-link verdicts: the busy hour's utilisation (0..1) against ``limit``.

    Rows where it is within the limit get empty measures; ``detail`` reads "busy-hour up utilisation 92% > 75%:
    the 1 Mbit/s uplink".
    """
    failed = (utilisation > limit).to_numpy()
    rates = sites.set_index("site").reindex(site)
    up = (direction == "up").to_numpy()
    line = [f"the {rate_words(r)} {'uplink' if u else 'downlink'}"
            for r, u in zip(np.where(up, rates["up_bps"], rates["down_bps"]), up)]
    detail = [f"busy-hour {d} utilisation {v:.0%} > {limit:.0%}: {c}" if f else ""
              for d, v, c, f in zip(direction, utilisation, line, failed)]
    return pd.DataFrame({"criterion": np.where(failed, f"busy-hour utilisation > {limit:.0%}", ""),
                         "measure": np.where(failed, MEASURE_NAMES["link"], ""),
                         "measured_value": np.where(failed, utilisation, np.nan),
                         "target_value": np.where(failed, limit, np.nan), "value_unit": np.where(failed, SHARE, ""),
                         "failing_sessions": 0, "cause": np.where(failed, line, ""), "detail": detail},
                        index=site.index).astype(MEASURE_COLUMNS)


_COLUMNS = {"rate": ("share_at_target", SHARE), "minimum": ("share_below_min", SHARE),
            "delay": ("one_way_delay_p95_s", TIME), "jitter": ("jitter_s", TIME), "loss": ("loss", SHARE),
            "mos": ("mos", MOS), "slower": ("duration_s", TIME)}


def criterion_kind(criterion: str) -> str:
    """The kind of a failed criterion of :mod:`sim.targets` (its wording): rate, minimum, delay, ..., incomplete."""
    starts = {"bitrate below target": "rate", "bitrate below minimum": "minimum", "one-way delay": "delay",
              "jitter": "jitter", "loss": "loss", "call quality MOS": "mos", "slower than target": "slower",
              PATIENT_END: "rate", TCP_QUEUE: "rate", "busy-hour": "link"}
    return next((kind for start, kind in starts.items() if criterion.startswith(start)), "incomplete")


def _target(kind: str, app: str, targets: Targets) -> float:
    if kind == "slower":
        return float(targets.transfers[app])
    stream = targets.streams[app]
    return {"rate": stream.share_at_target, "minimum": stream.share_below_minimum, "delay": stream.delay_p95,
            "jitter": stream.jitter, "loss": stream.loss,
            "mos": stream.mos if stream.mos is not None else float("nan")}[kind]


def _most_frequent(rows: pd.DataFrame) -> dict[tuple, str]:
    """Per (site, app): the most frequent ``bottleneck`` label of ``rows`` (ties: alphabetical)."""
    counts = rows.assign(label=rows["bottleneck"].astype(str)).groupby(["site", "app", "label"]).size()
    top = counts.rename("count").reset_index().sort_values(["count", "label"], ascending=[False, True], kind="stable")
    top = top.drop_duplicates(["site", "app"])
    return {(s, a): label for s, a, label in zip(top["site"], top["app"], top["label"])}


def cause_words(label: str, site: dict, rtt_s: float) -> str:
    """An engine's bottleneck label in words, with the site's own line: ``access_up`` -> 'the 1 Mbit/s uplink'.

    ``rtt_s`` is the round trip the sessions met (queueing included), which a start-up is limited by.

    Labels the engines give: ``access_up``/``access_down`` (the site's line), ``aggregation_up``/``_down`` (a
    shared link), any of these with ``_tcp_queue`` (a call that yielded to transfers filling that link's queue),
    ``home`` (the patient's line), ``start-up`` (handshakes and slow start: the round trip). ``none`` or an
    engine's ``unknown`` give ''.
    """
    queued = label.endswith("_tcp_queue")
    base = label.removesuffix("_tcp_queue")
    words = {"access_up": f"the {rate_words(site['up_bps'])} uplink",
             "access_down": f"the {rate_words(site['down_bps'])} downlink",
             "aggregation_up": f"the shared uplink {site.get('aggregation', '')}".rstrip(),
             "aggregation_down": f"the shared downlink {site.get('aggregation', '')}".rstrip(),
             "home": "the patient's line",
             "start-up": f"start-up (handshakes, slow start) over a {value_words(rtt_s, TIME)} round trip, "
                           "queueing included"}
    text = words.get(base, "")
    return f"transfers filling the queue of {text}" if queued and text else text


def _shared(cause: str, rate_bps: float, site: dict) -> str:
    """A transfer limited by a line it got only part of: say what it got (bit/s), of what."""
    capacity = site["up_bps"] if "uplink" in cause else site["down_bps"] if "downlink" in cause else float("nan")
    if rate_bps == rate_bps and capacity == capacity and rate_bps < 0.9 * capacity:
        return f"a {rate_words(rate_bps)} share of {cause}"
    return cause


def describe(app: str, kind: str, name: str, value: float, target: float, unit: str, sessions: int, cause: str,
             note: str = "") -> str:
    """The measure in words, with its cause.

    E.g. 'video time below 0.35 Mbit/s 62% against at most 0% (median of 4 failed; mean 0.21 Mbit/s): the
    1 Mbit/s uplink'.
    """
    if kind == "incomplete":
        head = f"{app}: {sessions:,} {'session' if sessions == 1 else 'sessions'} not completed"
    else:
        head = (f"{app} {name} {value_words(value, unit)} against {against_words(kind, target, unit)} "
                f"(median of {sessions:,} failed{note})")
    return f"{head}: {cause}" if cause else head


def value_words(value: float, unit: str) -> str:
    """A measure in words with its unit: 850e3 bit/s -> '0.85 Mbit/s', 0.21 s -> '210 ms', 0.031 share -> '3.1%'."""
    if value != value:
        return "n/a"
    if unit == RATE:
        return rate_words(value)
    if unit == TIME:
        return f"{value * 1e3:.0f} ms" if abs(value) < 1.0 else f"{significant(value)} s"
    if unit == SHARE:
        return f"{value:.1%}"
    if unit == MOS:
        return f"MOS {value:.2f}"
    return f"{value:,.0f}"


def rate_words(rate_bps: float) -> str:
    """A rate in bit/s in words: 1e6 -> '1 Mbit/s', 850e3 -> '0.85 Mbit/s', 80e3 -> '80 kbit/s'."""
    if rate_bps != rate_bps:
        return "n/a"
    if rate_bps >= 1e9:
        return f"{significant(rate_bps / 1e9)} Gbit/s"
    if rate_bps >= 1e5:
        return f"{significant(rate_bps / 1e6)} Mbit/s"
    return f"{significant(rate_bps / 1e3)} kbit/s"


def busy_hours(links: pd.DataFrame, window_s: tuple[float, float]) -> pd.DataFrame:
    """For every link: the highest mean utilisation over any hour of the window (the whole window if shorter).

    Returns:
        Columns site, direction, utilisation (0..1), one row per link.
    """
    inside = links[(links["bin_start_s"] >= window_s[0]) & (links["bin_start_s"] < window_s[1])]
    inside = inside.sort_values(["link", "bin_start_s"], kind="stable")
    names = inside["link"].drop_duplicates()
    if names.empty:
        return pd.DataFrame({"site": [], "direction": [], "utilisation": []})
    values = inside["utilisation"].to_numpy().reshape(len(names), -1)
    width = max(1, min(values.shape[1], round(3600.0 / float(inside["bin_s"].iat[0]))))
    sums = np.cumsum(np.pad(values, ((0, 0), (1, 0))), axis=1)
    rolling = (sums[:, width:] - sums[:, :-width]) / width
    first = inside.drop_duplicates("link")
    return pd.DataFrame({"site": first["site"].to_numpy(), "direction": first["direction"].to_numpy(),
                         "utilisation": rolling.max(axis=1)})


def busy_hour_utilisation(site_links: pd.DataFrame, window_s: tuple[float, float]) -> tuple[float, str]:
    """Highest mean utilisation over any hour of the window (the whole window if shorter), over a site's links.

    Returns:
        (utilisation 0..1, the direction it occurred on: ``up`` or ``down``).
    """
    busy = busy_hours(site_links, window_s)
    if busy.empty:
        return 0.0, "up"
    top = busy.sort_values(["utilisation", "direction"], ascending=[False, True]).iloc[0]
    return float(top["utilisation"]), str(top["direction"])
