"""Stage 4b, predict (annual targets): each annual target (SRDB-like ``sr:annual``, ``rh:annual``)
mapped per year on the prediction grid, the totals in Pg C yr-1, latitudinal profiles, per-biome
totals and, with SR and RH, the components AR = SR - RH and HR/SR (``predict/annual/``).

The grid is the MODIS-like entry's (as the 8-day maps) or a regular lat/lon grid
(``predict.resolution`` over ``predict.bbox``) onto which every catalog entry is brought by the
method it declares. Years: those every time series covers whole, or one climatological year
when the predictors are climatologies and static layers (``predict.years`` overrides). With
``extract.landcover: mcd12c1`` each cell is the class-fraction-weighted mean of the predictions for
the IGBP classes present in it (MCD12C1 2019 at 0.05 deg), water and permanent snow/ice left out,
and that mapped fraction is the cell's land in the totals.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig, parse_ratio
from fluxmap.io.annual_report import annual_report
from fluxmap.io.cf import FLAGS, cf_dataset, landcover_attrs, refresh_discovery
from fluxmap.io.models import load_mapping, load_zones
from fluxmap.io.progress import Progress, dask_progress
from fluxmap.io.provenance import cache_key, data_fingerprint, sha256, write_table
from fluxmap.io.store import (
    block_counts,
    create_store,
    fill_regions,
    land_regions,
    open_for_tables,
    period_mean_stores,
    region_slices,
)
from fluxmap.science import aggregate, products
from fluxmap.science.periods import period_starts
from fluxmap.science.predict import annual_cube, predict_cube
from fluxmap.science.validate import scores_by_region
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
    NOT_MAPPED,
    map_years,
    needed_entries,
    prediction_grid,
    with_land,
    zones_on_grid,
)

__all__ = ["NOT_MAPPED", "annual_stage", "LAT_BANDS", "latitude_bands"]

LAT_BANDS = {
    "south of 23.5 S": (-90.0, -23.5),
    "tropics 23.5 S-23.5 N": (-23.5, 23.5),
    "23.5 N-50 N": (23.5, 50.0),
    "north of 50 N": (50.0, 90.0),
}
"""Latitude bands of the components table."""


def _store_attrs(cfg: RunConfig, key: str, climatological: bool, land_from: str, targets: list[str]) -> dict[str, str]:
    return {
        **discovery_attrs(cfg, targets, step="year"),
        "fluxmap_run_key": key,
        "fluxmap_config": json.dumps(dataclasses.asdict(cfg), default=str, sort_keys=True),
        "fluxmap_climatological_year": str(climatological).lower(),
        "fluxmap_land": land_from,
        "comment": (
            "Annual mean flux per m2 of the cell's mapped land (g C m-2 d-1); "
            + (
                "one climatological year from climatologies and static layers (its label year is arbitrary). "
                if climatological
                else ""
            )
            + (
                "Sub-grid land cover: each cell is the class-fraction-weighted mean of the predictions for the "
                "IGBP classes present (MCD12C1 2019), water and permanent snow/ice left out."
                if cfg.extract.landcover
                else ""
            )
        ),
    }


def annual_stage(cfg: RunConfig, *, log: Log = print) -> dict[str, Any]:
    """The annual targets' maps (``predict/annual/annual.zarr``), totals, profiles, per-biome totals
    and components. An empty dict when there are no annual models."""
    models_dir, out = Path(cfg.workdir) / "models", Path(cfg.workdir) / "predict" / "annual"
    targets = modelled_targets(cfg, models_dir, "annual")
    if not targets:
        log(f"predict (annual): skipped, no annual models in {models_dir}")
        return {}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cat = open_catalog(cfg)
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    zone_store = None
    if not cfg.predict.resolution and {"era5", "mod09a1", "static"} <= set(cubes):
        # On the MODIS-like grid: the zone map the models stage wrote (or the 8-day maps), so both
        # products give a cell the same zone and the long-term means are not computed again.
        with dask_progress("predict (annual): the zone map", log):
            zone_store, _ = zone_map_store(cfg, dict(cubes), models_dir, Path(cfg.workdir) / "predict")
    inputs = catalog_inputs(cfg, cfg.extract.entries)
    years, climatological = map_years(cfg, cubes)
    # Sub-period sources (ERA5) as 8-day means, the store the 8-day maps use (written once).
    with dask_progress("predict (annual): 8-day means of sub-period sources", log):
        period_mean_stores(cubes, Path(cfg.workdir) / "predict", inputs)
    lat, lon, grid = prediction_grid(cfg, cubes)
    # On the MODIS-like grid, its own chunks (its cubes are read block by block as the 8-day maps read them).
    chunk = cfg.predict.annual_chunk if cfg.predict.resolution else int(cubes["mod11a2"].chunksizes["lat"][0])
    refs = model_sources(
        targets, models_dir, ensemble=cfg.predict.ensemble, unified_map=cfg.predict.unified, member_maps=True
    )
    cubes = needed_entries(
        cubes, [f for r in refs for f in r.load().features], load_zones(models_dir / "zones.json").factors
    )
    cube, tv = annual_cube(cubes, lat, lon, period_starts(years), chunk)
    cube, land, land_from = with_land(cfg, cube, grid, chunk)
    land_mask = land > (0.0 if cfg.extract.landcover else 0.5)
    if zone_store is not None:
        zone = xr.open_zarr(zone_store, consolidated=True)["zone"].chunk({"lat": chunk, "lon": chunk})
    else:
        zone = zones_on_grid(cfg, models_dir, tv, cube, land_mask).chunk({"lat": chunk, "lon": chunk})
    pred = xr.merge([predict_cube(cube, zone, ref) for ref in refs], combine_attrs="drop")
    files = [p for t in targets for p in sorted((models_dir / t.replace(":", "_")).iterdir()) if p.is_file()]
    key = cache_key(
        {"predict": cfg.predict.map_settings(), "targets": targets, "landcover": cfg.extract.landcover},
        {"models": {str(p.relative_to(models_dir)): sha256(p) for p in files}, **inputs,
         "zones": data_fingerprint(models_dir / "zones.json")},
    )  # fmt: skip
    ds = cf_dataset(pred, zone=zone, zones=load_zones(models_dir / "zones.json").k, step="year",
                    land_fraction=land.assign_attrs(long_name=f"fraction of the cell mapped ({land_from})"),
                    attrs=_store_attrs(cfg, key, climatological, land_from, targets))  # fmt: skip
    if {"sr", "rh"} <= {t.split(":")[0] for t in targets}:
        ds = ds.assign(ra=(ds["sr"] - ds["rh"]).astype("float32"), rh_over_sr=(ds["rh"] / ds["sr"]).astype("float32"),
                       ra_over_sr=((ds["sr"] - ds["rh"]) / ds["sr"]).astype("float32"))  # fmt: skip
        ds["ra"].attrs = {**products.spec("ra").attrs(), "long_name": "autotrophic respiration AR = SR - HR, annual mean",
                          "grid_mapping": "crs", "cell_methods": "time: mean"}  # fmt: skip
        ds["rh_over_sr"].attrs = {"long_name": "HR/SR, ratio of the annual means", "units": "1", "grid_mapping": "crs"}
        ds["ra_over_sr"].attrs = {"long_name": "AR/SR, ratio of the annual means", "units": "1", "grid_mapping": "crs"}
        if "sr_members" in ds and "rh_members" in ds and ds.sizes["member"] > 1:
            # Member i of HR is SR's member i times the ratio's member i when HR is mapped as a ratio, so
            # AR's spread comes from the members' differences (for separately fitted ensembles,
            # pairing members in order samples the two as independent).
            ds["ra_sd"] = (ds["sr_members"] - ds["rh_members"]).std("member", ddof=1, skipna=False).astype("float32").assign_attrs(
                long_name="standard deviation of AR = SR - HR over the paired ensemble members",
                units=products.spec("ra").units, grid_mapping="crs")  # fmt: skip
        for v in ("ra", "rh_over_sr", "ra_over_sr", "ra_sd"):
            if v in ds:
                ds[v].encoding = {"_FillValue": np.float32(np.nan), "dtype": "float32"}
    if "landcover" in cube and "class_fraction" in cube:
        ds["landcover_majority"] = cube["landcover"].fillna(0).astype("int8").assign_attrs(landcover_attrs())
        ds["landcover_majority"].encoding = dict(FLAGS)
    store = out / "annual.zarr"
    chunks = {"time": len(years), "lat": chunk, "lon": chunk}
    if not store_is_current(store, key):
        create_store(store, ds, zarr_format=cfg.predict.zarr_format, chunks=chunks)
    else:
        refresh_discovery(store, ds.attrs)  # a new licence or creator: the maps stay
    all_regions = region_slices({str(d): n for d, n in ds.sizes.items() if d != "nv"}, chunks)
    land_cells = block_counts(land_mask, chunks)
    regions = land_regions(all_regions, land_cells, chunks)
    try:
        with Progress(len(regions), "annual maps: predict + write regions", log) as bar:
            fill_regions(store, ds, regions, batch=cfg.predict.regions_per_batch, progress=lambda d, _: bar(d))
    except Exception as e:  # a damaged input chunk: say which one
        raise named_damage(cat, cfg.extract.entries, e) from e
    fluxes = [t.split(":")[0] for t in targets if parse_ratio(t.split(":")[0]) is None]  # ratios have no totals
    stored = open_for_tables(store)  # read whole when small: the tables are many reductions of it
    tables = annual_tables(stored, fluxes)
    tables["where"] = where_table(stored, fluxes, models_dir, Path(cfg.workdir) / "extract" / "training_annual.parquet")
    for name, table in tables.items():
        write_table(table, out / f"{name}.csv", index=name in ("totals", "latitudinal_profile"))
    annual_report(
        out / "report.md",
        tables=tables,
        published=dict(cfg.predict.published),
        source=cfg.predict.published_source,
        summary=pd.read_csv(models_dir / "summary.csv"),
        mappings={t: load_mapping(models_dir / t.replace(":", "_")) for t in targets},
        store=str(store),
        climatological=climatological,
    )
    seconds = time.perf_counter() - t0
    label = f"climatological year ({years[0]} label)" if climatological else f"years {years}"
    log(f"predict (annual): {', '.join(targets)} on a {len(lat)} x {len(lon)} grid, {label}, land from "
        f"{land_from}: {len(regions)} regions in {seconds:.1f} s -> {store}")  # fmt: skip
    for _, r in tables["totals"].reset_index().iterrows():
        log(f"    {r.target} {int(r.year)}: {r.total_pg_c_yr:.1f} Pg C yr-1")
    if "components" in tables:
        c = tables["components"]
        for _, r in c[c.scope == "global"].iterrows():
            log(f"    {int(r.year)}: AR = SR - HR {r.ar_pg_c_yr:.1f} Pg C yr-1, HR/SR {r.rh_over_sr:.2f}; HR >= SR on "
                f"{r.land_share_hr_ge_sr:.0%} of the mapped land")  # fmt: skip
    return {"store": store, "targets": targets, "years": years, "climatological": climatological, **tables}


def annual_tables(ds: xr.Dataset, names: list[str]) -> dict[str, pd.DataFrame]:
    """From an annual store: ``totals`` (per target and year: Pg C yr-1, share of the land area
    outside the area of applicability and the total from it), ``latitudinal_profile``,
    ``totals_by_biome`` (majority IGBP class of the mapped land, when the store has the class map)
    and, with ``sr`` and ``rh``, ``components``: SR, HR, AR = SR - HR and HR/SR globally, per
    latitude band and per biome."""
    land = ds["land_fraction"]
    rows, profiles, biomes = [], [], []
    bands: dict[str, dict[str, pd.Series]] = {}
    for v in names:
        t = aggregate.annual_totals(ds[v], land)
        if f"{v}_aoa" in ds:
            outside = aggregate.annual_totals(ds[v].where(ds[f"{v}_aoa"] == 0), land)
            t["outside_aoa_area_fraction"] = outside.covered_fraction
            t["from_outside_aoa_pg_c_yr"] = outside.total_pg_c_yr
        if f"{v}_unified" in ds:
            t["unified_total_pg_c_yr"] = aggregate.annual_totals(ds[f"{v}_unified"], land).total_pg_c_yr
        if f"{v}_members" in ds:
            # Each ensemble member's own map summed: the spread of the totals (not of the cells).
            t = t.join(aggregate.member_band(ds[f"{v}_members"], land))
        rows.append(t.assign(target=v).reset_index().set_index(["target", "year"]))
        profiles.append(aggregate.latitudinal_profile(ds[v], land).add_prefix(f"{v}_"))
        bands[v] = {
            name: aggregate.annual_totals(ds[v], land, region=(ds.lat >= lo) & (ds.lat < hi)).total_pg_c_yr
            for name, (lo, hi) in LAT_BANDS.items()
        }
        bands[v]["global"] = t.total_pg_c_yr
    out = {"totals": pd.concat(rows), "latitudinal_profile": pd.concat(profiles, axis=1)}
    if "zone" in ds:
        major = _majority(ds)
        if major is not None:
            names_of = {c: products.IGBP_CLASSES.get(c, str(c)) for c in range(1, 18) if c not in NOT_MAPPED}
            for v in names:
                biomes.append(aggregate.totals_by_class(ds[v], land, major, names_of).assign(target=v))
            out["totals_by_biome"] = pd.concat(biomes, ignore_index=True)
    if {"sr", "rh"} <= set(names):
        comp = []
        for scope in ["global", *LAT_BANDS]:
            sr, rh = bands["sr"][scope], bands["rh"][scope]
            comp.append(pd.DataFrame({"scope": scope, "year": sr.index, "sr_pg_c_yr": sr.values,
                                      "rh_pg_c_yr": rh.values}))  # fmt: skip
        if "totals_by_biome" in out:
            b = out["totals_by_biome"].pivot_table(index=["year", "name"], columns="target", values="total_pg_c_yr")
            comp.append(pd.DataFrame({"scope": "biome: " + b.index.get_level_values("name"),
                                      "year": b.index.get_level_values("year"), "sr_pg_c_yr": b["sr"].values,
                                      "rh_pg_c_yr": b["rh"].values}))  # fmt: skip
        c = pd.concat(comp, ignore_index=True)
        c["ar_pg_c_yr"] = c.sr_pg_c_yr - c.rh_pg_c_yr
        c["rh_over_sr"] = c.rh_pg_c_yr / c.sr_pg_c_yr
        c["ar_over_sr"] = c.ar_pg_c_yr / c.sr_pg_c_yr
        if "sr_members" in ds and "rh_members" in ds and ds.sizes["member"] > 1:
            c = c.join(_component_spread(ds, land), on=["scope", "year"])
        # Where the two maps contradict each other (HR >= SR: the models are fitted separately).
        w = aggregate.cell_land_area(ds["sr"], land)
        both = ds["sr"].notnull() & ds["rh"].notnull()
        bad = (w * (both & (ds["rh"] >= ds["sr"]))).sum(("lat", "lon")) / (w * both).sum(("lat", "lon"))
        share = pd.Series(np.asarray(bad.values), index=pd.DatetimeIndex(ds.time.values).year)
        c["land_share_hr_ge_sr"] = np.where(c.scope == "global", c.year.map(share), np.nan)
        out["components"] = c
    return out


def latitude_bands(land: xr.DataArray) -> tuple[xr.DataArray, dict[int, str]]:
    """The :data:`LAT_BANDS` as a region map on ``land``'s grid (codes 1.., lat x lon) and their names."""
    lat = land["lat"].broadcast_like(land)
    band = xr.zeros_like(land, dtype="int16")
    for i, (lo, hi) in enumerate(LAT_BANDS.values(), start=1):
        band = band.where(~((lat >= lo) & (lat < hi)), i)
    return band, dict(enumerate(LAT_BANDS, start=1))


