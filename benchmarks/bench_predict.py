"""Prediction throughput: the raw XGBoost kernel vs the whole prediction stage. (The XGBoost vs
random forest comparison at equal skill that was here is retired: ``bench_models.py`` reports the
skill-cost frontier of every configuration instead.)

- kernel: ``inplace_predict`` of the stage's own zone models (one thread) on an in-memory matrix
  of the real predictors of the grid's land cells (first time chunk), each cell by its zone's
  model as the stage does, plus the area of applicability's dissimilarity index of the same
  cells (the other per-cell computation the stage does; each reported alone too):
  pixel-predictions per second per core;
- end to end: ``fluxmap.stages.predict.predict_stage`` (catalog -> decoded predictors -> derived
  features -> each cell's zone -> zone models -> CF Zarr, ERA5 8-day means included) on the
  threaded scheduler with one thread: land cell-periods predicted per second per core. The
  stage reads the zone map the models stage wrote; the seconds it takes to make that map
  afresh are reported too (``zone_map_s``) with the ratio they would give if counted.

Prints one JSON line. ``--tiny`` runs the same on a small world (as the test suite does).

    python benchmarks/bench_predict.py                   # Europe at 0.1 deg (350 x 500), one year
    python benchmarks/bench_predict.py --resolution 0.05   # 4x the cells
    python benchmarks/bench_predict.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from fluxmap.io.models import ModelFiles
from fluxmap.science.predict import predictor_cube
from fluxmap.stages.common import catalog_location
from fluxmap.stages.predict import predict_stage
from fluxmap.testing import europe_demo_config, tiny_trainable_config, trained_world


def _land_rows(cfg, out: Path, zone_map: Path, time_chunk: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The real predictors of every land cell in the first time chunk, in memory, and their zones."""
    from fluxmap.io.catalog import load_catalog

    path, params = catalog_location(cfg)
    cat = load_catalog(path, **params)
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    cubes["era5"] = xr.open_zarr(out / "era5_8day.zarr", consolidated=True)
    pc = predictor_cube(cubes).isel(time=slice(0, time_chunk))
    zone = xr.open_zarr(zone_map, consolidated=True)["zone"].values
    shape = (pc.sizes["time"], pc.sizes["lat"], pc.sizes["lon"])
    land = np.broadcast_to(zone[None] > 0, shape)
    cols = {}
    for name, v in pc.compute().data_vars.items():
        a = v.transpose(*[d for d in ("time", "lat", "lon") if d in v.dims]).values
        a = a if a.ndim == 3 else (a[None] if a.ndim == 2 else a[:, None, None])
        cols[name] = np.broadcast_to(a, shape)[land]
    return cols, np.broadcast_to(zone[None], shape)[land]


def _kernel_rate(ms, cols: dict[str, np.ndarray], zones: np.ndarray) -> tuple[float, float | None]:
    """Rows per second of the models alone, and of the area of applicability's dissimilarity index
    alone (None without one): the per-cell science the stage does, matrices built beforehand,
    outside the clock."""
    jobs = []
    for z in np.unique(zones):
        model = ms.zone_models.get(int(z), ms.unified)
        sel = zones == z
        jobs.append((model, np.stack([cols[f][sel] for f in model.features], axis=1).astype("float32")))
    for model, x in jobs:
        model.predict(x[:1000])  # warm
    t0 = time.perf_counter()
    for model, x in jobs:
        model.predict(x)
    models_rate = len(zones) / (time.perf_counter() - t0)
    if ms.applicability is None:
        return models_rate, None
    aoa = ms.applicability
    x = np.stack([cols[f] for f in aoa.features], axis=1).astype("float32")
    aoa.dissimilarity(x[:1000])  # builds the tree, as the stage's first block does
    t0 = time.perf_counter()
    aoa.dissimilarity(x)
    return models_rate, len(zones) / (time.perf_counter() - t0)


def run(tiny: bool = False, workdir: str | None = None, resolution: float = 0.1) -> dict:
    import dask

    from fluxmap.io.catalog import load_catalog
    from fluxmap.stages.common import zone_map_store

    demo = tiny_trainable_config(space_chunk=64) if tiny else europe_demo_config(resolution)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cfg, tables = trained_world(tmp, demo)
        # One thread for everything: the models are loaded single-threaded by the stage, so the
        # per-core figure is the stage's throughput on one core.
        with dask.config.set(scheduler="threads", num_workers=1):
            t0 = time.perf_counter()
            written = predict_stage(cfg, log=lambda m: None)
            e2e_s = time.perf_counter() - t0
        out = Path(cfg.workdir) / "predict"
        ds = xr.open_zarr(written["store"], consolidated=True)
        predicted = int(np.isfinite(ds.sr.values).sum())
        models = ModelFiles.of("sr", Path(cfg.workdir) / "models" / "sr_8day", ensemble=False).load()
        with dask.config.set(scheduler="threads"):
            cols, zones = _land_rows(cfg, out, written["zone_map"], ds["sr"].chunksizes["time"][0])
        models_rate, di_rate = _kernel_rate(models, cols, zones)
        # The stage's per-cell science: the models and, where fitted, the dissimilarity index.
        kernel_rate = 1.0 / (1.0 / models_rate + (1.0 / di_rate if di_rate else 0.0))
        # The stage reads the zone map the models stage made; made afresh it would cost this.
        path, params = catalog_location(cfg)
        cat = load_catalog(path, **params)
        with dask.config.set(scheduler="threads", num_workers=1):
            t0 = time.perf_counter()
            fresh = Path(tmp) / "zone-map-timing"
            fresh.mkdir()
            cubes = {e: cat.open(e) for e in ("era5", "mod09a1", "static")}
            zone_map_store(cfg, cubes, Path(cfg.workdir) / "models", fresh, reuse=False)
            zone_map_s = time.perf_counter() - t0

    e2e_rate = written["cells"] / e2e_s
    return {
        "benchmark": "predict_throughput",
        "tiny": tiny,
        "grid": [int(ds.sizes["lat"]), int(ds.sizes["lon"])],
        "chunks": [int(ds["sr"].chunksizes[d][0]) for d in ("time", "lat", "lon")],
        "periods": int(ds.sizes["time"]),
        "pixel_predictions": predicted,
        "kernel_rows": int(len(zones)),
        "kernel_per_core_per_s": round(kernel_rate),
        "kernel_models_only_per_core_per_s": round(models_rate),
        "kernel_di_only_per_core_per_s": round(di_rate) if di_rate else None,
        "end_to_end_s": round(e2e_s, 2),
        "end_to_end_per_core_per_s": round(e2e_rate),
        "end_to_end_over_kernel": round(e2e_rate / kernel_rate, 3),
        "zone_map_s": round(zone_map_s, 2),
        "end_to_end_with_zone_map_over_kernel": round(written["cells"] / (e2e_s + zone_map_s) / kernel_rate, 3),
        "phases_s": {k: round(v, 2) for k, v in written["seconds"].items()},
        "predict_and_write_over_kernel": round(
            written["cells"] / written["seconds"]["predict_and_write"] / kernel_rate, 3
        ),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--resolution", type=float, default=0.1, help="grid spacing in degrees (default 0.1)")
    a = p.parse_args()
    print(json.dumps(run(tiny=a.tiny, resolution=a.resolution)))


if __name__ == "__main__":
    main()
