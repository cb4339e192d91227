"""A plan's tables: per class (``plan.csv``), per site (``plan_sites.csv``), every product run (``products.csv``).

Each answer comes with its reason in words, from the figures its rule used and the causes the runs' site verdicts
gave ("FTTC 40/10 at 1.8 km gives 18/4.5 Mbit/s: video met at 60% of sites (6 of 10) in the worst seed (seed 2,
bar 95%): bitrate below target, limited by the 4.5 Mbit/s uplink, and its uplink is below the class's need of
5.2 Mbit/s on the generic line").
"""

from __future__ import annotations

import math

import pandas as pd

from sim import topology
from sim.measures import TIME, rate_words, value_words
from sim.model.catalogue import AccessProfile
from sim.model.quantities import Buffer
from sim.model.scenario import Scenario
from sim.plan import HALF_WIDTH, Need, Plan
from sim.plan_runs import GENERIC_BASE
from sim.plan_search import HIGH_BPS, interval
from sim.plan_sites import LINK, Line, Step, best_missed, chosen, length_text


def _mbps(rate_bps: float) -> str:
    """Mbit/s to 3 significant figures, whole from 1,000 (never '1e+03')."""
    return f"{rate_bps / 1e6:.3g}" if rate_bps < 1e9 else f"{rate_bps / 1e6:.0f}"


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
    """Why a product is, or is not, the answer on a line, in words with the figures its rule used.

    * ``too slow``: a rate below the least any seed needed on the generic line (the rule's figure, less the
      search's tolerance).
    * ``missed``: the targets short of the bar in the worst seed, the cause the site verdicts gave for the worst
      of them (with the product's buffer and queueing where the cause is a queue of its line), and a rate below
      the class's need.
    * ``enough``: the share meeting every target in the worst seed; where a rate is below the class's need, what
      differs between the product and the generic line the need was searched on (:func:`enough_text`).
    """
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
    below = _short_of(step.rates_bps, (down.mean_bps, up.mean_bps))
    if step.outcome == "enough":
        return enough_text(scenario, where, step, below, down, up)
    missed = sorted([(s, a) for a, s in check.app_shares if s < target_share]) or [(min(check.shares), "")]
    what = ", ".join(f"{_target_label(scenario, a) if a else 'every target'} met at {_sites_text(s, check.sites)}"
                     for s, a in missed[:2]) + (f" (and {len(missed) - 2} more targets)" if len(missed) > 2 else "")
    seeds = down.seeds if len(down.seeds) == len(check.shares) else ()
    worst_seed = f"seed {seeds[check.shares.index(min(check.shares))]}, " if seeds else ""
    text = f"{where}: {what} in the worst seed ({worst_seed}bar {target_share:.0%})"
    causes = dict(check.causes)
    worst = missed[0][1]
    if worst in causes:
        named = f"{_target_label(scenario, worst)}, " if len(missed) > 1 else ""
        text += f": {named}{causes[worst]}{queue_note(profile, causes[worst])}"
    if below:
        text += (f", and {_lower(below)} {_is(below)} below the class's need of "
                 f"{_needs_text(below, down.mean_bps, up.mean_bps)} on the generic line")
    return text


def _sites_text(share: float, sites: int) -> str:
    """'90% of sites', with the count where known: '90% of sites (9 of 10)'."""
    return f"{share:.0%} of sites" + (f" ({round(share * sites)} of {sites})" if sites else "")


def _lower(short: str) -> str:
    return {"the downlink": "its downlink", "the uplink": "its uplink"}.get(short, short)


def buffer_words(buffer: Buffer) -> str:
    """A buffer for people: '50 ms', '150 kB'."""
    return value_words(buffer.seconds, TIME) if buffer.seconds is not None else f"{buffer.size_bytes / 1e3:.3g} kB"


def _queueing(profile: AccessProfile) -> str:
    return "priority queueing for calls" if profile.qos == "priority" else "one queue for calls and transfers"


