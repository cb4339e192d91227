"""Studies of many runs, one way through: a capacity plan or a sweep -> its folder with tables and a page.

Like a run's folder, a study's folder appears under ``results/<scenario>/`` only when all of it is written.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from sim import des, plan_backup, plan_tables, report, results, scale
from sim import plan as planner
from sim import sweep as sweeper
from sim.load import load
from sim.model.scenario import Scenario


def plan(path: Path | str, *, site_classes: list[str] | None = None, target_share: float = 0.95,
         seeds: int | None = None,
         out: Path | str = "results", scheduler: str | None = None, workers: int | None = None,
         progress: scale.Progress | None = None, png: bool | None = None) -> tuple[planner.Plan, Path]:
    """Plan each site class's capacity (see :mod:`sim.plan`) and write ``<stamp>-plan-s<seed>/`` with its page.

    The folder holds ``plan.csv`` (per class), ``plan_sites.csv`` (per site group: one per site for an
    inventory), ``products.csv`` (every product run), ``curve.csv`` (every capacity tried), ``plan.html`` and
    ``meta.json``; it appears only when all are written.
    """
    scenario = load(path)
    started = time.perf_counter()
    with results.run_folder(Path(out), scenario.name, "plan", scenario.seed) as folder:
        with scale.cluster(scheduler, workers) as client:
            found = planner.plan(scenario, site_classes=site_classes, target_share=target_share, seeds=seeds,
                                 client=client, progress=progress)
        tables = {"plan.csv": plan_tables.summary(found, scenario),
                  "plan_sites.csv": plan_tables.site_table(found, scenario),
                  "products.csv": plan_tables.product_table(found), "curve.csv": found.curve}
        if scenario.availability is not None:  # weigh a backup against each primary (sim.plan_backup)
            tables["plan_backup.csv"] = plan_backup.weigh(scenario, found)
        extra = {"kind": "plan", "target_share": target_share, "seeds": list(found.seeds), "png": png,
                 "seed_rule": found.seed_rule,
                 "site_classes": list(dict.fromkeys(n.site_class for n in found.needs))}
        _write_study(folder.partial, Path(path), scenario, tables, extra, time.perf_counter() - started)
        report.render_plan(folder.partial)
    return found, folder.final


def sweep(path: Path | str, axes: dict[str, list[str]], *, seeds: int = 1, out: Path | str = "results",
          scheduler: str | None = None, workers: int | None = None, progress: scale.Progress | None = None,
          png: bool | None = None) -> tuple[sweeper.Sweep, Path]:
    """Run a sweep (see :mod:`sim.sweep`) and write ``<stamp>-sweep-s<seed>/``: ``sweep.csv``, ``sweep.html``."""
    scenario = load(path)
    sweeper.variants(path, axes)  # every point validated before a cluster starts or a folder appears
    started = time.perf_counter()
    with results.run_folder(Path(out), scenario.name, "sweep", scenario.seed) as folder:
        with scale.cluster(scheduler, workers) as client:
            done = sweeper.sweep(path, axes, seeds=seeds, client=client, progress=progress)
        extra = {"kind": "sweep", "keys": list(axes), "grid": axes, "axes": [a.as_dict() for a in done.axes],
                 "seeds": list(done.seeds),
                 "site_bar": done.site_bar, "png": png}
        _write_study(folder.partial, Path(path), scenario, {"sweep.csv": done.table}, extra,
                     time.perf_counter() - started)
        report.render_sweep(folder.partial)
    return done, folder.final


def _write_study(folder: Path, scenario_file: Path, scenario: Scenario, tables: dict[str, pd.DataFrame],
                 extra: dict, wall_s: float) -> None:
    """Write a study's tables and scenario, then its meta.json (the mark of a finished folder)."""
    (folder / "scenario.yaml").write_text(scenario_file.read_text(encoding="utf-8"))
    for name, table in tables.items():
        table.to_csv(folder / name, index=False)
    labels = {name: app.label for name, app in scenario.catalogue.apps.items()}
    meta = results.meta(scenario=scenario.name, scenario_file=str(scenario_file), engine=des.ENGINE,
                        seed=scenario.seed, sessions=0, events=0, wall_s=wall_s, extra={**extra, "app_labels": labels})
    results.write_meta(folder, meta)
