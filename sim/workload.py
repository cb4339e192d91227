"""Scenario + seed -> trace: one row per session to replay, the contract between workload and engines.

Every app of the catalogue's registry (``topologies/apps.yaml``) is made by one of :data:`GENERATORS`: a session
is a stream (two-way media for a duration: a call, an interactive session's load) or a transfer (a size in one
direction), as the trace's ``traffic`` column tells the engines. Arrivals follow each site class's daily volume,
spread over the hours of its day profile as a Poisson process. Each site draws from its own generator, seeded by
the run's seed and the site's index, so a site's sessions do not depend on which other sites run with it (shards
are exact).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.model.catalogue import Catalogue, DayProfile, SiteClass
from sim.model.scenario import Scenario
from sim.topology import Topology

TRACE_COLUMNS = {
    "session_id": "int64", "site": "str", "app": "str", "traffic": "str", "kind": "str", "direction": "str",
    "urgency": "str", "start_s": "float64", "duration_s": "float64", "size_bytes": "float64",
    "chunk_bytes": "float64", "connection": "str", "target_rate_bps": "float64", "min_rate_bps": "float64",
    "packet_bytes": "float64", "up_share": "float64", "far_end": "str", "far_profile": "str",
    "far_down_bps": "float64", "far_up_bps": "float64", "far_rtt_s": "float64",
}
VIDEO_KINDS = {"gp": "gp_video", "outpatient": "outpatient_video", "community": "community_video"}


def generate(scenario: Scenario, topology: Topology, seed: int) -> pd.DataFrame:
    """Generate the trace for every site of the topology.

    Args:
        scenario: The validated scenario (catalogue, load and window).
        topology: Its sites, from :func:`sim.topology.build`.
        seed: The run's seed; each site's generator is seeded by ``(seed, site index)``, the index being the
            site's row label in the whole topology (kept when a shard takes a slice of it).

    Returns:
        One row per session, columns :data:`TRACE_COLUMNS`, sorted by start time (s since midnight). A scenario
        with a measured ``trace`` replays that file's sessions of these sites instead (:mod:`sim.measured`).
    """
    if scenario.trace is not None:
        from sim import measured  # it reads this module's schema: imported here, not at the top
        return measured.replay(scenario, topology)
    parts = []
    sites = topology.sites
    for index, site, class_name in zip(sites.index.tolist(), sites["site"], sites["site_class"]):
        rng = np.random.default_rng([seed, index])  # the site's index in the whole topology: shards regenerate it
        parts.extend(_site_sessions(scenario, scenario.catalogue.site_classes[class_name], site, rng))
    if not sum(part["n"] for part in parts):
        return _empty()
    return _assemble(parts)


def _assemble(parts: list[dict]) -> pd.DataFrame:
    """One frame of every part's sessions, sorted by start time (ties: generation order), numbered.

    The parts are read once, into one list per column (:func:`_columns`); each column is then built whole (a
    scalar repeated, the parts' arrays put in together); text as codes into its distinct values, sorted as codes
    and only then made strings: building a frame per site, or text as Python objects, would cost more than
    drawing the sessions.
    """
    counts = np.fromiter((part["n"] for part in parts), dtype=np.int64, count=len(parts))
    scalars, arrays = _columns(parts)
    start_s = _numbers(scalars["start_s"], arrays["start_s"], counts)
    order = np.lexsort((np.arange(len(start_s)), start_s))
    columns = {"session_id": np.arange(len(start_s), dtype="int64")}
    for name, dtype in TRACE_COLUMNS.items():
        if name == "session_id":
            continue
        if dtype == "str":
            columns[name] = _text(scalars[name], arrays[name], counts, order)
        else:
            columns[name] = (start_s if name == "start_s" else _numbers(scalars[name], arrays[name], counts))[order]
    return pd.DataFrame(columns, copy=False)


def _columns(parts: list[dict]) -> tuple[dict[str, list], dict[str, list[tuple[int, np.ndarray]]]]:
    """The parts by column: each part's scalar (None where it sets an array or nothing), and its arrays by part.

    Raises:
        KeyError: If a part sets a column the trace does not have.
    """
    names = [*TRACE_COLUMNS, "n"]  # ``n``: the part's size, not a column
    scalars = {name: [None] * len(parts) for name in names}
    arrays: dict[str, list[tuple[int, np.ndarray]]] = {name: [] for name in names}
    for k, part in enumerate(parts):
        for name, value in part.items():
            if type(value) is np.ndarray:
                arrays[name].append((k, value))
            else:
                scalars[name][k] = value
    return scalars, arrays


def _numbers(scalars: list, arrays: list[tuple[int, np.ndarray]], counts: np.ndarray) -> np.ndarray:
    """One numeric column of all parts (float): each part's scalar repeated, its array, or NaN where not set."""
    out = np.repeat(np.asarray(scalars, dtype=float), counts)  # None -> NaN
    if arrays:
        out[_rows_of(arrays, counts)] = np.concatenate([value for _, value in arrays])
    return out


def _rows_of(arrays: list[tuple[int, np.ndarray]], counts: np.ndarray) -> np.ndarray:
    """The rows (of all parts, in part order) that the parts given by their arrays hold (a mask)."""
    given = np.zeros(len(counts), dtype=bool)
    given[[k for k, _ in arrays]] = True
    return np.repeat(given, counts)


def _text(scalars: list, arrays: list[tuple[int, np.ndarray]], counts: np.ndarray, order: np.ndarray) -> pd.Series:
    """One text column of all parts in ``order`` (pandas strings; missing where a part does not set it).

    The parts' scalars and their arrays' values (text) are each coded once, all parts together.
    """
    codes, values = pd.factorize(np.asarray(scalars, dtype=object))  # None -> code -1
    codes = np.repeat(codes.astype(np.int32), counts)
    values = values.tolist()
    arrays = [(k, value) for k, value in arrays if len(value)]
    if arrays:
        inverse, found = pd.factorize(np.concatenate([value for _, value in arrays]).astype(object))
        codes[_rows_of(arrays, counts)] = inverse.astype(np.int32) + len(values)
        values += found.tolist()
    codes = codes[order]
    indices = pa.array(codes, mask=codes < 0)
    text = pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.large_string()))
    return pd.Series(pd.array(text.cast(pa.large_string()), dtype="str"), copy=False)


