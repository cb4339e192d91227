"""The ``testbed`` command's entry point: Ctrl-C or SIGTERM while its modules load ends it as it does later.

Loading the command takes about a second (pandas, plotly, Typer); an interrupt then would otherwise end it with a
traceback and exit 1, which reads as "targets missed".
"""

from __future__ import annotations

import signal
import sys

INTERRUPTED = 130


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Load the command and run it; an interrupt while loading exits 130 with one line, having written nothing."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        from sim import cli
    except KeyboardInterrupt:
        sys.stderr.write("testbed: interrupted while starting; nothing was written\n")
        sys.exit(INTERRUPTED)
    signal.signal(signal.SIGTERM, previous)
    cli.main()
