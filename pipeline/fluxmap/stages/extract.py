"""Stage 2, extract: observations aligned to the 8-day periods, predictors extracted at the
sites from the catalog's lazy cubes (one vectorized index, one computation), and the training
tables written (``extract/training_8day.parquet``, ``training_annual.parquet``,
``quarantine.parquet``, ``site_factors.parquet``, ``provenance.json``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.io.catalog import CatalogError
from fluxmap.io.progress import dask_progress
from fluxmap.io.provenance import begin_stage, cache_key, frame_sha256, is_cached, write_provenance, write_table
from fluxmap.io.sites import SiteTable
from fluxmap.science.extract import extract_at_sites, locate_sites, on_periods, to_periods
from fluxmap.science.periods import period_starts
from fluxmap.science.regrid import sample_at_points
from fluxmap.science.training import align_to_periods, site_locations, split_modes, training_tables
from fluxmap.stages.common import Log, catalog_inputs, named_damage, open_catalog

__all__ = ["extract_predictors", "extract_stage", "site_tables"]

_FILES = ["training_8day.parquet", "training_annual.parquet", "quarantine.parquet", "site_factors.parquet"]


def extract_predictors(
    cfg: RunConfig, locations: pd.DataFrame, starts: pd.DatetimeIndex | None = None
) -> tuple[tuple[xr.Dataset, xr.Dataset, dict[str, np.ndarray], dict[str, np.ndarray]], pd.Series]:
    """Predictors at every location: time-varying (time, site) and static (site); per entry, which
    locations are outside its grid and which sit on cells it masks throughout. Beside them, each
    location's predictor cells (one ``row,col`` per entry, ``-`` outside its grid): locations with
    the same key see the same predictors.

    Time axes are put on the 8-day periods (:func:`~fluxmap.science.extract.on_periods`): ``starts``
    (the periods of the observations' years); without them, sub-period series are averaged to
    their own periods and 8-day series kept, as before."""
    cat = open_catalog(cfg)
    # Dated series are cut to the observations' years before anything is decoded (an hourly
    # reanalysis of 85 years costs the graph of the years the sites need).
    period = (starts[0], starts[-1] + pd.Timedelta(days=8) - pd.Timedelta(seconds=1)) if starts is not None and len(starts) else None  # fmt: skip
    timed, static, outside = [], [], {}
    timed_names: list[str] = []
    cells = pd.Series("", index=locations.index, name="cell")
    for entry in cfg.extract.entries:
        ds = cat.open(entry, period=period)
        sep = "|" if entry != cfg.extract.entries[0] else ""
        if "fluxmap_regrid" in ds.attrs:
            # Sampled at the site as the map samples it at a cell centre (fluxmap.science.regrid).
            picked = sample_at_points(ds, locations.lat.values, locations.lon.values)
            picked = picked.assign_coords(site=("site", locations.index.values))
            outside[entry] = np.zeros(len(locations), dtype=bool)
            cells = cells + sep + [f"{a:.4f},{b:.4f}" for a, b in zip(locations.lat, locations.lon)]
        else:
            where = locate_sites(ds, locations.index.values, locations.lat.values, locations.lon.values)
            if len(locations) and not where.inside.any():
                raise CatalogError(
                    f"catalog entry {entry!r}: its grid covers none of the {len(locations)} site location(s) "
                    f"(grid {_extent(ds)}; sites lat {locations.lat.min():g} to {locations.lat.max():g}, "
                    f"lon {locations.lon.min():g} to {locations.lon.max():g})"
                )
            outside[entry] = ~where.inside
            here = np.where(where.inside, [f"{r},{c}" for r, c in zip(where.row, where.col)], "-")
            cells = cells + sep + here
            picked = extract_at_sites(ds, where, window=cfg.extract.window)
        if "time" in picked.dims:
            kind = ds.attrs.get("fluxmap_time", "series")
            if kind == "series" and starts is not None and len(starts):
                _time_coverage(entry, ds, starts)
            if starts is not None:
                picked = on_periods(picked, kind, starts)
            elif kind == "climatology":
                raise ValueError(f"entry {entry!r} is a climatology: give the periods to place it on")
            elif pd.Series(picked.time.values).diff().median() < pd.Timedelta(days=8):
                picked = to_periods(picked)
            timed.append(picked)
            timed_names.append(entry)
        else:
            static.append(picked.drop_dims([d for d in picked.dims if d != "site"], errors="ignore"))
    if cfg.extract.landcover == "mcd12c1":
        from fluxmap.io.landcover import read_mcd12c1
        from fluxmap.science.grids import landcover_at_points

        igbp = landcover_at_points(read_mcd12c1(), locations.lat.values, locations.lon.values).astype("float64")
        static.append(
            xr.Dataset(
                {"landcover": ("site", igbp, {"long_name": "IGBP class (MCD12C1 2019) at the site", "units": "1"})},
                coords={"site": locations.index.values},
            )
        )
    try:
        computed = dask.compute(*timed, *static)
    except Exception as e:  # a damaged input chunk: say which one
        raise named_damage(cat, cfg.extract.entries, e) from e
    # A site whose cell has no valid value of an entry at any time (ocean, permanent
    # snow, QC-masked throughout) cannot be trained on with that entry.
    masked = {}
    for entry, ds in zip(timed_names, computed[: len(timed)]):
        arr = ds.to_array()
        masked[entry] = arr.isnull().all([d for d in arr.dims if d != "site"]).values
    tv = (
        xr.merge(computed[: len(timed)], join="outer", compat="override", combine_attrs="drop")
        if timed
        else xr.Dataset()
    )
    st = xr.merge(computed[len(timed) :], compat="override", combine_attrs="drop") if static else xr.Dataset()
    return (tv, st, outside, masked), cells


def _extent(ds: xr.Dataset) -> str:
    """The grid's extent in its own coordinates, for messages."""
    y, x = ("lat", "lon") if "lat" in ds.dims else ("y", "x")
    return f"{y} {float(ds[y].min()):g} to {float(ds[y].max()):g}, {x} {float(ds[x].min()):g} to {float(ds[x].max()):g}"


def _time_coverage(entry: str, ds: xr.Dataset, starts: pd.DatetimeIndex) -> None:
    """A dated series that covers none of the observation periods is an error naming the entry (from its
    time axis alone, nothing read); partly covered, the periods outside are quarantined later."""
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        return
    t = pd.DatetimeIndex(ds["time"].values)
    step = pd.Series(t).diff().median() if len(t) > 1 else pd.Timedelta(days=8)
    middle = pd.DatetimeIndex(starts) + pd.Timedelta(days=4)
    if not ((middle >= t[0]) & (middle < t[-1] + step)).any():
        raise CatalogError(
            f"catalog entry {entry!r}: its time axis {t[0]:%Y-%m-%d} to {t[-1]:%Y-%m-%d} covers none of the "
            f"observation periods ({middle[0]:%Y-%m-%d} to {middle[-1]:%Y-%m-%d})"
        )


def _years(periods: pd.DataFrame, annual: pd.DataFrame) -> list[int]:
    """Every calendar year an observation touches (its predictors are put on that year's periods)."""
    years = set(pd.DatetimeIndex(periods["start"]).year) if len(periods) else set()
    for start, end in zip(pd.DatetimeIndex(annual["start"]), pd.DatetimeIndex(annual["end"])):
        years |= set(range(start.year, (end - pd.Timedelta(days=1)).year + 1))
    return sorted(int(y) for y in years)


def _inputs(cfg: RunConfig, table: SiteTable) -> dict[str, Any]:
    """The data this stage reads: the observation table it is given and the catalog's sources."""
    return {"observations": frame_sha256(table.observations), **catalog_inputs(cfg, cfg.extract.entries)}


def site_tables(
    cfg: RunConfig, table: SiteTable
) -> tuple[dict[str, pd.DataFrame], list[str], int, pd.DataFrame, pd.DataFrame]:
    """The tables of a site table with the run's catalog and rules (no files): ``training_8day``,
    ``training_annual``, ``quarantine``, ``site_factors``; the predictor names; the 8-day periods
    placed; the periods set aside for low coverage; the locations. The extract stage writes them;
    ``fluxmap score`` applies a finished run's models to them."""
    annual_obs, short_obs = split_modes(table.observations)
    periods_ok, low = align_to_periods(short_obs, min_coverage=cfg.sites.min_coverage)
    locs = site_locations(periods_ok, annual_obs)
    at_sites, cells = extract_predictors(cfg, locs, period_starts(_years(periods_ok, annual_obs)))
    tables, predictors, placed = training_tables(
        periods_ok, annual_obs, locs.assign(cell=cells), at_sites, quarantine=[low]
    )
    return tables, predictors, placed, low, locs


def extract_stage(cfg: RunConfig, table: SiteTable, *, log: Log = print) -> dict[str, pd.DataFrame]:
    """Align observations to 8-day periods, extract predictors at the sites, add derived features,
    write the training tables and return them (cached: a rerun with the same inputs reads them)."""
    out = Path(cfg.workdir) / "extract"
    out.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(cfg, table)
    settings = {"extract": dataclasses.asdict(cfg.extract), "min_coverage": cfg.sites.min_coverage}
    key = cache_key(settings, inputs)
    if is_cached(out, key, _FILES):
        log(f"extract: cached in {out}")
        return {f.split(".")[0]: pd.read_parquet(out / f) for f in _FILES}
    begin_stage(out)
    t0 = time.perf_counter()
    with dask_progress("extract: predictors at the sites", log):
        tables, predictors, placed, low, locs = site_tables(cfg, table)
    write_table(tables["site_factors"], out / _FILES[3], index=True)
    for name in _FILES[:3]:
        write_table(tables[name.split(".")[0]], out / name, index=False)
    q = tables["quarantine"]
    counts = {
        "periods_in": int(placed + len(low)),
        "training_8day": int(len(tables["training_8day"])),
        "training_annual": int(len(tables["training_annual"])),
        "quarantined": q.reason.value_counts().to_dict(),
        "locations": int(len(locs)),
        "predictors": predictors,
    }
    write_provenance(out, key, inputs=inputs, settings=settings, counts=counts)
    log(
        f"extract: {counts['training_8day']} 8-day records, {counts['training_annual']} site-years, {len(q)} "
        f"quarantined, {len(locs)} locations, {len(predictors)} predictors ({time.perf_counter() - t0:.1f} s)"
    )
    for reason, n in q.reason.value_counts().items():
        log(f"    quarantined: {n:7d}  {reason}")
    # What the models stage gets is what was written (its key hashes it): read back, as a cached run does.
    return {f.split(".")[0]: pd.read_parquet(out / f) for f in _FILES}
