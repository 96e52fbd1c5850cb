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

from fluxmap._version import __version__
from fluxmap.config import RunConfig
from fluxmap.io.models import ModelFiles, load_zones
from fluxmap.io.progress import Progress
from fluxmap.io.provenance import cache_key, data_fingerprint, sha256, write_table
from fluxmap.io.store import (
    block_counts,
    cf_dataset,
    create_store,
    fill_regions,
    land_regions,
    period_mean_stores,
    region_slices,
)
from fluxmap.science import aggregate, products
from fluxmap.science.features import growing_season_mean, long_term_means
from fluxmap.science.grids import LatLonGrid
from fluxmap.science.periods import period_starts
from fluxmap.science.predict import annual_cube, predict_cube
from fluxmap.science.zones import zone_map
from fluxmap.stages.common import Log, catalog_inputs, modelled_targets, named_damage, open_catalog, store_is_current

__all__ = ["NOT_MAPPED", "annual_stage", "LAT_BANDS"]

NOT_MAPPED = {15: "permanent snow and ice", 17: "water"}
"""IGBP classes whose area the sub-grid land-cover weighting leaves out (no soil flux is mapped there)."""
LAT_BANDS = {
    "south of 23.5 S": (-90.0, -23.5),
    "tropics 23.5 S-23.5 N": (-23.5, 23.5),
    "23.5 N-50 N": (23.5, 50.0),
    "north of 50 N": (50.0, 90.0),
}
"""Latitude bands of the components table."""
CLIMATOLOGICAL_YEAR = 2001
"""The label of the one year mapped from climatologies (a non-leap year: 365 days)."""


def map_years(cfg: RunConfig, cubes: dict[str, xr.Dataset]) -> tuple[list[int], bool]:
    """The years to map and whether they are one climatological year: ``predict.years``; else the
    years every dated series covers whole (from 1 January to 31 December); else, when no entry is
    a dated series, one climatological year."""
    series = [ds for ds in cubes.values() if "time" in ds.dims and ds.attrs.get("fluxmap_time", "series") == "series"]
    if cfg.predict.years:
        return sorted(cfg.predict.years), False
    if not series:
        return [CLIMATOLOGICAL_YEAR], True
    common: set[int] | None = None
    for ds in series:
        t = pd.DatetimeIndex(ds["time"].values)
        step = pd.Series(t).diff().median() if len(t) > 1 else pd.Timedelta(days=365)
        end = t[-1] + step
        whole = {y for y in range(t[0].year, end.year + 1) if t[0] <= pd.Timestamp(y, 1, 1) and end >= pd.Timestamp(y + 1, 1, 1) - pd.Timedelta(days=1)}  # fmt: skip
        common = whole if common is None else common & whole
    if not common:
        raise ValueError("annual maps: no calendar year is covered whole by every time series; set predict.years")
    return sorted(common), False


def _grid(cfg: RunConfig, cubes: dict[str, xr.Dataset]) -> tuple[np.ndarray, np.ndarray, LatLonGrid | None]:
    if cfg.predict.resolution:
        w, s, e, n = cfg.predict.bbox
        g = LatLonGrid(cfg.predict.resolution, west=w, south=s, east=e, north=n)
        return g.lat, g.lon, g
    if "mod11a2" not in cubes:
        raise ValueError(
            "annual maps: set predict.resolution (a regular lat/lon grid) or list the MODIS-like entry mod11a2"
        )
    from fluxmap.io.store import grid_of

    base = cubes["mod11a2"]
    return base["lat"].values, base["lon"].values, grid_of(base)


def _land(
    cfg: RunConfig, cube: xr.Dataset, grid: LatLonGrid | None, chunk: int
) -> tuple[xr.Dataset, xr.DataArray, str]:
    """The cube with the class fractions and majority class (sub-grid land cover) or as it is; each
    cell's land fraction; and how it was made."""
    if cfg.extract.landcover == "mcd12c1":
        from fluxmap.io.landcover import read_mcd12c1
        from fluxmap.science.grids import landcover_on_grid

        if grid is None:
            raise ValueError("sub-grid land cover needs a regular lat/lon prediction grid")
        frac, _ = landcover_on_grid(read_mcd12c1(), grid)
        classes = np.arange(1, frac.shape[0] + 1)
        frac = np.where(np.isin(classes, list(NOT_MAPPED))[:, None, None], 0.0, frac).astype("float32")
        mapped = frac.sum(axis=0)
        major = np.where(mapped > 0, classes[np.argmax(frac, axis=0)], np.nan)
        coords = {"lat": cube["lat"].values, "lon": cube["lon"].values}
        cf = xr.DataArray(frac, dims=("igbp", "lat", "lon"), coords={"igbp": classes, **coords})
        cube = cube.assign(
            class_fraction=cf.chunk({"igbp": -1, "lat": chunk, "lon": chunk}),
            landcover=xr.DataArray(major, dims=("lat", "lon"), coords=coords).chunk({"lat": chunk, "lon": chunk}),
        )
        land = xr.DataArray(mapped, dims=("lat", "lon"), coords=coords)
        return cube, land, "MCD12C1 2019 class fractions without water and permanent snow/ice"
    if "land_fraction" in cube:
        return cube, cube["land_fraction"].fillna(0.0), "the catalog's land_fraction"
    raise ValueError(
        "annual maps need each cell's land: set extract.landcover: mcd12c1, or list a catalog entry "
        "giving land_fraction"
    )


