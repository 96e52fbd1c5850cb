"""Stage 6 (after the maps), variability: year-to-year variability of every 8-day flux map
(:mod:`fluxmap.science.variability`), written to ``variability/``:

- ``regional_anomalies.csv``: per flux, scope (global, latitude band, fitted zone, and the regions
  of ``variability.regions``: the IPCC AR6 land regions, TransCom's or a user's mask,
  :mod:`fluxmap.io.regions`), region and year the annual total, its anomaly against
  the mean over the years and, where the store keeps the ensemble members' maps, the members' 5-95 %
  band and SD of the anomaly;
- ``site_anomalies.csv`` and ``site_anomaly_scores.csv``: the sites' observed annual anomalies
  against the held-out (nested) predictions' (zone models), per flux;
- ``anomalies.png``, ``report.md`` and a section of ``predict/report.md``.

Needs two years or more of maps; skipped (with a line in the log) otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig, parse_ratio
from fluxmap.io import figures
from fluxmap.io.models import load_model, model_files
from fluxmap.io.progress import dask_progress
from fluxmap.io.provenance import write_table, write_text
from fluxmap.io.regions import region_mask
from fluxmap.io.report import replace_marked_section
from fluxmap.io.store import open_for_tables, period_mean_stores
from fluxmap.science import aggregate
from fluxmap.science.aggregate import step_days
from fluxmap.science.attribution import driver_of, shap_values
from fluxmap.science.predict import predictor_cube
from fluxmap.science.variability import (
    anomalies,
    driver_anomalies,
    member_anomaly_band,
    site_anomalies,
    site_anomaly_scores,
)
from fluxmap.stages.annual import latitude_bands
from fluxmap.stages.common import Log, catalog_inputs, open_catalog

__all__ = ["variability_stage"]

_BEGIN, _END = "<!-- fluxmap variability: begin -->", "<!-- fluxmap variability: end -->"


def _scopes(cfg: RunConfig, ds: xr.Dataset) -> dict[str, tuple[xr.DataArray, dict[int, str]]]:
    land = ds["land_fraction"]
    zones = sorted(int(z) for z in np.unique(ds["zone"].fillna(0).values) if z > 0)
    scopes = {
        "global": (xr.ones_like(land, dtype="int16"), {1: "global"}),
        "latitude band": latitude_bands(land),
        "zone": (ds["zone"].fillna(0).astype("int16"), {z: f"zone {z}" for z in zones}),
    }
    if cfg.variability.regions:
        scopes["regions"] = region_mask(cfg.variability.regions, cfg.variability.variable, ds["lat"], ds["lon"])
    return scopes


def variability_stage(cfg: RunConfig, written: dict[str, Any], *, log: Log = print) -> dict[str, Any] | None:
    """Regional and site-level annual anomalies of the 8-day maps of ``written``; without maps
    (``written`` empty), the sites' anomalies alone; None when neither has two years."""
    out = Path(cfg.workdir) / "variability"
    if not written:
        targets = [t for t in cfg.model.targets if t.endswith(":8day")]
        sites, scores = _site_anomalies(cfg, targets)
        if sites.empty:
            return None
        out.mkdir(parents=True, exist_ok=True)
        write_table(sites, out / "site_anomalies.csv", index=False)
        write_table(scores, out / "site_anomaly_scores.csv", index=False)
        write_text(out / "report.md", _report(pd.DataFrame(), scores, "", sorted(set(sites.year))))
        log("variability (sites only, no maps): " + "; ".join(
            f"{r.target} anomaly r {r.anomaly_r:.2f}, R2 {r.anomaly_r2:.2f} ({r.sites} sites)" for r in scores.itertuples()))  # fmt: skip
        return {"regional": pd.DataFrame(), "sites": sites, "scores": scores, "report": out / "report.md"}
    ds = open_for_tables(written["store"])
    years = sorted(set(pd.DatetimeIndex(ds["time"].values).year))
    if len(years) < 2:
        log(f"variability: skipped, the maps hold one year ({years[0]}): an anomaly needs two or more")
        return None
    out.mkdir(parents=True, exist_ok=True)
    land = ds["land_fraction"]
    names = [t.split(":")[0] for t in written["targets"] if parse_ratio(t.split(":")[0]) is None]
    scopes = _scopes(cfg, ds)
    parts = []
    with dask_progress("variability: regional totals per year", log):
        for v in names:
            for kind, (codes, region_names) in scopes.items():
                t = anomalies(aggregate.region_totals(ds[v], land, codes, region_names), by=["name"])
                if f"{v}_members" in ds:
                    band = member_anomaly_band(aggregate.member_region_totals(ds[f"{v}_members"], land, codes,
                                                                              region_names))  # fmt: skip
                    t = t.join(band, on=["year", "name"])
                parts.append(t.assign(variable=v, scope=kind))
    regional = pd.concat(parts, ignore_index=True)
    regional = regional[regional.land_km2 > 0].reset_index(drop=True)  # a mask's regions with no land on this map
    front = ["variable", "scope", "name", "year"]
    regional = regional[front + [c for c in regional.columns if c not in front]]
    site_table, score_table = _site_anomalies(cfg, written["targets"])
    drivers = _anomaly_drivers(cfg, written, ds, scopes, names, regional, log=log)
    if len(drivers):
        write_table(drivers, out / "anomaly_drivers.csv", index=False)
    write_table(regional, out / "regional_anomalies.csv", index=False)
    write_table(site_table, out / "site_anomalies.csv", index=False)
    write_table(score_table, out / "site_anomaly_scores.csv", index=False)
    figure = figures.plot_anomalies(regional[regional.scope.isin(["global", "latitude band"])], out / "anomalies.png")
    write_text(out / "report.md", _report(regional, score_table, figure.name, years, drivers))
    predict_report = Path(written["store"]).parent / "report.md"
    if predict_report.is_file():
        g = regional[regional.scope == "global"][["variable", "year", "total_pg_c_yr", "anomaly_pg_c_yr"]]
        replace_marked_section(predict_report, _BEGIN, _END, "\n".join([
            "## Year-to-year variability", "", "Global anomalies (Pg C yr-1; regions, the ensemble band and the "
            "sites' held-out anomalies in `../variability/report.md`):", "",
            g.to_markdown(index=False, floatfmt=".3f"), ""]))  # fmt: skip
    glob = regional[regional.scope == "global"]
    log("variability: " + "; ".join(f"{r.variable} {r.year} {r.anomaly_pg_c_yr:+.3f}" for r in glob.itertuples())
        + f" Pg C yr-1 -> {out}")  # fmt: skip
    return {"regional": regional, "sites": site_table, "scores": score_table, "report": out / "report.md"}


