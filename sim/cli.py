"""The ``testbed`` command: thin wrappers that parse arguments, call one library function, set the exit code.

Exit codes: 0 ok, 1 targets missed (``check``), 2 bad input or environment (a message naming the path or field
and what to do), 3 internal error (a bug: its traceback goes to a log file whose path is printed), 130
interrupted (Ctrl-C or SIGTERM).

The parts: :mod:`sim.cli_exits` (the consoles, exit codes, signals and progress bars), :mod:`sim.cli_show` (the
tables the commands print) and :mod:`sim.cli_lists` (``testbed list``).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from sim import answers, availability, checks, gate, load, pipeline, report, results, studies, sweep, units
from sim.cli_exits import err, exits, out, progress_bar, say, say_more_problems, shown
from sim.cli_lists import list_apps, list_classes, list_profiles, list_scenarios
from sim.cli_show import availability_lines, print_answers, print_fidelity, print_plan, run_facts, study_availability
from sim.errors import TestbedError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="NHS connectivity capacity testbed: do NHS sites meet their service targets on copper "
                       "and on full fibre?")


SCHEDULER = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786) to run "
                                                    "on; default: an embedded cluster.")
WORKERS = typer.Option(None, "--workers", min=0, help="Worker processes of the embedded cluster (default: one per "
                                                       "core; 0: everything in this process).")
TRACE = typer.Option(None, "--trace", help="Replay this measured trace (CSV or Parquet, one row per session; "
                                           "docs/scenarios.md) instead of generating one.")

def _share(text: str) -> float:
    """A share option's value ("95%" or "0.95") as a fraction; a bad one is a usage error (exit 2)."""
    try:
        return units.parse_share(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


SEED_MAX = 2**32 - 1  # a scenario's seed is at most this too


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the testbed does.")) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    if not verbose:  # Dask's own lines (scheduler, nannies, connections) only when they are errors
        handler.addFilter(_quiet_dask)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def _quiet_dask(record: logging.LogRecord) -> bool:
    """Drop Dask's log lines below ERROR (importing Dask resets its loggers to INFO, so levels cannot)."""
    return not record.name.startswith("distributed") or record.levelno >= logging.ERROR


@app.command()
def run(scenario: Path = typer.Argument(..., help="Scenario file (YAML)."),
        seed: int = typer.Option(None, min=0, max=SEED_MAX, help="Seed for the workload (default: the "
                                                                  "scenario's)."),
        out_dir: Path = typer.Option(Path("results"), "--out", help="Root of the results folders."),
        engine: str = typer.Option("des", help="des (flow-level simulator), emu (Mininet emulation of the "
                                               "scenario's emulation slice, real time, root) or both (the slice "
                                               "on each, and fidelity.csv)."),
        png: bool = typer.Option(None, "--png/--no-png", help="PNG figures (default: if Chromium is found)."),
        scheduler: str = SCHEDULER, workers: int = WORKERS,
        resume: Path = typer.Option(None, "--resume", help="Finish an interrupted estate run from its partial folder "
                                                           "(results/<scenario>/.<run>.partial)."),
        year: bool = typer.Option(False, "--year", help="Also sample years of line faults (the scenario's "
                                                         "'availability:', or 200 years without backup): "
                                                         "availability per class, in availability.csv."),
        trace: Path = TRACE,
        all_sites: bool = typer.Option(False, "--all-sites", help="List every failing site (default: the "
                                                                   f"{answers.LIMIT_SITES} worst)."),
        output: str = typer.Option(None, "--format", help="text, markdown or json (default: a table that fits the "
                                                          "terminal, or text when not on one)."),
        timings: bool = typer.Option(False, "--verbose", "-v", help="Also show how long each phase took."),
        ) -> None:
    """Run a scenario, write its results folder and report, and print the compliance table.

    Estate-scale scenarios run in shards on Dask (an embedded cluster, or --scheduler).
    """
    with exits(lambda kept: _resume_command(scenario, kept, seed, scheduler, workers), resuming=resume is not None):
        _require_engine(engine)
        _require_format(output)
        if year:  # refused before anything is run or written
            availability.require(load.load(scenario))
        verb = "simulating" if engine == "des" else "emulating (real time)"
        with progress_bar(f"{verb} {scenario.name}") as progress:
            outcome = pipeline.run(scenario, seed=seed, out=out_dir, progress=progress, png=png, scheduler=scheduler,
                                   workers=workers, resume=resume, engine=engine, trace=trace)
        if year:  # its tables and figure join the folder before anything is printed
            study_availability(outcome, outcome.folder, show=output != "json")
            report.render(outcome.folder, png=png)  # again, with the availability figure
        found = gate.judge(outcome.verdicts, outcome.scenario.known_failures)
        print_answers(outcome, found, scenario, output, all_sites, timings)
        if output == "json":
            return
        if outcome.meta:
            m = outcome.meta
            start, end = (units.format_clock(m[k], with_seconds=True) for k in ("window_start_s", "window_end_s"))
            out.print(f"emulated {', '.join(m['sites'])} from {start} to {end} (+{m['drain_s']:.0f} s drain), "
                      f"delay by {m['delay_method']}, TCP {m['congestion_control']}", highlight=False, soft_wrap=True)
        if outcome.fidelity is not None:
            print_fidelity(outcome.fidelity)
        if outcome.failover is not None:
            from sim import failover
            out.print("calls through the line changes, per phase (failover.csv):\n" + failover.text(outcome.failover),
                      highlight=False, soft_wrap=True)
        out.print(f"{outcome.sessions:,} sessions, {outcome.tables.events:,} events in {outcome.wall_s:.1f} s"
                  if engine == "des" else f"{outcome.sessions:,} sessions replayed in {outcome.wall_s:.1f} s")
        out.print(f"results: {outcome.folder}", highlight=False, soft_wrap=True)
        out.print(f"report:  {outcome.folder / report.REPORT_FILE}", highlight=False, soft_wrap=True)


@app.command("report")
def report_(run_dir: Path = typer.Argument(..., help="A run folder, or a scenario's results folder (latest run)."),
            png: bool = typer.Option(None, "--png/--no-png", help="PNG figures (default: when Chromium is found).")
            ) -> None:
    """Redraw a run's report from its results folder alone (no re-run)."""
    with exits():
        path = report.render(results.latest(run_dir), png=png)
        out.print(f"report: {path}", highlight=False, soft_wrap=True)


@app.command()
def compare(run_a: Path = typer.Argument(..., help="Run folder (or a scenario's results folder) A."),
            run_b: Path = typer.Argument(..., help="Run folder (or a scenario's results folder) B."),
            out_dir: Path = typer.Option(None, "--out", help="Where to write (default: results/compare/A-vs-B)."),
            png: bool = typer.Option(None, "--png/--no-png", help="PNG figure (default: when Chromium is found).")
            ) -> None:
    """Write a report comparing two runs: what changes, for which site class."""
    with exits():
        a, b = results.latest(run_a), results.latest(run_b)
        target = out_dir or Path("results") / "compare" / f"{a.parent.name}-vs-{b.parent.name}"
        path = report.compare(a, b, target, png=png)
        from sim.report.comparison import CHANGES_FILE
        for line in (path.parent / CHANGES_FILE).read_text(encoding="utf-8").splitlines():
            out.print(line, highlight=False, markup=False, soft_wrap=True)
        out.print(f"comparison: {path}", highlight=False, soft_wrap=True)


@app.command()
def plan(scenario: Path = typer.Argument(..., help="Scenario file (YAML): its sites, load, targets and ladder."),
         site_class: list[str] = typer.Option(None, "--site-class", help="Plan this site class (repeatable; "
                                                                         "default: every class in the scenario)."),
         target_share: float = typer.Option("95%", parser=_share, metavar="SHARE",
                                            help="Share of a class's sites that must meet every target (95% or 0.95)."),
         seeds: int = typer.Option(None, help="Seeds (at least 2) for the confidence interval; default: from 3, "
                                              "more while an interval is wider than 25% of its mean, at most 10."),
         out_dir: Path = typer.Option(Path("results"), "--out", help="Root of the results folders."),
         scheduler: str = SCHEDULER, workers: int = WORKERS,
         png: bool = typer.Option(None, "--png/--no-png", help="PNG figures (default: if Chromium is found)."),
         ) -> None:
    """The least capacity each site class needs, and the cheapest product per class and per site at its line length."""
    with exits():
        with progress_bar(f"planning {scenario.name}", lines=True) as progress:
            found, folder = studies.plan(scenario, site_classes=site_class or None, target_share=target_share,
                                         seeds=seeds, out=out_dir, scheduler=scheduler, workers=workers,
                                         progress=progress, png=png)
        print_plan(folder)
        out.print(f"seeds:   {found.seed_rule}: {len(found.seeds)} used", highlight=False, soft_wrap=True)
        out.print(f"plan:    {folder}", highlight=False, soft_wrap=True)
        out.print(f"sites:   {folder / 'plan_sites.csv'}", highlight=False, soft_wrap=True)
        out.print(f"page:    {folder / 'plan.html'}", highlight=False, soft_wrap=True)


@app.command("sweep")
def sweep_(scenario: Path = typer.Argument(..., help="Scenario file (YAML)."),
           sets: list[str] = typer.Option(..., "--set", help="KEY=V1,V2,... a scenario key and its values "
                                                               "(repeatable; e.g. load.gp_video_share=2%,25%,50% or "
                                                               "access=adsl2plus,fttp_330_50)."),
           seeds: int = typer.Option(1, help="Seeds per grid point."),
           out_dir: Path = typer.Option(Path("results"), "--out", help="Root of the results folders."),
           scheduler: str = SCHEDULER, workers: int = WORKERS,
           png: bool = typer.Option(None, "--png/--no-png", help="PNG figures (default: if Chromium is found)."),
           ) -> None:
    """Run the grid of scenario variants x seeds: one flat table, one figure per app."""
    with exits():
        axes = sweep.parse_sets(sets)
        with progress_bar(f"sweeping {scenario.name}") as progress:
            done, folder = studies.sweep(scenario, axes, seeds=seeds, out=out_dir, scheduler=scheduler,
                                         workers=workers, progress=progress, png=png)
        runs = len(sweep.grid(axes)) * len(done.seeds)
        out.print(f"{runs} runs, {len(done.table):,} rows", highlight=False)
        out.print(f"table:   {folder / 'sweep.csv'}", highlight=False, soft_wrap=True)
        out.print(f"page:    {folder / 'sweep.html'}", highlight=False, soft_wrap=True)


@app.command()
def check(scenario: Path = typer.Argument(..., help="Scenario file (YAML)."),
          seed: int = typer.Option(None, min=0, max=SEED_MAX, help="Seed for the workload (default: the "
                                                                    "scenario's)."),
          junit: Path = typer.Option(None, help="Write JUnit XML here (a case per site class and per site, per "
                                                "target)."),
          json_path: Path = typer.Option(None, "--json", help="Write a JSON summary here (a later --baseline)."),
          out_dir: Path = typer.Option(None, "--out", help="Also write a results folder under this root."),
          baseline: Path = typer.Option(None, "--baseline", help="A previous check's --json: fail only on what got "
                                                                 "worse since."),
          all_sites: bool = typer.Option(False, "--all-sites", help="List every failing site (default: the "
                                                                     f"{answers.LIMIT_SITES} worst)."),
          output: str = typer.Option(None, "--format", help="text, markdown or json (default: a table that fits the "
                                                            "terminal, or text when not on one)."),
          timings: bool = typer.Option(False, "--verbose", "-v", help="Also show how long each phase took."),
          year: bool = typer.Option(False, "--year", help="Also judge availability from sampled years of line "
                                                           "faults (the scenario's 'availability:', or 200 years "
                                                           "without backup); the scenario's key alone does too."),
          trace: Path = TRACE) -> None:
    """Run a scenario; exit 1 when a site class misses a target not declared known (with --baseline: on regressions).

    Known failures are declared in the scenario (``known_failures``); they are reported but do not fail the check.
    With --year (or the scenario's ``availability:`` key) a class missing an availability target fails it too.
    """
    with exits(lambda kept: _resume_command(scenario, kept, seed, None, None)):
        _require_format(output)
        for path, option in ((junit, "--junit"), (json_path, "--json")):  # refused before anything is run
            if path:
                _require_file_path(path, option)
        previous = gate.read_baseline(baseline) if baseline else None
        if year:  # refused before anything is run or written
            availability.require(load.load(scenario, trace=trace))
        with progress_bar(f"checking {scenario.name}") as progress:
            if out_dir:
                outcome = pipeline.run(scenario, seed=seed, out=out_dir, progress=progress, trace=trace)
            else:
                phases = pipeline.Phases()
                with phases("load"):
                    loaded = load.load(scenario, trace=trace)
                outcome = pipeline.simulate(loaded, seed, progress, phases)
        if previous is not None and previous["scenario"] != outcome.scenario.name:
            err.print(f"warning: --baseline {shown(str(baseline))} is of scenario {shown(str(previous['scenario']))}, "
                      f"this run of {shown(outcome.scenario.name)}: what it did not hold counts as new",
                      highlight=False, soft_wrap=True)
        found = gate.judge(outcome.verdicts, outcome.scenario.known_failures, previous)
        facts = run_facts(outcome, scenario)
        judged = None  # the availability verdicts, with --year or when the scenario asks for them
        if year or outcome.scenario.availability is not None:
            judged = study_availability(outcome, outcome.folder, show=output != "json").classes
            found, judged = gate.judge_availability(found, judged, outcome.scenario.known_failures, previous)
            if outcome.folder is not None:  # the tables and the report's figure join the folder
                report.render(outcome.folder)
        if junit:
            checks.write_text(junit, checks.junit_xml(found, facts, outcome.scenario.targets.passing.sites, judged))
        if json_path:
            checks.write_text(json_path, checks.summary_json(found, facts, judged))
        print_answers(outcome, found, scenario, output, all_sites, timings, judged)
        missed = 0 if judged is None else len(found.failing_availability(judged))
        if output != "json":
            out.print(answers.verdict_line(found, previous is not None), highlight=False, markup=False,
                      soft_wrap=True)
            for line in availability_lines(judged, outcome.scenario.known_failures, found):
                out.print(line, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(0 if found.passed and not missed else 1)


@app.command()
def doctor() -> None:
    """Report what this machine can emulate (root, Mininet, shaping, delay method, tools); exit 0 if it can, else 2.

    Its first line says which simulator runs here: compiled or interpreted, and why (:mod:`sim.native`).
    """
    with exits():
        from sim import native
        from sim.emu import capabilities
        out.print(native.describe(), highlight=False, markup=False)
        caps = capabilities.detect()
        for line in capabilities.doctor_lines(caps):
            out.print(line, highlight=False, markup=False)
        ok = not capabilities.problems(caps) and caps.delay_method
    raise typer.Exit(0 if ok else 2)


@app.command()
def clean(prefix: str = typer.Argument(None, help="One run's prefix (tbXXXX); default: every run of ours whose "
                                                   "process has died."),
          force: bool = typer.Option(False, help="With a prefix: clean it even if its run still looks alive.")
          ) -> None:
    """Remove what crashed emulation runs of ours left: processes, namespaces, interfaces, bridges (ours only)."""
    with exits():
        from sim.emu import clean as cleaner
        for line in cleaner.clean(prefix, force=force).lines():
            out.print(line, highlight=False, markup=False)


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Scenario or catalogue files.")) -> None:
    """Check scenario or catalogue files and report the problems in each, one located line each."""
    failed = False
    with exits():
        for file in files:
            try:
                out.print(f"{shown(str(file))}: ok, {shown(load.validate_file(file))}", highlight=False,
                          soft_wrap=True)
            except TestbedError as exc:
                say(f"[red]error:[/red] {shown(str(exc))}")
                say_more_problems(exc)
                failed = True
    if failed:
        raise typer.Exit(2)


@app.command("list")
def list_(what: str = typer.Argument("all", help="profiles, apps, site-classes, scenarios or all.")) -> None:
    """List the access profiles, the app registry, site classes and shipped scenarios."""
    with exits():
        shows: dict[str, Callable[[], None]] = {"profiles": list_profiles, "apps": list_apps,
                                                "site-classes": list_classes, "scenarios": list_scenarios}
        if what != "all" and what not in shows:
            raise TestbedError(f"cannot list {what!r}; choose one of: {', '.join(shows)}, all")
        for name, show in shows.items():
            if what in ("all", name):
                show()


def _resume_command(scenario: Path, partial: Path, seed: int | None, scheduler: str | None,
                    workers: int | None) -> str:
    """The command line that finishes an interrupted run from its ``partial`` folder, as it was started."""
    words = ["testbed", "run", str(scenario), "--resume", str(partial)]
    words += ["--seed", str(seed)] if seed is not None else []
    words += ["--scheduler", scheduler] if scheduler else ["--workers", str(workers)] if workers is not None else []
    return shlex.join(words)


def _require_engine(engine: str) -> None:
    if engine not in ("des", "emu", "both"):
        raise TestbedError(f"unknown engine {engine!r}; choose des, emu or both")


FORMATS = ("text", "markdown", "json")


def _require_format(output: str | None) -> None:
    if output is not None and output not in FORMATS:
        raise TestbedError(f"unknown --format {output!r}; choose text, markdown or json")


def _require_file_path(path: Path, option: str) -> None:
    """Refuse, before the run, a report file that could not be written: a folder, under a file, or read-only."""
    if path.is_dir():
        raise TestbedError(f"{option} {path}: Is a directory; that is a folder: give a file name")
    existing = next(parent for parent in (*path.parents, Path(".")) if parent.exists() or parent.is_symlink())
    if not existing.is_dir():
        raise TestbedError(f"{option} {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise TestbedError(f"{option} {path}: cannot be written here (no permission); choose a path you can write to")


def main() -> None:
    """Entry point for ``python -m sim`` and ``testbed``.

    A usage error (a mistyped option, a value out of range) is Typer's Rich box on a terminal, and Click's plain
    lines when stderr is not one (a CI log), as the tables are plain text there; so is ``--help``, at
    :data:`PLAIN_HELP_COLUMNS` (Click's 80 cut each command's summary short).
    """
    if not err.is_terminal:
        app.rich_markup_mode = None
        app.info.context_settings = {"terminal_width": PLAIN_HELP_COLUMNS, "max_content_width": PLAIN_HELP_COLUMNS}
    app(prog_name="testbed")


PLAIN_HELP_COLUMNS = 130  # plain-text help this wide shows each command summary whole (the longest: 110 characters)


if __name__ == "__main__":
    sys.exit(main())
