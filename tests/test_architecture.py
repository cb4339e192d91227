"""Data flows one way: engines never import evaluation or reporting."""

from __future__ import annotations

import subprocess
import sys


def test_simulator_does_not_import_targets_or_cli():
    code = "import sys, sim.des; print(sorted(m for m in sys.modules if m.startswith('sim.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for forbidden in ("sim.targets", "sim.cli", "sim.report", "sim.pipeline", "sim.results"):
        assert f"'{forbidden}'" not in loaded
    assert "'sim.des'" in loaded