_SAMPLED_CELLS = 1000
"""Land cells whose every period the unified model's SHAP values are computed at for the anomalies' drivers."""


def _anomaly_drivers(
    cfg: RunConfig,
    written: dict[str, Any],
    ds: xr.Dataset,
    scopes: dict[str, tuple[xr.DataArray, dict[int, str]]],
    names: list[str],
    regional: pd.DataFrame,
    *,
    log: Log,
) -> pd.DataFrame:
    """SHAP of each region's anomaly (:func:`fluxmap.science.variability.driver_anomalies`) for every
    flux with a unified model, at ``_SAMPLED_CELLS`` land cells drawn at random (seeded) over the MODIS-like
    grid; empty on a regular prediction grid (not built there yet)."""
    if cfg.predict.resolution:
        log("variability: the anomalies' drivers are built for the MODIS-like grid only; skipped on a regular grid")
        return pd.DataFrame()
    unified = {v: model_files(Path(cfg.workdir) / "models" / f"{v}_8day", "model_unified*") for v in names}
    if not any(unified.values()):
        return pd.DataFrame()
    cat = open_catalog(cfg)
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    period_mean_stores(cubes, Path(written["store"]).parent, catalog_inputs(cfg, cfg.extract.entries))  # reused
    cube = predictor_cube(cubes)
    land = ds["land_fraction"]
    rng = np.random.default_rng(cfg.model.seed)
    ny, nx = land.sizes["lat"], land.sizes["lon"]
    i, j = rng.integers(0, ny, 40 * _SAMPLED_CELLS), rng.integers(0, nx, 40 * _SAMPLED_CELLS)
    at = {"lat": xr.DataArray(i, dims="cell"), "lon": xr.DataArray(j, dims="cell")}
    on_land = np.asarray(land.isel(at).values) > 0.5
    i, j = i[on_land][:_SAMPLED_CELLS], j[on_land][:_SAMPLED_CELLS]
    if not len(i):
        return pd.DataFrame()
    at = {"lat": xr.DataArray(i, dims="cell"), "lon": xr.DataArray(j, dims="cell")}
    area = aggregate.cell_land_area(land, land).isel(at).values
    models = {v: load_model(found[0]) for v, found in unified.items() if found}
    features = sorted({f for m in models.values() for f in m.features})
    with dask_progress(f"variability: predictors at {len(i)} sampled cells", log):
        x = cube[features].isel(at).compute()  # once for every flux's model
    table = x.to_dataframe().reset_index()
    cell_codes = {kind: np.asarray(codes.isel(at).values) for kind, (codes, _) in scopes.items()}
    parts = []
    for v, model in models.items():
        rows = table[table[model.features].notna().any(axis=1)]
        values, _ = shap_values(model, rows)
        by_driver = values.T.groupby(pd.Series({f: driver_of(f) for f in values.columns})).sum().T
        days = step_days(x["time"]).to_series().reindex(rows["time"]).to_numpy()
        weight = pd.Series(area[rows["cell"].to_numpy()] * days, index=rows.index)
        year = pd.Series(pd.DatetimeIndex(rows["time"]).year, index=rows.index)
        for kind, (_, region_names) in scopes.items():
            code = cell_codes[kind][rows["cell"].to_numpy()]
            keep = np.isin(code, list(region_names))
            if not keep.any():
                continue
            region = pd.Series([region_names[int(c)] for c in code[keep]], index=rows.index[keep])
            t = driver_anomalies(by_driver[keep], weight[keep], region, year[keep])
            land_km2 = regional[(regional.variable == v) & (regional.scope == kind)].groupby("name").land_km2.first()
            scale = t.region.map(land_km2).to_numpy() * 1e6 * 365.25 / 1e15  # g C m-2 d-1 -> Pg C yr-1
            t = t.assign(variable=v, scope=kind, contribution_pg_c_yr=t.contribution * scale,
                         anomaly_pg_c_yr=t.anomaly * scale)  # fmt: skip
            t["model_anomaly_pg_c_yr"] = t.groupby(["region", "year"]).anomaly_pg_c_yr.transform("sum")
            parts.append(t.assign(cells=len(i)))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    front = ["variable", "scope", "region", "year", "driver", "anomaly_pg_c_yr", "model_anomaly_pg_c_yr"]
    return out[front + [c for c in out.columns if c not in front]]


