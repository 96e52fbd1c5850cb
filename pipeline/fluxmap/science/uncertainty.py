"""Prediction uncertainty: quantile regression forests and bootstrap ensembles.

The bootstrap follows Lu et al. (2021): each replicate splits the sites 80 % / 20 %
and draws its training rows stratified by vegetation class, each class in
proportion to its share of the global land area (so the ensemble is not dominated
by the over-sampled temperate forests of the site networks). Spread is reported as
standard deviation, median absolute deviation and coefficient of variation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from fluxmap.science import products
from fluxmap.science.train import FittedModel, fit
from fluxmap.science.validate import metrics

__all__ = ["bootstrap_ensemble", "class_area_shares", "ensemble_spread", "ensemble_summary", "igbp_strata"]

_ABBREV_TO_CODE = {v: k for k, v in products.IGBP_ABBREV.items()}


def class_area_shares(fractions: np.ndarray, cell_area: np.ndarray, classes: np.ndarray) -> pd.Series:
    """Share of the land area of each class, from class fractions ``(n_class, ...)`` and cell areas."""
    area = (fractions * cell_area).reshape(len(classes), -1).sum(axis=1)
    return pd.Series(area / area.sum(), index=classes, name="area_share")


def _stratified_rows(
    df: pd.DataFrame, *, strata: str, shares: pd.Series, n: int, rng: np.random.Generator
) -> np.ndarray:
    present = shares[shares.index.isin(df[strata].unique())]
    present = present / present.sum()
    counts = np.floor(present * n).astype(int)
    counts[counts.index[np.argmax(present.values)]] += n - counts.sum()
    picks = [rng.choice(df.index[df[strata] == c].to_numpy(), size=k, replace=True) for c, k in counts.items() if k > 0]
    return np.concatenate(picks)


def bootstrap_ensemble(
    df: pd.DataFrame,
    *,
    features: list[str],
    strata: str,
    shares: pd.Series,
    n_members: int = 20,
    kind: str = "xgboost",
    train_fraction: float = 0.8,
    seed: int = 0,
    params: dict | None = None,
    group: str = "site_id",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[FittedModel], pd.DataFrame]:
    """Train ``n_members`` models on stratified bootstrap samples of 80 % of the sites.

    Returns the members and a table of each member's score on its held-out 20 % of sites.
    ``progress(done, total)`` is called after each member.
    """
    rng = np.random.default_rng(seed)
    sites = df[group].unique()
    members, scores = [], []
    for i in range(n_members):
        train_sites = rng.choice(sites, size=max(1, int(round(train_fraction * len(sites)))), replace=False)
        train = df[df[group].isin(train_sites)]
        test = df[~df[group].isin(train_sites)]
        rows = _stratified_rows(train, strata=strata, shares=shares, n=len(train), rng=rng)
        sample = train.loc[rows]
        m = fit(
            kind,
            sample,
            sample["value"],
            features=features,
            seed=seed + i,
            params=params,
            metadata={"member": i, "train_sites": len(train_sites)},
        )
        members.append(m)
        scores.append({"member": i, **metrics(test["value"].to_numpy(), m.predict(test))})
        if progress is not None:
            progress(i + 1, n_members)
    return members, pd.DataFrame(scores)


def ensemble_spread(members: list[FittedModel], x: pd.DataFrame) -> pd.DataFrame:
    """Per row: ensemble mean, standard deviation, median absolute deviation, coefficient of variation."""
    preds = np.stack([m.predict(x) for m in members])
    mean = preds.mean(axis=0)
    med = np.median(preds, axis=0)
    return pd.DataFrame(
        {
            "mean": mean,
            "sd": preds.std(axis=0, ddof=1),
            "mad": np.median(np.abs(preds - med), axis=0),
            "cv": np.where(np.abs(mean) > 1e-9, preds.std(axis=0, ddof=1) / np.abs(mean), np.nan),
        },
        index=x.index,
    )


def igbp_strata(df: pd.DataFrame) -> pd.Series:
    """Each row's IGBP class (1-17): the land-cover predictor where present, else the site's
    ecosystem abbreviation (``ENF``, ``GRA``, ...)."""
    if "landcover" in df and df["landcover"].notna().any():
        return df["landcover"].astype("Int64")
    return df["ecosystem"].map(_ABBREV_TO_CODE).astype("Int64")


def ensemble_summary(members: list[FittedModel], scores: pd.DataFrame, x: pd.DataFrame) -> dict[str, float]:
    """Members, median held-out R2, and the medians over the rows of ``x`` of the ensemble's
    standard deviation, median absolute deviation (g C m-2 d-1) and coefficient of variation."""
    preds = np.stack([m.predict(x) for m in members])
    return {
        "bootstrap_members": len(members),
        "bootstrap_r2_median": float(scores.r2.median()),
        "bootstrap_sd_median": float(np.median(preds.std(axis=0, ddof=1))),
        "bootstrap_mad_median": float(np.median(np.median(np.abs(preds - np.median(preds, axis=0)), axis=0))),
        "bootstrap_cv_median": float(
            np.median(preds.std(axis=0, ddof=1) / np.maximum(np.abs(preds.mean(axis=0)), 1e-9))
        ),
    }
