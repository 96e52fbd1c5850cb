"""Stage 5, report: totals (Pg C yr-1), the SR partition, latitudinal profiles and maps, all
reductions of the lazy store, the error against the truth where one is known (the demo), and the
Markdown report (``predict/totals.csv``, ``partition.csv``, ``latitudinal_profile_*.csv``,
``map_*.png``, ``error_vs_truth*.csv``, ``report.md``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig, parse_ratio
from fluxmap.io import figures, report
from fluxmap.io.catalog import FluxCatalog
from fluxmap.io.models import load_zones
from fluxmap.io.progress import dask_progress
from fluxmap.io.provenance import write_table
from fluxmap.io.store import open_for_tables
from fluxmap.science import aggregate, products
from fluxmap.science.validate import map_errors, map_errors_by_zone
from fluxmap.stages.common import Log, open_catalog

__all__ = ["biome_classes", "report_stage"]


def _maps(ds: xr.Dataset, v: str, out: Path, land: xr.DataArray | None) -> dict[str, str]:
    """A target's mean map, zone-minus-unified map and ensemble SD map, drawn from block means of
    at most ~1,500 cells across (:func:`fluxmap.science.aggregate.display_field`), with the
    coastline of ``land`` (the same view of the land fraction). NEE and differences on a diverging
    scale centred on zero."""

    def draw(field: xr.DataArray, name: str, title: str, cmap: str, **kw: Any) -> str:
        view = aggregate.display_field(aggregate.annual_mean(field))
        return figures.map_figure(view, out / name, title=title, units="g C m-2 d-1", cmap=cmap, land=land,
                                  **kw).name  # fmt: skip

    sign = " (positive: a source to the atmosphere)" if v == "nee" else ""
    found = {
        f"{v} annual mean": draw(ds[v], f"map_{v}_mean.png", f"{v}: mean over the run (zone models){sign}",
                                 "RdBu_r" if v == "nee" else "viridis", symmetric=v == "nee")
    }  # fmt: skip
    if f"{v}_unified" in ds:
        found[f"{v} zone minus unified"] = draw(
            ds[v] - ds[f"{v}_unified"], f"map_{v}_zone_minus_unified.png",
            f"{v}: zone models minus the unified model, mean over the run", "RdBu_r", symmetric=True,
        )  # fmt: skip
    if f"{v}_sd" in ds:
        found[f"{v} uncertainty"] = draw(
            ds[f"{v}_sd"], f"map_{v}_sd.png", f"{v}: bootstrap ensemble standard deviation", "magma"
        )
    return found


def _zone_names(zone: xr.DataArray) -> dict[int, str]:
    """Zone names from CF ``flag_values`` / ``flag_meanings`` (underscores read as spaces)."""
    values, meanings = zone.attrs.get("flag_values"), str(zone.attrs.get("flag_meanings", "")).split()
    if values is None or len(meanings) != len(np.atleast_1d(values)):
        return {}
    return {int(z): m.replace("_", " ") for z, m in zip(np.atleast_1d(values), meanings)}


def _against_truth(
    cat: FluxCatalog, ds: xr.Dataset, land_fraction: xr.DataArray, names: list[str], totals: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both maps' error against the demo truth, cell by cell, over the grid and within each true zone."""
    truth = cat.open("truth")
    lf = land_fraction.load()  # the demo truth is generated in memory at demo size: compare in memory
    true_zone, zone_names = truth["zone"].values, _zone_names(truth["zone"])
    rows, by_zone = [], []
    for v in [n for n in names if n in truth]:
        t_v, p_v = truth[v].load(), ds[v].load()
        # The same cells: the unified map is predicted wherever the zone map is.
        unified = ds[f"{v}_unified"].values if f"{v}_unified" in ds else None
        ok = np.isfinite(t_v.values) & np.isfinite(p_v.values)
        tt = aggregate.annual_totals(t_v.where(np.isfinite(p_v)), lf)
        row = {
            "target": v,
            **map_errors(t_v.values, p_v.values, unified, ok),
            "predicted_total_pg_c_yr": float(totals[v].total_pg_c_yr.mean()),
            "truth_total_pg_c_yr": float(tt.total_pg_c_yr.mean()),
        }
        if unified is not None:
            row["unified_total_pg_c_yr"] = float(totals[f"{v}_unified"].total_pg_c_yr.mean())
        rows.append(row)
        by_zone.append(map_errors_by_zone(v, t_v.values, p_v.values, unified, true_zone, ok, names=zone_names))
    return pd.DataFrame(rows).set_index("target"), pd.concat(by_zone, ignore_index=True)