def _zones(cfg: RunConfig, models_dir: Path, tv: xr.Dataset, cube: xr.Dataset, land: xr.DataArray) -> xr.DataArray:
    """Each cell's zone from its long-term environment on the prediction grid (the factors the sites
    were zoned by: long-term means of the timed predictors, growing-season LSWI, static layers)."""
    zm = load_zones(models_dir / "zones.json")
    factors = long_term_means(tv) if tv.data_vars else xr.Dataset()
    if "lswi" in tv and "t2m" in tv:
        factors = factors.assign(lswi_growing_season=growing_season_mean(tv.lswi, tv.t2m))
    static = [v for v in cube.data_vars if set(cube[v].dims) == {"lat", "lon"}]
    factors = xr.merge([factors, cube[static]], compat="override", combine_attrs="drop")
    return zone_map(zm, factors, land)


def _needed(cubes: dict[str, xr.Dataset], features: list[str], factors: tuple[str, ...]) -> dict[str, xr.Dataset]:
    """Only the variables the annual models and the zones read (``v`` of ``v_ann_mean``, ``t2m`` of
    ``t2m_mean``, ``lswi`` and ``t2m`` of ``lswi_growing_season``) and the land fraction: the others
    are never decoded."""
    names = {"land_fraction"}
    for f in [*features, *factors]:
        base = f.split("_ann_")[0] if "_ann_" in f else f
        names |= {"lswi", "t2m"} if base == "lswi_growing_season" else {base.removesuffix("_mean"), base}
    out = {}
    for entry, ds in cubes.items():
        keep = [v for v in ds.data_vars if v in names]
        if keep:
            out[entry] = ds[keep]
    return out