def _site_anomalies(cfg: RunConfig, targets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sites' observed and held-out predicted annual anomalies of each 8-day target with a
    models-stage folder, and their scores."""
    sites, scores = [], []
    for target in targets:
        path = Path(cfg.workdir) / "models" / target.replace(":", "_") / "loso_predictions.parquet"
        if not path.is_file():
            continue
        table = site_anomalies(pd.read_parquet(path), pred="pred_zone")
        if table.empty:
            continue
        sites.append(table.assign(target=target))
        scores.append({"target": target, **site_anomaly_scores(table)})
    return (pd.concat(sites, ignore_index=True) if sites else pd.DataFrame()), pd.DataFrame(scores)


def _report(
    regional: pd.DataFrame, scores: pd.DataFrame, figure: str, years: list[int], drivers: pd.DataFrame | None = None
) -> str:
    cols = [c for c in ("variable", "scope", "name", "year", "total_pg_c_yr", "anomaly_pg_c_yr",
                        "anomaly_p05_pg_c_yr", "anomaly_p95_pg_c_yr") if c in regional]  # fmt: skip
    if regional.empty:
        regional_lines = ["No maps: the sites' anomalies only."]
    else:
        broad = regional[regional.scope != "regions"]
        regional_lines = [broad[cols].to_markdown(index=False, floatfmt=".3f"), "", f"![anomalies]({figure})"]
        mask = regional[regional.scope == "regions"]
        if len(mask):
            top = mask.assign(size=mask.anomaly_pg_c_yr.abs()).sort_values("size", ascending=False)
            top = top.groupby(["variable", "year"], sort=False).head(5).sort_values(["variable", "year", "size"],
                                                                                   ascending=[True, True, False])  # fmt: skip
            regional_lines += [
                "",
                f"The {mask.name.nunique()} regions of `variability.regions` with land on the map (the IPCC AR6 land "
                "regions by default, Iturbide et al. 2020): the five largest anomalies per flux and year "
                "(`regional_anomalies.csv` has every region):",
                "",
                top[cols].to_markdown(index=False, floatfmt=".3f"),
            ]
    lines = [
        f"# Year-to-year variability, {years[0]}-{years[-1]}",
        "",
        "Annual totals of each 8-day map per region and their anomaly against the mean over the years "
        f"({len(years)} years; the anomalies of a region sum to zero over them). The band is the 5-95 % range over "
        "the bootstrap members of each member's own anomaly (where the store keeps the members' maps): it is the "
        "spread of the models fitted to resampled sites, not of the climate.",
        "",
        *regional_lines,
        "",
        "## At the sites: observed against held-out predicted annual anomalies",
        "",
        "Each site-year's mean over the 8-day periods with an observation and a held-out prediction (zone models, "
        "nested: the site was left out of every choice made for it; a year needs 23 of the 46 periods), as an "
        "anomaly against the site's own mean over its years. `annual_mean_r2` scores the annual means themselves: "
        "the gap between the two is how much less of the year-to-year variation the models capture than of the "
        "differences between sites.",
        "",
        scores.to_markdown(index=False, floatfmt=".3f") if len(scores) else "No site has two years of records.",
        "",
    ]
    if drivers is not None and len(drivers):
        top = drivers[drivers.scope.isin(["global", "latitude band"])]
        top = top.assign(size=top.anomaly_pg_c_yr.abs()).sort_values("size", ascending=False)
        top = top.groupby(["variable", "scope", "region", "year"], sort=False).head(3)
        top = top[["variable", "scope", "region", "year", "driver", "anomaly_pg_c_yr", "model_anomaly_pg_c_yr"]]
        lines += [
            "## What drives the anomalies",
            "",
            f"SHAP of the anomaly: the unified model's SHAP values at {int(drivers.cells.iloc[0])} land cells sampled "
            "at random (seeded) over every period, summed per driver, averaged per region and year weighted by land area "
            "and days, minus their mean over the years, in Pg C yr-1 over the region's land. They add up to the "
            "anomaly of the unified model at those cells (`model_anomaly_pg_c_yr`), which differs from the map's "
            "(zone models, every cell). The three largest per region and year (`anomaly_drivers.csv` has all):",
            "",
            top.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    return "\n".join(lines) + "\n"
