"""Zone models against the unified model for one target, and the experiments beside them.

Pure functions of a training table (one row per site and period or site-year, with ``site_id``,
``zone``, ``value`` and the predictors): predictor selection per zone, leave-one-site-out
predictions of both model families on identical rows, their scores against the noise-free
truth where one is known (the demo world), zone models on the true zones, remote sensing
only vs remote sensing + site meteorology, and the quantile-forest interval's LOSO coverage.
Every model is refitted inside each fold with the settings of a :class:`FitSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.science.selection import backward_elimination, correlation_filter
from fluxmap.science.train import FitSpec, fit
from fluxmap.science.validate import compare, loso_predict, metrics, metrics_table, paired_site_bootstrap

__all__ = [
    "FitSpec",
    "against_truth",
    "candidate_predictors",
    "qrf_loso_coverage",
    "select_predictors",
    "site_meteo_experiment",
    "zone_vs_unified",
]

_STATIC = ("elevation", "soc", "doy_sin", "doy_cos")


def _loso(spec: FitSpec, df: pd.DataFrame, features: list[str], **kw: Any) -> pd.Series:
    """:func:`~fluxmap.science.validate.loso_predict` with the settings of ``spec``."""
    return loso_predict(
        df, features=features, kind=spec.kind, params=spec.params, seed=spec.seed, n_jobs=spec.n_jobs, **kw
    )


def candidate_predictors(df: pd.DataFrame, predictors: tuple[str, ...], *, annual: bool) -> list[str]:
    """The configured predictors present in ``df`` (and their annual statistics), not all missing."""
    out = []
    for p in predictors:
        names = [f"{p}_ann_{s}" for s in ("mean", "max", "min")]
        if not annual:
            names = [p, *names]
        for n in names if p not in _STATIC else [p]:
            if annual and n in ("doy_sin", "doy_cos"):
                continue
            if n in df.columns and df[n].notna().any() and n not in out:
                out.append(n)
    return out


def select_predictors(
    df: pd.DataFrame,
    features: list[str],
    *,
    correlation_threshold: float,
    backward: bool,
    spec: FitSpec,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, list[str]], list[str], list[Any], dict[str, pd.DataFrame]]:
    """Predictors of the unified model and of each zone's model: the |r| filter on all rows, then
    (``backward``) backward elimination scored LOSO, for the unified model and for every zone with
    3 or more sites. Returns the selected sets (``unified``, ``zone_<z>``), the predictors the
    correlation filter kept and those it dropped, and each elimination's path."""
    kept, dropped = correlation_filter(df, features, threshold=correlation_threshold)
    selected, paths = {"unified": kept}, {}

    def eliminate(part: pd.DataFrame, name: str, step_log: Callable[[str], None] | None) -> None:
        selected[name], paths[name] = backward_elimination(part, kept, spec=spec, drop_fraction=0.2, log=step_log)

    if backward:
        eliminate(df, "unified", log)
    for z, part in df.groupby("zone"):
        if backward and part.site_id.nunique() >= 3:
            eliminate(part, f"zone_{z}", None)
        else:
            selected[f"zone_{z}"] = kept
    return selected, kept, dropped, paths