def queue_note(profile: AccessProfile, cause: str) -> str:
    """Where a cause is the queue of the line's own downlink or uplink: that buffer and how the line queues.

    E.g. ' (its 50 ms downstream buffer, one queue for calls and transfers)'; '' for any other cause (a shared
    link's queue is not the line's).
    """
    if "queue of the" not in cause or "shared" in cause:
        return ""
    direction = "down" if "downlink" in cause else "up" if "uplink" in cause else ""
    if not direction:
        return ""
    buffer = getattr(profile, f"buffer_{direction}")
    return f" (its {buffer_words(buffer)} {direction}stream buffer, {_queueing(profile)})"


def generic_profile(scenario: Scenario) -> AccessProfile:
    """The profile whose RTT, buffers and queueing the generic line of the searches takes (:mod:`sim.plan_runs`)."""
    return scenario.catalogue.profiles[GENERIC_BASE]


def differences(product: AccessProfile, generic: AccessProfile, directions: tuple[str, ...]) -> list[tuple[str, str]]:
    """What differs between a product and the generic line, besides rates: (the product's, the generic line's).

    Buffers in the given directions, queueing, and a shorter round trip (a longer one cannot be what helped).
    """
    out = []
    for d in directions:
        mine, theirs = getattr(product, f"buffer_{d}"), getattr(generic, f"buffer_{d}")
        if mine != theirs:
            out.append((f"{buffer_words(mine)} {d}stream buffer", f"{buffer_words(theirs)} {d}stream buffer"))
    if product.qos != generic.qos:
        out.append((_queueing(product), _queueing(generic)))
    if product.rtt < generic.rtt:
        out.append((f"{value_words(product.rtt, TIME)} round trip", f"{value_words(generic.rtt, TIME)} round trip"))
    return out


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def enough_text(scenario: Scenario, where: str, step: Step, below: str, down: Need, up: Need) -> str:
    """Why a product that met the bar is enough; below the class's need in a direction, what else made it enough.

    The need was searched on the generic line (:func:`generic_profile`): a product below it differs from that
    line in its buffers, queueing or round trip, which are named with the generic line's, e.g. "its downlink is
    below the class's need of 203 Mbit/s on the generic line (50 ms downstream buffer, one queue for calls and
    transfers, 11 ms round trip), but with its 20 ms downstream buffer, priority queueing for calls and 4 ms round
    trip, every target met at 100% of sites in the worst seed".
    """
    met = f"every target met at {min(step.check.shares):.0%} of sites in the worst seed"
    if not below:
        return f"{where}: {met}"
    directions = {"the downlink": ("down",), "the uplink": ("up",)}.get(below, ("down", "up"))
    found = differences(scenario.catalogue.profiles[step.product], generic_profile(scenario), directions)
    need = (f"{where}: {_lower(below)} {_is(below)} below the class's need of "
            f"{_needs_text(below, down.mean_bps, up.mean_bps)} on the generic line")
    if not found:
        return (f"{need}, but {met} with the generic line's round trip, buffers and queueing: only its rates "
                "differ (the search held the other direction at 10 Gbit/s)")
    return f"{need} ({', '.join(g for _, g in found)}), but with its {_and([m for m, _ in found])}, {met}"


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
    """Why capacity alone cannot meet the bar: the targets still missed at 10 Gbit/s, by seed, and their causes."""
    worst: dict[tuple[int, str], tuple[float, str]] = {}
    for seed, app, share, cause in down.missed_at_high + up.missed_at_high:
        if share < worst.get((seed, app), (1.0, ""))[0]:
            worst[(seed, app)] = (share, cause)
    missed = sorted(worst.items(), key=lambda item: item[1][0])
    what = ", ".join(f"{_target_label(scenario, app)} met at {share:.0%} of sites in seed {seed}"
                     + (f" ({cause})" if cause else "") for (seed, app), (share, cause) in missed[:2])
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


OUTLIER_RATIO = 2.0  # a seed needing more than twice the next highest: the ladder's steps are about 2x apart


