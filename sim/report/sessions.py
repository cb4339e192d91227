"""The report's figures of sessions by access technology: calls' time at their rates, transfers' completion times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sim.report.data import RunData, technology_rank
from sim.report.figures import FAIL, PASS, FigureSpec, _layout, esc, log_ticks, target_line, technology_colour
from sim.units import significant


def completion_cdfs(run: RunData) -> list[FigureSpec]:
    """For each judged transfer app: completion-time distribution per access technology, with its time limit."""
    records = run.records
    times_s = np.where(records["completed"], records["duration_s"], np.inf)
    rows: dict[str, dict[str, np.ndarray]] = {}  # app -> technology -> row positions
    for (app, traffic, tech), at in records.groupby(["app", "traffic", "technology"], observed=True).indices.items():
        if traffic == "transfer":
            rows.setdefault(str(app), {})[str(tech)] = at
    limits = run.resolved["targets"]["transfers"]
    return [_cdf(app, run.app_names.get(app, app), {tech: np.sort(times_s[at]) for tech, at in rows[app].items()},
                 float(limits[app]), _size_note(run, app))
            for app in run.app_names if app in rows and app in limits]


def _cdf(app: str, label: str, times_by_tech: dict[str, np.ndarray], limit_s: float, size_note: str) -> FigureSpec:
    """One transfer app's figure from its completion times (s, sorted; inf when not completed) per technology."""
    fig = go.Figure()
    summary = []
    for tech in sorted(times_by_tech, key=technology_rank):
        times = times_by_tech[tech]
        share_in = float((times <= limit_s).mean())
        summary.append({"technology": tech, "transfers": len(times), "within_limit": share_in,
                        "median_s": float(np.median(times)), "p95_s": float(np.quantile(times, 0.95))})
        finite = times[np.isfinite(times)]
        picks = np.unique(np.linspace(0, len(finite) - 1, min(len(finite), 400)).astype(int)) if len(finite) else []
        fig.add_trace(go.Scatter(x=finite[picks], y=(np.asarray(picks) + 1) / len(times), mode="lines",
                                 name=esc(tech), line={"color": technology_colour(tech), "width": 2.5}))
    target_line(fig, x=limit_s, text=f"target {_seconds(limit_s)}", log_x=True)
    finite_all = np.concatenate([t[np.isfinite(t)] for t in times_by_tech.values()])
    low = max(min(float(finite_all.min()) if len(finite_all) else limit_s, limit_s) * 0.7, 1e-3)
    high = max(float(finite_all.max()) if len(finite_all) else limit_s, limit_s) * 1.5
    table = pd.DataFrame(summary)
    worst = table.sort_values("within_limit").iloc[0]
    best = table.sort_values("within_limit").iloc[-1]
    title = (f"{label[:1].upper() + label[1:]}: {best['within_limit']:.0%} finish within {_seconds(limit_s)} on "
             f"{best['technology']}" + (f", {worst['within_limit']:.0%} on {worst['technology']}"
                                        if worst["technology"] != best["technology"] else ""))
    _layout(fig, title)
    fig.update_layout(showlegend=True)  # a single technology still says which it is
    fig.update_xaxes(type="log", title_text="completion time (s, log scale)", range=[np.log10(low), np.log10(high)],
                     **log_ticks([low, high]))
    fig.update_yaxes(title_text="share of transfers completed", range=[0, 1.02], tickformat=".0%")
    note = (f"Time from request to last byte, TCP and TLS set-up included. The {_seconds(limit_s)} limit is this "
            "run's target (targets.yaml, sourced or labelled there, or the scenario's own). " + size_note)
    return FigureSpec(f"completion-{app}", title, fig, table, note)


def _size_note(run: RunData, app: str) -> str:
    """Where the app's sizes come from, read from the run's resolved catalogue."""
    spec = run.apps.get(app, {})
    size = spec.get("size") or {}
    if spec.get("generator") == "imaging":
        mods = run.resolved["catalogue"]["modalities"]
        centres = {name: m["size"].get("median") or m["size"].get("value") or m["size"].get("mean")
                   for name, m in mods.items()}
        parts = [f"{name} {significant(centre / 1e6)} MB" for name, centre in centres.items()]
        return "Study sizes (median): " + ", ".join(parts) + f". Sources: {spec.get('source', '')}."
    centre = size.get("median") or size.get("value") or size.get("mean")
    sized = f"Median size {significant(centre / 1e6)} MB. " if centre else ""
    return f"{sized}Sources: docs/sources.md {spec.get('source', '')}."