def zone_vs_unified(
    df: pd.DataFrame,
    selected: dict[str, list[str]],
    spec: FitSpec,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Leave-one-site-out predictions of the unified model (``pred_unified``) and of each zone's
    model within its zone (``pred_zone``, the zone's own predictors); the metrics per zone and
    overall, and the side-by-side comparison."""
    d = df.copy()
    d["pred_unified"] = _loso(spec, d, selected["unified"], progress=log)
    d["pred_zone"] = np.nan
    for z, part in d.groupby("zone"):
        d.loc[part.index, "pred_zone"] = _loso(spec, part, selected[f"zone_{z}"])
    table = metrics_table(d, {"zone": "pred_zone", "unified": "pred_unified"})
    return d, table, compare(table, "zone", "unified")


def against_truth(
    d: pd.DataFrame, truth: pd.DataFrame, features: list[str], spec: FitSpec
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores against a known noise-free truth (``truth``: ``value`` and the true ``zone`` per row;
    the demo world). Adds ``truth``, ``true_zone`` and ``pred_true_zones`` (zone models on the true
    zones with the unified model's predictors ``features``, LOSO) to ``d`` in place.

    Returns the summary entries and the pieces of the report: the two models' metrics against the
    truth, the paired site bootstrap against it, and the true-zone models' scores and bootstrap."""
    d["truth"] = truth["value"].reindex(d.index)
    ok = d.truth.notna() & d.pred_zone.notna() & d.pred_unified.notna()
    t_zone = metrics(d.truth[ok].to_numpy(), d.pred_zone[ok].to_numpy())
    t_uni = metrics(d.truth[ok].to_numpy(), d.pred_unified[ok].to_numpy())
    tboot = paired_site_bootstrap(d[ok], "pred_zone", "pred_unified", obs="truth", seed=spec.seed)
    summary: dict[str, Any] = {
        "truth_r2_zone": t_zone["r2"],
        "truth_r2_unified": t_uni["r2"],
        "truth_rmse_zone": t_zone["rmse"],
        "truth_rmse_unified": t_uni["rmse"],
        **{f"truth_{k}_zone_minus_unified": v for k, v in tboot.items() if k.startswith(("delta", "share"))},
    }
    d["true_zone"] = truth["zone"].reindex(d.index)
    by_true_zone = _loso(spec, d[d.true_zone.notna()], features, by="true_zone")
    # A true zone with one site cannot be validated (NaN): it keeps the unified model's prediction.
    d["pred_true_zones"] = by_true_zone.reindex(d.index).fillna(d.pred_unified)
    ok = d.pred_true_zones.notna() & d.pred_unified.notna()
    oboot = paired_site_bootstrap(d[ok], "pred_true_zones", "pred_unified", seed=spec.seed)
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
    pieces = {"zone": t_zone, "unified": t_uni, "bootstrap": tboot, "true_zones": (o_obs, o_truth, oboot)}
    return summary, pieces


def site_meteo_experiment(
    d: pd.DataFrame, features: list[str], meteo: tuple[str, ...], spec: FitSpec
) -> tuple[pd.DataFrame, int] | None:
    """Remote sensing only vs remote sensing + the site meteorology columns ``meteo`` (e.g. soil
    temperature and moisture), LOSO on the rows that carry all of them: the table and the number of
    sites; None without such columns or with fewer than 3 sites."""
    have = [m for m in meteo if m in d and d[m].notna().any()]
    if not have:
        return None
    rows = d[d[have].notna().all(axis=1)].copy()
    if rows.site_id.nunique() < 3:
        return None
    rs = _loso(spec, rows, features)
    both = _loso(spec, rows, features + have)
    obs = rows.value.to_numpy()
    table = pd.DataFrame(
        [
            {"predictors": "remote sensing", **metrics(obs, rs.to_numpy())},
            {"predictors": "remote sensing + " + ", ".join(have), **metrics(obs, both.to_numpy())},
        ]
    )
    return table, int(rows.site_id.nunique())


def qrf_loso_coverage(d: pd.DataFrame, features: list[str], quantiles: tuple[float, ...], *, seed: int) -> float:
    """Share of observations inside the quantile regression forest's outer-quantile interval,
    leave-one-site-out (missing predictors filled with the training fold's medians)."""
    qpred = pd.DataFrame(np.nan, index=d.index, columns=[f"q{q:g}" for q in quantiles])
    for s in d.site_id.unique():
        train, test = d[d.site_id != s], d[d.site_id == s]
        feats_q = [f for f in features if train[f].notna().all()]
        fill = {f: train[f].median() for f in feats_q}
        qrf = fit("qrf", train.fillna(fill), train.value, features=feats_q, seed=seed, params={"n_estimators": 100})
        qpred.loc[test.index] = qrf.quantiles(test.fillna(fill), list(quantiles))
    lo, hi = qpred.iloc[:, 0], qpred.iloc[:, -1]
    return float(((d.value >= lo) & (d.value <= hi)).mean())
