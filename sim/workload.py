"""Scenario + seed -> trace: one row per session to replay, the contract between workload and engines.

Sessions are video consultations (two-way media for a duration), image transfers and record transfers
(a size in one direction). Arrivals follow each site class's daily volume, spread over the hours of its
day profile as a Poisson process. Each site draws from its own generator, seeded by the run's seed and the
site's index, so a site's sessions do not depend on which other sites run with it (shards are exact).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.model.catalogue import Catalogue, DayProfile, SiteClass
from sim.model.scenario import Scenario
from sim.topology import Topology

TRACE_COLUMNS = {
    "session_id": "int64", "site": "str", "app": "str", "kind": "str", "direction": "str",
    "urgency": "str", "start_s": "float64", "duration_s": "float64", "size_bytes": "float64",
    "chunk_bytes": "float64", "target_rate_bps": "float64", "min_rate_bps": "float64",
    "packet_bytes": "float64",
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
        One row per session, columns :data:`TRACE_COLUMNS`, sorted by start time (s since midnight).
    """
    parts = []
    sites = topology.sites
    for index, site, class_name in zip(sites.index.tolist(), sites["site"], sites["site_class"]):
        rng = np.random.default_rng([seed, index])  # the site's index in the whole topology: shards regenerate it
        parts.extend(_site_sessions(scenario, scenario.catalogue.site_classes[class_name], site, rng))
    if not sum(part["n"] for part in parts):
        return _empty()
    # One frame from all sites' column arrays: building a frame per site would cost more than drawing the sessions.
    trace = pd.DataFrame({name: np.concatenate([_column(part, name) for part in parts])
                          for name in TRACE_COLUMNS if name != "session_id"})
    order = np.lexsort((np.arange(len(trace)), trace["start_s"].to_numpy()))
    trace = trace.iloc[order].reset_index(drop=True)
    trace.insert(0, "session_id", np.arange(len(trace), dtype="int64"))
    return trace.astype(TRACE_COLUMNS)


def _column(part: dict, name: str) -> np.ndarray:
    """One column of a part as an array of its length: its values, a repeated scalar, or NaN where not set."""
    value = part.get(name)
    if isinstance(value, np.ndarray):
        return value
    if value is None:  # columns only some activities set (e.g. chunk_bytes, by GP2GP) are NaN elsewhere
        return np.full(part["n"], np.nan)
    return np.full(part["n"], value, dtype=object if isinstance(value, str) else float)


def expected_sessions(scenario: Scenario) -> float:
    """Expected number of sessions over a whole day (an upper bound for the window)."""
    return sum(group.count * expected_per_site(scenario, group.site_class) for group in scenario.sites)


def expected_per_site(scenario: Scenario, class_name: str) -> float:
    """Expected sessions a day of one site of the class, under the scenario's load."""
    c, load = scenario.catalogue.site_classes[class_name], scenario.load
    per_site = 0.0
    if c.consultations:
        share = load.video_share(c.consultations.video_share_from)
        per_site += c.consultations.per_day * (share + c.consultations.record_fetches)
    if c.gp2gp:
        per_site += c.gp2gp.send_per_day + c.gp2gp.receive_per_day
    if c.imaging:
        per_site += c.imaging.per_day * (1 + c.imaging.download_share)
    if c.record_syncs:
        per_site += c.record_syncs.per_day
    return per_site * load.volume_scale


def arrivals(per_day: float, profile: DayProfile, start_s: float, end_s: float,
             rng: np.random.Generator) -> np.ndarray:
    """Poisson arrival times (s since midnight) within [start_s, end_s), ``per_day`` spread by ``profile``."""
    times = []
    for hour, share in sorted(profile.hours.items()):
        lo, hi = max(hour * 3600.0, start_s), min((hour + 1) * 3600.0, end_s)
        if hi <= lo or share <= 0:
            continue
        n = rng.poisson(per_day * share * (hi - lo) / 3600.0)
        times.append(rng.uniform(lo, hi, n))
    return np.sort(np.concatenate(times)) if times else np.empty(0)


