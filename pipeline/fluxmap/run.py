"""Stage runners: read inputs, call the pure stage functions, write outputs, cache.

Each stage writes its outputs and a ``provenance.json`` (inputs with checksums,
settings, counts, package versions) and is skipped when a previous run with the
same inputs and settings left complete outputs.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from fluxmap import __version__, sites
from fluxmap._files import sha256
from fluxmap.config import RunConfig, SourceSpec
from fluxmap.extract import extract_at_sites, locate_sites, to_periods
from fluxmap.features import annual_stats, doy_features
from fluxmap.periods import aggregate_to_periods

__all__ = ["demo_sources", "extract_stage", "model_stage", "predict_stage", "predict_to_zarr", "sites_stage"]


# --- caching and provenance ----------------------------------------------------------------


def _versions() -> dict[str, str]:
    import dask as _d
    import pandas as _p
    import xarray as _x
    import zarr as _z

    return {
        "fluxmap": __version__,
        "xarray": _x.__version__,
        "dask": _d.__version__,
        "pandas": _p.__version__,
        "zarr": _z.__version__,
        "numpy": np.__version__,
    }


def _key(settings: Any, inputs: dict[str, str]) -> str:
    blob = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cached(out: Path, key: str, files: list[str]) -> bool:
    prov = out / "provenance.json"
    if not prov.is_file() or not all((out / f).is_file() for f in files):
        return False
    return json.loads(prov.read_text()).get("cache_key") == key


def _write_provenance(out: Path, key: str, **content: Any) -> None:
    (out / "provenance.json").write_text(
        json.dumps(
            {"cache_key": key, "created": pd.Timestamp.now(tz="UTC").isoformat(), "versions": _versions(), **content},
            indent=1,
            default=str,
        )
    )


# --- sites --------------------------------------------------------------------------------


def demo_sources(root: str | Path) -> tuple[SourceSpec, ...]:
    """The demo world's site files as stage inputs.

    The COSORE half-hourly files are left out here because the daily file already
    holds those datasets' daily means (reading both would count them twice).
    """
    s = Path(root) / "sites"
    return (
        SourceSpec("srdb", str(s / "srdb" / "srdb-data.csv")),
        SourceSpec(
            "cosore_daily",
            str(s / "cosore" / "cosore_daily_all.csv"),
            (("summary", str(s / "cosore" / "cosore_datasets_summary.csv")),),
        ),
        SourceSpec(
            "fluxnet",
            str(s / "fluxnet" / "FLX_*_FULLSET_DD_*.csv"),
            (("site_info", str(s / "fluxnet" / "siteinfo_demo.csv")),),
        ),
    )


def _read_source(spec: SourceSpec, *, srdb_min_year: float | None) -> list[sites.SiteTable]:
    kw = spec.kwargs()
    if spec.kind == "srdb":
        rules = sites.SrdbRules(min_year=srdb_min_year)
        return [sites.read_srdb(spec.path, rules)]
    if spec.kind == "cosore_daily":
        return [sites.read_cosore_daily(spec.path, kw["summary"])]
    if spec.kind == "cosore_halfhourly":
        return [
            sites.read_cosore_halfhourly(
                spec.path, dataset=kw.get("dataset", Path(spec.path).stem), summary=kw["summary"]
            )
        ]
    if spec.kind == "fluxnet":
        files = sorted(glob.glob(spec.path))
        if not files:
            raise FileNotFoundError(f"no FLUXNET files match {spec.path}")
        info = pd.read_csv(kw["site_info"])
        opts = {k: v for k, v in kw.items() if k != "site_info"}
        return [sites.read_fluxnet(f, site_info=info, **opts) for f in files]
    if spec.kind == "fluxnet_monthly":
        return [sites.read_fluxnet_monthly_table(spec.path)]
    if spec.kind == "csv":
        return [sites.read_generic_csv(spec.path, kw["mapping"], source=kw.get("source", "csv"))]
    raise ValueError(
        f"unknown site source kind {spec.kind!r} (srdb, cosore_daily, cosore_halfhourly, fluxnet, fluxnet_monthly, csv)"
    )


def _input_files(specs: tuple[SourceSpec, ...]) -> list[Path]:
    files: list[Path] = []
    for spec in specs:
        files += [Path(f) for f in sorted(glob.glob(spec.path))] or [Path(spec.path)]
        files += [Path(v) for k, v in spec.options if k in ("summary", "site_info")]
    return files


def sites_stage(cfg: RunConfig, specs: tuple[SourceSpec, ...], *, log=print) -> sites.SiteTable:
    """Read every site source into ``sites/observations.parquet`` and ``sites/quarantine.parquet``."""
    out = Path(cfg.workdir) / "sites"
    out.mkdir(parents=True, exist_ok=True)
    inputs = {str(p): sha256(p) for p in _input_files(specs)}
    settings = {"sources": [dataclasses.asdict(s) for s in specs], "srdb_min_year": cfg.sites.srdb_min_year}
    key = _key(settings, inputs)
    files = ["observations.parquet", "quarantine.parquet"]
    if _cached(out, key, files):
        log(f"sites: cached in {out}")
        report = json.loads((out / "provenance.json").read_text())["report"]
        return sites.SiteTable(pd.read_parquet(out / files[0]), pd.read_parquet(out / files[1]), report)
    t0 = time.perf_counter()
    tables = [t for spec in specs for t in _read_source(spec, srdb_min_year=cfg.sites.srdb_min_year)]
    table = sites.concat(tables)
    table.observations.to_parquet(out / files[0], index=False)
    table.quarantine.astype({"row": "Int64"}).to_parquet(out / files[1], index=False)
    _write_provenance(out, key, inputs=inputs, settings=settings, report=table.report)
    n_in = sum(r["candidates"] for r in table.report.values())
    log(
        f"sites: {n_in} candidate observations -> {len(table.observations)} kept, "
        f"{len(table.quarantine)} quarantined ({time.perf_counter() - t0:.1f} s)"
    )
    for reason, n in table.quarantine.reason.value_counts().items():
        log(f"    quarantined: {n:7d}  {reason}")
    return table


# --- extract --------------------------------------------------------------------------------

_KEYS = ["site_id", "lat", "lon", "variable", "source", "method", "ecosystem"]
_VALUES = ["value", "tsoil_c", "swc", "tair_c", "quality"]


def _split_modes(obs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Annual records (site-years, >= 360 days) and everything shorter."""
    days = (obs["end"] - obs["start"]).dt.total_seconds() / 86400.0
    return obs[days >= 360].copy(), obs[days < 360].copy()