def expected_sessions(scenario: Scenario) -> float:
    """Expected number of sessions over a whole day (an upper bound for the window)."""
    return sum(group.count * expected_per_site(scenario, group.site_class) for group in scenario.sites)


def expected_per_site(scenario: Scenario, class_name: str) -> float:
    """Expected sessions a day of one site of the class, under the scenario's load."""
    cat, load = scenario.catalogue, scenario.load
    c = cat.site_classes[class_name]
    per_site = 0.0
    if c.consultations and cat.apps_of("consultations"):
        share = load.video_share(c.consultations.video_share_from)
        per_site += c.consultations.per_day * (share + c.consultations.record_fetches)
    if c.gp2gp and cat.apps_of("gp2gp"):
        per_site += c.gp2gp.send_per_day + c.gp2gp.receive_per_day
    if c.imaging and cat.apps_of("imaging"):
        per_site += c.imaging.per_day * (1 + c.imaging.download_share)
    for name, activity in c.activities.items():
        if cat.apps[name].on_line:
            per_site += (_active_hours(cat.day_profiles[activity.profile]) if activity.aggregate
                         else activity.sessions_per_day(c.staff))
    return per_site * load.volume_scale


def _active_hours(profile: DayProfile) -> int:
    return sum(1 for share in profile.hours.values() if share > 0)


