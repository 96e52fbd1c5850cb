"""Peak worker memory of the prediction stage at two grid sizes 4x apart (half the grid spacing),
same chunks: memory must follow the chunk size, not the grid size.

Models are trained once on the coarse world and used for both. Each grid runs on a fresh
LocalCluster with one single-threaded worker process; once the pipeline is imported there, the
kernel's peak-RSS mark is reset (Linux only) and that resident memory is the baseline; the peak is
the process's VmHWM after the run.
Prints one JSON line; the result is peak(fine) / peak(coarse) (target <= 1.2), with the growth
above the baseline alongside, and the most land cells one block holds on each grid (the same chunk
shape covers less ocean on the finer grid, and a block's rows grow with its land cells).

    python benchmarks/bench_memory.py                      # Europe at 0.2 and 0.1 deg
    python benchmarks/bench_memory.py --resolution 0.1     # 0.1 and 0.05 deg
    python benchmarks/bench_memory.py --bbox 50,48,90,62   # an inland domain: every block all land
    python benchmarks/bench_memory.py --tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from fluxmap.cluster import client_for
from fluxmap.config import ClusterConfig
from fluxmap.demo import build_world
from fluxmap.stages.predict import predict_stage
from fluxmap.testing import europe_demo_config, import_prediction_modules, tiny_trainable_config, trained_world


def _reset_peak() -> float:
    """In the worker: import the pipeline, reset the kernel's peak-RSS mark (Linux
    ``/proc/self/clear_refs`` = 5; a spawned process otherwise reports its parent's peak), and
    return the resident memory now, in MB."""
    import_prediction_modules()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _status_mb(field: str = "VmHWM") -> float:
    """A memory field of /proc/self/status in MB (VmHWM: peak resident memory since the reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1e3  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _max_land_cells_per_block(store: Path) -> int:
    """The most land cells (zone > 0) any one (lat, lon) chunk of the store's maps holds."""
    import xarray as xr

    ds = xr.open_zarr(store, consolidated=True)
    zone = ds["zone"].values > 0
    ny, nx = (ds["sr"].encoding["chunks"][ds["sr"].dims.index(d)] for d in ("lat", "lon"))
    return int(max(zone[i : i + ny, j : j + nx].sum() for i in range(0, zone.shape[0], ny)
                   for j in range(0, zone.shape[1], nx)))  # fmt: skip


def run(resolution: float | None = None, tiny: bool = False, workdir: str | None = None,
        bbox: tuple[float, float, float, float] | None = None) -> dict:  # fmt: skip
    def demo(res: float):
        extra = {"bbox": bbox} if bbox else {}
        return (
            tiny_trainable_config(resolution=res, space_chunk=16, **extra) if tiny else europe_demo_config(res, **extra)
        )

    coarse = resolution or (1.0 if tiny else 0.2)
    fine = coarse / 2
    result = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cfg, _ = trained_world(Path(tmp) / "coarse", demo(coarse), n_estimators=40 if tiny else 200)
        fine_world = build_world(Path(tmp) / "fine" / "world", demo(fine))
        fine_work = Path(tmp) / "fine" / "work"
        shutil.copytree(Path(cfg.workdir) / "models", fine_work / "models")
        fine_cfg = dataclasses.replace(
            cfg,
            workdir=str(fine_work),
            extract=dataclasses.replace(cfg.extract, catalog_params=(("DEMO_ROOT", str(fine_world.root)),)),
        )
        for res, c in ((coarse, cfg), (fine, fine_cfg)):
            with client_for(ClusterConfig(kind="local", n_workers=1, threads_per_worker=1)) as client:
                client.wait_for_workers(1, timeout=120)
                baseline = next(iter(client.run(_reset_peak).values()))
                written = predict_stage(c, log=lambda m: None)
                peak = next(iter(client.run(_status_mb).values()))
            result[res] = {
                "grid_cells": int(written["land_fraction"].size),
                "max_land_cells_per_block": _max_land_cells_per_block(written["store"]),
                "baseline_mb": round(baseline, 1),
                "peak_mb": round(peak, 1),
            }
    a, b = result[coarse], result[fine]
    land_ratio = b["max_land_cells_per_block"] / a["max_land_cells_per_block"]
    return {
        "benchmark": "worker_memory",
        "tiny": tiny,
        "chunk": [23, 16, 16] if tiny else [46, 128, 128],
        "bbox": list(bbox) if bbox else "default (tiny world, or Europe 10 W-40 E, 35-70 N)",
        "coarse": {"resolution": coarse, **a},
        "fine": {"resolution": fine, **b},
        "cells_ratio": round(b["grid_cells"] / a["grid_cells"], 2),
        "peak_ratio": round(b["peak_mb"] / a["peak_mb"], 3),
        "above_baseline_ratio": round((b["peak_mb"] - b["baseline_mb"]) / (a["peak_mb"] - a["baseline_mb"]), 3),
        # The same chunk shape holds more land on the finer grid (its blocks cover less ocean): a
        # block's rows, predictions and flags grow with its land cells, not with the grid.
        "max_land_cells_per_block_ratio": round(land_ratio, 3),
        # Growth above the baseline per land cell of the fullest block: 1.0 when a worker's memory
        # follows its block's land rows alone.
        "above_baseline_per_land_cell_ratio": round(
            (b["peak_mb"] - b["baseline_mb"]) / (a["peak_mb"] - a["baseline_mb"]) / land_ratio, 3
        ),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=float, help="coarse grid spacing (default 0.2, tiny 1.0); the fine one is half")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--bbox", help="west,south,east,north of the domain (default: Europe)")
    a = p.parse_args()
    bbox = tuple(float(v) for v in a.bbox.split(",")) if a.bbox else None
    print(json.dumps(run(a.resolution, tiny=a.tiny, bbox=bbox)))


if __name__ == "__main__":
    main()
