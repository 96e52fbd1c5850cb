"""The regular prediction grid shared by the 8-day and annual map runners: which years, which
grid, each cell's land (sub-grid land cover from MCD12C1, or the catalog's land fraction), each
cell's zone, and which catalog variables the models read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.io.models import load_zones
from fluxmap.science.features import growing_season_mean, long_term_means
from fluxmap.science.grids import LatLonGrid
from fluxmap.science.zones import zone_map

__all__ = [
    "CLIMATOLOGICAL_YEAR",
    "NOT_MAPPED",
    "map_years",
    "mapped_span",
    "mapped_starts",
    "needed_entries",
    "prediction_grid",
    "with_land",
    "zones_on_grid",
]

NOT_MAPPED = {15: "permanent snow and ice", 17: "water"}
"""IGBP classes whose area the sub-grid land-cover weighting leaves out (no soil flux is mapped there)."""
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


def mapped_starts(cfg: RunConfig, years: list[int]) -> pd.DatetimeIndex:
    """The 8-day periods mapped: every period of ``years``, or those ``predict.period`` spans."""
    from fluxmap.science.periods import period_starts

    starts = period_starts(years)
    if cfg.predict.period:
        first, last = (pd.Timestamp(str(d)) for d in cfg.predict.period)
        starts = starts[(starts + pd.Timedelta(days=7) >= first) & (starts <= last)]
        if len(starts) == 0:
            raise ValueError(f"predict.period {list(cfg.predict.period)} holds no 8-day period of the years {years}")
    return starts


def mapped_span(cfg: RunConfig) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last instant the maps need when ``predict.years`` says it (the dated series are cut
    to it before decoding); None when the years come from the data."""
    if not cfg.predict.years:
        return None
    starts = mapped_starts(cfg, sorted(cfg.predict.years))
    return starts[0], starts[-1] + pd.Timedelta(days=8) - pd.Timedelta(seconds=1)


def prediction_grid(cfg: RunConfig, cubes: dict[str, xr.Dataset]) -> tuple[np.ndarray, np.ndarray, LatLonGrid | None]:
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


def with_land(
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


def zones_on_grid(
    cfg: RunConfig, models_dir: Path, tv: xr.Dataset, cube: xr.Dataset, land: xr.DataArray
) -> xr.DataArray:
    """Each cell's zone from its long-term environment on the prediction grid (the factors the sites
    were zoned by: long-term means of the timed predictors, growing-season LSWI, static layers)."""
    zm = load_zones(models_dir / "zones.json")
    factors = long_term_means(tv) if tv.data_vars else xr.Dataset()
    if "lswi" in tv and "t2m" in tv:
        factors = factors.assign(lswi_growing_season=growing_season_mean(tv.lswi, tv.t2m))
    static = [v for v in cube.data_vars if set(cube[v].dims) == {"lat", "lon"}]
    factors = xr.merge([factors, cube[static]], compat="override", combine_attrs="drop")
    return zone_map(zm, factors, land)


def needed_entries(
    cubes: dict[str, xr.Dataset], features: list[str], factors: tuple[str, ...]
) -> dict[str, xr.Dataset]:
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