def _site_sessions(scenario: Scenario, site_class: SiteClass, site: str, rng) -> list[dict]:
    """A site's sessions as parts: dicts of column values (arrays, or scalars for the whole part) and ``n``."""
    cat, load, window = scenario.catalogue, scenario.load, scenario.window
    span = (window.start, window.end)
    frames = []
    if site_class.consultations:
        frames += _consultations(site_class.consultations, cat, load, span, rng)
    if site_class.gp2gp:
        frames += _gp2gp(site_class.gp2gp, cat, load.volume_scale, span, rng)
    if site_class.imaging:
        frames += _imaging(site_class.imaging, cat, load.volume_scale, span, rng)
    if site_class.record_syncs:
        spec = site_class.record_syncs
        starts = arrivals(spec.per_day * load.volume_scale, cat.day_profiles[spec.profile], *span, rng)
        frames.append(_transfers("record", "record_sync", spec.direction, starts, spec.size.sample(rng, len(starts))))
    for frame in frames:
        frame["site"] = site
    return frames


def _consultations(spec, cat: Catalogue, load, span, rng) -> list[dict]:
    starts = arrivals(spec.per_day * load.volume_scale, cat.day_profiles[spec.profile], *span, rng)
    by_video = rng.random(len(starts)) < load.video_share(spec.video_share_from)
    video_starts = starts[by_video]
    video = cat.apps.video
    calls = {
        "n": len(video_starts),
        "app": "video", "kind": VIDEO_KINDS[spec.video_share_from], "direction": "both", "urgency": "routine",
        "start_s": video_starts, "duration_s": spec.duration.sample(rng, len(video_starts)),
        "target_rate_bps": video.target, "min_rate_bps": video.minimum, "packet_bytes": video.packet,
    }
    fetch_counts = np.floor(spec.record_fetches).astype(int) + (
        rng.random(len(starts)) < spec.record_fetches % 1)
    fetch_starts = np.repeat(starts, fetch_counts)
    fetches = _transfers("record", "record_fetch", "down", fetch_starts,
                         cat.apps.records.fetch.sample(rng, len(fetch_starts)))
    return [calls, fetches]


def _gp2gp(spec, cat: Catalogue, scale: float, span, rng) -> list[dict]:
    records, frames = cat.apps.records, []
    for direction, per_day in (("up", spec.send_per_day), ("down", spec.receive_per_day)):
        starts = arrivals(per_day * scale, cat.day_profiles[spec.profile], *span, rng)
        n = len(starts)
        attached = rng.random(n) < records.gp2gp_with_attachments
        sizes = records.gp2gp_extract.sample(rng, n) + attached * records.gp2gp_attachments.sample(rng, n)
        frame = _transfers("record", "gp2gp", direction, starts, sizes)
        frame["chunk_bytes"] = records.gp2gp_chunk
        frames.append(frame)
    return frames


def _imaging(spec, cat: Catalogue, scale: float, span, rng) -> list[dict]:
    starts = arrivals(spec.per_day * scale, cat.day_profiles[spec.profile], *span, rng)
    names = list(cat.apps.modalities)
    modalities = [cat.apps.modalities[name] for name in names]
    picks = rng.choice(len(names), size=len(starts), p=_normalised([m.share for m in modalities]))
    sizes, urgent = np.empty(len(starts)), np.zeros(len(starts), dtype=bool)
    for i, modality in enumerate(modalities):
        chosen = picks == i
        sizes[chosen] = modality.size.sample(rng, int(chosen.sum()))
        urgent[chosen] = rng.random(int(chosen.sum())) < modality.urgent_share
    kinds = np.asarray(names, dtype=object)[picks]
    up = _transfers("image", kinds, "up", starts, sizes, urgent)
    pulled = rng.random(len(starts)) < spec.download_share
    later = starts[pulled] + rng.uniform(0.0, 3600.0, int(pulled.sum()))  # assumption: within the hour
    keep = later < span[1]
    down = _transfers("image", kinds[pulled][keep], "down", later[keep], sizes[pulled][keep], urgent[pulled][keep])
    return [up, down]


def _transfers(app: str, kind, direction: str, starts: np.ndarray, sizes: np.ndarray,
               urgent: np.ndarray | None = None) -> dict:
    urgency = np.where(urgent, "urgent", "routine").astype(object) if urgent is not None else "routine"
    return {"n": len(starts), "app": app, "kind": kind, "direction": direction, "urgency": urgency,
            "start_s": np.asarray(starts, dtype=float), "size_bytes": np.round(sizes).astype(float)}


def _normalised(shares: list[float]) -> np.ndarray:
    weights = np.asarray(shares, dtype=float)
    return weights / weights.sum()


def _empty() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in TRACE_COLUMNS.items()})