def _scopes(ds: xr.Dataset) -> dict[str, tuple[xr.DataArray, dict[int, str]]]:
    """Region maps (integer codes, lat x lon) and their names: the latitude bands and, with sub-grid
    land cover, the biomes (majority mapped class)."""
    kinds: dict[str, tuple[xr.DataArray, dict[int, str]]] = {"latitude band": latitude_bands(ds["land_fraction"])}
    major = _majority(ds)
    if major is not None:
        kinds["biome"] = (major, {c: products.IGBP_CLASSES.get(c, str(c)) for c in range(1, 18) if c not in NOT_MAPPED})
    return kinds


def _component_spread(ds: xr.Dataset, land: xr.DataArray) -> pd.DataFrame:
    """Per scope of the components table (global, latitude bands, biomes) and year: the spread over
    the paired ensemble members of SR, HR and AR = SR - HR totals (SD, Pg C yr-1) and of HR/SR."""
    regions = {"global": (xr.ones_like(land, dtype="int16"), {1: "global"}), **_scopes(ds)}
    rows = []
    for kind, (codes, names) in regions.items():
        sr = aggregate.member_region_totals(ds["sr_members"], land, codes, names)
        rh = aggregate.member_region_totals(ds["rh_members"], land, codes, names)
        prefix = "" if kind == "global" else ("biome: " if kind == "biome" else "")
        frame = pd.DataFrame(
            {
                "sr_sd_pg_c_yr": sr.std(axis=1, ddof=1),
                "rh_sd_pg_c_yr": rh.std(axis=1, ddof=1),
                "ar_sd_pg_c_yr": (sr - rh).std(axis=1, ddof=1),
                "rh_over_sr_sd": (rh / sr.where(sr != 0)).std(axis=1, ddof=1),
            }
        ).reset_index()
        frame["scope"] = prefix + frame.pop("name")
        rows.append(frame)
    return pd.concat(rows, ignore_index=True).set_index(["scope", "year"])