def _log_totals(totals: dict[str, pd.DataFrame], truth_table: pd.DataFrame | None, log: Log) -> None:
    part = [t for t in totals.values() if "time_fraction" in t and (t.time_fraction < 0.999).any()]
    note = f"; annualized from {int(part[0].days.sum())} mapped days, not a whole year" if part else ""
    log(
        f"totals (Pg C yr-1, mean over years{note}): "
        + ", ".join(
            f"{v} {t.total_pg_c_yr.mean():.2f} ({t.total_pg_c.sum():.3f} Pg C mapped)" for v, t in totals.items()
        )
    )
    for v, r in (truth_table if truth_table is not None else pd.DataFrame()).iterrows():
        log(
            f"  {v} vs the demo truth: R2 {r.r2:.3f}, RMSE {r.rmse_g_c_m2_d:.3f} g C m-2 d-1, total "
            f"{r.predicted_total_pg_c_yr:.1f} vs {r.truth_total_pg_c_yr:.1f} Pg C yr-1"
        )
        if "r2_unified" in r and np.isfinite(r.r2_unified):
            log(
                f"    unified model's map: R2 {r.r2_unified:.3f}, RMSE {r.rmse_unified_g_c_m2_d:.3f}, total "
                f"{r.unified_total_pg_c_yr:.1f} Pg C yr-1"
            )


def _zones_without_model(ds: xr.Dataset, land_fraction: xr.DataArray, k: int) -> pd.DataFrame | None:
    """Per target, the zones mapped without a model of their own (from the store's attributes),
    their land area and share of the zoned land."""
    info = json.loads(ds.attrs.get("fluxmap_zones_without_model", "{}"))
    rows = [
        (t, int(z), i["mapped_with"], i["physical_sites"].get(str(z), 0)) for t, i in info.items() for z in i["zones"]
    ]
    if not rows:
        return None
    land = aggregate.zone_land_area(ds["zone"], land_fraction, list(range(1, k + 1)))
    total = float(land.sum())
    return pd.DataFrame(
        [
            {
                "target": t,
                "zone": z,
                "physical_sites": n,
                "mapped_with": how,
                "land_km2": land[z],
                "share_of_land": land[z] / total,
            }
            for t, z, how, n in rows
        ]
    )


