"""The model family and size chosen on the skill-cost frontier.

A small grid of configurations (random forests and XGBoost at several depths and tree counts) is
searched inside each outer fold of the nested validation, on that fold's training rows only:
every configuration is scored on inner folds of whole physical sites, and the cheapest one whose
mean inner RMSE is within one standard error of the best (the one-standard-error rule, Hastie,
Tibshirani & Friedman 2009, sect. 7.10) is chosen. Cheap means the most predictions per second
on one core, measured once per target (:func:`prediction_rates`, while the folds compute their
scores), so every fold (and every worker of a cluster) ranks the configurations the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.science.train import DEFAULT_PARAMS, FitSpec, fit
from fluxmap.science.validate import group_folds, metrics

__all__ = ["Candidate", "frontier_table", "inner_scores", "inner_search", "one_se_choice", "prediction_rates"]


@dataclass(frozen=True)
class Candidate:
    """One configuration of the grid: a model family and its settings over the family's defaults."""

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """Short name, e.g. ``rf 10 trees depth 6``, ``xgboost 300 trees depth 3``."""
        p = {**DEFAULT_PARAMS[self.kind], **dict(self.params)}
        depth = p.get("max_depth")
        extra = [f"{k}={v}" for k, v in self.params if k not in ("n_estimators", "max_depth")]
        return " ".join(
            [self.kind, f"{p['n_estimators']} trees", f"depth {depth if depth is not None else 'full'}", *extra]
        )

    def spec(self, base: FitSpec) -> FitSpec:
        """``base`` (seed, group, folds) with this family and settings."""
        return FitSpec(self.kind, dict(self.params), base.seed, base.n_jobs, group=base.group, folds=base.folds)


def _rows(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows cycled from ``x`` (the rates do not depend on how many training rows there are)."""
    return x[np.arange(n) % len(x)]


def prediction_rates(
    df: pd.DataFrame, features: list[str], grid: tuple[Candidate, ...], *, seed: int = 0, rows: int = 100_000
) -> np.ndarray:
    """Predictions per second on one core of every configuration, fitted on all of ``df`` (its
    trees are as large as the data makes them) and timed predicting ``rows`` rows of its predictors
    (the best of three runs; the fit uses one thread and so does the prediction)."""
    x = _rows(df[features].to_numpy(dtype="float32"), rows)
    out = []
    for c in grid:
        m = fit(c.kind, df, df.value, features=features, seed=seed, params=dict(c.params))
        m.predict(x[:1000])  # first call's set-up (XGBoost's predictor) is not the rate
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            m.predict(x)
            best = min(best, time.perf_counter() - t)
        out.append(rows / best)
    return np.asarray(out)


def _fold_rmse(c: Candidate, train: pd.DataFrame, test: pd.DataFrame, features: list[str], seed: int) -> float:
    m = fit(c.kind, train, train.value, features=features, seed=seed, params=dict(c.params))
    return metrics(test.value.to_numpy(), m.predict(test))["rmse"]


def inner_scores(
    train: pd.DataFrame,
    features: list[str],
    grid: tuple[Candidate, ...],
    *,
    base: FitSpec,
    folds: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Score every configuration on ``folds`` folds of whole groups (``base.group``) of ``train``:
    per configuration, the inner folds' mean RMSE and its standard error. ``n_jobs``: parallel
    fits (joblib, whichever backend is active; the results do not depend on it)."""
    from joblib import Parallel, delayed

    fold = group_folds(train[base.group], folds, seed=base.seed)
    keys = [(i, f) for i in range(len(grid)) for f in np.unique(fold)]
    errs = Parallel(n_jobs=n_jobs)(
        delayed(_fold_rmse)(grid[i], train[fold != f], train[fold == f], features, base.seed) for i, f in keys
    )
    rows = []
    for i, c in enumerate(grid):
        e = np.asarray([err for (j, _), err in zip(keys, errs) if j == i])
        se = float(np.nanstd(e, ddof=1) / np.sqrt(np.isfinite(e).sum())) if np.isfinite(e).sum() > 1 else 0.0
        rows.append({"candidate": i, "label": c.label, "rmse_mean": float(np.nanmean(e)), "rmse_se": se})
    return pd.DataFrame(rows)


def inner_search(
    train: pd.DataFrame,
    features: list[str],
    grid: tuple[Candidate, ...],
    rates: np.ndarray,
    *,
    base: FitSpec,
    folds: int,
    n_jobs: int = 1,
) -> tuple[int, pd.DataFrame]:
    """:func:`inner_scores` and the choice by :func:`one_se_choice` with the costs ``rates``.
    Returns the chosen index and the table (with ``rows_per_s`` and ``chosen``)."""
    table = inner_scores(train, features, grid, base=base, folds=folds, n_jobs=n_jobs)
    table = table.assign(rows_per_s=np.asarray(rates, dtype="float64"))
    chosen = one_se_choice(table)
    return chosen, table.assign(chosen=table.candidate == chosen)


def one_se_choice(table: pd.DataFrame) -> int:
    """The fastest configuration (``rows_per_s``) whose ``rmse_mean`` is within one standard error
    (``rmse_se``) of the best configuration's; equal rates: the first in the grid."""
    best = table.loc[table.rmse_mean.idxmin()]
    ok = table[table.rmse_mean <= best.rmse_mean + best.rmse_se]
    return int(ok.sort_values(["rows_per_s", "candidate"], ascending=[False, True]).candidate.iloc[0])


def frontier_table(
    d: pd.DataFrame, grid: tuple[Candidate, ...], rates: np.ndarray, chosen: int, folds_chosen: pd.Series
) -> pd.DataFrame:
    """Every configuration as a point: its outer-fold (nested) R2 and RMSE from the ``pred_cand_<i>``
    columns of ``d``, its predictions per second per core, in how many outer folds the inner search
    chose it, whether it is the final choice (``chosen``), and whether no other configuration is
    both more skilful and faster (``on_frontier``)."""
    obs = d.value.to_numpy()
    rows = []
    for i, c in enumerate(grid):
        m = metrics(obs, d[f"pred_cand_{i}"].to_numpy())
        rows.append(
            {
                "candidate": i,
                "label": c.label,
                "kind": c.kind,
                **{k: v for k, v in c.params},
                "r2": m["r2"],
                "rmse": m["rmse"],
                "rows_per_s_per_core": float(rates[i]),
                "folds_chosen": int((folds_chosen == i).sum()),
                "chosen": i == chosen,
            }
        )
    t = pd.DataFrame(rows)
    r2, rate = t.r2.to_numpy(), t.rows_per_s_per_core.to_numpy()
    dominated = [
        bool(np.any((r2 >= r2[i]) & (rate >= rate[i]) & ((r2 > r2[i]) | (rate > rate[i])))) for i in range(len(t))
    ]
    return t.assign(on_frontier=~np.asarray(dominated))
