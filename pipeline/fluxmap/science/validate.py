"""Leave-one-site-out validation, metrics, and the comparison tables.

A site's observations are never in both the training and the test side of a fold:
for each site, the model is refitted without that site and predicts it. Zone models
are validated within their zone (trained on the zone's other sites), the unified
model on all other sites, so the two are compared on identical rows.

What a "site" is matters: the ids of real networks are finer than places (SRDB's
``Site_ID`` varies per plot, treatment and year at one coordinate; COSORE's ids are
datasets; FLUXNET towers a few hundred metres apart share predictor cells). Leaving out
one id while its neighbour at the same place stays in the training side measures
interpolation within a site, not prediction at a new one. :func:`physical_sites` groups
locations into physical sites (within a distance, or on the same predictor cells,
transitively); the models stage leaves those out together.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from fluxmap.science.grids import EARTH_RADIUS_M
from fluxmap.science.train import fit

__all__ = [
    "compare",
    "group_folds",
    "loso_predict",
    "map_errors",
    "map_errors_by_zone",
    "metrics",
    "metrics_table",
    "paired_site_bootstrap",
    "physical_sites",
    "scores_by_region",
]


def physical_sites(
    lat: np.ndarray, lon: np.ndarray, *, distance_km: float = 5.0, cells: np.ndarray | None = None
) -> np.ndarray:
    """Label every location with its physical site: locations within ``distance_km`` of each other
    (great-circle) or with the same ``cells`` key (e.g. the predictor cells they sit on) are one
    site, transitively (a chain of near neighbours is one site). ``distance_km`` 0 joins only
    identical coordinates. Returns labels ``P00000``, ``P00001``, ... numbered in order of first
    appearance (deterministic for a given input order)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    bad = ~(np.isfinite(lat) & np.isfinite(lon))
    if bad.any():
        raise ValueError(
            f"physical_sites: {int(bad.sum())} location(s) without finite coordinates "
            f"(first at position {int(np.flatnonzero(bad)[0])})"
        )
    n = len(lat)
    if n == 0:
        return np.array([], dtype=object)
    rows, cols = [np.arange(n)], [np.arange(n)]
    if n > 1:
        from sklearn.neighbors import BallTree

        xy = np.radians(np.c_[lat, lon])
        near = BallTree(xy, metric="haversine").query_radius(xy, r=max(distance_km, 1e-6) * 1000.0 / EARTH_RADIUS_M)
        rows.append(np.repeat(np.arange(n), [len(v) for v in near]))
        cols.append(np.concatenate(near))
    if cells is not None:
        codes = pd.factorize(pd.Series(np.asarray(cells, dtype=object)))[0]
        first = pd.Series(np.arange(n)).groupby(codes).transform("first").to_numpy()
        rows.append(np.arange(n))
        cols.append(first)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    order = pd.factorize(labels)[0]
    return np.array([f"P{i:05d}" for i in order], dtype=object)


