"""The model stage: zones, predictor selection, zone and unified models, leave-one-site-out
validation, uncertainty; writes models, tables (CSV and Markdown) and figures.

It wires the pure pieces of :mod:`fluxmap.zones`, :mod:`fluxmap.selection`,
:mod:`fluxmap.train`, :mod:`fluxmap.validate` and :mod:`fluxmap.uncertainty`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxmap import products
from fluxmap.config import ModelConfig, RunConfig
from fluxmap.selection import backward_elimination, correlation_filter
from fluxmap.train import fit, save_model
from fluxmap.uncertainty import bootstrap_ensemble, class_area_shares
from fluxmap.validate import compare, loso_predict, metrics, metrics_table, paired_site_bootstrap, plot_obs_pred
from fluxmap.zones import fit_zones, zone_array

__all__ = ["candidate_predictors", "global_class_shares", "model_target"]

_ABBREV_TO_CODE = {v: k for k, v in products.IGBP_ABBREV.items()}


def candidate_predictors(df: pd.DataFrame, cfg: ModelConfig, *, annual: bool) -> list[str]:
    """The configured predictors present in ``df`` (and their annual statistics), not all missing."""
    out = []
    for p in cfg.predictors:
        names = [f"{p}_ann_{s}" for s in ("mean", "max", "min")]
        if not annual:
            names = [p, *names]
        for n in names if p not in ("elevation", "soc", "doy_sin", "doy_cos") else [p]:
            if annual and n in ("doy_sin", "doy_cos"):
                continue
            if n in df.columns and df[n].notna().any() and n not in out:
                out.append(n)
    return out


def global_class_shares() -> pd.Series:
    """Share of the global land area of each IGBP class (1-16), from the real MCD12C1 2019 map."""
    from fluxmap.demo import read_mcd12c1
    from fluxmap.grids import cell_area

    lc = read_mcd12c1()
    lat = 90 - 0.05 * (np.arange(lc.shape[0]) + 0.5)
    area = cell_area(lat, 0.05)[:, None]
    classes = np.arange(1, 17)
    frac = np.stack([(lc == c) for c in classes]).astype("float32")
    return class_area_shares(frac, np.broadcast_to(area, lc.shape), classes)


def _strata(df: pd.DataFrame) -> pd.Series:
    if "landcover" in df and df["landcover"].notna().any():
        return df["landcover"].astype("Int64")
    return df["ecosystem"].map(_ABBREV_TO_CODE).astype("Int64")


def _final_fit(cfg: ModelConfig, df: pd.DataFrame, features: list[str], params: dict, meta: dict):
    """Fit a final model; large tables train on the active Dask cluster with xgboost.dask."""
    if cfg.kind == "xgboost" and len(df) >= cfg.distributed_rows:
        try:
            from distributed import get_client

            client = get_client()
        except ValueError:
            client = None
        if client is not None:
            import dask.dataframe as dd

            from fluxmap.train import fit_xgboost_dask

            parts = max(1, len(client.scheduler_info()["workers"]))
            ddf = dd.from_pandas(df[[*features, "value"]], npartitions=parts)
            return fit_xgboost_dask(
                client, ddf, ddf["value"], features=features, seed=cfg.seed, params=params, metadata=meta
            )
    return fit(cfg.kind, df, df.value, features=features, seed=cfg.seed, params=params, metadata=meta)


def _bootstrap_sentence(b: dict[str, float], against: str, a: str = "zone") -> str:
    verdict = (
        f"{a} models better"
        if b["delta_r2_lo"] > 0
        else "unified model better"
        if b["delta_r2_hi"] < 0
        else "no clear difference"
    )
    return (
        f"R2 {a} - unified against {against}: {b['delta_r2']:+.4f}, 5-95 % interval over "
        f"{b['resamples']} resamples of the {b['sites']} sites [{b['delta_r2_lo']:+.4f}, {b['delta_r2_hi']:+.4f}]; "
        f"{a} models better in {b['share_a_better']:.0%} of resamples ({verdict})."
    )


def model_target(
    df: pd.DataFrame,
    *,
    name: str,
    annual: bool,
    cfg: ModelConfig,
    out: Path,
    truth: pd.DataFrame | None = None,
    shares: pd.Series | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Select predictors, validate zone vs unified models leave-one-site-out, fit and save the
    final models and the uncertainty ensemble for one target; return its summary.

    ``truth`` (a demo world): the noise-free flux (``value``) and the world's true zone (``zone``)
    of each row. The predictions are then also scored against the noise-free flux, and zone models
    on the true zones (with the unified model's predictors) are validated the same way: what the
    zone models gain when the zones are right, apart from how well the fitted zones recover them."""
    out.mkdir(parents=True, exist_ok=True)
    params, sel_params = dict(cfg.params), dict(cfg.selection_params)
    feats = candidate_predictors(df, cfg, annual=annual)
    kept, dropped = correlation_filter(df, feats, threshold=cfg.correlation_threshold)
    summary: dict[str, Any] = {
        "target": name,
        "rows": int(len(df)),
        "sites": int(df.site_id.nunique()),
        "zones": sorted(int(z) for z in df.zone.unique()),
        "candidates": len(feats),
        "after_correlation_filter": len(kept),
    }
    selected = {"unified": kept}
    if cfg.backward_elimination:
        selected["unified"], path = backward_elimination(
            df, kept, kind=cfg.kind, params=sel_params, seed=cfg.seed, n_jobs=cfg.n_jobs, drop_fraction=0.2, log=log
        )
        path.to_csv(out / "selection_unified.csv", index=False)
    for z, part in df.groupby("zone"):
        if part.site_id.nunique() < 3:
            selected[f"zone_{z}"] = kept
        elif cfg.backward_elimination:
            selected[f"zone_{z}"], path = backward_elimination(
                part, kept, kind=cfg.kind, params=sel_params, seed=cfg.seed, n_jobs=cfg.n_jobs, drop_fraction=0.2
            )
            path.to_csv(out / f"selection_zone_{z}.csv", index=False)
        else:
            selected[f"zone_{z}"] = kept
    (out / "selected_predictors.json").write_text(
        json.dumps({"selected": selected, "dropped_for_correlation": dropped}, indent=1)
    )

    # Leave-one-site-out: the unified model, and each zone's model with its own predictors.
    d = df.copy()
    d["pred_unified"] = loso_predict(
        d, features=selected["unified"], kind=cfg.kind, params=params, seed=cfg.seed, n_jobs=cfg.n_jobs, progress=log
    )
    d["pred_zone"] = np.nan
    for z, part in d.groupby("zone"):
        d.loc[part.index, "pred_zone"] = loso_predict(
            part, features=selected[f"zone_{z}"], kind=cfg.kind, params=params, seed=cfg.seed, n_jobs=cfg.n_jobs
        )
    table = metrics_table(d, {"zone": "pred_zone", "unified": "pred_unified"})
    cmp = compare(table, "zone", "unified")
    table.to_csv(out / "loso_metrics.csv", index=False)
    cmp.to_csv(out / "zone_vs_unified.csv", index=False)
    plot_obs_pred(
        d[d.pred_zone.notna() & d.pred_unified.notna()],
        {"zone models": "pred_zone", "unified model": "pred_unified"},
        out / "obs_vs_pred.png",
        title=f"{name}: leave-one-site-out",
    )
    overall = cmp.set_index("group").loc["all"]
    summary.update(
        {
            "r2_zone": float(overall.r2_zone),
            "r2_unified": float(overall.r2_unified),
            "rmse_zone": float(overall.rmse_zone),
            "rmse_unified": float(overall.rmse_unified),
            "zone_wins_in": [str(g) for g in cmp[(cmp.better == "zone") & (cmp.group != "all")].group],
        }
    )
    md = [f"# {name}: zone models vs the unified model (leave-one-site-out)", "", cmp.round(3).to_markdown(index=False)]
    boot = paired_site_bootstrap(d, "pred_zone", "pred_unified", seed=cfg.seed)
    summary.update({f"{k}_zone_minus_unified": v for k, v in boot.items() if k.startswith(("delta", "share"))})
    md += ["", _bootstrap_sentence(boot, "observations")]

    # Against the known truth (demo world only): the same predictions, scored on noise-free values.
    if truth is not None:
        d["truth"] = truth["value"].reindex(d.index)
        ok = d.truth.notna() & d.pred_zone.notna() & d.pred_unified.notna()
        t_zone = metrics(d.truth[ok].to_numpy(), d.pred_zone[ok].to_numpy())
        t_uni = metrics(d.truth[ok].to_numpy(), d.pred_unified[ok].to_numpy())
        summary.update(
            {
                "truth_r2_zone": t_zone["r2"],
                "truth_r2_unified": t_uni["r2"],
                "truth_rmse_zone": t_zone["rmse"],
                "truth_rmse_unified": t_uni["rmse"],
            }
        )
        tboot = paired_site_bootstrap(d[ok], "pred_zone", "pred_unified", obs="truth", seed=cfg.seed)
        summary.update(
            {f"truth_{k}_zone_minus_unified": v for k, v in tboot.items() if k.startswith(("delta", "share"))}
        )
        md += [
            "",
            "Against the demo world's noise-free truth:",
            "",
            pd.DataFrame([{"model": "zone", **t_zone}, {"model": "unified", **t_uni}])
            .round(3)
            .to_markdown(index=False),
            "",
            _bootstrap_sentence(tboot, "the noise-free truth"),
        ]
        d["true_zone"] = truth["zone"].reindex(d.index)
        placed = d[d.true_zone.notna()]
        by_true_zone = loso_predict(
            placed,
            features=selected["unified"],
            by="true_zone",
            kind=cfg.kind,
            params=params,
            seed=cfg.seed,
            n_jobs=cfg.n_jobs,
        )
        # A true zone with one site cannot be validated (NaN): it keeps the unified model's prediction.
        d["pred_true_zones"] = by_true_zone.reindex(d.index).fillna(d.pred_unified)
        ok = d.pred_true_zones.notna() & d.pred_unified.notna()
        oboot = paired_site_bootstrap(d[ok], "pred_true_zones", "pred_unified", seed=cfg.seed)
        o_obs = metrics(d.value[ok].to_numpy(), d.pred_true_zones[ok].to_numpy())
        o_truth = metrics(d.truth[ok & d.truth.notna()].to_numpy(), d.pred_true_zones[ok & d.truth.notna()].to_numpy())
        summary.update(
            {
                "true_zones": int(d.true_zone.nunique()),
                "r2_true_zones": o_obs["r2"],
                "truth_r2_true_zones": o_truth["r2"],
                **{f"{k}_true_zones_minus_unified": v for k, v in oboot.items() if k.startswith(("delta", "share"))},
            }
        )
        md += [
            "",
            f"Zone models on the demo world's {d.true_zone.nunique()} true zones (the unified model's "
            f"predictors), leave-one-site-out: R2 {o_obs['r2']:.3f} against the observations, "
            f"{o_truth['r2']:.3f} against the noise-free truth.",
            "",
            _bootstrap_sentence(oboot, "observations", a="true-zone"),
        ]

    # Remote sensing only vs remote sensing + site meteorology, where the observations carry it.
    meteo = [m for m in cfg.site_meteo if m in d and d[m].notna().any()]
    if meteo:
        rows = d[d[meteo].notna().all(axis=1)].copy()
        if rows.site_id.nunique() >= 3:
            rs = loso_predict(
                rows, features=selected["unified"], kind=cfg.kind, params=params, seed=cfg.seed, n_jobs=cfg.n_jobs
            )
            both = loso_predict(
                rows,
                features=selected["unified"] + meteo,
                kind=cfg.kind,
                params=params,
                seed=cfg.seed,
                n_jobs=cfg.n_jobs,
            )
            m_rs, m_both = (
                metrics(rows.value.to_numpy(), rs.to_numpy()),
                metrics(rows.value.to_numpy(), both.to_numpy()),
            )
            rsm = pd.DataFrame(
                [
                    {"predictors": "remote sensing", **m_rs},
                    {"predictors": "remote sensing + " + ", ".join(meteo), **m_both},
                ]
            )
            rsm.to_csv(out / "rs_vs_site_meteo.csv", index=False)
            summary.update(
                {"r2_rs_only": m_rs["r2"], "r2_rs_plus_meteo": m_both["r2"], "meteo_sites": int(rows.site_id.nunique())}
            )
            md += [
                "",
                f"Remote sensing only vs with site meteorology ({rows.site_id.nunique()} sites):",
                "",
                rsm.round(3).to_markdown(index=False),
            ]

    # Final models on every row, saved with metadata.
    meta = {"target": name, "zones": summary["zones"]}
    unified_meta = {**meta, "zone": "unified", "loso": metrics(d.value.to_numpy(), d.pred_unified.to_numpy())}
    save_model(_final_fit(cfg, d, selected["unified"], params, unified_meta), out / "model_unified")
    for z, part in d.groupby("zone"):
        zone_meta = {**meta, "zone": int(z), "loso": metrics(part.value.to_numpy(), part.pred_zone.to_numpy())}
        save_model(_final_fit(cfg, part, selected[f"zone_{z}"], params, zone_meta), out / f"model_zone_{z}")

    # Uncertainty: quantile forest (non-crossing quantiles, LOSO coverage) and a bootstrap ensemble.
    qpred = pd.DataFrame(np.nan, index=d.index, columns=[f"q{q:g}" for q in cfg.quantiles])
    for s in d.site_id.unique():
        train, test = d[d.site_id != s], d[d.site_id == s]
        feats_q = [f for f in selected["unified"] if train[f].notna().all()]
        qrf = fit(
            "qrf",
            train.fillna({f: train[f].median() for f in feats_q}),
            train.value,
            features=feats_q,
            seed=cfg.seed,
            params={"n_estimators": 100},
        )
        qpred.loc[test.index] = qrf.quantiles(test.fillna({f: train[f].median() for f in feats_q}), list(cfg.quantiles))
    lo, hi = qpred.iloc[:, 0], qpred.iloc[:, -1]
    coverage = float(((d.value >= lo) & (d.value <= hi)).mean())
    summary.update({"qrf_interval": f"{cfg.quantiles[0]:g}-{cfg.quantiles[-1]:g}", "qrf_loso_coverage": coverage})
    md += [
        "",
        f"Quantile regression forest, leave-one-site-out: {coverage:.1%} of observations inside the "
        f"{cfg.quantiles[0]:g}-{cfg.quantiles[-1]:g} quantile interval.",
    ]
    if cfg.bootstrap_members and shares is not None and d.site_id.nunique() >= 5:
        strata = _strata(d)
        dd = d.assign(_stratum=strata)[strata.notna()]
        members, scores = bootstrap_ensemble(
            dd,
            features=selected["unified"],
            strata="_stratum",
            shares=shares,
            n_members=cfg.bootstrap_members,
            kind=cfg.kind,
            seed=cfg.seed,
            params=params,
        )
        scores.to_csv(out / "bootstrap_scores.csv", index=False)
        for i, member in enumerate(members):
            save_model(member, out / f"ensemble_{i:02d}")
        preds = np.stack([m.predict(d) for m in members])
        summary.update(
            {
                "bootstrap_members": len(members),
                "bootstrap_r2_median": float(scores.r2.median()),
                "bootstrap_sd_median": float(np.median(preds.std(axis=0, ddof=1))),
                "bootstrap_mad_median": float(np.median(np.median(np.abs(preds - np.median(preds, axis=0)), axis=0))),
                "bootstrap_cv_median": float(
                    np.median(preds.std(axis=0, ddof=1) / np.maximum(np.abs(preds.mean(axis=0)), 1e-9))
                ),
            }
        )
        md += [
            "",
            f"Bootstrap ensemble ({len(members)} members, 80 % of sites each, rows stratified by IGBP class "
            f"in proportion to its global land area): held-out R2 median {scores.r2.median():.3f}; "
            f"prediction SD median {summary['bootstrap_sd_median']:.3f}, MAD median "
            f"{summary['bootstrap_mad_median']:.3f} g C m-2 d-1, "
            f"CV median {summary['bootstrap_cv_median']:.2f}.",
        ]
    (out / "report.md").write_text("\n".join(md) + "\n")
    d[
        [
            c
            for c in (
                "site_id",
                "location",
                "zone",
                "true_zone",
                "start",
                "end",
                "value",
                "pred_zone",
                "pred_unified",
                "pred_true_zones",
            )
            if c in d
        ]
    ].to_parquet(out / "loso_predictions.parquet")
    return summary


