"""The ``testbed`` command: thin wrappers that parse arguments, call one library function, set the exit code.

Exit codes: 0 ok, 1 targets missed (``check``), 2 bad input or environment (a message naming the path or field
and what to do), 3 internal error (a bug: its traceback goes to a log file whose path is printed), 130
interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text

import sim
from sim import answers, availability, checks, gate, load, pipeline, report, results, studies, sweep, text_tables, units
from sim import text as text_
from sim.errors import TestbedError, kept_folder
from sim.load_catalogue import DEFAULT_CATALOGUE
from sim.progress import Forward, heartbeat
from sim.text import visible
from sim.working_time import hours_text, span_text, worst_years_text

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="NHS connectivity capacity testbed: do NHS sites meet their service targets on copper "
                       "and on full fibre?")


class _Console(Console):
    """A console that, once its reader has gone (``testbed list | head``), writes nowhere.

    The command then finishes with its own exit code (Rich's default exits 1, which here means "targets missed").
    """

    def on_broken_pipe(self) -> None:
        """Send the rest of the output to /dev/null and carry on."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())
        os.close(devnull)


out = _Console()
err = _Console(stderr=True)
SCENARIOS_DIR = DEFAULT_CATALOGUE.parent / "scenarios"


@contextmanager
def _exits(resume_hint: Callable[[Path], str] | None = None, resuming: bool = False):
    """Run a command's body and turn what ends it into the documented exit code; never a traceback on screen.

    A :class:`TestbedError` or an environment failure (a path that cannot be written, a full disk) is exit 2 with
    its message; Ctrl-C or SIGTERM exit 130, naming a kept partial folder and ``resume_hint(folder)`` (the
    command that finishes it); anything else is a bug: exit 3, its traceback written to a log file named here.
    An error while ``resuming`` does not repeat the folder the user gave.
    """
    error_hint = None if resuming else resume_hint  # for _kept_note: None says nothing of a folder already named
    previous = _on_sigterm(_interrupt)
    try:
        yield
    except (typer.Exit, click.exceptions.ClickException, click.exceptions.Abort):
        raise
    except KeyboardInterrupt as exc:
        _say(_interrupted_message(exc, resume_hint))
        raise typer.Exit(130) from None
    except SystemExit as exc:
        if exc.code not in SIGNAL_EXITS:
            raise
        _say(_interrupted_message(exc, resume_hint))  # an emulation turns SIGTERM/SIGHUP into SystemExit(128+n)
        raise typer.Exit(130) from None
    except TestbedError as exc:
        _say(f"[red]error:[/red] {_shown(str(exc))}{_kept_note(exc, error_hint)}")
        raise typer.Exit(2) from None
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise typer.Exit(_internal_error(exc, error_hint)) from None
        _say(f"[red]error:[/red] {_shown(_environment_message(exc))}{_kept_note(exc, error_hint)}")
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, reported as one
        raise typer.Exit(_internal_error(exc, error_hint)) from None
    finally:
        _on_sigterm(previous)


SIGNAL_EXITS = {128 + signal.SIGTERM, 128 + signal.SIGHUP}
ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                      errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE}


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop as Ctrl-C does (same cleanup, same exit code)."""
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM and return the one it replaces (None outside the main thread)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler) or signal.SIG_DFL


def _say(markup: str) -> None:
    err.print(markup, highlight=False, markup=True, soft_wrap=True)


def _shown(text: str) -> str:
    """Text for the terminal: hidden characters visible, cut if long, Rich markup escaped."""
    return escape(text_.shown(text))


def _interrupted_message(exc: BaseException, resume_hint: Callable[[Path], str] | None) -> str:
    kept = kept_folder(exc)
    if kept is None:
        return "interrupted; nothing was kept"
    hint = f"; finish it with: {_shown(resume_hint(kept))}" if resume_hint else ""
    return f"interrupted; the finished shards are kept in {_shown(str(kept))}{hint}"


def _kept_note(exc: BaseException, resume_hint: Callable[[Path], str] | None) -> str:
    kept = kept_folder(exc)
    if kept is None or resume_hint is None:
        return ""
    hint = f"; once fixed, finish it with: {_shown(resume_hint(kept))}" if resume_hint else ""
    return f"\nthe finished shards are kept in {_shown(str(kept))}{hint}"


def _environment_message(exc: OSError) -> str:
    """What went wrong with a path of the machine (``exc.filename``) and what to do."""
    path = exc.filename2 or exc.filename or "a file"  # a rename's destination is the path the user named
    fixes = {errno.ENOSPC: "free some space or choose another --out", errno.EDQUOT: "free some space or choose "
             "another --out", errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
             errno.EISDIR: "that is a folder: give a file name", errno.ENOENT: "check the path"}
    fix = fixes.get(exc.errno, "choose a path you can write to (e.g. another --out)")
    return f"{path}: {exc.strerror or exc}; {fix}"


def _internal_error(exc: BaseException, resume_hint: Callable[[Path], str] | None = None) -> int:
    """Report a bug: its traceback to a log file (named on screen), a one-line summary; return exit code 3."""
    log_path = _crash_log(exc)
    where = (f"the traceback is in {_shown(str(log_path))}; please report it with that file" if log_path else
             "no log file could be written for its traceback (the temp folder is not writable); please report it")
    _say(f"[red]internal error[/red] (a bug in the testbed): {_shown(type(exc).__name__ + ': ' + str(exc))}\n"
         f"{where}{_kept_note(exc, resume_hint)}")
    return 3


def _crash_log(exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback, the command line and the version to a new file in the temp folder."""
    lines = [f"testbed {sim.__version__}: {' '.join(sys.argv)}\n", *traceback.format_exception(exc)]
    try:
        handle, name = tempfile.mkstemp(prefix="testbed-crash-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8") as log_file:
            log_file.writelines(lines)
    except OSError:
        return None
    return Path(name)