def spread_text(scenario: Scenario, need: Need, curve: pd.DataFrame) -> str:
    """When one seed needed far more than every other and the interval is wide: that seed and why, in words.

    '' unless the interval reaches more than ``HALF_WIDTH`` above its mean and the highest seed's need is more
    than ``OUTLIER_RATIO`` times the next highest. The words name the seed, the need without it, the rates over
    which its share passing stayed flat (from ``curve``: the points its search tried below its answer) and the
    targets its sites missed at the highest of them, with the cause the site verdicts gave, e.g. "down, seed
    2024 needed 1.28 Gbit/s, 2.67 times the next highest (480 Mbit/s, seed 2020); without it the need would be
    166 Mbit/s. At every rate tried from 503 Mbit/s to 1.25 Gbit/s 90% of its sites passed: video
    consultations met at 90% of sites, bitrate below target, limited by ...".
    """
    if not need.reachable or len(need.per_seed_bps) < 2 or need.half_width <= HALF_WIDTH:
        return ""
    ranked = sorted(zip(need.per_seed_bps, need.seeds), key=lambda pair: -pair[0])
    (top_bps, seed), (next_bps, next_seed) = ranked[0], ranked[1]
    if top_bps <= OUTLIER_RATIO * next_bps:
        return ""
    rest = interval([v for v, _ in ranked[1:]]).mean_bps
    text = (f"{need.direction}, seed {seed} needed {rate_words(top_bps)}, {top_bps / next_bps:.3g} times the next "
            f"highest ({rate_words(next_bps)}, seed {next_seed}); without it the need would be {rate_words(rest)}")
    mine = curve[(curve["site_class"] == need.site_class) & (curve["direction"] == need.direction)
                 & (curve["seed"] == seed) & (curve["capacity_bps"] < top_bps)].sort_values("capacity_bps")
    flat = _flat_below(list(zip(mine["capacity_bps"], mine["share"])))
    if flat:
        low_bps, high_bps, share = flat
        text += (f". At every rate tried from {rate_words(low_bps)} to {rate_words(high_bps)} {share:.0%} of its "
                 "sites passed: more rate did not help")
    short = [(cap, app, share, cause) for s, cap, app, share, cause in need.short if s == seed]
    if short:
        cap, app, share, cause = min(short, key=lambda item: item[2])
        text += (f"{'; at' if flat else '. At'} {rate_words(cap)}, {_target_label(scenario, app)} met at {share:.0%} "
                 f"of sites: {cause}{queue_note(generic_profile(scenario), cause)}")
    return text


def _flat_below(points: list[tuple[float, float]]) -> tuple[float, float, float] | None:
    """The run of equal shares ending at the highest point (capacity, share) below an answer, if it spans 1.5x."""
    if not points:
        return None
    high_bps, share = points[-1]
    low_bps = high_bps
    for capacity_bps, value in reversed(points):
        if value != share:
            break
        low_bps = capacity_bps
    return (low_bps, high_bps, share) if high_bps >= 1.5 * low_bps else None


def summary(result: Plan, scenario: Scenario) -> pd.DataFrame:
    """One row per site class: the least capacity per direction (mean, 95% CI; bit/s) and the cheapest product.

    ``product`` is empty when no product on the ladder met the bar; ``best_product`` and ``best_worst_share``
    then say the best that was found. When capacity alone cannot meet the bar (``reachable`` False),
    ``share_at_high`` is the share of sites meeting every target at ``HIGH_BPS`` in the worst seed.
    ``not_monotone`` describes the first inversion the searches met (see :func:`inversion_text`); ``seed_spread``
    a seed that needed far more than the others (see :func:`spread_text`).
    """
    rows = []
    at_high = result.curve[result.curve["capacity_bps"] >= HIGH_BPS].groupby("site_class")["share"].min()
    for c in dict.fromkeys(n.site_class for n in result.needs):
        down, up = result.need(c, "down"), result.need(c, "up")
        rows.append({"site_class": c, "seeds": len(down.seeds), "target_share": result.target_share,
                     **_need_columns(down, up), **answer(scenario, result, Line(c, None)),
                     "reachable": down.reachable and up.reachable,
                     "share_at_high": float(at_high.get(c, math.nan)),  # worst seed, at HIGH_BPS both ways
                     "not_monotone": "; ".join(filter(None, (inversion_text(down), inversion_text(up)))),
                     "seed_spread": "; ".join(filter(None, (spread_text(scenario, down, result.curve),
                                                             spread_text(scenario, up, result.curve))))})
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
