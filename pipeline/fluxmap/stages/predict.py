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

from fluxmap.config import RunConfig
from fluxmap.io.cf import FLAGS, cf_dataset, landcover_attrs, refresh_discovery
from fluxmap.io.models import MODEL_SUFFIXES, load_zones, load_zones_without_model
from fluxmap.io.progress import Progress, dask_progress
from fluxmap.io.provenance import cache_key, data_fingerprint, git_revision, sha256, versions, write_table
from fluxmap.io.store import (
    block_counts,
    block_index,
    create_store,
    done_regions,
    fill_regions,
    land_regions,
    period_mean_stores,
    region_slices,
)
from fluxmap.science.features import annual_stats, doy_features
from fluxmap.science.predict import period_cube, predict_cube, predictor_cube
from fluxmap.science.projection import Delta, FieldDelta, apply_delta
from fluxmap.stages.common import (
    Log,
    catalog_inputs,
    discovery_attrs,
    model_sources,
    modelled_targets,
    named_damage,
    open_catalog,
    store_is_current,
    zone_map_store,
)
from fluxmap.stages.grid import (
    map_years,
    mapped_span,
    mapped_starts,
    needed_entries,
    prediction_grid,
    with_land,
    zones_on_grid,
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
        **discovery_attrs(cfg, targets, step="8day"),
        "fluxmap_run_key": key,
        "fluxmap_config": json.dumps(dataclasses.asdict(cfg), default=str, sort_keys=True),
        "fluxmap_versions": json.dumps(versions(), sort_keys=True),
        "fluxmap_model_sha256": json.dumps(model_files, sort_keys=True),
        "fluxmap_input_sha256": json.dumps(inputs, sort_keys=True),
        "fluxmap_git_revision": git_revision(),
        "fluxmap_zones_without_model": json.dumps({t: n for t, n in notes.items() if n}, sort_keys=True),
    }


def predict_stage(cfg: RunConfig, *, scenario: Delta | FieldDelta | None = None, log: Log = print) -> dict[str, Any]:
    """The prediction itself: catalog -> predictors -> zones -> models -> the CF Zarr store (resumable).

    With a ``scenario`` (a delta change, :mod:`fluxmap.science.projection`) the same models map the
    changed climate into ``project/fluxmap.zarr``: the catalog's temperatures and precipitation are
    changed before anything is derived from them, the zones are assigned again from the changed
    long-term climate, and the store records the scenario (``fluxmap_scenario``).

    Returns the store path, the targets written, the land fraction, ``cells``: the land
    cell-periods of the grid, each predicted once per target, and ``seconds`` of the two phases
    (ERA5 8-day means + the zone map when the models stage's cannot be used; prediction + write),
    and ``zone_map``, the zone store used. An empty dict when there are no 8-day models.
    """
    models_dir, out = Path(cfg.workdir) / "models", Path(cfg.workdir) / ("project" if scenario else "predict")
    out.mkdir(parents=True, exist_ok=True)
    targets = modelled_targets(cfg, models_dir, "8day")
    if not targets:
        log(f"predict: skipped, no 8-day models in {models_dir} (targets {list(cfg.model.targets)})")
        return {}
    if cfg.predict.resolution:
        prep = _regular_grid(cfg, targets, models_dir, out, scenario, log=log)
    else:
        lacking = sorted(set(MODIS_GRID_ENTRIES) - set(cfg.extract.entries))
        if lacking:
            log(f"predict: 8-day maps skipped: on the MODIS-like grid they need the entries {lacking} "
                f"(extract.entries: {list(cfg.extract.entries)}), or set predict.resolution for a regular grid; the "
                f"8-day models and their validation are in {models_dir}")  # fmt: skip
            return {}
        prep = _modis_grid(cfg, targets, models_dir, out, scenario, log=log)
    cat, inputs, pred, zone, chunks = prep.cat, prep.inputs, prep.pred, prep.zone, prep.chunks
    land_fraction, land_mask = prep.land_fraction, prep.land_mask
    land_cells = block_counts(land_mask, chunks)  # per (lat, lon) block
    files = [p for s in (*MODEL_SUFFIXES, ".json", ".npz") for p in models_dir.rglob(f"*{s}") if p.parent != models_dir]
    model_files = {str(p.relative_to(models_dir)): sha256(p) for p in sorted(files)}
    # Everything that changes the store's values: every model file and its metadata, the predictors'
    # data (fingerprints of the files) and the zone map's own files (or the grid's land).
    key = cache_key(
        {"predict": cfg.predict.map_settings(), "targets": targets},
        {"models": model_files, **inputs, **prep.key_inputs},
    )
    land = land_fraction.chunk({"lat": chunks["lat"], "lon": chunks["lon"]})
    if prep.land_from:
        land = land.assign_attrs(long_name=f"fraction of the cell mapped ({prep.land_from})")
    ds = cf_dataset(pred, zone=zone, zones=load_zones(models_dir / "zones.json").k, land_fraction=land,
                    attrs={**_store_attrs(cfg, key, model_files, inputs, targets), **prep.attrs})  # fmt: skip
    if prep.extra:
        ds = ds.assign(prep.extra)
    store = out / "fluxmap.zarr"
    if not store_is_current(store, key):
        create_store(store, ds, zarr_format=cfg.predict.zarr_format, chunks=chunks)
    else:
        refresh_discovery(store, ds.attrs)  # a new licence or creator: the maps stay
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
    absent = (
        list(cat.chunk_problems("static", decode=False, variables=["land_fraction"])) if "static" in cat.entries else []
    )
    _suspect_blocks(store, regions, targets, land_mask, land_cells, chunks, out, absent_land=absent, log=log)
    return {
        "store": store,
        "zone_map": prep.zone_store,
        "targets": targets,
        # On a regular grid the land was computed in memory: read it back from the store, so the report's
        # graphs refer to its chunks instead of carrying the array in every task.
        "land_fraction": xr.open_zarr(store, consolidated=True)["land_fraction"] if prep.land_from else land_fraction,
        "cells": sum(work(r) for r in regions),
        "seconds": {"prepare": prep.seconds, "predict_and_write": write_s},
    }