def _majority(ds: xr.Dataset) -> xr.DataArray | None:
    """The cell's majority mapped IGBP class, when the store was made with sub-grid land cover."""
    if "landcover_majority" in ds:
        return ds["landcover_majority"].fillna(0).astype("int16")
    return None


def _held_out(models_dir: Path, target: str) -> pd.DataFrame | None:
    """The nested (held-out) predictions of the way ``target`` is mapped: its zone models', or the
    denominator's times the ratio's when it is mapped as a ratio. Columns obs, pred, site, zone;
    indexed by training row."""
    folder = models_dir / target.replace(":", "_")
    path = folder / "loso_predictions.parquet"
    if not path.is_file():
        return None
    own = pd.read_parquet(path)
    out = pd.DataFrame({"obs": own.value, "pred": own.pred_zone, "site": own.site_group, "zone": own.zone})
    note = load_mapping(folder)
    if note and note["mapped_as"] == "ratio" and (folder / "composed_predictions.parquet").is_file():
        comp = pd.read_parquet(folder / "composed_predictions.parquet")
        out = out.loc[comp.index].assign(pred=comp.composed_zone)
    return out


def where_table(ds: xr.Dataset, fluxes: list[str], models_dir: Path, training: Path) -> pd.DataFrame:
    """Where the maps and the held-out validation differ, per flux, year and region (latitude band,
    majority biome of the mapped land, zone): the map's land area, total and share outside the area
    of applicability, beside the held-out scores of the sites in that region (as mapped: zone
    models, or denominator x ratio) and their bias times the region's land area over a year
    (``site_bias_x_land_pg_c_yr``: how far the region's total would move if the map were off as
    its sites are)."""
    table = pd.read_parquet(training) if training.is_file() else None
    land = ds["land_fraction"]
    kinds = _scopes(ds)
    if "zone" in ds:
        zones = sorted(int(z) for z in np.unique(ds["zone"].values) if 0 < z < 255)
        kinds["zone"] = (ds["zone"].fillna(0).astype("int16"), {z: f"zone {z}" for z in zones})
    parts = []
    for v in fluxes:
        held = _held_out(models_dir, f"{v}:annual")
        site_region: dict[str, pd.Series] = {}
        if held is not None and table is not None:
            rows = table.reindex(held.index)
            site_region["latitude band"] = pd.Series(
                pd.cut(rows.lat, [lo for lo, _ in LAT_BANDS.values()] + [90.0001], right=False,
                       labels=list(LAT_BANDS)).astype(object), index=held.index)  # fmt: skip
            if "landcover" in rows:
                site_region["biome"] = rows.landcover.map(
                    lambda c: products.IGBP_CLASSES.get(int(c)) if c == c else None
                )
            site_region["zone"] = held.zone.map(lambda z: f"zone {int(z)}")
        for kind, (codes, names) in kinds.items():
            m = aggregate.region_totals(ds[v], land, codes, names, aoa=ds[f"{v}_aoa"] if f"{v}_aoa" in ds else None)
            m.insert(0, "scope", kind)
            m.insert(0, "target", v)
            if held is not None and kind in site_region and site_region[kind].notna().any():
                s = scores_by_region(held.obs, held.pred, site_region[kind], held.site).rename(
                    columns=lambda c: c if c == "region" else f"sites_{c}" if c != "sites" else "physical_sites"
                )
                m = m.merge(s, left_on="name", right_on="region", how="left").drop(columns="region")
                m["site_bias_x_land_pg_c_yr"] = m.sites_bias * m.land_km2 * 1e6 * 365 / 1e15
            parts.append(m)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
