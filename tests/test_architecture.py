"""Data flows one way: engines never import evaluation or reporting."""

from __future__ import annotations

import ast
import subprocess
import sys


def test_simulator_does_not_import_targets_or_cli():
    code = "import sys, sim.des; print(sorted(m for m in sys.modules if m.startswith('sim.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for forbidden in ("sim.targets", "sim.cli", "sim.report", "sim.pipeline", "sim.results"):
        assert f"'{forbidden}'" not in loaded
    assert "'sim.des'" in loaded


def _loaded_by(module: str) -> str:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('sim.')))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_emulation_does_not_import_evaluation_or_reporting():
    loaded = _loaded_by("sim.emu.engine")
    for forbidden in ("sim.targets", "sim.quality", "sim.cli", "sim.report", "sim.pipeline", "sim.results"):
        assert f"'{forbidden}'" not in loaded
    assert "'sim.emu.engine'" in loaded


def test_reports_do_not_import_an_engine():
    loaded = _loaded_by("sim.report")
    for forbidden in ("sim.des", "sim.emu", "sim.workload", "sim.cli", "sim.pipeline"):
        assert not any(m == forbidden or m.startswith(forbidden + ".") for m in ast.literal_eval(loaded)), forbidden
    assert "'sim.report.figures'" in loaded or "'sim.report'" in loaded


def test_quality_scores_are_a_step_after_the_records():
    loaded = _loaded_by("sim.quality")
    assert ast.literal_eval(loaded) == ["sim.quality"]  # numpy and pandas only: no engine, no evaluation
