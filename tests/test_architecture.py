"""Data flows one way: engines never import evaluation or reporting; reports never import an engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


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


# ---- every module of a package, and every import in it (those inside functions too) ---------------------------------

SIM = Path(__file__).resolve().parents[1] / "sim"


def _module_files() -> dict[str, Path]:
    """Every module of the ``sim`` package by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in SIM.rglob("*.py"):
        parts = path.relative_to(SIM.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The ``sim`` modules a file imports, anywhere in it (a function's import is an import), and their packages."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = {name for name in names if name in known}
    packages = {".".join(name.split(".")[:k]) for name in found for k in range(1, name.count(".") + 1)}
    return found | (packages & known.keys())


def _reached(start: str, known: dict[str, Path]) -> dict[str, str | None]:
    """Every module ``start`` reaches through imports, each with the module that first imported it."""
    parent: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        module = todo.pop()
        for name in sorted(_imports(known[module], known) - parent.keys()):
            parent[name] = module
            todo.append(name)
    return parent


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """``module <- importer <- ...`` for each module of ``package`` reaching a ``forbidden`` one."""
    known = _module_files()
    out = []
    for module in sorted(m for m in known if m == package or m.startswith(package + ".")):
        parent = _reached(module, known)
        for bad in sorted(m for m in parent if any(m == f or m.startswith(f + ".") for f in forbidden)):
            chain = [bad]
            while parent[chain[-1]] is not None:
                chain.append(parent[chain[-1]])
            out.append(" <- ".join(chain))
    return out


def test_no_report_module_imports_an_engine_even_inside_a_function():
    assert _violations("sim.report", ("sim.des", "sim.emu")) == []


def test_no_emulation_module_imports_targets_even_inside_a_function():
    assert _violations("sim.emu", ("sim.targets",)) == []


def test_the_import_scan_sees_an_import_inside_a_function():
    # sim.pipeline imports the emulation engine only inside _emulated, and sim.targets at its top: both count
    known = _module_files()
    assert {"sim.emu", "sim.emu.engine", "sim.targets"} <= _imports(known["sim.pipeline"], known)
    found = _violations("sim.pipeline", ("sim.emu.engine",))
    assert len(found) == 1 and found[0].startswith("sim.emu.engine <- ") and found[0].endswith(" <- sim.pipeline")
