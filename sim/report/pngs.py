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
    """Write each figure to its PNG path, in one browser session.

    Raises:
        CapabilityError: If no browser is installed or kaleido fails.
    """
    if not figures:
        return
    if browser() is None:
        raise CapabilityError("no Chromium for PNG export; install it (apt-get install chromium) or use --no-png")
    try:
        pio.write_images(figures, [str(p) for p in paths], format="png", width=WIDTH_PX, scale=SCALE,
                         height=heights(figures))
    except Exception as exc:  # kaleido raises many kinds; all mean the same to the user
        raise CapabilityError(f"PNG export failed: {exc}") from exc
