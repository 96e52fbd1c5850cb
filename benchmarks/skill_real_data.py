"""Model skill on the real site data in ../shared/data: zone models vs one unified model,
leave-one-site-out (sites: physical sites, every id within 5 km of another joined, as the product
groups them), beside the training mean and a published-form reference model fitted on the same
folds, with climate predictors from the real gridded climatologies.

Cases (each prints one JSON line):

- ``srdb_sr`` / ``srdb_hr``: SRDB v5 annual Rs / Rh (unmanipulated, IRGA or GC, quality and
  duplicate rules; all study years). Predictors: the record's own MAT and MAP, and the same
  climate from the grids (CRU 1961-1990 temperature climatology, CMAP 1981-2010 precipitation:
  annual mean, seasonal range), plus the MCD12C1 2019 IGBP class at the site.
- ``cosore_rs`` / ``cosore_rh``: COSORE daily chamber fluxes aggregated to MODIS 8-day periods.
  Predictors: grid climate of the period's month and the year, day-of-year transform, land cover;
  compared with the same plus the site's own soil temperature and moisture.
- ``fluxnet_nee``: FLUXNET2015 monthly NEE at 204 sites, predictors from the grid climate of the
  month, the year, land cover and the month transform.
- ``srdb_global``: SRDB annual SR and HR mapped over the globe (0.5 deg) by zone models and by one
  unified model, with predictors every cell has (the interpolated grid climate and the IGBP class;
  each cell is the class-fraction-weighted mean over its land classes, snow/ice and water left out),
  and the global totals in Pg C yr-1 of both (also per latitude band and per zone) next to the
  published SRDB-based ones; HR/SR and AR = SR - HR.

No MODIS or ERA5 predictors: those are remote sources this machine cannot reach, so these
numbers measure what climate alone explains and are lower than remote-sensing models report.

    python benchmarks/skill_real_data.py [--data ../shared/data] [--cases srdb_sr,fluxnet_nee] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io import sites as S
from fluxmap.io.catalog import builtin_catalog, load_catalog
from fluxmap.io.landcover import read_mcd12c1
from fluxmap.science.baselines import fit_reference
from fluxmap.science.extract import extract_at_sites, locate_sites
from fluxmap.science.grids import LatLonGrid, cell_area, landcover_at_points, landcover_on_grid
from fluxmap.science.periods import aggregate_to_periods
from fluxmap.science.products import spec
from fluxmap.science.train import FittedModel, fit
from fluxmap.science.validate import (
    compare,
    loso_predict,
    metrics,
    metrics_table,
    paired_site_bootstrap,
    physical_sites,
)
from fluxmap.science.zones import fit_zones, zone_array

ZONE_FACTORS = ["t_mean", "p_mean", "t_range", "p_range"]
MONTHLY_CLIMATE = ["t_month", "p_month", "t_mean", "p_mean", "t_range", "p_range"]
"""Grid climate of the observation's calendar month, and the site's annual climate."""


def grid_climate(data: Path, lat: np.ndarray, lon: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Site climate from the real grids: annual statistics and each calendar month (12 rows per site)."""
    cat = load_catalog(builtin_catalog("reference"), SHARED_DATA=str(data))
    ids = np.arange(len(lat))
    out = {}
    for entry, var, name in (("cru_tem", "t2m", "t"), ("cmap_precip", "tp", "p")):
        ds = cat.open(entry)
        # A 3 x 3 window fills coastal sites whose own cell is ocean in the coarse grid.
        got = extract_at_sites(ds, locate_sites(ds, ids, lat, lon), window=1)[var].compute()
        wide = extract_at_sites(ds, locate_sites(ds, ids, lat, lon), window=3)[var].compute()
        out[name] = got.fillna(wide).transpose("site", "time").values  # (site, 12 months)
    t, p = out["t"], out["p"]
    annual = pd.DataFrame(
        {
            "t_mean": np.nanmean(t, 1),
            "t_range": np.nanmax(t, 1) - np.nanmin(t, 1),
            "p_mean": np.nanmean(p, 1),
            "p_range": np.nanmax(p, 1) - np.nanmin(p, 1),
        }
    )
    monthly = pd.DataFrame(
        {
            "site": np.repeat(ids, 12),
            "month": np.tile(np.arange(1, 13), len(ids)),
            "t_month": t.ravel(),
            "p_month": p.ravel(),
        }
    )
    return annual, monthly


