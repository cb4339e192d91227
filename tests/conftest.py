"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scenarios_dir() -> Path:
    return ROOT / "scenarios"


@pytest.fixture
def topologies_dir() -> Path:
    return ROOT / "topologies"


# Tests that drive real packets in real time (the emulation's files, and single tests marked by hand): `make test`
# runs them on their own after the rest, which it runs on both cores, so no other test competes with their links.
EMULATION_FILES = ("test_emu_", "test_hardening_emu")


def pytest_collection_modifyitems(config, items):
    """Mark every test of an emulation file ``emulation`` (a new file named test_emu_*.py is covered by its name)."""
    for item in items:
        if item.path.name.startswith(EMULATION_FILES):
            item.add_marker(pytest.mark.emulation)
