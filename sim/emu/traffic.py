"""The emulation's traffic side: trace slice -> one agent spec per host; agents' results -> one record per session.

The agents (:mod:`sim.emu.agent`) run inside the emulated hosts, one process each. This module builds their specs
and command lines, and turns what they measured into the record fields of :data:`sim.records.RECORD_COLUMNS` (the
site columns and ``engine`` are the caller's). It knows nothing of Mininet: hosts are names and addresses.

Ports: the server listens for all transfers on TCP ``base_port``; the k-th video call of the slice (in session id
order) uses UDP ``base_port + 1 + 2k`` at the site and ``base_port + 2 + 2k`` at the home, so every end of every
call has its own port even when all hosts share one address (loopback tests).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.emu.agent import FORMAT_VERSION
from sim.emu.multiplex import MULTIPLEXED
from sim.errors import EngineError
from sim.workload import TRACE_COLUMNS

RESULT_COLUMNS = {
    "session_id": "int64", "end_s": "float64", "completed": "bool", "duration_s": "float64", "setup_s": "float64",
    "first_data_s": "float64",
    "size_bytes": "float64", "mean_rate_bps": "float64", "share_at_target": "float64",
    "share_below_min": "float64", "one_way_delay_s": "float64", "one_way_delay_p95_s": "float64",
    "jitter_s": "float64", "loss": "float64", "queue_delay_s": "float64", "rtt_s": "float64", "bottleneck": "str",
}
UNKNOWN_BOTTLENECK = "unknown"   # agents see their sessions, not the links: the caller may attribute it
_NAN = float("nan")
CONNECTIONS = ("new", "reused", *MULTIPLEXED)  # a transfer's connection in the trace


@dataclass(frozen=True)
class Endpoint:
    """A host the traffic runs on: its Mininet name and its IPv4 address."""

    host: str
    ip: str


@dataclass(frozen=True)
class Endpoints:
    """Where each session's ends are: each site's host, the home its video calls reach, the one server."""

    sites: dict[str, Endpoint]
    homes: dict[str, Endpoint]
    server: Endpoint


def specs(trace: pd.DataFrame, endpoints: Endpoints, epoch_s: float, window_start_s: float, window_end_s: float,
          drain_s: float, congestion_control: str = "cubic", base_port: int = 20000) -> dict[str, dict]:
    """One agent spec per host that has work: its transfers, its ends of calls, and the server's listener.

    Args:
        trace: The sessions to replay (columns :data:`sim.workload.TRACE_COLUMNS`), ``start_s`` (s since midnight)
            within [window_start_s, window_end_s).
        endpoints: The hosts of the sites, their homes and the server.
        epoch_s: The wall-clock time (Unix, s) that corresponds to ``window_start_s``.
        window_start_s: Start of the replayed window (s since midnight).
        window_end_s: End of the replayed window (s since midnight).
        drain_s: How long after the window's end sessions may run on before every agent stops (s).
        congestion_control: TCP congestion control every transfer socket uses, e.g. "cubic".
        base_port: The server's TCP port; video calls use the UDP ports above it (see the module's notes).

    Returns:
        Host name -> JSON-serialisable spec (wall-clock times in Unix s, rates bit/s, sizes bytes).

    Raises:
        ValueError: If the trace lacks columns, names a site with no endpoint, starts a session outside the
            window, or the window, drain, ports or a session's figures are invalid.
    """
    _check_window(window_start_s, window_end_s, drain_s, congestion_control)
    _check_trace(trace, endpoints, window_start_s, window_end_s)
    n_calls = int((trace["traffic"] == "stream").sum())
    if not (1024 <= base_port and base_port + 2 * n_calls <= 65535):
        raise ValueError(f"base_port {base_port}: needs {2 * n_calls + 1} ports from it, within 1024..65535")
    host_specs: dict[str, dict] = {}

    def spec(endpoint: Endpoint) -> dict:
        return host_specs.setdefault(endpoint.host, {
            "format": FORMAT_VERSION, "host": endpoint.host, "epoch_s": float(epoch_s),
            "window_start_s": float(window_start_s),
            "stop_at_s": float(epoch_s + (window_end_s - window_start_s) + drain_s),
            "congestion_control": congestion_control, "server": None, "transfers": [], "calls": []})

    server, call_index = endpoints.server, 0
    for row in trace.sort_values("session_id", kind="stable").itertuples(index=False):
        start_at_s = float(epoch_s + (row.start_s - window_start_s))
        site = endpoints.sites[row.site]
        if row.traffic == "stream":
            home = endpoints.homes[row.site] if row.far_end == "home" else server  # the stream's far end
            site_port, home_port = base_port + 1 + 2 * call_index, base_port + 2 + 2 * call_index
            call = _call(row, start_at_s)
            up, down = _rates(row, float(row.up_share)), _rates(row, 1.0)
            spec(site)["calls"].append(call | _sending(up, down) | {
                "role": "site", "local_ip": site.ip, "local_port": site_port, "peer_ip": home.ip,
                "peer_port": home_port})
            spec(home)["calls"].append(call | _sending(down, up) | {
                "role": "home", "local_ip": home.ip, "local_port": home_port, "peer_ip": site.ip,
                "peer_port": site_port})
            call_index += 1
        else:
            spec(site)["transfers"].append(_transfer(row, start_at_s, site, server, base_port))
            spec(server)["server"] = {"ip": server.ip, "port": base_port}
    return host_specs


def _call(row, start_at_s: float) -> dict:
    return {"session_id": int(row.session_id), "start_at_s": start_at_s, "duration_s": float(row.duration_s),
            "packet_bytes": int(row.packet_bytes)}


def _rates(row, share: float) -> tuple[float, float]:
    """(target, minimum) rate in bit/s of one direction of a stream: the trace's rates times ``share``."""
    return float(row.target_rate_bps) * share, float(row.min_rate_bps) * share