def model_stage_tables(
    cfg: RunConfig,
    tables: dict[str, pd.DataFrame],
    out: Path,
    truth: dict[str, pd.Series] | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Zones on the site factors, then :func:`model_target` for every configured target."""
    mc = cfg.model
    t0 = time.perf_counter()
    factors = tables["site_factors"]
    used = pd.concat([tables["training_8day"][["location"]], tables["training_annual"][["location"]]])
    counts = used.location.value_counts()
    fs = factors.loc[factors.index.isin(counts.index)]
    zmodel, candidates = fit_zones(
        fs,
        factors=list(mc.zone_factors),
        k_candidates=list(mc.k_candidates),
        min_sites=mc.min_sites,
        obs_per_site=counts,
        min_obs=mc.min_obs,
        restarts=mc.restarts,
        seed=mc.seed,
    )
    zmodel.to_json(out / "zones.json")
    candidates.to_csv(out / "zone_candidates.csv", index=False)
    zone_of = pd.Series(zone_array(zmodel, factors[list(mc.zone_factors)].to_numpy()), index=factors.index)
    prof = factors.assign(zone=zone_of).loc[fs.index].groupby("zone")[list(mc.zone_factors)].mean()
    prof.insert(0, "sites", factors.assign(zone=zone_of).loc[fs.index].groupby("zone").size())
    prof.insert(1, "observations", counts.groupby(zone_of.reindex(counts.index)).sum())
    prof.to_csv(out / "zone_profiles.csv")
    log(
        f"zones: k = {zmodel.k} (silhouette {candidates[candidates.chosen].silhouette.item():.3f}, "
        f"k-means objective {zmodel.inertia:.2f}, {zmodel.components.shape[0]} principal components "
        f"explaining {zmodel.explained_variance_ratio.sum():.0%})"
    )
    shares = global_class_shares() if mc.bootstrap_members else None
    rows = []
    for target in mc.targets:
        var, _, tab = target.partition(":")
        annual = tab == "annual"
        df = tables["training_annual" if annual else "training_8day"]
        df = df[df.variable == var].copy()
        df["zone"] = df.location.map(zone_of)
        if df.site_id.nunique() < 2 * mc.min_sites:
            log(f"model {target}: skipped, only {df.site_id.nunique()} sites")
            rows.append({"target": target, "skipped": f"only {df.site_id.nunique()} sites"})
            continue
        log(f"model {target}: {len(df)} rows, {df.site_id.nunique()} sites")
        tr = (truth or {}).get(target)
        s = model_target(
            df, name=target, annual=annual, cfg=mc, out=out / target.replace(":", "_"), truth=tr, shares=shares, log=log
        )
        log(
            f"  LOSO R2 zone {s['r2_zone']:.3f} vs unified {s['r2_unified']:.3f}; RMSE {s['rmse_zone']:.3f} vs "
            f"{s['rmse_unified']:.3f}"
            + (f"; vs truth R2 {s['truth_r2_zone']:.3f} vs {s['truth_r2_unified']:.3f}" if "truth_r2_zone" in s else "")
        )
        log(
            f"  R2 zone - unified {s['delta_r2_zone_minus_unified']:+.4f}, site-bootstrap 5-95 % "
            f"[{s['delta_r2_lo_zone_minus_unified']:+.4f}, {s['delta_r2_hi_zone_minus_unified']:+.4f}]"
        )
        if "r2_true_zones" in s:
            log(
                f"  zone models on the {s['true_zones']} true zones: R2 {s['r2_true_zones']:.3f}, minus unified "
                f"{s['delta_r2_true_zones_minus_unified']:+.4f} [{s['delta_r2_lo_true_zones_minus_unified']:+.4f}, "
                f"{s['delta_r2_hi_true_zones_minus_unified']:+.4f}]"
            )
        rows.append(s)
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(
        "# Model summary (leave-one-site-out)\n\n"
        + summary.drop(columns=[c for c in summary.columns if c in ("zones", "zone_wins_in")], errors="ignore")
        .round(3)
        .to_markdown(index=False)
        + "\n"
    )
    log(f"models: {len(rows)} targets in {time.perf_counter() - t0:.0f} s -> {out}")
    return summary


def settings(cfg: RunConfig) -> dict[str, Any]:
    """The model settings that key the cache."""
    return dataclasses.asdict(cfg.model)