def _member_maps(cfg: RunConfig) -> bool:
    """Whether the store keeps the members' maps (``predict.member_maps``; unset: on the demo world)."""
    keep = cfg.predict.member_maps if cfg.predict.member_maps is not None else cfg.demo is not None
    return cfg.predict.ensemble and keep


@dataclasses.dataclass
class _Prepared:
    """What the 8-day maps are made from, on either grid: the lazy prediction, the zone map, the
    chunks, the land (fraction and the mask of cells predicted) and what identifies the inputs."""

    cat: Any
    inputs: dict[str, Any]
    pred: xr.Dataset
    zone: xr.DataArray
    chunks: dict[str, int]
    land_fraction: xr.DataArray
    land_mask: xr.DataArray
    key_inputs: dict[str, Any]
    seconds: float
    zone_store: Path | None = None
    extra: dict[str, xr.DataArray] | None = None
    attrs: dict[str, str] = dataclasses.field(default_factory=dict)
    land_from: str = ""
    """On a regular grid: where its land came from (it is computed, and read back from the store)."""


def _under(
    scenario: Delta | FieldDelta | None, cubes: dict[str, xr.Dataset], inputs: dict[str, str], log: Log
) -> tuple[dict[str, xr.Dataset], dict[str, str], dict[str, str]]:
    """The cubes under ``scenario`` (as they are without one), the inputs that key every cache with
    the scenario in them, and the store attributes that record it."""
    if scenario is None:
        return cubes, inputs, {}
    cubes, changed = apply_delta(cubes, scenario)
    log(f"project: {scenario.describe()}; warmed {changed['warmed']}, scaled {changed['scaled']}, held at the "
        f"baseline {changed['held']}")  # fmt: skip
    record = {**scenario.as_dict(), "method": "delta change", **changed}
    attrs = {"fluxmap_scenario": json.dumps(record, sort_keys=True),
             "comment": f"Projection: the trained models applied to a delta-changed climate ({scenario.describe()})"}  # fmt: skip
    return cubes, {**inputs, "scenario": json.dumps(record, sort_keys=True)}, attrs


def _modis_grid(
    cfg: RunConfig, targets: list[str], models_dir: Path, out: Path, scenario: Delta | FieldDelta | None, *, log: Log
) -> _Prepared:
    """The MODIS-like grid (``mod11a2``): its predictor cube, the models stage's zone map (under a
    scenario, zones assigned again from the changed climate), the static entry's land fraction
    (cells over half land are predicted)."""
    cat = open_catalog(cfg)
    cubes, inputs, scenario_attrs = _under(
        scenario, {e: cat.open(e) for e in cfg.extract.entries}, catalog_inputs(cfg, cfg.extract.entries), log
    )
    t0 = time.perf_counter()
    with dask_progress("predict: ERA5 8-day means and the zone map", log):
        zone_store, zone_reused = zone_map_store(cfg, cubes, models_dir, out, reuse=scenario is None)
        reuse = period_mean_stores(cubes, out, inputs)
    predictors = predictor_cube(cubes)
    land_fraction = predictors["land_fraction"]  # lazy, on the MODIS grid: a 500 m global grid is never loaded whole
    chunks = {d: predictors.chunksizes[d][0] for d in ("time", "lat", "lon")}
    zone = xr.open_zarr(zone_store, consolidated=True)["zone"]
    seconds = time.perf_counter() - t0
    log(
        f"predict: 8-day sub-period sources {'reused (same inputs)' if reuse else 'ready'}; zone map "
        f"{'reused (same inputs and zones)' if zone_reused else 'ready'} ({zone_store}); {seconds:.1f} s"
    )
    refs = model_sources(
        targets, models_dir, ensemble=cfg.predict.ensemble, unified_map=cfg.predict.unified,
        member_maps=_member_maps(cfg),
    )  # fmt: skip
    pred = xr.merge([predict_cube(predictors, zone, ref) for ref in refs], combine_attrs="drop")
    return _Prepared(cat, inputs, pred, zone, chunks, land_fraction, land_fraction > 0.5,
                     {"zone_map": data_fingerprint(zone_store)}, seconds, zone_store, attrs=scenario_attrs)  # fmt: skip


