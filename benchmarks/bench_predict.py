"""Prediction throughput: the raw XGBoost kernel vs the whole predict stage, and XGBoost vs a
scikit-learn random forest of similar leave-one-site-out skill.

- kernel: ``inplace_predict`` on an in-memory block of the model's own features, one thread,
  in pixel-predictions per second per core;
- end to end: the predict stage (catalog -> decoded predictors -> derived features -> zones ->
  zone models -> CF Zarr), land cell-periods predicted per second per core, on a demo world;
- RF vs XGBoost: both fitted on the same training table, LOSO R2 of each and predict throughput.

Prints one JSON line. ``--tiny`` runs the same on a small world (as the test suite does).

    python benchmarks/bench_predict.py            # default: Europe at 0.5 deg, one year
    python benchmarks/bench_predict.py --tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from fluxmap.config import DemoConfig
from fluxmap.demo import build_world
from fluxmap.run import demo_sources, extract_stage, model_stage, predict_stage, sites_stage
from fluxmap.testing import small_run_config, tiny_demo_config
from fluxmap.train import fit, load_model
from fluxmap.validate import loso_predict, metrics


def _world(tiny: bool) -> DemoConfig:
    sites = (
        {"n_srdb_sites": 10, "n_cosore_sites": 12, "n_fluxnet_sites": 4}
        if tiny
        else {"n_srdb_sites": 20, "n_cosore_sites": 40, "n_fluxnet_sites": 10}
    )
    if tiny:
        return tiny_demo_config(space_chunk=64, **sites)
    return tiny_demo_config(
        resolution=0.5, bbox=(-10.0, 35.0, 40.0, 70.0), era5_resolution=0.25, space_chunk=64, **sites
    )


def run(tiny: bool = False, workdir: str | None = None) -> dict:
    cores = 1  # the stage runs on the threaded scheduler below; per-core figures divide by what it used
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        world = build_world(root / "world", _world(tiny))
        cfg = small_run_config(
            root / "work",
            world.root,
            targets=["sr:8day"],
            k_candidates=[2],
            min_sites=3,
            backward_elimination=False,
            bootstrap_members=0,
            params={"n_estimators": 200},
        )
        cfg = dataclasses.replace(cfg, predict=dataclasses.replace(cfg.predict, ensemble=False))
        log = []
        tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=log.append), log=log.append)
        model_stage(cfg, tables, log=log.append)
        import dask

        with dask.config.set(scheduler="threads", num_workers=1):
            cores = 1
            t0 = time.perf_counter()
            result = predict_stage(cfg, log=log.append)
            e2e_s = time.perf_counter() - t0
        ds = xr.open_zarr(result["store"], consolidated=True)
        predicted = int(np.isfinite(ds.sr.values).sum())

        # The raw kernel on the same model and features, one thread.
        model = load_model(Path(cfg.workdir) / "models" / "sr_8day" / "model_unified.ubj")
        model.estimator.get_booster().set_param({"nthread": 1})
        rng = np.random.default_rng(0)
        block = rng.normal(size=(max(predicted, 200_000), len(model.features))).astype("float32")
        model.predict(block[:1000])
        t0 = time.perf_counter()
        model.predict(block)
        kernel_rate = len(block) / (time.perf_counter() - t0)

        # RF vs XGBoost on the training table: skill (LOSO) and predict speed, one thread each.
        d = tables["training_8day"]
        d = d[d.variable == "sr"].dropna(subset=model.features).reset_index(drop=True)
        xgb_pred = loso_predict(d, features=model.features, kind="xgboost", params={"n_estimators": 200})
        rf_pred = loso_predict(d, features=model.features, kind="rf", params={"n_estimators": 200})
        rf = fit("rf", d, d.value, features=model.features, params={"n_estimators": 200}, n_jobs=1)
        x = block[:100_000]
        t0 = time.perf_counter()
        rf.predict(x)
        rf_rate = len(x) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.predict(x)
        xgb_rate = len(x) / (time.perf_counter() - t0)
    e2e_rate = predicted / e2e_s / cores
    return {
        "benchmark": "predict_throughput",
        "tiny": tiny,
        "grid": [int(ds.sizes["lat"]), int(ds.sizes["lon"])],
        "periods": int(ds.sizes["time"]),
        "pixel_predictions": predicted,
        "kernel_per_core_per_s": round(kernel_rate),
        "end_to_end_per_core_per_s": round(e2e_rate),
        "end_to_end_over_kernel": round(e2e_rate / kernel_rate, 4),
        "xgboost_loso_r2": round(metrics(d.value.values, xgb_pred.values)["r2"], 3),
        "rf_loso_r2": round(metrics(d.value.values, rf_pred.values)["r2"], 3),
        "xgboost_over_rf_predict_speed": round(xgb_rate / rf_rate, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    print(json.dumps(run(tiny=p.parse_args().tiny)))


if __name__ == "__main__":
    main()
