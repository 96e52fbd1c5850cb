"""Site-covariate experiments inside the nested validation: what a site's own meteorology adds to
the remote-sensing predictors, and what it explains alone (issue 29).

Three models are fitted in every outer fold on the same training rows, the rows that carry the
site covariates: remote sensing only (the fold's selected predictors), remote sensing + the site
covariates, and the site covariates only. The site covariates are the configured ones (a chamber's
soil temperature and water, ``model.site_meteo``) and a tower's micrometeorology (the ``tower_*``
columns of a FLUXNET source's ``micromet``; a tower variable is kept where it is present on at least
half of the fold's training rows). They are not map predictors: no grid carries them. The held-out rows are
scored per experiment overall and per ecosystem type (IGBP).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fluxmap.science.train import FitSpec, fit_predict
from fluxmap.science.validate import metrics

__all__ = ["EXPERIMENTS", "covariate_predictions", "experiment_scores", "site_covariates"]

EXPERIMENTS = {
    "remote sensing only": "pred_rs_only",
    "remote sensing + site meteorology": "pred_rs_meteo",
    "site meteorology only": "pred_meteo_only",
}
"""Experiment label -> the column of its held-out predictions."""


def site_covariates(train: pd.DataFrame, configured: tuple[str, ...], *, min_present: float = 0.5) -> list[str]:
    """The site covariates of ``train``: the configured ones present on any row, and every
    ``tower_*`` column (not their ``_coverage``) present on at least ``min_present`` of the rows (a
    tower variable few towers measure, such as soil water, would otherwise shrink the rows that
    carry all of them to those towers)."""
    configured_here = [c for c in configured if c in train and train[c].notna().any()]
    tower = [c for c in train.columns if str(c).startswith("tower_") and not str(c).endswith("_coverage")]
    tower_here = [c for c in tower if c not in configured_here and float(train[c].notna().mean()) >= min_present]
    return [*configured_here, *tower_here]


def covariate_predictions(
    spec: FitSpec, train: pd.DataFrame, test: pd.DataFrame, features: list[str], covariates: list[str]
) -> dict[str, np.ndarray]:
    """The three experiments' predictions of the ``test`` rows that carry every covariate (NaN
    elsewhere), all trained on the ``train`` rows that carry every covariate; empty without
    covariates, with fewer than two physical sites carrying them, or with no such test row."""
    if not covariates:
        return {}
    rows = train[train[covariates].notna().all(axis=1)]
    ok = test[covariates].notna().all(axis=1).to_numpy()
    out = {col: np.full(len(test), np.nan) for col in EXPERIMENTS.values()}
    if rows[spec.group].nunique() < 2 or not ok.any():
        return out
    for col, feats in (
        ("pred_rs_only", features),
        ("pred_rs_meteo", [*features, *covariates]),
        ("pred_meteo_only", covariates),
    ):
        out[col][ok] = fit_predict(spec, rows, test[ok], feats)
    return out


def experiment_scores(d: pd.DataFrame, *, group: str, by: str = "ecosystem") -> tuple[pd.DataFrame, int]:
    """R2, RMSE, bias, n and physical sites of each experiment on the held-out rows all three
    predicted: over all of them (``group`` = ``all``) and per ``by`` value. Returns the table and
    the physical sites scored."""
    cols = [c for c in EXPERIMENTS.values() if c in d]
    if len(cols) < len(EXPERIMENTS):
        return pd.DataFrame(), 0
    rows = d[d[[*cols, "value"]].notna().all(axis=1)]
    parts: list[tuple[str, pd.DataFrame]] = [("all", rows)]
    if by in rows:
        parts += [(str(k), v) for k, v in rows.groupby(rows[by].astype(str), sort=True)]
    out: list[dict[str, Any]] = []
    for label, part in parts:
        for name, col in EXPERIMENTS.items():
            m = metrics(part.value.to_numpy(), part[col].to_numpy())
            out.append({"group": label, "experiment": name, **m, "physical_sites": int(part[group].nunique())})
    return pd.DataFrame(out), int(rows[group].nunique())