@contextmanager
def _progress_bar(label: str, lines: bool = False):
    """A progress bar on stderr with elapsed time and an estimate of the time left; it only moves forward.

    Yields ``progress(done, total=1.0)``: a share of the work, or a count (shards, runs) out of ``total``. With
    ``lines``, when stderr is not a terminal (a CI log), a plain line every 10 s instead, also while a long job
    runs (:mod:`sim.progress`).
    """
    with Progress(TextColumn(label), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=1.0, count="")

        def show(done: float, total: float) -> None:
            count = f"{done:,.0f}/{total:,.0f}" if abs(total - 1.0) > 1e-9 else ""
            bar.update(task, completed=done / total if total else 1.0, count=count)

        write = (lambda line: err.print(line, highlight=False, soft_wrap=True)) if lines and not err.is_terminal \
            else None
        forward = Forward(show, label, write)

        def progress(done: float, total: float = 1.0) -> None:
            forward(done, total)

        if write:
            with heartbeat(forward):  # a line at least every 10 s, even while one long job runs
                yield progress
        else:
            yield progress


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
    with _exits(lambda kept: _resume_command(scenario, kept, seed, scheduler, workers), resuming=resume is not None):
        _require_engine(engine)
        _require_format(output)
        if year:  # refused before anything is run or written
            availability.require(load.load(scenario))
        verb = "simulating" if engine == "des" else "emulating (real time)"
        with _progress_bar(f"{verb} {scenario.name}") as progress:
            outcome = pipeline.run(scenario, seed=seed, out=out_dir, progress=progress, png=png, scheduler=scheduler,
                                   workers=workers, resume=resume, engine=engine, trace=trace)
        if year:  # its tables and figure join the folder before anything is printed
            _availability(outcome, outcome.folder, show=output != "json")
            report.render(outcome.folder, png=png)  # again, with the availability figure
        found = gate.judge(outcome.verdicts, outcome.scenario.known_failures)
        _print_answers(outcome, found, scenario, output, all_sites, timings)
        if output == "json":
            return
        if outcome.meta:
            m = outcome.meta
            start, end = (units.format_clock(m[k], with_seconds=True) for k in ("window_start_s", "window_end_s"))
            out.print(f"emulated {', '.join(m['sites'])} from {start} to {end} (+{m['drain_s']:.0f} s drain), "
                      f"delay by {m['delay_method']}, TCP {m['congestion_control']}", highlight=False, soft_wrap=True)
        if outcome.fidelity is not None:
            _print_fidelity(outcome.fidelity)
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
    with _exits():
        path = report.render(results.latest(run_dir), png=png)
        out.print(f"report: {path}", highlight=False, soft_wrap=True)


