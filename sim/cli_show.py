"""What the ``testbed`` commands print: the answers, plans, availability and fidelity tables (part of :mod:`sim.cli`).

A table goes out as Rich on a terminal (full width, cells folded, never cut), plain text or Markdown elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from sim import answers, availability, checks, gate, pipeline, text_tables
from sim.cli_exits import out
from sim.text import visible
from sim.working_time import hours_text, span_text, worst_years_text


def availability_lines(judged, known: tuple, found: gate.Gate) -> list[str]:
    """What the availability verdicts do to the check: each miss (or excused miss) in words, or why none is judged.

    Against a baseline (``found``'s), a miss that missed in the baseline too is said so, and does not fail the check.
    """
    if judged is None:
        asked = [k for k in known if k.availability is not None]
        return [f"{len(asked)} availability known failures not judged: this check sampled no years of line faults "
                "(add --year, or the scenario's 'availability:' key)"] if asked else []
    missed = found.failing_availability(judged)
    lines = [f"availability miss: {words}" for words in gate.availability_lines(missed)]
    as_before = gate.availability_misses(judged).drop(missed.index)
    lines += [f"availability miss as in the baseline: {words}" for words in gate.availability_lines(as_before)]
    for reason, excused in judged[~judged["passed"] & (judged["known"] != "")].groupby("known", sort=False):
        lines += [f"availability miss excused (known failure: {reason}): {words}"
                  for words in gate.availability_lines(excused)]
    if len(missed):
        lines.append(f"{len(missed)} availability verdicts missed their target: the check fails")
    return lines


def print_fidelity(table) -> None:
    """The simulator against the emulation on the same slice (``fidelity.csv``), one row per app, access and metric."""
    rows = [[row.app, row.access_profile, row.metric, f"{row.des:.4g}", f"{row.emu:.4g}",
             f"{row.difference:+.3g}" + (f" ({row.relative:+.0%})" if row.relative == row.relative else "")]
            for row in table.itertuples(index=False)]
    show_table(text_tables.Table("Simulator vs emulation on the same slice (fidelity.csv; difference = des - emu)",
                                 ["app", "access", "metric", "des", "emu", "difference"], rows), None)


def print_plan(folder: Path) -> None:
    """The plan's tables: full width on a terminal, plain text (never cut) elsewhere."""
    from sim.report.studies import read_plan
    summary = read_plan(folder)
    rows = [[row.site_class, str(row.seeds), _need(row.down_need_bps, row.down_ci_low_bps, row.down_ci_high_bps),
             _need(row.up_need_bps, row.up_ci_low_bps, row.up_ci_high_bps),
             row.product_label or row.product or _no_product(row), _price(row)]
            for row in summary.itertuples(index=False)]
    notes = [f"{row.site_class}: the share passing is not monotone in capacity ({row.not_monotone}); the need is the "
             "least capacity from which every capacity tried passed"
             for row in summary.itertuples(index=False) if isinstance(row.not_monotone, str) and row.not_monotone]
    notes += [f"{row.site_class}: one seed needed far more than the rest: {row.seed_spread}"
              for row in summary.itertuples(index=False)
              if isinstance(getattr(row, "seed_spread", None), str) and row.seed_spread]
    show_table(text_tables.Table("Least capacity per site class (mean [95% CI]) and the cheapest product that is "
                                 "enough", ["site class", "seeds", "down", "up", "cheapest product", "GBP/month"],
                                 rows, notes), None)
    _print_plan_sites(folder)
    _print_plan_backup(folder)


def _print_plan_backup(folder: Path) -> None:
    from sim.report import plan_backup
    table = plan_backup.read_backup(folder)
    if table is not None:
        show_table(text_tables.Table("Primary + backup per site class, cheapest first, up to the cheapest meeting the "
                                     "performance and availability targets", plan_backup.HEADER,
                                     plan_backup.rows(table)), None)


def _print_plan_sites(folder: Path) -> None:
    import pandas as pd
    sites = pd.read_csv(folder / "plan_sites.csv", keep_default_na=False, na_values=[""])
    if not sites["line_length_m"].notna().any():
        return  # no site states its line length: the per-class answer is every site's
    rows = []
    for row in sites.itertuples(index=False):
        length = f"{row.line_length_m / 1000:.3g} km" if row.line_length_m == row.line_length_m else "not stated"
        name = row.site if row.sites == 1 else f"{row.site} ({row.sites} sites)"
        product = str(row.product_label) if isinstance(row.product_label, str) and row.product_label else "none"
        rows.append([str(name), row.site_class, length, row.access, product, _price(row), str(row.reason)])
    show_table(text_tables.Table("Per site, at its own line length: the cheapest product that is enough, and why",
                                 ["site", "class", "line", "now", "cheapest product", "GBP/month", "reason"], rows),
               None)


def _price(row) -> str:
    if not row.gbp_per_month == row.gbp_per_month:  # NaN: no product, or no price in the catalogue
        return ""
    return f"{row.gbp_per_month:,.0f} ({row.price_source})"


def _no_product(row) -> str:
    if row.best_product:
        return (f"none on the ladder meets the bar; best found: {row.best_product}, {row.best_worst_share:.0%} of "
                "sites in its worst seed")
    if row.reachable:
        return "none: no product on the ladder is as fast as the least capacity"
    return f"none: {row.reason}"


def _need(mean_bps: float, low_bps: float, high_bps: float) -> str:
    from sim.plan_search import need_text
    return need_text(mean_bps, low_bps, high_bps)


def study_availability(outcome: pipeline.Outcome, folder: Path | None, show: bool = True) -> availability.Availability:
    """Run the availability study of a run's scenario, print it (if ``show``), write its tables into ``folder``."""
    whole = outcome.engine == "des"  # an emulated run's trace is its slice only
    # what the study reads of the trace: a sharded run's is read from its folder, two columns of millions of rows
    trace = outcome.tables.trace_columns(["site", "app"]) if whole else None
    found = availability.study(outcome.scenario, outcome.seed, trace=trace)
    if folder is not None:
        checks.write_text(folder / "availability.csv", found.classes.to_csv(index=False))
        checks.write_text(folder / "availability_sites.csv", found.sites.to_csv(index=False))
        if (found.classes["backup"] != "none").any():  # the same sites on bare lines, for the report's words
            bare = availability.study(availability.without_backups(outcome.scenario), outcome.seed, backup="none",
                                      trace=trace)
            checks.write_text(folder / "availability_without_backup.csv", bare.classes.to_csv(index=False))
    rows = []
    several = found.classes["backup"].nunique() > 1  # site groups name their own backups
    for keys, part in found.classes.groupby(["site_class", "access_profile", "backup"], sort=False):
        worst = part.loc[part["without_h"].idxmax()]
        failing = part[(part["degraded_share"] > 0) & (part["backup_h"] > 0) & (part["backup"] != "none")]
        lost = ", ".join(f"{r.app} {r.degraded_share:.0%} [{r.degraded_low:.0%}-{r.degraded_high:.0%}]"
                         for r in failing.itertuples())
        failed = part[~part["passed"]].groupby("reason", sort=False)["app"].agg(", ".join)
        failed = failed.replace(", ".join(part["app"]), "every app")
        access = f"{keys[1]} + {keys[2]}" if several else keys[1]
        worst_years = worst_years_text(1 - worst.target_years, worst.worst_h)
        if worst.worst_h > 0:
            worst_years += f" [{span_text(worst.worst_low_h, worst.worst_high_h)}]"
        without = f"{hours_text(worst.without_h)} [{span_text(worst.without_low_h, worst.without_high_h)}]"
        rows.append([keys[0], access, hours_text(worst.down_h), hours_text(worst.backup_h), lost or "-",
                     f"{worst.app}: {without}, {worst.share_usable:.3%}, "
                     f"{worst.sessions_lost + worst.sessions_failed_on_backup:.1f}",
                     worst_years,
                     "; ".join(f"{apps}: {reason}" for reason, apps in failed.items()) or "none"])
    if show:
        show_table(text_tables.Table(f"{found.backup}: availability over {found.years} sampled years of line faults "
                                     f"({found.working_h_per_year:,.0f} working hours a year; apps: testbed list apps)",
                                     ["site class", "access", "down a year", "on backup a year",
                                      "failing on backup: share of its time [95% CI]",
                                      "worst app: a year without it [95% CI], usable, sessions lost a year a site",
                                      "worst years",
                                      "misses"], rows), None)
    return found


def run_facts(outcome: pipeline.Outcome, scenario: Path) -> dict:
    """What identifies a run in CI output: scenario, its file, the results folder (if written), seed, timings."""
    return {"scenario": outcome.scenario.name, "scenario_file": str(scenario),
            "run_folder": str(outcome.folder) if outcome.folder else None, "seed": outcome.seed,
            "engine": outcome.engine, "sessions": outcome.sessions,
            "timings_s": {k: round(v, 4) for k, v in (outcome.timings_s or {}).items()}}


def print_answers(outcome: pipeline.Outcome, found: gate.Gate, scenario: Path, output: str | None,
                   all_sites: bool, timings: bool, judged=None) -> None:
    """The class table, the failing sites worst first, known failures, regressions; or the JSON summary.

    ``judged``: the availability verdicts (:mod:`sim.availability`), when the scenario asks for them.
    """
    if output == "json":
        out.file.write(checks.summary_json(found, run_facts(outcome, scenario), judged))
        return
    shown = [answers.class_table(outcome.verdicts, outcome.scenario.name),
             answers.sites_table(found, outcome.topology.sites, None if all_sites else answers.LIMIT_SITES)]
    if found.regressions:
        shown.append(text_tables.Table("Regressions against the baseline (what fails the check)",
                                  ["level", "name", "target", "before", "after"],
                                  [[r.level, r.name, r.target, r.before, r.after] for r in found.regressions]))
    if timings:
        shown.append(text_tables.Table("Phase timings", ["phase", "seconds"],
                                  [[name, f"{value_s:.3f}"] for name, value_s in (outcome.timings_s or {}).items()]))
    for table in shown:
        show_table(table, output)
    for note in answers.known_notes(found):
        out.print(note, highlight=False, markup=False, soft_wrap=True)


def show_table(table: text_tables.Table, output: str | None) -> None:
    """A table as ``output`` asks; by default Rich on a terminal (full width, cells folded, never cut), else text."""
    if output == "markdown" or (output is None and not out.is_terminal) or output == "text":
        try:
            out.file.write((text_tables.markdown(table) if output == "markdown" else text_tables.text(table)) + "\n")
            out.file.flush()
        except BrokenPipeError:  # the reader has gone (``testbed list | head``): the rest goes nowhere, as Rich's
            out.on_broken_pipe()
        return
    grid = Table(title=visible(table.title))
    for column in table.columns:
        grid.add_column(column, overflow="fold")
    for row in table.rows:
        grid.add_row(*(Text(visible(str(cell))) for cell in row))
    out.print(grid)
    for note in table.notes:
        out.print(Text(visible(note)), soft_wrap=True)