def metrics(obs: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R2 (1 - SSE/SST), RMSE, bias (mean pred - obs) and n over finite pairs."""
    obs, pred = np.asarray(obs, float), np.asarray(pred, float)
    ok = np.isfinite(obs) & np.isfinite(pred)
    o, p = obs[ok], pred[ok]
    if len(o) < 2:
        return {"r2": np.nan, "rmse": np.nan, "bias": np.nan, "n": int(len(o))}
    sse = float(((o - p) ** 2).sum())
    sst = float(((o - o.mean()) ** 2).sum())
    return {
        "r2": 1.0 - sse / sst if sst > 0 else np.nan,
        "rmse": float(np.sqrt(sse / len(o))),
        "bias": float((p - o).mean()),
        "n": int(len(o)),
    }


def group_folds(groups: pd.Series | np.ndarray, n_folds: int = 0, *, seed: int = 0) -> np.ndarray:
    """The fold (0, 1, ...) of every row: whole groups (physical sites), never split. ``n_folds``
    0, or at least the number of groups, gives one group per fold (leave-one-site-out); otherwise
    the groups, shuffled with ``seed``, are dealt to the folds in turn (sizes differ by at most one
    group)."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups, dtype=object)))
    n = len(uniques)
    if n_folds <= 0 or n_folds >= n:
        return codes.astype(int)
    order = np.random.default_rng(seed).permutation(n)
    fold_of_group = np.empty(n, int)
    fold_of_group[order] = np.arange(n) % n_folds
    return fold_of_group[codes]


def _one_fold(
    kind: str, train: pd.DataFrame, test: pd.DataFrame, features: list[str], target: str, seed: int, params: dict | None
) -> np.ndarray:
    model = fit(kind, train, train[target], features=features, seed=seed, params=params)
    return model.predict(test)


def loso_predict(
    df: pd.DataFrame,
    *,
    features: list[str],
    target: str = "value",
    kind: str = "xgboost",
    group: str = "site_id",
    by: str | None = None,
    seed: int = 0,
    params: dict | None = None,
    n_jobs: int = 1,
    n_folds: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.Series:
    """Out-of-site predictions for every row (leave-one-site-out; with ``n_folds`` > 0, that many
    folds of whole sites, see :func:`group_folds`). Sites are the values of ``group``.

    With ``by`` (e.g. ``"zone"``), each group of rows gets its own models trained
    only on that group's other sites; a group with a single site cannot be
    validated and gets NaN.
    """
    from joblib import Parallel, delayed

    out = pd.Series(np.nan, index=df.index, name="pred")
    parts = [(None, df)] if by is None else list(df.groupby(by))
    jobs, targets = [], []
    for _, part in parts:
        if part[group].nunique() < 2:
            continue
        fold = group_folds(part[group], n_folds, seed=seed)
        for f in np.unique(fold):
            test = part[fold == f]
            jobs.append(delayed(_one_fold)(kind, part[fold != f], test, features, target, seed, params))
            targets.append(test.index)
    if progress:
        progress(f"    cross-validation {kind}{' by ' + by if by else ''}: {len(jobs)} folds of whole sites")
    results = Parallel(n_jobs=n_jobs)(jobs)
    for idx, pred in zip(targets, results):
        out.loc[idx] = pred
    return out


def metrics_table(
    df: pd.DataFrame,
    pred_cols: dict[str, str],
    *,
    obs: str = "value",
    by: str | None = "zone",
    group: str = "site_id",
) -> pd.DataFrame:
    """Metrics of each prediction column, overall and per ``by`` group, on rows every column
    predicted; ``sites`` counts the distinct values of ``group`` (the units left out)."""
    ok = np.isfinite(df[list(pred_cols.values())]).all(axis=1) & np.isfinite(df[obs])
    d = df[ok]
    rows = []
    groups = [("all", d)] + (list(d.groupby(by)) if by else [])
    for g, part in groups:
        for label, col in pred_cols.items():
            rows.append(
                {
                    "group": g,
                    "model": label,
                    "sites": part[group].nunique(),
                    **metrics(part[obs].to_numpy(), part[col].to_numpy()),
                }
            )
    return pd.DataFrame(rows)


def compare(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Side-by-side R2/RMSE of models ``a`` and ``b`` per group, with which one wins (lower RMSE;
    ``tie`` when equal, e.g. a zone model fitted on the same rows as the unified model)."""
    wide = table.pivot_table(index="group", columns="model", values=["r2", "rmse", "n", "sites"], aggfunc="first")
    out = pd.DataFrame(
        {
            "sites": wide[("sites", a)],
            "n": wide[("n", a)],
            f"r2_{a}": wide[("r2", a)],
            f"r2_{b}": wide[("r2", b)],
            f"rmse_{a}": wide[("rmse", a)],
            f"rmse_{b}": wide[("rmse", b)],
        }
    )
    ra, rb = out[f"rmse_{a}"], out[f"rmse_{b}"]
    out["better"] = np.select([ra < rb, rb < ra], [a, b], "tie")
    return out.reset_index()


def paired_site_bootstrap(
    df: pd.DataFrame,
    a: str,
    b: str,
    *,
    obs: str = "value",
    group: str = "site_id",
    n_resamples: int = 2000,
    interval: tuple[float, float] = (0.05, 0.95),
    seed: int = 0,
) -> dict[str, float]:
    """How sure is "``a`` beats ``b``"? Resample whole sites with replacement (rows of a site stay
    together, as in leave-one-site-out) and recompute R2 of both columns on the same resample.

    Returns the observed difference R2(a) - R2(b), its ``interval`` quantiles over the resamples,
    and the share of resamples in which ``a`` has the higher R2; beside it, ``a``'s skill score
    relative to ``b`` (1 - SSE(a) / SSE(b): 0 = no better than ``b``, 1 = perfect) and its
    interval. Rows where either column is missing are left out.
    """
    d = df[np.isfinite(df[a]) & np.isfinite(df[b]) & np.isfinite(df[obs])]
    codes, sites = pd.factorize(d[group])
    if len(sites) < 2:
        raise ValueError(f"a site bootstrap needs >= 2 sites in column {group!r}, got {len(sites)}")
    o, pa, pb = (d[c].to_numpy(float) for c in (obs, a, b))
    # Per-site sufficient statistics; a resample's R2 follows from sums over its sites.
    k = len(sites)

    def sums(v: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=v, minlength=k)

    n, so, soo = sums(np.ones_like(o)), sums(o), sums(o * o)
    ea, eb = sums((o - pa) ** 2), sums((o - pb) ** 2)
    draws = np.random.default_rng(seed).integers(0, k, size=(n_resamples, k))
    w = np.stack([np.bincount(r, minlength=k) for r in draws]).astype(float)  # site multiplicities
    nn, s1, s2 = w @ n, w @ so, w @ soo
    sst = s2 - s1 * s1 / nn
    delta = (w @ eb - w @ ea) / np.where(sst > 0, sst, np.nan)  # = R2(a) - R2(b)
    obs_delta = metrics(o, pa)["r2"] - metrics(o, pb)["r2"]
    lo, hi = np.nanquantile(delta, interval)
    eb_w = w @ eb
    skill = 1.0 - (w @ ea) / np.where(eb_w > 0, eb_w, np.nan)
    skill_lo, skill_hi = np.nanquantile(skill, interval) if np.isfinite(skill).any() else (np.nan, np.nan)
    return {
        "delta_r2": float(obs_delta),
        "delta_r2_lo": float(lo),
        "delta_r2_hi": float(hi),
        "share_a_better": float(np.nanmean(delta > 0)),
        "skill": float(1.0 - ea.sum() / eb.sum()) if eb.sum() > 0 else float("nan"),
        "skill_lo": float(skill_lo),
        "skill_hi": float(skill_hi),
        "sites": int(k),
        "resamples": int(n_resamples),
    }


def map_errors(true: np.ndarray, pred: np.ndarray, unified: np.ndarray | None, sel: np.ndarray) -> dict[str, float]:
    """R2/RMSE/bias of a map ``pred`` (and of the unified model's map, when given) against a known
    truth over the cells ``sel`` (all arrays of one shape, e.g. time x lat x lon)."""
    m = metrics(true[sel], pred[sel])
    row = {"r2": m["r2"], "rmse_g_c_m2_d": m["rmse"], "bias_g_c_m2_d": m["bias"], "cells_x_periods": m["n"]}
    if unified is not None:
        mu = metrics(true[sel], unified[sel])
        row.update({"r2_unified": mu["r2"], "rmse_unified_g_c_m2_d": mu["rmse"], "bias_unified_g_c_m2_d": mu["bias"]})
    return row


def map_errors_by_zone(
    target: str,
    true: np.ndarray,
    pred: np.ndarray,
    unified: np.ndarray | None,
    zone: np.ndarray,
    ok: np.ndarray,
    *,
    names: dict[int, str],
) -> pd.DataFrame:
    """:func:`map_errors` within each zone of ``zone`` (lat x lon; 0 = none): where a map gains or
    loses. ``ok``: the cells (time, lat, lon) both the truth and the map have; ``names``: zone names."""
    rows = []
    for z in sorted(int(z) for z in np.unique(zone[zone > 0])):
        sel = ok & (zone == z)[None]
        if sel.any():
            rows.append(
                {
                    "target": target,
                    "true_zone": z,
                    "zone_name": names.get(z, ""),
                    **map_errors(true, pred, unified, sel),
                }
            )
    return pd.DataFrame(rows)


def scores_by_region(obs: pd.Series, pred: pd.Series, region: pd.Series, site: pd.Series) -> pd.DataFrame:
    """Held-out predictions scored within each region (e.g. latitude band, biome, zone of the row's
    site): records, physical sites, observed and predicted means, bias (predicted - observed), R2,
    RMSE. All four series share one index (the training rows); rows without a region are left out."""
    d = pd.DataFrame({"obs": obs, "pred": pred, "region": region, "site": site}).dropna()
    rows = []
    for name, g in d.groupby("region", sort=True):
        m = metrics(g.obs.to_numpy(), g.pred.to_numpy())
        rows.append(
            {
                "region": name,
                "records": int(len(g)),
                "sites": int(g.site.nunique()),
                "obs_mean": float(g.obs.mean()),
                "pred_mean": float(g.pred.mean()),
                "bias": m["bias"],
                "r2": m["r2"],
                "rmse": m["rmse"],
            }
        )
    return pd.DataFrame(rows, columns=["region", "records", "sites", "obs_mean", "pred_mean", "bias", "r2", "rmse"])
