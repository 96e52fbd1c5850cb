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

__all__ = [
    "bootstrap_ensemble",
    "bootstrap_samples",
    "class_area_shares",
    "ensemble_spread",
    "ensemble_summary",
    "fit_member",
    "igbp_strata",
]

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


def bootstrap_samples(
    df: pd.DataFrame,
    *,
    strata: str,
    shares: pd.Series,
    n_members: int = 20,
    train_fraction: float = 0.8,
    seed: int = 0,
    group: str = "site_id",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per member: its training rows (index labels of ``df``, drawn with replacement from 80 % of
    the sites, stratified by ``strata`` in proportion to ``shares``) and its held-out rows (the
    other 20 % of sites). One random stream, so the samples do not depend on where they are fitted."""
    rng = np.random.default_rng(seed)
    sites = df[group].unique()
    out = []
    for _ in range(n_members):
        train_sites = rng.choice(sites, size=max(1, int(round(train_fraction * len(sites)))), replace=False)
        inside = df[group].isin(train_sites).to_numpy()
        rows = _stratified_rows(df[inside], strata=strata, shares=shares, n=int(inside.sum()), rng=rng)
        out.append((rows, df.index[~inside].to_numpy()))
    return out


def fit_member(
    df: pd.DataFrame,
    rows: np.ndarray,
    held_out: np.ndarray,
    member: int,
    *,
    features: list[str],
    kind: str = "xgboost",
    seed: int = 0,
    params: dict | None = None,
) -> tuple[FittedModel, dict[str, float]]:
    """One ensemble member fitted on ``df.loc[rows]`` (seed ``seed + member``), and its score on
    the held-out rows."""
    sample, test = df.loc[rows], df.loc[held_out]
    m = fit(kind, sample, sample["value"], features=features, seed=seed + member, params=params,
            metadata={"member": member, "held_out_rows": len(held_out)})  # fmt: skip
    return m, {"member": member, **metrics(test["value"].to_numpy(), m.predict(test))}


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
    """Train ``n_members`` models on stratified bootstrap samples of 80 % of the sites
    (:func:`bootstrap_samples`, :func:`fit_member`), one after the other.

    Returns the members and a table of each member's score on its held-out 20 % of sites.
    ``progress(done, total)`` is called after each member.
    """
    samples = bootstrap_samples(
        df, strata=strata, shares=shares, n_members=n_members, train_fraction=train_fraction, seed=seed, group=group
    )
    members, scores = [], []
    for i, (rows, held) in enumerate(samples):
        m, score = fit_member(df, rows, held, i, features=features, kind=kind, seed=seed, params=params)
        members.append(m)
        scores.append(score)
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