def _extract_predictors(
    cfg: RunConfig, locations: pd.DataFrame
) -> tuple[xr.Dataset, xr.Dataset, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Predictors at every location: time-varying (time, site) and static (site); per entry, which
    locations are outside its grid and which sit on cells it masks throughout."""
    from fluxmap.catalog import load_catalog

    ex = cfg.extract
    path, params = _catalog_location(cfg)
    cat = load_catalog(path, **params)
    timed, static, outside = [], [], {}
    timed_names: list[str] = []
    for entry in ex.entries:
        ds = cat.open(entry)
        where = locate_sites(ds, locations.index.values, locations.lat.values, locations.lon.values)
        outside[entry] = ~where.inside
        picked = extract_at_sites(ds, where, window=ex.window)
        if "time" in picked.dims:
            step = pd.Series(picked.time.values).diff().median()
            if step < pd.Timedelta(days=8):
                picked = to_periods(picked)
            timed.append(picked)
            timed_names.append(entry)
        else:
            static.append(picked.drop_dims([d for d in picked.dims if d != "site"], errors="ignore"))
    computed = dask.compute(*timed, *static)
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
    return tv, st, outside, masked


def _catalog_location(cfg: RunConfig) -> tuple[Path, dict[str, str]]:
    from fluxmap.catalog import builtin_catalog

    ex = cfg.extract
    params = dict(ex.catalog_params)
    if ex.catalog == "demo" and "DEMO_ROOT" not in params:
        params["DEMO_ROOT"] = str(Path(cfg.workdir) / "demo-world")
    path = Path(ex.catalog) if ex.catalog.endswith((".yaml", ".yml")) else builtin_catalog(ex.catalog)
    return path, params


def _frame(ds: xr.Dataset, dims: list[str]) -> pd.DataFrame:
    return ds.to_dataframe().reset_index() if ds.data_vars else pd.DataFrame(columns=dims)


def extract_stage(cfg: RunConfig, table: sites.SiteTable, *, log=print) -> dict[str, pd.DataFrame]:
    """Align observations to 8-day periods, extract predictors at the sites, add derived features.

    Writes ``extract/training_8day.parquet`` (one row per site, flux and period),
    ``extract/training_annual.parquet`` (site-years, for annual-mode models),
    ``extract/quarantine.parquet`` and ``extract/provenance.json``.
    """
    out = Path(cfg.workdir) / "extract"
    out.mkdir(parents=True, exist_ok=True)
    sites_prov = Path(cfg.workdir) / "sites" / "provenance.json"
    inputs = {"sites": json.loads(sites_prov.read_text())["cache_key"] if sites_prov.is_file() else "none"}
    catalog_path, params = _catalog_location(cfg)
    inputs["catalog"] = sha256(catalog_path)
    # Local stores are identified by their own checksum lists (the demo world's world.json).
    world = Path(params.get("DEMO_ROOT", "")) / "world.json"
    if "DEMO_ROOT" in params and world.is_file():
        inputs["demo_world"] = sha256(world)
    settings = {"extract": dataclasses.asdict(cfg.extract), "min_coverage": cfg.sites.min_coverage}
    key = _key(settings, inputs)
    files = ["training_8day.parquet", "training_annual.parquet", "quarantine.parquet", "site_factors.parquet"]
    if _cached(out, key, files):
        log(f"extract: cached in {out}")
        return {f.split(".")[0]: pd.read_parquet(out / f) for f in files}
    t0 = time.perf_counter()
    quarantine: list[pd.DataFrame] = []
    annual_obs, short_obs = _split_modes(table.observations)
    periods_ok, low = aggregate_to_periods(
        short_obs, keys=_KEYS, value_cols=_VALUES, min_coverage=cfg.sites.min_coverage
    )
    quarantine.append(
        low.assign(
            reason=f"coverage below {cfg.sites.min_coverage:g} of the 8-day period",
            detail="coverage=" + low.coverage.round(3).astype(str),
        )
    )
    locs = pd.concat([periods_ok[["lat", "lon"]], annual_obs[["lat", "lon"]]]).drop_duplicates().reset_index(drop=True)
    locs.index = pd.Index([f"L{i:05d}" for i in range(len(locs))], name="location")
    tv, st, outside, masked = _extract_predictors(cfg, locs)
    loc_of = {(a, b): i for i, (a, b) in zip(locs.index, zip(locs.lat, locs.lon))}

    def with_location(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(location=[loc_of[(a, b)] for a, b in zip(df.lat, df.lon)])

    periods_ok, annual_obs = with_location(periods_ok), with_location(annual_obs)
    off = {entry: set(locs.index[mask]) for entry, mask in outside.items()}

    def drop_outside(df: pd.DataFrame) -> pd.DataFrame:
        for entry, bad in off.items():
            m = df.location.isin(bad)
            quarantine.append(df[m].assign(reason=f"outside the predictor grid ({entry})", detail=""))
            df = df[~m]
        return df

    periods_ok, annual_obs = drop_outside(periods_ok), drop_outside(annual_obs)
    for entry, mask in masked.items():
        bad = set(locs.index[mask])
        for name, df in (("periods", periods_ok), ("annual", annual_obs)):
            m = df.location.isin(bad)
            quarantine.append(df[m].assign(reason=f"masked cell: no valid {entry} data at the site", detail=""))
            if name == "periods":
                periods_ok = df[~m]
            else:
                annual_obs = df[~m]
    static = _frame(st, ["site"]).rename(columns={"site": "location"})
    static = static[[c for c in static.columns if c != "igbp"]].drop_duplicates("location") if len(static) else static

    # 8-day table: time-varying predictors, their annual statistics, the seasonal transform.
    if tv.data_vars:
        feats = xr.merge([tv, annual_stats(tv), doy_features(tv.time)])
        pred = feats.to_dataframe().reset_index().rename(columns={"site": "location", "time": "start"})
        predictor_cols = [c for c in pred.columns if c not in ("location", "start")]
        eight = periods_ok.merge(pred, on=["location", "start"], how="left", indicator=True)
        no_time = eight["_merge"] == "left_only"
        quarantine.append(eight[no_time].assign(reason="no predictors for the period", detail=""))
        eight = eight[~no_time].drop(columns="_merge")
        dynamic = [c for c in tv.data_vars]
        masked = eight[dynamic].isna().all(axis=1)
        quarantine.append(
            eight[masked].assign(reason="masked cell: no valid predictor at the site and period", detail="")
        )
        eight = eight[~masked]
    else:
        eight, predictor_cols = periods_ok, []
    eight = eight.merge(static, on="location", how="left")

    # Annual table: site-year means/max/min of the time-varying predictors.
    annual = _annual_table(annual_obs, tv, quarantine)
    annual = annual.merge(static, on="location", how="left")
    q = (
        pd.concat(
            [
                d.reindex(columns=["site_id", "variable", "source", "start", "end", "location", "reason", "detail"])
                for d in quarantine
                if len(d)
            ],
            ignore_index=True,
        )
        if any(len(d) for d in quarantine)
        else pd.DataFrame(columns=["site_id", "variable", "source", "start", "end", "location", "reason", "detail"])
    )
    factors = _site_factors(tv, static, locs)
    factors.to_parquet(out / files[3], index=True)
    eight.to_parquet(out / files[0], index=False)
    annual.to_parquet(out / files[1], index=False)
    q.to_parquet(out / files[2], index=False)
    counts = {
        "periods_in": int(len(periods_ok) + len(low)),
        "training_8day": int(len(eight)),
        "training_annual": int(len(annual)),
        "quarantined": q.reason.value_counts().to_dict(),
        "locations": int(len(locs)),
        "predictors": predictor_cols + list(static.columns.drop("location", errors="ignore")),
    }
    _write_provenance(out, key, inputs=inputs, settings=settings, counts=counts)
    log(
        f"extract: {len(eight)} 8-day records, {len(annual)} site-years, {len(q)} quarantined, "
        f"{len(locs)} locations, {len(counts['predictors'])} predictors ({time.perf_counter() - t0:.1f} s)"
    )
    for reason, n in q.reason.value_counts().items():
        log(f"    quarantined: {n:7d}  {reason}")
    return {"training_8day": eight, "training_annual": annual, "quarantine": q, "site_factors": factors}


def _site_factors(tv: xr.Dataset, static: pd.DataFrame, locs: pd.DataFrame) -> pd.DataFrame:
    """Long-term environment of every location (for zoning): means over the whole record,
    growing-season LSWI, and the static layers."""
    from fluxmap.features import growing_season_mean, long_term_means

    parts = [locs]
    if tv.data_vars:
        lt = long_term_means(tv)
        if "lswi" in tv and "t2m" in tv:
            lt = lt.assign(lswi_growing_season=growing_season_mean(tv.lswi, tv.t2m))
        parts.append(lt.to_dataframe().rename_axis("location"))
    if len(static):
        parts.append(static.set_index("location"))
    out = pd.concat(parts, axis=1)
    out.index.name = "location"
    return out


def _annual_table(obs: pd.DataFrame, tv: xr.Dataset, quarantine: list[pd.DataFrame]) -> pd.DataFrame:
    if not len(obs):
        return obs.assign(location=pd.Series(dtype="object"))
    if not tv.data_vars:
        return obs
    by_year = tv.groupby("time.year")
    stats = xr.merge(
        [
            by_year.mean().rename({v: f"{v}_ann_mean" for v in tv.data_vars}),
            by_year.max().rename({v: f"{v}_ann_max" for v in tv.data_vars}),
            by_year.min().rename({v: f"{v}_ann_min" for v in tv.data_vars}),
        ]
    )
    frame = stats.to_dataframe().reset_index().rename(columns={"site": "location"})
    years = [list(range(s.year, max(e.year, s.year + 1))) for s, e in zip(obs.start, obs.end)]
    exploded = obs.assign(year=years).explode("year").astype({"year": "int64"})
    merged = exploded.merge(frame, on=["location", "year"], how="left", indicator=True)
    cols = [c for c in frame.columns if c not in ("location", "year")]
    merged["_row"] = np.repeat(np.arange(len(obs)), [len(y) for y in years])
    has_all = merged.groupby("_row")["_merge"].agg(lambda m: (m == "both").all())
    agg = merged.groupby("_row")[cols].mean()
    result = obs.reset_index(drop=True).join(agg)
    no_years = ~has_all.reindex(range(len(obs)), fill_value=False).to_numpy()
    quarantine.append(result[no_years].assign(reason="no predictors for every study year", detail=""))
    return result[~no_years].reset_index(drop=True)


# --- models ---------------------------------------------------------------------------------


def _demo_truth(cfg: RunConfig, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame] | None:
    """Per target, the noise-free truth (``value``) and the world's true zone (``zone``) at each
    training row, when the catalog has a ``truth`` entry (the demo)."""
    from fluxmap.catalog import load_catalog

    path, params = _catalog_location(cfg)
    cat = load_catalog(path, **params)
    if "truth" not in cat.entries:
        return None
    locs = tables["site_factors"][["lat", "lon"]]
    ds = cat.open("truth")
    where = locate_sites(ds, locs.index.values, locs.lat.values, locs.lon.values)
    tr = extract_at_sites(ds[[v for v in ds.data_vars if "time" in ds[v].dims]], where).compute()
    frame = tr.to_dataframe().reset_index().rename(columns={"site": "location", "time": "start"})
    true_zone = extract_at_sites(ds[["zone"]], where).compute()["zone"].to_series()
    out = {}
    for target in cfg.model.targets:
        var, _, tab = target.partition(":")
        if var not in frame:
            continue
        if tab == "annual":
            df = tables["training_annual"]
            per_year = frame.assign(year=frame.start.dt.year).groupby(["location", "year"])[var].mean()
            vals = [
                np.nanmean([per_year.get((loc, y), np.nan) for y in range(s.year, max(e.year, s.year + 1))])
                for loc, s, e in zip(df.location, df.start, df.end)
            ]
            value = pd.Series(vals, index=df.index)
        else:
            df = tables["training_8day"]
            m = df[["location", "start"]].merge(frame[["location", "start", var]], on=["location", "start"], how="left")
            value = pd.Series(m[var].to_numpy(), index=df.index)
        out[target] = pd.DataFrame({"value": value, "zone": df.location.map(true_zone).to_numpy()}, index=df.index)
    return out


def _catalog_inputs(cfg: RunConfig) -> dict[str, str]:
    """Checksums that identify the catalog's data: the catalog file and, for a demo, its world."""
    path, params = _catalog_location(cfg)
    return {
        "catalog": sha256(path),
        **({"demo_world": sha256(Path(params["DEMO_ROOT"]) / "world.json")} if "DEMO_ROOT" in params else {}),
    }


_ZONE_KEY = "fluxmap_zone_map_key"


def _zone_map_key(cfg: RunConfig, models_dir: Path, chunks: dict[str, int]) -> str:
    return _key({"zone_map": chunks}, {"zones": sha256(models_dir / "zones.json"), **_catalog_inputs(cfg)})


def _stored_key(store: Path) -> str | None:
    try:
        return xr.open_zarr(store, consolidated=True).attrs.get(_ZONE_KEY)
    except (OSError, ValueError, KeyError):
        return None


def zone_map_store(
    cfg: RunConfig, cubes: dict[str, xr.Dataset], models_dir: Path, out: Path, *, reuse: bool = True
) -> tuple[Path, bool]:
    """The zone of every cell of the catalog's grid as a chunked Zarr store, made once.

    The models stage writes ``models/zone_map.zarr``; the predict stage uses it when it was made
    from the same ``zones.json``, catalog and demo world and with the same chunks (the key is kept
    in the store's attributes), and otherwise writes ``out/zone.zarr`` itself. ``cubes`` are the
    catalog's decoded entries (ERA5 at its own time step). Computed chunk by chunk: memory is
    bounded by the chunk, not the grid. Returns the store and whether it was reused (``reuse=False``
    always writes it, e.g. to time it).
    """
    from fluxmap.features import grid_zone_factors
    from fluxmap.zones import ZoneModel, assign_zones

    base = cubes["mod09a1"]
    chunks = {d: int(base.chunksizes[d][0]) if base.chunks else base.sizes[d] for d in ("lat", "lon")}
    key = _zone_map_key(cfg, models_dir, chunks)
    for store in (models_dir / "zone_map.zarr", out / "zone.zarr"):
        if reuse and store.is_dir() and _stored_key(store) == key:
            return store, True
    store = out / ("zone_map.zarr" if out == models_dir else "zone.zarr")
    land = cubes["static"]["land_fraction"] > 0.5
    zone = assign_zones(ZoneModel.from_json(models_dir / "zones.json"), grid_zone_factors(cubes))
    zone = zone.where(land, 0).astype("uint8").chunk(chunks)
    zone.attrs.update({"long_name": "environmental zone (0: not land)", "units": "1"})
    zone.to_dataset(name="zone").assign_attrs({_ZONE_KEY: key}).to_zarr(
        store, mode="w", zarr_format=2, consolidated=True
    )
    return store, False


def _zone_map(cfg: RunConfig, out: Path, *, log=print) -> None:
    """The fitted zones applied to every cell of the catalog's grid (chunk by chunk, to Zarr)."""
    import dask.array as dsa

    from fluxmap.aggregate import display_field
    from fluxmap.catalog import load_catalog
    from fluxmap.zones import ZoneModel

    path, params = _catalog_location(cfg)
    cat = load_catalog(path, **params)
    needed = ("era5", "mod09a1", "static")
    if not set(needed) <= set(cat.entries):
        log(f"zone map: skipped, the catalog lacks {sorted(set(needed) - set(cat.entries))}")
        return
    store, _ = zone_map_store(cfg, {e: cat.open(e) for e in needed}, out, out)
    zmap = xr.open_zarr(store, consolidated=True)["zone"]
    k = ZoneModel.from_json(out / "zones.json").k
    counts = dsa.bincount(zmap.data.ravel(), minlength=k + 1).compute()
    _plot_zone_map(display_field(zmap, categorical=True).load(), k, out / "zone_map.png")
    msg = f"zone map: cells per zone { {z: int(c) for z, c in enumerate(counts) if c} } (0 = not land) -> {store}"
    if "truth" in cat.entries:
        from sklearn.metrics import adjusted_rand_score

        # The demo world's truth is generated in memory at demo size, so comparing in memory is too.
        true = cat.open("truth")["zone"].values
        z = zmap.values
        land = z > 0
        ari = adjusted_rand_score(true[land], z[land])
        (out / "zone_map_vs_truth.json").write_text(json.dumps({"adjusted_rand_index": ari, "cells": int(land.sum())}))
        msg += f"; agreement with the demo world's true zones: adjusted Rand index {ari:.2f}"
    log(msg)


def _plot_zone_map(zmap: xr.DataArray, k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    cmap = plt.get_cmap("tab10", k)
    im = ax.pcolormesh(zmap.lon, zmap.lat, zmap.where(zmap > 0), cmap=cmap, vmin=0.5, vmax=k + 0.5, shading="auto")
    fig.colorbar(im, ax=ax, ticks=range(1, k + 1), label="zone")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(
        "environmental zones (PCA + k-means on long-term climate, vegetation, elevation, soil carbon)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def model_stage(cfg: RunConfig, tables: dict[str, pd.DataFrame], *, log=print) -> pd.DataFrame:
    """Zones, selection, zone vs unified models with LOSO validation, uncertainty; cached."""
    from fluxmap.modelling import model_stage_tables, settings

    out = Path(cfg.workdir) / "models"
    out.mkdir(parents=True, exist_ok=True)
    prov = Path(cfg.workdir) / "extract" / "provenance.json"
    inputs = {"extract": json.loads(prov.read_text())["cache_key"] if prov.is_file() else "none"}
    key = _key(settings(cfg), inputs)
    if _cached(out, key, ["summary.csv"]):
        log(f"models: cached in {out}")
        return pd.read_csv(out / "summary.csv")
    truth = _demo_truth(cfg, tables)
    summary = model_stage_tables(cfg, tables, out, truth=truth, log=log)
    _zone_map(cfg, out, log=log)
    _write_provenance(out, key, inputs=inputs, settings=settings(cfg), summary=summary.to_dict(orient="records"))
    return summary


# --- predict, write, aggregate, report -------------------------------------------------------------


def _git_revision() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def predict_stage(cfg: RunConfig, *, log=print) -> dict[str, Any]:
    """Predict every 8-day target over the grid, write the CF Zarr (resumable), totals and the report."""
    written = predict_to_zarr(cfg, log=log)
    if not written:
        return {}
    return _aggregate_and_report(cfg, written["store"], written["land_fraction"], written["targets"], log=log)


def predict_to_zarr(cfg: RunConfig, *, log=print) -> dict[str, Any]:
    """The prediction itself: catalog -> predictors -> zones -> models -> the CF Zarr store (resumable).

    Returns the store path, the targets written, the land fraction, ``cells``: the land
    cell-periods of the grid, each predicted once per target, and ``seconds`` of the two phases
    (ERA5 8-day means + the zone map when the models stage's cannot be used; prediction + write),
    and ``zone_map``, the zone store used. An empty dict when there are no 8-day models.
    """
    from fluxmap.catalog import load_catalog
    from fluxmap.predict import ModelFiles, predict_cube, predictor_cube
    from fluxmap.write import (
        block_counts,
        block_index,
        cf_dataset,
        create_store,
        done_regions,
        fill_regions,
        land_regions,
        region_slices,
    )

    models_dir = Path(cfg.workdir) / "models"
    out = Path(cfg.workdir) / "predict"
    out.mkdir(parents=True, exist_ok=True)
    targets = [
        t
        for t in cfg.model.targets
        if t.endswith(":8day") and (models_dir / t.replace(":", "_") / "model_unified.ubj").is_file()
    ]
    if not targets:
        log(f"predict: skipped, no 8-day models in {models_dir} (targets {list(cfg.model.targets)})")
        return {}
    path, params = _catalog_location(cfg)
    cat = load_catalog(path, **params)
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    inputs = _catalog_inputs(cfg)
    # Sub-period sources (ERA5) are averaged to the 8-day periods once, on their own grid, which
    # is small next to the MODIS grid; every block then reads them instead of the daily cube.
    # They are written (not persisted: a worker lost later loses nothing that cannot be reread)
    # and reused by a rerun with the same inputs. The zone map is the models stage's when it was
    # made from the same zones, catalog and chunks (see zone_map_store).
    t0 = time.perf_counter()
    zone_store, zone_reused = zone_map_store(cfg, cubes, models_dir, out)
    sub = [
        e
        for e, c in cubes.items()
        if "time" in c.dims and pd.Series(c.time.values).diff().median() < pd.Timedelta(days=8)
    ]
    prep_key = _key({"sub_period": sub}, inputs)
    prep_file = out / "prepared.json"
    prepared = [out / f"{e}_8day.zarr" for e in sub]
    reuse = (
        prep_file.is_file()
        and json.loads(prep_file.read_text()).get("key") == prep_key
        and all(p.is_dir() for p in prepared)
    )
    if not reuse:
        prep_file.unlink(missing_ok=True)
        for e in sub:
            means = to_periods(cubes[e])
            means = means.chunk({"time": max(means.chunksizes["time"])})  # Zarr wants regular chunks
            for v in means.variables.values():
                v.encoding = {}
            means.to_zarr(out / f"{e}_8day.zarr", mode="w", zarr_format=2, consolidated=True)
        prep_file.write_text(json.dumps({"key": prep_key, "files": [p.name for p in prepared]}, indent=1))
    for e in sub:
        cubes[e] = xr.open_zarr(out / f"{e}_8day.zarr", consolidated=True)
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
    preds = []
    for t in targets:
        ref = ModelFiles.of(
            t.split(":")[0],
            models_dir / t.replace(":", "_"),
            ensemble=cfg.predict.ensemble,
            unified_map=cfg.predict.unified,
        )
        preds.append(predict_cube(predictors, zone, ref))
    pred = xr.merge(preds, combine_attrs="drop")
    model_files = {str(p.relative_to(models_dir)): sha256(p) for p in sorted(models_dir.rglob("*.ubj"))}
    key = _key({"predict": dataclasses.asdict(cfg.predict), "targets": targets}, {"models": model_files, **inputs})
    attrs = {
        "title": "fluxmap gridded carbon fluxes",
        "institution": "fluxmap",
        "source": "fluxmap " + __version__,
        "history": f"fluxmap {__version__} predict",
        "references": "https://github.com/ (fluxmap README)",
        "fluxmap_run_key": key,
        "fluxmap_config": json.dumps(dataclasses.asdict(cfg), default=str, sort_keys=True),
        "fluxmap_versions": json.dumps(_versions(), sort_keys=True),
        "fluxmap_model_sha256": json.dumps(model_files, sort_keys=True),
        "fluxmap_input_sha256": json.dumps(inputs, sort_keys=True),
        "fluxmap_git_revision": _git_revision(),
    }
    ds = cf_dataset(pred, zone=zone, attrs=attrs)
    store = out / "fluxmap.zarr"
    fresh = True
    if store.exists():
        try:
            fresh = xr.open_zarr(store, consolidated=True).attrs.get("fluxmap_run_key") != key
        except (OSError, ValueError, KeyError):
            fresh = True
    if fresh:
        create_store(store, ds, zarr_format=cfg.predict.zarr_format, chunks=chunks)
    all_regions = region_slices(dict(ds.sizes), chunks)

    # Largest amount of work (land cell-periods) first: the last regions to finish are the small
    # ones, so workers are not left idle behind one big region at the end (LPT scheduling).
    def work(r: dict[str, slice]) -> int:
        return int(land_cells[block_index(r, chunks)]) * (r["time"].stop - r["time"].start)

    regions = sorted(land_regions(all_regions, land_cells, chunks), key=lambda r: -work(r))
    before = len(done_regions(store))
    t0 = time.perf_counter()
    with _progress(len(regions), "predict + write regions", log) as bar:
        n = fill_regions(
            store, ds, regions, batch=cfg.predict.regions_per_batch, progress=lambda done, total: bar(done)
        )
    write_s = time.perf_counter() - t0
    log(
        f"predict: {n} regions written ({before} already done, {len(all_regions) - len(regions)} without land "
        f"skipped) in {write_s:.1f} s -> {store}"
    )
    _suspect_blocks(store, regions, targets, land_fraction > 0.5, land_cells, chunks, out, log=log)
    cells = sum(work(r) for r in regions)
    return {
        "store": store,
        "zone_map": zone_store,
        "targets": targets,
        "land_fraction": land_fraction,
        "cells": cells,
        "seconds": {"prepare": prepare_s, "predict_and_write": write_s},
    }


def _suspect_blocks(
    store: Path,
    regions: list[dict[str, slice]],
    targets: list[str],
    land: xr.DataArray,
    land_cells: np.ndarray,
    chunks: dict[str, int],
    out: Path,
    *,
    threshold: float = 0.9,
    log=print,
) -> pd.DataFrame:
    """Blocks where predictors were missing over most land cells: a corrupt or empty input chunk
    (fill values everywhere, a NaN storm) shows up here with its position, instead of silently
    lowering the map's quality. Written to ``suspect_blocks.csv``. The flags are counted per block
    in one dask computation (on the cluster when there is one); only the counts come back.
    ``land_cells`` are the land cells per (lat, lon) block (:func:`fluxmap.write.block_counts`)."""
    from fluxmap.write import block_counts, block_index

    ds = xr.open_zarr(store, consolidated=True)
    mask = land.transpose("lat", "lon").data
    counts = {}
    for t in targets:
        flag = ds[f"{t.split(':')[0]}_missing_predictors"].transpose("time", "lat", "lon").data
        # Plain arrays (no coordinates): the store and the land mask share the grid by construction.
        counts[t] = block_counts(xr.DataArray((flag == 1) & mask[None], dims=("time", "lat", "lon")), chunks)
    rows = []
    for t in targets:
        for r in regions:
            i, j = block_index(r, chunks)
            cells = land_cells[i, j] * (r["time"].stop - r["time"].start)
            frac = float(counts[t][r["time"].start // chunks["time"], i, j] / cells) if cells else 0.0
            if frac > threshold:
                rows.append(
                    {
                        "target": t,
                        "time": f"{r['time'].start}:{r['time'].stop}",
                        "lat": f"{r['lat'].start}:{r['lat'].stop}",
                        "lon": f"{r['lon'].start}:{r['lon'].stop}",
                        "missing_fraction": round(frac, 3),
                    }
                )
    table = pd.DataFrame(rows, columns=["target", "time", "lat", "lon", "missing_fraction"])
    table.to_csv(out / "suspect_blocks.csv", index=False)
    for _, r in table.iterrows():
        log(
            f"predict: WARNING {r.target} block time {r.time}, lat {r.lat}, lon {r.lon}: predictors missing in "
            f"{r.missing_fraction:.0%} of land cells (corrupt or empty input chunk?); predicted with the models' "
            "defaults and flagged in *_missing_predictors"
        )
    return table


class _progress:
    """A tqdm bar when installed and the output is a terminal, else log lines every 10 %."""

    def __init__(self, total: int, desc: str, log) -> None:
        self.total, self.desc, self.log, self.bar, self.last = total, desc, log, None, -1

    def __enter__(self):
        import sys

        try:
            from tqdm import tqdm

            if sys.stderr.isatty():
                self.bar = tqdm(total=self.total, desc=self.desc)
        except ImportError:
            pass
        return self.update

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()
        elif self.total and (10 * done // self.total) > self.last:
            self.last = 10 * done // self.total
            self.log(f"  {self.desc}: {done}/{self.total}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _map_errors(true: np.ndarray, pred: np.ndarray, unified: np.ndarray | None, sel: np.ndarray) -> dict[str, float]:
    """R2/RMSE/bias of the zone models' map ``pred`` (and of the unified model's, when given) against
    the demo truth over the cells ``sel``."""
    from fluxmap.validate import metrics

    m = metrics(true[sel], pred[sel])
    row = {"r2": m["r2"], "rmse_g_c_m2_d": m["rmse"], "bias_g_c_m2_d": m["bias"], "cells_x_periods": m["n"]}
    if unified is not None:
        mu = metrics(true[sel], unified[sel])
        row.update({"r2_unified": mu["r2"], "rmse_unified_g_c_m2_d": mu["rmse"], "bias_unified_g_c_m2_d": mu["bias"]})
    return row


def _errors_by_true_zone(
    v: str, true: np.ndarray, pred: np.ndarray, unified: np.ndarray | None, zone: np.ndarray, ok: np.ndarray
) -> pd.DataFrame:
    """:func:`_map_errors` within each of the world's true zones (``zone``, lat x lon): where the zone
    models gain or lose. ``ok``: the cells (time, lat, lon) both the truth and the map have."""
    from fluxmap.demo import ZONES

    rows = []
    for z in sorted(int(z) for z in np.unique(zone[zone > 0])):
        sel = ok & (zone == z)[None]
        if sel.any():
            name = ZONES.get(z, "").split(":")[0]
            rows.append({"target": v, "true_zone": z, "zone_name": name, **_map_errors(true, pred, unified, sel)})
    return pd.DataFrame(rows)


def _aggregate_and_report(
    cfg: RunConfig, store: Path, land_fraction: xr.DataArray, targets: list[str], *, log=print
) -> dict[str, Any]:
    from fluxmap import aggregate, report
    from fluxmap.catalog import load_catalog
    from fluxmap.zones import ZoneModel

    path, params = _catalog_location(cfg)
    cat = load_catalog(path, **params)

    out = store.parent
    ds = xr.open_zarr(store, consolidated=True)
    names = [t.split(":")[0] for t in targets]
    totals, profiles, figures = {}, {}, {}
    for v in names:
        flux = ds[v]  # lazy: totals, profiles and the maps are reductions computed chunk by chunk
        totals[v] = aggregate.annual_totals(flux, land_fraction)
        profiles[v] = aggregate.latitudinal_profile(flux, land_fraction)
        profiles[v].to_csv(out / f"latitudinal_profile_{v}.csv")
        # Figures are drawn from block means of at most ~1,500 cells across (aggregate.display_field).
        figures[f"{v} annual mean"] = report.map_figure(
            aggregate.display_field(aggregate.annual_mean(flux)),
            out / f"map_{v}_mean.png",
            title=f"{v}: mean over the run (zone models)",
            units="g C m-2 d-1",
            cmap="RdBu_r" if v == "nee" else "viridis",
        ).name
        if f"{v}_unified" in ds:
            u = ds[f"{v}_unified"]
            totals[f"{v}_unified"] = aggregate.annual_totals(u, land_fraction)
            figures[f"{v} zone minus unified"] = report.map_figure(
                aggregate.display_field(aggregate.annual_mean(flux - u)),
                out / f"map_{v}_zone_minus_unified.png",
                title=f"{v}: zone models minus the unified model, mean over the run",
                units="g C m-2 d-1",
                cmap="RdBu_r",
                symmetric=True,
            ).name
        if f"{v}_sd" in ds:
            figures[f"{v} uncertainty"] = report.map_figure(
                aggregate.display_field(aggregate.annual_mean(ds[f"{v}_sd"])),
                out / f"map_{v}_sd.png",
                title=f"{v}: bootstrap ensemble standard deviation",
                units="g C m-2 d-1",
                cmap="magma",
            ).name
    models_dir = Path(cfg.workdir) / "models"
    k = ZoneModel.from_json(models_dir / "zones.json").k  # the colour scale, without a pass over the store
    z = aggregate.display_field(ds["zone"], categorical=True).load()
    figures["zones"] = report.map_figure(
        z.where(z > 0),
        out / "map_zones.png",
        title="environmental zones",
        units="zone",
        cmap="tab10",
        vmin=0.5,
        vmax=k + 0.5,
    ).name
    figures["latitudinal profiles"] = report.profile_figure(profiles, out / "latitudinal_profiles.png").name
    table = pd.concat({v: t.total_pg_c_yr for v, t in totals.items()}, axis=1)
    table["covered_fraction_min"] = pd.concat([t.covered_fraction for t in totals.values()], axis=1).min(axis=1)
    table.to_csv(out / "totals.csv")
    part = aggregate.partition(totals["sr"], totals["rh"]) if {"sr", "rh"} <= set(names) else None
    if part is not None:
        part.to_csv(out / "partition.csv")
    truth_table = truth_by_zone = None
    if "truth" in cat.entries:
        truth = cat.open("truth")
        lf = land_fraction.load()  # the demo truth is generated in memory at demo size: compare in memory
        true_zone = truth["zone"].values
        rows, by_zone = [], []
        for v in names:
            if v not in truth:
                continue
            t_v = truth[v].load()
            p_v = ds[v].load()
            # The same cells: the unified map is predicted wherever the zone map is.
            unified = ds[f"{v}_unified"].values if f"{v}_unified" in ds else None
            ok = np.isfinite(t_v.values) & np.isfinite(p_v.values)
            tt = aggregate.annual_totals(t_v.where(np.isfinite(p_v)), lf)
            row = {
                "target": v,
                **_map_errors(t_v.values, p_v.values, unified, ok),
                "predicted_total_pg_c_yr": float(totals[v].total_pg_c_yr.mean()),
                "truth_total_pg_c_yr": float(tt.total_pg_c_yr.mean()),
            }
            if unified is not None:
                row["unified_total_pg_c_yr"] = float(totals[f"{v}_unified"].total_pg_c_yr.mean())
            rows.append(row)
            by_zone.append(_errors_by_true_zone(v, t_v.values, p_v.values, unified, true_zone, ok))
        truth_table = pd.DataFrame(rows).set_index("target")
        truth_table.to_csv(out / "error_vs_truth.csv")
        truth_by_zone = pd.concat(by_zone, ignore_index=True)
        truth_by_zone.to_csv(out / "error_vs_truth_by_zone.csv", index=False)
    validation = (models_dir / "summary.md").read_text() if (models_dir / "summary.md").is_file() else ""
    for t in targets:
        rep = models_dir / t.replace(":", "_") / "report.md"
        if rep.is_file():
            validation += "\n" + rep.read_text().replace("# ", "### ", 1)
    fmt = f"Zarr v{cfg.predict.zarr_format}, consolidated metadata, CF-1.10"
    path = report.write_report(
        out / "report.md",
        totals=table,
        partition=part,
        figures=figures,
        validation=validation,
        truth=truth_table,
        truth_by_zone=truth_by_zone,
        store=str(store),
        formats=fmt,
    )
    log(
        "totals (Pg C yr-1, mean over years): "
        + ", ".join(f"{v} {t.total_pg_c_yr.mean():.1f}" for v, t in totals.items())
    )
    if truth_table is not None:
        for v, r in truth_table.iterrows():
            log(
                f"  {v} vs the demo truth: R2 {r.r2:.3f}, RMSE {r.rmse_g_c_m2_d:.3f} g C m-2 d-1, total "
                f"{r.predicted_total_pg_c_yr:.1f} vs {r.truth_total_pg_c_yr:.1f} Pg C yr-1"
            )
            if "r2_unified" in r and np.isfinite(r.r2_unified):
                log(
                    f"    unified model's map: R2 {r.r2_unified:.3f}, RMSE {r.rmse_unified_g_c_m2_d:.3f}, total "
                    f"{r.unified_total_pg_c_yr:.1f} Pg C yr-1"
                )
    log(f"report: {path}")
    return {"store": store, "report": path, "totals": table, "error_vs_truth": truth_table}