def _sending(sent: tuple[float, float], received: tuple[float, float]) -> dict:
    """A call end's rates: what it sends (its rate control's bounds) and what it receives (its receiver's)."""
    return {"target_rate_bps": sent[0], "min_rate_bps": sent[1],
            "receive_target_rate_bps": received[0], "receive_min_rate_bps": received[1]}


def _transfer(row, start_at_s: float, site: Endpoint, server: Endpoint, port: int) -> dict:
    chunk_bytes = int(row.chunk_bytes) if math.isfinite(row.chunk_bytes) and row.chunk_bytes > 0 else 0
    return {"session_id": int(row.session_id), "start_at_s": start_at_s, "direction": row.direction,
            "size_bytes": max(1, int(round(row.size_bytes))), "chunk_bytes": chunk_bytes,
            "connection": row.connection, "app": row.app, "local_ip": site.ip, "server_ip": server.ip,
            "server_port": port}


def _check_window(window_start_s: float, window_end_s: float, drain_s: float, congestion_control: str) -> None:
    if not window_end_s > window_start_s:
        raise ValueError(f"window [{window_start_s}, {window_end_s}) s is empty")
    if not drain_s >= 0:
        raise ValueError(f"drain_s {drain_s} must be >= 0")
    if not congestion_control:
        raise ValueError("congestion_control is empty (e.g. 'cubic')")


def _check_trace(trace: pd.DataFrame, endpoints: Endpoints, window_start_s: float, window_end_s: float) -> None:
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        raise ValueError(f"trace lacks columns {missing}")
    for site in sorted(set(trace["site"]) - set(endpoints.sites)):
        raise ValueError(f"site {site!r} of the trace has no endpoint in endpoints.sites")
    video = trace[trace["traffic"] == "stream"]
    for site in sorted(set(video.loc[video["far_end"] == "home", "site"]) - set(endpoints.homes)):
        raise ValueError(f"site {site!r} has video calls but no home in endpoints.homes")
    outside = trace[(trace["start_s"] < window_start_s) | (trace["start_s"] >= window_end_s)]
    if len(outside):
        raise ValueError(f"session {int(outside['session_id'].iloc[0])} starts at {outside['start_s'].iloc[0]} s, "
                         f"outside the window [{window_start_s}, {window_end_s}) s")
    for column in ("duration_s", "target_rate_bps", "min_rate_bps", "packet_bytes"):
        bad = video[~(video[column] > 0)]
        if len(bad):
            raise ValueError(f"video session {int(bad['session_id'].iloc[0])}: {column} {bad[column].iloc[0]} "
                             "must be > 0")
    transfers = trace[trace["traffic"] != "stream"]
    bad = transfers[~(transfers["size_bytes"] > 0) | ~transfers["direction"].isin(["up", "down"])
                    | ~transfers["connection"].isin(CONNECTIONS)]
    if len(bad):
        raise ValueError(f"transfer session {int(bad['session_id'].iloc[0])}: size_bytes "
                         f"{bad['size_bytes'].iloc[0]} must be > 0, direction {bad['direction'].iloc[0]!r} "
                         f"'up' or 'down' and connection {bad['connection'].iloc[0]!r} one of {', '.join(CONNECTIONS)}")


