"""How a ``testbed`` command talks to the terminal and ends: the consoles, exit codes, signals, progress bars.

Part of :mod:`sim.cli`. Exit codes: 0 ok, 1 targets missed (``check``), 2 bad input or environment (a message naming
the path or field and what to do), 3 internal error (a bug: its traceback goes to a log file whose path is printed),
130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import errno
import os
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

import sim
from sim import text as text_
from sim.errors import TestbedError, kept_folder
from sim.progress import Forward, heartbeat


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


@contextmanager
def exits(resume_hint: Callable[[Path], str] | None = None, resuming: bool = False):
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
        say(_interrupted_message(exc, resume_hint))
        raise typer.Exit(130) from None
    except SystemExit as exc:
        if exc.code not in SIGNAL_EXITS:
            raise
        say(_interrupted_message(exc, resume_hint))  # an emulation turns SIGTERM/SIGHUP into SystemExit(128+n)
        raise typer.Exit(130) from None
    except TestbedError as exc:
        say(f"[red]error:[/red] {shown(str(exc))}{_kept_note(exc, error_hint)}")
        say_more_problems(exc)
        raise typer.Exit(2) from None
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise typer.Exit(internal_error(exc, error_hint)) from None
        say(f"[red]error:[/red] {shown(_environment_message(exc))}{_kept_note(exc, error_hint)}")
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, reported as one
        raise typer.Exit(internal_error(exc, error_hint)) from None
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


def say(markup: str) -> None:
    """Print Rich ``markup`` on stderr (a message, an error), wrapped by the terminal, never cut."""
    err.print(markup, highlight=False, markup=True, soft_wrap=True)


def say_more_problems(exc: BaseException) -> None:
    """The other problems a scenario's check found besides ``exc`` (its first), one located line each."""
    from sim.load_errors import more_problems
    for problem in more_problems(exc):
        say(f"[red]error:[/red] {shown(str(problem))}")


def shown(text: str) -> str:
    """Text for the terminal: hidden characters visible, cut if long, Rich markup escaped."""
    return escape(text_.shown(text))


def _interrupted_message(exc: BaseException, resume_hint: Callable[[Path], str] | None) -> str:
    kept = kept_folder(exc)
    if kept is None:
        return "interrupted; nothing was kept"
    hint = f"; finish it with: {shown(resume_hint(kept))}" if resume_hint else ""
    return f"interrupted; the finished shards are kept in {shown(str(kept))}{hint}"


def _kept_note(exc: BaseException, resume_hint: Callable[[Path], str] | None) -> str:
    kept = kept_folder(exc)
    if kept is None or resume_hint is None:
        return ""
    hint = f"; once fixed, finish it with: {shown(resume_hint(kept))}" if resume_hint else ""
    return f"\nthe finished shards are kept in {shown(str(kept))}{hint}"


def _environment_message(exc: OSError) -> str:
    """What went wrong with a path of the machine (``exc.filename``) and what to do."""
    path = exc.filename2 or exc.filename or "a file"  # a rename's destination is the path the user named
    fixes = {errno.ENOSPC: "free some space or choose another --out", errno.EDQUOT: "free some space or choose "
             "another --out", errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
             errno.EISDIR: "that is a folder: give a file name", errno.ENOENT: "check the path"}
    fix = fixes.get(exc.errno, "choose a path you can write to (e.g. another --out)")
    return f"{path}: {exc.strerror or exc}; {fix}"


def internal_error(exc: BaseException, resume_hint: Callable[[Path], str] | None = None) -> int:
    """Report a bug: its traceback to a log file (named on screen), a one-line summary; return exit code 3."""
    log_path = _crash_log(exc)
    where = (f"the traceback is in {shown(str(log_path))}; please report it with that file" if log_path else
             "no log file could be written for its traceback (the temp folder is not writable); please report it")
    say(f"[red]internal error[/red] (a bug in the testbed): {shown(type(exc).__name__ + ': ' + str(exc))}\n"
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
def progress_bar(label: str, lines: bool = False):
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
