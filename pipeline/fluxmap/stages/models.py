"""Stage 3, models: environmental zones fitted on the sites, then per target predictor
selection, zone models vs the unified model validated leave-one-site-out, the final models,
the uncertainty models, and the zone map of the whole grid (``models/``)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import dask.array as dsa
import pandas as pd
import xarray as xr

from fluxmap.config import ModelConfig, RunConfig
from fluxmap.io import report
from fluxmap.io.figures import plot_obs_pred, plot_zone_map
from fluxmap.io.landcover import global_class_shares
from fluxmap.io.models import load_zones, save_model, save_zones
from fluxmap.io.provenance import cache_key, is_cached, write_provenance
from fluxmap.science.aggregate import display_field
from fluxmap.science.comparison import (
    against_truth,
    candidate_predictors,
    qrf_loso_coverage,
    select_predictors,
    site_meteo_experiment,
    zone_vs_unified,
)
from fluxmap.science.extract import extract_at_sites, locate_sites
from fluxmap.science.train import FitSpec, FittedModel, fit
from fluxmap.science.training import truth_at_rows
from fluxmap.science.uncertainty import bootstrap_ensemble, ensemble_summary, igbp_strata
from fluxmap.science.validate import metrics, paired_site_bootstrap
from fluxmap.science.zones import fit_zones, site_zones, zone_profiles
from fluxmap.stages.common import Log, open_catalog, upstream_key, zone_map_store

__all__ = ["model_stage", "model_target"]


def model_stage(cfg: RunConfig, tables: dict[str, pd.DataFrame], *, log: Log = print) -> pd.DataFrame:
    """Zones, then :func:`model_target` for every configured target, then the zone map; cached."""
    out = Path(cfg.workdir) / "models"
    out.mkdir(parents=True, exist_ok=True)
    inputs = {"extract": upstream_key(cfg, "extract")}
    settings = dataclasses.asdict(cfg.model)
    key = cache_key(settings, inputs)
    if is_cached(out, key, ["summary.csv"]):
        log(f"models: cached in {out}")
        return pd.read_csv(out / "summary.csv")
    t0 = time.perf_counter()
    mc = cfg.model
    zone_of = _zones(mc, tables, out, log=log)
    truth = _truth_at_sites(cfg, tables)
    shares = global_class_shares() if mc.bootstrap_members else None
    rows = []
    for target in mc.targets:
        var, _, tab = target.partition(":")
        df = tables["training_annual" if tab == "annual" else "training_8day"]
        df = df[df.variable == var].copy()
        df["zone"] = df.location.map(zone_of)
        if df.site_id.nunique() < 2 * mc.min_sites:
            log(f"model {target}: skipped, only {df.site_id.nunique()} sites")
            rows.append({"target": target, "skipped": f"only {df.site_id.nunique()} sites"})
            continue
        log(f"model {target}: {len(df)} rows, {df.site_id.nunique()} sites")
        s = model_target(
            df,
            name=target,
            annual=tab == "annual",
            cfg=mc,
            out=out / target.replace(":", "_"),
            truth=(truth or {}).get(target),
            shares=shares,
            log=log,
        )
        for line in report.target_log_lines(s):
            log(line)
        rows.append(s)
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(report.summary_markdown(summary))
    log(f"models: {len(rows)} targets in {time.perf_counter() - t0:.0f} s -> {out}")
    _zone_map(cfg, out, log=log)
    write_provenance(out, key, inputs=inputs, settings=settings, summary=summary.to_dict(orient="records"))
    return summary


def _zones(mc: ModelConfig, tables: dict[str, pd.DataFrame], out: Path, *, log: Log) -> pd.Series:
    """Fit the zones on the sites that have observations; write them; every location's zone."""
    factors = tables["site_factors"]
    used = pd.concat([tables["training_8day"][["location"]], tables["training_annual"][["location"]]])
    counts = used.location.value_counts()
    zmodel, candidates = fit_zones(
        factors.loc[factors.index.isin(counts.index)],
        factors=list(mc.zone_factors),
        k_candidates=list(mc.k_candidates),
        min_sites=mc.min_sites,
        obs_per_site=counts,
        min_obs=mc.min_obs,
        restarts=mc.restarts,
        seed=mc.seed,
    )
    save_zones(zmodel, out / "zones.json")
    candidates.to_csv(out / "zone_candidates.csv", index=False)
    zone_of = site_zones(zmodel, factors)
    zone_profiles(factors, zone_of, counts, factors=list(mc.zone_factors)).to_csv(out / "zone_profiles.csv")
    log(
        f"zones: k = {zmodel.k} (silhouette {candidates[candidates.chosen].silhouette.item():.3f}, "
        f"k-means objective {zmodel.inertia:.2f}, {zmodel.components.shape[0]} principal components "
        f"explaining {zmodel.explained_variance_ratio.sum():.0%})"
    )
    return zone_of


