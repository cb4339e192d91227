"""A plan's tables: per class (``plan.csv``), per site (``plan_sites.csv``), every product run (``products.csv``).

Each answer comes with its reason in words, from the figures the plan found ("FTTC 40/10 at 1.8 km gives
18/4.5 Mbit/s: video met at 60% of sites (bar 95%); the uplink is below the class's need of 5.2 Mbit/s").
"""

from __future__ import annotations

import math

import pandas as pd

from sim import topology
from sim.model.scenario import Scenario
from sim.plan import Need, Plan
from sim.plan_search import HIGH_BPS
from sim.plan_sites import LINK, Line, Step, best_missed, chosen, length_text


def _mbps(rate_bps: float) -> str:
    return f"{rate_bps / 1e6:.3g}"


def rates_text(rates_bps: tuple[float, float]) -> str:
    """'18/4.5 Mbit/s' (down/up)."""
    return f"{_mbps(rates_bps[0])}/{_mbps(rates_bps[1])} Mbit/s"


def _where(scenario: Scenario, product: str, line: Line) -> str:
    """'FTTC 40/10 at 1.8 km', or the label alone where the length is not stated or does not matter."""
    profile = scenario.catalogue.profiles[product]
    matters = line.distance_m is not None and (profile.derating or profile.reach is not None)
    return f"{profile.label} at {length_text(line.distance_m)}" if matters else profile.label


def _target_label(scenario: Scenario, app: str) -> str:
    apps = scenario.catalogue.apps
    return "busy-hour utilisation" if app == LINK else (apps[app].label if app in apps else app)


def explain(scenario: Scenario, line: Line, step: Step, down: Need, up: Need, target_share: float) -> str:
    """Why a product is, or is not, the answer on a line, in words with its figures."""
    profile = scenario.catalogue.profiles[step.product]
    if step.outcome == "not sold":
        return (f"{profile.label}: not sold beyond {length_text(profile.reach)} "
                f"(this line is {length_text(line.distance_m)})")
    where = f"{_where(scenario, step.product, line)} gives {rates_text(step.rates_bps)}"
    if step.outcome == "too slow":
        short = _short_of(step.rates_bps, (down.floor_bps, up.floor_bps))
        return (f"{where}: {short} {_is(short)} below the least any seed needed "
                f"({_needs_text(short, min(down.per_seed_bps), min(up.per_seed_bps))})")
    check = step.check
    if step.outcome == "enough":
        return f"{where}: every target met at {min(check.shares):.0%} of sites in the worst seed"
    missed = sorted([(s, a) for a, s in check.app_shares if s < target_share]) or [(min(check.shares), "")]
    what = ", ".join(f"{_target_label(scenario, a) if a else 'every target'} met at {s:.0%} of sites"
                     for s, a in missed[:2]) + (f" (and {len(missed) - 2} more targets)" if len(missed) > 2 else "")
    text = f"{where}: {what} in the worst seed (bar {target_share:.0%})"
    below = _short_of(step.rates_bps, (down.mean_bps, up.mean_bps))
    if below:
        text += f"; {below} {_is(below)} below the class's need of {_needs_text(below, down.mean_bps, up.mean_bps)}"
    return text


def _short_of(rates_bps: tuple[float, float], floor_bps: tuple[float, float]) -> str:
    """'the downlink', 'the uplink', 'both directions' or '' (rates against floors, bit/s)."""
    low = [rates_bps[0] < floor_bps[0], rates_bps[1] < floor_bps[1]]
    return {(True, True): "both directions", (True, False): "the downlink", (False, True): "the uplink"}.get(
        tuple(low), "")


def _is(short: str) -> str:
    return "are" if short == "both directions" else "is"


def _needs_text(short: str, down_bps: float, up_bps: float) -> str:
    if short == "the downlink":
        return f"{_mbps(down_bps)} Mbit/s"
    if short == "the uplink":
        return f"{_mbps(up_bps)} Mbit/s"
    return f"{_mbps(down_bps)}/{_mbps(up_bps)} Mbit/s"


def answer(scenario: Scenario, result: Plan, line: Line) -> dict:
    """A line's answer: the product (or the best found), its rates at the line's length, price, reason, why not."""
    steps = result.lines[line]
    down, up = result.need(line.site_class, "down"), result.need(line.site_class, "up")
    pick, best = chosen(steps), best_missed(steps)
    reachable = down.reachable and up.reachable
    cheaper = [s for s in steps[:steps.index(pick) if pick else len(steps)] if s.outcome != "not needed"
               and reachable]
    why_not = [explain(scenario, line, s, down, up, result.target_share) for s in cheaper]
    if pick:
        profile = scenario.catalogue.profiles[pick.product]
        reason = explain(scenario, line, pick, down, up, result.target_share)
        near = next((w for s, w in zip(reversed(cheaper), reversed(why_not)) if s.outcome != "not sold"), None)
        reason += f". Not the cheaper {near}" if near else ""
    elif not reachable:
        reason = unreachable_text(scenario, down, up)
    else:
        reason = "no product on the ladder meets the bar here" + (
            f"; the best, {explain(scenario, line, best, down, up, result.target_share)}" if best else
            ": none is as fast as the least capacity")
    return {
        "product": pick.product if pick else "", "product_label": profile.label if pick else "",
        "product_down_bps": pick.rates_bps[0] if pick else math.nan,
        "product_up_bps": pick.rates_bps[1] if pick else math.nan,
        "gbp_per_month": profile.price.gbp_per_month if pick and profile.price else math.nan,
        "price_source": profile.price.source if pick and profile.price else "",
        "best_product": best.product if best and not pick else "",
        "best_worst_share": min(best.check.shares) if best and not pick else math.nan,
        "reason": reason, "why_not": "; ".join(why_not)}


