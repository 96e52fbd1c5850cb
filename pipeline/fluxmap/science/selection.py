"""Feature selection: correlation filter, backward elimination by importance scored
leave-one-site-out, and the exhaustive combination search of Lu et al. (2021).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd

from fluxmap.science.train import FitSpec, fit
from fluxmap.science.validate import loso_predict, metrics

__all__ = ["backward_elimination", "correlation_filter", "exhaustive_search"]

_DEFAULT_SPEC = FitSpec()


def correlation_filter(
    df: pd.DataFrame, features: list[str], *, threshold: float = 0.9
) -> tuple[list[str], list[tuple[str, str, float]]]:
    """Drop one of each pair with |Pearson r| > threshold, keeping the earlier-listed feature.

    Returns the kept features and the (dropped, kept_partner, r) pairs.
    """
    corr = df[features].corr(method="pearson").abs()
    kept: list[str] = []
    dropped: list[tuple[str, str, float]] = []
    for f in features:
        partner = next((k for k in kept if corr.loc[f, k] > threshold), None)
        if partner is None:
            kept.append(f)
        else:
            dropped.append((f, partner, float(corr.loc[f, partner])))
    return kept, dropped


def _loso_rmse(df: pd.DataFrame, features: list[str], spec: FitSpec) -> float:
    pred = loso_predict(
        df,
        features=features,
        kind=spec.kind,
        seed=spec.seed,
        params=spec.params,
        n_jobs=spec.n_jobs,
        group=spec.group,
        n_folds=spec.folds,
    )
    return metrics(df["value"].to_numpy(), pred.to_numpy())["rmse"]


def backward_elimination(
    df: pd.DataFrame,
    features: list[str],
    *,
    spec: FitSpec = _DEFAULT_SPEC,
    min_features: int = 3,
    drop_fraction: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> tuple[list[str], pd.DataFrame]:
    """Remove the least important features step by step; keep the set with the best cross-validated
    RMSE (folds of whole sites: ``spec.group``, ``spec.folds``; 0 = leave-one-site-out).

    Each step drops the least important feature, or the least important
    ``drop_fraction`` of them (at least one) to bound the cost on long lists.
    Importance is the model's own (gain for XGBoost, impurity for forests) on all rows.
    Returns the chosen features and the path (one row per step: features, n, RMSE).
    """
    current = list(features)
    path = []
    while True:
        rmse = _loso_rmse(df, current, spec)
        path.append({"n_features": len(current), "rmse": rmse, "features": ",".join(current)})
        if log:
            log(f"      backward elimination: {len(current)} features, LOSO RMSE {rmse:.4f}")
        if len(current) <= min_features:
            break
        model = fit(spec.kind, df, df["value"], features=current, seed=spec.seed, params=spec.params)
        imp = np.asarray(model.estimator.feature_importances_)
        n_drop = max(1, int(len(current) * drop_fraction))
        n_drop = min(n_drop, len(current) - min_features)
        drop = set(np.argsort(imp, kind="stable")[:n_drop].tolist())
        current = [f for i, f in enumerate(current) if i not in drop]
    table = pd.DataFrame(path)
    best = table.sort_values(["rmse", "n_features"]).iloc[0]
    return best.features.split(","), table


def exhaustive_search(
    df: pd.DataFrame, features: list[str], *, max_candidates: int = 8, min_size: int = 1, spec: FitSpec = _DEFAULT_SPEC
) -> tuple[list[str], pd.DataFrame]:
    """Every combination of the candidate features (Lu et al. 2021), scored leave-one-site-out.

    Only for small candidate sets (2**n - 1 combinations): refuses more than ``max_candidates``.
    """
    if len(features) > max_candidates:
        raise ValueError(
            f"exhaustive search over {len(features)} features is {2 ** len(features) - 1} "
            f"combinations; limit is {max_candidates} features"
        )
    rows = []
    for r in range(min_size, len(features) + 1):
        for combo in itertools.combinations(features, r):
            rows.append(
                {
                    "features": ",".join(combo),
                    "n_features": r,
                    "rmse": _loso_rmse(df, list(combo), spec),
                }
            )
    table = pd.DataFrame(rows).sort_values(["rmse", "n_features"]).reset_index(drop=True)
    return table.features.iloc[0].split(","), table