def _store_attrs(cfg: RunConfig, key: str, climatological: bool, land_from: str) -> dict[str, str]:
    return {
        "title": "fluxmap gridded annual carbon fluxes",
        "source": "fluxmap " + __version__,
        "history": f"fluxmap {__version__} predict (annual targets)",
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
    inputs = catalog_inputs(cfg, cfg.extract.entries)
    years, climatological = map_years(cfg, cubes)
    # Sub-period sources (ERA5) as 8-day means, the store the 8-day maps use (written once).
    period_mean_stores(cubes, Path(cfg.workdir) / "predict", inputs)
    lat, lon, grid = _grid(cfg, cubes)
    # On the MODIS-like grid, its own chunks (its cubes are read block by block as the 8-day maps read them).
    chunk = cfg.predict.annual_chunk if cfg.predict.resolution else int(cubes["mod11a2"].chunksizes["lat"][0])
    refs = [
        ModelFiles.of(t.split(":")[0], models_dir / t.replace(":", "_"), ensemble=cfg.predict.ensemble,
                      unified_map=cfg.predict.unified, member_maps=True)
        for t in targets
    ]  # fmt: skip
    cubes = _needed(cubes, [f for r in refs for f in r.load().features], load_zones(models_dir / "zones.json").factors)
    cube, tv = annual_cube(cubes, lat, lon, period_starts(years), chunk)
    cube, land, land_from = _land(cfg, cube, grid, chunk)
    land_mask = land > (0.0 if cfg.extract.landcover else 0.5)
    zone = _zones(cfg, models_dir, tv, cube, land_mask).chunk({"lat": chunk, "lon": chunk})
    pred = xr.merge([predict_cube(cube, zone, ref) for ref in refs], combine_attrs="drop")
    files = [p for t in targets for p in sorted((models_dir / t.replace(":", "_")).iterdir()) if p.is_file()]
    key = cache_key(
        {"predict": dataclasses.asdict(cfg.predict), "targets": targets, "landcover": cfg.extract.landcover},
        {"models": {str(p.relative_to(models_dir)): sha256(p) for p in files}, **inputs,
         "zones": data_fingerprint(models_dir / "zones.json")},
    )  # fmt: skip
    ds = cf_dataset(pred, zone=zone, attrs=_store_attrs(cfg, key, climatological, land_from), step="year")
    if {"sr", "rh"} <= {t.split(":")[0] for t in targets}:
        ds = ds.assign(ra=(ds["sr"] - ds["rh"]).astype("float32"), rh_over_sr=(ds["rh"] / ds["sr"]).astype("float32"))
        ds["ra"].attrs = {**products.spec("ra").attrs(), "long_name": "autotrophic respiration AR = SR - HR, annual mean",
                          "grid_mapping": "crs", "cell_methods": "time: mean"}  # fmt: skip
        ds["rh_over_sr"].attrs = {"long_name": "HR/SR, ratio of the annual means", "units": "1", "grid_mapping": "crs"}
        if "sr_sd" in ds and "rh_sd" in ds:
            # The two ensembles are bootstraps fitted separately: their errors are taken as independent.
            ds["ra_sd"] = ((ds["sr_sd"] ** 2 + ds["rh_sd"] ** 2) ** 0.5).astype("float32").assign_attrs(
                long_name="standard deviation of AR from the SR and HR ensembles (taken as independent)",
                units=products.spec("ra").units, grid_mapping="crs")  # fmt: skip
        for v in ("ra", "rh_over_sr", "ra_sd"):
            if v in ds:
                ds[v].encoding = {"_FillValue": np.float32(np.nan), "dtype": "float32"}
    if "landcover" in cube and "class_fraction" in cube:
        ds["landcover_majority"] = cube["landcover"].fillna(0).astype("uint8").assign_attrs(
            long_name="majority IGBP class of the cell's mapped land (MCD12C1 2019; 0: none)", units="1",
            grid_mapping="crs")  # fmt: skip
        ds["landcover_majority"].encoding = {"dtype": "uint8"}
    ds["land_fraction"] = land.astype("float32").assign_attrs(
        long_name=f"fraction of the cell mapped ({land_from})", units="1", grid_mapping="crs"
    )
    store = out / "annual.zarr"
    chunks = {"time": len(years), "lat": chunk, "lon": chunk}
    if not store_is_current(store, key):
        create_store(store, ds, zarr_format=cfg.predict.zarr_format, chunks=chunks)
    all_regions = region_slices({str(d): n for d, n in ds.sizes.items() if d != "nv"}, chunks)
    land_cells = block_counts(land_mask, chunks)
    regions = land_regions(all_regions, land_cells, chunks)
    try:
        with Progress(len(regions), "annual maps: predict + write regions", log) as bar:
            fill_regions(store, ds, regions, batch=cfg.predict.regions_per_batch, progress=lambda d, _: bar(d))
    except Exception as e:  # a damaged input chunk: say which one
        raise named_damage(cat, cfg.extract.entries, e) from e
    tables = annual_tables(xr.open_zarr(store, consolidated=True), [t.split(":")[0] for t in targets])
    for name, table in tables.items():
        write_table(table, out / f"{name}.csv", index=name in ("totals", "latitudinal_profile"))
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
            per_member = aggregate.member_totals(ds[f"{v}_members"], land)
            t["ensemble_members"] = per_member.shape[1]
            t["ensemble_sd_pg_c_yr"] = per_member.std(axis=1, ddof=1)
            t["ensemble_p05_pg_c_yr"] = per_member.quantile(0.05, axis=1)
            t["ensemble_p95_pg_c_yr"] = per_member.quantile(0.95, axis=1)
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
        tot = out["totals"]
        if "ensemble_sd_pg_c_yr" in tot:
            sd = {v: tot.loc[v, "ensemble_sd_pg_c_yr"] for v in ("sr", "rh")}
            ar_sd = (sd["sr"] ** 2 + sd["rh"] ** 2) ** 0.5  # the two ensembles are separate bootstraps
            c["ar_sd_pg_c_yr"] = np.where(c.scope == "global", c.year.map(ar_sd), np.nan)
        # Where the two maps contradict each other (HR >= SR: the models are fitted separately).
        w = aggregate.cell_land_area(ds["sr"], land)
        both = ds["sr"].notnull() & ds["rh"].notnull()
        bad = (w * (both & (ds["rh"] >= ds["sr"]))).sum(("lat", "lon")) / (w * both).sum(("lat", "lon"))
        share = pd.Series(np.asarray(bad.values), index=pd.DatetimeIndex(ds.time.values).year)
        c["land_share_hr_ge_sr"] = np.where(c.scope == "global", c.year.map(share), np.nan)
        out["components"] = c
    return out


def _majority(ds: xr.Dataset) -> xr.DataArray | None:
    """The cell's majority mapped IGBP class, when the store was made with sub-grid land cover."""
    if "landcover_majority" in ds:
        return ds["landcover_majority"].fillna(0).astype("int16")
    return None