def _seconds(value_s: float) -> str:
    return f"{value_s / 60:g} min" if value_s >= 120 else f"{value_s:g} s"


def stream_quality(run: RunData) -> list[FigureSpec]:
    """For each judged stream app: share of call time at the recommended bitrate, between, and below the minimum."""
    targets = run.resolved["targets"]["streams"]
    return [spec for app in run.app_names if app in targets
            for spec in [_stream_quality(run, app, float(targets[app]["share_at_target"]))] if spec is not None]


def _stream_quality(run: RunData, app: str, bar: float) -> FigureSpec | None:
    records = run.records[["technology", "duration_s", "share_at_target", "share_below_min"]]  # only these copied
    calls = records[(run.records["app"] == app).to_numpy()]
    if calls.empty:
        return None
    weights = calls["duration_s"]
    parts = pd.DataFrame({"technology": calls["technology"], "w": weights,
                          "at": calls["share_at_target"] * weights, "below": calls["share_below_min"] * weights})
    table = parts.groupby("technology", observed=True).sum()
    table = pd.DataFrame({"calls": calls.groupby("technology", observed=True).size(),
                          "at_recommended": table["at"] / table["w"], "below_minimum": table["below"] / table["w"]})
    table.index = table.index.astype(str)  # categories, if the records were read so
    table["between"] = 1 - table["at_recommended"] - table["below_minimum"]
    table = table.reset_index().sort_values("technology", key=lambda s: s.map(technology_rank))
    fig = go.Figure()
    for column, label, colour in (("at_recommended", "at recommended bitrate", PASS),
                                  ("between", "between minimum and recommended", "#56B4E9"),
                                  ("below_minimum", "below minimum", FAIL)):
        fig.add_trace(go.Bar(y=[esc(t) for t in table["technology"]], x=table[column], name=label, orientation="h",
                             marker_color=colour, text=[f"{v:.0%}" for v in table[column]], textposition="inside"))
    if bar > 0:  # an app whose target asks no share of time at its recommended rate has no line to draw
        target_line(fig, x=bar, text=f"target: {bar:.0%} of call time")
    rate, label = run.apps[app]["rate"], run.apps[app]["label"]
    title = _stream_title(label, table.sort_values("at_recommended").iloc[0], rate)
    _layout(fig, title, height=160 + 40 * len(table))
    fig.update_layout(barmode="stack", legend_traceorder="normal")
    fig.update_xaxes(title_text="share of call time (duration-weighted over calls)", tickformat=".0%", range=[0, 1])
    aim = (f"Target: at least {bar:.0%} of call time at the recommended rate. " if bar > 0 else
           "The targets ask no share of call time at the recommended rate for this app. ")
    per_user = (" per active user (a site's stream carries all its users at once, so its verdicts quote the "
                "site's total)" if run.aggregated(app) else "")
    note = (aim + f"Recommended {_rate(rate['target'])}, minimum {_rate(rate['minimum'])}{per_user} towards the site "
            f"(its upstream at {rate.get('up_share', 1.0):.0%} of these); sources: docs/sources.md "
            f"{run.apps[app]['source']}. Worse direction of each call." + _simulator_note(run))
    return FigureSpec(f"quality-{app}", title, fig, table, note)


def _simulator_note(run) -> str:
    """The simulator's assumptions behind the call figures, from the run's meta.json (none for an emulated run)."""
    facts = run.meta.get("simulator") or {}
    if run.meta.get("engine") == "emu" or "video_max_utilisation" not in facts:
        return ""
    return (" Simulator's assumptions: a call backs off to its minimum while TCP fills a shared buffer; alone it "
            f"loads a link to at most {facts['video_max_utilisation']:.0%}.")


def _stream_title(label: str, worst: pd.Series, rate: dict) -> str:
    """The worst technology's time at the recommended rate, and where the rest of its time went."""
    head = (f"{label[:1].upper() + label[1:]} on {worst['technology']} spend {worst['at_recommended']:.0%} of "
            f"their time at the recommended {_rate(rate['target'])}")
    rest = {"between it and the minimum": worst["between"], "below the minimum": worst["below_minimum"]}
    where, share = max(rest.items(), key=lambda kv: kv[1])
    return head + (f", {share:.0%} {where} ({_rate(rate['minimum'])})" if share >= 0.005 else "")


def _rate(rate_bps: float) -> str:
    return f"{significant(rate_bps / 1e6)} Mbit/s" if rate_bps >= 1e6 else f"{significant(rate_bps / 1e3)} kbit/s"
