"""Strong scaling of the prediction stage: the same grid predicted and written by 1 and by N
local worker processes (one thread each, a LocalCluster on loopback), models trained once.

Efficiency(N) = T(1) / (N * T(N)); 1.0 is perfect. Worker processes are started and have imported
the pipeline before the clock starts; everything else in ``predict_to_zarr`` (ERA5 8-day means,
zone map, prediction, Zarr write) is timed. Prints one JSON line.

    python benchmarks/bench_scaling.py                    # 1 and 2 workers, Europe at 0.1 deg
    python benchmarks/bench_scaling.py --workers 1,2,4,8  # on a bigger machine
    python benchmarks/bench_scaling.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from fluxmap.cluster import client_for
from fluxmap.config import ClusterConfig
from fluxmap.run import predict_to_zarr
from fluxmap.testing import europe_demo_config, import_prediction_modules, tiny_trainable_config, trained_world


def run(workers: tuple[int, ...] = (1, 2), tiny: bool = False, resolution: float = 0.1, workdir: str | None = None):
    demo = tiny_trainable_config(space_chunk=16) if tiny else europe_demo_config(resolution)
    times: dict[int, float] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cfg, _ = trained_world(tmp, demo, n_estimators=40 if tiny else 200)
        out = Path(cfg.workdir) / "predict"
        for n in workers:
            shutil.rmtree(out, ignore_errors=True)
            with client_for(ClusterConfig(kind="local", n_workers=n, threads_per_worker=1)) as client:
                client.wait_for_workers(n, timeout=120)
                client.run(import_prediction_modules)
                t0 = time.perf_counter()
                written = predict_to_zarr(cfg, log=lambda m: None)
                times[n] = time.perf_counter() - t0
    base = min(workers)
    return {
        "benchmark": "strong_scaling",
        "tiny": tiny,
        "grid_cells": int(written["land_fraction"].size),
        "land_cell_periods": written["cells"],
        "seconds": {str(n): round(t, 2) for n, t in times.items()},
        "speedup": {str(n): round(times[base] / t, 3) for n, t in times.items()},
        "efficiency": {str(n): round(times[base] * base / (t * n), 3) for n, t in times.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--resolution", type=float, default=0.1)
    p.add_argument("--tiny", action="store_true")
    a = p.parse_args()
    workers = tuple(int(v) for v in a.workers.split(","))
    print(json.dumps(run(workers, tiny=a.tiny, resolution=a.resolution)))


if __name__ == "__main__":
    main()
