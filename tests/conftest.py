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


@pytest.fixture(autouse=True)
def _sigint_left_as_found():
    """Fail a test that leaves SIGINT's handler or the main thread's signal mask otherwise than it found them.

    A command's interrupts depend on both (:mod:`sim.cluster`); a test that changes them for the tests after it in
    the same process makes those tests' results depend on their order.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler, mask = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    after_handler, after_mask = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert (after_handler, after_mask) == (handler, mask), (
        f"the test left SIGINT's handler {after_handler!r} (found {handler!r}) and the blocked signals "
        f"{sorted(after_mask)} (found {sorted(mask)})")