def agent_command(spec_path: Path, out_path: Path) -> list[str]:
    """The argv that runs one host's agent on ``spec_path``, writing its result to ``out_path``."""
    return [sys.executable, "-m", "sim.emu.agent", "--spec", str(spec_path), "--out", str(out_path)]


def records(trace: pd.DataFrame, results: dict[str, dict]) -> pd.DataFrame:
    """Combine the agents' results into one row per trace session, in trace order.

    Transfers: completion time from the scheduled start to the last byte confirmed at the site (s); ``rtt_s`` the
    connection's smoothed RTT once set up (TCP_INFO; NaN on a reused connection, set up before the start);
    ``queue_delay_s`` that RTT minus the least RTT any transfer of the site saw. Calls: each measure from the worse
    direction, as the simulator does (see :class:`sim.emu.media.MediaReceiver`); ``rtt_s`` the sum of the two
    directions' least one-way delays.

    Args:
        trace: The replayed sessions (columns :data:`sim.workload.TRACE_COLUMNS`).
        results: Host name -> that host's parsed result JSON.

    Returns:
        Columns :data:`RESULT_COLUMNS` (times s since midnight, rates bit/s, sizes bytes, shares 0..1). A session
        no agent reported is not completed, with NaN measures.

    Raises:
        EngineError: If a result is of another format, reports an agent error, or names a session not in the trace.
    """
    transfers, calls = _collect(trace, results)
    base_rtt_s = _least_rtt_by_site(trace, transfers)
    rows = [_call_row(row, calls.get(row.session_id, {})) if row.traffic == "stream"
            else _transfer_row(row, transfers.get(row.session_id), base_rtt_s.get(row.site, _NAN))
            for row in trace.itertuples(index=False)]
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return frame.astype(RESULT_COLUMNS)


def transfer_starts(trace: pd.DataFrame, results: dict[str, dict]) -> list[tuple[str, float, float]]:
    """(site, planned start s since midnight, lateness s) of every transfer an agent started, for the health check.

    The lateness is the agent's own (``late_s``: when it woke to connect, or to send a reused connection's first
    request, after the planned moment); a transfer it never started has none and is left out.
    """
    site = dict(zip(trace["session_id"].tolist(), trace["site"].tolist()))
    return [(site[entry["session_id"]], entry["start_s"], entry["late_s"])
            for _, result in sorted(results.items()) for entry in result["transfers"]
            if entry.get("late_s") is not None and entry["session_id"] in site]


def _collect(trace: pd.DataFrame, results: dict[str, dict]) -> tuple[dict, dict]:
    """Transfer entries by session, and call ends by session and role; check formats, errors and ids."""
    known = set(trace["session_id"].tolist())
    transfers, calls = {}, {}
    for host, result in sorted(results.items()):
        if result.get("format") != FORMAT_VERSION:
            raise EngineError(f"agent result of {host}: format {result.get('format')!r}, expected {FORMAT_VERSION}")
        if result.get("errors"):
            raise EngineError(f"agent on {host} reported errors: {'; '.join(result['errors'])}")
        for entry in result["transfers"]:
            transfers[_known(entry["session_id"], known, host)] = entry
        for entry in result["calls"]:
            calls.setdefault(_known(entry["session_id"], known, host), {})[entry["role"]] = entry
    return transfers, calls


