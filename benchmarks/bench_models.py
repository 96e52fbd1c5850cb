"""The models stage: what the skill-cost frontier chooses, and its strong scaling on a Dask cluster.

- frontier: ``fluxmap.stages.models.model_stage`` with ``model.choice: frontier`` (the default) on
  one target. Printed: every configuration's nested outer-fold R2 and predictions per second per
  core (``frontier.csv``), the configuration chosen for the final models, the nested R2 of the
  whole procedure (the choice made again inside every outer fold), and the chosen model's
  prediction rate against fluxmap's earlier default (XGBoost, 200 trees of depth 6), measured the
  same way on the same rows. ``--fluxnet DATA``: the real FLUXNET2015 monthly NEE of
  ``examples/fluxnet_nee.yaml``; otherwise the demo world's ``sr:8day``.
- scaling: the same models stage (zones, nested folds with the search, final models, ensemble
  members, zone map) on a LocalCluster of 1 and of N single-threaded worker processes, the
  stage's folds, searches and members being tasks on it, the zone map's chunks beside them. The
  run with N workers is pinned to N cores (client, scheduler and workers: with one worker, the
  client's fits and the worker's zone map chunks would otherwise use two). Workers are started
  before the clock; each count runs ``--repeats`` times in alternating order and its median is
  taken. Efficiency(N) = T(1) / (N T(N)).

Prints one JSON line per part.

    python benchmarks/bench_models.py                          # demo sr:8day, 1 and 2 workers
    python benchmarks/bench_models.py --fluxnet ../shared/data --skip-scaling
    python benchmarks/bench_models.py --workers 1,2,4,8        # on a bigger machine
    python benchmarks/bench_models.py --tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from fluxmap.science.frontier import Candidate, prediction_rates
from fluxmap.stages.models import model_stage

EARLIER_DEFAULT = Candidate("xgboost", (("n_estimators", 200),))
"""fluxmap's model before the frontier: XGBoost, 200 trees of depth 6 (``model.params`` over
:data:`fluxmap.science.train.DEFAULT_PARAMS`)."""


TINY_GRID = [
    {"kind": "rf", "params": {"n_estimators": 10, "max_depth": 6}},
    {"kind": "xgboost", "params": {"n_estimators": 50, "max_depth": 3}},
]
"""The ``--tiny`` runs' two configurations."""


def _demo_tables(root: Path, tiny: bool) -> tuple[Any, dict[str, pd.DataFrame]]:
    from fluxmap.demo import build_world, demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import europe_demo_config, small_run_config, tiny_trainable_config

    demo = tiny_trainable_config(space_chunk=16) if tiny else europe_demo_config(0.25)
    world = build_world(root / "world", demo)
    light: dict[str, Any] = {"bootstrap_members": 10}
    if tiny:  # the structure, at the least work: two configurations, no predictor elimination
        light = {"outer_folds": 3, "search_folds": 2, "bootstrap_members": 2, "backward_elimination": False,
                 "grid": TINY_GRID, "k_candidates": [2]}  # fmt: skip
    cfg = small_run_config(
        str(root / "work"), str(world.root), targets=["sr:8day"], min_sites=3, choice="frontier",
        **{"k_candidates": [2, 3], **light},
    )  # fmt: skip
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, params=()))
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=_quiet), log=_quiet)
    return cfg, tables


def _fluxnet_tables(root: Path, data: Path, tiny: bool) -> tuple[Any, dict[str, pd.DataFrame]]:
    from fluxmap.config import load_yaml, run_config_from_mapping, substitute
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.sites import sites_stage

    example = Path(__file__).resolve().parents[1] / "examples" / "fluxnet_nee.yaml"
    raw = substitute(load_yaml(example), {"SHARED_DATA": str(data)}, where=str(example))
    raw["workdir"] = str(root / "work")
    if tiny:
        tiny_grid = [
            {"kind": "rf", "params": {"n_estimators": 10, "max_depth": 6}},
            {"kind": "xgboost", "params": {"n_estimators": 50, "max_depth": 3}},
        ]
        raw["model"].update(
            {"outer_folds": 3, "bootstrap_members": 0, "inner_folds": 2, "search_folds": 2, "grid": tiny_grid}
        )
    cfg = run_config_from_mapping(raw, where=str(example))
    return cfg, extract_stage(cfg, sites_stage(cfg, cfg.sites.sources, log=_quiet), log=_quiet)


def _quiet(_: str) -> None:
    pass