def _totals_table(
    totals: dict[str, pd.DataFrame], names: list[str], outside: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """``totals.csv``: per year each map's annualized total, the part from cells predicted with missing
    predictors, the part from cells outside the area of applicability and their share of the land
    area-days, the share of the year and of the land area-days covered, and the land never predicted."""
    table = pd.concat({v: t.total_pg_c_yr for v, t in totals.items()}, axis=1)
    for v in names:
        if "flagged_pg_c_yr" in totals[v]:
            table[f"{v}_from_missing_predictors"] = totals[v].flagged_pg_c_yr
        if outside and v in outside:
            table[f"{v}_from_outside_aoa"] = outside[v].total_pg_c_yr
            table[f"{v}_outside_aoa_area_fraction"] = outside[v].covered_fraction
    first = totals[names[0]]
    table["days"], table["time_fraction"] = first.days, first.time_fraction
    table["covered_fraction_min"] = pd.concat([t.covered_fraction for t in totals.values()], axis=1).min(axis=1)
    table["land_km2_never_predicted_max"] = pd.concat(
        [t.land_km2_never_predicted for t in totals.values()], axis=1
    ).max(axis=1)
    return table


def biome_classes(cat: FluxCatalog, ds: xr.Dataset) -> xr.DataArray | None:
    """The IGBP class of each cell of the 8-day store ``ds``: the catalog's land cover (the
    ``static`` entry's ``landcover``, on the store's grid) or, on a regular grid with sub-grid land
    cover, the majority class of each cell's mapped land; None without one."""
    if "landcover_majority" in ds:  # a regular grid with sub-grid land cover: the cell's majority class
        return ds["landcover_majority"].fillna(0).astype("int16")
    if "static" not in cat.entries:
        return None
    static = cat.open("static")
    if "landcover" not in static or static["landcover"].shape != (ds.sizes["lat"], ds.sizes["lon"]):
        return None
    return static["landcover"].transpose("lat", "lon").drop_vars(["lat", "lon"]).assign_coords(lat=ds.lat, lon=ds.lon)


def _totals_by_biome(
    cat: FluxCatalog, ds: xr.Dataset, land_fraction: xr.DataArray, names: list[str]
) -> pd.DataFrame | None:
    """``totals_by_biome.csv``: per target, year and IGBP class (:func:`biome_classes`), its land
    area and total; None without a class map."""
    classes = biome_classes(cat, ds)
    if classes is None:
        return None
    parts = [
        aggregate.totals_by_class(ds[v], land_fraction, classes, products.IGBP_CLASSES).assign(target=v) for v in names
    ]
    table = pd.concat(parts, ignore_index=True)
    return table[["target", "year", "class", "name", "land_km2", "total_pg_c_yr", "share_of_total"]]


def _validation_text(models_dir: Path, targets: list[str]) -> str:
    validation = (models_dir / "summary.md").read_text() if (models_dir / "summary.md").is_file() else ""
    for t in targets:
        rep = models_dir / t.replace(":", "_") / "report.md"
        if rep.is_file():
            validation += "\n" + rep.read_text().replace("# ", "### ", 1)
    return validation


def report_stage(cfg: RunConfig, written: dict[str, Any], *, log: Log = print) -> dict[str, Any]:
    """Totals, profiles, maps, the error against the truth (demo) and the report of the store that
    :func:`fluxmap.stages.predict.predict_stage` wrote (``written``: its result; empty: nothing to report)."""
    if not written:
        return {}
    store, land_fraction, targets = written["store"], written["land_fraction"], written["targets"]
    out, models_dir = store.parent, Path(cfg.workdir) / "models"
    ds = open_for_tables(store)  # read whole when small: the report is many reductions of it
    # Read whole: the land fraction too. (Not ``ds.chunks``: it raises on a lazy store whose variables
    # are chunked differently, as the 8-day store's are.)
    if all(v.chunks is None for v in ds.variables.values()):
        land_fraction = land_fraction.load()
    names = [t.split(":")[0] for t in targets if parse_ratio(t.split(":")[0]) is None]  # ratios have no totals
    totals, profiles, maps, outside = {}, {}, {}, {}
    # Every total in one pass over the store: each target's map (with the part from cells predicted
    # with a predictor missing), the unified model's map, and the flux where the unified model's
    # validation does not reach (its total and its share of the land area-days).
    fields: dict[str, tuple[xr.DataArray, xr.DataArray | None]] = {}
    for v in names:
        flag = ds.get(f"{v}_missing_predictors")
        fields[v] = (ds[v], None if flag is None else flag.astype(bool))
        if f"{v}_aoa" in ds:
            fields[f"{v}:outside_aoa"] = (ds[v].where(ds[f"{v}_aoa"] == 0), None)
        if f"{v}_unified" in ds:
            fields[f"{v}_unified"] = (ds[f"{v}_unified"], None)
        if f"{v}_sd" in ds:  # the members' SD summed over the cells: an upper bound on the total's SD
            fields[f"{v}:sd"] = (ds[f"{v}_sd"], None)
        if flag is not None:  # covered where flagged: the share of land area-days with a missing predictor
            fields[f"{v}:missing"] = (ds[v].where(flag == 1), None)
    with dask_progress("report: totals", log):
        computed = aggregate.many_annual_totals(fields, land_fraction)
    extra: dict[str, pd.Series] = {}
    for name, table in computed.items():
        if name.endswith(":outside_aoa"):
            outside[name.split(":")[0]] = table
        elif name.endswith(":sd"):
            extra[f"{name.split(':')[0]}_sd_upper_bound"] = table.total_pg_c_yr
        elif name.endswith(":missing"):
            extra[f"{name.split(':')[0]}_missing_predictors_area_fraction"] = table.covered_fraction
        else:
            totals[name] = table
    with dask_progress("report: latitudinal profiles and maps", log):
        land_view = aggregate.display_field(land_fraction).load()
        for v in names:  # lazy: profiles and the maps are reductions computed chunk by chunk
            profiles[v] = aggregate.latitudinal_profile(ds[v], land_fraction)
            write_table(profiles[v], out / f"latitudinal_profile_{v}.csv")
            maps.update(_maps(ds, v, out, land_view))
    k = load_zones(models_dir / "zones.json").k  # the legend, without a pass over the store
    z = aggregate.display_field(ds["zone"], categorical=True).load()
    maps["zones"] = figures.map_figure(
        z.where(z > 0), out / "map_zones.png", title="environmental zones", units="zone", land=land_view,
        categories={i: f"zone {i}" for i in range(1, k + 1)},
    ).name  # fmt: skip
    maps["latitudinal profiles"] = figures.profile_figure(profiles, out / "latitudinal_profiles.png").name
    unmodelled = _zones_without_model(ds, land_fraction, k)
    if unmodelled is not None:
        write_table(unmodelled, out / "zones_without_model.csv", index=False)
    table = _totals_table(totals, names, outside)
    for column, values in sorted(extra.items()):
        table[column] = values
    for v in names:  # predict.member_maps: each member's total, the spread of the total itself
        if f"{v}_members" in ds:
            with dask_progress(f"report: {v} members' totals", log):
                band = aggregate.member_band(ds[f"{v}_members"], land_fraction)
            for column in band:
                table[f"{v}_{column.removesuffix('_pg_c_yr')}"] = band[column]
    write_table(table, out / "totals.csv")
    part = aggregate.partition(totals["sr"], totals["rh"]) if {"sr", "rh"} <= set(names) else None
    if part is not None:
        write_table(part, out / "partition.csv")
    cat = open_catalog(cfg)
    with dask_progress("report: totals by biome", log):
        biomes = _totals_by_biome(cat, ds, land_fraction, names)
    if biomes is not None:
        write_table(biomes, out / "totals_by_biome.csv", index=False)
    truth_table = truth_by_zone = None
    if "truth" in cat.entries:
        with dask_progress("report: the maps against the demo truth", log):
            truth_table, truth_by_zone = _against_truth(cat, ds, land_fraction, names, totals)
        write_table(truth_table, out / "error_vs_truth.csv")
        write_table(truth_by_zone, out / "error_vs_truth_by_zone.csv", index=False)
    path = report.write_report(
        out / "report.md", totals=table, partition=part, figures=maps, validation=_validation_text(models_dir, targets),
        truth=truth_table, truth_by_zone=truth_by_zone, store=str(store), unmodelled=unmodelled,
        formats=f"Zarr v{cfg.predict.zarr_format}, consolidated metadata, CF-1.10, ACDD-1.3", names=names,
        variables=report.variable_table(ds), license=str(ds.attrs.get("license", "")),
        cell=(round(float(ds.lat[ds.sizes["lat"] // 2]), 3), round(float(ds.lon[ds.sizes["lon"] // 2]), 3)),
    )  # fmt: skip
    _log_totals(totals, truth_table, log)
    for v, t in outside.items():
        log(
            f"  {v}: {t.covered_fraction.mean():.1%} of the land area-days outside the unified model's area of "
            f"applicability, {t.total_pg_c_yr.mean():.1f} Pg C yr-1 of the total from them"
        )
    log(f"report: {path}")
    return {"store": store, "report": path, "totals": table, "error_vs_truth": truth_table}
