"""Reference models: what machine learning must beat, fitted on the same folds.

- ``mean``: the training rows' mean flux.
- ``climate``: the saturating-exponential climate model of soil respiration of Raich, Potter &
  Bhagawati (2002, Global Change Biology 8:800, eq. 1), R = a exp(b T) P / (c + P), with T the
  air temperature (deg C) and P the precipitation of the same period (annual rows: the annual
  mean temperature and precipitation). Its three parameters are fitted by least squares on the
  training rows (a > 0, c > 0); rows without T or P get the training mean.
- ``class_mean``: the mean flux of the row's vegetation class (``ecosystem``) in the training
  rows, the training mean for a class not seen there (the usual reference for NEE).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["REFERENCES", "fit_reference"]

REFERENCES = ("mean", "climate", "class_mean")
"""The reference models :func:`fit_reference` knows."""

Predictor = Callable[[pd.DataFrame], np.ndarray]


def _climate_inputs(df: pd.DataFrame, climate: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    t_col, p_col = climate
    missing = [c for c in climate if c not in df]
    if missing:
        raise KeyError(f"the climate reference needs column(s) {missing}; the table has {sorted(df.columns)[:20]}...")
    t = df[t_col].to_numpy(float) - 273.15  # canonical K -> deg C
    return t, df[p_col].to_numpy(float)


def _raich(theta: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    log_a, b, log_c = theta
    return np.exp(log_a + b * t) * p / (np.exp(log_c) + p)


def _fit_climate(train: pd.DataFrame, climate: tuple[str, str], mean: float) -> Predictor:
    from scipy.optimize import least_squares

    t, p = _climate_inputs(train, climate)
    y = train["value"].to_numpy(float)
    ok = np.isfinite(t) & np.isfinite(p) & np.isfinite(y) & (p >= 0)
    if ok.sum() < 3 or mean <= 0:
        raise ValueError(
            f"the climate reference R = a exp(bT) P/(c+P) needs >= 3 rows with T and P and a positive mean flux; "
            f"got {int(ok.sum())} rows, mean {mean:.3g} (use the class_mean reference for a flux of either sign)"
        )
    theta0 = np.array([np.log(mean), 0.05, np.log(max(float(np.median(p[ok])), 1e-3))])
    fitted = least_squares(
        lambda th: _raich(th, t[ok], p[ok]) - y[ok],
        theta0,
        bounds=([-20.0, -1.0, -20.0], [20.0, 1.0, 20.0]),
    ).x

    def predict(df: pd.DataFrame) -> np.ndarray:
        tt, pp = _climate_inputs(df, climate)
        out = _raich(fitted, tt, np.clip(pp, 0.0, None))
        return np.where(np.isfinite(out), out, mean)

    return predict


def fit_reference(kind: str, train: pd.DataFrame, *, climate: tuple[str, str] = ("t2m", "tp")) -> Predictor:
    """Fit the reference model ``kind`` (see :data:`REFERENCES`) on ``train`` (column ``value``
    and what the model needs); returns a function from rows to predictions."""
    mean = float(train["value"].mean())
    if kind == "mean":
        return lambda df: np.full(len(df), mean)
    if kind == "climate":
        return _fit_climate(train, climate, mean)
    if kind == "class_mean":
        if "ecosystem" not in train:
            raise KeyError("the class_mean reference needs the column 'ecosystem'")
        by_class = train.groupby("ecosystem")["value"].mean()
        return lambda df: df["ecosystem"].map(by_class).fillna(mean).to_numpy(float)
    raise ValueError(f"unknown reference model {kind!r}; known: {', '.join(REFERENCES)}")
