"""The cost of a global 500 m year: core-seconds of the whole prediction stage per million land
cell-periods, at two model sizes, extrapolated to one year of global 500 m maps.

The same demo world and training table are modelled three times: with fluxmap's earlier default
model (XGBoost, 200 trees of depth 6; ``model.choice: fixed``), with the configuration the
skill-cost frontier chooses on this world (``model.choice: frontier``), and with the one it chooses
on the real FLUXNET2015 NEE (a random forest of 10 trees of depth 6). Both keep the configured outputs: the
zone models' map, the unified model's map and the bootstrap ensemble (``--members``, default 10,
as ``model.bootstrap_members``) with its spread, plus the area of applicability. The prediction
stage (``fluxmap.stages.predict.predict_stage``: catalog, decoding, ERA5 8-day means, zone map,
every model, CF Zarr) runs on Dask's threaded scheduler with one thread, so its wall time is its
core time.

Extrapolation (printed with the result): ``--land-cells`` land cells at 500 m (default 1.1e9, the
figure of issue 27; the land area, 1.49e8 km2, over a 463 m pixel's 0.2146 km2 gives 6.9e8, so the
default is on the safe side), 46 8-day periods a year, per target. Core-hours per
target and period = core-seconds per million cell-periods x land cells / 1e6 / 3600. It assumes
the per-cell cost of the benchmark grid holds at 500 m (same chunk shapes, the inputs read at
their native resolutions, no extra I/O wait on a parallel file system).

    python benchmarks/bench_cost.py                  # Europe at 0.1 deg (350 x 500), one year
    python benchmarks/bench_cost.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

LAND_CELLS_500M = 1.1e9
PERIODS_PER_YEAR = 46
GOAL_CORE_H_PER_TARGET_PERIOD = 0.5


def _quiet(_: str) -> None:
    pass


def run(*, tiny: bool = False, resolution: float = 0.1, members: int = 10, land_cells: float = LAND_CELLS_500M,
        workdir: str | None = None, sizes: tuple[str, ...] | None = None) -> dict[str, Any]:  # fmt: skip
    import dask

    from fluxmap.demo import build_world, demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.predict import predict_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import europe_demo_config, small_run_config, tiny_trainable_config

    demo = tiny_trainable_config(space_chunk=64) if tiny else europe_demo_config(resolution)
    every = {
        "earlier_default": {"choice": "fixed", "kind": "xgboost", "params": {"n_estimators": 200}},
        "frontier": {"choice": "frontier", "params": {}},
        # What the frontier chooses on the real, noisy FLUXNET NEE (bench_models.py --fluxnet); on the
        # smooth demo world it chooses a larger model.
        "frontier_on_real_nee": {"choice": "fixed", "kind": "rf", "params": {"n_estimators": 10, "max_depth": 6}},
    }
    if sizes is not None:
        unknown = sorted(set(sizes) - set(every))
        if unknown:
            raise SystemExit(f"unknown model size(s) {unknown}; known: {sorted(every)}")
    chosen = {k: v for k, v in every.items() if sizes is None or k in sizes}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        world = build_world(Path(tmp) / "world", demo)
        tables = None
        for name, model in chosen.items():
            cfg = small_run_config(
                str(Path(tmp) / name), str(world.root), targets=["sr:8day"], k_candidates=[2], min_sites=3,
                backward_elimination=False, bootstrap_members=members, outer_folds=3, **model,
            )  # fmt: skip
            if tables is None:
                tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=_quiet), log=_quiet)
            summary = model_stage(cfg, tables, log=_quiet).set_index("target").loc["sr:8day"]
            with dask.config.set(scheduler="threads", num_workers=1):
                t0 = time.perf_counter()
                written = predict_stage(cfg, log=_quiet)
                seconds = time.perf_counter() - t0
            per_m = seconds / (written["cells"] / 1e6)
            per_period_h = per_m * land_cells / 1e6 / 3600
            out[name] = {
                "model": str(summary.model),
                "nested_r2_unified": round(float(summary.r2_unified), 4),
                "outputs": f"zone map, unified map, ensemble of {members} members (mean, SD, 5-95 %), area of applicability",
                "land_cell_periods": int(written["cells"]),
                "core_s": round(seconds, 2),
                "core_s_per_million_cell_periods": round(per_m, 3),
                "core_h_per_target_period_global_500m": round(per_period_h, 3),
                "core_h_per_target_year_global_500m": round(per_period_h * PERIODS_PER_YEAR, 1),
                "goal_met": per_period_h < GOAL_CORE_H_PER_TARGET_PERIOD,
            }
    return {
        "benchmark": "global_500m_year_cost",
        "tiny": tiny,
        "grid": "tiny demo" if tiny else f"Europe at {resolution} deg",
        "assumptions": {
            "land_cells_500m": land_cells,
            "periods_per_year": PERIODS_PER_YEAR,
            "per_target": True,
            "scheduler": "threads, one thread (wall time = core time)",
            "goal_core_h_per_target_period": GOAL_CORE_H_PER_TARGET_PERIOD,
        },
        **out,
        **(
            {
                "earlier_over_frontier_cost": round(
                    out["earlier_default"]["core_s_per_million_cell_periods"]
                    / out["frontier"]["core_s_per_million_cell_periods"],
                    2,
                )
            }
            if {"earlier_default", "frontier"} <= set(out)
            else {}
        ),  # fmt: skip
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--resolution", type=float, default=0.1, help="grid spacing in degrees (default 0.1)")
    p.add_argument("--members", type=int, default=10, help="bootstrap ensemble members (default 10)")
    p.add_argument("--land-cells", type=float, default=LAND_CELLS_500M, help="land cells of the target grid")
    p.add_argument("--sizes", help="comma-separated model sizes to run (default all: earlier_default,frontier,"
                   "frontier_on_real_nee)")  # fmt: skip
    a = p.parse_args()
    sizes = tuple(a.sizes.split(",")) if a.sizes else None
    print(json.dumps(run(tiny=a.tiny, resolution=a.resolution, members=a.members, land_cells=a.land_cells,
                         sizes=sizes)))  # fmt: skip


if __name__ == "__main__":
    main()
