"""Stage 3, models: environmental zones fitted on the sites, then per target predictor
selection, zone models vs the unified model validated leave-one-site-out, the final models,
the uncertainty models, and the zone map of the whole grid (``models/``)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import ModelConfig, RunConfig
from fluxmap.io import report
from fluxmap.io.figures import plot_experiments, plot_frontier, plot_obs_pred, plot_zone_map
from fluxmap.io.landcover import global_class_shares
from fluxmap.io.models import (
    load_model,
    load_zones,
    save_applicability,
    save_model,
    save_zones,
    save_zones_without_model,
)
from fluxmap.io.progress import Progress, dask_progress
from fluxmap.io.provenance import (
    begin_stage,
    cache_key,
    frame_sha256,
    is_cached,
    write_provenance,
    write_table,
    write_text,
)
from fluxmap.science.aggregate import display_field
from fluxmap.science.applicability import fit_applicability, importance_weights
from fluxmap.science.comparison import (
    Protocol,
    ZoneFitter,
    candidate_predictors,
    composed_scores,
    selection_stability,
    summarize,
    validate,
    validation_tasks,
    zone_fallbacks,
)
from fluxmap.science.extract import extract_at_sites, locate_sites
from fluxmap.science.frontier import Candidate, frontier_table
from fluxmap.science.selection import correlation_filter
from fluxmap.science.train import FitSpec, FittedModel, fit
from fluxmap.science.training import ratio_table, truth_at_rows
from fluxmap.science.uncertainty import bootstrap_samples, ensemble_summary, fit_member, igbp_strata
from fluxmap.science.validate import metrics, physical_sites
from fluxmap.science.zones import ZonesNotFound, fit_zones, site_zones, zone_profiles
from fluxmap.stages.attribution import attribute_target
from fluxmap.stages.common import Log, catalog_inputs, open_catalog, zone_map_store

__all__ = ["fit_parallelism", "model_stage", "model_target", "physical_site_groups"]


def model_stage(cfg: RunConfig, tables: dict[str, pd.DataFrame], *, log: Log = print) -> pd.DataFrame:
    """Zones, then :func:`model_target` for every configured target while the zone map is computed
    beside them (a thread submitting its chunks to the same scheduler); cached."""
    out = Path(cfg.workdir) / "models"
    out.mkdir(parents=True, exist_ok=True)
    # The data read: the training tables it is given, and the catalog's sources (the zone map, the truth).
    used = ("training_8day", "training_annual", "site_factors")
    inputs = {**{name: frame_sha256(tables[name]) for name in used}, **catalog_inputs(cfg)}
    # model.inversion trains in a stage of its own after this one: changing it leaves these models valid.
    settings = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "inversion"}
    key = cache_key(settings, inputs)
    if is_cached(out, key, ["summary.csv", "zones.json"]):
        log(f"models: cached in {out} (key and every output file's checksum match)")
        return pd.read_csv(out / "summary.csv")
    begin_stage(out)
    t0 = time.perf_counter()
    mc, parallel = fit_parallelism(cfg.model, log=log)
    zone_of, zones = _zones(mc, tables, out, log=log)
    # The zone map needs only the zones: it is computed (chunk by chunk, on the same workers) while
    # the targets validate, not after them.
    background = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="zone map")
    zone_map = background.submit(_zone_map, cfg, out, log=log)
    try:
        summary = _targets(cfg, mc, parallel, tables, zone_of, zones, out, log=log)
        zone_map.result()
    finally:
        background.shutdown(wait=True)
    log(f"models: {len(summary)} targets in {time.perf_counter() - t0:.0f} s -> {out}")
    write_provenance(out, key, inputs=inputs, settings=settings, summary=summary.to_dict(orient="records"))
    return summary


def _targets(
    cfg: RunConfig,
    mc: ModelConfig,
    parallel: Any,
    tables: dict[str, pd.DataFrame],
    zone_of: pd.Series,
    zones: ZoneFitter,
    out: Path,
    *,
    log: Log,
) -> pd.DataFrame:
    """:func:`model_target` for every configured target, then the composed ratios; the summary table."""
    truth = _truth_at_sites(cfg, tables)
    shares = global_class_shares() if mc.bootstrap_members else None
    rows = []
    ratios = {r: (n, d) for r, n, d in mc.ratio_targets()}
    for target in mc.all_targets():
        var, _, tab = target.partition(":")
        df = tables["training_annual" if tab == "annual" else "training_8day"]
        if target in ratios:
            df = _ratio_rows(df, target, ratios[target], out, log=log)
        else:
            df = df[df.variable == var].copy()
        df["zone"] = df.location.map(zone_of)
        df["site_group"] = df.location.map(physical_site_groups(mc, tables["site_factors"], df.location))
        n_sites = df.site_group.nunique()
        if n_sites < 2 * mc.min_sites:
            log(f"model {target}: skipped, only {n_sites} physical sites")
            rows.append({"target": target, "skipped": f"only {n_sites} physical sites"})
            continue
        log(
            f"model {target}: {len(df)} rows, {df.site_id.nunique()} site ids at {df.location.nunique()} "
            f"locations = {n_sites} physical sites (within {mc.group_distance_km:g} km or on shared cells)"
        )
        with parallel():
            s = model_target(
                df,
                name=target,
                annual=tab == "annual",
                cfg=mc,
                out=out / target.replace(":", "_"),
                zones=zones,
                truth=(truth or {}).get(target),
                shares=shares,
                log=log,
            )
        for line in report.target_log_lines(s):
            log(line)
        rows.append(s)
    for r, (num, den) in ratios.items():
        _composed(mc, out, r, num, den, rows, log=log)
    summary = pd.DataFrame(rows)
    write_table(summary, out / "summary.csv", index=False)
    write_text(out / "summary.md", report.summary_markdown(summary))
    return summary


def fit_parallelism(mc: ModelConfig, *, log: Log) -> tuple[ModelConfig, Any]:
    """Where the folds, selection steps, searches and ensemble members run: on the active Dask
    cluster when there is one (joblib's Dask backend, as many at once as the workers have threads;
    every task is seeded, so the results are the local run's), else ``model.n_jobs`` local processes.
    Returns the settings to use and a context manager to run each target in."""
    import contextlib

    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return mc, contextlib.nullcontext
    import joblib

    threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    log(f"models: folds, searches and ensemble members as tasks on the cluster ({threads} worker threads)")
    return dataclasses.replace(mc, n_jobs=max(1, threads)), functools.partial(joblib.parallel_config, backend="dask")


def _ratio_rows(table: pd.DataFrame, target: str, pair: tuple[str, str], out: Path, *, log: Log) -> pd.DataFrame:
    """The ratio target's rows (records giving both fluxes); the pairs left out are written with
    their reasons to ``<ratio target>/ratio_excluded.csv``."""
    num, den = (t.partition(":")[0] for t in pair)
    df, excluded = ratio_table(table, num, den, target.partition(":")[0])
    folder = out / target.replace(":", "_")
    folder.mkdir(parents=True, exist_ok=True)
    write_table(excluded, folder / "ratio_excluded.csv", index=False)
    log(
        f"ratio {target}: {len(df)} records give both {num} and {den}"
        + (f"; {len(excluded)} rows left out (reasons in {folder / 'ratio_excluded.csv'})" if len(excluded) else "")
    )
    return df.copy()


def _composed(
    mc: ModelConfig, out: Path, ratio: str, num: str, den: str, rows: list[dict[str, Any]], *, log: Log
) -> None:
    """Score the numerator both ways on the paired records (its own model; the denominator's times
    the ratio's), choose how it is mapped (``model.ratio_maps``) and write ``composed.csv`` and
    ``mapping.json`` in the numerator's folder; the choice and scores join its summary row."""
    folders = {t: out / t.replace(":", "_") for t in (num, den, ratio)}
    if not all(
        (f / "loso_predictions.parquet").is_file() and (f / "model_unified.json").is_file() for f in folders.values()
    ):
        log(f"ratio {ratio}: {num} mapped by its own model ({num}, {den} or the ratio has no model)")
        return
    pred = {t: pd.read_parquet(f / "loso_predictions.parquet") for t, f in folders.items()}
    paired, table = composed_scores(pred[num], pred[den], pred[ratio], seed=mc.seed)
    write_table(table, folders[num] / "composed.csv", index=False)
    write_table(paired, folders[num] / "composed_predictions.parquet")
    # The map is the zone models' (the unified model's where a zone has none): choose on those.
    kind = "zone" if len(table) and (table.models == "zone").any() else "unified"
    uni = table[table.models == kind].set_index("way") if len(table) else pd.DataFrame()
    if mc.ratio_maps == "validated":
        if uni.empty:
            way, why = "independent", "too few paired records to score both ways"
        else:
            better = uni.loc["composed", "rmse"] <= uni.loc["independent", "rmse"]
            way = "ratio" if better else "independent"
            why = (
                f"nested RMSE of the {kind} models on {int(uni.loc['composed', 'n'])} paired records: composed "
                f"{uni.loc['composed', 'rmse']:.3f}, independent {uni.loc['independent', 'rmse']:.3f}"
            )
    else:
        way, why = mc.ratio_maps, "model.ratio_maps"
    note = {"mapped_as": way, "denominator": den, "ratio": ratio, "why": why}
    write_text(folders[num] / "mapping.json", json.dumps(note, indent=1))
    row = next(r for r in rows if r.get("target") == num)
    row["mapped_as"] = f"{den.partition(':')[0]} x {ratio.partition(':')[0]}" if way == "ratio" else "own model"
    if not uni.empty:
        for w in ("independent", "composed"):
            row[f"paired_{w}_r2"] = float(uni.loc[w, "r2"])
            row[f"paired_{w}_rmse"] = float(uni.loc[w, "rmse"])
        c = uni.loc["composed"]
        for k in ("delta_r2", "delta_r2_lo", "delta_r2_hi"):
            row[f"paired_composed_minus_independent_{k.removeprefix('delta_')}"] = float(
                c[f"{k}_composed_minus_independent"]
            )
    log(f"ratio {ratio}: {num} mapped as " + (f"{den} x {ratio}" if way == "ratio" else "its own model") + f" ({why})")


def physical_site_groups(mc: ModelConfig, factors: pd.DataFrame, used: pd.Series) -> pd.Series:
    """The physical site (``P00000``, ...) of each location in ``used``."""
    f = factors.loc[sorted(set(used))]
    cells = f["cell"].to_numpy() if "cell" in f else None
    return pd.Series(physical_sites(f.lat, f.lon, distance_km=mc.group_distance_km, cells=cells), index=f.index)


def _fit_zones_without(
    mc: ModelConfig, factors: pd.DataFrame, counts: pd.Series, held_out: set[str] | frozenset[str] = frozenset()
) -> tuple[Any, pd.DataFrame]:
    """Zones (and the table of candidate k) fitted on the locations with observations, but ``held_out``."""
    used = factors.loc[factors.index.isin(counts.index) & ~factors.index.isin(held_out)]
    return fit_zones(
        used,
        factors=list(mc.zone_factors),
        k_candidates=list(mc.k_candidates),
        min_sites=mc.min_sites,
        obs_per_site=counts,
        min_obs=mc.min_obs,
        restarts=mc.restarts,
        seed=mc.seed,
    )


def _refit_zones(mc: ModelConfig, factors: pd.DataFrame, counts: pd.Series, held_out: set[str]) -> pd.Series:
    """Every location's zone, the zones (and their k) fitted without the ``held_out`` locations; all
    0 (no zone: the unified model scores the fold) when no k meets the minima without them."""
    try:
        zmodel, _ = _fit_zones_without(mc, factors, counts, held_out)
    except ZonesNotFound:
        return pd.Series(0, index=factors.index)
    return site_zones(zmodel, factors)


def _zones(mc: ModelConfig, tables: dict[str, pd.DataFrame], out: Path, *, log: Log) -> tuple[pd.Series, ZoneFitter]:
    """Fit the zones on the sites that have observations; write them; every location's zone, and
    the zone fitter the nested validation refits them with inside each outer fold."""
    factors = tables["site_factors"]
    used = pd.concat([tables["training_8day"][["location"]], tables["training_annual"][["location"]]])
    counts = used.location.value_counts()
    zmodel, candidates = _fit_zones_without(mc, factors, counts)
    save_zones(zmodel, out / "zones.json")
    write_table(candidates, out / "zone_candidates.csv", index=False)
    zone_of = site_zones(zmodel, factors)
    write_table(zone_profiles(factors, zone_of, counts, factors=list(mc.zone_factors)), out / "zone_profiles.csv")
    log(
        f"zones: k = {zmodel.k} (silhouette {candidates[candidates.chosen].silhouette.item():.3f}, "
        f"k-means objective {zmodel.inertia:.2f}, {zmodel.components.shape[0]} principal components "
        f"explaining {zmodel.explained_variance_ratio.sum():.0%})"
    )
    return zone_of, functools.partial(_refit_zones, mc, factors, counts)


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


def _protocol(cfg: ModelConfig, variable: str, annual: bool, grid: tuple[Candidate, ...] = ()) -> Protocol:
    """The validation protocol of one target from the model settings (``grid``: the configurations
    searched inside each outer fold)."""
    spec = FitSpec(cfg.kind, dict(cfg.params), cfg.seed, 1, group="site_group", folds=cfg.outer_folds)
    t, p = cfg.climate_predictors
    return Protocol(
        grid=grid,
        search_folds=cfg.search_folds,
        spec=spec,
        selection=FitSpec(cfg.kind, dict(cfg.selection_params), cfg.seed, 1, folds=cfg.inner_folds),
        correlation_threshold=cfg.correlation_threshold,
        backward=cfg.backward_elimination or cfg.exhaustive_selection,
        exhaustive=cfg.exhaustive_selection,
        exhaustive_max=cfg.exhaustive_max,
        min_zone_sites=cfg.min_zone_sites,
        reference=dict(cfg.references).get(variable, "mean"),
        climate=(f"{t}_ann_mean", f"{p}_ann_mean") if annual else (t, p),
        site_meteo=cfg.site_meteo,
        quantiles=cfg.quantiles,
    )


def model_target(
    df: pd.DataFrame,
    *,
    name: str,
    annual: bool,
    cfg: ModelConfig,
    out: Path,
    zones: ZoneFitter,
    truth: pd.DataFrame | None = None,
    shares: pd.Series | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Validate one target with every choice nested in outer folds of whole physical sites (zones,
    predictors, zone vs unified models, references, site meteorology, quantile forest); then
    select the final predictors on all rows, fit and save the final and uncertainty models; write
    the tables, figure and report; return the summary. ``zones``: refits the zones without given
    locations; ``truth`` (the demo world): each row's noise-free flux and true zone."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in [
        *out.glob("model_*"),
        *out.glob("ensemble_*"),
        *out.glob("applicability.npz"),
        *out.glob("mapping.json"),
        *out.glob("composed*"),
    ]:  # an earlier run's models (another family, zones)
        stale.unlink()
    feats = candidate_predictors(df, cfg.predictors, annual=annual)
    grid = tuple(Candidate(k, tuple(p)) for k, p in cfg.grid) if cfg.choice == "frontier" else ()
    protocol = _protocol(cfg, name.partition(":")[0], annual, grid)
    if cfg.exhaustive_selection:
        # Refused here, on all rows, not inside an outer fold after hours of work.
        kept = correlation_filter(df, feats, threshold=cfg.correlation_threshold)[0]
        if len(kept) > cfg.exhaustive_max:
            raise ValueError(
                f"model {name}: {len(kept)} predictors pass the correlation filter ({', '.join(kept)}); the "
                f"complete-combination search takes at most model.exhaustive_max = {cfg.exhaustive_max} "
                f"({2 ** len(kept) - 1} combinations otherwise): list fewer model.predictors or raise the limit"
            )
    if truth is not None:
        df = df.assign(truth=truth["value"].reindex(df.index), true_zone=truth["zone"].reindex(df.index))
    log(
        f"  nested validation: {cfg.outer_folds or 'one site per'} outer folds of whole physical sites"
        + (f", {len(grid)} model configurations searched inside each" if grid else "")
    )
    sites = int(df.site_group.nunique())
    folds = min(cfg.outer_folds, sites) if cfg.outer_folds > 0 else sites  # as group_folds deals them
    tasks = validation_tasks(folds, protocol)
    what = f"{folds} outer folds in two steps, the final selection" + (" and search, the costs" if grid else "")
    with Progress(tasks, f"{name}: validation tasks ({what})", log) as bar:
        v = validate(df, feats, protocol, zones=zones, n_jobs=cfg.n_jobs, progress=lambda i, _: bar(i))
    d, chosen, rates, final = v.d, v.chosen, v.rates, v.final
    assert final is not None  # validate(final=True)
    for line in final.log:
        log(line)
    selected, kept, dropped, path = final.selected, final.kept, final.dropped, final.path
    write_table(path, out / "selection_unified.csv", index=False)
    write_table(chosen, out / "outer_folds.csv", index=False)
    write_table(selection_stability(chosen, selected), out / "selection_stability.csv", index=False)
    write_text(
        out / "selected_predictors.json",
        json.dumps({"selected": selected, "dropped_for_correlation": dropped}, indent=1),
    )
    family, frontier = (cfg.kind, dict(cfg.params)), None
    if grid and final.search is not None:
        pick = final.pick
        log(
            "  predictions per second per core, each timed once on a core of its own: "
            + ", ".join(f"{c.label} {r / 1e6:.2f} M" for c, r in zip(grid, rates))
        )
        write_table(final.search, out / "model_search.csv", index=False)
        frontier = frontier_table(d, grid, rates, pick, chosen.candidate)
        write_table(frontier, out / "frontier.csv", index=False)
        plot_frontier(frontier, out / "frontier.png", title=f"{name}: skill against cost, nested outer folds")
        family = (grid[pick].kind, dict(grid[pick].params))
        log(f"  model: {grid[pick].label} ({rates[pick] / 1e6:.2f} M predictions/s per core), the cheapest within "
            f"one standard error of the best on {cfg.search_folds} folds of all rows")  # fmt: skip
    scores, pieces = summarize(d, protocol)
    if frontier is not None:
        pieces["frontier"] = frontier
    write_table(pieces["metrics"], out / "loso_metrics.csv", index=False)
    write_table(pieces["comparison"], out / "zone_vs_unified.csv", index=False)
    write_table(pieces["references"]["table"], out / "references.csv", index=False)
    if "meteo" in pieces:
        write_table(pieces["meteo"][0], out / "experiments.csv", index=False)
        plot_experiments(pieces["meteo"][0], out / "experiments.png", title=f"{name}: site meteorology experiments")
    fallback = zone_fallbacks(d, "zone", "site_group", cfg.min_zone_sites)
    summary: dict[str, Any] = {
        "target": name,
        "rows": int(len(df)),
        "sites": int(df.site_id.nunique()),
        "physical_sites": int(df.site_group.nunique()),
        "outer_folds": int(d.fold.nunique()),
        "folds_without_zones": int((chosen.zones == 0).sum()),
        "zones": sorted(int(z) for z in df.zone.unique()),
        "zones_without_model": fallback,
        "candidates": len(feats),
        "after_correlation_filter": len(kept),
        "selected": len(selected),
        "r2_unified_non_nested": _non_nested_r2(path, df),
        **scores,
        **_frontier_summary(frontier, chosen, family),
    }
    plot_obs_pred(
        d[d.pred_zone.notna() & d.pred_unified.notna()],
        {"zone models": "pred_zone", "unified model": "pred_unified"},
        out / "obs_vs_pred.png",
        title=f"{name}: nested cross-validation, whole physical sites held out",
    )
    unified, zone_models = _final_models(
        cfg, family, d, selected, fallback, {"target": name, "zones": summary["zones"]}, out
    )
    # Where the unified model may be trusted: its predictors' distance to the training rows, measured
    # against the other outer folds (Meyer & Pebesma 2021); the predict stage maps it.
    aoa = fit_applicability(
        d, selected, weights=importance_weights(unified.estimator, selected), folds=d.fold.to_numpy(), seed=cfg.seed
    )
    save_applicability(out, aoa)
    summary.update({"aoa_threshold": aoa.threshold, "aoa_train_outside": float(np.mean(aoa.train_di > aoa.threshold))})
    if cfg.bootstrap_members and shares is not None and d.site_group.nunique() >= 5:
        with Progress(cfg.bootstrap_members, f"{name}: bootstrap ensemble members", log) as bar:
            summary.update(_ensemble(cfg, family, d, selected, shares, out, progress=lambda i, _: bar(i)))
    if cfg.attribution and unified.kind in ("xgboost", "rf"):
        pieces["attribution"] = attribute_target(name, unified, zone_models, d, out, rows=cfg.attribution_rows,
                                                 seed=cfg.seed, log=log)  # fmt: skip
        summary["top_driver"] = (
            pieces["attribution"]["drivers"].query("grouping == 'all' and level == 'driver'")["name"].iloc[0]
        )
    write_text(out / "report.md", report.target_report(name, summary, pieces, cfg=dataclasses.asdict(cfg)))
    keep = [c for c in d.columns if c in _KEEP or c.startswith("pred_") or c in ("q_lo", "q_hi")]
    write_table(d[keep], out / "loso_predictions.parquet")
    return summary


_KEEP = (
    *("site_id", "location", "site_group", "fold", "zone", "zone_in_fold", "zone_fallback", "true_zone"),
    *("truth", "start", "end", "value", "record_id", "den_row"),
)


def _non_nested_r2(path: pd.DataFrame, df: pd.DataFrame) -> float:
    """R2 of the final predictor set on the inner folds that chose it (optimistic: the choice saw
    those folds); NaN without backward elimination."""
    if not len(path):
        return float("nan")
    return float(1.0 - path.rmse.min() ** 2 / df.value.var(ddof=0))


def _frontier_summary(frontier: pd.DataFrame | None, chosen: pd.DataFrame, family: tuple[str, dict]) -> dict[str, Any]:
    """The summary's model entries: the family and settings mapped with, and with a search, its
    cost, its outer-fold R2 as a fixed configuration, and the best configuration's."""
    out: dict[str, Any] = {"model": f"{family[0]} {json.dumps(family[1], sort_keys=True)}"}
    if frontier is None:
        return out
    c = frontier[frontier.chosen].iloc[0]
    best = frontier.loc[frontier.r2.idxmax()]
    out.update(
        {
            "model": c.label,
            "model_rows_per_s_per_core": float(c.rows_per_s_per_core),
            "r2_chosen_configuration": float(c.r2),
            "r2_best_configuration": float(best.r2),
            "best_configuration": str(best.label),
            "models_chosen_in_folds": "; ".join(f"{k} x{v}" for k, v in chosen.model.value_counts().items()),
        }
    )
    return out


def _final_fit(
    cfg: ModelConfig, family: tuple[str, dict], df: pd.DataFrame, features: list[str], meta: dict[str, Any]
) -> FittedModel:
    """Fit a final model of ``family`` (kind, settings); large XGBoost tables train on the active
    Dask cluster with xgboost.dask."""
    kind, params = family[0], dict(family[1])
    if kind == "xgboost" and len(df) >= cfg.distributed_rows:
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
    return fit(kind, df, df.value, features=features, seed=cfg.seed, params=params, metadata=meta)


def _final_models(
    cfg: ModelConfig,
    family: tuple[str, dict],
    d: pd.DataFrame,
    selected: list[str],
    fallback: list[int],
    meta: dict[str, Any],
    out: Path,
) -> tuple[FittedModel, dict[int, FittedModel]]:
    """The unified model and the model of each zone with enough physical sites, on every row, saved
    with ``meta`` and their nested scores; ``zones_without_model.json`` names the other zones and
    what maps them (the unified model, or nothing). Returns the unified model and the zone models."""
    unified_meta = {**meta, "zone": "unified", "nested_cv": metrics(d.value.to_numpy(), d.pred_unified.to_numpy())}
    unified = _final_fit(cfg, family, d, selected, unified_meta)
    save_model(unified, out / "model_unified")
    zone_models = {}
    for z, part in d.groupby("zone"):
        if int(z) in fallback:
            continue
        zone_meta = {**meta, "zone": int(z), "nested_cv": metrics(part.value.to_numpy(), part.pred_zone.to_numpy())}
        zone_models[int(z)] = _final_fit(cfg, family, part, selected, zone_meta)
        save_model(zone_models[int(z)], out / f"model_zone_{z}")
    sites = d.groupby("zone").site_group.nunique()
    save_zones_without_model(
        out,
        {
            "zones": fallback,
            "physical_sites": {str(z): int(sites[z]) for z in fallback},
            "min_zone_sites": cfg.min_zone_sites,
            "mapped_with": cfg.unvalidated_zones,
        },
    )
    return unified, zone_models


def _member(d: pd.DataFrame, rows: Any, held: Any, i: int, family: tuple[str, dict], seed: int, features: list[str],
            stem: Path) -> tuple[dict[str, float], str]:  # fmt: skip
    """One ensemble member, fitted where the task runs and saved there as ``stem`` in its safe
    format (the models travel as files, never pickled); its held-out score and its file."""
    m, score = fit_member(d, rows, held, i, features=features, kind=family[0], seed=seed, params=dict(family[1]))
    return score, str(save_model(m, stem))


def _ensemble(
    cfg: ModelConfig,
    family: tuple[str, dict],
    d: pd.DataFrame,
    features: list[str],
    shares: pd.Series,
    out: Path,
    *,
    progress: Any = None,
) -> dict[str, Any]:
    """The bootstrap ensemble (members saved as ``ensemble_NN``, fitted as ``model.n_jobs`` parallel
    tasks), its scores and spread."""
    from joblib import Parallel, delayed

    strata = igbp_strata(d)
    rows = d.assign(_stratum=strata)[strata.notna()]
    samples = bootstrap_samples(
        rows, strata="_stratum", shares=shares, n_members=cfg.bootstrap_members, seed=cfg.seed, group="site_group"
    )
    scores, files = [], []
    for score, file in Parallel(n_jobs=cfg.n_jobs, return_as="generator")(
        delayed(_member)(rows, r, h, i, family, cfg.seed, features, out / f"ensemble_{i:02d}")
        for i, (r, h) in enumerate(samples)
    ):
        scores.append(score)
        files.append(file)
        if progress is not None:
            progress(len(scores), len(samples))
    table = pd.DataFrame(scores)
    write_table(table, out / "bootstrap_scores.csv", index=False)
    members = [load_model(f) for f in files]  # checksummed, in their safe formats
    return ensemble_summary(members, table, d)


def _zone_map(cfg: RunConfig, out: Path, *, log: Log) -> None:
    """The fitted zones applied to every cell of the catalog's grid (chunk by chunk, to Zarr), its
    figure, and (demo) its agreement with the world's true zones."""
    cat = open_catalog(cfg)
    needed = ("era5", "mod09a1", "static")
    if not set(needed) <= set(cat.entries):
        log(f"zone map: skipped, the catalog lacks {sorted(set(needed) - set(cat.entries))}")
        return
    with dask_progress("zone map", log):
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
        write_text(out / "zone_map_vs_truth.json", json.dumps({"adjusted_rand_index": ari, "cells": int(land.sum())}))
        msg += f"; agreement with the demo world's true zones: adjusted Rand index {ari:.2f}"
    log(msg)