def unreachable_text(scenario: Scenario, down: Need, up: Need) -> str:
    """Why capacity alone cannot meet the bar: the targets still missed at 10 Gbit/s, by seed."""
    worst: dict[tuple[int, str], float] = {}
    for seed, app, share in down.missed_at_high + up.missed_at_high:
        worst[(seed, app)] = min(share, worst.get((seed, app), 1.0))
    missed = sorted(worst.items(), key=lambda item: item[1])
    what = ", ".join(f"{_target_label(scenario, app)} met at {share:.0%} of sites in seed {seed}"
                     for (seed, app), share in missed[:2])
    return ("capacity alone cannot meet the bar: at 10 Gbit/s each way " + (what or "some target is still missed")
            + " (see the session verdicts of a run for which sessions)")


def _need_columns(down: Need, up: Need) -> dict:
    return {"down_need_bps": down.mean_bps, "down_ci_low_bps": down.ci_low_bps, "down_ci_high_bps": down.ci_high_bps,
            "up_need_bps": up.mean_bps, "up_ci_low_bps": up.ci_low_bps, "up_ci_high_bps": up.ci_high_bps}


def inversion_text(need: Need) -> str:
    """The first sign of a non-monotone response, in words ('' if none)."""
    if not need.inversions:
        return ""
    seed, pass_bps, pass_share, fail_bps, fail_share = need.inversions[0]
    more = f" (and {len(need.inversions) - 1} more)" if len(need.inversions) > 1 else ""
    return (f"{need.direction}, seed {seed}: {pass_share:.0%} of sites passed at {_mbps(pass_bps)} Mbit/s but "
            f"{fail_share:.0%} at {_mbps(fail_bps)} Mbit/s{more}")


def summary(result: Plan, scenario: Scenario) -> pd.DataFrame:
    """One row per site class: the least capacity per direction (mean, 95% CI; bit/s) and the cheapest product.

    ``product`` is empty when no product on the ladder met the bar; ``best_product`` and ``best_worst_share``
    then say the best that was found. When capacity alone cannot meet the bar (``reachable`` False),
    ``share_at_high`` is the share of sites meeting every target at ``HIGH_BPS`` in the worst seed.
    ``not_monotone`` describes the first inversion the searches met (see :func:`inversion_text`).
    """
    rows = []
    at_high = result.curve[result.curve["capacity_bps"] >= HIGH_BPS].groupby("site_class")["share"].min()
    for c in dict.fromkeys(n.site_class for n in result.needs):
        down, up = result.need(c, "down"), result.need(c, "up")
        rows.append({"site_class": c, "seeds": len(down.seeds), "target_share": result.target_share,
                     **_need_columns(down, up), **answer(scenario, result, Line(c, None)),
                     "reachable": down.reachable and up.reachable,
                     "share_at_high": float(at_high.get(c, math.nan)),  # worst seed, at HIGH_BPS both ways
                     "not_monotone": "; ".join(filter(None, (inversion_text(down), inversion_text(up))))})
    return pd.DataFrame(rows)


def site_table(result: Plan, scenario: Scenario) -> pd.DataFrame:
    """One row per site group of the planned classes (one per site for an inventory): its answer at its length.

    ``site`` is the name the topology gives the group's sites (the first, for a group of several: ``sites``
    says how many share the answer); ``line_length_m`` is NaN where not stated (headline rates).
    """
    names, rows, offset = topology.site_names(scenario), [], 0
    for group in scenario.sites:
        first, offset = names[offset], offset + group.count
        first = first.removesuffix("-001") if group.count > 1 else first
        line = Line(group.site_class, group.distance)
        if line not in result.lines:
            continue
        down, up = result.need(line.site_class, "down"), result.need(line.site_class, "up")
        found = answer(scenario, result, line)
        rows.append({"site": first, "sites": group.count, "site_class": group.site_class, "access": group.access,
                     "line_length_m": group.distance if group.distance is not None else math.nan,
                     **_need_columns(down, up), **found, "keeps_access": found["product"] == group.access})
    return pd.DataFrame(rows)


def product_table(result: Plan) -> pd.DataFrame:
    """Every product run: one row per site class, line length (m; NaN: headline rates), product and seed."""
    rows = []
    for line, steps in result.lines.items():
        seeds = result.need(line.site_class, "down").seeds
        for s in steps:
            if s.check is not None:
                length = s.check.distance_m if s.check.distance_m is not None else math.nan
                rows += [(line.site_class, length, s.product, seed, share, s.check.passed)
                         for seed, share in zip(seeds, s.check.shares)]
    table = pd.DataFrame(rows, columns=["site_class", "line_length_m", "product", "seed", "share", "passed_all_seeds"])
    return table.drop_duplicates(ignore_index=True)
