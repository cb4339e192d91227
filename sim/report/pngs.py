"""PNG export of figures through kaleido, which drives the system's Chromium (nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from sim.errors import CapabilityError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
WIDTH_PX, SCALE, DEFAULT_HEIGHT_PX = 1100, 2, 500


def browser() -> str | None:
    """Path of a Chromium-family browser kaleido can use, or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def heights(figures: list[go.Figure]) -> list[int]:
    """Each figure's own layout height (px): kaleido would draw every figure 500 px tall, squeezing tall ones."""
    return [int(fig.layout.height or DEFAULT_HEIGHT_PX) for fig in figures]


def write(figures: list[go.Figure], paths: list[Path]) -> None:
    """Write each figure to its PNG path, in one browser session; those not written are tried once more.

    plotly hands kaleido's per-figure failures (a render past kaleido's 90 s timeout on a busy machine, say) back as
    a value it drops, so each file is checked: present, new and a PNG.

    Raises:
        CapabilityError: If no browser is installed, kaleido fails, or a figure is still not written after a retry.
    """
    if not figures:
        return
    if browser() is None:
        raise CapabilityError("no Chromium for PNG export; install it (apt-get install chromium) or use --no-png")
    for path in paths:
        Path(path).unlink(missing_ok=True)  # an old file must not pass for a new one
    missing = list(range(len(figures)))
    for _attempt in range(2):
        _export([figures[i] for i in missing], [paths[i] for i in missing])
        missing = [i for i in missing if not _is_png(Path(paths[i]))]
        if not missing:
            return
    raise CapabilityError("PNG export failed (kaleido wrote nothing, twice) for: "
                          + ", ".join(Path(paths[i]).name for i in missing))


def _export(figures: list[go.Figure], paths: list[Path]) -> None:
    try:
        pio.write_images(figures, [str(p) for p in paths], format="png", width=WIDTH_PX, scale=SCALE,
                         height=heights(figures))
    except Exception as exc:  # kaleido raises many kinds; all mean the same to the user
        raise CapabilityError(f"PNG export failed: {exc}") from exc


def _is_png(path: Path) -> bool:
    """True when ``path`` is a file that starts with the PNG signature."""
    try:
        with path.open("rb") as handle:
            return handle.read(8) == b"\x89PNG\r\n\x1a\n"
    except FileNotFoundError:
        return False
