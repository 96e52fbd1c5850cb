"""Area of applicability: where a model's predictors lie inside what it was trained on.

Meyer & Pebesma (2021, Methods Ecol. Evol. 12:1620, "Predicting into unknown space? Estimating
the area of applicability of spatial prediction models"). Predictors are standardized by the
training mean and SD and weighted by the model's variable importance; the dissimilarity index
(DI) of a point is its distance to the nearest training point divided by the mean distance
between training points. The training points' own DI is measured against the training points
of *other* cross-validation folds (here: other folds of physical sites), so it reflects the
distances the validation actually faced. The threshold is the largest training DI that is not
an outlier (at most the upper quartile plus 1.5 interquartile ranges); a point whose DI exceeds
it is outside the area of applicability: the model's validation says nothing about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Applicability", "JointApplicability", "fit_applicability", "importance_weights"]

MAX_PAIRS_SAMPLE = 2000
"""Training points sampled (without replacement) for the mean pairwise distance when there are more."""


@dataclass
class Applicability:
    """The training data in the weighted, standardized predictor space and the DI threshold."""

    features: list[str]
    mean: np.ndarray
    sd: np.ndarray
    weights: np.ndarray
    train: np.ndarray
    """Training points, standardized and weighted (float64, rows with a missing predictor dropped)."""
    mean_distance: float
    """Mean distance between training points (the DI's unit)."""
    threshold: float
    """Largest non-outlier training DI: above it a point is outside the area of applicability."""
    train_di: np.ndarray
    """Each training point's DI to the training points of the other folds."""
    _tree: Any = field(default=None, repr=False, compare=False)

    def dissimilarity(self, x: np.ndarray | pd.DataFrame, *, batch: int = 16384) -> np.ndarray:
        """DI of each row of ``x`` (columns :attr:`features`); NaN where a predictor is missing.

        The rows are standardized into one float64 buffer of ``batch`` rows, reused, and queried
        batch by batch: the predict stage calls this on every land cell-period of a block, and a
        float64 copy of all of them (50 MB for a 46 x 128 x 128 block of 8 predictors) cost
        more than the nearest-neighbour search around it."""
        if isinstance(x, pd.DataFrame):
            x = x[self.features].to_numpy(dtype="float64")
        x = np.asarray(x)
        out = np.full(len(x), np.nan)
        if not len(x):
            return out
        if self._tree is None:
            # scipy's cKDTree: the same distances as scikit-learn's KDTree, 3-4x faster here.
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.train)
        scale = self.weights / self.sd
        buf = np.empty((min(batch, len(x)), x.shape[1]), dtype="float64")
        for i in range(0, len(x), batch):
            part = x[i : i + batch]
            z = buf[: len(part)]
            np.subtract(part, self.mean, out=z)
            z *= scale
            ok = np.isfinite(z).all(axis=1)
            if ok.all():
                out[i : i + len(part)] = self._tree.query(z, k=1)[0]
            elif ok.any():
                out[i : i + len(part)][ok] = self._tree.query(z[ok], k=1)[0]
        out /= self.mean_distance
        return out

    def inside(self, di: np.ndarray) -> np.ndarray:
        """1 inside the area of applicability, 0 outside, 255 where the DI is unknown (uint8)."""
        flag = np.where(di <= self.threshold, 1, 0).astype("uint8")
        flag[~np.isfinite(di)] = 255
        return flag

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for ``np.savez``; no pickles) and :meth:`from_arrays` to read them back."""
        return {
            "features": np.array(self.features, dtype="U"),
            "mean": self.mean,
            "sd": self.sd,
            "weights": self.weights,
            "train": self.train,
            "train_di": self.train_di,
            "scalars": np.array([self.mean_distance, self.threshold]),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Applicability:
        return cls(
            features=[str(f) for f in a["features"]],
            mean=np.asarray(a["mean"], "float64"),
            sd=np.asarray(a["sd"], "float64"),
            weights=np.asarray(a["weights"], "float64"),
            train=np.asarray(a["train"], "float64"),
            mean_distance=float(a["scalars"][0]),
            threshold=float(a["scalars"][1]),
            train_di=np.asarray(a["train_di"], "float64"),
        )


def _standardize(x: np.ndarray, mean: np.ndarray, sd: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(x - mean) / sd * weights`` in float64, in one new array (two passes in place, not three
    temporaries: the predict stage calls it on every land cell-period)."""
    z = np.array(x, dtype="float64")
    z -= mean
    z *= weights / sd
    return z


