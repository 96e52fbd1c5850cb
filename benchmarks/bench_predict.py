"""Prediction throughput: the raw XGBoost kernel vs the whole prediction stage, and XGBoost vs a
scikit-learn random forest at equal leave-one-site-out skill.

- kernel: ``inplace_predict`` of the stage's own zone models (one thread) on an in-memory matrix
  of the real predictors of the grid's land cells (first time chunk), each cell by its zone's
  model as the stage does, plus the area of applicability's dissimilarity index of the same
  cells (the other per-cell computation the stage does; each reported alone too):
  pixel-predictions per second per core;
- end to end: ``fluxmap.stages.predict.predict_stage`` (catalog -> decoded predictors -> derived
  features -> each cell's zone -> zone models -> CF Zarr, ERA5 8-day means included) on the
  threaded scheduler with one thread: land cell-periods predicted per second per core. The
  stage reads the zone map the models stage wrote; the seconds it takes to make that map
  afresh are reported too (``zone_map_s``) with the ratio they would give if counted;
- RF vs XGBoost: LOSO R2 and predict throughput (one thread, the same real rows) of both over a
  small grid of ensemble sizes, depths and learning rates; each family is represented by its
  fastest configuration reaching the best skill of the weaker family (minus 0.005).

Prints one JSON line. ``--tiny`` runs the same on a small world (as the test suite does).

    python benchmarks/bench_predict.py                   # Europe at 0.1 deg (350 x 500), one year
    python benchmarks/bench_predict.py --resolution 0.05 --skip-rf  # 4x the cells, throughput only
    python benchmarks/bench_predict.py --tiny
    python benchmarks/bench_predict.py --fluxnet ../shared/data  # the RF vs XGBoost sweep on real NEE
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
import pandas as pd
import xarray as xr

from fluxmap.io.models import ModelFiles
from fluxmap.science.predict import predictor_cube
from fluxmap.science.train import fit
from fluxmap.science.validate import loso_predict, metrics
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


def _predict_rate(model, x: np.ndarray, repeats: int = 5) -> float:
    """Rows per second of one model's predict, the best of ``repeats`` calls (one call on 200,000
    rows takes tens of milliseconds, where one-off timings vary by up to 2x)."""
    model.predict(x[:1000])
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(x)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def _configs(tiny: bool) -> dict[str, list[dict]]:
    if tiny:
        return {
            "xgboost": [{"n_estimators": 10, "learning_rate": 0.3, "max_depth": 4}],
            "rf": [{"n_estimators": 10, "max_depth": None}],
        }
    # Four depths per family, shallow to deep, so that neither family's fastest skilful
    # configuration is cut off by the grid (depths 4/6 vs 8/None left RF only its slow end).
    xgb = [
        {"n_estimators": n, "learning_rate": lr, "max_depth": depth}
        for depth in (2, 3, 4, 6)
        for n, lr in ((10, 0.3), (25, 0.3), (50, 0.3), (50, 0.1), (100, 0.1), (200, 0.05))
    ]
    rf = [{"n_estimators": n, "max_depth": depth} for depth in (4, 6, 8, None) for n in (10, 25, 50, 100)]
    return {"xgboost": xgb, "rf": rf}


def choose_at_equal_skill(rows: list[dict], *, margin: float = 0.005) -> tuple[float, dict[str, dict]]:
    """The skill bar (the weaker family's best LOSO R2 minus ``margin``) and, per family, its fastest
    configuration (``rate``) at or above the bar."""
    bar = min(max(r["loso_r2"] for r in rows if r["kind"] == k) for k in ("xgboost", "rf")) - margin
    best = {
        k: max((r for r in rows if r["kind"] == k and r["loso_r2"] >= bar), key=lambda r: r["rate"])
        for k in ("xgboost", "rf")
    }
    return bar, best


def _equal_skill(d, features: list[str], x: np.ndarray, tiny: bool, n_jobs: int = 1) -> dict:
    """Each family over a small grid of ensemble sizes, depths and learning rates: LOSO R2 and
    predict rate (one thread, the same real rows) of every configuration; the bar is the best
    R2 the weaker family reaches, minus 0.005; each family is represented by its fastest
    configuration at or above the bar. ``n_jobs`` parallelizes the LOSO folds only."""
    rows = []
    for kind, configs in _configs(tiny).items():
        for params in configs:
            pred = loso_predict(d, features=features, kind=kind, params=params, n_jobs=n_jobs)
            model = fit(kind, d, d.value, features=features, params=params, n_jobs=1)
            if kind == "xgboost":
                model.estimator.get_booster().set_param({"nthread": 1})
            r2 = metrics(d.value.values, pred.values)["r2"]
            rows.append({"kind": kind, **params, "loso_r2": round(r2, 3), "rate": _predict_rate(model, x)})
    bar, best = choose_at_equal_skill(rows)
    for r in rows:
        r["rate"] = round(r["rate"])
    return {
        "skill_bar_r2": round(bar, 3),
        "xgboost_chosen": best["xgboost"],
        "rf_chosen": best["rf"],
        "xgboost_over_rf_predict_speed": round(best["xgboost"]["rate"] / best["rf"]["rate"], 2),
        "sweep": rows,
    }


def equal_skill_on_fluxnet(data: Path, tiny: bool = False) -> dict:
    """The same XGBoost vs RF sweep on real, noisy data: FLUXNET2015 monthly NEE at 204 sites through
    the product's own sites and extract stages with ``examples/fluxnet_nee.yaml`` (grid climate of the
    period's month, the season, the MCD12C1 class; each month's mean on the 8-day periods it covers),
    towers within 5 km left out together; the rates are timed on those rows repeated to 200,000."""
    import yaml

    from fluxmap.config import run_config_from_mapping, substitute
    from fluxmap.science.comparison import candidate_predictors
    from fluxmap.science.validate import physical_sites
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.sites import sites_stage

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "fluxnet_nee.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        raw["workdir"] = tmp
        cfg = run_config_from_mapping(substitute(raw, {"SHARED_DATA": str(Path(data).resolve())}))
        quiet = lambda m: None  # noqa: E731
        tables = extract_stage(cfg, sites_stage(cfg, cfg.sites.sources, log=quiet), log=quiet)
    d = tables["training_8day"]
    d = d[d.variable == "nee"]
    features = candidate_predictors(d, cfg.model.predictors, annual=False)
    d = d.dropna(subset=features).reset_index(drop=True)
    locs = d[["lat", "lon"]].drop_duplicates().reset_index(drop=True)
    group = pd.Series(physical_sites(locs.lat, locs.lon, distance_km=5.0), index=pd.MultiIndex.from_frame(locs))
    d["site_id"] = group.reindex(pd.MultiIndex.from_frame(d[["lat", "lon"]])).to_numpy()
    if tiny:
        d = d[d.site_id.isin(sorted(d.site_id.unique())[:12])].reset_index(drop=True)
    x = np.resize(d[features].to_numpy("float32"), (200_000 if not tiny else 20_000, len(features)))
    return {
        "benchmark": "xgboost_vs_rf_equal_skill",
        "data": "FLUXNET2015 monthly NEE (examples/fluxnet_nee.yaml, sites and extract stages)",
        "rows": int(len(d)),
        "physical_sites": int(d.site_id.nunique()),
        **_equal_skill(d, features, x, tiny, n_jobs=2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def run(tiny: bool = False, workdir: str | None = None, resolution: float = 0.1, rf_sweep: bool = True) -> dict:
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

        d = tables["training_8day"]
        d = d[d.variable == "sr"].dropna(subset=models.unified.features).reset_index(drop=True)
        feats = models.unified.features
        x = np.stack([cols[f][:200_000] for f in feats], axis=1).astype("float32")
        versus_rf = _equal_skill(d, feats, x, tiny) if rf_sweep else {}
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
        **versus_rf,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--resolution", type=float, default=0.1, help="grid spacing in degrees (default 0.1)")
    p.add_argument("--skip-rf", action="store_true", help="throughput only, without the RF vs XGBoost sweep")
    p.add_argument(
        "--fluxnet",
        metavar="DATA",
        help="only the RF vs XGBoost sweep, on the real FLUXNET monthly NEE in DATA (../shared/data)",
    )
    a = p.parse_args()
    if a.fluxnet:
        print(json.dumps(equal_skill_on_fluxnet(Path(a.fluxnet), tiny=a.tiny)))
        return
    print(json.dumps(run(tiny=a.tiny, resolution=a.resolution, rf_sweep=not a.skip_rf)))


if __name__ == "__main__":
    main()
