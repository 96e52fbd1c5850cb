"""Models: random forest, quantile regression forest, gradient boosting (XGBoost, also distributed
with xgboost.dask), saved in non-executable formats with a metadata file.

Formats: XGBoost models as UBJSON (``.ubj``, XGBoost's own format); scikit-learn and
quantile-forest models with skops (``.skops``), loaded only with the exact types
fluxmap writes. Pickle, joblib and unknown files are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MODEL_KINDS", "FittedModel", "fit", "fit_xgboost_dask", "load_model", "save_model"]

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


def _versions() -> dict[str, str]:
    import sklearn
    import xgboost

    return {"versions": {"xgboost": xgboost.__version__, "scikit-learn": sklearn.__version__}}


# --- files ---------------------------------------------------------------------------------------

_REFUSED = {".pkl", ".pickle", ".joblib", ".sav", ".dill", ".pt", ".npy"}


def save_model(model: FittedModel, stem: str | Path) -> Path:
    """Write the model (``stem.ubj`` or ``stem.skops``) and ``stem.json`` metadata; return the model path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if model.kind == "xgboost":
        path = stem.with_suffix(".ubj")
        model.estimator.get_booster().save_model(str(path))
    else:
        import skops.io as sio

        path = stem.with_suffix(".skops")
        sio.dump(model.estimator, path)
    meta = {**model.metadata, "kind": model.kind, "features": model.features, "file": path.name}
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    return path


def load_model(path: str | Path) -> FittedModel:
    """Load a model written by :func:`save_model`; refuses pickles and unknown formats."""
    path = Path(path)
    if path.suffix in _REFUSED:
        raise ValueError(
            f"{path}: refusing to load a {path.suffix} file: pickle-based formats can run code. "
            "fluxmap reads only XGBoost .ubj/.json models and .skops files it wrote"
        )
    if path.suffix not in (".ubj", ".skops"):
        raise ValueError(f"{path}: unknown model format {path.suffix!r} (expected .ubj or .skops)")
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: metadata file {meta_path.name} missing")
    meta = json.loads(meta_path.read_text())
    if path.suffix == ".ubj":
        import xgboost as xgb

        est = xgb.XGBRegressor()
        est.load_model(str(path))
        return FittedModel("xgboost", est, meta["features"], meta)
    import skops.io as sio

    unknown = sio.get_untrusted_types(file=path)
    allowed = {
        "quantile_forest._quantile_forest.RandomForestQuantileRegressor",
        "quantile_forest._quantile_forest_fast.QuantileForest",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
        "builtins.dict",
        "numpy.dtype",
    }
    bad = [t for t in unknown if t not in allowed]
    if bad:
        raise ValueError(f"{path}: holds types fluxmap does not write: {bad}; refusing to load")
    est = sio.load(path, trusted=unknown)
    return FittedModel(meta["kind"], est, meta["features"], meta)