def _known(session: int, known: set, host: str) -> int:
    if session not in known:
        raise EngineError(f"agent result of {host} reports session {session}, which is not in the trace")
    return session


def _least_rtt_by_site(trace: pd.DataFrame, transfers: dict) -> dict[str, float]:
    least: dict[str, float] = {}
    for session, site in zip(trace["session_id"].tolist(), trace["site"].tolist()):
        entry = transfers.get(session) or {}
        seen = [v for v in (entry.get("rtt_s"), entry.get("min_rtt_s")) if v]
        if seen:
            least[site] = min(least.get(site, math.inf), *seen)
    return least


def _empty_row(session: int) -> dict:
    row = {name: _NAN for name in RESULT_COLUMNS}
    return row | {"session_id": session, "completed": False, "bottleneck": UNKNOWN_BOTTLENECK}


def _transfer_row(row, entry: dict | None, base_rtt_s: float) -> dict:
    out = _empty_row(row.session_id) | {"size_bytes": row.size_bytes}
    if entry is None:
        return out
    rtt_s = _num(entry.get("rtt_s"))
    queue_delay_s = max(0.0, rtt_s - base_rtt_s) if math.isfinite(rtt_s - base_rtt_s) else _NAN
    out.update(completed=bool(entry["completed"]), rtt_s=rtt_s, queue_delay_s=queue_delay_s,
               setup_s=_num(entry.get("setup_s")), first_data_s=_num(entry.get("first_data_s")))
    if entry["completed"]:
        duration_s = entry["duration_s"]
        out.update(end_s=entry["end_s"], duration_s=duration_s,
                   mean_rate_bps=row.size_bytes * 8 / duration_s if duration_s > 0 else _NAN)
    return out


def _call_row(row, ends: dict) -> dict:
    site, home = ends.get("site"), ends.get("home")
    up, down = _direction(home, site), _direction(site, home)   # up: site -> home, measured at the home
    out = _empty_row(row.session_id)
    measured = [d for d in (up, down) if d is not None]
    if not measured:
        return out
    completed = all(end is not None and end["completed"] for end in (site, home))
    worse = min(measured, key=lambda d: (d["share_at_target"], -d["share_below_min"]))
    out.update(
        completed=completed, end_s=row.start_s + row.duration_s if completed else _NAN,
        duration_s=row.duration_s if completed else min(e["elapsed_s"] for e in (site, home) if e is not None),
        size_bytes=worse["bytes"], mean_rate_bps=min(d["mean_rate_bps"] for d in measured),
        share_at_target=worse["share_at_target"], share_below_min=worse["share_below_min"],
        bottleneck="none" if worse["share_at_target"] >= 1.0 else UNKNOWN_BOTTLENECK,
        **{column: _worst(measured, key) for column, key in _WORST.items()})
    if up is not None and down is not None:
        out["rtt_s"] = _num(up["min_delay_s"]) + _num(down["min_delay_s"])
    return out


_WORST = {"one_way_delay_s": "one_way_delay_s", "one_way_delay_p95_s": "one_way_delay_p95_s",
          "jitter_s": "jitter_s", "loss": "loss", "queue_delay_s": "queue_delay_s"}


def _direction(receiver: dict | None, sender: dict | None) -> dict | None:
    """One direction's measures, with its loss: 1 - received / sent (sent from the sender's count if it finished)."""
    if receiver is None or receiver.get("received") is None:
        return None
    received = receiver["received"]
    if sender is not None and sender["completed"] and receiver["completed"]:
        expected = sender["sent_packets"]
    else:
        expected = received["max_seq"] + 1  # cut short: packets still in flight are not lost
    loss = max(0.0, 1.0 - received["packets"] / expected) if expected > 0 else _NAN
    return {key: _num(value) if not key.endswith("_per_s") else value for key, value in received.items()} | {
        "loss": loss}


def _worst(measured: list[dict], key: str) -> float:
    values = [d[key] for d in measured if not math.isnan(d[key])]
    return max(values) if values else _NAN


def _num(value) -> float:
    return _NAN if value is None else float(value)