def arrivals(per_day: float, profile: DayProfile, start_s: float, end_s: float,
             rng: np.random.Generator) -> np.ndarray:
    """Poisson arrival times (s since midnight) within [start_s, end_s), ``per_day`` spread by ``profile``.

    Hour by hour: a Poisson count, then that many uniform times within the hour (``rng.random`` scaled as
    ``rng.uniform`` scales it: ``lo + (hi - lo) * u``, the same draws and the same times, scaled all at once).
    """
    windows, lows_s, widths_s = _hour_windows(profile, start_s, end_s)
    if not windows:
        return np.empty(0)
    counts, draws = [], []
    for _lo_s, width_s, share in windows:
        n = rng.poisson(per_day * share * width_s / 3600.0)
        draws.append(rng.random(n))
        counts.append(n)
    return np.sort(np.repeat(lows_s, counts) + np.repeat(widths_s, counts) * np.concatenate(draws))


_WINDOWS: dict[tuple, tuple] = {}  # (id(profile), start_s, end_s) -> (profile, its windows, starts (s), widths (s))
_MEMO_ENTRIES = 1024  # assumption: far more than a scenario's profiles x windows; past it the memo starts afresh


def _hour_windows(profile: DayProfile, start_s: float, end_s: float) -> tuple[tuple, np.ndarray, np.ndarray]:
    """The hours of ``profile`` with sessions within [start_s, end_s), in order, and their starts and widths (s).

    Returns ``(windows, starts_s, widths_s)``: ``windows`` as ``(start (s), width (s), share)`` tuples, the other two
    as arrays. Found once per profile and window (a site's generators ask for them thousands of times in an estate).
    """
    key = (id(profile), start_s, end_s)
    found = _WINDOWS.get(key)
    if found is None or found[0] is not profile:  # an id reused by another profile: found afresh
        windows = []
        for hour, share in sorted(profile.hours.items()):
            lo_s, hi_s = max(hour * 3600.0, start_s), min((hour + 1) * 3600.0, end_s)
            if hi_s > lo_s and share > 0:
                windows.append((lo_s, hi_s - lo_s, share))
        if len(_WINDOWS) >= _MEMO_ENTRIES:
            _WINDOWS.clear()
        found = (profile, tuple(windows), np.array([w[0] for w in windows], dtype=float),
                 np.array([w[1] for w in windows], dtype=float))
        _WINDOWS[key] = found
    return found[1:]


def _site_sessions(scenario: Scenario, site_class: SiteClass, site: str, rng) -> list[dict]:
    """A site's sessions as parts: dicts of column values (arrays, or scalars for the whole part) and ``n``."""
    cat, span = scenario.catalogue, (scenario.window.start, scenario.window.end)
    frames = []
    for name, make in GENERATORS.items():
        if cat.apps_of(name):
            frames += make(cat, site_class, scenario.load, span, rng)
    for frame in frames:
        frame["site"] = site
        if frame.get("far_end") == "home":
            _draw_home_lines(frame, cat, rng)
    # After every other draw: a share of reuse leaves the rest of the site's sessions as they were. Every transfer app
    # draws, whatever its share, so moving one app's share (to 0% or 100% too) leaves the others' draws as they were.
    for frame in frames:
        if frame["traffic"] == "transfer":
            app = cat.apps[frame["app"]]
            _draw_connections(frame, app.reuse_share, rng, "multiplexed-" if app.multiplexed else "")
    return frames


def _draw_connections(part: dict, reuse_share: float, rng, prefix: str = "") -> None:
    """Give each transfer of a part its connection: ``reused`` with probability ``reuse_share``, else ``new``.

    A number is drawn per transfer at any share (0%: none below it, 100%: all), so a sweep of one app's share leaves
    the apps drawn after it as they were (common random numbers). A multiplexed app's (``prefix``
    ``multiplexed-``) say what a transfer does when it finds the connection idle.
    """
    draws = rng.random(part["n"])
    if reuse_share <= 0.0 or reuse_share >= 1.0:  # (drawn all the same: one value for the whole part)
        part["connection"] = prefix + ("reused" if reuse_share >= 1.0 else "new")
        return
    part["connection"] = np.where(draws < reuse_share, prefix + "reused", prefix + "new").astype(object)


