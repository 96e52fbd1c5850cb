"""Model fitting: random forest, quantile regression forest, gradient boosting (XGBoost, also
distributed with xgboost.dask). The files they are saved in are :mod:`fluxmap.io.models`' business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MODEL_KINDS", "FitSpec", "FittedModel", "fit", "fit_predict", "fit_xgboost_dask"]

MODEL_KINDS = ("xgboost", "rf", "qrf")
"""Model families: XGBoost gradient boosting, scikit-learn random forest, quantile regression forest."""

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": {
        "n_estimators": 300,
        "max_depth": 6,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 3,
        "tree_method": "hist",
    },
    "rf": {"n_estimators": 200, "min_samples_leaf": 3, "max_features": 0.5},
    "qrf": {"n_estimators": 200, "min_samples_leaf": 5, "max_features": 0.5},
}


@dataclass(frozen=True)
class FitSpec:
    """How a model is fitted and validated wherever one is (folds, selection steps): family,
    hyperparameters, seed, parallel jobs, and the column whose values are left out together."""

    kind: str = "xgboost"
    """Model family (``xgboost``, ``rf``, ``qrf``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters over the family's defaults (:data:`DEFAULT_PARAMS`)."""
    seed: int = 0
    """Random seed of every fit."""
    n_jobs: int = 1
    """Parallel jobs (LOSO folds)."""
    group: str = "site_id"
    """Column naming the unit a fold leaves out (the models stage uses ``site_group``, the
    physical site of :func:`fluxmap.science.validate.physical_sites`)."""
    folds: int = 0
    """Folds of whole groups (0: one group per fold, leave-one-site-out)."""


@dataclass
class FittedModel:
    """An estimator with what is needed to use and audit it."""

    kind: str
    estimator: Any
    features: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predictions for rows with columns ``features`` (NaN allowed for XGBoost only)."""
        arr = _matrix(x, self.features)
        if self.kind == "xgboost":
            return self.estimator.get_booster().inplace_predict(arr).astype("float64")
        return self.estimator.predict(arr)

    def quantiles(self, x: pd.DataFrame | np.ndarray, q: list[float]) -> np.ndarray:
        """Predicted quantiles ``(n, len(q))`` (quantile forests only; monotone in q by construction)."""
        if self.kind != "qrf":
            raise ValueError(f"quantiles need a 'qrf' model, this is {self.kind!r}")
        out = np.asarray(self.estimator.predict(_matrix(x, self.features), quantiles=list(q)))
        return np.sort(out.reshape(len(out), -1), axis=1)


def _matrix(x: pd.DataFrame | np.ndarray, features: list[str]) -> np.ndarray:
    if isinstance(x, pd.DataFrame):
        missing = [f for f in features if f not in x.columns]
        if missing:
            raise KeyError(f"predictor column(s) {missing} missing")
        return x[features].to_numpy(dtype="float32")
    return np.asarray(x, dtype="float32")


def _estimator(kind: str, seed: int, n_jobs: int, params: dict[str, Any] | None) -> Any:
    p = {**DEFAULT_PARAMS[kind], **(params or {})}
    if kind == "xgboost":
        import xgboost as xgb

        return xgb.XGBRegressor(random_state=seed, n_jobs=n_jobs, **p)
    if kind == "rf":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(random_state=seed, n_jobs=n_jobs, **p)
    if kind == "qrf":
        from quantile_forest import RandomForestQuantileRegressor

        return RandomForestQuantileRegressor(random_state=seed, n_jobs=n_jobs, **p)
    raise ValueError(f"unknown model kind {kind!r}; known: {MODEL_KINDS}")


def fit(
    kind: str,
    x: pd.DataFrame,
    y: np.ndarray | pd.Series,
    *,
    features: list[str],
    seed: int = 0,
    n_jobs: int = 1,
    params: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> FittedModel:
    """Fit one model, deterministic given ``seed``.

    Forests cannot take NaN predictors: rows with any missing feature are left out
    of their training (counted in the metadata); XGBoost learns a default direction.
    """
    xm = _matrix(x, features)
    ym = np.asarray(y, dtype="float64")
    keep = np.isfinite(ym) & (np.isfinite(xm).all(axis=1) if kind != "xgboost" else True)
    est = _estimator(kind, seed, n_jobs, params)
    est.fit(xm[keep], ym[keep])
    meta = {
        "kind": kind,
        "features": features,
        "seed": seed,
        "training_rows": int(keep.sum()),
        "rows_left_out_for_missing_values": int((~keep).sum()),
        "params": {**DEFAULT_PARAMS[kind], **(params or {})},
        **_versions(),
        **(metadata or {}),
    }
    return FittedModel(kind, est, list(features), meta)


def fit_predict(spec: FitSpec, train: pd.DataFrame, test: pd.DataFrame, features: list[str]) -> np.ndarray:
    """``spec``'s model fitted on ``train`` (its ``value`` column) and its predictions of ``test``."""
    return fit(spec.kind, train, train.value, features=features, seed=spec.seed, params=spec.params).predict(test)


def fit_xgboost_dask(
    client: Any,
    x: Any,
    y: Any,
    *,
    features: list[str],
    seed: int = 0,
    params: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> FittedModel:
    """Train XGBoost across a Dask cluster (``xgboost.dask``) from dask DataFrame/Series partitions.

    The returned model is a plain single-machine XGBRegressor (same file format).
    """
    import xgboost as xgb
    import xgboost.dask as xgb_dask

    p = {**DEFAULT_PARAMS["xgboost"], **(params or {})}
    reg = xgb_dask.DaskXGBRegressor(random_state=seed, **p)
    reg.client = client
    reg.fit(x[features], y)
    local = xgb.XGBRegressor()
    local._Booster = reg.get_booster()  # noqa: SLF001 (documented way to move a dask-trained booster)
    local.n_estimators = p["n_estimators"]
    meta = {
        "kind": "xgboost",
        "features": features,
        "seed": seed,
        "distributed": True,
        "workers": len(client.scheduler_info()["workers"]),
        "params": p,
        **_versions(),
        **(metadata or {}),
    }
    return FittedModel("xgboost", local, list(features), meta)


def _versions() -> dict[str, dict[str, str]]:
    import sklearn
    import xgboost

    return {"versions": {"xgboost": xgboost.__version__, "scikit-learn": sklearn.__version__}}