def importance_weights(estimator: Any, features: list[str]) -> np.ndarray:
    """Variable importance as DI weights, summing to the number of features (equal weights when
    the model gives none): XGBoost's total gain, or a forest's impurity importance."""
    w = np.zeros(len(features))
    booster = estimator.get_booster() if hasattr(estimator, "get_booster") else estimator
    if hasattr(booster, "get_score"):
        gain = booster.get_score(importance_type="total_gain")
        w = np.array([float(gain.get(f, 0.0)) for f in features])
    elif hasattr(estimator, "feature_importances_"):
        w = np.asarray(estimator.feature_importances_, dtype="float64")
    if not np.isfinite(w).all() or w.sum() <= 0:
        return np.ones(len(features))
    return w / w.sum() * len(features)


def fit_applicability(
    x: pd.DataFrame,
    features: list[str],
    *,
    weights: np.ndarray | None = None,
    folds: np.ndarray | None = None,
    seed: int = 0,
) -> Applicability:
    """The area of applicability of a model trained on the rows of ``x``.

    ``folds`` (one label per row; e.g. the outer folds of physical sites) make each training
    point's DI the distance to the nearest point of another fold; without them, to the nearest
    other point. Rows with a missing predictor are left out (they were not a complete example).
    """
    from scipy.spatial import cKDTree

    arr = x[features].to_numpy(dtype="float64")
    ok = np.isfinite(arr).all(axis=1)
    arr = arr[ok]
    if len(arr) < 3:
        raise ValueError(f"an area of applicability needs at least 3 complete training rows, got {len(arr)}")
    fold = np.asarray(folds)[ok] if folds is not None else np.arange(len(arr))
    mean, sd = arr.mean(axis=0), arr.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    w = np.ones(len(features)) if weights is None else np.asarray(weights, dtype="float64")
    space = _standardize(arr, mean, sd, w)
    rng = np.random.default_rng(seed)
    sample = space if len(space) <= MAX_PAIRS_SAMPLE else space[rng.choice(len(space), MAX_PAIRS_SAMPLE, replace=False)]
    from scipy.spatial.distance import pdist

    mean_distance = float(pdist(sample).mean())
    if not mean_distance > 0:
        raise ValueError("the training points do not differ in the weighted predictors (mean distance 0)")
    di = np.full(len(space), np.inf)
    for f in np.unique(fold):
        here = fold == f
        if here.all():
            continue
        dist, _ = cKDTree(space[~here]).query(space[here], k=1)
        di[here] = dist / mean_distance
    finite = di[np.isfinite(di)]
    q1, q3 = np.percentile(finite, [25, 75])
    threshold = float(finite[finite <= q3 + 1.5 * (q3 - q1)].max())
    return Applicability(list(features), mean, sd, w, space, mean_distance, threshold, di)


@dataclass
class JointApplicability:
    """The area of applicability of a prediction made from several models (a flux as the product
    of its denominator's and a ratio's): inside only where it is inside every part's. Its DI is the
    largest of the parts' DIs, each divided by its own threshold, so the threshold is 1."""

    parts: list[Applicability]
    threshold: float = 1.0

    @property
    def features(self) -> list[str]:
        names: list[str] = []
        for p in self.parts:
            names += [f for f in p.features if f not in names]
        return names

    def dissimilarity(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        """The largest threshold-scaled DI of the parts for each row of ``x`` (columns :attr:`features`)."""
        cols = self.features
        arr = x[cols].to_numpy(dtype="float64") if isinstance(x, pd.DataFrame) else np.asarray(x, dtype="float64")
        scaled = []
        for p in self.parts:
            di = p.dissimilarity(arr[:, [cols.index(f) for f in p.features]])
            if p.threshold > 0:
                scaled.append(di / p.threshold)
            else:  # every training point on one spot: inside only there
                scaled.append(np.where(np.isnan(di), np.nan, np.where(di > 0, np.inf, 0.0)))
        return np.max(np.stack(scaled), axis=0)  # NaN where any part's is

    def inside(self, di: np.ndarray) -> np.ndarray:
        """1 inside every part's area of applicability, 0 outside one, 255 where unknown (uint8)."""
        flag = np.where(di <= self.threshold, 1, 0).astype("uint8")
        flag[np.isnan(di)] = 255  # an infinite DI (a part with threshold 0, away from it) is outside
        return flag
