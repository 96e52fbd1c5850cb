"""Stage 4, predict: the predictors rebuilt lazily on the grid, each cell's zone, the models
applied block by block, written region by region into the CF Zarr store (resumable), and the
blocks where predictors were missing reported (``predict/fluxmap.zarr``, ``suspect_blocks.csv``)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from fluxmap._version import __version__
from fluxmap.config import RunConfig
from fluxmap.io.models import MODEL_SUFFIXES, ModelFiles, load_zones_without_model
from fluxmap.io.progress import Progress
from fluxmap.io.provenance import cache_key, data_fingerprint, git_revision, sha256, versions, write_table
from fluxmap.io.store import (
    block_counts,
    block_index,
    cf_dataset,
    create_store,
    done_regions,
    fill_regions,
    land_regions,
    period_mean_stores,
    region_slices,
)
from fluxmap.science.predict import predict_cube, predictor_cube
from fluxmap.stages.common import (
    Log,
    catalog_inputs,
    modelled_targets,
    named_damage,
    open_catalog,
    store_is_current,
    zone_map_store,
)

__all__ = ["MODIS_GRID_ENTRIES", "predict_stage"]

MODIS_GRID_ENTRIES = ("mod11a2", "mod09a1", "era5", "static")
"""The entries the 8-day maps are built from: the MODIS-like grid, the zone factors and the land."""


def _store_attrs(
    cfg: RunConfig, key: str, model_files: dict[str, str], inputs: dict[str, str], targets: list[str]
) -> dict[str, str]:
    models_dir = Path(cfg.workdir) / "models"
    # Per target, the zones without a model of their own and what maps them (the models stage's note).
    notes = {t: load_zones_without_model(models_dir / t.replace(":", "_")) for t in targets}
    return {
        "title": "fluxmap gridded carbon fluxes",
        "source": "fluxmap " + __version__,
        "history": f"fluxmap {__version__} predict",
        "fluxmap_run_key": key,
        "fluxmap_config": json.dumps(dataclasses.asdict(cfg), default=str, sort_keys=True),
        "fluxmap_versions": json.dumps(versions(), sort_keys=True),
        "fluxmap_model_sha256": json.dumps(model_files, sort_keys=True),
        "fluxmap_input_sha256": json.dumps(inputs, sort_keys=True),
        "fluxmap_git_revision": git_revision(),
        "fluxmap_zones_without_model": json.dumps({t: n for t, n in notes.items() if n}, sort_keys=True),
    }


def predict_stage(cfg: RunConfig, *, log: Log = print) -> dict[str, Any]:
    """The prediction itself: catalog -> predictors -> zones -> models -> the CF Zarr store (resumable).

    Returns the store path, the targets written, the land fraction, ``cells``: the land
    cell-periods of the grid, each predicted once per target, and ``seconds`` of the two phases
    (ERA5 8-day means + the zone map when the models stage's cannot be used; prediction + write),
    and ``zone_map``, the zone store used. An empty dict when there are no 8-day models.
    """
    models_dir, out = Path(cfg.workdir) / "models", Path(cfg.workdir) / "predict"
    out.mkdir(parents=True, exist_ok=True)
    targets = modelled_targets(cfg, models_dir, "8day")
    if not targets:
        log(f"predict: skipped, no 8-day models in {models_dir} (targets {list(cfg.model.targets)})")
        return {}
    lacking = sorted(set(MODIS_GRID_ENTRIES) - set(cfg.extract.entries))
    if lacking:
        log(f"predict: 8-day maps skipped: they are made on the MODIS-like grid and need the entries {lacking} "
            f"(extract.entries: {list(cfg.extract.entries)}); the 8-day models and their validation are in {models_dir}")  # fmt: skip
        return {}
    cat = open_catalog(cfg)
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    inputs = catalog_inputs(cfg, cfg.extract.entries)
    t0 = time.perf_counter()
    zone_store, zone_reused = zone_map_store(cfg, cubes, models_dir, out)
    reuse = period_mean_stores(cubes, out, inputs)
    predictors = predictor_cube(cubes)
    land_fraction = cubes["static"]["land_fraction"]  # lazy: a 500 m global grid is never loaded whole
    chunks = {d: predictors.chunksizes[d][0] for d in ("time", "lat", "lon")}
    land_cells = block_counts(land_fraction > 0.5, chunks)  # per (lat, lon) block
    zone = xr.open_zarr(zone_store, consolidated=True)["zone"]
    prepare_s = time.perf_counter() - t0
    log(
        f"predict: 8-day sub-period sources {'reused (same inputs)' if reuse else 'ready'}; zone map "
        f"{'reused (same inputs and zones)' if zone_reused else 'ready'} ({zone_store}); {prepare_s:.1f} s"
    )
    refs = [
        ModelFiles.of(t.split(":")[0], models_dir / t.replace(":", "_"), ensemble=cfg.predict.ensemble,
                      unified_map=cfg.predict.unified)
        for t in targets
    ]  # fmt: skip
    pred = xr.merge([predict_cube(predictors, zone, ref) for ref in refs], combine_attrs="drop")
    files = [p for s in (*MODEL_SUFFIXES, ".json", ".npz") for p in models_dir.rglob(f"*{s}") if p.parent != models_dir]
    model_files = {str(p.relative_to(models_dir)): sha256(p) for p in sorted(files)}
    # Everything that changes the store's values: every model file and its metadata, the predictors'
    # data (fingerprints of the files) and the zone map's own files.
    key = cache_key(
        {"predict": dataclasses.asdict(cfg.predict), "targets": targets},
        {"models": model_files, **inputs, "zone_map": data_fingerprint(zone_store)},
    )
    ds = cf_dataset(pred, zone=zone, attrs=_store_attrs(cfg, key, model_files, inputs, targets))
    store = out / "fluxmap.zarr"
    if not store_is_current(store, key):
        create_store(store, ds, zarr_format=cfg.predict.zarr_format, chunks=chunks)
    all_regions = region_slices({str(d): n for d, n in ds.sizes.items()}, chunks)

    # Largest amount of work (land cell-periods) first: the last regions to finish are the small
    # ones, so workers are not left idle behind one big region at the end (LPT scheduling).
    def work(r: dict[str, slice]) -> int:
        return int(land_cells[block_index(r, chunks)]) * (r["time"].stop - r["time"].start)

    regions = sorted(land_regions(all_regions, land_cells, chunks), key=lambda r: -work(r))
    before = len(done_regions(store))
    t0 = time.perf_counter()
    try:
        with Progress(len(regions), "predict + write regions", log) as bar:
            n = fill_regions(
                store, ds, regions, batch=cfg.predict.regions_per_batch, progress=lambda done, _: bar(done)
            )
    except Exception as e:  # a damaged input chunk: say which one
        raise named_damage(cat, cfg.extract.entries, e) from e
    write_s = time.perf_counter() - t0
    log(
        f"predict: {n} regions written ({before} already done, {len(all_regions) - len(regions)} without land "
        f"skipped) in {write_s:.1f} s -> {store}"
    )
    absent = [p for p in cat.chunk_problems("static", decode=False, variables=["land_fraction"])]
    _suspect_blocks(store, regions, targets, land_fraction > 0.5, land_cells, chunks, out, absent_land=absent, log=log)
    return {
        "store": store,
        "zone_map": zone_store,
        "targets": targets,
        "land_fraction": land_fraction,
        "cells": sum(work(r) for r in regions),
        "seconds": {"prepare": prepare_s, "predict_and_write": write_s},
    }


def _suspect_blocks(
    store: Path,
    regions: list[dict[str, slice]],
    targets: list[str],
    land: xr.DataArray,
    land_cells: Any,
    chunks: dict[str, int],
    out: Path,
    *,
    threshold: float = 0.9,
    absent_land: list[dict] | None = None,
    log: Log = print,
) -> pd.DataFrame:
    """Blocks where predictors were missing over most land cells: a corrupt or empty input chunk
    (fill values everywhere, a NaN storm) shows up here with its position, instead of silently
    lowering the map's quality. Written to ``suspect_blocks.csv``. The flags are counted per block
    in one dask computation (on the cluster when there is one); only the counts come back."""
    ds = xr.open_zarr(store, consolidated=True)
    mask = land.transpose("lat", "lon").data
    rows = []
    for t in targets:
        flag = ds[f"{t.split(':')[0]}_missing_predictors"].transpose("time", "lat", "lon").data
        # Plain arrays (no coordinates): the store and the land mask share the grid by construction.
        counts = block_counts(xr.DataArray((flag == 1) & mask[None], dims=("time", "lat", "lon")), chunks)
        for r in regions:
            i, j = block_index(r, chunks)
            cells = land_cells[i, j] * (r["time"].stop - r["time"].start)
            frac = float(counts[r["time"].start // chunks["time"], i, j] / cells) if cells else 0.0
            if frac > threshold:
                rows.append({"target": t, "time": f"{r['time'].start}:{r['time'].stop}",
                             "lat": f"{r['lat'].start}:{r['lat'].stop}", "lon": f"{r['lon'].start}:{r['lon'].stop}",
                             "missing_fraction": round(frac, 3), "reason": "predictors missing in most land cells"})  # fmt: skip
    for p in absent_land or []:
        # Zarr reads an absent chunk as its fill value: without this row its cells would pass as "not land".
        rows.append({"target": "all", "time": "all", "lat": p["ranges"].get("lat", ""), "lon": p["ranges"].get("lon", ""),
                     "missing_fraction": 1.0,
                     "reason": f"land fraction chunk {p['chunk']} absent ({p['file']}): its cells were not predicted"})  # fmt: skip
    table = pd.DataFrame(rows, columns=["target", "time", "lat", "lon", "missing_fraction", "reason"])
    write_table(table, out / "suspect_blocks.csv", index=False)
    for _, r in table.iterrows():
        if r.target == "all":
            log(f"predict: WARNING lat {r.lat}, lon {r.lon}: {r.reason}")
            continue
        log(
            f"predict: WARNING {r.target} block time {r.time}, lat {r.lat}, lon {r.lon}: predictors missing in "
            f"{r.missing_fraction:.0%} of land cells (corrupt or empty input chunk?); predicted with the models' "
            "defaults and flagged in *_missing_predictors"
        )
    return table