def frontier(cfg: Any, tables: dict[str, pd.DataFrame], data: str) -> dict[str, Any]:
    """The models stage once (no cluster) and its frontier figures."""
    target = cfg.model.targets[0]
    t0 = time.perf_counter()
    summary = model_stage(cfg, tables, log=_quiet).set_index("target").loc[target]
    seconds = time.perf_counter() - t0
    folder = Path(cfg.workdir) / "models" / target.replace(":", "_")
    front = pd.read_csv(folder / "frontier.csv")
    chosen = front[front.chosen].iloc[0]
    features = json.loads((folder / "selected_predictors.json").read_text())["selected"]
    var, _, tab = target.partition(":")
    rows = tables["training_annual" if tab == "annual" else "training_8day"]
    rows = rows[rows.variable == var]
    grid = (
        Candidate(str(chosen.kind), tuple((k, int(chosen[k])) for k in ("max_depth", "n_estimators"))),
        EARLIER_DEFAULT,
    )
    rate_chosen, rate_default = prediction_rates(rows, features, grid, seed=cfg.model.seed)
    return {
        "benchmark": "model_frontier",
        "data": data,
        "target": target,
        "rows": int(summary.rows),
        "physical_sites": int(summary.physical_sites),
        "configurations": [
            {
                "label": r.label,
                "r2": round(r.r2, 4),
                "rows_per_s_per_core": round(r.rows_per_s_per_core),
                "chosen": bool(r.chosen),
            }
            for r in front.itertuples()
        ],
        "chosen": str(chosen.label),
        "models_chosen_in_folds": str(summary.models_chosen_in_folds),
        "nested_r2_unified": round(float(summary.r2_unified), 4),
        "nested_r2_zone": round(float(summary.r2_zone), 4),
        "r2_chosen_configuration": round(float(chosen.r2), 4),
        "r2_best_configuration": round(float(front.r2.max()), 4),
        "best_configuration": str(front.loc[front.r2.idxmax(), "label"]),
        "chosen_rows_per_s_per_core": round(float(rate_chosen)),
        "earlier_default_rows_per_s_per_core": round(float(rate_default)),
        "speedup_over_earlier_default": round(float(rate_chosen / rate_default), 2),
        "models_stage_s": round(seconds, 1),
        "machine": _machine(),
    }


def scaling(cfg: Any, tables: dict[str, pd.DataFrame], workers: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """The models stage on LocalClusters of each size in ``workers`` (one thread per worker)."""
    from distributed import Client, LocalCluster

    out = Path(cfg.workdir) / "models"
    cores = sorted(os.sched_getaffinity(0))
    if max(workers) > len(cores):
        raise SystemExit(f"--workers {max(workers)}: this process may use only {len(cores)} cores")
    samples: dict[int, list[float]] = {n: [] for n in workers}
    for r in range(repeats):
        for n in workers if r % 2 == 0 else workers[::-1]:
            shutil.rmtree(out, ignore_errors=True)
            # N workers get N cores, and so do the client and the scheduler: with one worker the
            # client's own fits and the worker's zone map chunks would otherwise use two.
            os.sched_setaffinity(0, cores[:n])
            try:
                with LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as lc, Client(lc) as c:
                    c.wait_for_workers(n)
                    c.run(_warm)
                    t0 = time.perf_counter()
                    model_stage(cfg, tables, log=_quiet)
                    samples[n].append(time.perf_counter() - t0)
            finally:
                os.sched_setaffinity(0, cores)
    times = {n: float(statistics.median(v)) for n, v in samples.items()}
    base = min(workers)
    return {
        "benchmark": "models_strong_scaling",
        "target": cfg.model.targets[0],
        "outer_folds": cfg.model.outer_folds,
        "bootstrap_members": cfg.model.bootstrap_members,
        "seconds": {str(n): round(t, 2) for n, t in times.items()},
        "samples_s": {str(n): [round(t, 2) for t in v] for n, v in samples.items()},
        "repeats": repeats,
        "speedup": {str(n): round(times[base] / t, 3) for n, t in times.items()},
        "efficiency": {str(n): round(times[base] * base / (t * n), 3) for n, t in times.items()},
        "machine": _machine(),
    }


def _warm() -> bool:
    """What the tasks import (a fold's models; a member's safe-format writer), imported before the
    clock starts, as on a cluster that has run a stage before."""
    import sklearn.ensemble  # noqa: F401
    import skops.io  # noqa: F401
    import xgboost  # noqa: F401

    import fluxmap.science.comparison  # noqa: F401

    return True


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def run(
    *, tiny: bool = False, fluxnet: str | None = None, workers: tuple[int, ...] = (1, 2), repeats: int | None = None,
    skip_scaling: bool = False, skip_frontier: bool = False, workdir: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The parts asked for, as JSON-ready dicts."""
    repeats = repeats or (1 if tiny else 3)
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        if fluxnet:
            cfg, tables = _fluxnet_tables(root, Path(fluxnet), tiny)
        else:
            cfg, tables = _demo_tables(root, tiny)
        if not skip_frontier:
            results.append(frontier(cfg, tables, "FLUXNET2015 monthly NEE" if fluxnet else "demo"))
        if not skip_scaling:
            results.append(scaling(cfg, tables, workers, repeats))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--fluxnet", metavar="DATA", help="the shared data folder: real FLUXNET2015 monthly NEE")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--repeats", type=int, help="rounds over the worker counts (default 3; tiny 1)")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--skip-frontier", action="store_true")
    a = p.parse_args()
    for r in run(
        tiny=a.tiny, fluxnet=a.fluxnet, workers=tuple(int(v) for v in a.workers.split(",")), repeats=a.repeats,
        skip_scaling=a.skip_scaling, skip_frontier=a.skip_frontier,
    ):  # fmt: skip
        print(json.dumps(r))


if __name__ == "__main__":
    main()