@app.command()
def compare(run_a: Path = typer.Argument(..., help="Run folder (or a scenario's results folder) A."),
            run_b: Path = typer.Argument(..., help="Run folder (or a scenario's results folder) B."),
            out_dir: Path = typer.Option(None, "--out", help="Where to write (default: results/compare/A-vs-B)."),
            png: bool = typer.Option(None, "--png/--no-png", help="PNG figure (default: when Chromium is found).")
            ) -> None:
    """Write a report comparing two runs: what changes, for which site class."""
    with _exits():
        a, b = results.latest(run_a), results.latest(run_b)
        target = out_dir or Path("results") / "compare" / f"{a.parent.name}-vs-{b.parent.name}"
        path = report.compare(a, b, target, png=png)
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
    with _exits():
        with _progress_bar(f"planning {scenario.name}", lines=True) as progress:
            found, folder = studies.plan(scenario, site_classes=site_class or None, target_share=target_share,
                                         seeds=seeds, out=out_dir, scheduler=scheduler, workers=workers,
                                         progress=progress, png=png)
        _print_plan(folder)
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
    with _exits():
        axes = sweep.parse_sets(sets)
        with _progress_bar(f"sweeping {scenario.name}") as progress:
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
    with _exits(lambda kept: _resume_command(scenario, kept, seed, None, None)):
        _require_format(output)
        previous = gate.read_baseline(baseline) if baseline else None
        if year:  # refused before anything is run or written
            availability.require(load.load(scenario, trace=trace))
        with _progress_bar(f"checking {scenario.name}") as progress:
            if out_dir:
                outcome = pipeline.run(scenario, seed=seed, out=out_dir, progress=progress, trace=trace)
            else:
                phases = pipeline.Phases()
                with phases("load"):
                    loaded = load.load(scenario, trace=trace)
                outcome = pipeline.simulate(loaded, seed, progress, phases)
        found = gate.judge(outcome.verdicts, outcome.scenario.known_failures, previous)
        facts = _facts(outcome, scenario)
        judged = None  # the availability verdicts, with --year or when the scenario asks for them
        if year or outcome.scenario.availability is not None:
            judged = _availability(outcome, outcome.folder, show=output != "json").classes
            found, judged = gate.judge_availability(found, judged, outcome.scenario.known_failures)
            if outcome.folder is not None:  # the tables and the report's figure join the folder
                report.render(outcome.folder)
        if junit:
            checks.write_text(junit, checks.junit_xml(found, facts, outcome.scenario.targets.passing.sites, judged))
        if json_path:
            checks.write_text(json_path, checks.summary_json(found, facts, judged))
        _print_answers(outcome, found, scenario, output, all_sites, timings, judged)
        missed = 0 if judged is None else len(gate.availability_misses(judged))
        if output != "json":
            out.print(answers.verdict_line(found, previous is not None), highlight=False, markup=False,
                      soft_wrap=True)
            for line in _availability_lines(judged, outcome.scenario.known_failures):
                out.print(line, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(0 if found.passed and not missed else 1)


def _availability_lines(judged, known: tuple) -> list[str]:
    """What the availability verdicts do to the check: each miss (or excused miss) in words, or why none is judged."""
    if judged is None:
        asked = [k for k in known if k.availability is not None]
        return [f"{len(asked)} availability known failures not judged: this check sampled no years of line faults "
                "(add --year, or the scenario's 'availability:' key)"] if asked else []
    missed = gate.availability_misses(judged)
    lines = [f"availability miss: {words}" for words in gate.availability_lines(missed)]
    for reason, excused in judged[~judged["passed"] & (judged["known"] != "")].groupby("known", sort=False):
        lines += [f"availability miss excused (known failure: {reason}): {words}"
                  for words in gate.availability_lines(excused)]
    if len(missed):
        lines.append(f"{len(missed)} availability verdicts missed their target: the check fails")
    return lines


@app.command()
def doctor() -> None:
    """Report what this machine can emulate (root, Mininet, shaping, delay method, tools); exit 0 if it can, else 2."""
    with _exits():
        from sim.emu import capabilities
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
    with _exits():
        from sim.emu import clean as cleaner
        for line in cleaner.clean(prefix, force=force).lines():
            out.print(line, highlight=False, markup=False)


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Scenario or catalogue files.")) -> None:
    """Check scenario or catalogue files and report the first problem in each."""
    failed = False
    with _exits():
        for file in files:
            try:
                out.print(f"{_shown(str(file))}: ok, {_shown(load.validate_file(file))}", highlight=False,
                          soft_wrap=True)
            except TestbedError as exc:
                _say(f"[red]error:[/red] {_shown(str(exc))}")
                failed = True
    if failed:
        raise typer.Exit(2)


@app.command("list")
def list_(what: str = typer.Argument("all", help="profiles, apps, site-classes, scenarios or all.")) -> None:
    """List the access profiles, the app registry, site classes and shipped scenarios."""
    with _exits():
        shows: dict[str, Callable[[], None]] = {"profiles": _list_profiles, "apps": _list_apps,
                                                "site-classes": _list_classes, "scenarios": _list_scenarios}
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


def _print_fidelity(table) -> None:
    rows = [[row.app, row.access_profile, row.metric, f"{row.des:.4g}", f"{row.emu:.4g}",
             f"{row.difference:+.3g}" + (f" ({row.relative:+.0%})" if row.relative == row.relative else "")]
            for row in table.itertuples(index=False)]
    _show(text_tables.Table("Simulator vs emulation on the same slice (fidelity.csv; difference = des - emu)",
                            ["app", "access", "metric", "des", "emu", "difference"], rows), None)


def _catalogue():
    return load.load(SCENARIOS_DIR / "ci-smoke.yaml").catalogue if (SCENARIOS_DIR / "ci-smoke.yaml").exists() \
        else load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue  # noqa: SLF001


def _list_profiles() -> None:
    table = Table(Column("profile", no_wrap=True), "technology", "medium", "down", "up", "RTT", "buffer up",
                  "buffer down", title="Access profiles (a buffer in time is at the line's rate that way)")
    from sim.units import format_rate
    for name, p in load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue.profiles.items():  # noqa: SLF001
        table.add_row(name, p.technology, p.medium, format_rate(p.down), format_rate(p.up), f"{p.rtt * 1e3:g} ms",
                      str(p.buffer_up), str(p.buffer_down))
    out.print(table)


def _list_apps() -> None:
    scenario = load._validate_catalogue_only(DEFAULT_CATALOGUE)  # noqa: SLF001
    from sim.units import format_rate, format_size
    table = Table("app", "kind", "on line", "rate or size", "target", "source", title="Apps (the registry)")
    targets = scenario.targets
    for name, a in scenario.catalogue.apps.items():
        if a.rate is not None:
            figure = f"{format_rate(a.rate.target)}" + (f" (min {format_rate(a.rate.minimum)})"
                                                        if a.rate.minimum < a.rate.target else "")
        else:
            centre = a.size.median or a.size.value or a.size.mean if a.size else None
            figure = f"median {format_size(centre)}" if centre else f"by {a.generator}"
        if name in targets.streams:
            target = f"delay p95 {targets.streams[name].delay_p95 * 1e3:g} ms"
        elif name in targets.transfers:
            target = f"within {targets.transfers[name]:g} s"
        else:
            target = "load only"
        table.add_row(name, a.kind, "yes" if a.on_line else "no", figure, target, a.source)
    out.print(table)
    for name, a in scenario.catalogue.apps.items():
        if not a.on_line:
            out.print(f"{name} does not cross a site's line: {a.path}")


def _list_classes() -> None:
    table = Table("site class", "family", "label", "consultations/day", title="Site classes")
    for name, c in load._validate_catalogue_only(DEFAULT_CATALOGUE).catalogue.site_classes.items():  # noqa: SLF001
        table.add_row(name, c.family, c.label, f"{c.consultations.per_day:g}" if c.consultations else "-")
    out.print(table)


def _list_scenarios() -> None:
    table = Table("scenario file", "sites", "description", title="Shipped scenarios")
    for path in sorted(SCENARIOS_DIR.glob("*.yaml")):
        scenario = load.load(path)
        table.add_row(str(path.relative_to(SCENARIOS_DIR.parent)), str(sum(g.count for g in scenario.sites)),
                      scenario.description)
    out.print(table)


def _print_plan(folder: Path) -> None:
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
    _show(text_tables.Table("Least capacity per site class (mean [95% CI]) and the cheapest product that is enough",
                            ["site class", "seeds", "down", "up", "cheapest product", "GBP/month"], rows, notes), None)
    _print_plan_sites(folder)
    _print_plan_backup(folder)


def _print_plan_backup(folder: Path) -> None:
    from sim.report import plan_backup
    table = plan_backup.read_backup(folder)
    if table is not None:
        _show(text_tables.Table("Primary + backup per site class, cheapest first, up to the cheapest meeting the "
                                "performance and availability targets", plan_backup.HEADER, plan_backup.rows(table)),
              None)


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
    _show(text_tables.Table("Per site, at its own line length: the cheapest product that is enough, and why",
                            ["site", "class", "line", "now", "cheapest product", "GBP/month", "reason"], rows), None)


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


def _availability(outcome: pipeline.Outcome, folder: Path | None, show: bool = True) -> availability.Availability:
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
        _show(text_tables.Table(f"{found.backup}: availability over {found.years} sampled years of line faults "
                                f"({found.working_h_per_year:,.0f} working hours a year; apps: testbed list apps)",
                                ["site class", "access", "down a year", "on backup a year",
                                 "failing on backup: share of its time [95% CI]",
                                 "worst app: a year without it [95% CI], usable, sessions lost a year a site",
                                 "worst years",
                                 "misses"], rows), None)
    return found


FORMATS = ("text", "markdown", "json")


def _require_format(output: str | None) -> None:
    if output is not None and output not in FORMATS:
        raise TestbedError(f"unknown --format {output!r}; choose text, markdown or json")


def _facts(outcome: pipeline.Outcome, scenario: Path) -> dict:
    """What identifies a run in CI output: scenario, its file, the results folder (if written), seed, timings."""
    return {"scenario": outcome.scenario.name, "scenario_file": str(scenario),
            "run_folder": str(outcome.folder) if outcome.folder else None, "seed": outcome.seed,
            "engine": outcome.engine, "sessions": outcome.sessions,
            "timings_s": {k: round(v, 4) for k, v in (outcome.timings_s or {}).items()}}


def _print_answers(outcome: pipeline.Outcome, found: gate.Gate, scenario: Path, output: str | None,
                   all_sites: bool, timings: bool, judged=None) -> None:
    """The class table, the failing sites worst first, known failures, regressions; or the JSON summary.

    ``judged``: the availability verdicts (:mod:`sim.availability`), when the scenario asks for them.
    """
    if output == "json":
        out.file.write(checks.summary_json(found, _facts(outcome, scenario), judged))
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
        _show(table, output)
    for note in answers.known_notes(found):
        out.print(note, highlight=False, markup=False, soft_wrap=True)


def _show(table: text_tables.Table, output: str | None) -> None:
    """A table as ``output`` asks; by default Rich on a terminal (full width, cells folded, never cut), else text."""
    if output == "markdown" or (output is None and not out.is_terminal) or output == "text":
        out.file.write((text_tables.markdown(table) if output == "markdown" else text_tables.text(table)) + "\n")
        out.file.flush()
        return
    grid = Table(title=visible(table.title))
    for column in table.columns:
        grid.add_column(column, overflow="fold")
    for row in table.rows:
        grid.add_row(*(Text(visible(str(cell))) for cell in row))
    out.print(grid)
    for note in table.notes:
        out.print(Text(visible(note)), soft_wrap=True)


def main() -> None:
    """Entry point for ``python -m sim``."""
    app(prog_name="testbed")


if __name__ == "__main__":
    sys.exit(main())