def _draw_home_lines(part: dict, cat: Catalogue, rng) -> None:
    """Give each call of a part a patient's line drawn from the catalogue's home mix (its profile and rates)."""
    lines = cat.core.home_lines()
    names = list(lines)
    picks = rng.choice(len(names), size=part["n"], p=_normalised(list(lines.values())))
    profiles = [cat.profiles[name] for name in names]
    part["far_profile"] = np.asarray(names, dtype=object)[picks]
    part["far_down_bps"] = np.array([p.down for p in profiles])[picks]
    part["far_up_bps"] = np.array([p.up for p in profiles])[picks]
    part["far_rtt_s"] = np.array([p.rtt for p in profiles])[picks]


def _consultations(cat: Catalogue, site_class: SiteClass, load, span, rng) -> list[dict]:
    """Consultations: a share held by video (the generator's stream app), each opening records (its transfer app)."""
    spec = site_class.consultations
    if spec is None:
        return []
    apps = cat.apps_of("consultations")
    starts = arrivals(spec.per_day * load.volume_scale, cat.day_profiles[spec.profile], *span, rng)
    by_video = rng.random(len(starts)) < load.video_share(spec.video_share_from)
    parts = []
    call_app = next((name for name, app in apps.items() if app.traffic == "stream"), None)
    if call_app:
        video_starts = starts[by_video]
        parts.append(_streams(call_app, cat.apps[call_app], VIDEO_KINDS[spec.video_share_from], video_starts,
                              spec.duration.sample(rng, len(video_starts))))
    fetch_app = next((name for name, app in apps.items() if app.traffic == "transfer"), None)
    if fetch_app:
        fetch_counts = np.floor(spec.record_fetches).astype(int) + (
            rng.random(len(starts)) < spec.record_fetches % 1)
        fetch_starts = np.repeat(starts, fetch_counts)
        parts.append(_transfers(fetch_app, "record_fetch", "down", fetch_starts,
                                cat.apps[fetch_app].size.sample(rng, len(fetch_starts))))
    return parts


def _gp2gp(cat: Catalogue, site_class: SiteClass, load, span, rng) -> list[dict]:
    """GP2GP transfers each way: a structured extract, with attachments (sent in chunks) on a share of them."""
    spec, sizes, frames = site_class.gp2gp, cat.gp2gp, []
    if spec is None:
        return []
    app = next(iter(cat.apps_of("gp2gp")))
    for direction, per_day in (("up", spec.send_per_day), ("down", spec.receive_per_day)):
        starts = arrivals(per_day * load.volume_scale, cat.day_profiles[spec.profile], *span, rng)
        n = len(starts)
        attached = rng.random(n) < sizes.with_attachments
        size = sizes.extract.sample(rng, n) + attached * sizes.attachments.sample(rng, n)
        frame = _transfers(app, "gp2gp", direction, starts, size)
        frame["chunk_bytes"] = sizes.chunk
        frames.append(frame)
    return frames


def _imaging(cat: Catalogue, site_class: SiteClass, load, span, rng) -> list[dict]:
    """Studies sent to the archive, a share pulled back within the hour; urgent ones are the urgent app's."""
    spec = site_class.imaging
    if spec is None:
        return []
    starts = arrivals(spec.per_day * load.volume_scale, cat.day_profiles[spec.profile], *span, rng)
    names = list(cat.modalities)
    modalities = [cat.modalities[name] for name in names]
    picks = rng.choice(len(names), size=len(starts), p=_normalised([m.share for m in modalities]))
    sizes, urgent = np.empty(len(starts)), np.zeros(len(starts), dtype=bool)
    for i, modality in enumerate(modalities):
        chosen = picks == i
        sizes[chosen] = modality.size.sample(rng, int(chosen.sum()))
        urgent[chosen] = rng.random(int(chosen.sum())) < modality.urgent_share
    kinds = np.asarray(names, dtype=object)[picks]
    pulled = rng.random(len(starts)) < spec.download_share
    later = starts[pulled] + rng.uniform(0.0, 3600.0, int(pulled.sum()))  # assumption: within the hour
    keep = later < span[1]
    parts = []
    for name, app in cat.apps_of("imaging").items():
        mine = urgent == (app.urgency == "urgent")
        parts.append(_transfers(name, kinds[mine], "up", starts[mine], sizes[mine], app.urgency))
        back = mine[pulled][keep]
        parts.append(_transfers(name, kinds[pulled][keep][back], "down", later[keep][back],
                                sizes[pulled][keep][back], app.urgency))
    return parts