def _truth_at_sites(cfg: RunConfig, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame] | None:
    """The catalog's ``truth`` entry (the demo world) at every training row, or None."""
    cat = open_catalog(cfg)
    if "truth" not in cat.entries:
        return None
    locs = tables["site_factors"][["lat", "lon"]]
    ds = cat.open("truth")
    where = locate_sites(ds, locs.index.values, locs.lat.values, locs.lon.values)
    tr = extract_at_sites(ds[[v for v in ds.data_vars if "time" in ds[v].dims]], where).compute()
    frame = tr.to_dataframe().reset_index().rename(columns={"site": "location", "time": "start"})
    true_zone = extract_at_sites(ds[["zone"]], where).compute()["zone"].to_series()
    return truth_at_rows(frame, true_zone, tables, cfg.model.targets)


def model_target(
    df: pd.DataFrame,
    *,
    name: str,
    annual: bool,
    cfg: ModelConfig,
    out: Path,
    truth: pd.DataFrame | None = None,
    shares: pd.Series | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Select predictors, validate zone vs unified models leave-one-site-out, fit and save the
    final models and the uncertainty models of one target; write its tables, figure and report;
    return its summary. ``truth`` (the demo world): each row's noise-free flux and true zone."""
    out.mkdir(parents=True, exist_ok=True)
    spec = FitSpec(cfg.kind, dict(cfg.params), cfg.seed, cfg.n_jobs)
    feats = candidate_predictors(df, cfg.predictors, annual=annual)
    selected, kept, dropped, paths = select_predictors(
        df, feats, correlation_threshold=cfg.correlation_threshold, backward=cfg.backward_elimination,
        spec=dataclasses.replace(spec, params=dict(cfg.selection_params)), log=log,
    )  # fmt: skip
    for model_name, path in paths.items():
        path.to_csv(out / f"selection_{model_name}.csv", index=False)
    (out / "selected_predictors.json").write_text(
        json.dumps({"selected": selected, "dropped_for_correlation": dropped}, indent=1)
    )
    d, table, cmp = zone_vs_unified(df, selected, spec, log=log)
    table.to_csv(out / "loso_metrics.csv", index=False)
    cmp.to_csv(out / "zone_vs_unified.csv", index=False)
    plot_obs_pred(
        d[d.pred_zone.notna() & d.pred_unified.notna()],
        {"zone models": "pred_zone", "unified model": "pred_unified"},
        out / "obs_vs_pred.png",
        title=f"{name}: leave-one-site-out",
    )
    overall = cmp.set_index("group").loc["all"]
    summary: dict[str, Any] = {
        "target": name,
        "rows": int(len(df)),
        "sites": int(df.site_id.nunique()),
        "zones": sorted(int(z) for z in df.zone.unique()),
        "candidates": len(feats),
        "after_correlation_filter": len(kept),
        "r2_zone": float(overall.r2_zone),
        "r2_unified": float(overall.r2_unified),
        "rmse_zone": float(overall.rmse_zone),
        "rmse_unified": float(overall.rmse_unified),
        "zone_wins_in": [str(g) for g in cmp[(cmp.better == "zone") & (cmp.group != "all")].group],
    }
    boot = paired_site_bootstrap(d, "pred_zone", "pred_unified", seed=cfg.seed)
    summary.update({f"{k}_zone_minus_unified": v for k, v in boot.items() if k.startswith(("delta", "share"))})
    pieces = None
    if truth is not None:
        truth_summary, pieces = against_truth(d, truth, selected["unified"], spec)
        summary.update(truth_summary)
    meteo = site_meteo_experiment(d, selected["unified"], cfg.site_meteo, spec)
    if meteo is not None:
        meteo[0].to_csv(out / "rs_vs_site_meteo.csv", index=False)
        r2 = meteo[0].r2.tolist()
        summary.update({"r2_rs_only": r2[0], "r2_rs_plus_meteo": r2[1], "meteo_sites": meteo[1]})
    _final_models(cfg, d, selected, {"target": name, "zones": summary["zones"]}, out)
    coverage = qrf_loso_coverage(d, selected["unified"], cfg.quantiles, seed=cfg.seed)
    summary.update({"qrf_interval": f"{cfg.quantiles[0]:g}-{cfg.quantiles[-1]:g}", "qrf_loso_coverage": coverage})
    if cfg.bootstrap_members and shares is not None and d.site_id.nunique() >= 5:
        summary.update(_ensemble(cfg, d, selected["unified"], shares, out))
    (out / "report.md").write_text(
        report.target_report(name, cmp, boot, summary, truth=pieces, meteo=meteo, quantiles=cfg.quantiles)
    )
    cols = ("site_id", "location", "zone", "true_zone", "start", "end", "value", "pred_zone", "pred_unified")
    d[[c for c in (*cols, "pred_true_zones") if c in d]].to_parquet(out / "loso_predictions.parquet")
    return summary


def _final_fit(cfg: ModelConfig, df: pd.DataFrame, features: list[str], meta: dict[str, Any]) -> FittedModel:
    """Fit a final model; large tables train on the active Dask cluster with xgboost.dask."""
    params = dict(cfg.params)
    if cfg.kind == "xgboost" and len(df) >= cfg.distributed_rows:
        try:
            from distributed import get_client

            client = get_client()
        except ValueError:
            client = None
        if client is not None:
            import dask.dataframe as dd

            from fluxmap.science.train import fit_xgboost_dask

            parts = max(1, len(client.scheduler_info()["workers"]))
            ddf = dd.from_pandas(df[[*features, "value"]], npartitions=parts)
            return fit_xgboost_dask(
                client, ddf, ddf["value"], features=features, seed=cfg.seed, params=params, metadata=meta
            )
    return fit(cfg.kind, df, df.value, features=features, seed=cfg.seed, params=params, metadata=meta)


def _final_models(
    cfg: ModelConfig, d: pd.DataFrame, selected: dict[str, list[str]], meta: dict[str, Any], out: Path
) -> None:
    """The unified model and each zone's model on every row, saved with ``meta`` and their LOSO scores."""
    unified_meta = {**meta, "zone": "unified", "loso": metrics(d.value.to_numpy(), d.pred_unified.to_numpy())}
    save_model(_final_fit(cfg, d, selected["unified"], unified_meta), out / "model_unified")
    for z, part in d.groupby("zone"):
        zone_meta = {**meta, "zone": int(z), "loso": metrics(part.value.to_numpy(), part.pred_zone.to_numpy())}
        save_model(_final_fit(cfg, part, selected[f"zone_{z}"], zone_meta), out / f"model_zone_{z}")


def _ensemble(cfg: ModelConfig, d: pd.DataFrame, features: list[str], shares: pd.Series, out: Path) -> dict[str, Any]:
    """The bootstrap ensemble (members saved as ``ensemble_NN``), its scores and spread."""
    strata = igbp_strata(d)
    members, scores = bootstrap_ensemble(
        d.assign(_stratum=strata)[strata.notna()],
        features=features,
        strata="_stratum",
        shares=shares,
        n_members=cfg.bootstrap_members,
        kind=cfg.kind,
        seed=cfg.seed,
        params=dict(cfg.params),
    )
    scores.to_csv(out / "bootstrap_scores.csv", index=False)
    for i, member in enumerate(members):
        save_model(member, out / f"ensemble_{i:02d}")
    return ensemble_summary(members, scores, d)


def _zone_map(cfg: RunConfig, out: Path, *, log: Log) -> None:
    """The fitted zones applied to every cell of the catalog's grid (chunk by chunk, to Zarr), its
    figure, and (demo) its agreement with the world's true zones."""
    cat = open_catalog(cfg)
    needed = ("era5", "mod09a1", "static")
    if not set(needed) <= set(cat.entries):
        log(f"zone map: skipped, the catalog lacks {sorted(set(needed) - set(cat.entries))}")
        return
    store, _ = zone_map_store(cfg, {e: cat.open(e) for e in needed}, out, out)
    zmap = xr.open_zarr(store, consolidated=True)["zone"]
    k = load_zones(out / "zones.json").k
    counts = dsa.bincount(zmap.data.ravel(), minlength=k + 1).compute()
    plot_zone_map(display_field(zmap, categorical=True).load(), k, out / "zone_map.png")
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