def _regular_grid(
    cfg: RunConfig, targets: list[str], models_dir: Path, out: Path, scenario: Delta | FieldDelta | None, *, log: Log
) -> _Prepared:
    """A regular lat/lon grid (``predict.resolution`` over ``predict.bbox``): every entry brought onto
    it by its declared method on the 8-day periods of the mapped years (a climatological year from
    climatologies), the same derived predictors as the training table, zones from the long-term
    means on the grid, and the land from MCD12C1 class fractions (sub-grid land cover: each cell the
    class-weighted mean of the per-class predictions) or the catalog's land fraction."""
    cat = open_catalog(cfg)
    span = mapped_span(cfg)
    cubes, inputs, scenario_attrs = _under(
        scenario,
        {e: cat.open(e, period=span) for e in cfg.extract.entries},
        catalog_inputs(cfg, cfg.extract.entries),
        log,
    )
    t0 = time.perf_counter()
    years, climatological = map_years(cfg, cubes)
    with dask_progress("predict: 8-day means of sub-period sources", log):
        period_mean_stores(cubes, out, inputs)
    lat, lon, grid = prediction_grid(cfg, cubes)
    chunk = cfg.predict.annual_chunk
    refs = model_sources(
        targets, models_dir, ensemble=cfg.predict.ensemble, unified_map=cfg.predict.unified,
        member_maps=_member_maps(cfg),
    )  # fmt: skip
    zones_file = models_dir / "zones.json"
    cubes = needed_entries(cubes, [f for r in refs for f in r.load().features], load_zones(zones_file).factors)
    starts = mapped_starts(cfg, years)
    tv, st = period_cube(cubes, lat, lon, starts, chunks=(chunk, chunk))
    parts = [tv, annual_stats(tv), doy_features(tv["time"])] if tv.data_vars else [doy_features(xr.DataArray(starts, dims="time", coords={"time": starts}, name="time"))]  # fmt: skip
    cube = xr.merge([*parts, st], compat="override", combine_attrs="drop")
    per_year = len(starts) if cfg.predict.period else len(starts) // len(years)
    cube = cube.transpose("time", "lat", "lon", ...).chunk({"time": per_year, "lat": chunk, "lon": chunk})
    cube, land, land_from = with_land(cfg, cube, grid, chunk)
    mask = land > (0.0 if cfg.extract.landcover else 0.5)
    zone = zones_on_grid(cfg, models_dir, tv, cube, mask).chunk({"lat": chunk, "lon": chunk})
    pred = xr.merge([predict_cube(cube, zone, ref) for ref in refs], combine_attrs="drop")
    seconds = time.perf_counter() - t0
    label = f"a climatological year ({years[0]} label)" if climatological else f"years {years}"
    log(f"predict: 8-day maps on a {len(lat)} x {len(lon)} grid, {label}, land from {land_from}; {seconds:.1f} s")
    extra: dict[str, xr.DataArray] = {}
    if "landcover" in cube and "class_fraction" in cube:
        extra["landcover_majority"] = cube["landcover"].fillna(0).astype("int8").assign_attrs(landcover_attrs())
        extra["landcover_majority"].encoding = dict(FLAGS)
    chunks = {"time": per_year, "lat": chunk, "lon": chunk}
    key_inputs = {"zones": data_fingerprint(zones_file), "landcover": cfg.extract.landcover}
    attrs = {
        "fluxmap_land": land_from,
        "fluxmap_climatological_year": str(climatological).lower(),
        "comment": "8-day mean flux per m2 of the cell's mapped land (g C m-2 d-1)"
        + ("; one climatological year from climatologies and static layers (its label year is arbitrary)"
           if climatological else "")
        + ("; sub-grid land cover: each cell is the class-fraction-weighted mean of the predictions for the IGBP "
           "classes present (MCD12C1 2019), water and permanent snow/ice left out" if cfg.extract.landcover else "")
        + ".",
    }  # fmt: skip
    return _Prepared(cat, inputs, pred, zone, chunks, land, mask, key_inputs, seconds, None, extra,
                     {**attrs, **scenario_attrs}, land_from)  # fmt: skip


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