def _generic_transfers(cat: Catalogue, site_class: SiteClass, load, span, rng) -> list[dict]:
    """The transfer apps of a site class's activities: Poisson arrivals, sizes from the activity or the app."""
    parts = []
    for name, app, activity, per_day in _activities(cat, site_class, "transfers", load.volume_scale):
        starts = arrivals(per_day, cat.day_profiles[activity.profile], *span, rng)
        sizes = (activity.size or app.size).sample(rng, len(starts))
        parts.append(_transfers(name, name, activity.direction, starts, sizes, app.urgency))
    return parts


def _generic_streams(cat: Catalogue, site_class: SiteClass, load, span, rng) -> list[dict]:
    """The stream apps of a site class's activities: calls with Poisson arrivals, or one aggregate an hour."""
    parts = []
    for name, app, activity, volume in _activities(cat, site_class, "streams", load.volume_scale):
        if activity.aggregate:
            parts.append(_aggregate(name, app, volume, cat.day_profiles[activity.profile], span))
            continue
        starts = arrivals(volume, cat.day_profiles[activity.profile], *span, rng)
        parts.append(_streams(name, app, name, starts, activity.duration.sample(rng, len(starts))))
    return parts


def _activities(cat: Catalogue, site_class: SiteClass, generator: str, scale: float):
    """(app name, app, activity, volume a day) of the class's activities whose app ``generator`` makes."""
    for name, activity in site_class.activities.items():
        app = cat.apps[name]
        if app.generator == generator and app.on_line:
            yield name, app, activity, activity.sessions_per_day(site_class.staff) * scale


def _aggregate(name: str, app, users: float, profile: DayProfile, span) -> dict:
    """One stream per hour of the profile with any share (within the window) carrying ``users`` at once."""
    _, starts_s, durations_s = _hour_windows(profile, *span)
    hours = slice(None) if users > 0 else slice(0)  # no users: no streams
    part = _streams(name, app, "aggregate", starts_s[hours].copy(), durations_s[hours].copy())
    part["target_rate_bps"] = app.rate.target * users
    part["min_rate_bps"] = app.rate.minimum * users
    return part


def _streams(app_name: str, app, kind, starts: np.ndarray, durations_s: np.ndarray) -> dict:
    rate = app.rate
    return {"n": len(starts), "app": app_name, "traffic": "stream", "kind": kind, "direction": "both",
            "urgency": app.urgency, "start_s": np.asarray(starts, dtype=float),
            "duration_s": np.asarray(durations_s, dtype=float), "target_rate_bps": rate.target,
            "min_rate_bps": rate.minimum, "packet_bytes": rate.packet, "up_share": rate.up_share,
            "far_end": app.far_end, "far_profile": "", "connection": ""}


def _transfers(app: str, kind, direction: str, starts: np.ndarray, sizes: np.ndarray,
               urgency: str = "routine") -> dict:
    return {"n": len(starts), "app": app, "traffic": "transfer", "kind": kind, "direction": direction,
            "urgency": urgency, "start_s": np.asarray(starts, dtype=float),
            "size_bytes": np.round(sizes).astype(float), "up_share": 1.0, "far_end": "cloud", "far_profile": ""}


# The catalogue's generator names (sim.model.catalogue.Generator), each making its apps' sessions for one site.
GENERATORS = {"consultations": _consultations, "gp2gp": _gp2gp, "imaging": _imaging,
              "transfers": _generic_transfers, "streams": _generic_streams}


def _normalised(shares: list[float]) -> np.ndarray:
    weights = np.asarray(shares, dtype=float)
    return weights / weights.sum()


def _empty() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in TRACE_COLUMNS.items()})