def with_site_climate(data: Path, frame: pd.DataFrame, *, month: pd.Series) -> pd.DataFrame:
    """Join each row's site climate (annual and of its calendar month), land cover and year."""
    locs = frame[["lat", "lon"]].drop_duplicates().reset_index(drop=True)
    clim, monthly = grid_climate(data, locs.lat.to_numpy(), locs.lon.to_numpy())
    locs = pd.concat([locs, clim], axis=1).assign(site=np.arange(len(locs)))
    out = frame.assign(month=month.to_numpy()).merge(locs, on=["lat", "lon"]).merge(monthly, on=["site", "month"])
    out["landcover"] = landcover_at(out.lat.to_numpy(), out.lon.to_numpy())
    out["year"] = out.start.dt.year
    return out.dropna(subset=ZONE_FACTORS)


def landcover_at(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The MCD12C1 2019 IGBP class (1-17) at points, as a float feature."""
    return landcover_at_points(read_mcd12c1(), lat, lon).astype(float)


def site_zones(df: pd.DataFrame, *, min_sites: int, restarts: int = 50):
    """Zones on the sites' annual climate (one row per ``site_id``): the fitted model and the
    candidates table of :func:`fluxmap.science.zones.fit_zones`."""
    return fit_zones(
        df.groupby("site_id")[ZONE_FACTORS].first(),
        factors=ZONE_FACTORS,
        k_candidates=range(2, 7),
        min_sites=min_sites,
        obs_per_site=df.groupby("site_id").size(),
        min_obs=20,
        restarts=restarts,
    )


GROUP_KM = 5.0
"""Locations within this distance (transitively) are one physical site (fluxmap's model default)."""


def physical(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``site_id`` replaced by the physical site (locations within ``GROUP_KM``, the
    product's :func:`fluxmap.science.validate.physical_sites`) and the original id kept as ``id``:
    every fold, zone and bootstrap below then leaves out a place, not one of its ids."""
    locs = df[["lat", "lon"]].drop_duplicates().reset_index(drop=True)
    group = pd.Series(physical_sites(locs.lat, locs.lon, distance_km=GROUP_KM), index=pd.MultiIndex.from_frame(locs))
    return df.assign(id=df.site_id, site_id=group.reindex(pd.MultiIndex.from_frame(df[["lat", "lon"]])).to_numpy())


def reference_loso(d: pd.DataFrame, kind: str, climate: tuple[str, str]) -> pd.Series:
    """Leave-one-(physical)-site-out predictions of a reference model (the product's baselines)."""
    out = pd.Series(np.nan, index=d.index)
    for s in d.site_id.unique():
        test = d.site_id == s
        out[test] = fit_reference(kind, d[~test], climate=climate)(d[test])
    return out


def references(d: pd.DataFrame, reference: tuple[str, tuple[str, str]] | None) -> dict:
    """R2 of the training mean and the case's published-form reference on the same folds, and the
    unified and zone models' skill over the better of them (site-bootstrap 5-95 %)."""
    d = d.assign(ref_mean=reference_loso(d, "mean", ("", "")))
    cols = {"mean": "ref_mean"}
    if reference is not None:
        d["ref_form"] = reference_loso(d, reference[0], reference[1])
        cols[reference[0]] = "ref_form"
    r2 = {k: metrics(d.value.values, d[c].values)["r2"] for k, c in cols.items()}
    best = max(r2, key=lambda k: r2[k])
    out: dict = {f"r2_reference_{k}": round(v, 3) for k, v in r2.items()}
    out["best_reference"] = best
    for m in ("unified", "zoned"):
        if m in d:
            b = paired_site_bootstrap(d, m, cols[best], seed=0)
            out[f"skill_{m}"] = f"{b['skill']:+.3f} [{b['skill_lo']:+.3f}, {b['skill_hi']:+.3f}]"
    return out


def compare_models(
    df: pd.DataFrame,
    features: list[str],
    *,
    min_sites: int,
    params: dict,
    restarts: int = 50,
    extra: dict[str, list[str]] | None = None,
    zoning: tuple | None = None,
    reference: tuple[str, tuple[str, str]] | None = None,
) -> dict:
    """Zones on site-level climate (``zoning``: those :func:`site_zones` already fitted on ``df``),
    then LOSO zone vs unified models (XGBoost) and the references, sites being physical sites
    (``df`` from :func:`physical`)."""
    site_f = df.groupby("site_id")[ZONE_FACTORS].first()
    try:
        zm, cand = zoning or site_zones(df, min_sites=min_sites, restarts=restarts)
    except ValueError as e:  # too few sites to zone: report the unified model alone
        unified = loso_predict(df, features=features, params=params, n_jobs=2)
        m = metrics(df.value.values, unified.values)
        return {
            "rows": int(len(df)),
            "site_ids": int(df.id.nunique()),
            "physical_sites": int(df.site_id.nunique()),
            "zones": f"not fitted: {str(e).splitlines()[0]}",
            "r2_unified": round(m["r2"], 3),
            "rmse_unified": round(m["rmse"], 3),
            **references(df.assign(unified=unified), reference),
        }
    zone = pd.Series(zone_array(zm, site_f.to_numpy()), index=site_f.index)
    d = df.assign(zone=df.site_id.map(zone))
    d["unified"] = loso_predict(d, features=features, params=params, n_jobs=2)
    d["zoned"] = loso_predict(d, features=features, by="zone", params=params, n_jobs=2)
    table = metrics_table(d, {"zone": "zoned", "unified": "unified"})
    cmp = compare(table, "zone", "unified").set_index("group")
    result = {
        "rows": int(len(d)),
        "site_ids": int(d.id.nunique()),
        "physical_sites": int(d.site_id.nunique()),
        "k": zm.k,
        "silhouette": round(float(cand[cand.chosen].silhouette.item()), 3),
        "r2_zone": round(float(cmp.loc["all", "r2_zone"]), 3),
        "r2_unified": round(float(cmp.loc["all", "r2_unified"]), 3),
        "rmse_zone": round(float(cmp.loc["all", "rmse_zone"]), 3),
        "rmse_unified": round(float(cmp.loc["all", "rmse_unified"]), 3),
        "zones_where_zone_models_win": [
            f"{g} ({int(r.sites)} sites)" for g, r in cmp.drop("all").iterrows() if r.better == "zone"
        ],
        "zones_where_unified_wins": [
            f"{g} ({int(r.sites)} sites)" for g, r in cmp.drop("all").iterrows() if r.better == "unified"
        ],
    }
    result.update(references(d, reference))
    for label, feats in (extra or {}).items():
        rows = d.dropna(subset=[f for f in feats if f not in features])
        base = loso_predict(rows, features=features, params=params, n_jobs=2)
        more = loso_predict(rows, features=feats, params=params, n_jobs=2)
        result[label] = {
            "rows": int(len(rows)),
            "physical_sites": int(rows.site_id.nunique()),
            "r2_without": round(metrics(rows.value.values, base.values)["r2"], 3),
            "r2_with": round(metrics(rows.value.values, more.values)["r2"], 3),
        }
    return result


def srdb_case(data: Path, variable: str, params: dict) -> dict:
    rules = S.SrdbRules(min_year=None)
    t = S.read_srdb(data / "srdb" / "srdb-data.csv", rules)
    raw = pd.read_csv(data / "srdb" / "srdb-data.csv", keep_default_na=False, na_values=["NA", ""], low_memory=False)
    raw["record_id"] = raw.Record_number.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    obs = t.observations[t.observations.variable == variable].merge(raw[["record_id", "MAT", "MAP"]], on="record_id")
    obs["value"] = obs.value * 365.0  # back to g C m-2 yr-1 for reporting
    clim, _ = grid_climate(data, obs.lat.to_numpy(), obs.lon.to_numpy())
    obs = pd.concat([obs.reset_index(drop=True), clim], axis=1)
    obs["landcover"] = landcover_at(obs.lat.to_numpy(), obs.lon.to_numpy())
    obs = physical(obs.dropna(subset=ZONE_FACTORS))
    features = ["MAT", "MAP", "t_mean", "t_range", "p_mean", "p_range", "landcover"]
    return compare_models(obs, features, min_sites=10, params=params, reference=("climate", ("t_mean", "p_mean")))


def cosore_case(data: Path, variable: str, params: dict) -> dict:
    t = S.read_cosore_daily(
        data / "cosore" / "cosore_daily_all.csv.gz", data / "cosore" / "cosore_datasets_summary.csv"
    )
    o = t.observations[t.observations.variable == variable]
    keys = ["site_id", "lat", "lon", "variable", "method"]
    per, _ = aggregate_to_periods(o, keys=keys, value_cols=["value", "tsoil_c", "swc"], min_coverage=0.5)
    per = with_site_climate(data, per, month=(per.start + pd.Timedelta(days=4)).dt.month)
    doy = (per.start + pd.Timedelta(days=4)).dt.day_of_year
    per["doy_sin"], per["doy_cos"] = np.sin(2 * np.pi * doy / 365.25), np.cos(2 * np.pi * doy / 365.25)
    features = [*MONTHLY_CLIMATE, "doy_sin", "doy_cos", "landcover", "year"]
    return compare_models(
        physical(per),
        features,
        min_sites=3,
        params=params,
        extra={"site_soil_temperature_and_moisture": features + ["tsoil_c", "swc"]},
        reference=("climate", ("t_month", "p_month")),
    )


def fluxnet_table(data: Path) -> tuple[pd.DataFrame, list[str]]:
    """FLUXNET2015 monthly NEE at 204 sites with the grid climate of the month and the site, land
    cover, the month transform, the year and latitude; and those predictors' names."""
    t = S.read_fluxnet_monthly_table(
        data / "fluxnet" / "fluxnet2015_monthly_GPP_NEE_ET_204sites.csv", variables=("NEE",)
    )
    o = t.observations.copy()
    o = with_site_climate(data, o, month=o.start.dt.month)
    o["m_sin"], o["m_cos"] = np.sin(2 * np.pi * o.month / 12), np.cos(2 * np.pi * o.month / 12)
    return o, [*MONTHLY_CLIMATE, "m_sin", "m_cos", "landcover", "year", "lat"]


def fluxnet_case(data: Path, params: dict) -> dict:
    o, features = fluxnet_table(data)
    return compare_models(physical(o), features, min_sites=8, params=params, reference=("class_mean", ("", "")))


GLOBAL_FEATURES = [*ZONE_FACTORS, "landcover"]
"""Predictors the global case can have at every cell: the annual climate and the IGBP class."""
NOT_MAPPED = {15: "permanent snow and ice", 17: "water"}
"""IGBP classes left out of the global totals."""
PUBLISHED_PG = {
    "sr": "Lu et al. 2021: 85.5; Stell et al. 2021: 88.6 (SRDB v3) to 96.5 (v5)",
    "rh": "Lu et al. 2021: 50.3; Stell et al. 2021: 50.1-53.4; Tang et al. 2020: 57.2",
}
"""Published global totals (Pg C yr-1) from SRDB-trained machine learning (../shared/data/README.md)."""
LAT_BANDS = {"south of 23.5 S": (-90, -23.5), "tropics 23.5 S-23.5 N": (-23.5, 23.5), "north of 23.5 N": (23.5, 90)}


def to_grid(da: xr.DataArray, grid: LatLonGrid) -> xr.DataArray:
    """Bilinear interpolation of a global ``(..., lat, lon)`` field onto ``grid``, continuous across the
    dateline; grid rows beyond the field's outermost rows take the values of those rows."""
    da = da.assign_coords(lon=((da.lon + 180.0) % 360.0) - 180.0).sortby("lat").sortby("lon")
    lon = da.lon.values
    wrapped = xr.concat(
        [
            da.isel(lon=[-1]).assign_coords(lon=[lon[-1] - 360.0]),
            da,
            da.isel(lon=[0]).assign_coords(lon=[lon[0] + 360.0]),
        ],
        dim="lon",
    )
    lat = np.clip(grid.lat, float(da.lat.min()), float(da.lat.max()))
    return wrapped.interp(lat=lat, lon=grid.lon).assign_coords(lat=grid.lat)


def global_grid(data: Path, resolution: float = 0.5) -> xr.Dataset:
    """The global case's predictors on a global grid: the annual climate statistics of the CRU
    (5 deg) and CMAP (2.5 deg) climatologies interpolated bilinearly, the fraction of every IGBP
    class of the 0.05 deg MCD12C1 2019 map in each cell, and the cells' areas on the sphere (m2)."""
    cat = load_catalog(builtin_catalog("reference"), SHARED_DATA=str(data))
    grid = LatLonGrid(resolution)
    t = to_grid(cat.open("cru_tem")["t2m"].load(), grid)
    p = to_grid(cat.open("cmap_precip")["tp"].load(), grid)
    frac, _ = landcover_on_grid(read_mcd12c1(), grid)
    return xr.Dataset(
        {
            "t_mean": t.mean("time"),
            "t_range": t.max("time") - t.min("time"),
            "p_mean": p.mean("time"),
            "p_range": p.max("time") - p.min("time"),
            "class_fraction": (("igbp", "lat", "lon"), frac),
            "cell_area": ("lat", cell_area(grid.lat, resolution)),
        },
        coords={"igbp": np.arange(1, frac.shape[0] + 1), "lat": grid.lat, "lon": grid.lon},
    )


def class_weighted_flux(
    g: xr.Dataset, predict: Callable[[np.ndarray, np.ndarray], np.ndarray], zones: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: the sum over mapped IGBP classes of (class fraction x the flux predicted for the
    cell's climate with that class), and the mapped fraction. ``predict(x, zone)`` takes rows of
    :data:`GLOBAL_FEATURES` and each row's zone. Cells without climate get NaN."""
    clim = np.stack([g[f].values for f in ZONE_FACTORS], axis=-1)
    ok = np.isfinite(clim).all(axis=-1)
    num = np.zeros(ok.shape)
    den = np.zeros(ok.shape)
    for c in g.igbp.values:
        if int(c) in NOT_MAPPED:
            continue
        fr = g.class_fraction.sel(igbp=c).values
        cells = ok & (fr > 0)
        x = np.column_stack([clim[cells], np.full(int(cells.sum()), float(c))])
        num[cells] += fr[cells] * predict(x, zones[cells])
        den[cells] += fr[cells]
    return np.where(ok, num, np.nan), np.where(ok, den, np.nan)


def band_totals(g: xr.Dataset, weighted: np.ndarray) -> dict[str, float]:
    """Pg per year of a class-weighted flux (g C m-2 yr-1) over all cells and per latitude band."""
    mass = np.nan_to_num(weighted) * g.cell_area.values[:, None] / 1e15
    lat = g.lat.values
    out = {"global": float(mass.sum())}
    for name, (lo, hi) in LAT_BANDS.items():
        out[name] = float(mass[(lat >= lo) & (lat < hi)].sum())
    return out


def srdb_at_grid(observations: pd.DataFrame, g: xr.Dataset, variable: str) -> pd.DataFrame:
    """One SRDB flux's records (g C m-2 yr-1) with the climate of the grid cell each site lies in,
    the site's own IGBP class and a site id from its coordinates."""
    obs = observations[observations.variable == variable].reset_index(drop=True)
    obs["value"] = obs.value * 365.0  # back to g C m-2 yr-1
    at = g[ZONE_FACTORS].sel(
        lat=xr.DataArray(obs.lat.to_numpy(), dims="row"),
        lon=xr.DataArray(((obs.lon.to_numpy() + 180.0) % 360.0) - 180.0, dims="row"),
        method="nearest",
    )
    obs = obs.assign(**{f: at[f].values for f in ZONE_FACTORS})
    obs["landcover"] = landcover_at(obs.lat.to_numpy(), obs.lon.to_numpy())
    return physical(obs.dropna(subset=ZONE_FACTORS))


def predict_by_zone(
    models: dict[int, FittedModel], fallback: FittedModel, x: np.ndarray, zone: np.ndarray
) -> np.ndarray:
    """Each row by its zone's model (``fallback`` for a zone without one)."""
    out = np.empty(len(x))
    for z in np.unique(zone):
        sel = zone == z
        out[sel] = models.get(int(z), fallback).predict(x[sel])
    return out


def map_flux(obs: pd.DataFrame, g: xr.Dataset, params: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Zones of the sites' climate, zone models and a unified model fitted on every record, both
    applied to every cell of ``g``: their LOSO skill, global and per-band totals (Pg C yr-1); and
    the maps (``zone``, ``unified``: class-weighted flux, g C m-2 yr-1 of cell; ``cell_zone``)."""
    zoning = site_zones(obs, min_sites=10)
    skill = compare_models(
        obs, GLOBAL_FEATURES, min_sites=10, params=params, zoning=zoning, reference=("climate", ("t_mean", "p_mean"))
    )
    zm = zoning[0]
    site_f = obs.groupby("site_id")[ZONE_FACTORS].first()
    obs = obs.assign(zone=obs.site_id.map(pd.Series(zone_array(zm, site_f.to_numpy()), index=site_f.index)))
    unified = fit("xgboost", obs, obs.value, features=GLOBAL_FEATURES, params=params, n_jobs=2)
    per_zone = {
        int(z): fit("xgboost", part, part.value, features=GLOBAL_FEATURES, params=params, n_jobs=2)
        for z, part in obs.groupby("zone")
    }
    cell_zone = zone_array(zm, np.stack([g[f].values for f in ZONE_FACTORS], axis=-1))
    weighted = {
        "zone": class_weighted_flux(g, partial(predict_by_zone, per_zone, unified), cell_zone)[0],
        "unified": class_weighted_flux(g, partial(predict_by_zone, {}, unified), cell_zone)[0],
    }
    totals = {m: band_totals(g, w) for m, w in weighted.items()}
    summary = {
        "site_ids": skill["site_ids"],
        "physical_sites": skill["physical_sites"],
        "records": skill["rows"],
        **{k: v for k, v in skill.items() if k.startswith(("r2_reference", "best_reference", "skill_"))},
        "zones": zm.k,
        "loso_r2_zone": skill.get("r2_zone"),
        "loso_r2_unified": skill["r2_unified"],
        "total_pg_zone": round(totals["zone"]["global"], 2),
        "total_pg_unified": round(totals["unified"]["global"], 2),
        "by_latitude_pg": {band: {m: round(totals[m][band], 2) for m in totals} for band in LAT_BANDS},
        "by_zone_pg": {
            z: {m: round(band_totals(g, np.where(cell_zone == z, w, 0.0))["global"], 2) for m, w in weighted.items()}
            for z in range(1, zm.k + 1)
        },
        "share_of_cells_below_zero": {m: round(float((w[np.isfinite(w)] < 0).mean()), 4) for m, w in weighted.items()},
    }
    return summary, {**weighted, "cell_zone": cell_zone}


def global_maps(g: xr.Dataset, fields: dict[str, dict[str, np.ndarray]], mapped: np.ndarray) -> xr.Dataset:
    """The global case's maps as a CF Dataset: per flux and model family the mean flux per m2 of the
    mapped land of each cell (g C m-2 d-1, like every fluxmap flux), each flux's zones, the mapped
    land fraction and the cell areas."""
    grid_coords = LatLonGrid(float(abs(g.lat.values[0] - g.lat.values[1]))).coords()
    share = np.where(mapped > 0, mapped, np.nan)
    data = {
        "mapped_land_fraction": (
            ("lat", "lon"),
            mapped.astype("float32"),
            {"units": "1", "long_name": "fraction of the cell mapped (MCD12C1 2019 land without snow/ice and water)"},
        ),
        "cell_area": (("lat",), g.cell_area.values, {"units": "m2", "long_name": "cell area on the sphere"}),
    }
    for v, maps in fields.items():
        base = spec(v).attrs()
        for m, label in (("zone", "zone models"), ("unified", "unified model")):
            per_land = maps[m] / share / 365.0  # class-weighted, per m2 of cell -> per m2 of mapped land, per day
            attrs = {
                **base,
                "long_name": f"{base['long_name']}, SRDB annual mean, {label}",
                "cell_methods": "time: mean",
            }
            data[f"{v}_{m}"] = (("lat", "lon"), per_land.astype("float32"), attrs)
        data[f"{v}_zone_id"] = (
            ("lat", "lon"),
            maps["cell_zone"].astype("uint8"),
            {"long_name": f"environmental zone of the {v} models (from the cell's annual climate)", "units": "1"},
        )
    return xr.Dataset(data, coords=grid_coords).assign_attrs(
        Conventions="CF-1.10",
        title="fluxmap: SRDB v5 annual fluxes mapped with grid climate and MCD12C1 2019 land cover",
        source="benchmarks/skill_real_data.py srdb_global",
    )


def write_global_outputs(ds: xr.Dataset, out: Path) -> list[Path]:
    """``srdb_global.nc`` and, per flux, the zone models' map and the zone-minus-unified map (PNG)."""
    from fluxmap.io.figures import map_figure

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "srdb_global.nc"]
    # No fill value on coordinates and cell areas (CF: coordinate variables have no missing values).
    ds.to_netcdf(paths[0], encoding={v: {"_FillValue": None} for v in ("lat", "lon", "cell_area")})
    for v in ("sr", "rh"):
        if f"{v}_zone" not in ds:
            continue
        units = ds[f"{v}_zone"].attrs["units"]
        paths.append(
            map_figure(
                ds[f"{v}_zone"], out / f"map_{v}_srdb_global.png", title=ds[f"{v}_zone"].attrs["long_name"], units=units
            )
        )
        diff = (ds[f"{v}_zone"] - ds[f"{v}_unified"]).rename(f"{v}_difference")
        paths.append(
            map_figure(
                diff,
                out / f"map_{v}_srdb_global_zone_minus_unified.png",
                title=f"{v.upper()}: zone models minus unified model (SRDB, grid climate + land cover)",
                units=units,
                cmap="RdBu_r",
                symmetric=True,
            )
        )
    return paths


def global_case(data: Path, params: dict, resolution: float = 0.5, out: Path | None = None) -> dict:
    """SRDB annual SR and HR mapped over the globe by zone models and by one unified model, and the
    global totals (Pg C yr-1) of both next to the published ones. Predictors: the grid's annual
    climate and the IGBP class (the record's own MAT/MAP exist only at sites); each cell's flux is
    the class-fraction-weighted mean over its land classes (snow and ice, water left out). With
    ``out``, the maps are written there (:func:`write_global_outputs`)."""
    g = global_grid(data, resolution)
    t = S.read_srdb(data / "srdb" / "srdb-data.csv", S.SrdbRules(min_year=None))
    mapped = g.class_fraction.where(~g.igbp.isin(list(NOT_MAPPED)), 0.0).sum("igbp")
    no_climate = ~np.isfinite(np.stack([g[f].values for f in ZONE_FACTORS], axis=-1)).all(axis=-1)
    area = mapped.values * g.cell_area.values[:, None]
    result: dict = {
        "resolution_deg": resolution,
        "mapped_land_mkm2": round(float(area.sum() / 1e12), 2),
        "mapped_land_without_climate_mkm2": round(float((area * no_climate).sum() / 1e12), 3),
    }
    fields = {}
    for variable in ("sr", "rh"):
        summary, fields[variable] = map_flux(srdb_at_grid(t.observations, g, variable), g, params)
        result[variable] = {**summary, "published_pg": PUBLISHED_PG[variable]}
    for m in ("zone", "unified"):
        sr, rh = result["sr"][f"total_pg_{m}"], result["rh"][f"total_pg_{m}"]
        result[f"rh_over_sr_{m}"] = round(rh / sr, 3)
        result[f"ar_pg_{m}"] = round(sr - rh, 2)
    result["published_rh_over_sr"] = "Lu et al. 2021: 0.59 (AR 35.2 Pg C yr-1)"
    if out is not None:
        written = write_global_outputs(global_maps(g, fields, mapped.values), Path(out))
        result["outputs"] = [str(p) for p in written]
    return result


CASES = {
    "srdb_sr": lambda d, p: srdb_case(d, "sr", p),
    "srdb_hr": lambda d, p: srdb_case(d, "rh", p),
    "cosore_rs": lambda d, p: cosore_case(d, "sr", p),
    "cosore_rh": lambda d, p: cosore_case(d, "rh", p),
    "fluxnet_nee": lambda d, p: fluxnet_case(d, p),
    "srdb_global": lambda d, p: global_case(d, p),  # run() passes its ``out``
}


def run(data: Path, cases: list[str], params: dict | None = None, out: Path | None = None) -> list[dict]:
    """Each case in turn, printing its JSON line; ``out``: where ``srdb_global`` writes its maps."""
    params = params or {"n_estimators": 200, "max_depth": 4}
    results = []
    for name in cases:
        t0 = time.perf_counter()
        figures = global_case(data, params, out=out) if name == "srdb_global" else CASES[name](data, params)
        res = {"case": name, **figures, "seconds": round(time.perf_counter() - t0, 1)}
        results.append(res)
        print(json.dumps(res), flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--out", help="folder for the srdb_global case's maps (NetCDF + PNG); none written without it")
    args = p.parse_args()
    run(Path(args.data), args.cases.split(","), out=Path(args.out) if args.out else None)


if __name__ == "__main__":
    main()
